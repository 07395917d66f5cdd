"""The real consumer: AudioCraft 1.3.0 trains a tiny compression model on CPU on data we prepared.

Runs only under ``make test-audiocraft`` (which builds the throw-away venv and sets
AUDIOCRAFT_PYTHON); plain ``make test`` skips it. Drives the package CLI end to end:
prepare → dset → launch (dora run) → xp --check, then resumes the XP from its checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest

from training.audiocraft.__main__ import main
from training.audiocraft.launch import config_dir_from_probe, probe_python

from .conftest import write_tone

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


def test_notebooks_train_for_real(tmp_path: Path, capfd) -> None:
    """Notebook A on a local fma_small.zip (the fallback), then Notebook B trains, validates and
    resumes — the RunPod path, on CPU with a tiny configuration."""
    from .conftest import make_fma_zip, notebook_text, run_notebook

    site = config_dir_from_probe(probe_python(AC_PYTHON, xformers=False)).parent
    name = f"enc_hf_nb_{os.getpid()}"
    make_fma_zip(tmp_path / "fma_small.zip", n_tracks=5, seconds=3.0)
    common = dict(WORKSPACE=str(tmp_path), AUDIOCRAFT_DIR=str(site), WORK_DIR=str(tmp_path / "mini"),
                  DSET_NAME=name, SEGMENT_SECONDS=1.0, PIP_INSTALL=False)
    try:
        run_notebook("01_fma_small_mini_setup.ipynb", tmp_path / "a", **common, INSTALL_SYSTEM_PACKAGES=False,
                     CLONE_AUDIOCRAFT=False, DOWNLOAD_FMA=False, FMA_LOCAL=str(tmp_path / "fma_small.zip"),
                     NUM_SAMPLES_TOTAL=5, RAW_DIR=str(tmp_path / "raw"), WORKERS=1)
        nb = run_notebook(
            "02_audiocraft_train_compression_debug.ipynb", tmp_path / "b", **common, AUDIOCRAFT_PYTHON=AC_PYTHON,
            DORA_DIR=str(tmp_path / "dora"), BATCH_SIZE=2, NUM_WORKERS=0, UPDATES_PER_EPOCH=2, VALID_SAMPLES=2,
            EPOCHS=1, DEVICE="cpu", CLEAR=True, RERUN=True,
            EXTRA_OVERRIDES=["evaluate.num_workers=0", "dataset.train.num_samples=4",
                             "dataset.evaluate.num_samples=2", "dataset.generate.num_samples=1",
                             "dataset.generate.segment_duration=1", "dataset.segment_duration=1",
                             "rvq.n_q=2", "rvq.bins=48"])
    finally:
        (site / "config" / "dset" / "audio" / f"{name}.yaml").unlink(missing_ok=True)
    text = notebook_text(nb)
    sig = next((tmp_path / "dora" / "xps").iterdir()).name
    assert f"XP {sig}: 1 epoch(s), finite losses, checkpoint and" in text
    assert f"Checkpoint loaded from {tmp_path / 'dora' / 'xps' / sig / 'checkpoint.th'}" in text  # the re-run
    assert (tmp_path / "dora" / "xps" / sig / "losses.png").is_file()
