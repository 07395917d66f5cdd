"""files.py: discovery, mirroring, sharding and atomic writes on a real temp tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workflow import files
from workflow.errors import UsageError


def _touch(p: Path, data: bytes = b"x") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_discover_recursive_filters_and_sorts(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for rel in ["b.wav", "a/c.WAV", "a/z/d.flac", "a/notes.txt", ".hidden.wav", "a/._mac.wav",
                ".git/e.wav", f"a/.x{files.TMP_MARKER}1.wav", "sp ace/é.wav", "a/folder.wav/f.txt"]:
        _touch(root / rel)
    (root / "a" / "dangling.wav").symlink_to(root / "nowhere.wav")  # matches by name, is no file
    got = [files.relative_key(p, root) for p in files.discover(root, ".wav,flac")]
    assert got == ["a/c.WAV", "a/z/d.flac", "b.wav", "sp ace/é.wav"]
    flat = [files.relative_key(p, root) for p in files.discover(root, [".wav"], recursive=False)]
    assert flat == ["b.wav"]


def test_discover_multi_dot_suffix_and_exclude(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _touch(root / "x.cond.npy")
    _touch(root / "y.npy")
    _touch(root / "out" / "z.cond.npy")
    got = [files.relative_key(p, root) for p in files.discover(root, ".cond.npy", exclude=[root / "out"])]
    assert got == ["x.cond.npy"]


def test_discover_visits_each_real_directory_once(tmp_path: Path) -> None:
    """Issue 13 item 10: a loop (sub/up -> ..) or a second link to a folder adds no files."""
    root = tmp_path / "in"
    _touch(root / "a.wav")
    _touch(root / "sub" / "b.wav")
    os.symlink("..", root / "sub" / "up")  # a loop back to the root
    os.symlink("sub", root / "again")  # a second name for sub/
    outside = _touch(tmp_path / "elsewhere" / "c.wav").parent
    os.symlink(outside, root / "ext")  # a link out of the tree is followed, once
    os.symlink(outside, root / "zz_ext2")
    got = [files.relative_key(p, root) for p in files.discover(root, ".wav")]
    assert got == ["a.wav", "ext/c.wav", "sub/b.wav"]


def test_discover_never_walks_into_the_output_tree(tmp_path: Path) -> None:
    """Issue 13 item 10: a link from the input into the output folder is not followed."""
    root, out = tmp_path / "in", tmp_path / "out"
    _touch(root / "a.wav")
    _touch(out / "a.wav")
    _touch(out / "deep" / "b.wav")
    os.symlink("../out", root / "out_link")
    os.symlink("../out/deep", root / "deep_link")
    got = [files.relative_key(p, root) for p in files.discover(root, ".wav", exclude=[out])]
    assert got == ["a.wav"]


def test_discover_missing_root_and_bad_extensions(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        files.discover(tmp_path / "nope")
    with pytest.raises(UsageError):
        files.normalize_extensions(" , ")
    assert files.normalize_extensions("WAV flac .Mp3") == (".wav", ".flac", ".mp3")


def test_mirror_path(tmp_path: Path) -> None:
    src = tmp_path / "in" / "a" / "b.flac"
    assert files.mirror_path(src, tmp_path / "in", tmp_path / "out", ".ecdc") == tmp_path / "out" / "a" / "b.ecdc"
    assert files.mirror_path(src, tmp_path / "in", tmp_path / "out") == tmp_path / "out" / "a" / "b.flac"


def test_shards_partition_and_are_stable_across_processes() -> None:
    keys = [f"dir{i % 7}/file_{i}.wav" for i in range(500)]
    parts = [files.select_shard(keys, i, 4) for i in range(4)]
    flat = sorted(i for p in parts for i in p)
    assert flat == list(range(500))  # every item in exactly one shard
    assert all(60 < len(p) < 190 for p in parts)  # roughly balanced
    # A different interpreter (different hash seed) must agree: SLURM arrays run on many hosts.
    code = "from workflow.files import shard_of; print([shard_of(f'dir{i%7}/file_{i}.wav', 4) for i in range(50)])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "123"}).stdout
    assert out.strip() == str([files.shard_of(k, 4) for k in keys[:50]])
    with pytest.raises(UsageError):
        files.select_shard(keys, 4, 4)
    with pytest.raises(UsageError):
        files.select_shard(keys, 0, 0)


def test_output_inside_input_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="inside input"):
        files.check_output_not_inside_input(tmp_path, tmp_path / "out")
    with pytest.raises(UsageError):
        files.check_output_not_inside_input(tmp_path, tmp_path)
    files.check_output_not_inside_input(tmp_path / "a", tmp_path / "b")


def test_atomic_path_success_and_failure(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "out.wav"
    with files.atomic_path(target) as tmp:
        assert tmp.suffix == ".wav" and tmp.parent == target.parent
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    with files.atomic_path(tmp_path / "perm.txt") as tmp:
        tmp.write_text("x")
    # The usual permissions (0666 & ~umask), not mkstemp's 0600.
    assert (tmp_path / "perm.txt").stat().st_mode & 0o777 == 0o666 & ~files._UMASK
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"new"  # old content intact
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.wav"]  # no temp left


def _temp_of_dead_writer(target: Path) -> Path:
    """The temp file a run killed mid-write leaves: made by temp_sibling in a process now gone."""
    code = f"from workflow import files; print(files.temp_sibling({str(target)!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout
    return Path(out.strip())


def test_remove_stale_temps_keeps_live_and_recent_writers(tmp_path: Path) -> None:
    """Issue 13 item 13: a dead run's `.stem.tmp-*` goes; a live writer's or a recent one stays."""
    out = tmp_path / "out"
    out.mkdir()
    dead = _temp_of_dead_writer(out / "a.wav")
    assert dead.exists() and dead.name.startswith(f".a{files.TMP_MARKER}")
    live = files.temp_sibling(out / "b.wav")  # this process: a writer still at work
    other_host = _touch(out / f".c{files.TMP_MARKER}123@ffffff-x.wav")  # pid unknowable: by age
    old_style = _touch(out / f".d{files.TMP_MARKER}k2j3.wav")
    os.utime(old_style, (1, 1))  # older than STALE_TEMP_SECONDS
    keep = _touch(out / "e.wav")
    removed = files.remove_stale_temps([out, tmp_path / "missing"])
    assert sorted(removed) == sorted([dead, old_style])
    assert not dead.exists() and not old_style.exists()
    assert live.exists() and other_host.exists() and keep.exists()


def test_commit_group_renames_first_last(tmp_path: Path) -> None:
    finals = [tmp_path / f"seg_{i}.wav" for i in range(3)]
    tmps = [files.temp_sibling(f) for f in finals]
    for t in tmps:
        t.write_bytes(b"a")
    files.commit_group(list(zip(tmps, finals)))
    assert all(f.exists() for f in finals) and not any(t.exists() for t in tmps)

    # If the commit dies part-way, the first output (the "done" marker) must be the one missing.
    finals2 = [tmp_path / f"b_{i}.wav" for i in range(3)]
    tmps2 = [files.temp_sibling(f) for f in finals2]
    for t in tmps2[1:]:
        t.write_bytes(b"a")
    tmps2[0].unlink()  # its rename will fail, simulating a kill before the last step
    with pytest.raises(FileNotFoundError):
        files.commit_group(list(zip(tmps2, finals2)))
    assert not finals2[0].exists() and finals2[1].exists() and finals2[2].exists()


def test_link_or_copy_links_replaces_and_copies(tmp_path: Path) -> None:
    src = _touch(tmp_path / "src" / "a.mid", b"midi")
    dst = tmp_path / "out" / "deep" / "a.mid"
    assert files.link_or_copy(src, dst) is True  # same filesystem: a hard link
    assert dst.read_bytes() == b"midi" and os.path.samefile(src, dst)
    src2 = _touch(tmp_path / "src" / "b.mid", b"new bytes")
    assert files.link_or_copy(src2, dst, link=False) is False  # an existing dst is replaced,
    assert dst.read_bytes() == b"new bytes" and not os.path.samefile(src2, dst)
    assert src.read_bytes() == b"midi"  # not written through the old link
    assert sorted(p.name for p in dst.parent.iterdir()) == ["a.mid"]  # no temp left


def test_link_or_copy_falls_back_to_copy_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _touch(tmp_path / "a.bin", b"data")
    dst = tmp_path / "out" / "a.bin"

    def no_links(*args: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(files.os, "link", no_links)
    assert files.link_or_copy(src, dst) is False
    assert dst.read_bytes() == b"data" and not os.path.samefile(src, dst)
    with pytest.raises(FileNotFoundError):
        files.link_or_copy(tmp_path / "missing.bin", tmp_path / "out" / "b.bin")
    assert sorted(p.name for p in dst.parent.iterdir()) == ["a.bin"]  # the failed temp is gone


def test_write_if_changed_keeps_unchanged_files(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "data.jsonl"
    assert files.write_text_if_changed(path, "a\n") is True
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert files.write_text_if_changed(path, "a\n") is False
    assert path.stat().st_mtime_ns == 1_000_000_000  # untouched: same bytes, same mtime
    assert files.write_text_if_changed(path, "a\r\n") is True  # bytes differ, so it is rewritten
    assert path.read_bytes() == b"a\r\n"
    assert files.write_bytes_if_changed(path, b"\xff\xfe") is True
    assert files.write_bytes_if_changed(path, b"\xff\xfe") is False
    assert files.write_text_if_changed(path, "é") is True  # a non-UTF-8 file is just different
    assert path.read_text(encoding="utf-8") == "é"
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.jsonl"]
