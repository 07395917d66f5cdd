"""Tests for training.audiocraft.fma: a subset of an FMA-shaped zip by HTTP range requests.

Real zips (built with ``zipfile``, real wav/flac/mp3 written by soundfile) are served by the
shared range server (tests/http_range_server.py) on 127.0.0.1; request counts come from both the
client's counter and the server's log. Nothing leaves the host.
"""

from __future__ import annotations

import argparse
import io
import logging
import struct
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.http_range_server import RangeServer, serve
from training.audiocraft import fma

SR = 44100
ZIP_PATH = "/fma/fma_small.zip"


@pytest.fixture()
def server() -> Iterator[RangeServer]:
    with serve() as srv:
        yield srv


def _tone(seconds: float, freq: float) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _encode(seconds: float, freq: float, fmt: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, _tone(seconds, freq), SR, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def tracks() -> dict[str, bytes]:
    """Audio members in zip order; the last one is large so the first ones lie outside the tail."""
    return {
        "fma_small/000/000002.mp3": _encode(0.5, 440, "MP3"),
        "fma_small/000/000005.wav": _encode(0.6, 330, "WAV"),
        "fma_small/000/000010.MP3": _encode(0.4, 550, "MP3"),
        "fma_small/001/001039.flac": _encode(0.3, 660, "FLAC"),
        "fma_small/001/001040.wav": _encode(1.0, 220, "WAV"),
    }


STORED = {"fma_small/000/000005.wav", "fma_small/001/001039.flac", "fma_small/001/001040.wav"}
AUDIO_ORDER = ["fma_small/000/000002.mp3", "fma_small/000/000005.wav", "fma_small/000/000010.MP3",
               "fma_small/001/001039.flac", "fma_small/001/001040.wav"]


def fma_zip(tracks: dict[str, bytes], *, comment: bytes = b"", force_zip64: bool = False,
            method: int | None = None, pad_first: int = 0) -> bytes:
    """An fma_small.zip look-alike: README, checksums, folder entries, __MACOSX junk, audio.

    ``pad_first`` adds an extra field of that many bytes to the first audio member's headers.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.mkdir("fma_small")
        zf.writestr("fma_small/README.txt", "FMA small: 8000 tracks of 30 s\n" * 20,
                    compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("fma_small/checksums", "".join(f"0000 {n}\n" for n in tracks),
                    compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("__MACOSX/fma_small/000/._000002.mp3", b"\0\5\26\7 apple double")
        zf.mkdir("fma_small/000")
        for i, (name, data) in enumerate(tracks.items()):
            info = zipfile.ZipInfo(name, date_time=(2017, 4, 1, 12, 0, 0))
            info.compress_type = method if method is not None else (
                zipfile.ZIP_STORED if name in STORED else zipfile.ZIP_DEFLATED)
            if i == 0 and pad_first:
                info.extra = struct.pack("<HH", 0xCAFE, pad_first) + bytes(pad_first)
            with zf.open(info, "w", force_zip64=force_zip64) as fh:
                fh.write(data)
            if i == 2:
                zf.writestr("fma_small/000/notes.txt", b"not audio")
        zf.comment = comment
    return buf.getvalue()


def infos(data: bytes) -> dict[str, zipfile.ZipInfo]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: i for i in zf.infolist()}


def data_offset(data: bytes, name: str) -> int:
    """Where ``name``'s compressed bytes start (after its local header and local extra)."""
    off = infos(data)[name].header_offset
    name_len, extra_len = struct.unpack_from("<HH", data, off + 26)
    return off + 30 + name_len + extra_len


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def ranges(srv: RangeServer) -> list[str | None]:
    return [r["range"] for r in srv.state.requests]


def serve_zip(srv: RangeServer, data: bytes) -> str:
    srv.state.files[ZIP_PATH] = data
    return srv.url(ZIP_PATH)


# ─── over HTTP ─────────────────────────────────────────────────────────────────────────────────


def test_first_n_audio_members_are_fetched_in_directory_order(
        server: RangeServer, tracks: dict[str, bytes], tmp_path: Path) -> None:
    data = fma_zip(tracks)
    url = serve_zip(server, data)
    zi = infos(data)
    for name in AUDIO_ORDER[:3]:  # precondition: the members are not inside the 64 KiB tail
        assert zi[name].header_offset + 30 + zi[name].compress_size < len(data) - fma.TAIL_BYTES

    out = tmp_path / "out"
    res = fma.fetch_subset(url, out, 3, progress=True)

    assert res.files == [out.resolve() / n for n in AUDIO_ORDER[:3]]
    assert files_under(out) == sorted(AUDIO_ORDER[:3])  # no README, notes, __MACOSX, temp files
    for name, path in zip(AUDIO_ORDER[:3], res.files):
        assert path.read_bytes() == tracks[name]
    assert (res.downloaded, res.skipped, res.source) == (3, 0, url)
    info = sf.info(str(res.files[0]))
    assert info.samplerate == SR and info.frames == pytest.approx(0.5 * SR, abs=1152)
    decoded, sr = sf.read(str(res.files[2]))
    assert sr == SR and len(decoded) == pytest.approx(0.4 * SR, abs=1152)

    # exact bound: 1 tail request (EOCD + central directory inside it) + 1 per member
    got = ranges(server)
    assert len(got) == 1 + 3
    assert got[0] == f"bytes=-{fma.TAIL_BYTES}"
    assert [int(r.split("=")[1].split("-")[0]) for r in got[1:]] == [zi[n].header_offset for n in AUDIO_ORDER[:3]]
    # bytes: the tail + each member's local header with LOCAL_HEADER_SLACK bytes of over-fetch
    assert res.bytes_fetched == fma.TAIL_BYTES + sum(
        30 + len(n) + fma.LOCAL_HEADER_SLACK + zi[n].compress_size for n in AUDIO_ORDER[:3])
    assert res.bytes_fetched < len(data)


def test_central_directory_outside_the_tail_costs_one_request(
        server: RangeServer, tracks: dict[str, bytes], tmp_path: Path) -> None:
    data = fma_zip(tracks, comment=b"c" * 0xFFFF)  # the longest comment fills the whole tail
    url = serve_zip(server, data)
    src = fma.HttpRangeSource(url, backoff=0)
    members = fma.read_central_directory(src)
    assert src.requests == 2
    assert [m.name for m in members] == list(infos(data))
    cd_start = min(len(data) - fma.TAIL_BYTES, *(i for i in range(len(data)) if data[i:i + 4] == b"PK\x01\x02"))
    assert ranges(server)[1].startswith(f"bytes={cd_start}-")

    res = fma.fetch_members(src, tmp_path, 4, progress=False)
    assert src.requests == 2 + 1 + 4  # the directory again (the tail stays cached) + 4 members
    assert [p.read_bytes() for p in res.files] == [tracks[n] for n in AUDIO_ORDER[:4]]


def test_rerun_fetches_nothing_and_repairs_a_damaged_file(
        server: RangeServer, tracks: dict[str, bytes], tmp_path: Path) -> None:
    url = serve_zip(server, fma_zip(tracks))
    fma.fetch_subset(url, tmp_path, 3, progress=False)
    first = {p: p.stat().st_mtime_ns for p in (tmp_path / n for n in AUDIO_ORDER[:3])}

    src = fma.HttpRangeSource(url)
    res = fma.fetch_members(src, tmp_path, 3, progress=False)
    assert src.requests == 1  # only the tail (end records + directory)
    assert (res.downloaded, res.skipped) == (0, 3) and res.bytes_fetched == src.bytes_read
    assert {p: p.stat().st_mtime_ns for p in first} == first  # not rewritten

    damaged = tmp_path / "fma_small/000/000005.wav"
    damaged.write_bytes(bytes(len(tracks["fma_small/000/000005.wav"])))  # right size, wrong CRC
    src = fma.HttpRangeSource(url)
    res = fma.fetch_members(src, tmp_path, 3, progress=False)
    assert src.requests == 1 + 1 and (res.downloaded, res.skipped) == (1, 2)
    assert damaged.read_bytes() == tracks["fma_small/000/000005.wav"]


@pytest.mark.parametrize("name, why", [("fma_small/000/000005.wav", "CRC32"),
                                       ("fma_small/000/000010.MP3", "corrupt")])
def test_corrupt_member_is_refused_and_nothing_is_left(
        server: RangeServer, tracks: dict[str, bytes], tmp_path: Path, name: str, why: str) -> None:
    data = bytearray(fma_zip(tracks))
    data[data_offset(bytes(data), name) + 200] ^= 0x5A
    url = serve_zip(server, bytes(data))
    with pytest.raises(fma.FmaFetchError, match=why) as err:
        fma.fetch_subset(url, tmp_path, 4, progress=False)
    assert repr(name) in str(err.value) and url in str(err.value) and "re-run" in str(err.value)
    before = AUDIO_ORDER[:AUDIO_ORDER.index(name)]
    assert files_under(tmp_path) == before  # the members before it; no temp file


def test_unsupported_compression_method_names_the_member(
        server: RangeServer, tracks: dict[str, bytes], tmp_path: Path) -> None:
    url = serve_zip(server, fma_zip(tracks, method=zipfile.ZIP_BZIP2))
    with pytest.raises(fma.FmaFetchError, match=r"'fma_small/000/000002.mp3' uses compression method 12 \(bzip2\)"):
        fma.fetch_subset(url, tmp_path, 2, progress=False)
    assert files_under(tmp_path) == [] and len(server.state.requests) == 1


def test_local_extra_field_longer_than_central_one(
        server: RangeServer, tracks: dict[str, bytes], tmp_path: Path) -> None:
    data = fma_zip(tracks, force_zip64=True)
    zi = infos(data)["fma_small/000/000002.mp3"]
    local_extra_len = struct.unpack_from("<H", data, zi.header_offset + 28)[0]
    assert local_extra_len == 20 and zi.extra == b""  # ZIP64 sizes in the local header only
    url = serve_zip(server, data)
    res = fma.fetch_subset(url, tmp_path, 5, progress=False)
    assert [p.read_bytes() for p in res.files] == [tracks[n] for n in AUDIO_ORDER]
    assert len(server.state.requests) == 1 + 5


@pytest.mark.parametrize("pad", [1500, 30_000])  # part of the data in the first response / none of it
def test_local_header_padded_beyond_the_slack_costs_one_more_request(
        server: RangeServer, tracks: dict[str, bytes], tmp_path: Path, pad: int) -> None:
    name = AUDIO_ORDER[0]
    data = fma_zip(tracks, pad_first=pad)
    assert struct.unpack_from("<H", data, infos(data)[name].header_offset + 28)[0] == pad + 4
    url = serve_zip(server, data)
    src = fma.HttpRangeSource(url)
    res = fma.fetch_members(src, tmp_path, 1, progress=False)
    assert res.files[0].read_bytes() == tracks[name]
    assert src.requests == 1 + 2
    info, start = infos(data)[name], data_offset(data, name)
    first_end = info.header_offset + 30 + len(name) + fma.LOCAL_HEADER_SLACK + info.compress_size
    assert first_end < start + info.compress_size  # precondition: the first response is short
    assert ranges(server)[2] == f"bytes={max(first_end, start)}-{start + info.compress_size - 1}"


def _zip64_everywhere(tracks: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A real ZIP64 archive from zipfile's own writer: with its 4 GiB threshold lowered to 0,
    every central entry gets a 0x0001 extra (sizes, and offsets past 0) and the archive ends with
    a ZIP64 EOCD record + locator. The classic EOCD is then saturated (0xFFFF / 0xFFFFFFFF), as
    in a real > 4 GiB archive, so only the ZIP64 record can tell where the directory is."""
    with monkeypatch.context() as m:
        m.setattr(zipfile, "ZIP64_LIMIT", 0)
        data = bytearray(fma_zip(tracks, force_zip64=True))
    eocd = len(data) - 22
    assert data[eocd:eocd + 4] == b"PK\x05\x06" and data[eocd - 20:eocd - 16] == b"PK\x06\x07"
    struct.pack_into("<HHII", data, eocd + 8, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    return bytes(data)


def test_zip64_extras_and_end_records(server: RangeServer, tracks: dict[str, bytes], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    data = _zip64_everywhere(tracks, monkeypatch)
    zi = infos(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None  # the patched archive is valid for zipfile too
    assert all(i.extra[:2] == b"\x01\x00" for i in zi.values() if i.file_size)

    path = tmp_path / "fma_small.zip"
    path.write_bytes(data)
    members = fma.read_central_directory(fma.FileSource(path))
    assert [(m.name, m.method, m.crc32, m.compressed_size, m.size, m.header_offset) for m in members] == [
        (i.filename, i.compress_type, i.CRC, i.compress_size, i.file_size, i.header_offset) for i in zi.values()]

    url = serve_zip(server, data)
    res = fma.fetch_subset(url, tmp_path / "out", 5, progress=False)
    assert [p.read_bytes() for p in res.files] == [tracks[n] for n in AUDIO_ORDER]
    assert len(server.state.requests) == 1 + 5


def test_saturated_end_record_without_zip64_locator_is_corrupt(tracks: dict[str, bytes], tmp_path: Path) -> None:
    data = bytearray(fma_zip(tracks))
    struct.pack_into("<I", data, len(data) - 22 + 16, 0xFFFFFFFF)
    path = tmp_path / "bad.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(fma.FmaFetchError, match="ZIP64 locator"):
        fma.read_central_directory(fma.FileSource(path))


# ─── HTTP failures ─────────────────────────────────────────────────────────────────────────────


def test_server_without_range_support_is_refused_before_downloading(
        server: RangeServer, tracks: dict[str, bytes], tmp_path: Path) -> None:
    url = serve_zip(server, fma_zip(tracks))
    server.state.range_support = False
    with pytest.raises(fma.FmaFetchError, match="does not support HTTP range requests") as err:
        fma.fetch_subset(url, tmp_path, 2, progress=False)
    assert url in str(err.value) and "whole file" in str(err.value) and "--local" in str(err.value)
    assert len(server.state.requests) == 1 and files_under(tmp_path) == []


def test_transient_failures_are_retried(server: RangeServer, tracks: dict[str, bytes]) -> None:
    data = fma_zip(tracks)
    url = serve_zip(server, data)
    server.state.fail_next[ZIP_PATH] = [503, 502]
    src = fma.HttpRangeSource(url, backoff=0)
    assert src.size() == len(data) and src.requests == 3

    server.state.cut_after[ZIP_PATH] = 100  # the next body breaks off after 100 bytes
    assert src.read(10, 5000) == data[10:5010] and src.requests == 5

    server.state.fail_next[ZIP_PATH] = [500, 500]
    with pytest.raises(fma.FmaFetchError, match="HTTP 500.*after 2 attempts") as err:
        fma.HttpRangeSource(url, retries=1, backoff=0).size()
    assert url in str(err.value)


def test_http_404_is_not_retried(server: RangeServer) -> None:
    src = fma.HttpRangeSource(server.url("/nope.zip"), backoff=0)
    with pytest.raises(fma.FmaFetchError, match="HTTP 404") as err:
        fma.read_central_directory(src)
    assert server.url("/nope.zip") in str(err.value) and src.requests == 1


def test_file_changed_on_the_server_is_detected(
        server: RangeServer, tracks: dict[str, bytes], tmp_path: Path) -> None:
    url = serve_zip(server, fma_zip(tracks))
    src = fma.HttpRangeSource(url)
    member = fma.select_audio_members(fma.read_central_directory(src), 1)[0]
    server.state.etag = '"v2"'
    with pytest.raises(fma.FmaFetchError, match="changed on the server"):
        fma.extract_member(src, member, tmp_path / "x.mp3")
    assert files_under(tmp_path) == []


def test_not_a_zip(server: RangeServer, tmp_path: Path) -> None:
    url = serve_zip(server, b"<html>" + b"x" * 100_000 + b"</html>")
    with pytest.raises(fma.FmaFetchError, match="is not a zip file") as err:
        fma.fetch_subset(url, tmp_path, 1, progress=False)
    assert url in str(err.value)


def test_shared_server_answers_every_single_range_form(server: RangeServer) -> None:
    server.state.files["/f"] = bytes(range(10))

    def get(rng: str) -> tuple[int, bytes, str | None]:
        req = urllib.request.Request(server.url("/f"), headers={"Range": rng})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.read(), r.headers.get("Content-Range")
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, b"", exc.headers.get("Content-Range")

    assert get("bytes=2-5") == (206, bytes([2, 3, 4, 5]), "bytes 2-5/10")
    assert get("bytes=7-") == (206, bytes([7, 8, 9]), "bytes 7-9/10")
    assert get("bytes=8-99") == (206, bytes([8, 9]), "bytes 8-9/10")
    assert get("bytes=-3") == (206, bytes([7, 8, 9]), "bytes 7-9/10")
    assert get("bytes=-99") == (206, bytes(range(10)), "bytes 0-9/10")
    assert get("bytes=10-")[::2] == (416, "bytes */10")
    assert get("bytes=5-2")[0] == 400


# ─── names, selection, local fallbacks ─────────────────────────────────────────────────────────


@pytest.mark.parametrize("evil", ["../evil.mp3", "/tmp/fma-evil-abs.mp3", "C:/evil.mp3",
                                  "fma_small/..\\..\\evil.mp3"])
def test_unsafe_member_name_is_refused_before_anything_is_fetched(
        server: RangeServer, tmp_path: Path, evil: str) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("fma_small/000/000002.mp3", b"fine")
        zf.writestr(evil, b"evil")
    url = serve_zip(server, buf.getvalue())
    out = tmp_path / "a" / "out"
    with pytest.raises(fma.FmaFetchError, match="unsafe member name") as err:
        fma.fetch_subset(url, out, 2, progress=False)
    assert repr(evil) in str(err.value)
    assert files_under(tmp_path) == [] and not Path("/tmp/fma-evil-abs.mp3").exists()
    assert len(server.state.requests) == 1


def test_select_audio_members() -> None:
    def m(name: str) -> fma.ZipMember:
        return fma.ZipMember(name=name, method=0, crc32=0, compressed_size=0, size=0, header_offset=0)

    members = [m("fma_small/"), m("__MACOSX/fma_small/._a.mp3"), m("fma_small/._b.mp3"), m("z/c.WAV"),
               m("fma_small/checksums"), m("a/d.Flac"), m("e.ogg"), m("f.mp3.txt"), m("g.mp3")]
    assert [x.name for x in fma.select_audio_members(members, 3)] == ["z/c.WAV", "a/d.Flac", "e.ogg"]
    assert [x.name for x in fma.select_audio_members(members, 9, [".MP3"])] == ["g.mp3"]
    with pytest.raises(fma.FmaFetchError, match="at least 1"):
        fma.select_audio_members(members, 0)


def test_fewer_members_than_asked_warns_and_none_is_an_error(
        tracks: dict[str, bytes], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "fma_small.zip"
    path.write_bytes(fma_zip(tracks))
    with caplog.at_level(logging.WARNING, logger="training.audiocraft.fma"):
        res = fma.fetch_subset(path, tmp_path / "out", 50, progress=False)
    assert len(res.files) == 5 and "only 5 audio members" in caplog.text

    empty = tmp_path / "fma_metadata.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("fma_metadata/tracks.csv", "track_id\n2\n")
    with pytest.raises(fma.FmaFetchError, match="no audio members") as err:
        fma.fetch_subset(empty, tmp_path / "out2", 5, progress=False)
    assert str(empty) in str(err.value)


def test_local_zip_fallback(tracks: dict[str, bytes], tmp_path: Path) -> None:
    path = tmp_path / "fma_small.zip"
    path.write_bytes(fma_zip(tracks, comment=b"c" * 0xFFFF))
    out = tmp_path / "out"
    res = fma.fetch_subset(str(path), out, 3, progress=False)
    assert [p.read_bytes() for p in res.files] == [tracks[n] for n in AUDIO_ORDER[:3]]
    assert res.source == str(path) and res.downloaded == 3 and 0 < res.bytes_fetched < path.stat().st_size
    again = fma.fetch_subset(path, out, 3, progress=False)
    assert (again.downloaded, again.skipped, again.files) == (0, 3, res.files)


def test_local_folder_fallback_links_the_subset(tmp_path: Path) -> None:
    root = tmp_path / "fma_small"
    for rel in ["001/b.wav", "000/a.mp3", "000/notes.txt", "000/.hidden.wav", "002/deep/c.FLAC", "003/d.ogg"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode())
    out = tmp_path / "out"
    res = fma.fetch_subset(root, out, 3, progress=False)
    chosen = ["000/a.mp3", "001/b.wav", "002/deep/c.FLAC"]
    assert res.files == [out / r for r in chosen]
    assert all(p.is_symlink() and p.read_bytes() == r.encode() for p, r in zip(res.files, chosen))
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_symlink()) == chosen
    assert (res.downloaded, res.skipped, res.bytes_fetched) == (3, 0, 0)
    again = fma.fetch_subset(root, out, 3, progress=False)
    assert (again.downloaded, again.skipped, again.files) == (0, 3, res.files)
    (out / "000" / "a.mp3").unlink()
    (out / "000" / "a.mp3").write_bytes(b"mine")
    with pytest.raises(fma.FmaFetchError, match="not a link"):
        fma.fetch_subset(root, out, 3, progress=False)
    with pytest.raises(fma.FmaFetchError, match="no audio files"):
        fma.fetch_subset(root / "000" / "..", out, 1, extensions=(".aiff",), progress=False)
    with pytest.raises(fma.FmaFetchError, match="does not exist"):
        fma.fetch_subset(tmp_path / "missing.zip", out, 1, progress=False)


def test_resolve_fma_source(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = "https://example.invalid/fma_small.zip"
    here = tmp_path / "fma_small.zip"
    here.write_bytes(b"")
    assert fma.resolve_fma_source(url, here) == here
    assert fma.resolve_fma_source(None, str(tmp_path)) == tmp_path
    assert fma.resolve_fma_source(url, None) == url
    with caplog.at_level(logging.WARNING):
        assert fma.resolve_fma_source(url, tmp_path / "gone.zip") == url
    assert "gone.zip does not exist" in caplog.text
    with pytest.raises(fma.FmaFetchError, match="gone.zip does not exist and no URL"):
        fma.resolve_fma_source(None, tmp_path / "gone.zip")
    with pytest.raises(fma.FmaFetchError, match="no FMA source"):
        fma.resolve_fma_source(None, None)


# ─── CLI ───────────────────────────────────────────────────────────────────────────────────────


def test_fetch_main_prints_a_summary_line(server: RangeServer, tracks: dict[str, bytes], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    url = serve_zip(server, fma_zip(tracks))
    parser = argparse.ArgumentParser()
    fma.add_fetch_args(parser)
    argv = ["--url", url, "--local", str(tmp_path / "not-here.zip"), "--out", str(tmp_path / "o"),
            "--num-tracks", "2", "--no-progress"]
    assert fma.fetch_main(parser.parse_args(argv)) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.startswith(f"fetch-fma: 2 tracks from {url}: 2 downloaded, 0 skipped (already there), ")
    assert out.rstrip().endswith("KiB fetched")

    assert fma.fetch_main(parser.parse_args(argv)) == 0
    assert ": 0 downloaded, 2 skipped" in capsys.readouterr().out

    argv[1] = server.url("/missing.zip")
    assert fma.fetch_main(parser.parse_args(argv)) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and "HTTP 404" in captured.err
