"""Conditioning sidecars: ``<stem>.cond.npy`` (``[T, D]``) + ``<stem>.cond.json`` (schema v2).

Row *t* of the array is token frame *t* of its `.ecdc` file. This module is the only code that
reads or writes the pair (atomically, JSON last; v1 files are upgraded), so every stage agrees on
names, stats and ranges. Format: README.md, "File formats".
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .errors import SidecarError
from .files import atomic_path, atomic_write_text, read_at

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
NPY_SUFFIX = ".cond.npy"
DTYPES = ("float16", "float32")
MODES = ("append", "overwrite")
_FLOAT16_MAX = float(np.finfo(np.float16).max)


@dataclass(slots=True)
class FeatureInfo:
    """Metadata of one sidecar column (slotted: a build holds one per feature per file)."""

    units: str | None = None
    doc_string: str | None = None
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    producer: str | None = None
    range_from: str = "data"  # "producer": min/max were given and are the normalisation range

    def to_json(self) -> dict[str, Any]:
        return {k: v for k in _INFO_FIELDS if (v := getattr(self, k)) is not None}

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str = "") -> FeatureInfo:
        if not isinstance(d, Mapping):
            raise SidecarError(f"{where}: feature entry must be an object, got {type(d).__name__}")
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        for key in ("min", "max", "mean", "std"):
            if key in known and known[key] is not None:
                try:
                    known[key] = float(known[key])
                except (TypeError, ValueError) as exc:
                    raise SidecarError(f"{where}: {key} must be a number, got {known[key]!r}") from exc
        if "range_from" not in known:
            # v1 / hand-written files: an explicit range is a user-given normalisation range.
            known["range_from"] = "producer" if "min" in known and "max" in known else "data"
        for key in ("units", "doc_string", "producer", "range_from"):  # the same in every file:
            if isinstance(known.get(key), str):  # one copy, not one per file, in a big build
                known[key] = sys.intern(known[key])
        return cls(**known)


_INFO_FIELDS = tuple(FeatureInfo.__dataclass_fields__)


@dataclass
class Sidecar:
    """One file's conditioning: ``values`` float32 ``[T, D]`` in memory plus feature metadata."""

    values: np.ndarray
    fps: float
    source: str
    features: dict[str, FeatureInfo] = field(default_factory=dict)
    dtype: str = "float16"
    extra: dict[str, Any] = field(default_factory=dict)  # unknown JSON keys, kept on rewrite

    @property
    def frames(self) -> int:
        return int(self.values.shape[0])

    @property
    def names(self) -> list[str]:
        return list(self.features)

    def column(self, name: str) -> np.ndarray:
        try:
            return self.values[:, self.names.index(name)]
        except ValueError:
            raise SidecarError(f"feature {name!r} not in sidecar of {self.source} "
                               f"(has: {', '.join(self.names) or 'none'})") from None

    def meta_json(self) -> dict[str, Any]:
        return {**self.extra, "schema_version": SCHEMA_VERSION, "fps": float(self.fps),
                "frames": self.frames, "source": self.source, "dtype": self.dtype,
                "features": {n: f.to_json() for n, f in self.features.items()}}


# -- paths ---------------------------------------------------------------------------------------------
def json_path_for(npy_path: Path | str) -> Path:
    """``x.cond.npy`` → ``x.cond.json`` (never ``x.cond.cond.json``)."""
    p = os.fspath(npy_path)
    if not os.path.basename(p).endswith(".npy"):
        raise SidecarError(f"{p}: sidecar arrays must end in .npy (e.g. {NPY_SUFFIX})")
    return Path(p[: -len(".npy")] + ".json")


def sidecar_path_for(ecdc_path: Path | str, audio_root: Path | str, cond_root: Path | str | None = None,
                     suffix: str = NPY_SUFFIX) -> Path:
    """Where the sidecar of ``ecdc_path`` lives: beside it, or mirrored under ``cond_root``."""
    if not suffix.endswith(".npy"):
        raise SidecarError(f"sidecar suffix must end in .npy, got {suffix!r}")
    ecdc_path = Path(ecdc_path)
    rel = ecdc_path.relative_to(audio_root)
    base = Path(cond_root) / rel if cond_root is not None else ecdc_path
    return base.with_name(sidecar_name(base.name, suffix))


def sidecar_name(token_name: str, suffix: str = NPY_SUFFIX) -> str:
    """``f.ecdc`` → ``f.cond.npy``: the last extension replaced (by ``Path.suffix``'s rule)."""
    dot = token_name.rfind(".")
    return (token_name[:dot] if 0 < dot < len(token_name) - 1 else token_name) + suffix


# -- stats and validation ------------------------------------------------------------------------------
def column_stats(col: np.ndarray) -> dict[str, float]:
    """min/max/mean/std of one float column (float64 maths; empty → zeros)."""
    if col.size == 0:
        return {"min": 0.0, "max": 0.0, "mean": 0.0, "std": 0.0}
    c = col.astype(np.float64, copy=False)
    return {"min": float(c.min()), "max": float(c.max()), "mean": float(c.mean()), "std": float(c.std())}


def check_values(name: str, values: Any, frames: int, *, where: str, producer: str | None = None) -> np.ndarray:
    """A producer's column as float32 ``[T]``, or a :class:`SidecarError` naming what is wrong."""
    who = f"producer {producer!r}" if producer else "values"
    try:
        arr = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise SidecarError(f"{where}: {who} gave non-numeric values for {name!r} ({exc})") from exc
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim == 0:
        arr = np.full(frames, float(arr), dtype=np.float32)
    if arr.ndim != 1 or arr.shape[0] != frames:
        raise SidecarError(f"{where}: {who} returned shape {tuple(arr.shape)} for {name!r}, "
                           f"expected [{frames}] (one value per token frame)")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise SidecarError(f"{where}: {who} returned {int(bad.sum())} NaN/Inf value(s) for {name!r} "
                           f"(first at frame {int(np.argmax(bad))}); fix the producer or its input")
    return arr


def combine_stats(parts: list[tuple[FeatureInfo, int]]) -> FeatureInfo:
    """Dataset-wide stats of one feature from per-file stats weighted by frame counts.

    A producer-given range is kept if every file agrees on it; otherwise min/max are the extremes.
    """
    parts = [(f, n) for f, n in parts if n > 0 and f.mean is not None]
    if not parts:
        return FeatureInfo()
    total = sum(n for _, n in parts)
    mean = sum(f.mean * n for f, n in parts) / total
    var = sum(n * ((f.std or 0.0) ** 2 + (f.mean - mean) ** 2) for f, n in parts) / total
    first = parts[0][0]
    ranges = {(f.min, f.max) for f, _ in parts if f.range_from == "producer"}
    if len(ranges) == 1 and all(f.range_from == "producer" for f, _ in parts):
        lo, hi = next(iter(ranges))
        range_from = "producer"
    else:
        lo = min(f.min for f, _ in parts if f.min is not None)
        hi = max(f.max for f, _ in parts if f.max is not None)
        range_from = "data"
    return FeatureInfo(units=first.units, doc_string=first.doc_string, min=lo, max=hi, mean=mean,
                       std=math.sqrt(max(var, 0.0)), producer=first.producer, range_from=range_from)


# -- building ------------------------------------------------------------------------------------------
def empty_sidecar(frames: int, fps: float, source: str, dtype: str = "float16") -> Sidecar:
    """The ``[T, 0]`` skeleton s3 writes for each token file."""
    check_dtype(dtype)
    return Sidecar(np.zeros((int(frames), 0), np.float32), float(fps), source, {}, dtype)


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise SidecarError(f"sidecar dtype must be one of {DTYPES}, got {dtype!r}")
    return dtype


def merge_features(
    sc: Sidecar,
    new: Mapping[str, tuple[np.ndarray, FeatureInfo]],
    *,
    mode: str = "append",
    where: str = "",
) -> Sidecar:
    """A new :class:`Sidecar` with ``new`` columns added (``append``) or replaced (``overwrite``).

    ``append`` refuses a name that already exists. ``overwrite`` replaces that column in place
    (same position) and keeps the old units/doc/range where the new info gives none.
    """
    if mode not in MODES:
        raise SidecarError(f"mode must be one of {MODES}, got {mode!r}")
    where = where or sc.source
    names = sc.names
    dup = [n for n in new if n in sc.features]
    if dup and mode == "append":
        raise SidecarError(f"{where}: feature(s) {', '.join(dup)} already present; "
                           "use --mode overwrite to replace them")
    cols = [sc.values[:, i] for i in range(sc.values.shape[1])]
    features = dict(sc.features)
    for name, (values, info) in new.items():
        col = check_values(name, values, sc.frames, where=where, producer=info.producer)
        if name in features:
            old = features[name]
            keep = {k: getattr(old, k) for k in ("units", "doc_string") if getattr(info, k) is None}
            if info.range_from != "producer" and old.range_from == "producer":
                keep.update(min=old.min, max=old.max, range_from="producer")
            info = replace(info, **keep)
            cols[names.index(name)] = col
        else:
            cols.append(col)
            names.append(name)
        features[name] = info
    values = np.stack(cols, axis=1) if cols else np.zeros((sc.frames, 0), np.float32)
    return replace(sc, values=values.astype(np.float32, copy=False), features=features)


def drop_features(sc: Sidecar, names: list[str]) -> Sidecar:
    """A new :class:`Sidecar` without the columns ``names`` (names it lacks are ignored)."""
    keep = [i for i, n in enumerate(sc.names) if n not in names]
    features = {n: f for n, f in sc.features.items() if n not in names}
    return replace(sc, values=np.ascontiguousarray(sc.values[:, keep], dtype=np.float32), features=features)


def _with_stats(sc: Sidecar) -> dict[str, FeatureInfo]:
    out = {}
    for i, (name, info) in enumerate(sc.features.items()):
        st = column_stats(sc.values[:, i])
        if info.range_from == "producer" and info.min is not None and info.max is not None:
            st["min"], st["max"] = info.min, info.max
        out[name] = replace(info, **st)
    return out


# -- I/O -----------------------------------------------------------------------------------------------
def write_sidecar(npy_path: Path | str, sc: Sidecar, *, dtype: str | None = None) -> Sidecar:
    """Write the pair atomically (array first, JSON last); returns the sidecar with fresh stats.

    Stats come from the float32 values; the cast to float16 is refused if a value would overflow.
    """
    npy_path = Path(npy_path)
    dtype = check_dtype(dtype or sc.dtype)
    values = np.ascontiguousarray(sc.values, dtype=np.float32)
    if values.ndim != 2 or values.shape[1] != len(sc.features):
        raise SidecarError(f"{npy_path}: values of shape {values.shape} but {len(sc.features)} features")
    if not np.all(np.isfinite(values)):
        raise SidecarError(f"{npy_path}: refusing to write NaN/Inf values")
    if dtype == "float16" and values.size and float(np.abs(values).max()) > _FLOAT16_MAX:
        raise SidecarError(f"{npy_path}: values exceed float16's range (±{_FLOAT16_MAX:g}); "
                           "use --dtype float32")
    sc = replace(sc, values=values, dtype=dtype, features=_with_stats(replace(sc, values=values)))
    with atomic_path(npy_path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, values.astype(dtype))
    atomic_write_text(json_path_for(npy_path), json.dumps(sc.meta_json(), indent=1) + "\n")
    return sc


def read_sidecar_meta(npy_path: Path | str) -> dict[str, Any]:
    """The JSON of a sidecar, upgraded to schema v2 in memory (no array read)."""
    jpath = json_path_for(npy_path)
    try:
        with open(jpath, "rb") as fh:
            raw = json.loads(fh.read())
    except FileNotFoundError:
        raise SidecarError(f"{jpath}: sidecar metadata missing; run wf-sidecar-init (s3) "
                           "for this token folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SidecarError(f"{jpath}: unreadable sidecar metadata ({exc}); delete the pair and "
                           "re-run wf-sidecar-init / wf-sidecar-add") from exc
    if not isinstance(raw, dict):
        raise SidecarError(f"{jpath}: sidecar metadata must be a JSON object")
    return upgrade_meta(raw, str(jpath))


def upgrade_meta(raw: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Schema v1 (``names`` + ``norm``) → v2 (``features``); v2 is returned normalised."""
    version = raw.get("schema_version", 1 if "names" in raw else None)
    if version == SCHEMA_VERSION:
        feats = raw.get("features", {})
        if not isinstance(feats, dict):
            raise SidecarError(f"{where}: 'features' must be an object")
        out = dict(raw)
        out["features"] = {sys.intern(str(n)): FeatureInfo.from_json(f, where) for n, f in feats.items()}
        return out
    if version != 1:
        raise SidecarError(f"{where}: unknown sidecar schema_version {version!r} (this version reads 1 and 2)")
    names = raw.get("names", [])
    norm = raw.get("norm") or {}
    feats: dict[str, FeatureInfo] = {}
    for i, name in enumerate(names):
        entry: dict[str, Any] = {}
        if isinstance(norm, dict) and isinstance(norm.get(name), dict):
            entry = dict(norm[name])
        elif isinstance(norm, dict) and isinstance(norm.get("min"), list):
            entry = {"min": norm["min"][i], "max": norm.get("max", [None] * len(names))[i]}
        elif isinstance(norm, list) and i < len(norm) and isinstance(norm[i], (list, tuple)):
            entry = {"min": norm[i][0], "max": norm[i][1]}
        feats[str(name)] = FeatureInfo.from_json({k: v for k, v in entry.items() if v is not None}, where)
    extra = {k: v for k, v in raw.items() if k not in ("names", "norm", "schema_version")}
    return {**extra, "schema_version": SCHEMA_VERSION, "features": feats, "upgraded_from": 1}


@contextlib.contextmanager
def _array_errors(npy_path: Path | str) -> Iterator[None]:
    """A missing or unreadable ``.npy`` of a sidecar pair as a :class:`SidecarError` saying what to do."""
    try:
        yield
    except (OSError, ValueError) as exc:
        raise _array_error(npy_path, exc) from (None if isinstance(exc, FileNotFoundError) else exc)


def _array_error(npy_path: Path | str, exc: OSError | ValueError) -> SidecarError:
    if isinstance(exc, FileNotFoundError):
        return SidecarError(f"{npy_path}: sidecar array missing (metadata exists); re-run "
                            "wf-sidecar-init --overwrite for this file")
    return SidecarError(f"{npy_path}: unreadable sidecar array ({exc}); delete the pair and "
                        "re-run wf-sidecar-init / wf-sidecar-add")


#: numpy reads a ``.npy`` header with ``ast.literal_eval``, which CPython 3.11 does not run in
#: two threads at once ("SystemError: AST constructor recursion depth mismatch", seen in s5's
#: --embed threads): every use of numpy's header reader here holds this lock.
_NUMPY_PARSE_LOCK = threading.Lock()
#: The header numpy writes for a 2-D array (``np.save``); anything else goes to numpy's parser.
_NPY_2D = re.compile(r"\{'descr': '([<>|]?[a-z]\d+)', 'fortran_order': (False|True), "
                     r"'shape': \((\d+), (\d+)\), \} *\n")


def _npy_header(npy_path: Path | str) -> tuple[tuple[int, ...], bool, np.dtype, int] | None:
    """(shape, fortran_order, dtype, data offset) from a ``.npy`` header; None for format 3.0.
    Raises OSError / ValueError as ``np.load`` does.

    numpy's own header reader evaluates the header as Python (~50 us, and not thread-safe, see
    :data:`_NUMPY_PARSE_LOCK`); a 2-D header as ``np.save`` writes it is parsed here with one
    regular expression instead.
    """
    with open(npy_path, "rb") as fh:
        head = fh.read(256)
        if head[:6] == b"\x93NUMPY" and len(head) >= 10 and head[6] in (1, 2):
            start = 10 if head[6] == 1 else 12
            end = start + int.from_bytes(head[8:start], "little")
            m = _NPY_2D.fullmatch(head[start:end].decode("latin1")) if end <= len(head) else None
            if m is not None:
                return (int(m[3]), int(m[4])), m[2] == "True", np.dtype(m[1]), end
        fh.seek(0)
        with _NUMPY_PARSE_LOCK:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
            else:  # 3.0 (utf-8 field names): no public header reader
                return None
        return shape, fortran, dtype, fh.tell()


def load_npy(npy_path: Path | str, *, mmap: bool = False) -> np.ndarray:
    """A sidecar's ``.npy`` array (read-only memory map with ``mmap``), safe in threads.

    The one reader of sidecar arrays; raises OSError / ValueError as ``np.load(allow_pickle=False)``.
    """
    head = _npy_header(npy_path)
    if head is None:
        with _NUMPY_PARSE_LOCK:
            return np.load(npy_path, mmap_mode="r" if mmap else None, allow_pickle=False)
    shape, fortran, dtype, offset = head
    if dtype.hasobject:
        raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
    order, count = ("F" if fortran else "C"), math.prod(shape)
    if mmap and count:
        return np.memmap(npy_path, dtype, "r", offset, shape, order)
    arr = np.fromfile(npy_path, dtype, count=count, offset=offset)
    if arr.size != count:
        raise ValueError(f"the file holds {arr.size} of the array's {count} values (truncated)")
    return arr.reshape(shape, order=order)


def _checked_header(npy_path: Path) -> tuple[dict[str, Any], tuple[tuple[int, ...], bool, np.dtype, int] | None]:
    """The pair's upgraded metadata and ``.npy`` header, checked against each other."""
    meta = read_sidecar_meta(npy_path)
    with _array_errors(npy_path):
        npy = _npy_header(npy_path)
        shape = npy[0] if npy is not None else load_npy(npy_path, mmap=True).shape
    feats: dict[str, FeatureInfo] = meta["features"]
    if len(shape) != 2 or shape[1] != len(feats):
        raise SidecarError(f"{npy_path}: array has shape {shape}, expected [T, {len(feats)}] "
                           f"(features: {', '.join(feats) or 'none'})")
    if int(meta.get("frames", shape[0])) != shape[0]:
        raise SidecarError(f"{npy_path}: array has {shape[0]} rows but metadata says {meta['frames']} frames")
    try:
        meta["fps"] = float(meta.get("fps", 0.0))
    except (TypeError, ValueError):
        raise SidecarError(f"{npy_path}: fps must be a number, got {meta.get('fps')!r}") from None
    meta["frames"] = int(shape[0])
    return meta, npy


def read_sidecar_header(npy_path: Path | str) -> tuple[int, float, dict[str, FeatureInfo]]:
    """(frames, fps, features) of a sidecar pair, checked like :func:`read_sidecar`, reading
    only the ``.npy`` header (about 4x faster: for scans over many files)."""
    meta, _ = _checked_header(Path(npy_path))
    return meta["frames"], meta["fps"], meta["features"]


class RowsLayout(NamedTuple):
    """Where a sidecar's ``[T, D]`` values start in its ``.npy``: for :func:`read_rows`."""

    data_offset: int
    dtype: str
    frames: int
    names: tuple[str, ...]
    file_size: int  # when parsed: a file of another size has been rewritten since


def rows_layout(npy_path: Path | str) -> RowsLayout | None:
    """Parse a pair's metadata and ``.npy`` header once, checked like :func:`read_sidecar`.

    None when the array is not a C-ordered float16/float32 ``.npy`` of format 1 or 2 (read
    those whole with :func:`read_sidecar`).
    """
    npy_path = Path(npy_path)
    meta, npy = _checked_header(npy_path)
    if npy is None or npy[1] or npy[2].str not in ("<f2", "<f4"):
        return None
    return RowsLayout(npy[3], npy[2].str, meta["frames"], tuple(meta["features"]),
                      npy[3] + meta["frames"] * len(meta["features"]) * npy[2].itemsize)


def read_rows(npy_path: str | os.PathLike[str], layout: RowsLayout, start: int, n: int) -> np.ndarray:
    """Rows ``[start, start + n)`` of a sidecar as float32 ``[n, D]`` with one ``pread``, equal to
    ``read_sidecar(npy_path).values[start:start + n]``; :class:`SidecarError` if the window is
    outside the array or the file changed size since :func:`rows_layout`."""
    d = len(layout.names)
    if start < 0 or n < 0 or start + n > layout.frames:
        raise SidecarError(f"{npy_path}: rows [{start}, {start + n}) are outside the sidecar's "
                           f"{layout.frames} frames")
    dtype = np.dtype(layout.dtype)
    row_bytes = d * dtype.itemsize
    try:  # not _array_errors: a context manager per window costs more than the read
        raw, size = read_at(npy_path, layout.data_offset + start * row_bytes, n * row_bytes)
    except OSError as exc:
        raise _array_error(npy_path, exc) from (None if isinstance(exc, FileNotFoundError) else exc)
    if size != layout.file_size or len(raw) != n * row_bytes:
        raise SidecarError(f"{npy_path}: file is {size} bytes, not the {layout.file_size} its header "
                           "was read from: it changed while in use; re-open the dataset")
    return np.frombuffer(raw, dtype).reshape(n, d).astype(np.float32)


def read_sidecar(npy_path: Path | str, *, mmap: bool = False) -> Sidecar:
    """Read and check a sidecar pair; values come back as float32 ``[T, D]``."""
    npy_path = Path(npy_path)
    meta = read_sidecar_meta(npy_path)
    with _array_errors(npy_path):
        arr = load_npy(npy_path, mmap=mmap)
    feats: dict[str, FeatureInfo] = meta["features"]
    if arr.ndim != 2:
        raise SidecarError(f"{npy_path}: array has shape {arr.shape}, expected [T, D]")
    if arr.shape[1] != len(feats):
        raise SidecarError(f"{npy_path}: array has {arr.shape[1]} columns but the metadata names "
                           f"{len(feats)} features ({', '.join(feats) or 'none'})")
    frames = meta.get("frames", arr.shape[0])
    if int(frames) != arr.shape[0]:
        raise SidecarError(f"{npy_path}: array has {arr.shape[0]} rows but metadata says {frames} frames")
    dtype = str(arr.dtype)
    extra = {k: v for k, v in meta.items()
             if k not in ("schema_version", "fps", "frames", "source", "dtype", "features")}
    try:
        fps = float(meta.get("fps", 0.0))
    except (TypeError, ValueError):
        raise SidecarError(f"{npy_path}: fps must be a number, got {meta.get('fps')!r}") from None
    values = arr if (mmap and dtype == "float32") else arr.astype(np.float32)
    return Sidecar(values, fps, str(meta.get("source", "")), feats,
                   dtype if dtype in DTYPES else "float32", extra)


def in_stored_precision(value: float, dtype: str) -> float:
    """``value`` rounded to the sidecar's storage type: range checks compare like with like."""
    return float(np.asarray(value, dtype=np.float32).astype(dtype))
