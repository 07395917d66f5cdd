"""File names, format constants and the Arrow schema of a split, and writing its record batches.

Embedded columns (``--embed``): ``codes`` is ``List(List(int16))`` holding ``[K][T]`` and
``cond_values`` is ``List(List(float32))`` holding ``[T][D]`` (null where a file has no sidecar).
``Array2D`` was not used: it allows a variable first dimension only (so ``[T][K]``, not ``[K][T]``),
reads about twice as slowly through the numpy formatter, and gives NaN instead of None for a
missing sidecar.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DatasetError

if TYPE_CHECKING:  # datasets takes ~1 s to import: only functions that need it import it
    import datasets
    import pyarrow as pa
    from .scan import _Row


STAGE = "s5_build_dataset"
META_FILE = "enc_hf_workflow.json"
CARD_FILE = "README.md"
REPORTS_DIR = ".reports"
FORMAT_NAME = "enc-hf-workflow token dataset"
FORMAT_VERSION = 1
MATERIALIZE_MODES = ("link", "copy", "none")
#: Where a reader takes arrays from (``TokenCondDataset(source=...)``, ``wf-inspect --source``).
SOURCES = ("auto", "embedded", "files")
DEFAULT_RATIOS = "train=0.9,valid=0.05,test=0.05"

#: Column name → datasets dtype, in the order they are written. ``wav`` only with a wav root,
#: ``codes``/``cond_values`` only with ``embed``.
COLUMN_TYPES: dict[str, str] = {
    "id": "string",
    "audio": "string",
    "cond": "string (nullable)",
    "wav": "string",
    "num_frames": "int32",
    "num_codebooks": "int16",
    "fps": "float32",
    "sample_rate": "int32",
    "duration": "float32",
    "codec": "string",
    "codes": "List(List(int16)) [K][T]",
    "cond_values": "List(List(float32)) [T][D] (nullable)",
}
COLUMN_DOCS: dict[str, str] = {
    "id": "relative path of the token file without its suffix (POSIX); unique per split",
    "audio": "path of the .ecdc token file, relative to the dataset folder",
    "cond": "path of the .cond.npy sidecar ([T, D], row t = token frame t), relative; null if none",
    "wav": "path of the normalised wav the tokens were made from, relative to the dataset folder",
    "num_frames": "token frames T (from the .ecdc header)",
    "num_codebooks": "codebooks K",
    "fps": "token frames per second",
    "sample_rate": "codec sample rate in Hz",
    "duration": "audio duration in seconds",
    "codec": "codec model name from the .ecdc header",
    "codes": "the tokens, int16, K lists of T codes",
    "cond_values": "the sidecar values, float32, T lists of D values (feature order below)",
}


_RESERVED_NAMES = {META_FILE, CARD_FILE, REPORTS_DIR, "dataset_dict.json"}


def dataset_features(*, wav: bool, embed: bool) -> datasets.Features:
    """The ``datasets.Features`` of a split (see :data:`COLUMN_TYPES`)."""
    from datasets import Features, List, Value

    cols: dict[str, Any] = {"id": Value("string"), "audio": Value("string"), "cond": Value("string")}
    if wav:
        cols["wav"] = Value("string")
    cols.update(num_frames=Value("int32"), num_codebooks=Value("int16"), fps=Value("float32"),
                sample_rate=Value("int32"), duration=Value("float32"), codec=Value("string"))
    if embed:
        cols["codes"] = List(List(Value("int16")))
        cols["cond_values"] = List(List(Value("float32")))
    return Features(cols)


def _offsets(lengths: Sequence[int]) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    if out[-1] > np.iinfo(np.int32).max:
        raise DatasetError("a batch of embedded values exceeds Arrow's 2**31 list limit")
    return out.astype(np.int32)


def _nested_list_array(mats: Sequence[np.ndarray | None], dtype: np.dtype) -> pa.Array:
    """``list<list<dtype>>`` where row i is the 2-D ``mats[i]`` (``[outer][inner]``) or null."""
    import pyarrow as pa

    present = [m for m in mats if m is not None]
    outer = [0 if m is None else int(m.shape[0]) for m in mats]
    inner = [int(m.shape[1]) for m in present for _ in range(m.shape[0])]
    values = (np.concatenate([np.ascontiguousarray(m, dtype=dtype).reshape(-1) for m in present])
              if present else np.zeros(0, dtype))
    inner_arr = pa.ListArray.from_arrays(pa.array(_offsets(inner)), pa.array(values))
    mask = pa.array([m is None for m in mats]) if len(present) < len(mats) else None
    return pa.ListArray.from_arrays(pa.array(_offsets(outer)), inner_arr, mask=mask)


def _record_batch(rows: Sequence[_Row], schema: pa.Schema, *, wav: bool, embed: bool) -> pa.RecordBatch:
    import pyarrow as pa

    s = [r.scanned for r in rows]
    cols: dict[str, pa.Array] = {
        "id": pa.array([x.id for x in s], pa.string()),
        "audio": pa.array([r.audio for r in rows], pa.string()),
        "cond": pa.array([r.cond for r in rows], pa.string()),
    }
    if wav:
        cols["wav"] = pa.array([r.wav for r in rows], pa.string())
    cols["num_frames"] = pa.array(np.array([x.num_frames for x in s], np.int32))
    cols["num_codebooks"] = pa.array(np.array([x.num_codebooks for x in s], np.int16))
    cols["fps"] = pa.array(np.array([x.fps for x in s], np.float32))
    cols["sample_rate"] = pa.array(np.array([x.sample_rate for x in s], np.int32))
    cols["duration"] = pa.array(np.array([x.duration for x in s], np.float32))
    cols["codec"] = pa.array([x.codec for x in s], pa.string())
    if embed:
        cols["codes"] = _nested_list_array([r.codes for r in rows], np.dtype(np.int16))
        cols["cond_values"] = _nested_list_array([r.cond_values for r in rows], np.dtype(np.float32))
    return pa.RecordBatch.from_arrays([cols[f.name] for f in schema], schema=schema)
