"""Verification: every problem in a built dataset that would break training, one line each."""

from __future__ import annotations

import concurrent.futures as cf
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from .. import sidecar
from ..errors import DatasetError, WorkflowError
from .flat import verify_flat
from .read import load_dataset_dir, read_dataset_meta, read_token_header, resolve_path

if TYPE_CHECKING:  # datasets takes ~1 s to import: only functions that need it import it
    import pyarrow as pa


def _verify_row(dataset_dir: Path, split: str, row: dict[str, Any], shapes: tuple | None) -> list[str]:
    where = f"{split}/{row['id']}"
    out: list[str] = []

    def missing(col: str) -> Path | None:
        p = resolve_path(dataset_dir, row.get(col))
        if p is None:
            return None
        if not p.exists():
            how = "broken link" if p.is_symlink() else "missing"
            out.append(f"{where}: {col} file {how}: {row[col]} ({p})")
            return None
        return p

    frames = int(row["num_frames"])
    audio = missing("audio")
    if audio is not None:
        try:
            h = read_token_header(audio)
            if h.num_frames != frames:
                out.append(f"{where}: frame mismatch: {row['audio']} has {h.num_frames} frames, "
                           f"the row says {frames}; rebuild this split")
            if h.num_codebooks != int(row["num_codebooks"]):
                out.append(f"{where}: {row['audio']} has {h.num_codebooks} codebooks, the row says "
                           f"{row['num_codebooks']}; rebuild this split")
        except WorkflowError as exc:
            out.append(f"{where}: {exc}")
    cond = missing("cond")
    if cond is not None:
        try:
            sc = sidecar.read_sidecar(cond, mmap=True)
            if sc.frames != frames:
                out.append(f"{where}: sidecar frame mismatch: {row['cond']} has {sc.frames} frames, "
                           f"tokens have {frames}; re-run wf-sidecar-init --overwrite and rebuild")
        except WorkflowError as exc:
            out.append(f"{where}: {exc}")
    if "wav" in row:
        missing("wav")
    if shapes is not None:
        k, t_codes, t_cond = shapes
        if k != int(row["num_codebooks"]) or any(t != frames for t in t_codes):
            out.append(f"{where}: embedded codes are not [{row['num_codebooks']}][{frames}]; "
                       "rebuild this split")
        if t_cond is not None and t_cond != frames:
            out.append(f"{where}: embedded cond_values have {t_cond} rows, tokens have {frames}")
        if (t_cond is None) != (row.get("cond") is None):
            out.append(f"{where}: embedded cond_values and the cond column disagree on whether "
                       "there is a sidecar; rebuild this split")
    return out


def _embedded_shapes(table: pa.Table) -> list[tuple | None]:
    """Per row: (K, [T of each codebook], T of cond_values or None), from list offsets only
    (chunk by chunk, so a large embedded split is never copied into memory)."""
    import pyarrow.compute as pc

    if "codes" not in table.column_names:
        return [None] * table.num_rows
    per_row: list[tuple[int, list[int]]] = []
    for chunk in table.column("codes").chunks:
        k = pc.list_value_length(chunk).fill_null(0).to_numpy(zero_copy_only=False)
        t = pc.list_value_length(chunk.flatten()).fill_null(0).to_numpy(zero_copy_only=False)
        bounds = np.concatenate([[0], np.cumsum(k)])
        per_row += [(int(k[i]), t[bounds[i]:bounds[i + 1]].tolist()) for i in range(len(chunk))]
    t_cond: list[int | None] = []
    for chunk in table.column("cond_values").chunks:
        t_cond += pc.list_value_length(chunk).to_pylist()
    return [(k, ts, tc) for (k, ts), tc in zip(per_row, t_cond)]


def verify_dataset(dataset_dir: Path | str, splits: Sequence[str] | None = None, *,
                   workers: int = 4, progress: bool = False) -> list[str]:
    """Every problem that would break training, one line each (empty list: all good).

    Checks that every referenced file exists (links resolve), that each `.ecdc` header agrees
    with its row (frames, codebooks), that each sidecar has one row per token frame, and that
    embedded columns have the row's shape, and that the flat buffers (if any) equal them.
    """
    dataset_dir = Path(dataset_dir)
    try:
        meta = read_dataset_meta(dataset_dir)
        dd = load_dataset_dir(dataset_dir)
    except DatasetError as exc:
        return [str(exc)]
    problems: list[str] = []
    for name in sorted(set(meta["splits"]) ^ set(dd)):
        problems.append(f"split {name!r} is in {'the metadata' if name in meta['splits'] else 'the data'} "
                        f"only; rebuild it")
    for split in splits or list(dd):
        if split not in dd:
            problems.append(f"split {split!r} not found (has: {', '.join(dd)})")
            continue
        ds = dd[split]
        path_cols = [c for c in ("id", "audio", "cond", "wav", "num_frames", "num_codebooks")
                     if c in ds.column_names]
        table = ds.with_format("arrow")[:]
        plain = table.select(path_cols).to_pylist()
        shapes = _embedded_shapes(table)
        problems.extend(verify_flat(dataset_dir / split, table))
        with cf.ThreadPoolExecutor(max(1, workers)) as pool:
            results = pool.map(lambda a: _verify_row(dataset_dir, split, *a), zip(plain, shapes))
            for res in tqdm(results, total=len(plain), desc=f"verify {split}", unit="file",
                            disable=not progress, file=sys.stderr, mininterval=0.5):
                problems.extend(res)
    return problems
