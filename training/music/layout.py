"""Where the suite's data lives (our folder names and the music-suite guide's) and how it is split.

:func:`find_data_root` picks ``training/maestro`` or ``training/dynamics_midi``, ``training/groove``
or ``training/drums``; :func:`official_split` reads MAESTRO's ``maestro-v*.csv`` / Groove's
``info.csv`` ``split`` column. More: README.md, "The music-model suite".
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Model → folders under ``--datasets-dir``, ours (the one ``--organize`` writes) first, then the
#: name the music-suite guide uses.
DATA_FOLDERS: dict[str, tuple[str, ...]] = {
    "emotion": ("training/audio",),
    "melody": ("training/midi",),
    "dynamics": ("training/maestro", "training/dynamics_midi"),
    "groove": ("training/groove", "training/drums"),
}

#: Metadata files with a ``split`` column, per dataset root (glob patterns, first match wins).
SPLIT_FILES: tuple[str, ...] = ("maestro-v*.csv", "info.csv")

_DATA_SUFFIXES = {".mid", ".midi", ".wav", ".flac", ".mp3", ".ogg", ".aiff", ".aif"}


def _has_data(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix.lower() in _DATA_SUFFIXES for p in folder.rglob("*"))


def find_data_root(datasets_dir: Path | str, model: str) -> Path:
    """The folder under ``datasets_dir`` that holds ``model``'s data.

    The first of :data:`DATA_FOLDERS` that holds data files, else the first that exists, else
    ours (so the caller's "not found" error names it). When both hold files, ours is used and
    the other is named in a warning.
    """
    folders = [Path(datasets_dir) / sub for sub in DATA_FOLDERS[model]]
    with_data = [f for f in folders if _has_data(f)]
    if len(with_data) > 1:
        log.warning("%s: both %s hold data; using %s (move or delete the other to silence this)",
                    model, " and ".join(map(str, with_data)), with_data[0])
    if with_data:
        return with_data[0]
    return next((f for f in folders if f.is_dir()), folders[0])


def describe_folders(datasets_dir: Path | str, model: str) -> str:
    """``"A"`` or ``"A or B"``: the folders :func:`find_data_root` looks at, for messages."""
    return " or ".join(str(Path(datasets_dir) / sub) for sub in DATA_FOLDERS[model])


@dataclass
class OfficialSplit:
    """Item indices per official split and the metadata file they came from."""

    train: list[int]
    validation: list[int]
    test: list[int]
    source: Path
    unmatched: int


def _split_file(root: Path) -> Path | None:
    for pattern in SPLIT_FILES:
        found = sorted(root.glob(pattern))
        if found:
            return found[-1]  # the newest MAESTRO version when several are there
    return None


def read_split_column(path: Path) -> dict[str, str]:
    """``midi_filename`` (POSIX, relative to the metadata file's folder) → ``split`` value."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    out: dict[str, str] = {}
    for row in rows:
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        if row.get("midi_filename") and row.get("split"):
            out[row["midi_filename"].replace("\\", "/").removeprefix("./")] = row["split"].lower()
    return out


def _lookup(keys: Sequence[str], table: dict[str, str]) -> list[str | None]:
    """Each key's split: by relative path, else by file name when that name is unique in ``table``."""
    names: dict[str, list[str]] = {}
    for k, v in table.items():
        names.setdefault(k.rsplit("/", 1)[-1], []).append(v)
    unique = {n: vs[0] for n, vs in names.items() if len(vs) == 1}
    return [table.get(k, unique.get(k.rsplit("/", 1)[-1])) for k in keys]


def official_split(root: Path | None, keys: Sequence[str]) -> OfficialSplit | None:
    """The dataset's own train/validation/test split of ``keys`` (paths relative to ``root``).

    None (the caller falls back to a random split) when ``root`` has no metadata file with a
    ``split`` column, or when it leaves the train or the validation part empty. Items the file
    does not list are left out of every part (counted in ``unmatched``, logged).
    """
    path = _split_file(root) if root is not None else None
    if path is None:
        return None
    table = read_split_column(path)
    if not table:
        log.warning("%s: no midi_filename/split columns; using a random split", path)
        return None
    parts: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    unmatched = 0
    for i, split in enumerate(_lookup(keys, table)):
        if split in parts:
            parts[split].append(i)
        else:
            unmatched += 1
    if not parts["train"] or not parts["validation"]:
        log.warning("%s: the official split leaves %d train / %d validation items of %d; using a "
                    "random split", path, len(parts["train"]), len(parts["validation"]), len(keys))
        return None
    if unmatched:
        log.warning("%s: %d of %d items are not listed there; left out of training and validation",
                    path, unmatched, len(keys))
    return OfficialSplit(parts["train"], parts["validation"], parts["test"], path, unmatched)
