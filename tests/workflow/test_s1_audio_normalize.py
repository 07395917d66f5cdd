"""s1 end to end through its CLI on a messy generated tree."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from workflow import audio
from workflow.s1_audio_normalize import main


def _reports(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / ".reports").glob("*.json"))]


def test_normalizes_messy_tree_and_survives_bad_files(messy_tree: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "norm"
    rc = main([str(messy_tree), str(out), "--workers", "2", "--no-progress"])
    assert rc == 1  # two bad files
    printed = capsys.readouterr().out
    assert "corrupt.wav" in printed and "nan.wav" in printed

    (report,) = _reports(out)
    res = {r["key"]: r for r in report["results"]}
    assert report["counts"] == {"ok": 7, "skipped": 0, "failed": 2, "total": 9}
    assert "corrupt.wav" in res["bad/corrupt.wav"]["error"]
    assert "NaN" in res["bad/nan.wav"]["error"] or "nan" in res["bad/nan.wav"]["error"].lower()
    assert "silent" in res["silent.wav"]["info"]["flags"]
    assert "peak_limited" in res["spiky.wav"]["info"]["flags"]

    outs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))
    assert outs == ["a/b/quiet é.wav", "a/tone_pitch_60.00_amp_0.50.wav", "c/float 22k.wav",
                    "c/six_ch.wav", "short.wav", "silent.wav", "spiky.wav"]
    for rel in outs:
        info = sf.info(out / rel)
        assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16"), rel
        data, sr = audio.read_audio(out / rel)
        flags = res[rel.replace("quiet é.wav", "quiet é.flac")]["info"]["flags"]
        if rel == "silent.wav":
            assert np.all(data == 0)  # never amplified
        elif "peak_limited" in flags:
            assert np.max(np.abs(data)) <= 0.999 + 1e-4
            assert audio.peak_windowed_rms(data, sr) < 0.1
        else:
            # The check: re-measured peak windowed RMS within 0.5 % of the target.
            assert audio.peak_windowed_rms(data, sr, 250.0) == pytest.approx(0.1, rel=0.005), rel
    # Durations survive resampling (±1 frame).
    assert sf.info(out / "a/tone_pitch_60.00_amp_0.50.wav").frames == pytest.approx(36000, abs=1)
    # Inputs are never touched.
    assert (messy_tree / "notes.txt").read_text() == "not audio"


def test_rerun_resumes_and_skip_errors(messy_tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "norm"
    main([str(messy_tree), str(out), "--workers", "1", "--no-progress"])
    first = {p: p.stat().st_mtime_ns for p in out.rglob("*.wav")}
    (out / "short.wav").unlink()  # as if the first run had been killed before this file
    rc = main([str(messy_tree), str(out), "--no-progress", "--skip-errors"])
    assert rc == 0  # failures still reported, but --skip-errors exits 0
    second = _reports(out)[-1]
    counts = second["counts"]
    assert counts["ok"] == 1 and counts["skipped"] == 6 and counts["failed"] == 2
    for p, mtime in first.items():
        if p.name != "short.wav":
            assert p.stat().st_mtime_ns == mtime  # untouched
    assert (out / "short.wav").exists()
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_dry_run_and_output_inside_input(messy_tree: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "norm"
    assert main([str(messy_tree), str(out), "--dry-run", "--no-progress"]) == 0
    assert not out.exists()
    assert "9 to process" in capsys.readouterr().out
    from workflow.runner import run_cli
    assert run_cli(main, [str(messy_tree), str(messy_tree / "out")]) == 2
    assert "inside input" in capsys.readouterr().err


def test_segments_keep_channels_and_lufs(tmp_path: Path) -> None:
    from workflow.synth import tone

    from .conftest import write

    src = tmp_path / "in"
    write(src / "long.wav", tone(60, 0.6, 3.4, 48000, 2), 48000)
    out = tmp_path / "out"
    rc = main([str(src), str(out), "--channels", "keep", "--segment-seconds", "1",
               "--min-segment-seconds", "0.5", "--no-progress", "--workers", "1"])
    assert rc == 0
    segs = sorted(p.name for p in out.glob("*.wav"))
    assert segs == ["long_0000.wav", "long_0001.wav", "long_0002.wav"]  # 0.4 s tail dropped
    for name in segs:
        data, sr = audio.read_audio(out / name)
        assert data.shape == (2, 24000) and sr == 24000
        assert audio.peak_windowed_rms(data, sr) == pytest.approx(0.1, rel=0.005)

    out2 = tmp_path / "lufs"
    assert main([str(src), str(out2), "--method", "lufs", "--target-lufs", "-20", "--no-progress",
                 "--subtype", "FLOAT", "--sample-rate", "16000"]) == 0
    data, sr = audio.read_audio(out2 / "long.wav")
    assert sr == 16000 and data.shape[0] == 1
    assert audio.integrated_lufs(data, sr) == pytest.approx(-20.0, abs=0.1)


def test_symlink_loop_and_link_into_output_add_no_files(tmp_path: Path) -> None:
    """Issue 13 item 10: `sub/up -> ..` and `in/out_link -> ../out` leave one output per input."""
    from workflow.synth import tone

    raw, out = tmp_path / "in", tmp_path / "out"
    for rel in ("a.wav", "sub/b.wav"):
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(raw / rel, tone(60, 0.3, 0.3, 24000, 1).T, 24000)
    os.symlink("..", raw / "sub" / "up")
    out.mkdir()
    os.symlink("../out", raw / "out_link")
    for _ in range(2):  # a second run must not find the first run's outputs through the link
        assert main([str(raw), str(out), "--no-progress"]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav")) == ["a.wav", "sub/b.wav"]
    assert _reports(out)[-1]["counts"] == {"ok": 0, "skipped": 2, "failed": 0, "total": 2}


def test_rerun_removes_stale_temps_of_a_killed_run(tmp_path: Path) -> None:
    """Issue 13 item 13: hidden `.stem.tmp-*` files of a dead run are removed by the next run."""
    import subprocess
    import sys

    from workflow.synth import tone

    raw, out = tmp_path / "in", tmp_path / "out"
    raw.mkdir()
    sf.write(raw / "a.wav", tone(60, 0.3, 0.3, 24000, 1).T, 24000)
    assert main([str(raw), str(out), "--no-progress"]) == 0
    code = f"from workflow import files; print(files.temp_sibling({str(out / 'a.wav')!r}))"
    left = Path(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout.strip())
    assert left.exists()  # what a run killed while writing a.wav leaves behind
    assert main([str(raw), str(out), "--no-progress"]) == 0  # everything already done
    assert not left.exists()
    assert sorted(p.name for p in out.iterdir()) == [".reports", "a.wav"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_says_no_space_left_naming_the_file(tmp_path: Path, monkeypatch, capsys) -> None:
    """Issue 13 item 14: every write goes to the real /dev/full (a disk with no space left)."""
    from workflow.synth import tone

    raw = tmp_path / "in"
    raw.mkdir()
    sf.write(raw / "a.wav", tone(60, 0.3, 0.3, 24000, 1).T, 24000)
    real_write = sf.write
    monkeypatch.setattr(audio.sf, "write", lambda file, *a, **k: real_write("/dev/full", *a, **k))
    assert main([str(raw), str(tmp_path / "out"), "--no-progress"]) == 1
    printed = capsys.readouterr().out
    assert f"a.wav: {tmp_path / 'out' / 'a.wav'}: no space left on device" in printed
    assert "LibsndfileError" not in printed
    assert [p.name for p in (tmp_path / "out").iterdir()] == [".reports"]  # no temp left


def test_unwritable_run_report_is_a_clear_error(tmp_path: Path, capsys) -> None:
    """Issue 13 item 14: a report that cannot be written ends in one error line, not a traceback."""
    from workflow.runner import run_cli
    from workflow.synth import tone

    raw, out = tmp_path / "in", tmp_path / "out"
    raw.mkdir()
    sf.write(raw / "a.wav", tone(60, 0.3, 0.3, 24000, 1).T, 24000)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")  # the report's folder would have to be made inside a file
    assert run_cli(main, [str(raw), str(out), "--no-progress", "--report", str(blocker / "r.json")]) == 1
    captured = capsys.readouterr()
    assert "1 done, 0 already done, 0 failed" in captured.out  # the summary is still printed
    assert f"error: the run report {blocker / 'r.json'} was not written" in captured.err
    assert (out / "a.wav").exists()


def test_truncated_input_fails_and_broken_outputs_are_redone(tmp_path: Path) -> None:
    """Issue 13 item 12: a truncated input fails naming the file; a 0-byte or truncated output
    is not taken as done on a re-run (a good one is)."""
    from workflow.synth import tone

    raw, out = tmp_path / "in", tmp_path / "out"
    raw.mkdir()
    for name in ("a", "b", "c", "cut"):
        sf.write(raw / f"{name}.wav", tone(60, 0.3, 1.0, 48000, 1).T, 48000)
    os.truncate(raw / "cut.wav", (raw / "cut.wav").stat().st_size // 2)
    assert main([str(raw), str(out), "--no-progress"]) == 1
    res = {r["key"]: r for r in _reports(out)[-1]["results"]}
    assert res["cut.wav"]["status"] == "failed"
    assert "cut.wav: truncated: its header promises 1.000 s" in res["cut.wav"]["error"]
    (out / "a.wav").write_bytes(b"")  # 0 bytes
    os.truncate(out / "b.wav", (out / "b.wav").stat().st_size // 2)  # header 1.0 s, data 0.5 s
    assert main([str(raw), str(out), "--no-progress", "--skip-errors"]) == 0
    res = {r["key"]: r["status"] for r in _reports(out)[-1]["results"]}
    assert res == {"a.wav": "ok", "b.wav": "ok", "c.wav": "skipped", "cut.wav": "failed"}
    for name in ("a", "b", "c"):
        assert sf.info(out / f"{name}.wav").frames == 24000


def test_folders_by_name(tmp_path: Path) -> None:
    """Issue 13 item 17: --input/--output (or --audio-root) work like the positionals."""
    from workflow.synth import tone

    raw = tmp_path / "in"
    raw.mkdir()
    sf.write(raw / "a.wav", tone(60, 0.3, 0.3, 24000, 1).T, 24000)
    assert main(["--no-progress", "--output", str(tmp_path / "out"), "--audio-root", str(raw)]) == 0
    assert main(["--input", str(raw), str(tmp_path / "out2"), "--no-progress"]) == 0
    assert (tmp_path / "out" / "a.wav").exists() and (tmp_path / "out2" / "a.wav").exists()
