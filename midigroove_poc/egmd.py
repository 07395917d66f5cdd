"""E-GMD metadata: read the dataset CSV, filter its rows, cut each row into beat-aligned windows.

E-GMD (Callender et al. 2020) has one CSV row per (performance, kit) rendering, so a row's key is
its MIDI file name without suffix (:attr:`EgmdRow.key`), not ``id``. The MIDI is on a metronome
grid with beat 0 at t = 0 s, so window ``k`` starts at ``k * hop_beats * 60 / bpm`` s; only windows
that end inside ``duration`` are kept (no padding). Columns and paths: README.md,
"midigroove_poc", **Data**.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from workflow.errors import WorkflowError

log = logging.getLogger(__name__)

__all__ = [
    "EGMD_COLUMNS",
    "EgmdCsvError",
    "EgmdRow",
    "Window",
    "filter_rows",
    "make_windows",
    "read_egmd_csv",
]

EGMD_COLUMNS: tuple[str, ...] = (
    "drummer", "session", "id", "style", "bpm", "beat_type", "time_signature", "duration",
    "split", "midi_filename", "audio_filename", "kit_name",
)  # fmt: skip

SPLITS: tuple[str, ...] = ("train", "validation", "test")

_EPS_S = 1e-6  # windows may end this far past `duration` (float rounding of beat arithmetic)


class EgmdCsvError(WorkflowError):
    """The E-GMD CSV is missing, lacks columns, or has a row that cannot be parsed."""


@dataclass(frozen=True)
class EgmdRow:
    """One E-GMD CSV row (one performance rendered with one kit), with resolved file paths."""

    drummer: str
    session: str
    id: str
    style: str
    bpm: float
    beat_type: str
    time_signature: str
    duration: float
    split: str
    midi_filename: str
    audio_filename: str
    kit_name: str
    midi_path: Path
    audio_path: Path

    @property
    def key(self) -> str:
        """Unique row key: ``midi_filename`` without its suffix (``id`` repeats across kits)."""
        name = self.midi_filename.replace("\\", "/")
        stem, dot, suffix = name.rpartition(".")
        return stem if dot and "/" not in suffix else name

    @property
    def beats_per_bar(self) -> int:
        """Numerator of ``time_signature`` (``"6-8"`` → 6); 4 if it cannot be parsed."""
        head = self.time_signature.replace("/", "-").split("-")[0].strip()
        try:
            value = int(head)
        except ValueError:
            return 4
        return value if value > 0 else 4


@dataclass(frozen=True)
class Window:
    """A span of ``duration_s`` seconds of a row starting at ``start_s`` (= beat ``start_beat``)."""

    row: EgmdRow
    index: int
    start_s: float
    duration_s: float
    start_beat: float


def _parse_float(value: str, column: str, line: int, csv_path: Path) -> float:
    """Parse a numeric CSV cell, naming the file, line and column when it is not a number."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise EgmdCsvError(
            f"{csv_path}: line {line}: column {column!r} is {value!r}, not a number; "
            "fix or delete that row (E-GMD's own CSV has numbers there)"
        ) from None
    if not math.isfinite(out) or out <= 0:
        raise EgmdCsvError(
            f"{csv_path}: line {line}: column {column!r} is {value!r}; it must be a positive "
            "number; fix or delete that row"
        )
    return out


def read_egmd_csv(csv_path: Path | str, dataset_root: Path | str | None = None) -> list[EgmdRow]:
    """Read every row of an E-GMD CSV; file names are resolved against ``dataset_root``.

    ``dataset_root`` defaults to the CSV's folder (E-GMD's layout). Files are not opened here, so
    reading the 45k-row CSV is instant; a missing MIDI/wav is reported by whoever opens it.
    """
    csv_path = Path(csv_path)
    root = Path(dataset_root) if dataset_root is not None else csv_path.parent
    if not csv_path.is_file():
        raise EgmdCsvError(
            f"{csv_path}: E-GMD CSV not found; pass the path of e-gmd-v1.0.0.csv "
            "(or set EGMD_CSV) — download E-GMD from https://g.co/magenta/e-gmd"
        )
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in EGMD_COLUMNS if c not in header]
            if missing:
                raise EgmdCsvError(
                    f"{csv_path}: not an E-GMD CSV: missing column(s) {', '.join(missing)} "
                    f"(found {', '.join(header) or 'no header'}); expected the columns "
                    f"{','.join(EGMD_COLUMNS)}"
                )
            reader.fieldnames = header
            rows: list[EgmdRow] = []
            for rec in reader:
                line = reader.line_num
                if not any((v or "").strip() for v in rec.values() if isinstance(v, str)):
                    continue  # blank line
                cells = {c: (rec.get(c) or "").strip() for c in EGMD_COLUMNS}
                for c in ("midi_filename", "audio_filename"):
                    if not cells[c]:
                        raise EgmdCsvError(
                            f"{csv_path}: line {line}: column {c!r} is empty; fix or delete "
                            "that row"
                        )
                rows.append(
                    EgmdRow(
                        drummer=cells["drummer"],
                        session=cells["session"],
                        id=cells["id"],
                        style=cells["style"],
                        bpm=_parse_float(cells["bpm"], "bpm", line, csv_path),
                        beat_type=cells["beat_type"],
                        time_signature=cells["time_signature"],
                        duration=_parse_float(cells["duration"], "duration", line, csv_path),
                        split=cells["split"],
                        midi_filename=cells["midi_filename"],
                        audio_filename=cells["audio_filename"],
                        kit_name=cells["kit_name"],
                        midi_path=root / cells["midi_filename"],
                        audio_path=root / cells["audio_filename"],
                    )
                )
    except UnicodeDecodeError as e:
        raise EgmdCsvError(
            f"{csv_path}: not a UTF-8 text CSV ({e}); pass E-GMD's e-gmd-v1.0.0.csv"
        ) from None
    except csv.Error as e:
        raise EgmdCsvError(f"{csv_path}: malformed CSV ({e}); re-download or repair it") from None
    if not rows:
        raise EgmdCsvError(f"{csv_path}: the CSV has a header but no rows; nothing to read")
    unknown = sorted({r.split for r in rows} - set(SPLITS))
    if unknown:
        log.warning("%s: unexpected split name(s) %s (E-GMD uses %s)", csv_path, unknown, SPLITS)
    return rows


def _as_set(values: str | Iterable[str] | None) -> set[str] | None:
    """Normalise a name or list of names to a casefolded set (None stays None)."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    return {v.strip().casefold() for v in values}


def filter_rows(
    rows: Sequence[EgmdRow],
    *,
    split: str | Iterable[str] | None = None,
    beat_type_only: bool | str | None = None,
    kit_include: Iterable[str] | None = None,
    kit_exclude: Iterable[str] | None = None,
) -> list[EgmdRow]:
    """Keep the rows that pass every given filter (None = no filter); order is preserved.

    ``split``: a split name or several. ``beat_type_only``: ``True`` keeps ``beat`` rows (drops
    fills), a string keeps that beat type (``"fill"``), ``False``/None keeps all. ``kit_include``
    / ``kit_exclude``: kit names (``"Acoustic Kit"``), compared case-insensitively.
    """
    splits = _as_set(split)
    if beat_type_only is True:
        beat_type: str | None = "beat"
    elif isinstance(beat_type_only, str):
        beat_type = beat_type_only.strip().casefold()
    else:
        beat_type = None
    include = _as_set(kit_include)
    exclude = _as_set(kit_exclude) or set()
    if include is not None:
        known = {r.kit_name.casefold() for r in rows}
        unknown = sorted(include - known)
        if unknown:
            log.warning("kit_include names not in the CSV: %s", unknown)
    out = []
    for r in rows:
        kit = r.kit_name.casefold()
        if splits is not None and r.split.casefold() not in splits:
            continue
        if beat_type is not None and r.beat_type.casefold() != beat_type:
            continue
        if include is not None and kit not in include:
            continue
        if kit in exclude:
            continue
        out.append(r)
    return out


def make_windows(
    row: EgmdRow, beats_per_chunk: float = 4.0, hop_beats: float | None = None
) -> list[Window]:
    """Windows of ``beats_per_chunk`` beats at the row's bpm, every ``hop_beats`` beats.

    ``hop_beats`` defaults to ``beats_per_chunk`` (no overlap); a smaller hop overlaps. Window
    ``k`` starts at beat ``k * hop_beats``; only windows lying fully inside ``row.duration`` are
    returned, so a row shorter than one chunk gives none.
    """
    hop = beats_per_chunk if hop_beats is None else hop_beats
    if not (math.isfinite(beats_per_chunk) and beats_per_chunk > 0):
        raise ValueError(f"beats_per_chunk must be a positive number, got {beats_per_chunk!r}")
    if not (math.isfinite(hop) and hop > 0):
        raise ValueError(f"hop_beats must be a positive number, got {hop_beats!r}")
    sec_per_beat = 60.0 / row.bpm
    chunk_s = beats_per_chunk * sec_per_beat
    windows: list[Window] = []
    k = 0
    while True:
        start_beat = k * hop
        start_s = start_beat * sec_per_beat
        if start_s + chunk_s > row.duration + _EPS_S:
            break
        windows.append(Window(row, k, start_s, chunk_s, start_beat))
        k += 1
    return windows
