"""The real consumer: AudioCraft 1.3.0 trains a tiny compression model on CPU on data we prepared.

Runs only under ``make test-audiocraft`` (which builds the throw-away venv and sets
AUDIOCRAFT_PYTHON); plain ``make test`` skips it. Drives the package CLI end to end (prepare →
dset → launch → xp --check, then a resume), and both RunPod notebooks on a simulated fresh pod.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from training.audiocraft.__main__ import main
from training.audiocraft.launch import config_dir_from_probe, probe_python

from .conftest import write_tone

REPO = Path(__file__).resolve().parents[3]
AC_PYTHON = os.environ.get("AUDIOCRAFT_PYTHON")
pytestmark = pytest.mark.skipif(not AC_PYTHON, reason="needs AUDIOCRAFT_PYTHON (run `make test-audiocraft`)")

TINY = ["device=cpu", "dataset.num_workers=0", "evaluate.num_workers=0", "optim.epochs=1",
        "optim.updates_per_epoch=2", "dataset.train.num_samples=4", "dataset.valid.num_samples=2",
        "dataset.evaluate.num_samples=2", "dataset.generate.num_samples=1",
        "dataset.generate.segment_duration=1", "dataset.segment_duration=1", "dataset.batch_size=2",
        "sample_rate=32000", "rvq.n_q=2", "rvq.bins=48"]


@pytest.fixture
def dset_name(tmp_path: Path):
    name = f"enc_hf_ci_{os.getpid()}"
    yield name
    config_dir = config_dir_from_probe(probe_python(AC_PYTHON, xformers=False))
    if config_dir is not None:
        (config_dir / "dset" / "audio" / f"{name}.yaml").unlink(missing_ok=True)


def test_audiocraft_trains_on_prepared_data(tmp_path: Path, dset_name: str, capfd, monkeypatch) -> None:
    monkeypatch.delenv("USER", raising=False)  # the launcher must supply it
    raw = tmp_path / "raw"
    for i in range(5):
        write_tone(raw / f"song{i}.wav", 3.0, [44100, 48000, 22050, 32000, 16000][i], 1 + i % 2, 180 + 50 * i)
    work = tmp_path / "work"
    assert main(["prepare", str(raw), str(work), "--segment-seconds", "1", "--no-progress"]) == 0

    config_dir = config_dir_from_probe(probe_python(AC_PYTHON, xformers=False))
    assert config_dir is not None and (config_dir / "dset").is_dir()
    assert main(["dset", "--name", dset_name, "--egs", str(work / "egs"), "--config-dir", str(config_dir)]) == 0

    dora = tmp_path / "dora"
    launch = ["launch", "--dset", f"audio/{dset_name}", "--solver", "compression/debug", "--dora-dir",
              str(dora), "--python", AC_PYTHON, "--cwd", str(tmp_path)]
    rc = main(launch + ["--clear", "--"] + TINY)
    out = capfd.readouterr().out
    assert rc == 0, out[-4000:]
    assert "Train Summary | Epoch 1" in out and f"Loading audio data split train: {work / 'egs' / 'train'}" in out

    xps = list((dora / "xps").iterdir())
    assert len(xps) == 1
    xp = xps[0]
    for name in ("history.json", "checkpoint.th", "solver.log.0", ".argv.json"):
        assert (xp / name).is_file(), name
    history = json.loads((xp / "history.json").read_text())
    assert len(history) == 1 and {"train", "valid", "evaluate", "generate"} <= set(history[0])
    for stage in ("train", "valid"):
        for key in ("l1", "mel", "msspec"):
            assert math.isfinite(history[0][stage][key]), (stage, key)
    assert any((xp / "samples").rglob("*.wav")) or any((xp / "samples").rglob("*.mp3"))

    assert main(["xp", "--dora-dir", str(dora), "--check"]) == 0
    out = capfd.readouterr().out
    assert f"XP {xp.name}" in out and "check: ok" in out and (xp / "losses.png").is_file()

    # Re-launch without --clear: Dora resumes the XP from checkpoint.th (needs the weights-only
    # switch the launcher sets); the finished epoch is not trained again.
    mtime = (xp / "checkpoint.th").stat().st_mtime_ns
    rc = main(launch + ["--"] + TINY)
    out = capfd.readouterr().out
    assert rc == 0, out[-4000:]
    assert "UnpicklingError" not in out and f"Checkpoint loaded from {xp / 'checkpoint.th'}" in out
    assert len(json.loads((xp / "history.json").read_text())) == 1
    assert (xp / "checkpoint.th").stat().st_mtime_ns >= mtime
    shutil.rmtree(dora)


def _local_git_repo(src: Path, dest: Path, tag: str) -> str:
    """``src`` committed into a new git repository at ``dest`` with ``tag``; returns a file:// URL."""
    shutil.copytree(src, dest, symlinks=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "sdist"], ["tag", tag]):
        subprocess.run(["git", "-C", str(dest), *cmd], check=True, env=env)
    return f"file://{dest}"


@pytest.mark.timeout(1200)  # four notebooks and three Dora start-ups: ~4 min on 2 busy cores
def test_notebooks_on_a_fresh_pod(tmp_path: Path, monkeypatch) -> None:
    """An empty folder as /workspace; this repository only as a git URL, AudioCraft cloned from a git
    repository of the 1.3.0 sdist, a local zip for FMA. Notebook A then B top to bottom (dora
    really trains, on CPU, tiny), then both again: nothing is fetched, converted or trained twice."""
    from .conftest import make_fma_zip, notebook_text, run_notebook

    venv = Path(AC_PYTHON).parents[1]
    ws = tmp_path / "workspace"
    ws.mkdir()
    ac_url = _local_git_repo(venv / "audiocraft-sdist", tmp_path / "audiocraft-git", "v1.3.0")
    make_fma_zip(tmp_path / "fma_small.zip", n_tracks=5, seconds=3.0)
    bindir = tmp_path / "bin"  # the pod's apt-installed ffmpeg: the AudioCraft venv's static build
    bindir.mkdir()
    (bindir / "ffmpeg").symlink_to(venv / "bin" / "ffmpeg")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    common = dict(BASE_DIR=str(ws), AUDIOCRAFT_VENV=str(venv), SEGMENT_SECONDS=1)
    a_params = dict(common, REPO_URL=str(REPO), AUDIOCRAFT_REPO_URL=ac_url, FMA_ZIP_URL="",
                    FMA_LOCAL=str(tmp_path / "fma_small.zip"), NUM_SAMPLES_TOTAL=5, INSTALL=False)
    b_params = dict(common, REQUIRE_CUDA=False, BATCH_SIZE=2, NUM_WORKERS=0, UPDATES_PER_EPOCH=2,
                    VALID_NUM_SAMPLES=2, RERUN_NUM_WORKERS=1, EXTRA_OVERRIDES=" ".join(
                        ["device=cpu", "evaluate.num_workers=0", "optim.epochs=1", "dataset.train.num_samples=4",
                         "dataset.evaluate.num_samples=2", "dataset.generate.num_samples=1",
                         "dataset.generate.segment_duration=1", "sample_rate=32000", "rvq.n_q=2", "rvq.bins=48"]))
    data = ws / "data" / "fma_small_mini"
    text = notebook_text(run_notebook("01_fma_small_mini_setup.ipynb", tmp_path / "a1", **a_params))
    assert "cloned AudioCraft v1.3.0" in text and "5 tracks in" in text and "converted 5, kept 0" in text
    assert (ws / "enc-hf-workflow" / "training" / "audiocraft" / "notebook.py").is_file()
    dset_yaml = ws / "audiocraft" / "config" / "dset" / "audio" / "fma_small_mini.yaml"
    assert dset_yaml.read_text() == (
        f"# @package __global__\n\ndatasource:\n  max_sample_rate: 32000\n  max_channels: 1\n"
        f"  train: {data}/egs/train\n  valid: {data}/egs/valid\n  evaluate: {data}/egs/valid\n"
        f"  generate: {data}/egs/valid\n")
    assert "ready-to-train: dset=audio/fma_small_mini" in text and "[ ]" not in text
    nb_b = run_notebook("02_audiocraft_train_compression_debug.ipynb", tmp_path / "b1", **b_params)
    text = notebook_text(nb_b)
    xps = list((ws / "experiments" / "audiocraft" / "xps").iterdir())
    assert len(xps) == 1, xps  # the re-run cell resumed the same XP (num_workers is not in its id)
    xp = xps[0]
    assert f"XP id: {xp.name} (from the log)" in text and "Train Summary | Epoch 1" in text
    assert f"Loading audio data split train: {data}/egs/train" in text
    assert f"XP {xp.name}: 1 epoch(s), finite losses, checkpoint and" in text
    assert f"Checkpoint loaded from {xp / 'checkpoint.th'}" in (ws / "experiments" / "audiocraft" /
                                                                  "last_rerun.log").read_text()
    if os.environ.get("NOTEBOOK_OUTPUTS"):  # keep the executed notebooks of the first run (for notebooks/)
        for src in (tmp_path / "a1" / "01_fma_small_mini_setup.ipynb",
                    tmp_path / "b1" / "02_audiocraft_train_compression_debug.ipynb"):
            shutil.copy(src, Path(os.environ["NOTEBOOK_OUTPUTS"]) / src.name)

    stamps = {p: p.stat().st_mtime_ns for p in [*data.rglob("*.jsonl"), dset_yaml, *data.rglob("*.wav")]}
    text = notebook_text(run_notebook("01_fma_small_mini_setup.ipynb", tmp_path / "a2", **a_params))
    assert "updated " in text and "AudioCraft checkout present at v1.3.0" in text
    assert "0 new, 5 already there" in text and "converted 0, kept 5" in text and "(unchanged)" in text
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    text = notebook_text(run_notebook("02_audiocraft_train_compression_debug.ipynb", tmp_path / "b2", **b_params))
    assert f"Checkpoint loaded from {xp / 'checkpoint.th'}" in text
    assert [p.name for p in (ws / "experiments" / "audiocraft" / "xps").iterdir()] == [xp.name]
    assert len(json.loads((xp / "history.json").read_text())) == 1
