"""Staging and swapping a build in, so a crash never leaves a half dataset.

Every build is staged in a temporary sibling of ``OUT`` (same parent, so relative paths resolve
the same) and swapped in only when complete. Splits that are not being built are carried over
unchanged (Arrow files are hard-linked, not rewritten); a crash mid-swap is undone on the next build.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..files import TMP_MARKER, pid_alive
from .config import _abs

log = logging.getLogger(__package__)  # "workflow.hfdata", the logger name from before the split


def _siblings(out: Path, kind: str) -> list[Path]:
    prefix = f".{out.name}{TMP_MARKER}{kind}-"
    if not out.parent.is_dir():
        return []
    return sorted(p for p in out.parent.iterdir() if p.name.startswith(prefix))


def _stale(path: Path) -> bool:
    """A staging/backup folder whose build process is gone (its pid is in the name)."""
    m = re.search(r"-(\d+)-[^-]*$", path.name)
    pid = int(m.group(1)) if m else 0
    return pid <= 0 or (pid != os.getpid() and not pid_alive(pid))


def _recover(out: Path) -> None:
    """Undo what a crash during an earlier build left behind (see :func:`_swap_in`)."""
    olds = [p for p in _siblings(out, "old") if _stale(p)]
    if olds and not out.exists():
        newest = max(olds, key=lambda p: p.stat().st_mtime)
        log.warning("restoring %s from %s (an earlier build was interrupted while swapping)",
                    out, newest.name)
        os.rename(newest, out)
        olds.remove(newest)
    for p in olds + [p for p in _siblings(out, "build") if _stale(p)]:
        log.warning("removing leftover %s from an interrupted build", p)
        shutil.rmtree(p, ignore_errors=True)


def _file_mode(base: int = 0o666) -> int:
    """``base`` filtered by the process umask (temp files and folders are created private)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return base & ~mask


def _swap_in(staged: Path, out: Path) -> None:
    """Replace ``out`` by ``staged``: two renames; a crash in between is undone by :func:`_recover`."""
    if not out.exists():
        os.rename(staged, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}{TMP_MARKER}old-{os.getpid()}-", dir=out.parent))
    os.rmdir(old)
    os.rename(out, old)
    try:
        os.rename(staged, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link a finished file into the staging folder (files are never modified in place)."""
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _carry(src: Path, dst: Path) -> bool:
    """Copy one file or link of a kept split into the staging folder; False if it is missing."""
    if not (src.is_symlink() or src.exists()):
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        return True
    _link_or_copy(str(src), str(dst))
    return True


class _DirCache:
    """Per-build memo of folders made in the staging tree and of link prefixes (each costs
    system calls per file otherwise; a build never changes the folders it links between)."""

    def __init__(self) -> None:
        self.made: set[str] = set()
        self.prefix: dict[tuple[str, str], str] = {}

    def mkdir(self, folder: str) -> None:
        if folder not in self.made:
            os.makedirs(folder, exist_ok=True)
            self.made.add(folder)

    def link_prefix(self, src_dir: str, final_dir: str) -> str:
        """The relative path from ``final_dir`` to ``src_dir``, between the real folders: a
        symlinked parent of either side must not skew the ``..``."""
        key = (src_dir, final_dir)
        got = self.prefix.get(key)
        if got is None:
            got = self.prefix[key] = os.path.relpath(os.path.realpath(_abs(src_dir)),
                                                     os.path.realpath(_abs(final_dir)))
        return got


def _place(src: Path | str, final: Path | str, staged: Path | str, mode: str,
           dirs: _DirCache | None = None) -> None:
    """Materialise ``src`` at ``staged``; a link is relative to where it will finally live."""
    dirs = dirs or _DirCache()
    src, final, staged = os.fspath(src), os.fspath(final), os.fspath(staged)
    dirs.mkdir(os.path.dirname(staged))
    if mode == "link":
        src_dir, name = os.path.split(src)
        link = os.path.join(dirs.link_prefix(src_dir, os.path.dirname(final)), name)
        try:
            os.symlink(link, staged)
        except FileExistsError:  # a kept split's file at the same place: replace it
            os.unlink(staged)
            os.symlink(link, staged)
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(staged)  # never copy through a carried link
    shutil.copy2(src, staged)


@contextlib.contextmanager
def _quiet_datasets(progress: bool) -> Iterator[None]:
    """Silence datasets' own progress bars unless the caller wants bars."""
    import datasets

    was_enabled = not datasets.are_progress_bars_disabled()
    if not progress and was_enabled:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not progress and was_enabled:
            datasets.enable_progress_bars()
