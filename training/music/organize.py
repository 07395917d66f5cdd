"""``--organize``: lay extracted datasets out as the training loaders read them (idempotent).

Each organiser links (or copies) files into ``training/`` and records what it placed in
``training/.organized/<dataset>.json``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from training.fetch import FetchError
from workflow.files import link_or_copy, write_text_if_changed

log = logging.getLogger(__name__)


class OrganizeError(FetchError):
    """The extracted dataset does not have the files ``--organize`` needs."""





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
