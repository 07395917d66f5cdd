"""File discovery, input→output path mirroring, stable sharding and atomic writes.

Every stage builds its work list here so that all stages agree on which files exist, where their
outputs go and which shard owns them. Writes go to a temporary sibling and are `os.replace`d into
place, so a killed run never leaves a half-written output that a re-run would mistake for done.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from .errors import UsageError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
TMP_MARKER = ".tmp-"
_THREAD_LOCK = threading.Lock()
# Temp names carry their writer, ``.<stem>.tmp-<pid>@<host tag>-<random><suffix>``, so a later run
# can tell a dead run's leftovers from a live writer's file (see remove_stale_temps).
_HOST_TAG = hashlib.sha1(platform.node().encode("utf-8")).hexdigest()[:6]
_TEMP_WRITER = re.compile(re.escape(TMP_MARKER) + r"(\d+)@([0-9a-f]{6})-")
STALE_TEMP_SECONDS = 6 * 3600  # a temp with no live writer we can check is stale after this


def _read_umask() -> int:
    """The process umask, read once at import (os.umask can only be read by setting it, which is
    not thread-safe while other threads create files)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def normalize_extensions(extensions: Iterable[str] | str) -> tuple[str, ...]:
    """Lower-case extensions with a leading dot: ``"WAV,flac"`` → ``(".wav", ".flac")``."""
    if isinstance(extensions, str):
        extensions = extensions.replace(",", " ").split()
    out = []
    for ext in extensions:
        ext = ext.strip().lower()
        if not ext:
            continue
        out.append(ext if ext.startswith(".") else "." + ext)
    if not out:
        raise UsageError("no file extensions given; pass e.g. --extensions .wav .flac")
    return tuple(dict.fromkeys(out))


def _dir_id(path: str) -> tuple[int, int] | None:
    """(device, inode) of a folder: the identity of a real directory, however it is reached."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _walk_once(root: Path, excluded: Sequence[str]) -> Iterator[tuple[str, list[str]]]:
    """``(dirpath, filenames)`` for every real directory under ``root``, each exactly once.

    The tree itself is walked first without following links; a symlink to a folder is followed
    afterwards only if its target was not visited yet, so a loop (``sub/up -> ..``) or a second
    name for a folder adds nothing, and links out of the tree are read once. Folders in
    ``excluded`` (resolved paths, e.g. the output folder) and everything below them are skipped.
    """
    seen: set[tuple[int, int]] = set()
    starts = [str(root)]
    while starts:
        links: list[str] = []
        for start in starts:
            ident = _dir_id(start)
            if ident is None or ident in seen or _inside(start, excluded):
                continue
            seen.add(ident)
            for dirpath, dirnames, filenames in os.walk(start):
                keep = []
                for d in sorted(x for x in dirnames if not x.startswith(".")):
                    full = os.path.join(dirpath, d)
                    if os.path.islink(full):
                        links.append(full)  # visited after the real folders, if still unseen
                        continue
                    ident = _dir_id(full)
                    if ident is not None and ident not in seen and not _inside(full, excluded):
                        seen.add(ident)
                        keep.append(d)
                dirnames[:] = keep
                yield dirpath, filenames
        starts = sorted(links)


def _inside(path: str, excluded: Sequence[str]) -> bool:
    if not excluded:
        return False
    real = os.path.realpath(path)
    return any(real == e or real.startswith(e.rstrip(os.sep) + os.sep) for e in excluded)


def discover(
    root: Path | str,
    extensions: Iterable[str] | str = AUDIO_EXTENSIONS,
    *,
    recursive: bool = True,
    exclude: Sequence[Path] = (),
) -> list[Path]:
    """Files under ``root`` whose suffix is in ``extensions``, sorted by relative path.

    Hidden files (``.foo``, macOS ``._foo``) and our own temporary files are skipped; so is
    anything inside a folder listed in ``exclude`` (stages pass their output folder), however it
    is reached. Each real directory is read once: symlinked folders are followed, but a loop or a
    second link to the same folder does not list its files again.
    """
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"input folder not found: {root}")
    exts = normalize_extensions(extensions)
    multi = tuple(e for e in exts if e.count(".") > 1)  # e.g. ".cond.npy"
    excluded = [os.path.realpath(e) for e in exclude]
    found: list[tuple[str, str]] = []  # (POSIX path relative to root: the sort key, full path)
    top = str(root)
    walker = _walk_once(root, excluded) if recursive else [(top, os.listdir(root))]
    for dirpath, filenames in walker:
        rel_dir = "" if dirpath == top else os.path.relpath(dirpath, top).replace(os.sep, "/") + "/"
        for name in filenames:  # string tests first: only matching names cost a stat
            if name.startswith(".") or TMP_MARKER in name:
                continue
            low = name.lower()
            if os.path.splitext(low)[1] not in exts and not any(low.endswith(m) for m in multi):
                continue
            full = os.path.join(dirpath, name)
            if os.path.isfile(full):
                found.append((rel_dir + name, full))
    found.sort()
    return [Path(full) for _, full in found]


def relative_key(path: Path, root: Path) -> str:
    """The POSIX relative path of ``path`` under ``root``: the stable identity of an item."""
    return Path(path).relative_to(root).as_posix()


def mirror_path(src: Path, in_root: Path, out_root: Path, suffix: str | None = None) -> Path:
    """Where the output for ``src`` goes: same relative path under ``out_root``.

    ``suffix`` replaces the file's extension (``.wav`` → ``.ecdc``); multi-dot suffixes such as
    ``.cond.npy`` are appended to the stem.
    """
    rel = Path(src).relative_to(in_root)
    out = Path(out_root) / rel
    if suffix is not None:
        out = out.with_name(out.stem + suffix)
    return out


def shard_of(key: str, shard_count: int) -> int:
    """Stable shard number for a relative path (same on every machine and Python run)."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shard_count


def check_shard_args(shard_index: int, shard_count: int) -> None:
    if shard_count < 1:
        raise UsageError(f"--shard-count must be >= 1, got {shard_count}")
    if not 0 <= shard_index < shard_count:
        raise UsageError(
            f"--shard-index must be in [0, {shard_count - 1}] for --shard-count {shard_count}, "
            f"got {shard_index}"
        )


def select_shard(keys: Sequence[str], shard_index: int, shard_count: int) -> list[int]:
    """Indices of ``keys`` that belong to shard ``shard_index`` of ``shard_count``."""
    check_shard_args(shard_index, shard_count)
    if shard_count == 1:
        return list(range(len(keys)))
    return [i for i, k in enumerate(keys) if shard_of(k, shard_count) == shard_index]


def check_output_not_inside_input(in_root: Path, out_root: Path) -> None:
    """Refuse an output folder inside the input folder (a re-run would read its own outputs)."""
    src = Path(in_root).resolve()
    dst = Path(out_root).resolve()
    if dst == src or src in dst.parents:
        raise UsageError(
            f"output folder {out_root} is inside input folder {in_root}; "
            "choose an output folder outside the input tree"
        )


def temp_sibling(path: Path) -> Path:
    """A unique temporary name next to ``path`` that keeps its extension (format inference)."""
    path = Path(path)
    prefix = f".{path.stem}{TMP_MARKER}{os.getpid()}@{_HOST_TAG}-"
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=path.suffix, dir=path.parent)
    try:
        # mkstemp makes 0600 files; outputs should get the usual permissions (0666 & ~umask).
        os.fchmod(fd, 0o666 & ~_UMASK)
    finally:
        os.close(fd)
    return Path(tmp)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def temp_is_stale(path: Path, max_age: float = STALE_TEMP_SECONDS) -> bool:
    """Whether ``path`` is a temp file (:func:`temp_sibling`) that no live writer will finish.

    Stale: its writer (pid and host in the name) is a dead process on this host, or the file is
    older than ``max_age`` seconds (writers on other hosts, older names without a writer).
    """
    name = Path(path).name
    if not name.startswith(".") or TMP_MARKER not in name:
        return False
    m = _TEMP_WRITER.search(name)
    if m and m.group(2) == _HOST_TAG:
        pid = int(m.group(1))
        if pid == os.getpid():
            return False
        if not pid_alive(pid):
            return True
    try:
        return time.time() - os.lstat(path).st_mtime > max_age
    except FileNotFoundError:
        return False


def remove_stale_temps(folders: Iterable[Path | str], max_age: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete the stale temp files (:func:`temp_is_stale`) directly inside ``folders``.

    Runs call this on their output folders, so the hidden ``.<stem>.tmp-*`` files of a killed run
    do not pile up; a live writer's temp (this host) or a recent one (another host) is kept.
    """
    removed: list[Path] = []
    for folder in dict.fromkeys(Path(f) for f in folders):
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if TMP_MARKER in entry.name and entry.is_file(follow_symlinks=False) \
                    and temp_is_stale(Path(entry.path), max_age):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                removed.append(Path(entry.path))
    if removed:
        log.info("removed %d stale temp file(s) left by interrupted runs, e.g. %s",
                 len(removed), removed[0])
    return removed


def read_at(path: str | os.PathLike[str], offset: int, length: int) -> tuple[bytes, int]:
    """Up to ``length`` bytes from ``offset`` (one ``pread``) and the file's size at that moment:
    readers of a window compare the size with the one they parsed the header at."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset), os.fstat(fd).st_size
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces ``path``, on error it is removed.

    >>> with atomic_path(out) as tmp:
    ...     soundfile.write(tmp, audio, sr)

    An OSError about the temp file (a full disk, an unwritable folder) is re-raised naming
    ``path``, so the message says which output could not be written.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(path)
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        if isinstance(exc, OSError) and _about_temp(exc):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def _about_temp(exc: OSError) -> bool:
    """Whether ``exc`` names no file or one of our temp files (not an unrelated path)."""
    if exc.errno is None:
        return False
    name = os.path.basename(os.fsdecode(exc.filename)) if exc.filename is not None else ""
    return not name or (name.startswith(".") and TMP_MARKER in name)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def commit_group(pairs: Sequence[tuple[Path, Path]]) -> None:
    """Move several finished temp files into place, the first pair last.

    Stages that write several outputs per input check only the first output to decide "done";
    renaming it last means a kill mid-commit leaves the item looking unfinished, so it is redone.
    """
    for tmp, final in reversed(pairs):
        os.replace(tmp, final)


@contextlib.contextmanager
def locked(path: Path | str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (which need not exist) across processes and threads.

    The lock is ``flock`` on a hidden ``.<name>.lock`` sibling, removed on release: a waiter that
    wakes on a removed lock file retries on the new one. A process that dies releases its lock
    (the kernel drops it); its left-over lock file is reused and removed by the next holder.
    Without ``fcntl`` (Windows) this only serialises threads of one process.
    """
    path = Path(path)
    lock = path.with_name(f".{path.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        with _THREAD_LOCK:
            yield
        return
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = os.fstat(fd)
            try:
                now = os.stat(lock)
            except FileNotFoundError:
                now = None
        except BaseException:
            os.close(fd)
            raise
        if now is not None and (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev):
            break
        os.close(fd)  # the holder before us removed this file: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        os.close(fd)


def link_or_copy(src: Path | str, dst: Path | str, *, link: bool = True) -> bool:
    """Put a copy of ``src`` at ``dst`` atomically: a hard link when possible, else a real copy.

    The link (or copy, with ``shutil.copy2`` metadata) is made under a temporary sibling name and
    ``os.replace``d onto ``dst``, so ``dst`` is either its old self or complete, never half
    written. ``link=False`` always copies. Returns True when ``dst`` is a hard link to ``src``,
    False when it is a copy (``link=False``, another filesystem, or links unsupported).
    """
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(dst)
    linked = False
    try:
        if link:
            tmp.unlink()  # os.link will not replace the placeholder temp_sibling made
            try:
                os.link(src, tmp)
                linked = True
            except OSError:  # another filesystem, or links unsupported
                pass
        if not linked:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return linked


def write_bytes_if_changed(path: Path | str, data: bytes) -> bool:
    """Write ``data`` to ``path`` atomically unless the file already holds exactly these bytes.

    An unchanged file keeps its bytes and its mtime. Returns whether ``path`` was written. A file
    that cannot be read (missing, a folder's permissions) counts as changed.
    """
    path = Path(path)
    try:
        if path.is_file() and path.read_bytes() == data:
            return False
    except OSError:
        pass
    atomic_write_bytes(path, data)
    return True


def write_text_if_changed(path: Path | str, text: str) -> bool:
    """:func:`write_bytes_if_changed` for UTF-8 ``text`` (compared as bytes, newlines included)."""
    return write_bytes_if_changed(path, text.encode("utf-8"))
