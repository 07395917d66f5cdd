"""prepare: segments via s1, a track-level deterministic split, links and AudioCraft manifests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import soundfile as sf

from training.audiocraft.egs import (
    ManifestError, PrepareConfig, prepare, read_manifest, split_keys, split_stats,
)
from workflow.errors import UsageError

CFG = PrepareConfig(segment_seconds=1.0, min_segment_seconds=0.5)


def _run(raw: Path, work: Path, cfg: PrepareConfig = CFG):
    return prepare(raw, work / "segments", work / "egs", cfg, progress=False)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_prepare_writes_audiocraft_manifests(audio_tree: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    res = _run(audio_tree, work)
    train, valid = res.splits["train"], res.splits["valid"]
    # 6 tracks × ratio 0.9 → 5 train tracks, 1 valid track, both non-empty.
    assert (train.tracks, valid.tracks) == (5, 1)
    for split in ("train", "valid"):
        entries = _lines(work / "egs" / split / "data.jsonl")
        assert entries == sorted(entries, key=lambda e: e["path"])
        for e in entries:
            assert set(e) == {"path", "duration", "sample_rate", "channels"}
            p = Path(e["path"])
            assert p.is_absolute() and p.is_symlink() and p.parent.is_relative_to(work / "egs" / split)
            target = Path(os.readlink(p))
            assert target.is_absolute() and target.is_relative_to(work / "segments")
            info = sf.info(str(p))
            assert (e["sample_rate"], e["channels"]) == (32000, 1) == (info.samplerate, info.channels)
            assert e["duration"] == pytest.approx(info.frames / 32000, abs=1e-6)
            assert 0.5 <= e["duration"] <= 1.0
    # Every segment is in exactly one split: 2.6 s → 1, 1, 0.6; 3.2 s → 1, 1, 1 (0.2 < 0.5 dropped); …
    n_total = train.files + valid.files
    segs = sorted((work / "segments").rglob("*.wav"))
    assert n_total == len(segs) == 3 + 3 + 2 + 2 + 2 + 2
    # Segments of one track never straddle the split.
    def tracks(split: str) -> set[str]:
        return {os.readlink(e["path"]).rsplit("_", 1)[0] for e in _lines(work / "egs" / split / "data.jsonl")}
    assert not tracks("train") & tracks("valid")
    assert json.loads((work / "egs" / "prepare.json").read_text())["splits"]["train"]["tracks"] == 5


def test_prepare_is_idempotent(audio_tree: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    _run(audio_tree, work)
    manifests = [work / "egs" / s / "data.jsonl" for s in ("train", "valid")]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in manifests}
    links = {p: os.readlink(p) for p in (work / "egs").rglob("*.wav")}
    res = _run(audio_tree, work)
    assert not res.changed
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in manifests} == before
    assert {p: os.readlink(p) for p in (work / "egs").rglob("*.wav")} == links
    assert res.report is not None and res.report.skipped == 6 and res.report.ok == 0


def test_prepare_split_is_deterministic_and_seeded(audio_tree: Path, tmp_path: Path) -> None:
    a = _run(audio_tree, tmp_path / "a")
    b = _run(audio_tree, tmp_path / "b")
    names = lambda w, s: sorted(Path(e["path"]).name for e in _lines(w / "egs" / s / "data.jsonl"))  # noqa: E731
    assert names(tmp_path / "a", "valid") == names(tmp_path / "b", "valid")
    keys = [f"t{i}.wav" for i in range(40)]
    assert split_keys(keys, 0.9, 42) == split_keys(list(reversed(keys)), 0.9, 42)
    assert split_keys(keys, 0.9, 42) != split_keys(keys, 0.9, 7)
    assert sum(v == "train" for v in split_keys(keys, 0.9, 42).values()) == 36
    assert a.splits["valid"].files == b.splits["valid"].files


def test_prepare_reassigns_links_when_ratio_changes(audio_tree: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    _run(audio_tree, work)
    res = _run(audio_tree, work, PrepareConfig(segment_seconds=1.0, min_segment_seconds=0.5, train_ratio=0.5))
    assert (res.splits["train"].tracks, res.splits["valid"].tracks) == (3, 3)
    assert res.splits["train"].links_removed + res.splits["valid"].links_added > 0
    on_disk = {s: sorted(str(p) for p in (work / "egs" / s).rglob("*.wav")) for s in ("train", "valid")}
    listed = {s: sorted(e["path"] for e in _lines(work / "egs" / s / "data.jsonl")) for s in ("train", "valid")}
    assert on_disk == listed  # stale links were removed, nothing dangling or unlisted
    assert all(Path(p).exists() for ps in on_disk.values() for p in ps)


def test_prepare_keeps_going_past_a_corrupt_file(audio_tree: Path, tmp_path: Path) -> None:
    (audio_tree / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wav")
    res = _run(audio_tree, tmp_path / "work")
    assert res.failed == ["broken.wav"]
    assert res.splits["train"].files + res.splits["valid"].files == 14
    assert "broken.wav" in res.summary()


def test_prepare_never_replaces_a_real_file(audio_tree: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    _run(audio_tree, work)
    victim = next((work / "egs" / "train").rglob("*.wav"))
    victim.unlink()
    victim.write_bytes(b"user data")
    with pytest.raises(ManifestError, match="regular file"):
        _run(audio_tree, work)
    assert victim.read_bytes() == b"user data"


def test_prepare_refuses_bad_input(tmp_path: Path, audio_tree: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        _run(tmp_path / "nope", tmp_path / "w")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no audio files"):
        _run(tmp_path / "empty", tmp_path / "w")
    with pytest.raises(UsageError, match="inside input"):
        _run(audio_tree, audio_tree / "work")
    with pytest.raises(UsageError, match="train-ratio"):
        PrepareConfig(train_ratio=1.0)


def test_single_track_splits_its_segments(tmp_path: Path) -> None:
    from .conftest import write_tone

    write_tone(tmp_path / "raw" / "only.wav", 5.0, 32000)
    res = _run(tmp_path / "raw", tmp_path / "work")
    assert (res.splits["train"].files, res.splits["valid"].files) == (4, 1)


def test_read_manifest_names_each_problem(tmp_path: Path) -> None:
    split = tmp_path / "train"
    with pytest.raises(ManifestError, match="does not exist.*prepare"):
        read_manifest(split)
    split.mkdir()
    with pytest.raises(ManifestError, match="no data.jsonl"):
        read_manifest(split)
    wav = tmp_path / "a.wav"
    sf.write(wav, [0.0] * 100, 32000)
    (split / "data.jsonl").write_text(json.dumps({"path": str(wav), "sample_rate": 32000}) + "\n")
    with pytest.raises(ManifestError, match=r"data.jsonl:1: manifest line lacks duration"):
        read_manifest(split)
    (split / "data.jsonl").write_text(json.dumps({"path": str(tmp_path / "gone.wav"), "duration": 1,
                                                  "sample_rate": 32000}) + "\n")
    with pytest.raises(ManifestError, match="do not exist.*gone.wav"):
        read_manifest(split)
    (split / "data.jsonl").write_text("{not json\n")
    with pytest.raises(ManifestError, match="not JSON"):
        read_manifest(split)
    (split / "data.jsonl").write_text("")
    with pytest.raises(ManifestError, match="empty"):
        read_manifest(split)


def test_split_stats(audio_tree: Path, tmp_path: Path) -> None:
    _run(audio_tree, tmp_path / "w")
    st = split_stats(read_manifest(tmp_path / "w" / "egs" / "train"))
    assert st["sample_rates"] == [32000] and st["channels"] == [1]
    assert 0.5 <= st["min_s"] <= st["max_s"] == 1.0


def test_check_egs(audio_tree: Path, tmp_path: Path) -> None:
    from training.audiocraft.egs import check_egs

    work = tmp_path / "w"
    _run(audio_tree, work)
    stats = check_egs(work / "egs", segment_seconds=1.0)
    assert stats["train"]["files"] + stats["valid"]["files"] == 14
    with pytest.raises(ManifestError, match="expected \\[48000\\]"):
        check_egs(work / "egs", sample_rate=48000, segment_seconds=1.0)
    with pytest.raises(ManifestError, match="longer than 0.5 s"):
        check_egs(work / "egs", segment_seconds=0.5)
    # A track listed in both splits is caught.
    valid = work / "egs" / "valid" / "data.jsonl"
    train_line = (work / "egs" / "train" / "data.jsonl").read_text().splitlines()[0]
    valid.write_text(valid.read_text() + train_line + "\n")
    with pytest.raises(ManifestError, match="in both train and valid"):
        check_egs(work / "egs", segment_seconds=1.0)
