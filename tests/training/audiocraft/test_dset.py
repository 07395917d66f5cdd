"""dset: the Hydra YAML AudioCraft composes as dset=audio/<name>."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from training.audiocraft.dset import (
    DsetError, load_datasource, missing_keys, parse_dset_name, write_dset,
)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    (tmp_path / "audiocraft" / "config" / "dset" / "audio").mkdir(parents=True)
    return tmp_path / "audiocraft" / "config"


def test_write_dset_exact_text(config_dir: Path, tmp_path: Path) -> None:
    egs = tmp_path / "data" / "egs"
    path, changed = write_dset(config_dir, "fma_small_mini", egs)
    assert changed and path == config_dir / "dset" / "audio" / "fma_small_mini.yaml"
    text = path.read_text()
    assert text.splitlines()[0] == "# @package __global__"
    assert yaml.safe_load(text) == {"datasource": {
        "max_sample_rate": 32000, "max_channels": 1, "train": str(egs / "train"),
        "valid": str(egs / "valid"), "evaluate": str(egs / "valid"), "generate": str(egs / "valid")}}
    mtime = path.stat().st_mtime_ns
    assert write_dset(config_dir, "fma_small_mini", egs) == (path, False)
    assert path.stat().st_mtime_ns == mtime
    assert load_datasource(config_dir, "audio/fma_small_mini")[1]["train"] == str(egs / "train")


def test_paths_with_spaces_and_colons_are_quoted(config_dir: Path, tmp_path: Path) -> None:
    egs = tmp_path / "my data: v2" / "egs"
    path, _ = write_dset(config_dir, "odd", egs, sample_rate=48000, channels=2)
    ds = yaml.safe_load(path.read_text())["datasource"]
    assert ds["train"] == str(egs / "train") and ds["max_sample_rate"] == 48000 and ds["max_channels"] == 2


def test_write_dset_guards(config_dir: Path, tmp_path: Path) -> None:
    mine = config_dir / "dset" / "audio" / "handmade.yaml"
    mine.write_text("# @package __global__\ndatasource: {train: x}\n")
    with pytest.raises(DsetError, match="not written by this tool.*--force"):
        write_dset(config_dir, "handmade", tmp_path / "egs")
    assert "train: x" in mine.read_text()
    write_dset(config_dir, "handmade", tmp_path / "egs", force=True)
    assert "Written by enc-hf-workflow" in mine.read_text()
    with pytest.raises(DsetError, match="not AudioCraft's config folder"):
        write_dset(tmp_path, "x", tmp_path / "egs")
    with pytest.raises(DsetError, match="plain file stem"):
        write_dset(config_dir, "../escape", tmp_path / "egs")


@pytest.mark.parametrize("given, hint", [
    ("config/dset/audio/mine.yaml", "dset=audio/mine"),
    ("/workspace/audiocraft/config/dset/audio/mine.yaml", "dset=audio/mine"),
    ("./audio/mine", "dset=audio/mine"),
    ("mine", "did you mean dset=audio/mine"),
])
def test_dset_path_is_refused_with_the_fix(given: str, hint: str) -> None:
    with pytest.raises(DsetError, match=hint):
        parse_dset_name(given)


def test_parse_dset_name_accepts_config_names() -> None:
    assert parse_dset_name("audio/mine") == "audio/mine"
    assert parse_dset_name("dset=audio/mine") == "audio/mine"
    assert parse_dset_name("internal/music_10k_32khz") == "internal/music_10k_32khz"


def test_load_datasource_problems(config_dir: Path) -> None:
    with pytest.raises(DsetError, match="not found.*audio dsets there: none"):
        load_datasource(config_dir, "audio/nothing")
    f = config_dir / "dset" / "audio" / "nohdr.yaml"
    f.write_text("datasource:\n  train: x\n")
    with pytest.raises(DsetError, match="@package __global__"):
        load_datasource(config_dir, "audio/nohdr")
    f.write_text("# @package __global__\ndatasource:\n  max_sample_rate: 32000\n  train: ???\n  valid: egs/v\n")
    _, ds = load_datasource(config_dir, "audio/nohdr")
    assert missing_keys(ds) == ["max_channels", "train", "evaluate", "generate"]
