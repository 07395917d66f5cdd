"""Tests for training.music.download_datasets against a real HTTP server on 127.0.0.1.

The server (tests.http_range_server: http.server in a thread) serves archives built here,
implements ``Range`` itself, counts requests, and can cut a response short or ignore ranges.
Nothing leaves the host.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pretty_midi
import pytest

from tests.http_range_server import RangeServer as _Server
from tests.http_range_server import serve
from training.music import download_datasets as dd
from workflow.runner import run_cli

REPO = Path(__file__).resolve().parents[3]


# ─── a local HTTP server with Range support (shared: tests/http_range_server.py) ──────────────


@pytest.fixture()
def server() -> Iterator[_Server]:
    with serve() as srv:
        yield srv


# ─── archive builders (real zip / tar files, real MIDI) ────────────────────────────────────────


def midi_bytes(pitch: int = 36, drum: bool = True) -> bytes:
    pm = pretty_midi.PrettyMIDI(initial_tempo=100.0)
    inst = pretty_midi.Instrument(program=0, is_drum=drum)
    inst.notes.append(pretty_midi.Note(velocity=100, pitch=pitch, start=0.0, end=0.25))
    pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def make_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_tar_gz(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def payload(n: int = 300_000) -> bytes:
    """Incompressible-looking bytes, so a cut in the middle is a real partial file."""
    out, h = bytearray(), b"seed"
    while len(out) < n:
        h = hashlib.sha256(h).digest()
        out += h
    return bytes(out[:n])


def remote(srv: _Server, path: str, **kw: object) -> dd.RemoteFile:
    return dd.RemoteFile(url=srv.url(path), filename=path.rsplit("/", 1)[-1], **kw)  # type: ignore[arg-type]


FAST = {"retries": 3, "backoff_s": 0.0, "timeout_s": 10.0, "progress": False}


# ─── resume / restart ──────────────────────────────────────────────────────────────────────────


def test_cut_off_transfer_resumes_with_range(server: _Server, tmp_path: Path) -> None:
    data = payload()
    server.state.files["/a.zip"] = data
    server.state.cut_after["/a.zip"] = 100_000
    res = dd.download_file(remote(server, "/a.zip"), tmp_path, **FAST)
    assert res.fetched and res.requests == 2
    reqs = server.state.requests
    assert [r["range"] for r in reqs] == [None, "bytes=100000-"]
    assert reqs[1]["if_range"] == '"v1"'  # resumes only if the file did not change
    assert (tmp_path / "a.zip").read_bytes() == data
    assert res.sha256 == hashlib.sha256(data).hexdigest()
    assert not (tmp_path / "a.zip.part").exists() and not (tmp_path / "a.zip.part.json").exists()
    marker = json.loads((tmp_path / "a.zip.verified.json").read_text())
    assert marker["sha256"] == res.sha256 and marker["size_bytes"] == len(data)
    assert "no checksum published" in marker["checks"]["sha256"]


def test_part_left_by_an_interrupted_run_is_resumed_by_the_next_run(server: _Server, tmp_path: Path) -> None:
    data = payload()
    server.state.files["/b.tar.gz"] = data
    server.state.cut_after["/b.tar.gz"] = 123_456
    with pytest.raises(dd.DownloadError, match=r"re-run to resume") as err:
        dd.download_file(remote(server, "/b.tar.gz"), tmp_path, **{**FAST, "retries": 0})
    assert server.url("/b.tar.gz") in str(err.value)
    part = tmp_path / "b.tar.gz.part"
    assert part.stat().st_size == 123_456 and not (tmp_path / "b.tar.gz").exists()

    dd.download_file(remote(server, "/b.tar.gz"), tmp_path, **FAST)
    assert server.state.requests[-1]["range"] == "bytes=123456-"
    assert (tmp_path / "b.tar.gz").read_bytes() == data


def test_server_without_range_support_restarts_cleanly(server: _Server, tmp_path: Path) -> None:
    data = payload()
    server.state.files["/c.zip"] = data
    server.state.range_support = False
    server.state.cut_after["/c.zip"] = 50_000
    res = dd.download_file(remote(server, "/c.zip"), tmp_path, **FAST)
    # the retry asked for a range, got a 200 with the whole body, and started over (no doubling)
    assert server.state.requests[1]["range"] == "bytes=50000-"
    assert (tmp_path / "c.zip").read_bytes() == data
    assert res.size_bytes == len(data)


def test_a_flaky_link_keeps_resuming_while_it_makes_progress(server: _Server, tmp_path: Path) -> None:
    data = payload(300_000)
    server.state.files["/flaky.zip"] = data
    server.state.cut_every["/flaky.zip"] = 70_000  # every response breaks after 70 kB
    res = dd.download_file(remote(server, "/flaky.zip"), tmp_path, **{**FAST, "retries": 1})
    assert [r["range"] for r in server.state.requests] == [
        None, "bytes=70000-", "bytes=140000-", "bytes=210000-", "bytes=280000-"]
    assert res.requests == 5 and (tmp_path / "flaky.zip").read_bytes() == data


def test_no_progress_exhausts_retries(server: _Server, tmp_path: Path) -> None:
    server.state.files["/stuck.zip"] = payload(1000)
    server.state.cut_every["/stuck.zip"] = 0
    with pytest.raises(dd.DownloadError, match=r"after 3 attempts"):
        dd.download_file(remote(server, "/stuck.zip"), tmp_path, **{**FAST, "retries": 2})
    assert len(server.state.requests) == 3


def test_part_already_complete_is_finished_on_416(server: _Server, tmp_path: Path) -> None:
    data = payload(10_000)
    server.state.files["/d.zip"] = data
    (tmp_path / "d.zip.part").write_bytes(data)
    (tmp_path / "d.zip.part.json").write_text(json.dumps({"url": server.url("/d.zip"), "total": len(data)}))
    dd.download_file(remote(server, "/d.zip"), tmp_path, **FAST)
    assert [r["range"] for r in server.state.requests] == ["bytes=10000-"]
    assert (tmp_path / "d.zip").read_bytes() == data


def test_part_of_unknown_origin_is_discarded(server: _Server, tmp_path: Path) -> None:
    data = payload(20_000)
    server.state.files["/e.zip"] = data
    (tmp_path / "e.zip.part").write_bytes(b"garbage from somewhere else")  # no .part.json
    dd.download_file(remote(server, "/e.zip"), tmp_path, **FAST)
    assert [r["range"] for r in server.state.requests] == [None]
    assert (tmp_path / "e.zip").read_bytes() == data


# ─── verification ──────────────────────────────────────────────────────────────────────────────


def test_checksum_mismatch_fails_and_leaves_nothing_trusted(server: _Server, tmp_path: Path) -> None:
    data = payload(40_000)
    server.state.files["/f.zip"] = data
    bad = remote(server, "/f.zip", sha256="0" * 64, checksum_source="the test's publisher")
    with pytest.raises(dd.ChecksumMismatchError) as err:
        dd.download_file(bad, tmp_path, **FAST)
    msg = str(err.value)
    assert server.url("/f.zip") in msg and "0" * 64 in msg and "deleted" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no file, no .part, no marker

    good = replace(bad, sha256=hashlib.sha256(data).hexdigest())
    res = dd.download_file(good, tmp_path, **FAST)
    assert res.fetched and len(server.state.requests) == 2  # downloaded again, not trusted
    assert "matches (the test's publisher)" in res.checks["sha256"]


def test_published_size_mismatch_fails(server: _Server, tmp_path: Path) -> None:
    server.state.files["/g.zip"] = payload(1000)
    with pytest.raises(dd.ChecksumMismatchError, match="1000 bytes, but"):
        dd.download_file(remote(server, "/g.zip", size_bytes=999), tmp_path, **FAST)
    assert not any(tmp_path.iterdir())


def test_no_checksum_flag_downgrades_mismatch_to_warning(server: _Server, tmp_path: Path) -> None:
    server.state.files["/h.zip"] = payload(1000)
    res = dd.download_file(remote(server, "/h.zip", sha256="f" * 64), tmp_path,
                           enforce_checksum=False, **FAST)
    assert res.checks["sha256"].startswith("MISMATCH ignored")


def test_reference_checksum_is_compared_not_enforced(server: _Server, tmp_path: Path) -> None:
    data = payload(1000)
    server.state.files["/i.tar.gz"] = data
    res = dd.download_file(remote(server, "/i.tar.gz", reference_sha256="a" * 64), tmp_path, **FAST)
    assert res.checks["reference_sha256"].startswith("differs")
    res2 = dd.download_file(remote(server, "/i.tar.gz", reference_sha256=hashlib.sha256(data).hexdigest()),
                            tmp_path, force=True, **FAST)
    assert res2.checks["reference_sha256"].startswith("matches")


def test_http_error_names_url_and_manual_route(server: _Server, tmp_path: Path) -> None:
    src = dd.DatasetSource(
        name="groove", title="t", homepage="h", licence="l", organizer="groove",
        files=(remote(server, "/missing.zip"),),
        manual_instructions="Download {url} in a browser into {downloads}/ and re-run.",
    )
    with pytest.raises(dd.DownloadError) as err:
        dd.download_dataset(src, tmp_path, **FAST)
    msg = str(err.value)
    assert "HTTP 404" in msg and server.url("/missing.zip") in msg
    assert str(tmp_path / "downloads") in msg
    assert len(server.state.requests) == 1  # a 404 is not retried


def test_html_page_instead_of_archive_is_explained(server: _Server, tmp_path: Path) -> None:
    server.state.files["/DEAM_audio.zip"] = b"<html>please register</html>"
    server.state.content_type["/DEAM_audio.zip"] = "text/html; charset=utf-8"
    with pytest.raises(dd.DownloadError, match="registration"):
        dd.download_file(remote(server, "/DEAM_audio.zip"), tmp_path, **FAST)


# ─── safe extraction ───────────────────────────────────────────────────────────────────────────


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ok = tarfile.TarInfo("fine.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        if member.isfile():
            member.size = len(data)
            tf.addfile(member, io.BytesIO(data))
        else:
            tf.addfile(member)
    return buf.getvalue()


def _tar_member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def _zip_with(name: str, data: bytes = b"evil", symlink: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("fine.txt", b"ok")
        info = zipfile.ZipInfo(name)
        info.create_system = 3
        if symlink:
            info.external_attr = (0o120777 << 16)
        zf.writestr(info, data)
    return buf.getvalue()


UNSAFE = {
    "tar-dotdot": ("evil.tar", lambda: _tar_with(_tar_member("sub/../../evil"), b"evil")),
    "tar-absolute": ("evil.tar", lambda: _tar_with(_tar_member("/tmp/evil-abs"), b"evil")),
    "tar-symlink-out": ("evil.tar", lambda: _tar_with(_tar_member("link", tarfile.SYMTYPE, "../../outside"))),
    "tar-symlink-abs": ("evil.tar", lambda: _tar_with(_tar_member("link", tarfile.SYMTYPE, "/etc/passwd"))),
    "tar-hardlink-out": ("evil.tar", lambda: _tar_with(_tar_member("hl", tarfile.LNKTYPE, "../outside.txt"))),
    "tar-device": ("evil.tar", lambda: _tar_with(_tar_member("dev", tarfile.CHRTYPE))),
    "zip-dotdot": ("evil.zip", lambda: _zip_with("../evil")),
    "zip-absolute": ("evil.zip", lambda: _zip_with("/tmp/evil-abs")),
    "zip-backslash-dotdot": ("evil.zip", lambda: _zip_with("..\\evil")),
    "zip-symlink-out": ("evil.zip", lambda: _zip_with("link", b"../../outside", symlink=True)),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_members_are_refused(case: str, tmp_path: Path) -> None:
    filename, build = UNSAFE[case]
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    archive = tmp_path / filename
    archive.write_bytes(build())
    dest = tmp_path / "a" / "b" / "dest"
    with pytest.raises(dd.UnsafeArchiveError) as err:
        dd.safe_extract(archive, dest, progress=False)
    assert str(archive) in str(err.value) and "refused" in str(err.value)
    assert outside.read_text() == "precious"
    assert not (tmp_path / "evil").exists() and not (tmp_path / "a" / "evil").exists()
    assert not Path("/tmp/evil-abs").exists()


def test_links_that_stay_inside_are_extracted(tmp_path: Path) -> None:
    tar = tmp_path / "ok.tar"
    tar.write_bytes(_tar_with(_tar_member("sub/link", tarfile.SYMTYPE, "../fine.txt")))
    dest = tmp_path / "dest"
    assert dd.safe_extract(tar, dest, progress=False) == 2
    assert (dest / "sub" / "link").read_text() == "ok"
    zpath = tmp_path / "ok.zip"
    zpath.write_bytes(_zip_with("zlink", b"fine.txt", symlink=True))
    zdest = tmp_path / "zdest"
    dd.safe_extract(zpath, zdest, progress=False)
    assert (zdest / "zlink").is_symlink() and (zdest / "zlink").read_text() == "ok"


def test_refused_archive_leaves_no_raw_folder(server: _Server, tmp_path: Path) -> None:
    server.state.files["/evil.zip"] = _zip_with("../../../evil")
    src = dd.DatasetSource(name="groove", title="t", homepage="h", licence="l", organizer="groove",
                           files=(remote(server, "/evil.zip"),))
    with pytest.raises(dd.UnsafeArchiveError):
        dd.download_dataset(src, tmp_path / "ds", **FAST)
    raw = tmp_path / "ds" / "raw"
    assert list(raw.iterdir()) == []  # neither raw/groove nor the scratch folder
    assert not (tmp_path / "evil").exists()


def test_corrupt_archive_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(make_zip({"x": b"y"})[:-30])
    with pytest.raises(dd.ExtractionError, match="--force"):
        dd.safe_extract(bad, tmp_path / "d", progress=False)


# ─── organize: fake archives shaped like each dataset ──────────────────────────────────────────

LAKH_MIDI = {name: midi_bytes(60 + i, drum=False) for i, name in enumerate(["a", "b"])}
LAKH_ENTRIES = {
    f"lmd_full/{hashlib.md5(b).hexdigest()[0]}/{hashlib.md5(b).hexdigest()}.mid": b
    for b in LAKH_MIDI.values()
}
GROOVE_INFO = (
    "drummer,session,id,style,bpm,beat_type,time_signature,midi_filename,audio_filename,duration,split\n"
    "drummer1,drummer1/session1,drummer1/session1/1,funk/groove1,80,beat,4-4,"
    "drummer1/session1/1_funk_80_beat_4-4.mid,drummer1/session1/1_funk_80_beat_4-4.wav,27.87,train\n"
    "drummer2,drummer2/eval_session,drummer2/eval_session/3,jazz,120,fill,3-4,"
    "drummer2/eval_session/3_jazz_120_fill_3-4.mid,,2.5,test\n"
    "drummer3,drummer3/session1,drummer3/session1/9,rock,100,beat,4-4,"
    "drummer3/session1/9_rock_100_beat_4-4.mid,,10.0,validation\n"  # not in the archive
)
DEAM_STATIC_1 = (
    "song_id, valence_mean, valence_std, arousal_mean, arousal_std\n"
    "2,3.1,0.94,3,0.63\n"
    "3,3.5,1.75,3.3,1.62\n"
    "5,5.7,1.42,5.5,1.63\n"  # no audio for 5
)
DEAM_STATIC_2 = (
    "song_id,valence_mean,valence_std,valence_max_mean,arousal_mean,arousal_std\n"
    "2001,6.2,1.1,7.0,4.4,0.9\n"
)
SONG_LEVEL = "annotations/annotations averaged per song/song_level"


def dataset_archives() -> dict[str, bytes]:
    return {
        "/deam/DEAM_audio.zip": make_zip({
            "MEMD_audio/2.mp3": b"ID3 fake mp3 2", "MEMD_audio/3.mp3": b"ID3 fake mp3 3",
            "MEMD_audio/2001.mp3": b"ID3 fake mp3 2001", "MEMD_audio/7.mp3": b"ID3 unlabelled",
        }),
        "/deam/DEAM_Annotations.zip": make_zip({
            f"{SONG_LEVEL}/static_annotations_averaged_songs_1_2000.csv": DEAM_STATIC_1.encode(),
            f"{SONG_LEVEL}/static_annotations_averaged_songs_2000_2058.csv": DEAM_STATIC_2.encode(),
        }),
        "/lmd/lmd_full.tar.gz": make_tar_gz(LAKH_ENTRIES),
        "/maestro/maestro-v3.0.0-midi.zip": make_zip({
            "maestro-v3.0.0/2004/MIDI-Unprocessed_XP_01.midi": midi_bytes(60, drum=False),
            "maestro-v3.0.0/2018/MIDI-Unprocessed_Chamber3.midi": midi_bytes(64, drum=False),
            "maestro-v3.0.0/maestro-v3.0.0.csv": b"canonical_composer,canonical_title,split,year,"
            b"midi_filename,audio_filename,duration\n",
            "maestro-v3.0.0/LICENSE": b"CC BY-NC-SA 4.0",
        }),
        "/groove/groove-v1.0.0-midionly.zip": make_zip({
            "groove/info.csv": GROOVE_INFO.encode(),
            "groove/drummer1/session1/1_funk_80_beat_4-4.mid": midi_bytes(36),
            "groove/drummer2/eval_session/3_jazz_120_fill_3-4.mid": midi_bytes(38),
            "groove/LICENSE": b"CC BY 4.0",
        }),
    }


def local_sources(srv: _Server, archives: dict[str, bytes], *, with_checksums: bool = False) -> dict[str, dd.DatasetSource]:
    """The real source table with every URL pointed at the local server (same organizers)."""
    by_name = {path.rsplit("/", 1)[-1]: path for path in archives}
    out = {}
    for key in dd.DEFAULT_DATASETS:
        src = dd.SOURCES[key]
        files = []
        for f in src.files:
            path = by_name[f.filename]
            sha = hashlib.sha256(archives[path]).hexdigest() if with_checksums else None
            files.append(replace(f, url=srv.url(path), sha256=sha, size_bytes=None, reference_sha256=None))
        out[key] = replace(src, files=tuple(files))
    return out


@pytest.fixture()
def served(server: _Server) -> tuple[_Server, dict[str, dd.DatasetSource]]:
    archives = dataset_archives()
    server.state.files.update(archives)
    return server, local_sources(server, archives, with_checksums=True)


def test_organize_produces_the_training_layout(served: tuple[_Server, dict[str, dd.DatasetSource]],
                                               tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    srv, sources = served
    root = tmp_path / "datasets"
    rc = dd.main(["--datasets-dir", str(root), "--organize", "--no-progress"], sources=sources)
    out = capsys.readouterr().out
    assert rc == 0, out
    t = root / "training"

    # DEAM: labelled audio + audio/labels.csv with DEAM's own values, unchanged, in the columns
    # that tell the emotion loader they are on the 1-9 scale.
    assert sorted(p.name for p in (t / "audio").iterdir()) == ["2.mp3", "2001.mp3", "3.mp3", "labels.csv"]
    assert (t / "audio" / "2.mp3").read_bytes() == b"ID3 fake mp3 2"
    with open(t / "audio" / "labels.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [["filename", "valence_mean", "arousal_mean"], ["2.mp3", "3.1", "3"], ["3.mp3", "3.5", "3.3"],
                    ["2001.mp3", "6.2", "4.4"]]
    from training.music.data_loaders import read_emotion_csv
    labels_va, scale = read_emotion_csv(t / "audio" / "labels.csv")  # what EmotionDataset reads
    assert scale == "deam" and labels_va["2.mp3"] == pytest.approx(((3.1 - 5) / 4, (3 - 5) / 4))

    # Lakh: MIDI in the archive's sub-folders, and no invented labels
    for rel, data in LAKH_ENTRIES.items():
        assert (t / "midi" / rel.split("/", 1)[1]).read_bytes() == data
    assert not (t / "midi" / "emotion_labels.json").exists()
    assert "no emotion labels" in out

    # MAESTRO: per-year MIDI + metadata
    assert (t / "maestro" / "2004" / "MIDI-Unprocessed_XP_01.midi").is_file()
    assert (t / "maestro" / "2018" / "MIDI-Unprocessed_Chamber3.midi").is_file()
    assert (t / "maestro" / "maestro-v3.0.0.csv").is_file()

    # Groove: MIDI tree, info.csv, groove_info.json from info.csv only (no drum_labels.json:
    # the loader would take it as numeric targets)
    mid = t / "groove" / "drummer1" / "session1" / "1_funk_80_beat_4-4.mid"
    assert pretty_midi.PrettyMIDI(str(mid)).instruments[0].is_drum
    assert (t / "groove" / "info.csv").read_text() == GROOVE_INFO
    assert not (t / "groove" / "drum_labels.json").exists()
    from training.music.data_loaders import GrooveDataset, LabelFileError, MusicDatasetError
    # The groove loader reads the organised folder without tripping over a labels file (these two
    # fake clips are shorter than the 2 bars its continuation target needs, hence "no usable item").
    with pytest.raises(MusicDatasetError) as err:
        GrooveDataset(t / "groove", cache=False)
    assert not isinstance(err.value, LabelFileError)
    labels = json.loads((t / "groove" / "groove_info.json").read_text())
    assert sorted(labels) == ["drummer1/session1/1_funk_80_beat_4-4.mid",
                              "drummer2/eval_session/3_jazz_120_fill_3-4.mid"]
    funk = labels["drummer1/session1/1_funk_80_beat_4-4.mid"]
    assert funk == {
        "drummer": "drummer1", "session": "drummer1/session1", "id": "drummer1/session1/1",
        "style": "funk/groove1", "primary_style": "funk", "secondary_style": "groove1", "bpm": 80,
        "beat_type": "beat", "time_signature": "4-4", "duration": 27.87, "split": "train",
    }
    jazz = labels["drummer2/eval_session/3_jazz_120_fill_3-4.mid"]
    assert (jazz["secondary_style"], jazz["beat_type"], jazz["bpm"]) == (None, "fill", 120)
    assert "1 info.csv rows name a MIDI file that is not in the archive" in out
    # info.csv's midi_filename values are the organised files' keys, so the official split applies
    from training.music.layout import read_split_column
    split = read_split_column(t / "groove" / "info.csv")
    organised = sorted(p.relative_to(t / "groove").as_posix() for p in (t / "groove").rglob("*.mid"))
    assert [split[k] for k in organised] == ["train", "test"]

    # archives removed after a verified extraction; markers say what was checked
    assert not any(p.suffix in (".zip", ".gz") for p in (root / "downloads").iterdir())
    marker = json.loads((root / "raw" / "groove" / ".extracted.json").read_text())
    assert marker["archives"][0]["file"] == "groove-v1.0.0-midionly.zip"
    assert marker["archives"][0]["checks"]["sha256"].startswith("matches")
    assert json.loads((t / ".organized" / "deam.json").read_text())["labelled"] == 3


def test_rerun_is_idempotent_and_makes_no_request(served: tuple[_Server, dict[str, dd.DatasetSource]],
                                                  tmp_path: Path) -> None:
    srv, sources = served
    root = tmp_path / "datasets"
    for keep in (False, True):
        d = root / ("keep" if keep else "drop")
        argv = ["--datasets-dir", str(d), "--organize", "--no-progress"] + (["--keep-archives"] if keep else [])
        assert dd.main(argv, sources=sources) == 0
        n = len(srv.state.requests)
        labels_mtime = (d / "training" / "audio" / "labels.csv").stat().st_mtime_ns
        assert dd.main(argv, sources=sources) == 0
        assert len(srv.state.requests) == n, "a finished dataset must not be requested again"
        assert (d / "training" / "audio" / "labels.csv").stat().st_mtime_ns == labels_mtime
        if keep:
            assert (d / "downloads" / "lmd_full.tar.gz.verified.json").is_file()
    res = dd.download_dataset(sources["groove"], root / "drop", organize=True, progress=False)
    assert res.downloads == [] and not res.extracted
    assert res.organize is not None and res.organize.placed == 0 and res.organize.already_there == 3


def test_archive_placed_by_hand_is_verified_without_any_request(server: _Server, tmp_path: Path) -> None:
    data = make_zip({"groove/info.csv": GROOVE_INFO.encode(),
                     "groove/drummer1/session1/1_funk_80_beat_4-4.mid": midi_bytes()})
    src = replace(dd.SOURCES["groove"], files=(remote(
        server, "/groove-v1.0.0-midionly.zip", size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest()),))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "groove-v1.0.0-midionly.zip").write_bytes(data)
    res = dd.download_dataset(src, tmp_path, organize=True, progress=False)
    assert server.state.requests == []
    assert res.downloads[0].origin == dd.FOUND_IN_PLACE
    assert (downloads / "groove-v1.0.0-midionly.zip").exists()  # the user's file is left alone
    assert (tmp_path / "training" / "groove" / "groove_info.json").is_file()


def test_raw_folder_without_marker_is_not_touched(tmp_path: Path) -> None:
    raw = tmp_path / "raw" / "groove" / "groove"
    raw.mkdir(parents=True)
    (raw / "info.csv").write_text(GROOVE_INFO)
    (raw / "drummer1" / "session1").mkdir(parents=True)
    (raw / "drummer1" / "session1" / "1_funk_80_beat_4-4.mid").write_bytes(midi_bytes())
    with pytest.raises(dd.ExtractionError, match="--use-existing-raw"):
        dd.download_dataset(dd.SOURCES["groove"], tmp_path, progress=False)
    res = dd.download_dataset(dd.SOURCES["groove"], tmp_path, organize=True, use_existing_raw=True,
                              progress=False)
    assert res.organize is not None and res.organize.labelled == 1
    assert (raw / "info.csv").read_text() == GROOVE_INFO


def test_organize_errors_name_what_is_missing(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "MEMD_audio").mkdir(parents=True)
    (raw / "MEMD_audio" / "2.mp3").write_bytes(b"x")
    with pytest.raises(dd.OrganizeError, match="static_annotations_averaged_songs"):
        dd.organize_deam(raw, tmp_path / "training", progress=False)


# ─── CLI ───────────────────────────────────────────────────────────────────────────────────────

_NET_EVENTS: list[tuple[str, object]] = []
_WATCHING = [False]
_HOOKED = [False]


def _audit(event: str, args: object) -> None:
    if _WATCHING[0] and event in ("socket.connect", "socket.getaddrinfo", "urllib.Request"):
        _NET_EVENTS.append((event, args))


@pytest.fixture()
def no_network_watch() -> Iterator[list[tuple[str, object]]]:
    """Record every socket connect / urllib request made while the test body runs."""
    if not _HOOKED[0]:
        sys.addaudithook(_audit)  # audit hooks cannot be removed; it only records while watching
        _HOOKED[0] = True
    _NET_EVENTS.clear()
    _WATCHING[0] = True
    try:
        yield _NET_EVENTS
    finally:
        _WATCHING[0] = False


def test_cli_list_and_dry_run_never_touch_the_network(
    served: tuple[_Server, dict[str, dd.DatasetSource]], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], no_network_watch: list[tuple[str, object]],
) -> None:
    srv, sources = served
    assert dd.main(["--list"]) == 0
    listing = capsys.readouterr().out
    for key in ("deam", "lakh", "maestro", "groove"):
        assert f"{key} (default)" in listing
    assert "70470ee253295c8d2c71e6d9d4a815189e35c89624b76d22fce5a019d5dde12c" in listing
    assert "CC BY-NC-SA 4.0" in listing and "none published" in listing

    root = tmp_path / "datasets"
    assert dd.main(["--datasets-dir", str(root), "--dry-run", "--organize"], sources=sources) == 0
    plan = capsys.readouterr().out
    assert "would download " + srv.url("/groove/groove-v1.0.0-midionly.zip") in plan
    assert "would organize" in plan and "groove_info.json" in plan
    assert not root.exists()  # nothing written
    assert no_network_watch == [] and srv.state.requests == []

    # after a real run the dry run reports the finished state, still offline
    _WATCHING[0] = False
    assert dd.main(["--datasets-dir", str(root), "--datasets", "groove", "--no-progress"], sources=sources) == 0
    n = len(srv.state.requests)
    _WATCHING[0] = True
    capsys.readouterr()
    assert dd.main(["--datasets-dir", str(root), "--datasets", "groove", "--dry-run"], sources=sources) == 0
    assert "already extracted" in capsys.readouterr().out
    assert no_network_watch == [] and len(srv.state.requests) == n


def test_cli_failure_exit_code_and_message(server: _Server, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    sources = {"groove": replace(dd.SOURCES["groove"], files=(remote(server, "/gone.zip"),))}
    rc = dd.main(["--datasets-dir", str(tmp_path), "--datasets", "groove", "--no-progress",
                  "--retries", "0"], sources=sources)
    err = capsys.readouterr().err
    assert rc == 1 and "groove: FAILED" in err and "HTTP 404" in err and "re-run" in err
    assert run_cli(dd.main, ["--datasets", "nope", "--dry-run"]) == 2
    assert "unknown dataset" in capsys.readouterr().err


def test_module_runs_as_python_dash_m(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "training.music.download_datasets", "--list"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "groove-v1.0.0-midionly.zip" in proc.stdout
    proc = subprocess.run(
        [sys.executable, str(REPO / "training" / "music" / "download_datasets.py"), "--help"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0 and "--keep-archives" in proc.stdout and "--organize" in proc.stdout


def test_fetch_mechanism_lives_in_training_fetch() -> None:
    """The downloader and extractor are training.fetch's; this module re-exports the same objects."""
    import training.fetch as fetch

    for name in fetch.__all__:
        assert getattr(dd, name) is getattr(fetch, name), name
    assert dd.DatasetDownloadError is fetch.FetchError and issubclass(dd.OrganizeError, fetch.FetchError)
    for path in (REPO / "training" / "audiocraft").glob("*.py"):  # AudioCraft code needs no music code
        text = path.read_text(encoding="utf-8")
        assert "training.music" not in text and "from ..music" not in text, path
