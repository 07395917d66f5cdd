"""train_all_models end to end on CPU: synthetic data, tiny real-format folders, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.music.train_all_models import main

from .test_data_loaders import (
    make_emotion_tree, make_groove_tree, make_melody_tree, write_midi,
)

FAST = ["--batch-size", "16", "--no-progress", "--seed", "0"]


def _summary(out: Path) -> dict[str, dict]:
    return {r["model"]: r for r in json.loads((out / "summary.json").read_text())}


def test_synthetic_three_epochs_all_models_learn(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["--synthetic", "--epochs", "3", "--output", str(out), *FAST]) == 0
    runs = _summary(out)
    assert sorted(runs) == ["dynamics", "emotion", "groove", "melody"]
    for name, r in runs.items():
        assert r["data"] == "synthetic" and r["epochs_run"] == 3
        assert r["best_val_loss"] < r["first_val_loss"], name  # validation loss falls
        assert Path(r["best_checkpoint"]).is_file()
        assert (out / name / "metrics.json").is_file() and (out / name / "metrics.png").is_file()


def _real_tree(root: Path) -> Path:
    """Tiny folders in the layouts of DEAM, Lakh, MAESTRO and Groove (bad files included)."""
    make_emotion_tree(root / "training" / "audio")
    make_melody_tree(root / "training" / "midi")
    make_groove_tree(root / "training" / "groove")
    for i in range(4):  # MAESTRO-like piano performances with varied dynamics
        notes = [(48 + (j * 5 + i) % 30, 30 + (j * 17 + 11 * i) % 90, 0.25 * j, 0.25 * j + 0.2 + 0.1 * (i % 2))
                 for j in range(16)]
        write_midi(root / "training" / "maestro" / "2004" / f"perf_{i}.midi", notes, pedal=[(0.0, 127), (2.0, 0)])
    return root


def test_real_format_folders_train_from_files_and_resume(tmp_path: Path, capsys) -> None:
    data = _real_tree(tmp_path / "datasets")
    out = tmp_path / "out"
    assert main(["--datasets-dir", str(data), "--epochs", "2", "--output", str(out), *FAST]) == 0
    runs = _summary(out)
    assert {n: r["data"] for n, r in runs.items()} == {n: "real" for n in runs}
    assert runs["emotion"]["skipped_files"] >= 3  # empty, corrupt and zero-byte audio are skipped
    assert "SYNTHETIC" not in capsys.readouterr().err

    # Without --resume an existing run is not clobbered …
    assert main(["--datasets-dir", str(data), "--epochs", "4", "--output", str(out), "--models", "dynamics",
                 *FAST]) == 1
    # … and with it training continues from the saved epoch.
    assert main(["--datasets-dir", str(data), "--epochs", "4", "--output", str(out), "--models", "dynamics",
                 "--resume", *FAST]) == 0
    history = json.loads((out / "dynamics" / "metrics.json").read_text())
    assert history["epochs"]["val_loss"] == [1, 2, 3, 4] and history["last_epoch"] == 4
    assert _summary(out)["dynamics"]["epochs_run"] == 4


def test_missing_data_falls_back_to_synthetic_loudly(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["--datasets-dir", str(tmp_path / "nothing"), "--epochs", "1", "--output", str(out),
                 "--models", "groove", *FAST]) == 0
    err = capsys.readouterr().err
    assert "groove: no usable real data" in err and "SYNTHETIC" in err and "download_datasets" in err
    assert _summary(out)["groove"]["data"].startswith("synthetic (fallback")


def test_bad_arguments() -> None:
    from workflow.runner import run_cli
    assert run_cli(main, ["--models", "nope", "--synthetic"]) == 2
    assert run_cli(main, ["--resume", "--overwrite", "--synthetic"]) == 2
    with pytest.raises(SystemExit):
        main(["--help"])
