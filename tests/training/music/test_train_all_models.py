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
    make_maestro_tree(root / "training" / "maestro", 4)
    return root


def make_maestro_tree(root: Path, n: int) -> list[str]:
    """``n`` MAESTRO-like piano performances with varied dynamics; their keys under ``root``."""
    keys = []
    for i in range(n):
        notes = [(48 + (j * 5 + i) % 30, 30 + (j * 17 + 11 * i) % 90, 0.25 * j, 0.25 * j + 0.2 + 0.1 * (i % 2))
                 for j in range(16)]
        write_midi(root / "2004" / f"perf_{i}.midi", notes, pedal=[(0.0, 127), (2.0, 0)])
        keys.append(f"2004/perf_{i}.midi")
    return keys


def test_real_format_folders_train_from_files_and_resume(tmp_path: Path, capsys) -> None:
    data = _real_tree(tmp_path / "datasets")
    out = tmp_path / "out"
    assert main(["--datasets-dir", str(data), "--epochs", "2", "--output", str(out), *FAST]) == 0
    runs = _summary(out)
    assert {n: r["data"] for n, r in runs.items()} == {n: "real" for n in runs}
    assert runs["emotion"]["skipped_files"] >= 3  # empty, corrupt and zero-byte audio are skipped
    assert {r["split"] for r in runs.values()} == {"random"}  # no metadata: the seeded random split
    err = capsys.readouterr().err
    assert "SYNTHETIC" not in err and "no official split metadata" in err

    # Without --resume an existing run is not clobbered …
    assert main(["--datasets-dir", str(data), "--epochs", "4", "--output", str(out), "--models", "dynamics",
                 *FAST]) == 1
    # … and with it training continues from the saved epoch.
    assert main(["--datasets-dir", str(data), "--epochs", "4", "--output", str(out), "--models", "dynamics",
                 "--resume", *FAST]) == 0
    history = json.loads((out / "dynamics" / "metrics.json").read_text())
    assert history["epochs"]["val_loss"] == [1, 2, 3, 4] and history["last_epoch"] == 4
    assert _summary(out)["dynamics"]["epochs_run"] == 4


def test_guide_folder_names_and_official_splits(tmp_path: Path, capsys) -> None:
    """The music-suite guide's layout (training/dynamics_midi, flat training/drums) trains on the
    real files, split as MAESTRO's CSV and Groove's info.csv say."""
    data = tmp_path / "datasets"
    keys = make_maestro_tree(data / "training" / "dynamics_midi", 6)
    splits = ["train", "train", "train", "validation", "validation", "test"]
    (data / "training" / "dynamics_midi" / "maestro-v3.0.0.csv").write_text(
        "canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration\n"
        + "".join(f"C,T{i},{sp},2004,{k},{k[:-5]}.wav,4.0\n" for i, (k, sp) in enumerate(zip(keys, splits))))
    make_groove_tree(data / "training" / "drums")  # usable: basic, s1/busy, s1/late
    (data / "training" / "drums" / "info.csv").write_text(  # upstream paths; the guide's copy is flat
        "drummer,session,id,style,bpm,beat_type,time_signature,midi_filename,audio_filename,duration,split\n"
        "drummer1,drummer1/s1,drummer1/s1/1,funk,120,beat,4-4,drummer1/s1/basic.mid,,4.0,train\n"
        "drummer1,drummer1/s1,drummer1/s1/2,funk,120,beat,4-4,drummer1/s1/late.mid,,4.0,train\n"
        "drummer2,drummer2/s9,drummer2/s9/3,rock,120,beat,4-4,drummer2/s9/busy.mid,,4.0,validation\n")
    out = tmp_path / "out"
    assert main(["--datasets-dir", str(data), "--epochs", "1", "--output", str(out),
                 "--models", "dynamics,groove", *FAST]) == 0
    assert "SYNTHETIC" not in capsys.readouterr().err
    runs = _summary(out)
    assert runs["dynamics"]["data"] == runs["groove"]["data"] == "real"
    d, g = runs["dynamics"], runs["groove"]
    assert (d["split"], d["train_items"], d["val_items"], d["test_items"]) == (
        "official (maestro-v3.0.0.csv)", 3, 2, 1)
    assert (g["split"], g["train_items"], g["val_items"], g["test_items"]) == ("official (info.csv)", 2, 1, 0)


def test_missing_data_falls_back_to_synthetic_loudly(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["--datasets-dir", str(tmp_path / "nothing"), "--epochs", "1", "--output", str(out),
                 "--models", "groove", *FAST]) == 0
    err = capsys.readouterr().err
    assert "groove: no usable real data" in err and "SYNTHETIC" in err and "download_datasets" in err
    assert "training/groove or " in err and "training/drums not found" in err  # both names looked at
    assert _summary(out)["groove"]["data"].startswith("synthetic (fallback")


def test_bad_arguments() -> None:
    from workflow.runner import run_cli
    assert run_cli(main, ["--models", "nope", "--synthetic"]) == 2
    assert run_cli(main, ["--resume", "--overwrite", "--synthetic"]) == 2
    with pytest.raises(SystemExit):
        main(["--help"])
