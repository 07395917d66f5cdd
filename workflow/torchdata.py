"""``TokenCondDataset``: frame-aligned windows of codec tokens and conditioning for training.

Reads a DatasetDict written by s5 (embedded Arrow columns, else the ``.ecdc`` and sidecar files)
and returns ``codes`` and normalised ``cond`` cut from the same token frames; :func:`collate` pads
a batch and adds its mask. Normalisation, cropping, padding and workers: README.md, "Training data
loader (`workflow.torchdata`) and `wf-inspect`".
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import Dataset

from . import hfdata
from .ecdc import read_ecdc
from .ecdc_window import WindowLayout, read_window, window_layout
from .errors import DatasetError
from .hfdata.flat import FlatSplit, check_flat, open_flat
from .hfdata.read import resolve_str
from .hfdata.schema import SOURCES
from .sidecar import RowsLayout, read_rows, read_sidecar, rows_layout

log = logging.getLogger(__name__)

PAD_ID = -100
#: Sidecars at least this big are memory-mapped (only the window's pages are touched when they are
#: float32); smaller ones are read whole, which is about twice as fast as setting up a mapping.
MMAP_MIN_BYTES = 1 << 20
CODES_COLUMN = "codes"
COND_COLUMN = "cond_values"

PathLike = Union[str, "os.PathLike[str]"]


def _worth_mmap(path: Path) -> bool:
    try:
        return path.stat().st_size >= MMAP_MIN_BYTES
    except OSError:
        return False  # read_sidecar reports the missing file


class _Unsupported(Exception):
    """An embedded column's Arrow layout the zero-copy reader does not handle (falls back)."""


# ------------------------------------------------------------------------- embedded columns


class _MatrixColumn:
    """Row ``i`` of a ``list<list<x>>`` Arrow column as a zero-copy numpy ``[rows, width]`` view.

    Works on the memory-mapped table: per chunk, the outer and inner offsets and the leaf values
    are viewed once as numpy arrays; a row is then two offset look-ups and a reshape. Rows whose
    inner lists differ in length, nulls inside a row, or other layouts raise :class:`_Unsupported`.
    """

    def __init__(self, chunked: pa.ChunkedArray):
        self.chunks = list(chunked.chunks)
        self.starts = np.cumsum([0] + [len(c) for c in self.chunks])
        self._views: dict[int, tuple] = {}

    def _view(self, c: int) -> tuple:
        got = self._views.get(c)
        if got is not None:
            return got
        arr = self.chunks[c]
        if isinstance(arr, pa.ExtensionArray):  # datasets' Array2D: storage is list<list<x>>
            arr = arr.storage
        if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type)):
            raise _Unsupported(f"outer type {arr.type}")
        outer = arr.offsets.to_numpy()
        valid = None if arr.null_count == 0 else arr.is_valid().to_numpy(zero_copy_only=False)
        inner = arr.values
        if pa.types.is_list(inner.type) or pa.types.is_large_list(inner.type):
            if inner.null_count:
                raise _Unsupported("null inner lists")
            inner_off, fixed, leaf = inner.offsets.to_numpy(), 0, inner.values
        elif pa.types.is_fixed_size_list(inner.type):
            if inner.null_count:
                raise _Unsupported("null inner lists")
            width = inner.type.list_size
            inner_off, fixed, leaf = inner.offset, width, inner.values
        else:
            raise _Unsupported(f"inner type {inner.type}")
        if leaf.null_count:
            raise _Unsupported("null values")
        try:
            values = leaf.to_numpy(zero_copy_only=True)
        except (pa.ArrowInvalid, NotImplementedError) as exc:
            raise _Unsupported(str(exc)) from exc
        got = (outer, valid, inner_off, fixed, values)
        self._views[c] = got
        return got

    def row(self, i: int) -> np.ndarray | None:
        c = int(np.searchsorted(self.starts, i, side="right")) - 1
        local = i - int(self.starts[c])
        outer, valid, inner_off, fixed, values = self._view(c)
        if valid is not None and not valid[local]:
            return None
        a, b = int(outer[local]), int(outer[local + 1])
        n = b - a
        if fixed:
            base = inner_off
            return values[(base + a) * fixed:(base + b) * fixed].reshape(n, fixed)
        lo, hi = int(inner_off[a]), int(inner_off[b])
        if n == 0:
            return values[lo:lo].reshape(0, 0)
        width = (hi - lo) // n
        if width * n != hi - lo or (n > 1 and np.any(np.diff(inner_off[a:b + 1]) != width)):
            raise _Unsupported("ragged inner lists")
        return values[lo:hi].reshape(n, width)


class _StringColumn:
    """Row ``i`` of a string column, decoded straight from the memory-mapped Arrow buffers.

    About a microsecond per value, and no per-row Python objects built when the split is opened.
    """

    def __init__(self, chunked: pa.ChunkedArray):
        self.starts = np.cumsum([0] + [len(c) for c in chunked.chunks])
        self.parts = []
        for arr in chunked.chunks:
            valid = None if arr.null_count == 0 else arr.is_valid().to_numpy(zero_copy_only=False)
            _, off_buf, data = arr.buffers()
            dtype = np.int64 if pa.types.is_large_string(arr.type) else np.int32
            offsets = (np.zeros(1, dtype) if off_buf is None
                       else np.frombuffer(off_buf, dtype)[arr.offset:arr.offset + len(arr) + 1])
            self.parts.append((offsets, valid, b"" if data is None else memoryview(data)))

    def __getitem__(self, i: int) -> str | None:
        c = int(np.searchsorted(self.starts, i, side="right")) - 1 if len(self.parts) > 1 else 0
        local = i - int(self.starts[c])
        offsets, valid, data = self.parts[c]
        if valid is not None and not valid[local]:
            return None
        return bytes(data[int(offsets[local]):int(offsets[local + 1])]).decode("utf-8")


# --------------------------------------------------------------------------------- the dataset


@dataclass
class _Open:
    """What one process holds open: the split and its column readers (never pickled)."""

    ds: Any
    table: pa.Table
    indices: pa.ChunkedArray | None
    matrices: dict[str, _MatrixColumn | None]
    formatted: dict[str, Any]
    flat: FlatSplit | None = None
    strings: dict[str, _StringColumn] | None = None
    ints: dict[str, np.ndarray] | None = None
    layouts: _FileLayouts | None = None


class _FileLayouts:
    """Per-row byte layouts of a file-backed split, parsed the first time a row is read.

    Compact arrays (~70 bytes a row, whatever the file names) rather than objects per row, so a
    worker that has touched 10^6 rows holds ~70 MB, not a dict of a million layouts.
    """

    UNKNOWN, WINDOWED, WHOLE = 0, 1, 2
    DTYPES = ("", "<f2", "<f4")  # cond dtype code 0: the row has no sidecar

    def __init__(self, rows: int):
        self.state = np.zeros(rows, np.int8)
        self.codes = np.zeros((rows, 5), np.int64)  # WindowLayout fields
        self.cond = np.zeros((rows, 4), np.int64)  # data offset, dtype code, frames, file size


class TokenCondDataset(Dataset):
    """Windows of ``codes`` / ``cond`` from one split of an s5 dataset (see the module docstring).

    Each item is a dict: ``id`` (str), ``start`` (first frame of the window in the row), ``length``
    (frames in the window), ``codes`` (long ``[K, length]``) and ``cond`` (float32
    ``[length, D]``, D = number of dataset features, 0 for a row without a sidecar).
    """

    def __init__(
        self,
        dataset_dir: PathLike,
        split: str = "train",
        window_frames: int | None = None,
        random_crop: bool = True,
        normalize_cond: bool = True,
        *,
        clip: bool = True,
        source: str = "auto",
    ):
        if window_frames is not None and (isinstance(window_frames, bool) or int(window_frames) < 1):
            raise ValueError(f"window_frames must be a positive number of frames or None, got {window_frames!r}")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        self.dataset_dir = Path(dataset_dir)
        self.split = split
        self.window_frames = None if window_frames is None else int(window_frames)
        self.random_crop = bool(random_crop)
        self.normalize_cond = bool(normalize_cond)
        self.clip = bool(clip)
        self.source = source

        self.meta: dict[str, Any] = hfdata.read_dataset_meta(self.dataset_dir)
        # Ranges are the dataset-wide ones (all splits); the column order is this split's own
        # (the same as the dataset's unless splits were built from sidecars with other features).
        features: Mapping[str, Mapping[str, Any]] = self.meta.get("features") or {}
        split_meta = (self.meta.get("splits") or {}).get(split) or {}
        order = split_meta.get("feature_order", self.meta.get("feature_order"))
        self.feature_names: list[str] = list(features if order is None else order)
        unknown = [n for n in self.feature_names if n not in features]
        if unknown:
            raise DatasetError(f"{self.dataset_dir}: split {split!r} lists feature(s) {', '.join(unknown)} "
                               f"that the dataset meta does not describe; rebuild it with wf-build-dataset")
        self.features = {n: dict(features.get(n) or {}) for n in self.feature_names}
        self._lo, self._span, self._dead = self._ranges()
        self._any_dead = bool(self._dead.any())

        handle = self._open()  # checks the split now, in the calling process
        names = set(handle.table.column_names)
        has_codes, has_cond = CODES_COLUMN in names, COND_COLUMN in names
        if source == "embedded" and not has_codes:
            raise DatasetError(f"{self.dataset_dir}: split {split!r} has no embedded '{CODES_COLUMN}' "
                               "column; rebuild it with wf-build-dataset --embed, or use source='files'")
        self.embedded_codes = has_codes and source != "files"
        self.embedded_cond = has_cond and source != "files"
        self._len = handle.ds.num_rows
        # file-backed rows are read by window (parsed layouts + pread) when the columns allow it
        self._windowed = (not self.embedded_codes and not self.embedded_cond
                          and {"id", "audio", "cond"} <= set(handle.strings or {}))
        self._abs_dir = os.path.abspath(self.dataset_dir)
        self._names = tuple(self.feature_names)

    # -- setup -------------------------------------------------------------------------------------
    def _ranges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-feature ``lo``, ``span`` (``(v - lo) / span`` maps min..max to 0..1) and the
        features whose range is empty (max == min, or unknown without normalisation)."""
        d = len(self.feature_names)
        lo, span, dead = np.zeros(d, np.float32), np.ones(d, np.float32), np.ones(d, bool)
        for j, name in enumerate(self.feature_names):
            f = self.features[name]
            fmin, fmax = f.get("min"), f.get("max")
            if fmin is None or fmax is None:
                if self.normalize_cond:
                    raise DatasetError(
                        f"{self.dataset_dir}: feature {name!r} has no min/max in the dataset meta, so it "
                        "cannot be normalised; rebuild the dataset with wf-build-dataset, or pass "
                        "normalize_cond=False")
                continue
            lo[j] = float(fmin)
            if float(fmax) > float(fmin):
                span[j], dead[j] = float(fmax) - float(fmin), False
        return lo, span, dead

    def _open(self) -> _Open:
        handle = self.__dict__.get("_handle")
        if handle is not None:
            return handle
        dd = hfdata.load_dataset_dir(self.dataset_dir)
        if self.split not in dd:
            raise DatasetError(f"{self.dataset_dir}: no split {self.split!r} (has: {', '.join(dd) or 'none'})")
        ds = dd[self.split]
        indices = getattr(ds, "_indices", None)
        table = ds.data.table
        handle = _Open(ds, table, None if indices is None else indices.column(0), {}, {})
        names = table.column_names
        handle.strings = {n: _StringColumn(table.column(n)) for n in ("id", "audio", "cond") if n in names}
        handle.ints = {n: table.column(n).to_numpy() for n in ("num_frames", "num_codebooks") if n in names}
        if self.source != "files" and CODES_COLUMN in names:
            handle.flat = open_flat(self.dataset_dir / self.split)
            if handle.flat is not None:
                check_flat(handle.flat, table)
                self._check_flat_features(handle.flat)
        self._handle = handle
        return handle

    def _check_flat_features(self, flat: FlatSplit) -> None:
        d, t = flat.index[:, 4], flat.index[:, 2]
        bad = (d >= 0) & (d != self.num_features) & (t > 0)
        if bad.any():
            raise DatasetError(f"{flat.folder}: {int(bad.sum())} row(s) have cond values with other than "
                               f"the dataset's {self.num_features} features; rebuild the split with "
                               "wf-build-dataset --embed")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_handle", None)  # each worker maps the Arrow files itself
        return state

    # -- rows --------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._len

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    @property
    def feature_ranges(self) -> dict[str, tuple[float | None, float | None]]:
        """``{name: (min, max)}``: the dataset-wide range each feature is normalised with."""
        return {n: (f.get("min"), f.get("max")) for n, f in self.features.items()}

    def _physical(self, h: _Open, idx: int) -> int:
        if not -self._len <= idx < self._len:
            raise IndexError(f"index {idx} out of range for {self._len} rows")
        idx = idx % self._len if self._len else idx
        return idx if h.indices is None else int(h.indices[idx].as_py())

    def row(self, idx: int) -> dict[str, Any]:
        """The row's scalar columns (no arrays): ``id``, ``audio``, ``cond``, ``num_frames``, …"""
        h = self._open()
        i = self._physical(h, idx)
        return {name: h.table.column(name)[i].as_py() for name in h.table.column_names
                if name not in (CODES_COLUMN, COND_COLUMN)}

    def _row_fields(self, h: _Open, i: int, names: Sequence[str]) -> dict[str, Any]:
        strings, ints = h.strings or {}, h.ints or {}
        out: dict[str, Any] = {}
        for n in names:
            if n in strings:
                out[n] = strings[n][i]
            elif n in ints:
                out[n] = int(ints[n][i])
            else:
                out[n] = h.table.column(n)[i].as_py() if n in h.table.column_names else None
        return out

    def _embedded(self, h: _Open, i: int, column: str, dtype: type) -> np.ndarray | None:
        if column not in h.matrices:
            h.matrices[column] = _MatrixColumn(h.table.column(column))
        reader = h.matrices[column]
        if reader is not None:
            try:
                return reader.row(i)
            except _Unsupported as exc:
                log.info("column %r: %s; reading it through datasets' numpy formatter", column, exc)
                h.matrices[column] = None
        # Fallback: datasets' numpy formatter with an explicit dtype (no int64 blow-up). It works on
        # logical row numbers, so map back through the indices mapping if there is one.
        if column not in h.formatted:
            h.formatted[column] = h.ds.with_format("numpy", columns=[column], dtype=dtype)
        logical = i if h.indices is None else int(np.flatnonzero(h.indices.to_numpy() == i)[0])
        value = h.formatted[column][logical][column]
        if value is None:
            return None
        if value.dtype == object:
            value = np.stack(list(value)) if len(value) else np.zeros((0, 0), dtype)
        return value

    def _path(self, rel: Any, what: str, row_id: Any) -> Path:
        path = hfdata.resolve_path(self.dataset_dir, rel) if rel else None
        if path is None:
            raise DatasetError(f"{self.dataset_dir}: row {row_id!r} has no {what} path; rebuild the "
                               "dataset with wf-build-dataset")
        return path

    def read_item(self, idx: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """The whole row, unnormalised: codes int16 ``[K, T]``, cond float32 ``[T, D]``, row fields.

        Checks that the arrays match the row's ``num_codebooks`` / ``num_frames`` and each other,
        and raises :class:`DatasetError` naming the row and the file otherwise. Arrays may be
        read-only views of the memory-mapped table; copy before writing into them.
        """
        h = self._open()
        i = self._physical(h, idx)
        row = self._row_fields(h, i, ("id", "audio", "cond", "num_frames", "num_codebooks"))
        rid = row["id"]

        if h.flat is not None:
            codes = h.flat.codes(i)
            where = f"row {rid!r} (flat codes)"
        elif self.embedded_codes:
            codes = self._embedded(h, i, CODES_COLUMN, np.int16)
            where = f"row {rid!r} (embedded codes)"
            if codes is None:
                raise DatasetError(f"{self.dataset_dir}: {where} is null; rebuild the dataset")
        else:
            path = self._path(row["audio"], "audio (.ecdc)", rid)
            codes = read_ecdc(path).codes
            where = f"row {rid!r} ({path})"
        k, t = (int(x) for x in codes.shape)
        self._check_codes(where, k, t, row)
        cond = self._read_cond(h, i, row, t)
        return codes, cond, row

    def _check_codes(self, where: str, k: int, t: int, row: Mapping[str, Any]) -> None:
        if row["num_codebooks"] is not None and k != row["num_codebooks"] and not (t == 0 and k == 0):
            raise DatasetError(f"{self.dataset_dir}: {where}: codes have {k} codebooks but the row says "
                               f"{row['num_codebooks']}; rebuild the dataset with wf-build-dataset")
        if row["num_frames"] is not None and t != row["num_frames"]:
            raise DatasetError(f"{self.dataset_dir}: {where}: codes have {t} frames but the row says "
                               f"{row['num_frames']}; rebuild the dataset with wf-build-dataset")

    def _cond_frames_error(self, where: str, got: int, t: int) -> DatasetError:
        return DatasetError(f"{self.dataset_dir}: {where}: cond has {got} frames but the codes have "
                            f"{t}; re-run wf-sidecar-init/-add for this file and rebuild")

    # -- file-backed windows -----------------------------------------------------------------------
    def _layout(self, h: _Open, i: int) -> int:
        """Parse row ``i``'s `.ecdc` and sidecar headers (checked like :meth:`read_item`) into
        ``h.layouts``; WINDOWED if both can be read by window, else WHOLE (read whole files)."""
        lay = h.layouts
        row = self._row_fields(h, i, ("id", "audio", "cond", "num_frames", "num_codebooks"))
        path = self._path(row["audio"], "audio (.ecdc)", row["id"])
        window = window_layout(path)
        state = lay.WHOLE
        if window is not None:
            self._check_codes(f"row {row['id']!r} ({path})", window.num_codebooks, window.num_frames, row)
            lay.codes[i] = window
            state = lay.WINDOWED
            if row["cond"]:
                cpath = self._path(row["cond"], "cond (.cond.npy)", row["id"])
                rows = rows_layout(cpath)
                if rows is None or list(rows.names) != self.feature_names:
                    state = lay.WHOLE  # another dtype or column order: read_item handles it
                elif rows.frames != window.num_frames:
                    raise self._cond_frames_error(f"row {row['id']!r} ({cpath})", rows.frames, window.num_frames)
                else:
                    lay.cond[i] = (rows.data_offset, lay.DTYPES.index(rows.dtype), rows.frames, rows.file_size)
        lay.state[i] = state
        return state

    def _file_item(self, h: _Open, i: int) -> dict[str, Any] | None:
        """The item of row ``i`` read by window (two ``pread`` calls), or None to read whole files."""
        if h.layouts is None:
            h.layouts = _FileLayouts(h.table.num_rows)
        state = h.layouts.state[i]
        if state == _FileLayouts.UNKNOWN:
            state = self._layout(h, i)
        if state != _FileLayouts.WINDOWED:
            return None
        window = WindowLayout(*h.layouts.codes[i].tolist())
        t, win = window.num_frames, self.window_frames
        start, n = 0, t
        if win is not None and t > win:
            start = int(torch.randint(0, t - win + 1, ()).item()) if self.random_crop else 0
            n = win
        strings = h.strings or {}
        codes = read_window(self._abs(strings["audio"][i]), window, start, n, dtype=np.int64)
        offset, dtype, frames, size = h.layouts.cond[i].tolist()
        if dtype:
            rows = RowsLayout(offset, _FileLayouts.DTYPES[dtype], frames, self._names, size)
            cond = read_rows(self._abs(strings["cond"][i]), rows, start, n)
        else:
            cond = np.zeros((n, 0), np.float32)
        return self._item(strings["id"][i], start, codes, cond, fresh=True)

    def _abs(self, rel: str) -> str:
        return resolve_str(self._abs_dir, rel)

    def _read_cond(self, h: _Open, i: int, row: dict[str, Any], t: int) -> np.ndarray:
        rid = row["id"]
        if self.embedded_cond:
            values = h.flat.cond(i) if h.flat is not None else self._embedded(h, i, COND_COLUMN, np.float32)
            if values is None:
                return np.zeros((t, 0), np.float32)
            if values.shape[0] == 0:
                values = values.reshape(0, self.num_features)
            where = f"row {rid!r} (embedded cond_values)"
            if values.shape[1] != self.num_features:
                raise DatasetError(f"{self.dataset_dir}: {where} has {values.shape[1]} columns but the "
                                   f"dataset has {self.num_features} features; rebuild the dataset")
        else:
            if not row["cond"]:
                return np.zeros((t, 0), np.float32)
            path = self._path(row["cond"], "cond (.cond.npy)", rid)
            sc = read_sidecar(path, mmap=_worth_mmap(path))
            where = f"row {rid!r} ({path})"
            names = sc.names
            if names == self.feature_names:
                values = sc.values
            else:
                missing = [n for n in self.feature_names if n not in sc.features]
                if missing:
                    raise DatasetError(f"{self.dataset_dir}: {where} lacks feature(s) {', '.join(missing)} "
                                       "that the dataset lists; re-run wf-sidecar-add and rebuild the dataset")
                values = sc.values[:, [names.index(n) for n in self.feature_names]]
        if values.shape[0] != t:
            raise self._cond_frames_error(where, values.shape[0], t)
        return values

    # -- items -------------------------------------------------------------------------------------
    def normalize(self, cond: np.ndarray) -> np.ndarray:
        """Dataset-wide min/max scaling of a ``[T, D]`` block to ``[0, 1]`` (a new float32 array)."""
        out = np.array(cond, dtype=np.float32)  # the one allocation; the rest is in place
        if cond.shape[1] == 0:
            return out
        out -= self._lo
        out /= self._span
        if self._any_dead:
            out[:, self._dead] = 0.0  # max == min: no information, a constant 0
        if self.clip:  # two ufuncs: np.clip's Python wrapper costs more than both on a window
            np.maximum(out, 0.0, out=out)
            np.minimum(out, 1.0, out=out)
        return out

    def window(self, idx: int, start: int = 0, length: int | None = None) -> dict[str, Any]:
        """The item of row ``idx`` cut at an explicit ``start`` frame (``length`` frames at most)."""
        codes, cond, row = self.read_item(idx)
        return self._cut(codes, cond, row, start, length)

    def _cut(self, codes: np.ndarray, cond: np.ndarray, row: dict[str, Any],
             start: int, length: int | None) -> dict[str, Any]:
        t = codes.shape[1]
        start = max(0, min(int(start), t))
        n = t - start if length is None else max(0, min(int(length), t - start))
        return self._item(row["id"], start, codes[:, start:start + n], cond[start:start + n])

    def _item(self, rid: str, start: int, codes: np.ndarray, cond: np.ndarray,
              fresh: bool = False) -> dict[str, Any]:
        # copies just the window, unless the caller made it (``fresh``, int64: windowed reads)
        c = codes if fresh else np.array(codes, dtype=np.int64)
        v = self.normalize(cond) if self.normalize_cond else np.array(cond, dtype=np.float32)
        return {"id": rid, "start": start, "length": int(c.shape[1]),
                "codes": torch.from_numpy(c), "cond": torch.from_numpy(v)}

    def __getitem__(self, idx: int) -> dict[str, Any]:
        h = self._open()
        if h.flat is not None:  # the hot path: shapes were checked against the Arrow rows at open
            i = self._physical(h, idx)
            codes, cond = h.flat.codes(i), h.flat.cond(i)
            if cond is None:
                cond = np.zeros((codes.shape[1], 0), np.float32)
            row = {"id": h.strings["id"][i]}
        else:
            if self._windowed:
                item = self._file_item(h, self._physical(h, idx))
                if item is not None:
                    return item
            codes, cond, row = self.read_item(idx)
        t = codes.shape[1]
        win = self.window_frames
        if win is None or t <= win:
            return self._cut(codes, cond, row, 0, None)
        start = int(torch.randint(0, t - win + 1, ()).item()) if self.random_crop else 0
        return self._cut(codes, cond, row, start, win)

    def __repr__(self) -> str:
        src = "embedded" if self.embedded_codes else "files"
        return (f"TokenCondDataset({str(self.dataset_dir)!r}, split={self.split!r}, rows={self._len}, "
                f"window_frames={self.window_frames}, features={self.feature_names}, source={src})")


# ------------------------------------------------------------------------------------ batching


def collate(batch: Sequence[Mapping[str, Any]], pad_id: int = PAD_ID) -> dict[str, Any]:
    """Pad a list of items to the longest one.

    Returns ``codes`` long ``[B, K, T]`` (``pad_id`` past each length), ``cond`` float32
    ``[B, T, D]`` (0 past each length), ``mask`` bool ``[B, T]`` (True on real frames),
    ``lengths`` and ``start`` long ``[B]``, ``has_cond`` bool ``[B]`` and ``id`` (list of str).
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    ks = {int(b["codes"].shape[0]) for b in batch}
    if len(ks) != 1:
        raise DatasetError(f"items in one batch have different codebook counts {sorted(ks)} "
                           f"(ids: {', '.join(str(b['id']) for b in batch[:5])})")
    ds = {int(b["cond"].shape[1]) for b in batch} - {0}
    if len(ds) > 1:
        raise DatasetError(f"items in one batch have different feature counts {sorted(ds)} "
                           f"(ids: {', '.join(str(b['id']) for b in batch[:5])}); rebuild the dataset")
    k = ks.pop()
    d = ds.pop() if ds else 0
    n = len(batch)
    sizes = [int(b["codes"].shape[1]) for b in batch]
    t = max(sizes)
    codes, cond, mask, lengths, start, has_cond = _packed([
        ((n, k, t), torch.long), ((n, t, d), torch.float32), ((n, t), torch.bool),
        ((n,), torch.long), ((n,), torch.long), ((n,), torch.bool)])
    codes.fill_(pad_id)
    cond.zero_()
    for j, b in enumerate(batch):
        L = sizes[j]
        codes[j, :, :L] = b["codes"]
        if b["cond"].shape[1]:
            cond[j, :L] = b["cond"]
    lengths.copy_(torch.tensor(sizes, dtype=torch.long))
    start.copy_(torch.tensor([int(b["start"]) for b in batch], dtype=torch.long))
    has_cond.copy_(torch.tensor([bool(b["cond"].shape[1]) for b in batch]))
    torch.lt(torch.arange(t)[None, :], lengths[:, None], out=mask)
    return {"codes": codes, "cond": cond, "mask": mask, "lengths": lengths, "start": start,
            "has_cond": has_cond, "id": [b["id"] for b in batch]}


def _packed(specs: Sequence[tuple[tuple[int, ...], torch.dtype]]) -> list[torch.Tensor]:
    """Uninitialised contiguous tensors that are views of ONE storage.

    A ``DataLoader`` worker hands each storage to the main process through its own shared-memory
    segment and file descriptor (~0.3 ms each); one storage per batch instead of six makes
    ``num_workers > 0`` about twice as fast for small batches. The views never overlap.
    """
    offsets, total = [], 0
    for shape, dtype in specs:
        size = torch.empty((), dtype=dtype).element_size()
        offsets.append(total // size)
        total += -(-int(np.prod(shape, dtype=np.int64)) * size // 8) * 8  # keep 8-byte alignment
    storage = torch.UntypedStorage(max(total, 8))
    return [torch.empty(0, dtype=dtype).set_(storage, off, shape)
            for (shape, dtype), off in zip(specs, offsets)]


def make_collate(pad_id: int = PAD_ID) -> functools.partial:
    """A picklable collate function with another pad id (e.g. the codebook size)."""
    return functools.partial(collate, pad_id=pad_id)


__all__ = ["PAD_ID", "TokenCondDataset", "collate", "make_collate"]
