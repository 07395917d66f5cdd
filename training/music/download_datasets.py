"""Download, verify, safely extract and organise the music datasets the training loaders use.

Four public datasets (``--list`` prints the table below with URLs, sizes, checksums, licences):

* ``deam``    DEAM, MediaEval Database for Emotional Analysis in Music: audio + static
  per-song valence/arousal annotations. Goes to ``training/audio/`` + ``training/audio/labels.csv``.
* ``lakh``    Lakh MIDI Dataset, LMD-full (``lakh-matched``: the LMD-matched subset). Goes to
  ``training/midi/``. Lakh has no emotion labels; ``emotion_labels.json`` is never written.
* ``maestro`` MAESTRO v3.0.0, MIDI-only archive. Goes to ``training/maestro/``.
* ``groove``  Groove MIDI Dataset v1.0.0, MIDI-only archive. Goes to ``training/groove/``
  + ``groove_info.json`` (per-file style / bpm / beat-or-fill / meter copied from ``info.csv``;
  not ``drum_labels.json``, which the loader would take as numeric training targets).

Folder layout under ``--datasets-dir`` (default ``datasets/``)::

    downloads/<archive>                 verified archives (kept with --keep-archives)
    downloads/<archive>.part            an interrupted transfer; the next run resumes it
    downloads/<archive>.part.json       what the .part belongs to (URL, ETag, total size)
    downloads/<archive>.verified.json   marker: size + sha256 measured, and what they were checked against
    raw/<dataset>/                      the extracted archives, untouched
    raw/<dataset>/.extracted.json       marker: which archives (by sha256) were extracted
    training/                           the layout the loaders read (--organize)
    training/.organized/<dataset>.json  what --organize placed, and from where

Every step is idempotent: a verified download is not fetched again, an extraction whose marker
matches is not redone, organising skips files already in place. Downloading (resume, retries,
checksums) and safe extraction are :mod:`training.fetch`; this module holds the catalogue, the
organisers and the CLI, and re-exports the fetch names it always offered.

Checksums are enforced only where the publisher gives one (MAESTRO: SHA-256 on the Magenta
page; Groove: size + SHA-256 in Google's TensorFlow Datasets checksum file). Lakh has SHA-256
values recorded by third parties (two independent records agree); they are compared and a
mismatch is logged as a warning, never enforced. DEAM publishes none. The SHA-256 measured for
every archive is written to its marker either way.

Example::

    python -m training.music.download_datasets --list
    python -m training.music.download_datasets --datasets maestro,groove --organize
    python -m training.music.download_datasets --datasets-dir /data/music --dry-run
"""


from __future__ import annotations

if __package__ in (None, ""):  # run as a file: make the repository importable
    import sys
    from pathlib import Path as _P

    sys.path[0] = str(_P(__file__).resolve().parents[2])

import argparse
import contextlib
import csv
import json
import logging
import os
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

# The public fetch names are re-exported: they lived here before training/fetch.py.
from training.fetch import (  # noqa: F401
    CHUNK_BYTES,
    DISK_MARGIN_BYTES,
    FOUND_IN_PLACE,
    MARKER_SCHEMA,
    USER_AGENT,
    ChecksumMismatchError,
    DownloadError,
    DownloadResult,
    ExtractionError,
    FetchError,
    RemoteFile,
    UnsafeArchiveError,
    _marker_path,
    _now,
    _part_paths,
    _read_json,
    _unlink,
    _valid_marker,
    _write_json,
    download_file,
    format_bytes,
    parse_content_range,
    safe_extract,
    sha256_file,
)
from workflow.errors import UsageError
from workflow.files import link_or_copy, write_text_if_changed
from workflow.runner import run_cli, setup_logging

log = logging.getLogger(__name__)

#: The base of every error this tool raises (download, verification, extraction, organising).
DatasetDownloadError = FetchError


class OrganizeError(DatasetDownloadError):
    """The extracted dataset does not have the files ``--organize`` needs."""


# ─── the source table ──────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class DatasetSource:
    """A dataset: where its archives are, its licence, and which organiser lays it out."""

    name: str
    title: str
    homepage: str
    licence: str
    files: tuple[RemoteFile, ...]
    organizer: str
    notes: str = ""
    manual_instructions: str = ""


# Sources, and what could be confirmed about each (looked up when this module was written):
#
# DEAM  - Homepage https://cvml.unige.ch/databases/DEAM/ (manual: .../DEAM/manual.pdf). The two
#         archive URLs below are the ones many public projects fetch directly; no size or checksum
#         is published. Some users report the links being offline or behind a form (unconfirmed),
#         hence the manual route. Archive layout: DEAM_audio.zip -> MEMD_audio/<song_id>.mp3;
#         DEAM_Annotations.zip -> annotations/annotations averaged per song/song_level/
#         static_annotations_averaged_songs_1_2000.csv and ..._2000_2058.csv, columns (with
#         leading spaces) song_id, valence_mean, valence_std, arousal_mean, arousal_std, on the
#         1-9 rating scale. Licence: the PLOS ONE paper (Aljanaki, Yang, Soleymani 2017,
#         doi:10.1371/journal.pone.0173392) describes the 1,802 excerpts as Creative Commons
#         licensed; the annotations' own terms were not confirmed here.
# Lakh  - https://colinraffel.com/projects/lmd/ : LMD-full (176,581 deduped MIDI files, named by
#         MD5) and LMD-matched (45,129 files matched to the Million Song Dataset); CC-BY 4.0. The
#         page publishes no size/checksum. URLs (http only) are hog.ee.columbia.edu/craffel/lmd/.
#         SHA-256 + byte counts below were recorded by two independent third parties that agree
#         (resolv_data's lakh_midi.py source table and a public dataset inventory); not enforced.
# MAESTRO - https://magenta.tensorflow.org/datasets/maestro : maestro-v3.0.0-midi.zip,
#         "Size: 56MB (81MB uncompressed)", SHA256 70470ee2...de12c, published on that page
#         (seen in a stored copy of it). Licence CC BY-NC-SA 4.0 (non-commercial).
# Groove - https://magenta.tensorflow.org/datasets/groove : CC BY 4.0 (Google LLC). The page gives
#         no checksum; Google's TensorFlow Datasets records size 3,260,318 bytes and the SHA-256
#         below in tensorflow_datasets/datasets/groove/checksums.tsv and enforces it on every TFDS
#         download, so it is enforced here too (--no-checksum overrides).

SOURCES: dict[str, DatasetSource] = {
    "deam": DatasetSource(
        name="deam",
        title="DEAM - MediaEval Database for Emotional Analysis in Music",
        homepage="https://cvml.unige.ch/databases/DEAM/",
        licence=(
            "audio: Creative Commons (per-track licences; Aljanaki et al. 2017, PLOS ONE "
            "12(3):e0173392); annotations: see the DEAM manual "
            "https://cvml.unige.ch/databases/DEAM/manual.pdf (terms not confirmed by this tool)"
        ),
        files=(
            RemoteFile(
                url="https://cvml.unige.ch/databases/DEAM/DEAM_audio.zip",
                filename="DEAM_audio.zip",
            ),
            RemoteFile(
                url="https://cvml.unige.ch/databases/DEAM/DEAM_Annotations.zip",
                filename="DEAM_Annotations.zip",
            ),
        ),
        organizer="deam",
        notes=(
            "1,802 excerpts (MEMD_audio/<song_id>.mp3) with static per-song valence/arousal "
            "means on the 1-9 scale; --organize copies the labelled ones to training/audio/ "
            "and writes training/audio/labels.csv (filename,valence_mean,arousal_mean, DEAM's 1-9 values)."
        ),
        manual_instructions=(
            "If the direct links fail (the DEAM server is reported to be offline or behind a "
            "form at times), open https://cvml.unige.ch/databases/DEAM/ in a browser, download "
            "DEAM_audio.zip and DEAM_Annotations.zip, put both in {downloads}/ and re-run. "
            "A Kaggle mirror (dataset 'imsparsh/deam-mediaeval-dataset-emotional-analysis-in-"
            "music', needs a Kaggle account) ships the same files unzipped: extract it to "
            "{raw}/deam/ and re-run with --use-existing-raw."
        ),
    ),
    "lakh": DatasetSource(
        name="lakh",
        title="Lakh MIDI Dataset v0.1 - LMD-full",
        homepage="https://colinraffel.com/projects/lmd/",
        licence="CC-BY 4.0 (cite the project page and Raffel's 2016 PhD thesis)",
        files=(
            RemoteFile(
                url="http://hog.ee.columbia.edu/craffel/lmd/lmd_full.tar.gz",
                filename="lmd_full.tar.gz",
                approx_size="1.77 GB (1,768,163,879 bytes per third-party records)",
                reference_sha256="6fcfe2ac49ca08f3f214cec86ab138d4fc4dabcd7f27f491a838dae6db45a12b",
                checksum_source=(
                    "no checksum published by the author; reference SHA-256 recorded by third "
                    "parties (not enforced)"
                ),
            ),
        ),
        organizer="lakh",
        notes=(
            "176,581 deduplicated MIDI files named by their MD5, some corrupt (the author says "
            "so). No emotion labels exist for Lakh and none can be derived from the files, so "
            "training/midi/emotion_labels.json is not written."
        ),
        manual_instructions=(
            "Download {url} by other means (e.g. `wget -c`) into {downloads}/ and re-run."
        ),
    ),
    "lakh-matched": DatasetSource(
        name="lakh-matched",
        title="Lakh MIDI Dataset v0.1 - LMD-matched",
        homepage="https://colinraffel.com/projects/lmd/",
        licence="CC-BY 4.0 (cite the project page and Raffel's 2016 PhD thesis)",
        files=(
            RemoteFile(
                url="http://hog.ee.columbia.edu/craffel/lmd/lmd_matched.tar.gz",
                filename="lmd_matched.tar.gz",
                approx_size="1.41 GB (1,407,072,670 bytes per third-party records)",
                reference_sha256="621ff830aed771f469e5bfa13dc12a33c6ed69090adeda63d0b5c47783af0191",
                checksum_source=(
                    "no checksum published by the author; reference SHA-256 recorded by third "
                    "parties (not enforced)"
                ),
            ),
        ),
        organizer="lakh",
        notes=(
            "45,129 MIDI files matched to Million Song Dataset entries, stored once per matched "
            "track (so files repeat under different MSD ids). Not in the default selection. No "
            "emotion labels; emotion_labels.json is not written."
        ),
        manual_instructions=(
            "Download {url} by other means (e.g. `wget -c`) into {downloads}/ and re-run."
        ),
    ),
    "maestro": DatasetSource(
        name="maestro",
        title="MAESTRO v3.0.0 (MIDI only)",
        homepage="https://magenta.tensorflow.org/datasets/maestro",
        licence="CC BY-NC-SA 4.0 (non-commercial, share-alike)",
        files=(
            RemoteFile(
                url=(
                    "https://storage.googleapis.com/magentadata/datasets/maestro/v3.0.0/"
                    "maestro-v3.0.0-midi.zip"
                ),
                filename="maestro-v3.0.0-midi.zip",
                approx_size="56 MB (81 MB uncompressed), as published",
                sha256="70470ee253295c8d2c71e6d9d4a815189e35c89624b76d22fce5a019d5dde12c",
                checksum_source="SHA-256 published on the MAESTRO dataset page",
            ),
        ),
        organizer="maestro",
        notes=(
            "1,276 piano performances (.midi) in per-year folders plus maestro-v3.0.0.csv/.json "
            "(composer, title, split, year, duration), which --organize copies alongside."
        ),
        manual_instructions=(
            "Download {url} in a browser into {downloads}/ and re-run."
        ),
    ),
    "groove": DatasetSource(
        name="groove",
        title="Groove MIDI Dataset v1.0.0 (MIDI only)",
        homepage="https://magenta.tensorflow.org/datasets/groove",
        licence="CC BY 4.0 (Google LLC)",
        files=(
            RemoteFile(
                url=(
                    "https://storage.googleapis.com/magentadata/datasets/groove/"
                    "groove-v1.0.0-midionly.zip"
                ),
                filename="groove-v1.0.0-midionly.zip",
                approx_size="3.1 MiB (3,260,318 bytes)",
                size_bytes=3_260_318,
                sha256="651cbc524ffb891be1a3e46d89dc82a1cecb09a57c748c7b45b844c4841dcc1e",
                checksum_source=(
                    "size + SHA-256 from Google's TensorFlow Datasets checksums.tsv for groove "
                    "(the Magenta page itself publishes none)"
                ),
            ),
        ),
        organizer="groove",
        notes=(
            "1,150 drum performances by 10 drummers (drummerN/sessionM/<id>_<style>_<bpm>_"
            "<beat|fill>_<meter>.mid) and info.csv; --organize writes groove_info.json from "
            "info.csv (style, bpm, beat_type, time_signature, drummer, session, split, duration)."
        ),
        manual_instructions=(
            "Download {url} in a browser into {downloads}/ and re-run."
        ),
    ),
}

DEFAULT_DATASETS: tuple[str, ...] = ("deam", "lakh", "maestro", "groove")


# ─── layout ───────────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class DatasetsLayout:
    """The folders under ``--datasets-dir``."""

    root: Path

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def training(self) -> Path:
        return self.root / "training"


def manual_hint(source: DatasetSource, remote: RemoteFile, layout: DatasetsLayout) -> str:
    """The source's manual-download instructions with the real paths filled in."""
    text = source.manual_instructions or "Download {url} by other means into {downloads}/ and re-run."
    return text.format(url=remote.url, downloads=layout.downloads, raw=layout.raw)


# ─── organising into training/ ─────────────────────────────────────────────────────────────────


@dataclass
class OrganizeResult:
    """What ``--organize`` produced for one dataset."""

    dataset: str
    outputs: list[str] = field(default_factory=list)
    placed: int = 0
    already_there: int = 0
    labels_file: Path | None = None
    labelled: int = 0
    notes: list[str] = field(default_factory=list)


def _content_root(raw_dir: Path) -> Path:
    """Descend through single top-level folders (``groove/``, ``maestro-v3.0.0/``, ``lmd_full/``)."""
    root = raw_dir
    while True:
        entries = [p for p in root.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
        if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
            root = entries[0]
        else:
            return root


def _midi_files(root: Path, raw_dir: Path, dataset: str) -> list[Path]:
    """Every ``.mid``/``.midi`` under ``root``, sorted; none is an :class:`OrganizeError`."""
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".mid", ".midi") and p.is_file())
    if not files:
        raise OrganizeError(f"no .mid/.midi files under {raw_dir}; was the {dataset} archive extracted there?")
    return files


def _place(src: Path, dst: Path, *, link: bool) -> bool:
    """Hardlink (or copy) ``src`` to ``dst`` atomically; False when an equal-size file is there."""
    try:
        if dst.stat().st_size == src.stat().st_size:
            return False
    except FileNotFoundError:
        pass
    link_or_copy(src, dst, link=link)
    return True


def _place_tree(
    files: Iterable[tuple[Path, Path]], result: OrganizeResult, *, link: bool, progress: bool, desc: str,
) -> None:
    items = list(files)
    for src, dst in tqdm(items, desc=desc, unit="file", disable=not progress, leave=False):
        if _place(src, dst, link=link):
            result.placed += 1
        else:
            result.already_there += 1


def _csv_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV with header names and values stripped (DEAM's headers start with spaces)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            return []
        return [
            {k: v.strip() for k, v in zip(header, row)}
            for row in reader if any(cell.strip() for cell in row)
        ]


def organize_deam(raw_dir: Path, training_dir: Path, *, link: bool = True,
                  progress: bool = True) -> OrganizeResult:
    """``training/audio/<song_id>.mp3`` + ``training/audio/labels.csv``
    (``filename,valence_mean,arousal_mean``), where the emotion loader looks for it.

    Labels are DEAM's static per-song ``valence_mean`` / ``arousal_mean`` exactly as published
    (1-9 rating scale, not rescaled: the column names tell the loader to map them to [-1, 1]),
    from every ``static_annotations_averaged_songs_*.csv``.
    ``filename`` is relative to ``training/audio/``. Only songs with both audio and a label are
    placed; the counts of the others are reported.
    """
    result = OrganizeResult("deam")
    audio = {p.stem: p for p in sorted(raw_dir.rglob("*.mp3")) if p.stem.isdigit()}
    label_files = sorted(raw_dir.rglob("static_annotations_averaged_songs_*.csv"))
    if not label_files:
        raise OrganizeError(
            f"no static_annotations_averaged_songs_*.csv under {raw_dir} (expected from "
            "DEAM_Annotations.zip: annotations/annotations averaged per song/song_level/); "
            "check that both DEAM archives were extracted there"
        )
    if not audio:
        raise OrganizeError(
            f"no <song_id>.mp3 files under {raw_dir} (expected MEMD_audio/ from DEAM_audio.zip)"
        )
    labels: dict[str, tuple[str, str]] = {}
    for path in label_files:
        rows = _csv_rows(path)
        if rows and not {"song_id", "valence_mean", "arousal_mean"} <= rows[0].keys():
            raise OrganizeError(
                f"{path} lacks song_id / valence_mean / arousal_mean columns (has "
                f"{sorted(rows[0])}); is this a DEAM static annotation file?"
            )
        for row in rows:
            sid = row["song_id"].split(".")[0]
            pair = (row["valence_mean"], row["arousal_mean"])
            try:
                float(pair[0]), float(pair[1])
            except ValueError:
                log.warning("%s: song %s has non-numeric labels %r; skipped", path.name, sid, pair)
                continue
            if sid in labels and labels[sid] != pair:
                log.warning("%s: song %s listed twice with different labels; keeping the first",
                            path.name, sid)
            labels.setdefault(sid, pair)
    audio_dir = training_dir / "audio"
    ids = sorted(set(audio) & set(labels), key=int)
    _place_tree(((audio[i], audio_dir / audio[i].name) for i in ids), result, link=link,
                progress=progress, desc="organize deam")
    lines = ["filename,valence_mean,arousal_mean"] + [
        f"{audio[i].name},{labels[i][0]},{labels[i][1]}" for i in ids]
    labels_path = audio_dir / "labels.csv"
    write_text_if_changed(labels_path, "\n".join(lines) + "\n")
    result.labels_file, result.labelled = labels_path, len(ids)
    result.outputs = [str(audio_dir), str(labels_path)]
    if len(audio) > len(ids):
        result.notes.append(f"{len(audio) - len(ids)} audio files have no static label and were not placed")
    if len(labels) > len(ids):
        result.notes.append(f"{len(labels) - len(ids)} labelled songs have no audio file")
    result.notes.append("audio/labels.csv keeps DEAM's valence_mean/arousal_mean (1-9); the loader maps "
                        "them to [-1, 1] as (x - 5) / 4")
    return result


def organize_lakh(raw_dir: Path, training_dir: Path, *, link: bool = True,
                  progress: bool = True) -> OrganizeResult:
    """``training/midi/<same sub-folders as the archive>/<md5>.mid``; no labels (none exist)."""
    result = OrganizeResult("lakh")
    root = _content_root(raw_dir)
    files = _midi_files(root, raw_dir, "Lakh")
    midi_dir = training_dir / "midi"
    _place_tree(((p, midi_dir / p.relative_to(root)) for p in files), result, link=link,
                progress=progress, desc="organize lakh")
    result.outputs = [str(midi_dir)]
    result.notes.append(
        "Lakh MIDI has no emotion labels and none can be derived honestly from the files; "
        "emotion_labels.json was not written"
    )
    return result


def organize_maestro(raw_dir: Path, training_dir: Path, *, link: bool = True,
                     progress: bool = True) -> OrganizeResult:
    """``training/maestro/<year>/<file>.midi`` plus the dataset's own metadata CSV/JSON."""
    result = OrganizeResult("maestro")
    root = _content_root(raw_dir)
    files = _midi_files(root, raw_dir, "MAESTRO")
    out = training_dir / "maestro"
    meta = sorted(p for p in root.glob("maestro-v*.*") if p.suffix in (".csv", ".json"))
    pairs = [(p, out / p.relative_to(root)) for p in files] + [(p, out / p.name) for p in meta]
    _place_tree(pairs, result, link=link, progress=progress, desc="organize maestro")
    result.outputs = [str(out)]
    if meta:
        result.notes.append(f"metadata copied: {', '.join(p.name for p in meta)} (has the train/validation/test split)")
    return result


GROOVE_LABEL_FIELDS = (
    "drummer", "session", "id", "style", "bpm", "beat_type", "time_signature", "duration", "split",
)


def organize_groove(raw_dir: Path, training_dir: Path, *, link: bool = True,
                    progress: bool = True) -> OrganizeResult:
    """``training/groove/<drummer>/<session>/*.mid`` + ``info.csv`` + ``groove_info.json``.

    No ``drum_labels.json`` is written: the Groove loader reads that file as *numeric training
    targets*, and Groove has none worth training on (``bpm`` is already an input feature, style is
    categorical), so the groove model trains on its continuation target instead. The per-file
    metadata goes to ``groove_info.json``, which maps each MIDI path (relative to ``training/groove/``, as in
    ``info.csv``'s ``midi_filename``) to the row's own columns: ``drummer``, ``session``, ``id``,
    ``style`` (verbatim, e.g. ``"funk/groove1"``), ``bpm`` (int), ``beat_type`` (``beat``/
    ``fill``), ``time_signature`` (e.g. ``"4-4"``), ``duration`` (seconds, float), ``split``,
    plus ``primary_style`` / ``secondary_style``: ``style`` split at its first ``/`` (the same
    split TensorFlow Datasets uses). Nothing is inferred beyond that.
    """
    result = OrganizeResult("groove")
    infos = sorted(raw_dir.rglob("info.csv"))
    if not infos:
        raise OrganizeError(f"no info.csv under {raw_dir}; was the Groove archive extracted there?")
    info = infos[0]
    root = info.parent
    rows = _csv_rows(info)
    needed = {"midi_filename", "style", "bpm"}
    if not rows or not needed <= rows[0].keys():
        raise OrganizeError(
            f"{info} lacks the columns {sorted(needed)} (has {sorted(rows[0]) if rows else 'no rows'})"
        )
    out = training_dir / "groove"
    labels: dict[str, dict[str, Any]] = {}
    pairs: list[tuple[Path, Path]] = []
    missing = 0
    for row in rows:
        rel = row["midi_filename"].replace("\\", "/")
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        src = root.joinpath(*parts) if parts and ".." not in parts else None
        if src is None or not src.is_file():
            missing += 1
            continue
        entry: dict[str, Any] = {k: row[k] for k in GROOVE_LABEL_FIELDS if k in row}
        try:
            entry["bpm"] = int(float(row["bpm"]))
        except ValueError:
            log.warning("%s: %s has a non-numeric bpm %r; kept as text", info, rel, row["bpm"])
        if "duration" in entry:
            with contextlib.suppress(ValueError):
                entry["duration"] = float(entry["duration"])
        primary, _, secondary = row["style"].partition("/")
        entry["primary_style"] = primary
        entry["secondary_style"] = secondary or None
        key = "/".join(parts)
        labels[key] = entry
        pairs.append((src, out.joinpath(*parts)))
    pairs.append((info, out / "info.csv"))
    _place_tree(pairs, result, link=link, progress=progress, desc="organize groove")
    labels_path = out / "groove_info.json"
    write_text_if_changed(labels_path, json.dumps(labels, indent=1, sort_keys=True) + "\n")
    result.labels_file, result.labelled = labels_path, len(labels)
    result.outputs = [str(out), str(labels_path)]
    if missing:
        result.notes.append(f"{missing} info.csv rows name a MIDI file that is not in the archive")
    result.notes.append("groove_info.json: info.csv columns per file + style split into primary/secondary; "
                        "no drum_labels.json (Groove has no numeric per-file targets: the groove model "
                        "trains on its second-half continuation target)")
    return result


Organizer = Callable[..., OrganizeResult]
ORGANIZERS: dict[str, Organizer] = {
    "deam": organize_deam,
    "lakh": organize_lakh,
    "maestro": organize_maestro,
    "groove": organize_groove,
}


# ─── one dataset, end to end ───────────────────────────────────────────────────────────────────


@dataclass
class DatasetResult:
    """What :func:`download_dataset` did for one dataset."""

    name: str
    raw_dir: Path
    downloads: list[DownloadResult] = field(default_factory=list)
    extracted: bool = False
    members: int = 0
    archives_removed: list[str] = field(default_factory=list)
    organize: OrganizeResult | None = None
    notes: list[str] = field(default_factory=list)


def _extract_marker_ok(source: DatasetSource, marker: dict[str, Any] | None, *, enforce: bool) -> bool:
    if marker is None or marker.get("dataset") != source.name:
        return False
    recorded = {a.get("file"): a.get("sha256") for a in marker.get("archives", []) if isinstance(a, dict)}
    if set(recorded) != {f.filename for f in source.files}:
        return False
    if enforce:
        for f in source.files:
            if f.sha256 and recorded.get(f.filename) != f.sha256.lower():
                return False
    return True


EXTRACT_MARKER = ".extracted.json"


def download_dataset(
    source: DatasetSource,
    datasets_dir: Path | str,
    *,
    organize: bool = False,
    keep_archives: bool = False,
    force: bool = False,
    use_existing_raw: bool = False,
    enforce_checksum: bool = True,
    link_files: bool = True,
    retries: int = 5,
    backoff_s: float = 2.0,
    timeout_s: float = 60.0,
    progress: bool = True,
) -> DatasetResult:
    """Download, verify and extract ``source`` under ``datasets_dir``; optionally organise it.

    Re-running is cheap: when ``raw/<name>/.extracted.json`` matches the source, nothing is
    downloaded (not even a request is made) and nothing is extracted again.
    """
    layout = DatasetsLayout(Path(datasets_dir))
    raw_dir = layout.raw / source.name
    result = DatasetResult(source.name, raw_dir)
    marker = _read_json(raw_dir / EXTRACT_MARKER)

    if use_existing_raw and raw_dir.is_dir() and marker is None:
        result.notes.append(f"using {raw_dir} as it is (--use-existing-raw); nothing downloaded")
        log.info("%s: using existing %s without a marker (--use-existing-raw)", source.name, raw_dir)
    elif not force and _extract_marker_ok(source, marker, enforce=enforce_checksum):
        result.notes.append(f"already extracted ({raw_dir / EXTRACT_MARKER})")
        log.info("%s: already extracted in %s; nothing to download", source.name, raw_dir)
    else:
        if raw_dir.exists() and marker is None:
            raise ExtractionError(
                f"{raw_dir} exists but has no {EXTRACT_MARKER} marker, so it was not finished by "
                "this tool. Delete it to extract again, or, if you put the dataset there yourself, "
                "re-run with --use-existing-raw"
            )
        for remote in source.files:
            result.downloads.append(download_file(
                remote, layout.downloads, retries=retries, backoff_s=backoff_s,
                timeout_s=timeout_s, progress=progress, enforce_checksum=enforce_checksum,
                force=force, hint=manual_hint(source, remote, layout),
            ))
        scratch = layout.raw / f".{source.name}.extracting"
        if scratch.exists():
            shutil.rmtree(scratch)
        try:
            for dl in result.downloads:
                log.info("%s: extracting %s", source.name, dl.path.name)
                result.members += safe_extract(dl.path, scratch, progress=progress)
            _write_json(scratch / EXTRACT_MARKER, {
                "schema": MARKER_SCHEMA, "dataset": source.name, "members": result.members,
                "archives": [{"file": d.path.name, "url": d.url, "size_bytes": d.size_bytes,
                              "sha256": d.sha256, "checks": d.checks} for d in result.downloads],
                "extracted_at": _now(),
            })
            if raw_dir.exists():  # --force over a finished extraction of ours
                shutil.rmtree(raw_dir)
            os.replace(scratch, raw_dir)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        result.extracted = True
        if not keep_archives:
            for dl in result.downloads:
                if dl.origin == FOUND_IN_PLACE:  # a file the user put there is theirs to delete
                    result.notes.append(f"kept {dl.path} (you placed it there)")
                    continue
                _unlink(dl.path, _marker_path(dl.path))
                result.archives_removed.append(dl.path.name)

    if organize:
        organizer = ORGANIZERS.get(source.organizer)
        if organizer is None:
            raise UsageError(f"{source.name}: unknown organizer {source.organizer!r}")
        org = organizer(raw_dir, layout.training, link=link_files, progress=progress)
        org.dataset = source.name
        _write_json(layout.training / ".organized" / f"{source.name}.json", {
            "schema": MARKER_SCHEMA, "dataset": source.name, "raw_dir": str(raw_dir),
            "outputs": org.outputs, "files_placed": org.placed, "files_already_there": org.already_there,
            "labels_file": str(org.labels_file) if org.labels_file else None,
            "labelled": org.labelled, "notes": org.notes, "organized_at": _now(),
        })
        result.organize = org
    return result


# ─── dry run and the source table ──────────────────────────────────────────────────────────────

ORGANIZE_TARGETS = {
    "deam": "training/audio/ + training/audio/labels.csv",
    "lakh": "training/midi/ (no labels: none exist for Lakh)",
    "maestro": "training/maestro/",
    "groove": "training/groove/ + training/groove/groove_info.json (metadata, not targets)",
}


def plan_dataset(source: DatasetSource, datasets_dir: Path | str, *, organize: bool = False,
                 force: bool = False, enforce_checksum: bool = True,
                 use_existing_raw: bool = False) -> list[str]:
    """What :func:`download_dataset` would do, from local files only (no network, no writes)."""
    layout = DatasetsLayout(Path(datasets_dir))
    raw_dir = layout.raw / source.name
    lines: list[str] = []
    marker = _read_json(raw_dir / EXTRACT_MARKER)
    if use_existing_raw and raw_dir.is_dir() and marker is None:
        lines.append(f"would use {raw_dir} as it is (--use-existing-raw): nothing to download")
    elif not force and _extract_marker_ok(source, marker, enforce=enforce_checksum):
        lines.append(f"already extracted in {raw_dir}: nothing to download or extract")
    else:
        if raw_dir.exists() and marker is None:
            lines.append(f"WOULD STOP: {raw_dir} exists without a marker (delete it or use --use-existing-raw)")
        for remote in source.files:
            dest = layout.downloads / remote.filename
            part, _ = _part_paths(dest)
            if not force and _valid_marker(remote, dest, enforce=enforce_checksum):
                lines.append(f"{dest}: already downloaded and verified")
            elif not force and dest.is_file():
                lines.append(f"{dest}: present without a marker; would verify and use it")
            elif not force and part.is_file():
                lines.append(f"would resume {remote.url} from byte {part.stat().st_size} -> {dest}")
            else:
                lines.append(f"would download {remote.url} (size: {remote.approx_size}) -> {dest}")
        lines.append(f"would extract {len(source.files)} archive(s) -> {raw_dir}")
    if organize:
        lines.append(f"would organize into {layout.root}/: {ORGANIZE_TARGETS.get(source.organizer, 'training/')}")
    return lines


def format_source_table(sources: Mapping[str, DatasetSource]) -> str:
    """The ``--list`` text: every source with its files, sizes, checksums and licence."""
    out: list[str] = []
    wrap = textwrap.TextWrapper(width=100, initial_indent="    ", subsequent_indent="    ")
    for key, src in sources.items():
        default = " (default)" if key in DEFAULT_DATASETS else ""
        out.append(f"{key}{default}: {src.title}")
        out.append(f"  homepage: {src.homepage}")
        out.append(f"  licence:  {src.licence}")
        for f in src.files:
            out.append(f"  file:     {f.url}")
            out.append(f"            size {f.approx_size}")
            if f.sha256:
                out.append(f"            sha256 {f.sha256} (enforced; {f.checksum_source})")
            elif f.reference_sha256:
                out.append(f"            sha256 {f.reference_sha256} ({f.checksum_source})")
            else:
                out.append("            sha256: none published (measured value is recorded)")
        out.append(f"  organize: {ORGANIZE_TARGETS.get(src.organizer, '?')}")
        if src.notes:
            out.append("  notes:")
            out.extend(wrap.wrap(src.notes))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# ─── CLI ───────────────────────────────────────────────────────────────────────────────────────


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.music.download_datasets",
        description=(
            "Download the music datasets (DEAM, Lakh MIDI, MAESTRO, Groove) from their official "
            "URLs, resume broken transfers, verify published checksums, extract safely and, with "
            "--organize, lay them out under <datasets-dir>/training/ for the training loaders. "
            "Re-running is safe: finished, verified steps are skipped."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--datasets-dir", type=Path, default=Path("datasets"),
                        help="root folder for downloads/, raw/ and training/")
    parser.add_argument("--datasets", default=",".join(DEFAULT_DATASETS),
                        help=f"comma-separated names; available: {', '.join(SOURCES)}")
    parser.add_argument("--organize", action="store_true",
                        help="also lay the data out under <datasets-dir>/training/ (see --list)")
    parser.add_argument("--list", action="store_true",
                        help="print the sources (URLs, sizes, checksums, licences) and exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="print what would be done from local state only; no network, no writes")
    parser.add_argument("--keep-archives", action="store_true",
                        help="keep the downloaded archives after a verified extraction")
    parser.add_argument("--force", action="store_true",
                        help="download and extract again even when markers say it is done")
    parser.add_argument("--use-existing-raw", action="store_true",
                        help="organize from a raw/<dataset>/ folder you filled yourself (no marker)")
    parser.add_argument("--no-checksum", action="store_true",
                        help="do not fail on a published size/SHA-256 mismatch (still recorded)")
    parser.add_argument("--copy", action="store_true",
                        help="copy files into training/ instead of hardlinking them to raw/")
    parser.add_argument("--retries", type=int, default=5, help="retries per file after a broken transfer")
    parser.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug logging")
    return parser


def _select(names: str, sources: Mapping[str, DatasetSource]) -> list[DatasetSource]:
    wanted = [n.strip().lower() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in sources]
    if unknown:
        raise UsageError(f"unknown dataset(s) {', '.join(unknown)}; choose from {', '.join(sources)}")
    if not wanted:
        raise UsageError("--datasets is empty; choose from " + ", ".join(sources))
    return [sources[n] for n in dict.fromkeys(wanted)]


def main(argv: Sequence[str] | None = None, *, sources: Mapping[str, DatasetSource] | None = None) -> int:
    """CLI entry point; ``sources`` replaces the built-in table (tests point it at a local server)."""
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    table = dict(sources if sources is not None else SOURCES)
    if args.list:
        print(format_source_table(table), end="")
        return 0
    selected = _select(args.datasets, table)
    enforce = not args.no_checksum
    if args.dry_run:
        print(f"dry run: nothing is downloaded or written (datasets dir: {args.datasets_dir})")
        for src in selected:
            print(f"{src.name}:")
            for line in plan_dataset(src, args.datasets_dir, organize=args.organize,
                                     force=args.force, enforce_checksum=enforce,
                                     use_existing_raw=args.use_existing_raw):
                print(f"  {line}")
        return 0

    failed: list[str] = []
    for src in selected:
        try:
            res = download_dataset(
                src, args.datasets_dir, organize=args.organize, keep_archives=args.keep_archives,
                force=args.force, use_existing_raw=args.use_existing_raw, enforce_checksum=enforce,
                link_files=not args.copy, retries=args.retries, timeout_s=args.timeout,
                progress=not args.no_progress,
            )
        except DatasetDownloadError as exc:
            print(f"{src.name}: FAILED: {exc}", file=sys.stderr)
            failed.append(src.name)
            continue
        fetched = [d.path.name for d in res.downloads if d.fetched]
        print(f"{src.name}: ok ({res.raw_dir})")
        if fetched:
            print(f"  downloaded + verified: {', '.join(fetched)}")
        for d in res.downloads:
            print(f"  {d.path.name}: sha256 {d.sha256}; " + "; ".join(f"{k}: {v}" for k, v in d.checks.items()))
        if res.extracted:
            print(f"  extracted {res.members} members")
        if res.archives_removed:
            print(f"  archives removed after extraction (use --keep-archives to keep): {', '.join(res.archives_removed)}")
        for note in res.notes:
            print(f"  {note}")
        if res.organize is not None:
            org = res.organize
            print(f"  organized -> {', '.join(org.outputs)} ({org.placed} placed, {org.already_there} already there"
                  + (f", {org.labelled} labelled" if org.labels_file else "") + ")")
            for note in org.notes:
                print(f"    {note}")
    if failed:
        print(f"failed: {', '.join(failed)} (finished steps are kept; re-run the same command to resume)",
              file=sys.stderr)
        return 1
    return 0


def cli() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    cli()
