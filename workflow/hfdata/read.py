"""Reading a built dataset: resolve its path columns, its metadata, the DatasetDict, token headers.

Path columns are relative to the dataset folder (``../`` with ``--materialize none``), so a folder
moved together with its sources stays valid. Embedded int16 codes: read them with
:func:`arrow_row_to_numpy` (fastest, ~15 µs for a 10 s row) or ``with_format("numpy", ...,
dtype=np.int16)`` (~80 µs); ``datasets``' numpy formatter gives int64 otherwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import ecdc
from ..errors import DatasetError, EcdcFormatError
from .schema import META_FILE

if TYPE_CHECKING:  # datasets takes ~1 s to import: only functions that need it import it
    import datasets
    import pyarrow as pa


def resolve_path(dataset_dir: Path | str, rel: str | None) -> Path | None:
    """A row's ``audio`` / ``cond`` / ``wav`` value → absolute path (``None`` stays ``None``).

    Paths are joined lexically (``../`` is collapsed without following links), the same way they
    were made, so a ``--materialize none`` dataset resolves wherever its folder is mounted.
    """
    if rel is None:
        return None
    return Path(resolve_str(os.path.abspath(dataset_dir), rel))


def resolve_str(abs_dir: str, rel: str) -> str:
    """:func:`resolve_path` on strings, for a loader's hot path (``abs_dir`` already absolute):
    a plain relative path (the common case) is joined without ``normpath``."""
    if ".." in rel or rel.startswith("/") or "//" in rel or "/./" in rel or rel.startswith("./"):
        return os.path.normpath(os.path.join(abs_dir, rel))
    return f"{abs_dir}/{rel}"


def read_dataset_meta(dataset_dir: Path | str) -> dict[str, Any]:
    """The dataset's :data:`META_FILE` (codec, fps, weights, features, splits, …) as a dict."""
    path = Path(dataset_dir) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(
            f"{dataset_dir}: not a dataset built by wf-build-dataset ({META_FILE} is missing); "
            "build it with wf-build-dataset TOKENS_DIR OUT_DIR") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable dataset metadata ({exc}); rebuild the dataset "
                           "with wf-build-dataset --fresh") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("splits"), dict):
        raise DatasetError(f"{path}: dataset metadata is not an enc-hf-workflow metadata object; "
                           "rebuild the dataset with wf-build-dataset --fresh")
    return meta


def load_dataset_dir(dataset_dir: Path | str) -> datasets.DatasetDict:
    """``datasets.load_from_disk`` of a folder built by s5, with a clear error if it is not one."""
    import datasets

    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise DatasetError(f"dataset folder not found: {dataset_dir}")
    read_dataset_meta(dataset_dir)
    try:
        ds = datasets.load_from_disk(str(dataset_dir))
    except Exception as exc:  # noqa: BLE001 - datasets raises many types for broken folders
        raise DatasetError(f"{dataset_dir}: datasets.load_from_disk failed ({type(exc).__name__}: "
                           f"{exc}); rebuild the dataset with wf-build-dataset") from exc
    if not isinstance(ds, datasets.DatasetDict):
        raise DatasetError(f"{dataset_dir}: holds a single Dataset, not a DatasetDict; rebuild it "
                           "with wf-build-dataset")
    return ds


#: Bytes read at once from a token file for its header (Meta's and s2's headers are ~100-300).
HEAD_BYTES = 4096


def read_token_header(path: Path | str) -> ecdc.EcdcHeader:
    """Header of a token file, checked against the file size (a truncated file fails here).

    `.ecdc` files are read header-only; the seed's legacy torch files are loaded whole.
    """
    name = str(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)  # holds the whole header of a typical file: one read
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise EcdcFormatError(f"{name}: cannot read file ({exc.strerror or exc}); check the path") from exc
    if head[:len(ecdc.MAGIC)] != ecdc.MAGIC:
        return ecdc.load_tokens(path).header
    try:
        header = ecdc.read_ecdc_header(head)
    except EcdcFormatError:  # a longer header, or a broken one: read again for the file's own message
        header = ecdc.read_ecdc_header(path)
    expected = header.data_offset + header.payload_bytes
    if size != expected:
        raise EcdcFormatError(
            f"{name}: file is {size} bytes but its header implies {expected} "
            f"({'truncated' if size < expected else 'trailing data'}); {ecdc.REENCODE_HINT}")
    return header


def arrow_row_to_numpy(table: pa.Table, row: int = 0) -> dict[str, Any]:
    """Row ``row`` of an Arrow table as Python scalars and numpy arrays in their stored dtypes.

    ``codes`` → int16 ``[K, T]``, ``cond_values`` → float32 ``[T, D]`` (or ``None``), both
    zero-copy views where Arrow allows. Use with ``ds.with_format("arrow")[i]`` (or a slice)::

        arrow = ds["train"].with_format("arrow")
        row = arrow_row_to_numpy(arrow[i])
    """
    out: dict[str, Any] = {}
    for name in table.column_names:
        col = table.column(name)
        if name in ("codes", "cond_values"):
            arr = col.slice(row, 1).combine_chunks()
            if arr.null_count:
                out[name] = None
                continue
            inner = arr.flatten()
            values = inner.flatten().to_numpy(zero_copy_only=False)
            out[name] = values.reshape(len(inner), -1) if len(inner) else values.reshape(0, 0)
        else:
            out[name] = col[row].as_py()
    return out
