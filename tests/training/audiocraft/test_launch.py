"""launch: each known AudioCraft failure becomes one clear line before anything starts.

The interpreter under test is real Python seeing a tiny AudioCraft-shaped tree (see conftest).
"""

from __future__ import annotations

import io
import json
import shlex
from pathlib import Path

import pytest
import soundfile as sf

from training.audiocraft.__main__ import main
from training.audiocraft.dset import write_dset
from training.audiocraft.launch import LaunchSpec, build_command, format_command, launch, preflight


def _egs(tmp_path: Path) -> Path:
    egs = tmp_path / "egs"
    for split in ("train", "valid"):
        (egs / split).mkdir(parents=True)
        wav = egs / split / "a.wav"
        sf.write(wav, [0.1] * 3200, 32000)
        (egs / split / "data.jsonl").write_text(
            json.dumps({"path": str(wav), "duration": 0.1, "sample_rate": 32000, "channels": 1}) + "\n")
    return egs


@pytest.fixture
def ready(tmp_path: Path, make_fake_audiocraft):
    fake = make_fake_audiocraft()
    egs = _egs(tmp_path)
    write_dset(fake.config_dir, "mini", egs)
    spec = LaunchSpec(dset="audio/mini", python=fake.python, dora_dir=tmp_path / "dora",
                      overrides=["dataset.batch_size=8"])
    return fake, egs, spec


def _errors(spec: LaunchSpec, env: dict) -> list[str]:
    return preflight(spec, env).errors


def test_all_good(ready, clean_env) -> None:
    fake, _, spec = ready
    pf = preflight(spec, clean_env)
    assert pf.errors == []
    assert pf.config_dir == fake.config_dir
    assert pf.env["USER"] and pf.env["AUDIOCRAFT_TEAM"] == "default"
    assert pf.env["AUDIOCRAFT_DORA_DIR"] == str(spec.dora_dir)
    assert pf.env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"
    assert pf.env["PATH"].split(":")[0] == str(fake.bindir)
    assert any(n.startswith("USER was unset") for n in pf.notes)
    assert any("xformers imports with a warning" in n for n in pf.notes)


def test_user_and_torch_flag_kept_when_set(ready, clean_env) -> None:
    _, _, spec = ready
    pf = preflight(spec, {**clean_env, "USER": "alice", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "0"})
    assert pf.env["USER"] == "alice" and pf.env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "0"
    assert not any("USER" in n for n in pf.notes)
    spec.user = "bob"
    assert preflight(spec, {**clean_env, "USER": "alice"}).env["USER"] == "bob"


def test_dset_given_as_path(ready, clean_env) -> None:
    fake, _, spec = ready
    spec.dset = str(fake.config_dir / "dset" / "audio" / "mini.yaml")
    errs = _errors(spec, clean_env)
    assert len(errs) == 1 and errs[0].startswith("dset=") and "use dset=audio/mini" in errs[0]


@pytest.mark.parametrize("value", ["???", None])
def test_dset_key_missing_or_mandatory(ready, clean_env, value) -> None:
    fake, egs, spec = ready
    f = fake.config_dir / "dset" / "audio" / "mini.yaml"
    text = f.read_text().replace(f"  generate: {egs}/valid\n", "" if value is None else "  generate: ???\n")
    f.write_text(text)
    errs = _errors(spec, clean_env)
    assert len(errs) == 1 and "datasource.generate is " + ("???" if value else "missing") in errs[0]
    # An override on the command line fills it.
    spec.overrides.append(f"datasource.generate={egs}/valid")
    assert _errors(spec, clean_env) == []


def test_split_folder_without_manifest(ready, clean_env) -> None:
    _, egs, spec = ready
    (egs / "valid" / "data.jsonl").unlink()
    errs = _errors(spec, clean_env)
    assert len(errs) == 1  # valid/evaluate/generate share the folder: reported once
    assert errs[0].startswith("datasource.valid:") and "has no data.jsonl" in errs[0] and "prepare" in errs[0]


def test_manifest_line_without_duration(ready, clean_env) -> None:
    _, egs, spec = ready
    m = egs / "train" / "data.jsonl"
    m.write_text(json.dumps({"path": str(egs / "train" / "a.wav"), "sample_rate": 32000}) + "\n")
    errs = _errors(spec, clean_env)
    assert len(errs) == 1 and f"{m}:1: manifest line lacks duration" in errs[0]


@pytest.mark.parametrize("state, needle", [("broken", "ImportError: libcudart.so.12"),
                                           ("missing", "ModuleNotFoundError")])
def test_xformers_not_importable(tmp_path, make_fake_audiocraft, clean_env, state, needle) -> None:
    fake = make_fake_audiocraft(xformers=state)
    write_dset(fake.config_dir, "mini", _egs(tmp_path))
    errs = _errors(LaunchSpec(dset="audio/mini", python=fake.python, dora_dir=tmp_path / "d"), clean_env)
    assert len(errs) == 1 and errs[0].startswith("xformers is not importable") and needle in errs[0]
    assert "pip install --no-deps xformers" in errs[0]


def test_grid_without_srun(ready, clean_env) -> None:
    _, _, spec = ready
    spec.grid = "audiocraft.grids.compression.debug"
    errs = _errors(spec, clean_env)
    assert errs == ["dora grid submits SLURM jobs but srun is not on PATH; on a single machine "
                    "launch without --grid (dora run)"]
    assert build_command(spec)[-2:] == ["grid", "audiocraft.grids.compression.debug"]


def test_missing_ffmpeg_audiocraft_and_config(tmp_path, make_fake_audiocraft, clean_env) -> None:
    fake = make_fake_audiocraft(ffmpeg=False)
    write_dset(fake.config_dir, "mini", _egs(tmp_path))
    errs = _errors(LaunchSpec(dset="audio/mini", python=fake.python), clean_env)
    assert len(errs) == 1 and errs[0].startswith("ffmpeg is not on PATH")
    # An interpreter without AudioCraft, and a config folder that is not where Dora looks.
    import sys
    other = tmp_path / "other" / "config"
    (other / "dset" / "audio").mkdir(parents=True)
    errs = _errors(LaunchSpec(dset="audio/mini", python=sys.executable, config_dir=other), clean_env)
    assert any(e.startswith("audiocraft is not installed") for e in errs)
    assert any(e.startswith("dora is not installed") for e in errs)
    errs = _errors(LaunchSpec(dset="audio/mini", python=fake.python, config_dir=other), clean_env)
    assert any("is not the folder Dora reads" in e for e in errs)
    import shutil
    shutil.rmtree(fake.config_dir)
    errs = _errors(LaunchSpec(dset="audio/mini", python=fake.python), clean_env)
    assert any("wheels lack config/" in e for e in errs)


def test_dry_run_prints_the_exact_command(ready, clean_env) -> None:
    fake, _, spec = ready
    spec.clear = True
    out = io.StringIO()
    assert launch(spec, dry_run=True, out=out, base_env=clean_env) == 0
    text = out.getvalue()
    line = text.splitlines()[text.splitlines().index(next(x for x in text.splitlines() if x.startswith("dry run"))) + 1]
    words = shlex.split(line)
    assert words[:3] == ["USER=" + preflight(spec, clean_env).env["USER"], "AUDIOCRAFT_TEAM=default",
                         f"AUDIOCRAFT_DORA_DIR={spec.dora_dir}"]
    assert words[3:] == ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1", fake.python, "-m", "dora", "-P", "audiocraft",
                         "run", "--clear", "solver=compression/debug", "dset=audio/mini", "dataset.batch_size=8"]
    assert not spec.dora_dir.exists()  # nothing started


def test_failed_preflight_starts_nothing(ready, clean_env) -> None:
    _, egs, spec = ready
    (egs / "train" / "data.jsonl").unlink()
    out = io.StringIO()
    assert launch(spec, out=out, base_env=clean_env) == 2
    assert "1 pre-flight problem(s): nothing was started" in out.getvalue()
    assert not spec.dora_dir.exists()


def test_launch_streams_dora_and_reports_the_xp(ready, clean_env, tmp_path) -> None:
    fake, _, spec = ready
    # A stand-in `python -m dora` that behaves like Dora's output: log lines, an XP folder, exit code.
    (fake.root / "dora" / "__main__.py").write_text(
        "import os, sys, pathlib\n"
        "d = pathlib.Path(os.environ['AUDIOCRAFT_DORA_DIR']) / 'xps' / 'ab12cd34'\n"
        "d.mkdir(parents=True, exist_ok=True)\n"
        "print('Instantiating solver CompressionSolver for XP ab12cd34', flush=True)\n"
        "print('argv', ' '.join(sys.argv[1:]), 'user', os.environ['USER'])\n"
        "sys.exit(int(os.environ.get('FAKE_RC', '0')))\n")
    out = io.StringIO()
    assert launch(spec, out=out, base_env=clean_env) == 0
    text = out.getvalue()
    assert "for XP ab12cd34" in text and "argv -P audiocraft run solver=compression/debug" in text
    assert f"XP ab12cd34: {spec.dora_dir / 'xps' / 'ab12cd34'}" in text
    logs = list((spec.dora_dir / "launch-logs").glob("*.log"))
    assert len(logs) == 1 and "for XP ab12cd34" in logs[0].read_text()
    assert launch(spec, out=io.StringIO(), base_env={**clean_env, "FAKE_RC": "3"}) == 3


def test_launch_cli_dry_run(ready, capsys) -> None:
    fake, _, spec = ready
    rc = main(["launch", "--dset", "audio/mini", "--python", fake.python, "--dora-dir", str(spec.dora_dir),
               "--dry-run", "--", "dataset.batch_size=8", "optim.updates_per_epoch=50"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "dset=audio/mini dataset.batch_size=8 optim.updates_per_epoch=50" in out
    assert format_command(["a b"], {"USER": "x y"}) == "USER='x y' 'a b'"
