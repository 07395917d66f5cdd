"""Data folders (ours and the music-suite guide's names) and the official MAESTRO / Groove splits."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from training.music.data_loaders import DynamicsDataset
from training.music.layout import find_data_root, official_split

from .test_train_all_models import make_maestro_tree


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_find_data_root_prefers_ours_then_the_guides_name(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    t = tmp_path / "training"
    assert find_data_root(tmp_path, "groove") == t / "groove"  # nothing there: ours, for the error
    (t / "groove").mkdir(parents=True)
    _touch(t / "drums" / "a.mid")
    assert find_data_root(tmp_path, "groove") == t / "drums"  # an empty folder of ours loses to data
    _touch(t / "groove" / "x" / "b.mid")
    with caplog.at_level(logging.WARNING, logger="training.music.layout"):
        assert find_data_root(tmp_path, "groove") == t / "groove"
    assert "training/drums" in caplog.text and "both" in caplog.text
    _touch(t / "dynamics_midi" / "p.midi")
    assert find_data_root(tmp_path, "dynamics") == t / "dynamics_midi"
    assert find_data_root(tmp_path, "emotion") == t / "audio"


def test_dataset_from_datasets_dir_reads_the_guides_folder(tmp_path: Path) -> None:
    make_maestro_tree(tmp_path / "training" / "dynamics_midi", 3)
    ds = DynamicsDataset.from_datasets_dir(tmp_path, cache=False)
    assert ds.root == tmp_path / "training" / "dynamics_midi" and len(ds) == 3


def _csv(root: Path, name: str, rows: list[tuple[str, str]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text("midi_filename,split\n" + "".join(f"{k},{s}\n" for k, s in rows))


def test_official_split_by_path_then_unique_name_and_unlisted_items_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    _csv(tmp_path, "info.csv", [("d1/s/a.mid", "train"), ("d2/s/b.mid", "validation"), ("d1/s/c.mid", "test"),
                                ("d1/x/same.mid", "train"), ("d2/y/same.mid", "validation")])
    keys = ["d1/s/a.mid", "b.mid", "c.mid", "same.mid", "other.mid"]
    with caplog.at_level(logging.WARNING, logger="training.music.layout"):
        split = official_split(tmp_path, keys)
    assert split is not None and split.source == tmp_path / "info.csv"
    # "same.mid" is ambiguous by name and "other.mid" is not listed: in no part.
    assert (split.train, split.validation, split.test, split.unmatched) == ([0], [1], [2], 2)
    assert "2 of 5 items are not listed" in caplog.text


def test_official_split_absent_or_unusable_means_random(tmp_path: Path) -> None:
    assert official_split(tmp_path, ["a.mid", "b.mid"]) is None  # no metadata
    assert official_split(None, ["a.mid"]) is None  # synthetic data
    _csv(tmp_path, "maestro-v3.0.0.csv", [("a.mid", "train"), ("b.mid", "test")])
    assert official_split(tmp_path, ["a.mid", "b.mid"]) is None  # no validation item
    _csv(tmp_path, "maestro-v3.0.0.csv", [("a.mid", "train"), ("b.mid", "validation")])
    split = official_split(tmp_path, ["a.mid", "b.mid"])
    assert split is not None and (split.train, split.validation) == ([0], [1])
