"""Columns from a spreadsheet you already have (CSV/TSV): per-file constants, or per-file time series.

Rows are matched to token files by ``--csv-key-column`` (a relative path or a bare file name).
Without ``--csv-time-column`` each file has one row and each chosen column becomes a constant;
with it (seconds), each column is interpolated (``--csv-interp``) at the token frame times. A file
with no row fails. Details: paramproducers/README_paramproducers.md.
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workflow.errors import ProducerError, UsageError
from workflow.files import AUDIO_EXTENSIONS

KEY_CANDIDATES = ("file", "filename", "path", "name", "id", "key")
KNOWN_EXTENSIONS = tuple(AUDIO_EXTENSIONS) + (".ecdc", ".npy", ".mid", ".midi")


@dataclass
class Table:
    path: Path
    columns: list[str]
    time_column: str | None
    # key → list of (time, {column: value or None}); one entry in constant mode
    rows: dict[str, list[tuple[float, dict[str, float | None]]]] = field(default_factory=dict)
    by_stem: dict[str, str] = field(default_factory=dict)


_STATE: dict = {}


def normalise_key(text: str) -> str:
    """``./Drums\\k1.WAV`` → ``Drums/k1``: POSIX separators, no leading ``./``, no known extension."""
    key = text.strip().replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    for ext in KNOWN_EXTENSIONS:
        if key.lower().endswith(ext):
            return key[: -len(ext)]
    return key


def _number(cell: str) -> float | None:
    cell = cell.strip()
    if not cell:
        return None
    value = float(cell)
    if not math.isfinite(value):
        raise ValueError(cell)
    return value


def read_table(path: Path, *, key_column: str | None, time_column: str | None,
               columns: list[str] | None, delimiter: str | None) -> Table:
    """Parse and check the whole spreadsheet once (in ``init``); errors name row and column."""
    if not path.is_file():
        raise UsageError(f"--csv {path}: file not found")
    delim = delimiter or ("\t" if path.suffix.lower() in (".tsv", ".tab") else ",")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, delimiter=delim)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise UsageError(f"--csv {path}: the file is empty") from None
        body = [r for r in reader if any(c.strip() for c in r)]
    if key_column is None:
        key_column = next((c for c in KEY_CANDIDATES if c in header), None)
        if key_column is None:
            raise UsageError(f"--csv {path}: no file-name column among {', '.join(header)}; "
                             "name it with --csv-key-column")
    for flag, col in (("--csv-key-column", key_column), ("--csv-time-column", time_column)):
        if col is not None and col not in header:
            raise UsageError(f"--csv {path}: {flag} {col!r} not in the header ({', '.join(header)})")
    idx = {c: i for i, c in enumerate(header)}
    others = [c for c in header if c not in (key_column, time_column)]

    def cell(row: list[str], col: str) -> str:
        i = idx[col]
        return row[i] if i < len(row) else ""

    if columns:
        missing = [c for c in columns if c not in idx]
        if missing:
            raise UsageError(f"--csv {path}: --csv-columns {', '.join(missing)} not in the header "
                             f"({', '.join(header)})")
        chosen = list(dict.fromkeys(columns))
    else:
        chosen = []
        for col in others:
            try:
                vals = [_number(cell(r, col)) for r in body]
            except ValueError:
                continue  # text column (e.g. a comment): not a feature
            if any(v is not None for v in vals):
                chosen.append(col)
        if not chosen:
            raise UsageError(f"--csv {path}: no numeric columns besides {key_column!r}; "
                             "name them with --csv-columns")
    table = Table(path, chosen, time_column)
    for n, row in enumerate(body, start=2):
        key = normalise_key(cell(row, key_column))
        if not key:
            raise UsageError(f"--csv {path} line {n}: empty {key_column!r}")
        values: dict[str, float | None] = {}
        for col in chosen:
            try:
                values[col] = _number(cell(row, col))
            except ValueError:
                raise UsageError(f"--csv {path} line {n}: column {col!r} holds {cell(row, col)!r}, "
                                 "not a number") from None
        t = 0.0
        if time_column is not None:
            try:
                t = _number(cell(row, time_column))
            except ValueError:
                t = None
            if t is None:
                raise UsageError(f"--csv {path} line {n}: time {cell(row, time_column)!r} is not a number")
        entries = table.rows.setdefault(key, [])
        if time_column is None and entries:
            raise UsageError(f"--csv {path} line {n}: {key!r} appears twice; one row per file "
                             "(or pass --csv-time-column for time series)")
        if time_column is not None and any(t == e[0] for e in entries):
            raise UsageError(f"--csv {path} line {n}: {key!r} has two rows at time {t}")
        entries.append((t, values))
    for key, entries in table.rows.items():
        entries.sort(key=lambda e: e[0])
        if "/" not in key:
            table.by_stem[key] = key
    return table


def lookup(table: Table, ecdc_path: Path, audio_root: Path | None) -> list[tuple[float, dict]]:
    p = Path(ecdc_path)
    if audio_root is not None:
        rel = p.relative_to(audio_root).with_suffix("").as_posix()
        if rel in table.rows:
            return table.rows[rel]
    if p.stem in table.by_stem:
        return table.rows[table.by_stem[p.stem]]
    raise ProducerError(f"no row for this file in {table.path} (looked for key "
                        f"{rel if audio_root is not None else p.stem!r} and stem {p.stem!r})")


def interpolate(times: np.ndarray, values: np.ndarray, at: np.ndarray, how: str) -> np.ndarray:
    if how == "linear":
        return np.interp(at, times, values)
    if how == "previous":
        return values[np.clip(np.searchsorted(times, at, side="right") - 1, 0, len(times) - 1)]
    right = np.clip(np.searchsorted(times, at), 0, len(times) - 1)
    left = np.clip(right - 1, 0, len(times) - 1)
    take_left = np.abs(at - times[left]) <= np.abs(times[right] - at)
    return values[np.where(take_left, left, right)]


def add_cli_args(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--csv", type=Path, default=None, metavar="PATH", help="the spreadsheet (required)")
    parser.add_argument("--csv-key-column", default=None, metavar="COL",
                        help=f"column naming the file (default: first of {', '.join(KEY_CANDIDATES)})")
    parser.add_argument("--csv-time-column", default=None, metavar="COL",
                        help="time in seconds: the CSV is a per-file time series (default: constants)")
    parser.add_argument("--csv-columns", nargs="+", default=None, metavar="COL",
                        help="columns to add (default: all numeric ones)")
    parser.add_argument("--csv-interp", choices=("linear", "previous", "nearest"), default="linear",
                        help="time-series interpolation at frame times (default: linear)")
    parser.add_argument("--csv-delimiter", default=None,
                        help="field separator (default: tab for .tsv, else comma)")


def init(args: argparse.Namespace) -> None:
    path = getattr(args, "csv", None)
    if path is None:
        raise UsageError("producer from_csv needs --csv PATH")
    _STATE.clear()
    _STATE["table"] = read_table(Path(path), key_column=getattr(args, "csv_key_column", None),
                                 time_column=getattr(args, "csv_time_column", None),
                                 columns=getattr(args, "csv_columns", None),
                                 delimiter=getattr(args, "csv_delimiter", None))
    _STATE["interp"] = getattr(args, "csv_interp", "linear")


def feature_names(args: argparse.Namespace) -> list[str]:
    return list(_STATE["table"].columns)


def _fps(ecdc_path: Path) -> float:
    from workflow.ecdc_legacy import read_token_header

    return read_token_header(ecdc_path).fps


def produce(ecdc_path: Path, T: int, *, args: argparse.Namespace) -> dict[str, dict]:
    table: Table = _STATE["table"]
    root = getattr(args, "audio_root", None)
    entries = lookup(table, ecdc_path, Path(root) if root is not None else None)
    out: dict[str, dict] = {}
    if table.time_column is None:
        (_, row), = entries
        for col in table.columns:
            if row[col] is None:
                raise ProducerError(f"column {col!r} is empty for this file in {table.path}")
            out[col] = {"values": np.full(T, row[col], np.float32),
                        "doc_string": f"{col} from {table.path.name}"}
        return out
    at = np.arange(T, dtype=np.float64) / _fps(ecdc_path)
    for col in table.columns:
        pts = [(t, row[col]) for t, row in entries if row[col] is not None]
        if not pts:
            raise ProducerError(f"column {col!r} has no values for this file in {table.path}")
        times, vals = (np.array(x, np.float64) for x in zip(*pts))
        out[col] = {"values": interpolate(times, vals, at, _STATE["interp"]),
                    "doc_string": f"{col} from {table.path.name}, interpolated at frame times"}
    return out
