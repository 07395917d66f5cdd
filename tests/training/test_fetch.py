"""training.fetch.safe_extract on real tar and zip archives: links that change meaning later."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from training.fetch import UnsafeArchiveError, safe_extract

# (name, kind, link target or file data): 'a' is harmless when made, 'x -> .' and the folder
# 'y' then turn its target into the parent of the destination (issue 13 item 15).
RETARGETED = [("a", "link", "x/y/../.."), ("x", "link", "."), ("y", "dir", "")]
# Legit layouts: a chain of links, links into sibling folders, a link to a folder.
LEGIT = [("lib/libfoo.so.1.2", "file", "ok"), ("lib/libfoo.so.1", "link", "libfoo.so.1.2"),
         ("lib/libfoo.so", "link", "libfoo.so.1"), ("doc/foo", "link", "../lib/libfoo.so"),
         ("libdir", "link", "lib"), ("doc/deep/lib", "link", "../../lib/")]


def _tar(members: list[tuple[str, str, str]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            if kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, value
                tf.addfile(info)
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            else:
                info.size = len(value)
                tf.addfile(info, io.BytesIO(value.encode()))
    return buf.getvalue()


def _zip(members: list[tuple[str, str, str]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, kind, value in members:
            info = zipfile.ZipInfo(name + ("/" if kind == "dir" else ""))
            info.create_system = 3
            info.external_attr = {"link": 0o120777, "dir": 0o40755, "file": 0o100644}[kind] << 16
            zf.writestr(info, value.encode())
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_a_link_retargeted_by_later_members_is_refused(fmt: str, tmp_path: Path) -> None:
    archive = tmp_path / f"evil.{fmt}"
    archive.write_bytes((_tar if fmt == "tar" else _zip)(RETARGETED))
    dest = tmp_path / "box" / "dest"
    with pytest.raises(UnsafeArchiveError) as err:
        safe_extract(archive, dest, progress=False)
    assert str(archive) in str(err.value) and "refused" in str(err.value) and "'x'" in str(err.value)
    # whatever was made before the refusal still resolves inside dest
    root = os.path.realpath(dest)
    for p in dest.rglob("*"):
        assert os.path.realpath(p).startswith(root), p


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_a_link_through_a_link_is_refused(fmt: str, tmp_path: Path) -> None:
    members = [("real/sub", "dir", ""), ("hop", "link", "real/sub"), ("b", "link", "hop/../..")]
    archive = tmp_path / f"evil.{fmt}"
    archive.write_bytes((_tar if fmt == "tar" else _zip)(members))
    with pytest.raises(UnsafeArchiveError, match="passes through the link 'hop'"):
        safe_extract(archive, tmp_path / "dest", progress=False)


@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_chains_of_links_inside_dest_are_extracted(fmt: str, tmp_path: Path) -> None:
    archive = tmp_path / f"ok.{fmt}"
    archive.write_bytes((_tar if fmt == "tar" else _zip)(LEGIT))
    dest = tmp_path / "dest"
    assert safe_extract(archive, dest, progress=False) == len(LEGIT)
    for rel in ("lib/libfoo.so", "doc/foo", "libdir/libfoo.so.1", "doc/deep/lib/libfoo.so.1.2"):
        assert (dest / rel).read_text() == "ok", rel
    assert os.path.realpath(dest / "doc" / "foo") == os.path.realpath(dest / "lib" / "libfoo.so.1.2")
