"""Resumable, verified HTTP downloads and safe archive extraction, free of any dataset catalogue.

The mechanism under ``training.music.download_datasets`` (:func:`download_file`,
:func:`safe_extract`) and the AudioCraft FMA fetcher (``format_bytes``, ``parse_content_range``):
one place for resume, retries, checksums and refusing archives that would escape their folder.
Errors derive from :class:`FetchError`. Behaviour in detail: README.md, "The music-model suite".
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import ssl
import stat
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from workflow.errors import WorkflowError
from workflow.files import atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "USER_AGENT",
    "CHUNK_BYTES",
    "DISK_MARGIN_BYTES",
    "MARKER_SCHEMA",
    "FOUND_IN_PLACE",
    "FetchError",
    "DownloadError",
    "ChecksumMismatchError",
    "UnsafeArchiveError",
    "ExtractionError",
    "RemoteFile",
    "DownloadResult",
    "download_file",
    "sha256_file",
    "format_bytes",
    "parse_content_range",
    "safe_extract",
]

USER_AGENT = "enc-hf-workflow-dataset-downloader/0.1 (python-urllib)"
CHUNK_BYTES = 1 << 20
DISK_MARGIN_BYTES = 64 << 20
MARKER_SCHEMA = 1


# ─── errors ────────────────────────────────────────────────────────────────────────────────────


class FetchError(WorkflowError):
    """Base class for failures of a download, its verification or an archive's extraction."""


class DownloadError(FetchError):
    """A file could not be fetched (HTTP error, unreachable host, retries exhausted, no space)."""


class ChecksumMismatchError(DownloadError):
    """A downloaded or placed file does not match the size or SHA-256 its publisher gives."""


class UnsafeArchiveError(FetchError):
    """An archive member would land outside the extraction folder; the archive is refused."""


class ExtractionError(FetchError):
    """An archive is corrupt or unreadable, or the extraction folder is in an unexpected state."""


# ─── what to fetch, small helpers ──────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch, with only the facts that could be confirmed about it.

    ``size_bytes`` / ``sha256`` are enforced (a mismatch fails); they are set only where the
    publisher gives them. ``reference_sha256`` is a third-party record: compared, logged, never
    enforced. ``checksum_source`` says where each value comes from.
    """

    url: str
    filename: str
    approx_size: str = "not published"
    size_bytes: int | None = None
    sha256: str | None = None
    reference_sha256: str | None = None
    checksum_source: str = "the publisher gives no checksum"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def _unlink(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def sha256_file(path: Path, *, progress: bool = False) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as fh, tqdm(
        total=size, unit="B", unit_scale=True, unit_divisor=1024,
        desc=f"sha256 {path.name}", disable=not progress or size < (64 << 20), leave=False,
    ) as bar:
        for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""):
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def format_bytes(n: int | None) -> str:
    """A byte count for people: ``512 B``, ``1.5 MiB``; ``unknown size`` for None."""
    if n is None:
        return "unknown size"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


# ─── downloading ───────────────────────────────────────────────────────────────────────────────


@dataclass
class DownloadResult:
    """What happened to one remote file."""

    path: Path
    url: str
    size_bytes: int
    sha256: str
    fetched: bool  # False: a verified file was already there (or placed by hand)
    checks: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    origin: str = "downloaded"  # or "file found in place (not downloaded by this tool)"


class _TransientError(Exception):
    """A failure worth retrying (connection dropped, timeout, 5xx); the .part is kept."""


FOUND_IN_PLACE = "file found in place (not downloaded by this tool)"


def _marker_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".verified.json")


def _part_paths(dest: Path) -> tuple[Path, Path]:
    part = dest.with_name(dest.name + ".part")
    return part, part.with_name(part.name + ".json")


def parse_content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``bytes a-b/total`` → (a, b, total); ``bytes */total`` → (None, None, total)."""
    if not value:
        return None, None, None
    m = re.match(r"\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$", value)
    if not m:
        return None, None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    end = int(m.group(2)) if m.group(2) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return start, end, total


def _looks_like_archive(filename: str) -> bool:
    return filename.endswith((".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"))


def _open_url(
    url: str, part: Path, part_meta: Path, *, offset: int, meta: dict[str, Any] | None, timeout_s: float, label: str,
) -> Any:
    """The response to one request (a Range request when resuming at ``offset``), or None when
    the server says ``part`` is already whole; HTTP errors are sorted into transient / permanent."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        etag = (meta or {}).get("etag")
        validator = etag if etag and not etag.startswith("W/") else (meta or {}).get("last_modified")
        if validator:
            headers["If-Range"] = validator
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout_s)  # noqa: S310 (http/https only)
    except urllib.error.HTTPError as exc:
        try:
            if exc.code == 416 and offset:
                _, _, total = parse_content_range(exc.headers.get("Content-Range"))
                if total is not None and total == offset:
                    log.info("%s: %s already holds all %d bytes", label, part.name, total)
                    return None
                _unlink(part, part_meta)
                raise _TransientError("server refused the resume range (HTTP 416); restarting") from exc
            if exc.code in (408, 425, 429) or exc.code >= 500:
                raise _TransientError(f"HTTP {exc.code} {exc.reason}") from exc
            raise DownloadError(
                f"{url} answered HTTP {exc.code} {exc.reason}"
                + (" (the publisher may require registration or a login)" if exc.code in (401, 403) else "")
            ) from exc
        finally:
            exc.close()
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise DownloadError(
                f"{url}: the server's TLS certificate could not be verified ({reason}); check the "
                "system clock and CA certificates (a proxy that intercepts TLS causes this too)"
            ) from exc
        raise _TransientError(f"could not reach the server: {reason}") from exc


def _body_plan(
    response: Any, url: str, part: Path, part_meta: Path, *, offset: int, meta: dict[str, Any] | None, label: str,
) -> tuple[int, int | None, str]:
    """(offset, total, file mode) for the body of ``response``: resume (206) or restart (200)."""
    status = response.status
    ctype = response.headers.get("Content-Type", "") or ""
    if ctype.lower().startswith("text/html") and _looks_like_archive(part.name[: -len(".part")]):
        raise DownloadError(
            f"{url} returned an HTML page instead of the archive (Content-Type {ctype}); the "
            "publisher probably requires registration, a form or a login first"
        )
    if status == 206:
        start, _, total = parse_content_range(response.headers.get("Content-Range"))
        if start != offset:
            _unlink(part, part_meta)
            raise _TransientError(
                f"server resumed at byte {start} instead of {offset}; restarting from 0"
            )
        if total is None and response.headers.get("Content-Length"):
            total = offset + int(response.headers["Content-Length"])
        if meta and meta.get("total") not in (None, total):
            _unlink(part, part_meta)
            raise _TransientError("the file on the server changed size; restarting from 0")
        return offset, total, "ab"
    if status == 200:
        if offset:
            log.info(
                "%s: server answered 200 to a Range request (no resume support, or the file "
                "changed); restarting from byte 0", label,
            )
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        _write_json(part_meta, {
            "url": url, "etag": response.headers.get("ETag"),
            "last_modified": response.headers.get("Last-Modified"), "total": total,
            "started_at": _now(),
        })
        return 0, total, "wb"
    raise DownloadError(f"{url} answered an unexpected HTTP {status}")


def _transfer(
    url: str, part: Path, part_meta: Path, *, timeout_s: float, progress: bool, label: str,
) -> None:
    """One HTTP request that appends to (or restarts) ``part``. Returns when the body is whole.

    Raises :class:`_TransientError` for anything a retry can fix (the bytes received so far stay
    in ``part`` so the retry resumes), :class:`DownloadError` for permanent failures.
    """
    meta = _read_json(part_meta) if part.exists() else None
    offset = part.stat().st_size if part.exists() else 0
    if offset and (meta is None or meta.get("url") != url):
        log.info("%s: discarding %s (%d bytes) of unknown origin; starting over", label, part, offset)
        _unlink(part, part_meta)
        meta, offset = None, 0
    response = _open_url(url, part, part_meta, offset=offset, meta=meta, timeout_s=timeout_s, label=label)
    if response is None:
        return
    with response:
        offset, total, mode = _body_plan(response, url, part, part_meta, offset=offset, meta=meta, label=label)
        if total is not None:
            free = shutil.disk_usage(part.parent).free
            if free < (total - offset) + DISK_MARGIN_BYTES:
                raise DownloadError(
                    f"not enough free space in {part.parent} for {url}: need "
                    f"{format_bytes(total - offset)} more, {format_bytes(free)} free"
                )
        with open(part, mode) as fh, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=label, disable=not progress, leave=True, dynamic_ncols=True,
        ) as bar:
            try:
                while True:
                    chunk = response.read(CHUNK_BYTES)
                    if not chunk:
                        break
                    fh.write(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
                raise _TransientError(f"connection broke after {fh.tell()} bytes: {exc}") from exc
    size = part.stat().st_size
    if total is not None and size < total:
        raise _TransientError(f"connection closed after {size} of {total} bytes")
    if total is not None and size > total:
        _unlink(part, part_meta)
        raise _TransientError(f"received {size} bytes, more than the announced {total}; restarting")


def _verify(
    remote: RemoteFile, path: Path, *, enforce: bool, progress: bool,
) -> tuple[str, dict[str, str]]:
    """Check ``path`` against what the publisher gives; return (sha256, what was checked)."""
    size = path.stat().st_size
    checks: dict[str, str] = {}
    if remote.size_bytes is None:
        checks["size"] = "no size published; measured size recorded"
    else:
        checks["size"] = _compare(path, f"{size} bytes", size == remote.size_bytes,
                                  str(remote.size_bytes), f"matches {remote.size_bytes} ({remote.checksum_source})",
                                  remote.checksum_source, enforce)
    digest = sha256_file(path, progress=progress)
    if remote.sha256 is None:
        checks["sha256"] = "no checksum published; measured sha256 recorded"
    else:
        checks["sha256"] = _compare(path, f"sha256 {digest}", digest == remote.sha256.lower(),
                                    remote.sha256, f"matches ({remote.checksum_source})",
                                    remote.checksum_source, enforce)
    if remote.reference_sha256 is not None:
        if digest == remote.reference_sha256.lower():
            checks["reference_sha256"] = "matches the third-party record (not enforced)"
        else:
            log.warning(
                "%s: sha256 %s differs from the third-party record %s (not enforced; the "
                "publisher gives no checksum)", path.name, digest, remote.reference_sha256,
            )
            checks["reference_sha256"] = f"differs from the third-party record {remote.reference_sha256}"
    return digest, checks


def _compare(path: Path, measured: str, ok: bool, expected: str, match: str,
             source: str, enforce: bool) -> str:
    """One published value checked: the record line, or raise (enforced) / warn (--no-checksum)."""
    if ok:
        return match
    msg = f"{path.name}: {measured}, but {source} says {expected}"
    if enforce:
        raise ChecksumMismatchError(msg)
    log.warning("%s (not enforced: --no-checksum)", msg)
    return f"MISMATCH ignored (--no-checksum): expected {expected}"


def _valid_marker(remote: RemoteFile, dest: Path, *, enforce: bool) -> dict[str, Any] | None:
    marker = _read_json(_marker_path(dest))
    if marker is None or marker.get("file") != remote.filename or not dest.is_file():
        return None
    if marker.get("size_bytes") != dest.stat().st_size:
        return None
    if enforce and remote.sha256 and marker.get("sha256") != remote.sha256.lower():
        return None
    return marker


def _adopt_existing(
    remote: RemoteFile, dest: Path, *, enforce_checksum: bool, progress: bool,
) -> DownloadResult | None:
    """The result for a file already at ``dest`` (marked, or placed by hand and verified now); else None."""
    marker_path = _marker_path(dest)
    marker = _valid_marker(remote, dest, enforce=enforce_checksum)
    if marker is not None:
        log.info("%s: already downloaded and verified (%s)", dest, marker_path.name)
        return DownloadResult(dest, remote.url, marker["size_bytes"], marker["sha256"], False,
                              dict(marker.get("checks", {})),
                              origin=str(marker.get("origin", "downloaded")))
    if not dest.is_file():
        return None
    log.info("%s: found without a marker (placed by hand?); verifying it", dest)
    try:
        digest, checks = _verify(remote, dest, enforce=enforce_checksum, progress=progress)
    except ChecksumMismatchError as exc:
        raise ChecksumMismatchError(
            f"{exc}. {dest} was not downloaded by this tool and is left alone: delete it "
            "(or re-run with --force) to download it again"
        ) from exc
    _write_json(marker_path, {
        "schema": MARKER_SCHEMA, "file": remote.filename, "url": remote.url,
        "origin": FOUND_IN_PLACE, "size_bytes": dest.stat().st_size, "sha256": digest,
        "checks": checks, "verified_at": _now(),
    })
    return DownloadResult(dest, remote.url, dest.stat().st_size, digest, False, checks,
                          origin=FOUND_IN_PLACE)


def _transfer_with_retries(
    remote: RemoteFile, part: Path, part_meta: Path, *,
    retries: int, backoff_s: float, timeout_s: float, progress: bool, hint: str,
) -> int:
    """Run :func:`_transfer` until ``part`` is whole; return the number of requests made."""
    label = remote.filename
    requests = 0
    failures = 0
    while True:
        requests += 1
        before = part.stat().st_size if part.exists() else 0
        try:
            _transfer(remote.url, part, part_meta, timeout_s=timeout_s, progress=progress, label=label)
            return requests
        except _TransientError as exc:
            # an attempt that moved the download forward starts the retry count afresh, so a
            # long transfer over a flaky link keeps going as long as it makes progress
            progressed = part.exists() and part.stat().st_size > before
            failures = 1 if progressed else failures + 1
            if failures > retries:
                raise DownloadError(
                    f"could not download {remote.url} after {failures} attempts ({exc}). "
                    f"The {part.stat().st_size if part.exists() else 0} bytes received so far "
                    f"are kept in {part}; re-run to resume. {hint}".rstrip()
                ) from exc
            delay = min(backoff_s * (2 ** (failures - 1)), 60.0)
            log.warning("%s: %s; retry %d/%d in %.0f s", label, exc, failures, retries, delay)
            if delay:
                time.sleep(delay)
        except DownloadError as exc:
            raise DownloadError(f"{exc}. {hint}".rstrip()) from exc


def download_file(
    remote: RemoteFile,
    dest_dir: Path,
    *,
    retries: int = 5,
    backoff_s: float = 2.0,
    timeout_s: float = 60.0,
    progress: bool = True,
    enforce_checksum: bool = True,
    force: bool = False,
    hint: str = "",
) -> DownloadResult:
    """Fetch ``remote`` into ``dest_dir`` with resume, verify it, and write its marker.

    Idempotent: a file whose ``.verified.json`` marker matches is returned without any request;
    a file at the final name without a marker (placed by hand) is verified and adopted.
    A checksum mismatch deletes the partial download, so nothing unverified is ever trusted.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / remote.filename
    part, part_meta = _part_paths(dest)

    if force:
        _unlink(dest, _marker_path(dest), part, part_meta)
    else:
        existing = _adopt_existing(remote, dest, enforce_checksum=enforce_checksum, progress=progress)
        if existing is not None:
            return existing
    requests = _transfer_with_retries(
        remote, part, part_meta, retries=retries, backoff_s=backoff_s, timeout_s=timeout_s,
        progress=progress, hint=hint,
    )
    try:
        digest, checks = _verify(remote, part, enforce=enforce_checksum, progress=progress)
    except ChecksumMismatchError as exc:
        _unlink(part, part_meta)
        raise ChecksumMismatchError(
            f"{remote.url}: {exc}. The download was deleted. If the publisher replaced the file, "
            "check its page and re-run with --no-checksum; otherwise re-run to download again."
        ) from exc
    size = part.stat().st_size
    os.replace(part, dest)
    _unlink(part_meta)
    _write_json(_marker_path(dest), {
        "schema": MARKER_SCHEMA, "file": remote.filename, "url": remote.url,
        "origin": "downloaded", "size_bytes": size, "sha256": digest, "checks": checks,
        "verified_at": _now(),
    })
    log.info("%s: downloaded %s, sha256 %s", dest, format_bytes(size), digest)
    return DownloadResult(dest, remote.url, size, digest, True, checks, requests)


# ─── safe extraction ───────────────────────────────────────────────────────────────────────────


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _member_parts(name: str, archive: Path) -> list[str]:
    """The path components of an archive member name; raises for absolute names and ``..``."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} has an absolute path; the archive was refused and "
            "nothing from it was kept (it may be corrupt or malicious)"
        )
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} contains '..' and would escape the target folder; the "
            "archive was refused and nothing from it was kept"
        )
    return parts


def _member_target(root: str, name: str, archive: Path) -> str:
    """Where member ``name`` would be written, checked to stay inside ``root`` (a realpath).

    The parent folders are resolved with ``realpath`` so a member cannot write through a symlink
    an earlier member created to somewhere outside.
    """
    parts = _member_parts(name, archive)
    if not parts:
        return root
    parent = os.path.realpath(os.path.join(root, *parts[:-1]))
    if not _within(parent, root):
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} resolves outside the target folder through a link; the "
            "archive was refused and nothing from it was kept"
        )
    return os.path.join(parent, parts[-1])


def _check_link(root: str, link_path: str, target: str, name: str, archive: Path, kind: str) -> None:
    """A symlink at ``link_path`` pointing to ``target`` must resolve inside ``root``."""
    norm = target.replace("\\", "/")
    if not norm or norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise UnsafeArchiveError(
            f"{archive}: {kind} member {name!r} points to the absolute path {target!r}; the "
            "archive was refused and nothing from it was kept"
        )
    resolved = os.path.realpath(os.path.join(os.path.dirname(link_path), norm))
    if not _within(resolved, root):
        raise UnsafeArchiveError(
            f"{archive}: {kind} member {name!r} -> {target!r} points outside the target folder; "
            "the archive was refused and nothing from it was kept"
        )


class _LinkGuard:
    """Keeps every symlink an archive creates pointing where it was checked to point.

    A link's target is walked one component at a time from the link's folder: it must stay inside
    the root and may not pass *through* a link (only end on one). Every path walked is recorded,
    and no later member may put a symlink there; so the lexical walk stays what the file system
    resolves (``a -> x/y/../..``, then ``x -> .``, then ``y/`` would otherwise leave ``a`` pointing
    at the root's parent).
    """

    def __init__(self, root: str, archive: Path):
        self.root, self.archive = root, archive
        self.walked: set[str] = set()

    def _refuse(self, what: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"{self.archive}: {what}; the archive was refused and nothing "
                                  "from it was kept (it may be corrupt or malicious)")

    def add(self, link_path: str, target: str, name: str) -> None:
        """Check symlink member ``name`` (to be created at ``link_path``) before it is created."""
        _check_link(self.root, link_path, target, name, self.archive, "symlink")
        if link_path in self.walked:
            raise self._refuse(f"symlink member {name!r} would replace a path that an earlier "
                               "link's target goes through")
        pos, walked = os.path.dirname(link_path), []
        parts = [p for p in target.replace("\\", "/").split("/") if p not in ("", ".")]
        for i, part in enumerate(parts):
            pos = os.path.dirname(pos) if part == ".." else os.path.join(pos, part)
            if not _within(pos, self.root):
                raise self._refuse(f"symlink member {name!r} -> {target!r} leaves the target folder")
            if i < len(parts) - 1 and os.path.islink(pos):
                raise self._refuse(f"symlink member {name!r} -> {target!r} passes through the link "
                                   f"{os.path.relpath(pos, self.root)!r}")
            walked.append(pos)
        self.walked.update(walked)


def _extract_zip(archive: Path, dest: Path, *, progress: bool) -> int:
    root = os.path.realpath(dest)
    links = _LinkGuard(root, archive)
    count = 0
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in tqdm(infos, desc=f"extract {archive.name}", unit="file", disable=not progress,
                         leave=False):
            target = _member_target(root, info.filename, archive)
            mode = (info.external_attr >> 16) & 0o177777
            if stat.S_ISLNK(mode):
                link_to = zf.read(info).decode("utf-8", errors="strict")
                links.add(target, link_to, info.filename)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.symlink(link_to, target)
            elif info.is_dir():
                os.makedirs(target, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                if not _within(os.path.realpath(target), root):
                    raise UnsafeArchiveError(
                        f"{archive}: member {info.filename!r} would be written through a link to "
                        "outside the target folder; the archive was refused"
                    )
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK_BYTES)
            count += 1
    return count


def _extract_tar(archive: Path, dest: Path, *, progress: bool) -> int:
    root = os.path.realpath(dest)
    links = _LinkGuard(root, archive)
    count = 0
    extra: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(archive, "r:*") as tf, tqdm(
        desc=f"extract {archive.name}", unit="file", disable=not progress, leave=False,
    ) as bar:
        for member in tf:
            target = _member_target(root, member.name, archive)
            if member.issym():
                links.add(target, member.linkname, member.name)
            elif member.islnk():
                link_target = _member_target(root, member.linkname, archive)
                if not _within(link_target, root):
                    raise UnsafeArchiveError(
                        f"{archive}: hardlink member {member.name!r} -> {member.linkname!r} points "
                        "outside the target folder; the archive was refused"
                    )
            elif not (member.isfile() or member.isdir()):
                raise UnsafeArchiveError(
                    f"{archive}: member {member.name!r} is a device or FIFO, which no dataset "
                    "needs; the archive was refused and nothing from it was kept"
                )
            try:
                tf.extract(member, path=root, **extra)
            except tarfile.FilterError as exc:  # the stdlib's own check, as a second line
                raise UnsafeArchiveError(f"{archive}: member {member.name!r} refused: {exc}") from exc
            count += 1
            bar.update(1)
    return count


def safe_extract(archive: Path, dest: Path, *, progress: bool = True) -> int:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into ``dest``, refusing unsafe members.

    Returns the number of members extracted. Raises :class:`UnsafeArchiveError` on the first
    member that would land outside ``dest`` (callers extract into a scratch folder and delete it
    on failure, so a refused archive leaves nothing behind), :class:`ExtractionError` when the
    archive is corrupt or of an unknown type.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    try:
        if name.endswith(".zip") or (not _looks_like_archive(name) and zipfile.is_zipfile(archive)):
            return _extract_zip(archive, dest, progress=progress)
        if _looks_like_archive(name) or tarfile.is_tarfile(archive):
            return _extract_tar(archive, dest, progress=progress)
    except UnsafeArchiveError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, UnicodeError) as exc:
        raise ExtractionError(
            f"{archive} could not be extracted ({type(exc).__name__}: {exc}); the file is "
            "probably corrupt: re-run with --force to download it again"
        ) from exc
    raise ExtractionError(
        f"{archive} is neither a zip nor a tar archive; re-run with --force to download it again"
    )
