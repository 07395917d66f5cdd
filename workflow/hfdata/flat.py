"""Flat token buffers beside an embedded split's Arrow files (s5 ``--embed``), for the loader.

``<split>/flat/`` holds every row's codes (``[K, T]`` row-major, int16) and cond values (``[T, D]``,
float32) back to back, a per-row index and a small JSON; the Arrow columns stay the data anyone
reads, :func:`check_flat` / :func:`verify_flat` check that the two agree. Layout: README.md,
"File formats".
"""

from __future__ import annotations

import array
import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from ..errors import DatasetError
from ..files import atomic_path, atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__package__)

FLAT_DIR = "flat"
CODES_FILE = "codes.int16"
COND_FILE = "cond.float32"
INDEX_FILE = "index.npy"
INFO_FILE = "flat.json"
FLAT_VERSION = 1
#: Index columns: element offset of the codes, K, T, element offset of the cond values, D (-1: none).
INDEX_COLUMNS = ("codes_offset", "num_codebooks", "num_frames", "cond_offset", "num_features")


class FlatWriter:
    """Appends rows to the flat buffers of one split; :meth:`close` writes the index and JSON.

    Memory stays at one row plus five int64 per row written (the index).
    """

    def __init__(self, folder: Path, codes_fh: BinaryIO, cond_fh: BinaryIO):
        self.folder = folder
        self._codes, self._cond = codes_fh, cond_fh
        self._index = array.array("q")  # 40 bytes per row, flat
        self._codes_at = 0
        self._cond_at = 0

    def add(self, codes: np.ndarray, cond: np.ndarray | None) -> None:
        k, t = (int(x) for x in codes.shape)
        self._codes.write(np.ascontiguousarray(codes, dtype=np.int16).tobytes())
        d = -1
        if cond is not None:
            d = int(cond.shape[1]) if cond.ndim == 2 else 0
            self._cond.write(np.ascontiguousarray(cond, dtype=np.float32).tobytes())
        self._index.extend((self._codes_at, k, t, self._cond_at, d))
        self._codes_at += k * t
        self._cond_at += t * max(d, 0) if cond is not None else 0

    def finish(self) -> None:
        index = np.frombuffer(self._index, dtype=np.int64).reshape(-1, len(INDEX_COLUMNS))
        buf = _npy_bytes(index)
        atomic_write_bytes(self.folder / INDEX_FILE, buf)
        info = {"version": FLAT_VERSION, "rows": int(index.shape[0]), "codes_elements": self._codes_at,
                "cond_elements": self._cond_at, "index_columns": list(INDEX_COLUMNS)}
        atomic_write_text(self.folder / INFO_FILE, json.dumps(info, indent=1) + "\n")


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    out = io.BytesIO()
    np.save(out, arr, allow_pickle=False)
    return out.getvalue()


@contextlib.contextmanager
def flat_writer(split_dir: Path) -> Iterator[FlatWriter]:
    """A :class:`FlatWriter` for ``split_dir/flat``; the buffers appear only if the block succeeds."""
    folder = Path(split_dir) / FLAT_DIR
    with atomic_path(folder / CODES_FILE) as codes_tmp, atomic_path(folder / COND_FILE) as cond_tmp:
        with open(codes_tmp, "wb") as cf, open(cond_tmp, "wb") as vf:
            writer = FlatWriter(folder, cf, vf)
            yield writer
        writer.finish()


@dataclass
class FlatSplit:
    """The memory-mapped buffers of one split: ``codes(i)`` and ``cond(i)`` are zero-copy views."""

    folder: Path
    index: np.ndarray
    codes_buf: np.ndarray
    cond_buf: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.index.shape[0])

    def codes(self, i: int) -> np.ndarray:
        off, k, t = self.index[i, :3].tolist()
        return self.codes_buf[off:off + k * t].reshape(k, t)

    def cond(self, i: int) -> np.ndarray | None:
        t, off, d = self.index[i, 2:].tolist()
        if d < 0:
            return None
        return self.cond_buf[off:off + t * d].reshape(t, d)


def _mapped(path: Path, dtype: type, n: int) -> np.ndarray:
    if n == 0:
        return np.zeros(0, dtype)
    # a plain ndarray view of the mapping: slicing an np.memmap costs a Python-level hook per slice
    return np.memmap(path, dtype=dtype, mode="r", shape=(n,)).view(np.ndarray)


def open_flat(split_dir: Path) -> FlatSplit | None:
    """The flat buffers of ``split_dir`` (None when it has none); raises if they are damaged."""
    folder = Path(split_dir) / FLAT_DIR
    if not (folder / INFO_FILE).is_file():
        return None
    try:
        info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
        if info.get("version") != FLAT_VERSION:
            raise ValueError(f"version {info.get('version')!r}, this reader knows {FLAT_VERSION}")
        index = np.load(folder / INDEX_FILE, allow_pickle=False)
        n_codes, n_cond = int(info["codes_elements"]), int(info["cond_elements"])
        sizes = ((folder / CODES_FILE).stat().st_size, (folder / COND_FILE).stat().st_size)
        if sizes != (2 * n_codes, 4 * n_cond) or index.shape != (int(info["rows"]), len(INDEX_COLUMNS)):
            raise ValueError(f"sizes {sizes} / index {index.shape} do not match {INFO_FILE}")
        return FlatSplit(folder, index, _mapped(folder / CODES_FILE, np.int16, n_codes),
                         _mapped(folder / COND_FILE, np.float32, n_cond))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{folder}: flat token buffers are damaged ({exc}); rebuild the split with "
                           "wf-build-dataset --embed, or delete that folder (the loader then reads the "
                           "Arrow columns)") from exc


def check_flat(flat: FlatSplit, table: pa.Table) -> None:
    """Cheap agreement check with the Arrow table: row count, K and T of every row."""
    where = f"{flat.folder}: flat token buffers"
    if flat.rows != table.num_rows:
        raise DatasetError(f"{where} have {flat.rows} rows, the Arrow split has {table.num_rows}; "
                           "rebuild the split with wf-build-dataset --embed")
    k = table.column("num_codebooks").to_numpy()
    t = table.column("num_frames").to_numpy()
    empty = flat.index[:, 2] == 0  # an empty file has K = 0 in its codes
    bad = ((flat.index[:, 1] != k) & ~empty) | (flat.index[:, 2] != t)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{where} disagree with the Arrow rows ({int(bad.sum())} rows, first: "
                           f"{table.column('id')[i].as_py()!r}); rebuild the split with wf-build-dataset --embed")


def verify_flat(split_dir: Path, table: pa.Table) -> list[str]:
    """Problems where the flat buffers differ from the Arrow columns (shapes, nulls, every value).

    Reads the Arrow columns chunk by chunk, so memory stays at one chunk.
    """
    import pyarrow.compute as pc

    try:
        flat = open_flat(split_dir)
        if flat is None:
            return []
        check_flat(flat, table)
    except DatasetError as exc:
        return [str(exc)]
    where = f"{flat.folder}: flat token buffers"
    idx = flat.index
    k, t, d = idx[:, 1], idx[:, 2], idx[:, 4]
    if not (np.array_equal(idx[:, 0], np.cumsum(k * t) - k * t)
            and np.array_equal(idx[:, 3], np.cumsum(t * np.maximum(d, 0)) - t * np.maximum(d, 0))):
        return [f"{where}: the index offsets are not contiguous; rebuild the split with wf-build-dataset --embed"]
    out: list[str] = []
    for col, buf, outer_len in (("codes", flat.codes_buf, None), ("cond_values", flat.cond_buf, t)):
        row = pos = 0
        for chunk in table.column(col).chunks:
            n = len(chunk)
            nulls = chunk.is_null().to_numpy(zero_copy_only=False)
            if col == "cond_values" and not np.array_equal(nulls, d[row:row + n] < 0):
                out.append(f"{where}: rows with and without cond_values differ from the Arrow column")
            lengths = pc.list_value_length(chunk).fill_null(0).to_numpy(zero_copy_only=False)
            want = (t[row:row + n] if outer_len is not None else k[row:row + n])
            ok_len = np.array_equal(lengths, np.where(nulls, 0, want)) or col == "codes" and \
                np.array_equal(lengths[t[row:row + n] > 0], want[t[row:row + n] > 0])
            leaf = chunk.flatten().flatten().to_numpy(zero_copy_only=False)
            if not ok_len or not np.array_equal(leaf, buf[pos:pos + len(leaf)]):
                out.append(f"{where}: {col} of rows {row}..{row + n - 1} differ from the Arrow column; "
                           "rebuild the split with wf-build-dataset --embed")
            row, pos = row + n, pos + len(leaf)
        if pos != len(buf):
            out.append(f"{where}: {col} hold {len(buf)} values, the Arrow column {pos}")
    return out
