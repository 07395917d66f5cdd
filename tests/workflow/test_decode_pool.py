"""s2's decoding processes: same bytes as threads, bounded read-ahead, one bad file fails alone."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from workflow.decode_pool import DecoderCrashError, ProcessLoader
from workflow.encode import AudioLoader, build_items, decode_in_processes
from workflow.errors import UsageError
from workflow.runner import Runner, RunOptions, run_cli
from workflow.s2_wav2encodec24 import main
from workflow.synth import tone

from ._decode_fns import CrashingLoader
from .conftest import write


def _tree(root: Path) -> Path:
    write(root / "a" / "x.wav", tone(50, 0.4, 1.0, 24000, 1), 24000)
    write(root / "a" / "b" / "y é.wav", tone(57, 0.4, 0.74, 24000, 1), 24000)
    write(root / "z.wav", tone(62, 0.3, 0.4, 24000, 1), 24000)
    write(root / "st 16k.flac", tone(66, 0.3, 0.9, 16000, 2), 16000)  # resampled and mixed on the fly
    write(root / "w.wav", tone(45, 0.3, 1.3, 24000, 1), 24000)
    return root


def _s2(src: Path, dst: Path, *flags: str) -> int:
    return run_cli(main, [str(src), str(dst), "--weights", "random", "--device", "cpu", "--no-progress",
                          "--batch-seconds", "1.5", *flags])


def test_processes_write_the_same_bytes_as_threads(tmp_path: Path) -> None:
    src = _tree(tmp_path / "in")
    assert _s2(src, tmp_path / "thr", "--decode", "threads", "--workers", "2") == 0
    assert _s2(src, tmp_path / "proc", "--decode", "processes", "--workers", "3") == 0
    for out, mode in (("thr", "threads"), ("proc", "processes")):
        report = json.loads(next((tmp_path / out / ".reports").glob("*.json")).read_text())
        assert report["params"]["decode"] == mode and report["counts"]["ok"] == 5
    files = sorted(p.relative_to(tmp_path / "thr") for p in (tmp_path / "thr").rglob("*.ecdc"))
    assert len(files) == 5
    for rel in files:
        assert (tmp_path / "proc" / rel).read_bytes() == (tmp_path / "thr" / rel).read_bytes(), rel


def test_corrupt_file_fails_alone_in_a_decoding_process(tmp_path: Path) -> None:
    src = _tree(tmp_path / "in")
    (src / "a" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10)
    assert _s2(src, tmp_path / "out", "--decode", "processes", "--workers", "2") == 1
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.ecdc")) == ["st 16k.ecdc", "w.ecdc", "x.ecdc",
                                                                        "y é.ecdc", "z.ecdc"]


class _RecordingSink:
    """Takes a second over the first item, then passes items through; notes how far decoding ran."""

    def __init__(self, loader: ProcessLoader):
        self.loader = loader
        self.decoded_while_blocked = -1
        self.keys: list[str] = []

    def add(self, item, payload):
        if not self.keys:
            time.sleep(1.0)
            self.decoded_while_blocked = self.loader.completed
        self.keys.append(item.key)
        return [(item, {"samples": int(payload.audio.shape[-1])})]

    def flush(self):
        return []


def test_read_ahead_is_bounded_while_the_model_is_busy(tmp_path: Path) -> None:
    src = tmp_path / "in"
    for i in range(12):
        write(src / f"f{i:02d}.wav", tone(50 + i, 0.3, 0.05, 24000, 1), 24000)
    items = build_items(src, tmp_path / "out", [".wav"], ".ecdc", True)
    runner = Runner("s2_wav2encodec24", RunOptions(workers=2, progress=False), {})
    with ProcessLoader(AudioLoader(24000, 1), 2) as loader:
        sink = _RecordingSink(loader)
        report = runner.pipeline(items, loader, sink, prefetch=3)
    assert report.ok == 12 and sink.keys == sorted(sink.keys)
    # The first item plus at most `prefetch` more were decoded while the sink held the first one.
    assert 1 <= sink.decoded_while_blocked <= 1 + 3
    assert loader.completed == 12


class _PassSink:
    def add(self, item, payload):
        return [(item, {"samples": int(payload.audio.shape[-1])})]

    def flush(self):
        return []


def test_a_dying_decoder_fails_only_its_file(tmp_path: Path) -> None:
    src = tmp_path / "in"
    for name in ("a.wav", "b.wav", "crash.wav", "c.wav", "d.wav", "e.wav"):
        write(src / name, tone(50, 0.3, 0.1, 24000, 1), 24000)
    items = build_items(src, tmp_path / "out", [".wav"], ".ecdc", True)
    runner = Runner("s2_wav2encodec24", RunOptions(workers=2, progress=False), {})
    with ProcessLoader(CrashingLoader(24000, 1), 2) as loader:
        report = runner.pipeline(items, loader, _PassSink())
        assert loader(items[0]).audio.shape == (1, 2400)  # the replaced pool still serves
    by_key = {r.key: r for r in report.results}
    assert [r.key for r in report.failed] == ["crash.wav"]
    assert "crash.wav: the process decoding this file died" in by_key["crash.wav"].error
    assert report.ok == 5 and all(by_key[k].info == {"samples": 2400} for k in by_key if k != "crash.wav")
    with pytest.raises(DecoderCrashError):
        with ProcessLoader(CrashingLoader(24000, 1), 1) as loader:
            loader(next(it for it in items if it.key == "crash.wav"))


def test_decode_mode_choice() -> None:
    assert decode_in_processes("auto", "cuda") and not decode_in_processes("auto", "cpu")
    assert decode_in_processes("processes", "cpu") and not decode_in_processes("threads", "cuda")
    with pytest.raises(UsageError, match="use one of auto, threads, processes"):
        decode_in_processes("fork", "cpu")
