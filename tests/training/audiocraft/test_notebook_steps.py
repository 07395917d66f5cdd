"""The notebooks' checks: durations, link targets, split manifests, artifacts, the XP id."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from training.audiocraft import egs
from training.audiocraft import notebook as nb

from .conftest import write_tone


def test_probe_audio_reads_duration_and_rate(tmp_path: Path) -> None:
    wav = write_tone(tmp_path / "a.wav", 2.5, 32000)
    seconds, rate = nb.probe_audio(wav)
    assert rate == 32000 and seconds == pytest.approx(2.5, abs=1e-3)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    with pytest.raises(nb.ProbeError, match="bad.wav"):
        nb.probe_audio(tmp_path / "bad.wav")


def test_check_random_durations_is_seeded_and_rejects_long_files(tmp_path: Path) -> None:
    paths = [write_tone(tmp_path / f"t_{i:04d}.wav", 1.0 if i < 6 else 0.6, 16000) for i in range(8)]
    first = nb.check_random_durations(paths, 1.0, k=5, seed=7)
    assert first == nb.check_random_durations(list(reversed(paths)), 1.0, k=5, seed=7)
    assert len(first) == 5 and all(0.59 < s < 1.01 for _, s in first)
    long = [write_tone(tmp_path / "long.wav", 1.5, 16000)]
    with pytest.raises(nb.ProbeError, match="lasts 1.500 s, expected about 1.0 s"):
        nb.check_random_durations(long, 1.0)
    with pytest.raises(nb.ProbeError, match="produced nothing"):
        nb.check_random_durations([], 1.0)


def test_broken_links_and_split_manifests(tmp_path: Path) -> None:
    segs = [write_tone(tmp_path / "segments" / f"s_{i:04d}.wav", 1.0, 32000) for i in range(3)]
    egs_dir = tmp_path / "egs"
    for split, chosen in (("train", segs[:2]), ("valid", segs[2:])):
        (egs_dir / split).mkdir(parents=True)
        for s in chosen:
            os.symlink(s, egs_dir / split / s.name)
        egs.write_manifest(egs_dir / split, egs.build_manifest(sorted((egs_dir / split).glob("*.wav")),
                                                                progress=False))
    assert nb.broken_links(egs_dir / "train") == (2, [])
    counts = nb.write_split_manifests(egs_dir, tmp_path / "manifests")
    assert counts == {"train": 2, "valid": 1}
    lines = [json.loads(x) for x in (tmp_path / "manifests" / "train.jsonl").read_text().splitlines()]
    assert lines == [{"path": str(segs[0].resolve())}, {"path": str(segs[1].resolve())}]
    mtime = (tmp_path / "manifests" / "train.jsonl").stat().st_mtime_ns
    nb.write_split_manifests(egs_dir, tmp_path / "manifests")
    assert (tmp_path / "manifests" / "train.jsonl").stat().st_mtime_ns == mtime  # unchanged: not rewritten
    segs[0].unlink()
    n, broken = nb.broken_links(egs_dir / "train")
    assert n == 2 and broken == [egs_dir / "train" / segs[0].name]


def test_require_artifacts(tmp_path: Path) -> None:
    nb.require_artifacts({"here": tmp_path})
    with pytest.raises(nb.MissingArtifactError, match=r"missing: egs \(.*\) — run Notebook A"):
        nb.require_artifacts({"here": tmp_path, "egs": tmp_path / "egs"})


def test_parse_xp_id() -> None:
    log = ("Dora directory: /workspace/experiments/audiocraft\n"  # lines of a real run (colours removed)
           "[12-03 07:51:02][flashy.solver][INFO] - Instantiating solver CompressionSolver for XP 9f3ab2c1\n"
           "[12-03 07:51:02][flashy.solver][INFO] - All XP logs are stored in "
           "/workspace/experiments/audiocraft/xps/9f3ab2c1\n")
    assert nb.parse_xp_id(log) == "9f3ab2c1"
    assert nb.parse_xp_id("no experiment here\n") is None


def test_python_report_names_notebook_a_for_a_missing_interpreter(tmp_path: Path) -> None:
    with pytest.raises(nb.MissingArtifactError, match="run Notebook A"):
        nb.python_report(str(tmp_path / "venv" / "bin" / "python"), tmp_path)
    report = nb.python_report(sys.executable, tmp_path)
    assert "torch" in report and isinstance(report["cuda"], bool)
    assert "audiocraft" in report or "audiocraft_error" in report
