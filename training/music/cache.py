"""The feature cache of the music datasets and the loop that fills it.

``<root>/.feature_cache/<sha1>.npy`` holds one record per input file, keyed by the file's absolute
path, size and mtime (ns), the extraction parameters and :data:`FEATURE_VERSION`; entries are
written atomically. Edit a file and it is decoded again; delete the folder to rebuild everything.
The datasets take ``cache_dir=`` (for a read-only dataset folder) and ``cache=False``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.midi import MidiReadError
from workflow.errors import AudioContentError, AudioReadError
from workflow.files import atomic_path

from .features import FEATURE_VERSION, _SkipFile

log = logging.getLogger(__name__)

CACHE_DIRNAME = ".feature_cache"

_SKIPPABLE = (_SkipFile, MidiReadError, AudioReadError, AudioContentError)


def _cache_key(kind: str, path: Path, params: Mapping[str, Any]) -> str:
    st = path.stat()
    material = json.dumps(
        {"kind": kind, "version": FEATURE_VERSION, "path": str(path.resolve()), "size": st.st_size,
         "mtime_ns": st.st_mtime_ns, "params": dict(params)},
        sort_keys=True,
    )
    return hashlib.sha1(material.encode("utf-8")).hexdigest()


@dataclass
class _Extraction:
    records: dict[Path, np.ndarray]
    skipped: list[tuple[Path, str]]
    cache_hits: int  # files served by the cache
    extracted: int  # files opened and decoded this run (including those then skipped)


def _extract_all(
    files: Sequence[Path],
    *,
    kind: str,
    extractor: Callable[[str, Mapping[str, Any]], np.ndarray],
    params: Mapping[str, Any],
    shape: tuple[int, ...],
    cache_dir: Path | None,
    workers: int,
    progress: bool,
) -> _Extraction:
    """Run ``extractor`` on every file not in the cache; skip (and log) unusable files."""
    records: dict[Path, np.ndarray] = {}
    skipped: list[tuple[Path, str]] = []
    pending: list[tuple[Path, Path | None]] = []
    hits = 0
    for p in files:
        cpath = cache_dir / f"{_cache_key(kind, p, params)}.npy" if cache_dir is not None else None
        if cpath is not None and cpath.is_file():
            try:
                arr = np.load(cpath, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                log.warning("%s: unreadable cache entry %s (%s); recomputing", p, cpath, exc)
            else:
                if arr.shape == shape and arr.dtype == np.float32:
                    records[p] = arr
                    hits += 1
                    continue
                log.warning("%s: cache entry %s has shape %s, expected %s; recomputing", p, cpath, arr.shape, shape)
        pending.append((p, cpath))

    cache_ok = cache_dir is not None

    def done(p: Path, cpath: Path | None, arr: np.ndarray | None, reason: str | None) -> None:
        nonlocal cache_ok
        if arr is None:
            log.warning("%s: skipped (%s)", p, reason)
            skipped.append((p, str(reason)))
            return
        arr = np.asarray(arr, dtype=np.float32)
        records[p] = arr
        if cpath is not None and cache_ok:
            try:
                with atomic_path(cpath) as tmp, open(tmp, "wb") as fh:
                    np.save(fh, arr, allow_pickle=False)
            except OSError as exc:
                cache_ok = False
                log.warning("cannot write feature cache in %s (%s); continuing without it "
                            "(pass cache_dir= a writable folder)", cpath.parent, exc)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(pending), desc=f"{kind} features", unit="file", disable=not progress or not pending)
    try:
        if workers > 0 and len(pending) > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(extractor, str(p), dict(params)): (p, c) for p, c in pending}
                results: dict[Path, tuple[np.ndarray | None, str | None]] = {}
                for fut in as_completed(futures):
                    p, _ = futures[fut]
                    try:
                        results[p] = (fut.result(), None)
                    except _SKIPPABLE as exc:
                        results[p] = (None, str(exc))
                    bar.update(1)
            for p, c in pending:  # commit in file order: deterministic logs and skip list
                done(p, c, *results[p])
        else:
            for p, c in pending:
                try:
                    arr, reason = extractor(str(p), params), None
                except _SKIPPABLE as exc:
                    arr, reason = None, str(exc)
                done(p, c, arr, reason)
                bar.update(1)
    finally:
        bar.close()
    return _Extraction(records, skipped, hits, len(pending))
