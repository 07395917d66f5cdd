"""The music-dataset catalogue: where each archive is, its checksums and licence, and the layout.

Used by :mod:`training.music.download_datasets` (the CLI) and :mod:`training.music.organize`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from training.fetch import RemoteFile


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
