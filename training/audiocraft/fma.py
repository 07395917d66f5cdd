"""``fetch-fma``: the first N tracks of an FMA zip without downloading the whole archive.

``fma_small.zip`` is 7.2 GB; a smoke-test run needs a few dozen tracks. A zip keeps its central
directory at the end, so HTTP ``Range`` requests read the tail, the directory, then one request per
chosen member; members are CRC32-checked and written atomically, and a re-run skips what is there.
A local zip is read the same way (:class:`FileSource`); a local folder is listed. Request counts:
README.md, "AudioCraft training through Dora", **fetch-fma**.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import os
import re
import struct
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from tqdm.auto import tqdm

from training.fetch import format_bytes, parse_content_range
from workflow.errors import WorkflowError
from workflow.files import atomic_path, discover

log = logging.getLogger(__name__)

FMA_SMALL_URL = "https://os.unil.cloud.switch.ch/fma/fma_small.zip"
FMA_AUDIO_EXTENSIONS: tuple[str, ...] = (".mp3", ".wav", ".flac", ".ogg")
USER_AGENT = "enc-hf-workflow-fma-fetch/0.1 (python-urllib)"

_EOCD = struct.Struct("<4sHHHHIIH")  # end of central directory, 22 bytes + comment
_ZIP64_LOCATOR = struct.Struct("<4sIQI")  # 20 bytes, just before the EOCD
_ZIP64_EOCD = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # 46 bytes + name + extra + comment
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes + name + extra
_SIG_EOCD, _SIG_ZIP64_LOCATOR, _SIG_ZIP64_EOCD = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"
_SIG_CENTRAL, _SIG_LOCAL = b"PK\x01\x02", b"PK\x03\x04"

#: Bytes read from the end of the archive first: the EOCD with the longest possible comment,
#: plus the ZIP64 locator and ZIP64 EOCD record in front of it.
TAIL_BYTES = _EOCD.size + 0xFFFF + _ZIP64_LOCATOR.size + _ZIP64_EOCD.size
#: Extra bytes fetched after a member's name to cover its local extra field (which may differ
#: from the central one: ZIP64 sizes, timestamps, alignment padding) in the same request.
LOCAL_HEADER_SLACK = 1024
#: Largest piece of member data fetched (and held in memory) per request.
CHUNK_BYTES = 16 * 1024 * 1024

_STORED, _DEFLATED = 0, 8
_METHOD_NAMES = {1: "shrink", 6: "implode", 9: "deflate64", 12: "bzip2", 14: "lzma", 93: "zstd",
                 95: "xz", 98: "ppmd", 99: "AES encryption"}
_FLAG_ENCRYPTED, _FLAG_UTF8 = 0x1, 0x800


class FmaFetchError(WorkflowError):
    """The FMA subset could not be fetched: bad source, no range support, corrupt member."""


@dataclass(frozen=True)
class ZipMember:
    """One central-directory entry (sizes and offset already resolved through ZIP64 extras)."""

    name: str
    method: int
    crc32: int
    compressed_size: int
    size: int
    header_offset: int
    flags: int = 0


@dataclass
class FetchResult:
    """What :func:`fetch_subset` produced; ``files`` are absolute, in central-directory order."""

    files: list[Path]
    downloaded: int
    skipped: int
    bytes_fetched: int
    source: str


class ByteSource(Protocol):
    """Random access to the bytes of one (possibly remote) file."""

    def size(self) -> int:
        """Total size in bytes."""
        ...

    def read(self, start: int, length: int) -> bytes:
        """Exactly ``length`` bytes from offset ``start`` (raises :class:`FmaFetchError` otherwise)."""
        ...


# ─── byte sources ──────────────────────────────────────────────────────────────────────────────


class FileSource:
    """A local file as a :class:`ByteSource` (the offline fallback for a downloaded zip)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.bytes_read = 0
        self._size: int | None = None

    def size(self) -> int:
        if self._size is None:
            try:
                self._size = self.path.stat().st_size
            except OSError as exc:
                raise FmaFetchError(f"cannot read {self.path}: {exc.strerror}; check the --local path") from exc
        return self._size

    def read(self, start: int, length: int) -> bytes:
        _check_span(start, length, self.size(), str(self.path))
        try:
            with open(self.path, "rb") as fh:
                fh.seek(start)
                data = fh.read(length)
        except OSError as exc:
            raise FmaFetchError(f"cannot read {self.path}: {exc.strerror}") from exc
        if len(data) != length:
            raise FmaFetchError(f"{self.path} shrank while being read (got {len(data)} of {length} bytes "
                                f"at offset {start}); re-run once nothing else is writing it")
        self.bytes_read += len(data)
        return data


class _Transient(Exception):
    """A failure worth retrying: dropped connection, timeout, 5xx, short body."""


class HttpRangeSource:
    """A remote file read with HTTP ``Range`` requests (urllib only).

    The first call fetches the last :data:`TAIL_BYTES` with a suffix range (that also tells the
    size) and keeps them, so the zip's end records (and a small central directory) cost one
    request. ``requests`` counts every HTTP request made, retries included; ``bytes_read``
    counts body bytes received.
    """

    def __init__(self, url: str, *, timeout: float = 30.0, retries: int = 3, backoff: float = 0.5,
                 tail_bytes: int = TAIL_BYTES) -> None:
        self.url = url
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.tail_bytes = tail_bytes
        self.requests = 0
        self.bytes_read = 0
        self._size: int | None = None
        self._etag: str | None = None
        self._tail_start = 0
        self._tail = b""

    def size(self) -> int:
        if self._size is None:
            start, body = self._get(f"bytes=-{self.tail_bytes}", None, None)
            self._tail_start, self._tail = start, body
        assert self._size is not None
        return self._size

    def read(self, start: int, length: int) -> bytes:
        size = self.size()
        _check_span(start, length, size, self.url)
        if length == 0:
            return b""
        if start >= self._tail_start:
            i = start - self._tail_start
            return self._tail[i:i + length]
        return self._get(f"bytes={start}-{start + length - 1}", start, length)[1]

    def _get(self, rng: str, start: int | None, length: int | None) -> tuple[int, bytes]:
        """One ranged GET, retried on transient failures; returns (first byte offset, body)."""
        last: _Transient | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return self._get_once(rng, start, length)
            except _Transient as exc:
                last = exc
                log.info("%s (%s): %s; attempt %d of %d", self.url, rng, exc, attempt + 1, self.retries + 1)
        raise FmaFetchError(
            f"{self.url}: {last} (range {rng}, after {self.retries + 1} attempts); check the network "
            "and re-run (files already fetched are kept), or download the zip and pass --local"
        )

    def _get_once(self, rng: str, start: int | None, length: int | None) -> tuple[int, bytes]:
        self.requests += 1
        request = urllib.request.Request(self.url, headers={
            "Range": rng, "User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)  # noqa: S310 (http/https only)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in (408, 425, 429) or exc.code >= 500:
                raise _Transient(f"HTTP {exc.code} {exc.reason}") from exc
            if exc.code == 416:
                raise FmaFetchError(
                    f"{self.url} refused the byte range {rng} (HTTP 416): the file on the server is "
                    "shorter than its zip directory says; it may have changed, re-run"
                ) from exc
            raise FmaFetchError(
                f"{self.url} answered HTTP {exc.code} {exc.reason}; check the URL, or download the "
                "zip yourself and pass --local"
            ) from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise _Transient(f"could not reach the server: {getattr(exc, 'reason', exc)}") from exc

        with response:  # closing an unread 200 drops the connection: the body is never downloaded
            if response.status == 200:
                total = response.headers.get("Content-Length")
                raise FmaFetchError(
                    f"{self.url} does not support HTTP range requests (it answered 200 to "
                    f"'Range: {rng}'); fetching a subset would download the whole file"
                    + (f" ({format_bytes(int(total))})" if total and total.isdigit() else "")
                    + ". Download it yourself and pass --local PATH, or use a mirror that supports ranges"
                )
            if response.status != 206:
                raise FmaFetchError(f"{self.url} answered an unexpected HTTP {response.status} to 'Range: {rng}'")
            first, last_byte, total = parse_content_range(response.headers.get("Content-Range"))
            if first is None or last_byte is None or total is None:
                raise FmaFetchError(f"{self.url} sent a 206 without a usable Content-Range "
                                    f"({response.headers.get('Content-Range')!r}) for 'Range: {rng}'")
            etag = response.headers.get("ETag")
            if (self._size is not None and total != self._size) or (self._etag and etag and etag != self._etag):
                raise FmaFetchError(f"{self.url} changed on the server while it was being read "
                                    "(size or ETag differs); re-run to start from its new directory")
            expected = (first, total - 1) if start is None else (start, start + (length or 0) - 1)
            if (first, last_byte) != expected:
                raise FmaFetchError(f"{self.url} answered 'Range: {rng}' with bytes {first}-{last_byte}")
            want = last_byte - first + 1
            chunks: list[bytes] = []
            got = 0
            try:
                while got < want:
                    chunk = response.read(min(want - got, 1 << 20))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    got += len(chunk)
            except (OSError, http.client.HTTPException) as exc:
                raise _Transient(f"connection broke after {got} of {want} bytes ({exc!r})") from exc
            self.bytes_read += got
            if got != want:
                raise _Transient(f"short read: got {got} of {want} bytes")
        self._size, self._etag = total, self._etag or etag
        return first, b"".join(chunks)


def _check_span(start: int, length: int, size: int, where: str) -> None:
    if start < 0 or length < 0 or start + length > size:
        raise FmaFetchError(f"{where}: bytes {start}..{start + length} lie outside the file ({size} bytes); "
                            "the zip is truncated or its directory is corrupt")


def _where(src: ByteSource) -> str:
    return str(getattr(src, "url", None) or getattr(src, "path", None) or src)


# ─── zip structures ────────────────────────────────────────────────────────────────────────────


def _find_eocd(tail: bytes, where: str) -> int:
    """Offset of the end-of-central-directory record in ``tail``."""
    fallback = -1
    pos = tail.rfind(_SIG_EOCD)
    while pos >= 0:
        if pos + _EOCD.size <= len(tail):
            comment_len = _EOCD.unpack_from(tail, pos)[7]
            if pos + _EOCD.size + comment_len == len(tail):
                return pos
            if fallback < 0 and pos + _EOCD.size + comment_len < len(tail):
                fallback = pos  # trailing bytes after the comment; zipfile tolerates them too
        pos = tail.rfind(_SIG_EOCD, 0, pos)
    if fallback >= 0:
        return fallback
    raise FmaFetchError(f"{where} is not a zip file (no end-of-central-directory record in its last "
                        f"{len(tail)} bytes); check the URL/path, or that the download is complete")


def read_central_directory(src: ByteSource) -> list[ZipMember]:
    """All entries of the zip's central directory, in directory order.

    Reads the last :data:`TAIL_BYTES` (end records), then the directory unless it lies inside them.
    """
    where = _where(src)
    size = src.size()
    if size < _EOCD.size:
        raise FmaFetchError(f"{where} is not a zip file ({size} bytes); check the URL/path")
    tail_start = size - min(size, TAIL_BYTES)
    tail = src.read(tail_start, size - tail_start)
    eocd = _find_eocd(tail, where)
    _, disk, cd_disk, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, eocd)
    cd_end = tail_start + eocd  # where the directory (or the ZIP64 EOCD record) ends

    loc = eocd - _ZIP64_LOCATOR.size
    if loc >= 0 and tail[loc:loc + 4] == _SIG_ZIP64_LOCATOR:
        _, zip64_disk, rec_offset, disks = _ZIP64_LOCATOR.unpack_from(tail, loc)
        if zip64_disk != 0 or disks > 1:
            raise FmaFetchError(f"{where} is a multi-part (split) zip; join the parts into one file first")
        if rec_offset >= tail_start and rec_offset + _ZIP64_EOCD.size <= size:
            rec = tail[rec_offset - tail_start:rec_offset - tail_start + _ZIP64_EOCD.size]
        else:
            rec = src.read(rec_offset, _ZIP64_EOCD.size)
        if len(rec) != _ZIP64_EOCD.size or rec[:4] != _SIG_ZIP64_EOCD:
            raise FmaFetchError(f"{where}: the ZIP64 locator points at offset {rec_offset}, where there is "
                                "no ZIP64 end-of-central-directory record; the zip is corrupt")
        _, _, _, _, disk, cd_disk, _, count, cd_size, cd_offset = _ZIP64_EOCD.unpack(rec)
        cd_end = rec_offset
    elif count == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        raise FmaFetchError(f"{where}: the end record says ZIP64 but there is no ZIP64 locator; the zip is corrupt")
    if disk != 0 or cd_disk != 0:
        raise FmaFetchError(f"{where} is a multi-part (split) zip; join the parts into one file first")
    if cd_offset + cd_size > cd_end:
        raise FmaFetchError(f"{where}: the central directory (offset {cd_offset}, {cd_size} bytes) runs past "
                            "the end records; the zip is truncated or has data prepended")

    if cd_offset >= tail_start:
        directory = tail[cd_offset - tail_start:cd_offset - tail_start + cd_size]
    else:
        directory = src.read(cd_offset, cd_size)
    members = _parse_central_directory(directory, where)
    if len(members) != count:
        raise FmaFetchError(f"{where}: the end record announces {count} entries but the central directory "
                            f"holds {len(members)}; the zip is corrupt")
    for m in members:
        if m.header_offset + _LOCAL.size + m.compressed_size > cd_offset:
            raise FmaFetchError(f"{where}: member {m.name!r} claims data beyond the start of the central "
                                "directory; the zip is corrupt")
    return members


def _parse_central_directory(data: bytes, where: str) -> list[ZipMember]:
    members: list[ZipMember] = []
    pos = 0
    while pos + _CENTRAL.size <= len(data):
        (sig, _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len, comment_len,
         _, _, _, offset) = _CENTRAL.unpack_from(data, pos)
        if sig != _SIG_CENTRAL:
            raise FmaFetchError(f"{where}: bad central-directory entry at directory byte {pos}; the zip is corrupt")
        pos += _CENTRAL.size
        raw_name = data[pos:pos + name_len]
        extra = data[pos + name_len:pos + name_len + extra_len]
        pos += name_len + extra_len + comment_len
        name = raw_name.decode("utf-8" if flags & _FLAG_UTF8 else "cp437", errors="replace")
        usize, csize, offset = _apply_zip64_extra(extra, usize, csize, offset, name, where)
        members.append(ZipMember(name=name, method=method, crc32=crc, compressed_size=csize, size=usize,
                                 header_offset=offset, flags=flags))
    if pos != len(data):
        raise FmaFetchError(f"{where}: the central directory ends mid-entry; the zip is truncated or corrupt")
    return members


def _apply_zip64_extra(extra: bytes, usize: int, csize: int, offset: int, name: str,
                       where: str) -> tuple[int, int, int]:
    """Replace 0xFFFFFFFF sizes/offset by the 64-bit values of the ZIP64 extra field (0x0001).

    The field holds only the values whose 32-bit slot is saturated, in this order.
    """
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4:pos + 4 + length]
        pos += 4 + length
        if tag != 0x0001:
            continue
        values = [usize, csize, offset]
        i = 0
        for slot in range(3):
            if values[slot] != 0xFFFFFFFF:
                continue
            if i + 8 > len(body):
                raise FmaFetchError(f"{where}: member {name!r} has a truncated ZIP64 extra field; the zip is corrupt")
            values[slot] = struct.unpack_from("<Q", body, i)[0]
            i += 8
        return values[0], values[1], values[2]
    if 0xFFFFFFFF in (usize, csize, offset):
        raise FmaFetchError(f"{where}: member {name!r} needs a ZIP64 extra field but has none; the zip is corrupt")
    return usize, csize, offset


def select_audio_members(members: Sequence[ZipMember], num_tracks: int,
                         extensions: Sequence[str] = FMA_AUDIO_EXTENSIONS) -> list[ZipMember]:
    """The first ``num_tracks`` audio members in directory order (no folders, no ``__MACOSX/``)."""
    if num_tracks < 1:
        raise FmaFetchError(f"the number of tracks must be at least 1 (got {num_tracks})")
    exts = tuple(e.lower() for e in extensions)
    chosen: list[ZipMember] = []
    for m in members:
        name = m.name.replace("\\", "/")
        base = name.rsplit("/", 1)[-1]
        if name.endswith("/") or name.startswith("__MACOSX/") or base.startswith("._"):
            continue
        if base.lower().endswith(exts):
            chosen.append(m)
            if len(chosen) == num_tracks:
                break
    return chosen


def safe_relative_path(name: str, where: str) -> PurePosixPath:
    """``name`` as a relative path that stays inside the output folder, or FmaFetchError."""
    norm = name.replace("\\", "/")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if norm.startswith("/") or re.match(r"[A-Za-z]:", norm) or ".." in parts or not parts or "\0" in norm:
        raise FmaFetchError(f"{where}: refusing unsafe member name {name!r} (absolute, drive letter or '..'); "
                            "this archive is not a genuine FMA zip")
    return PurePosixPath(*parts)


# ─── member extraction ─────────────────────────────────────────────────────────────────────────


def _member_data(src: ByteSource, member: ZipMember, where: str) -> Iterator[bytes]:
    """The member's compressed bytes, in pieces of at most :data:`CHUNK_BYTES`.

    The local header's extra field may be longer than the central one, so the first request
    over-fetches :data:`LOCAL_HEADER_SLACK` bytes; a longer one costs one more request.
    """
    size = src.size()
    off = member.header_offset
    guess = _LOCAL.size + len(member.name.encode("utf-8")) + LOCAL_HEADER_SLACK
    first = src.read(off, min(guess + min(member.compressed_size, CHUNK_BYTES), size - off))
    if len(first) < _LOCAL.size or first[:4] != _SIG_LOCAL:
        raise FmaFetchError(f"{where}: no local header for member {member.name!r} at offset {off}; "
                            "the zip is corrupt")
    name_len, extra_len = _LOCAL.unpack_from(first)[9:11]
    data_start = off + _LOCAL.size + name_len + extra_len
    data_end = data_start + member.compressed_size
    if data_end > size:
        raise FmaFetchError(f"{where}: member {member.name!r} runs past the end of the file; the zip is truncated")
    pos = data_start
    if data_start - off < len(first):
        piece = first[data_start - off:data_end - off]
        pos += len(piece)
        if piece:
            yield piece
    while pos < data_end:
        n = min(CHUNK_BYTES, data_end - pos)
        yield src.read(pos, n)
        pos += n


def extract_member(src: ByteSource, member: ZipMember, dest: Path) -> None:
    """Fetch, decompress and CRC-check ``member``, then write it atomically to ``dest``.

    Nothing is left at ``dest`` (nor a temp file) unless the CRC32 and size match the directory.
    """
    where = _where(src)
    if member.flags & _FLAG_ENCRYPTED:
        raise FmaFetchError(f"{where}: member {member.name!r} is encrypted; this tool cannot decrypt it")
    if member.method not in (_STORED, _DEFLATED):
        label = _METHOD_NAMES.get(member.method, "unknown")
        raise FmaFetchError(
            f"{where}: member {member.name!r} uses compression method {member.method} ({label}); only "
            "stored (0) and deflate (8) are supported: extract the zip with unzip/7z and pass the folder with --local"
        )
    if member.method == _STORED and member.compressed_size != member.size:
        raise FmaFetchError(f"{where}: stored member {member.name!r} has compressed size {member.compressed_size} "
                            f"but size {member.size}; the zip is corrupt")
    problem = f"{where}: member {member.name!r} is corrupt"
    fix = "; re-run to fetch it again, and if it persists the archive itself is damaged"
    with atomic_path(dest) as tmp:
        inflater = zlib.decompressobj(-15) if member.method == _DEFLATED else None
        crc, written = 0, 0
        with open(tmp, "wb") as fh:
            try:
                for piece in _member_data(src, member, where):
                    out = inflater.decompress(piece) if inflater else piece
                    crc, written = zlib.crc32(out, crc), written + len(out)
                    if written > member.size:
                        raise FmaFetchError(f"{problem}: it decompresses to more than its {member.size} bytes{fix}")
                    fh.write(out)
                if inflater:
                    out = inflater.flush()
                    crc, written = zlib.crc32(out, crc), written + len(out)
                    fh.write(out)
                    if not inflater.eof:
                        raise FmaFetchError(f"{problem}: its deflate stream is incomplete{fix}")
            except zlib.error as exc:
                raise FmaFetchError(f"{problem}: deflate error ({exc}){fix}") from exc
        if written != member.size:
            raise FmaFetchError(f"{problem}: {written} bytes instead of {member.size}{fix}")
        if crc != member.crc32:
            raise FmaFetchError(f"{problem}: CRC32 {crc:08x} instead of {member.crc32:08x}{fix}")


def _already_there(dest: Path, member: ZipMember) -> bool:
    """True if ``dest`` holds exactly this member (same size and CRC32)."""
    try:
        if dest.stat().st_size != member.size:
            return False
        crc = 0
        with open(dest, "rb") as fh:
            while chunk := fh.read(1 << 20):
                crc = zlib.crc32(chunk, crc)
    except OSError:
        return False
    return crc == member.crc32


# ─── the subset ────────────────────────────────────────────────────────────────────────────────


def fetch_members(src: ByteSource, out_dir: Path, num_tracks: int, *, label: str | None = None,
                  extensions: Sequence[str] = FMA_AUDIO_EXTENSIONS, progress: bool = True) -> FetchResult:
    """The first ``num_tracks`` audio members of the zip behind ``src``, under ``out_dir``.

    Members keep their in-zip path (``out_dir/fma_small/000/000002.mp3``); ones already on disk
    with the right size and CRC32 are skipped without fetching.
    """
    where = label or _where(src)
    before = int(getattr(src, "bytes_read", 0))
    members = read_central_directory(src)
    chosen = select_audio_members(members, num_tracks, extensions)
    if not chosen:
        raise FmaFetchError(f"{where} holds no audio members ({', '.join(extensions)}) among its {len(members)} "
                            "entries; pass the FMA audio zip (e.g. fma_small.zip), not fma_metadata.zip")
    if len(chosen) < num_tracks:
        log.warning("%s holds only %d audio members; fetching those instead of the %d asked for",
                    where, len(chosen), num_tracks)
    root = Path(out_dir).expanduser().resolve()
    targets = [(m, root / safe_relative_path(m.name, where)) for m in chosen]  # refuse before fetching
    downloaded = skipped = 0
    for member, dest in tqdm(targets, desc="fetch-fma", unit="track", disable=not progress, leave=False):
        if _already_there(dest, member):
            skipped += 1
            continue
        log.debug("fetching %s (%d bytes) from %s", member.name, member.compressed_size, where)
        extract_member(src, member, dest)
        downloaded += 1
    fetched = int(getattr(src, "bytes_read", 0)) - before
    log.info("%s: %d tracks fetched, %d already there, %d bytes read", where, downloaded, skipped, fetched)
    return FetchResult(files=[dest for _, dest in targets], downloaded=downloaded, skipped=skipped,
                       bytes_fetched=fetched, source=where)


def _is_url(source: str | Path) -> bool:
    return isinstance(source, str) and "://" in source


def fetch_subset(source: str | Path, out_dir: Path, num_tracks: int, *, progress: bool = True,
                 extensions: Sequence[str] = FMA_AUDIO_EXTENSIONS, timeout: float = 30.0,
                 retries: int = 3) -> FetchResult:
    """The first ``num_tracks`` audio files of an FMA zip (http(s) URL or local path) or folder.

    Zip members are extracted under ``out_dir``; a folder's first ``num_tracks`` audio files (by
    sorted relative path) are symlinked there instead of copied, so ``out_dir`` always holds
    exactly the subset, whatever the source.
    """
    if num_tracks < 1:
        raise FmaFetchError(f"the number of tracks must be at least 1 (got {num_tracks})")
    if _is_url(source):
        url = str(source)
        if not url.lower().startswith(("http://", "https://")):
            raise FmaFetchError(f"unsupported URL {url!r}: only http:// and https:// are supported")
        return fetch_members(HttpRangeSource(url, timeout=timeout, retries=retries), out_dir, num_tracks,
                             label=url, extensions=extensions, progress=progress)
    path = Path(source).expanduser()
    if path.is_dir():
        return _link_folder_subset(path, Path(out_dir), num_tracks, extensions)
    if path.is_file():
        return fetch_members(FileSource(path), out_dir, num_tracks, label=str(path), extensions=extensions,
                             progress=progress)
    raise FmaFetchError(f"{path} does not exist; pass an existing fma_small.zip, a folder of audio files, "
                        "or an http(s) URL")


def _link_folder_subset(root: Path, out_dir: Path, num_tracks: int, extensions: Sequence[str]) -> FetchResult:
    found = discover(root, extensions, recursive=True)[:num_tracks]
    if not found:
        raise FmaFetchError(f"no audio files ({', '.join(extensions)}) under {root}; point --local at the "
                            "folder holding the extracted FMA tracks, or at fma_small.zip")
    if len(found) < num_tracks:
        log.warning("%s holds only %d audio files; using those instead of the %d asked for",
                    root, len(found), num_tracks)
    files, made = [], 0
    for src in found:
        link = out_dir / src.relative_to(root)
        target = str(src.resolve())
        if not (link.is_symlink() and os.readlink(link) == target):
            if link.exists() and not link.is_symlink():
                raise FmaFetchError(f"{link} exists and is not a link; empty {out_dir} or pick another --out")
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            os.symlink(target, link)
            made += 1
        files.append(link)
    return FetchResult(files=files, downloaded=made, skipped=len(files) - made, bytes_fetched=0,
                       source=str(root))


def resolve_fma_source(url: str | None, local: str | Path | None) -> str | Path:
    """The notebook's fallback rule: the local zip/folder if given and present, else the URL."""
    if local is not None and str(local).strip():
        path = Path(local).expanduser()
        if path.exists():
            return path
        if not url:
            raise FmaFetchError(f"local FMA source {path} does not exist and no URL was given; fix the path "
                                f"or pass a URL (e.g. {FMA_SMALL_URL})")
        log.warning("local FMA source %s does not exist; fetching from %s instead", path, url)
    if url:
        return url
    raise FmaFetchError(f"no FMA source: pass a URL (e.g. {FMA_SMALL_URL}) or a local zip/folder")


# ─── CLI (wired into ``python -m training.audiocraft fetch-fma``) ─────────────────────────────


def add_fetch_args(parser: argparse.ArgumentParser) -> None:
    """The ``fetch-fma`` options."""
    parser.add_argument("--url", default=FMA_SMALL_URL,
                        help="zip to read with HTTP range requests (default: %(default)s)")
    parser.add_argument("--local", default=None, metavar="PATH",
                        help="a downloaded fma_small.zip or a folder of audio; used instead of --url when it exists")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="where the tracks go (their in-zip paths are kept: DIR/fma_small/000/…)")
    parser.add_argument("--num-tracks", type=int, default=100, metavar="N",
                        help="how many audio members to fetch, first in zip order (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request (default: %(default)s)")
    parser.add_argument("--retries", type=int, default=3,
                        help="retries per request on network errors (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def fetch_main(args: argparse.Namespace) -> int:
    """Run ``fetch-fma``; prints one summary line, or the error on stderr (exit code 1)."""
    try:
        source = resolve_fma_source(args.url, args.local)
        res = fetch_subset(source, args.out, args.num_tracks, progress=not args.no_progress,
                           timeout=args.timeout, retries=args.retries)
    except FmaFetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"fetch-fma: {len(res.files)} tracks from {res.source}: {res.downloaded} downloaded, "
          f"{res.skipped} skipped (already there), {format_bytes(res.bytes_fetched)} fetched")
    return 0
