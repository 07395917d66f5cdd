"""Scanning token files for a build: headers, sidecars and wavs checked, one layout per dataset.

Uses the shared runner (threads, progress bar, per-file errors); a file with a problem is left out
with the reason, never stopping the build.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import sidecar
from ..errors import DatasetError
from ..files import mirror_path
from ..runner import FAILED, ItemResult, Runner, RunOptions, WorkItem
from .config import BuildConfig
from .read import read_token_header
from .schema import STAGE

log = logging.getLogger(__package__)  # "workflow.hfdata", the logger name from before the split


@dataclass(slots=True)
class _Scanned:
    """One usable token file (the light part; codes are read later, only with --embed).

    A build holds one per file until its metadata is written: slotted, paths as strings and
    repeated strings interned keep it near 1 KB (most of it the per-file feature stats).
    """

    key: str
    id: str
    src: str
    codec: str
    fps: float
    sample_rate: int
    num_codebooks: int
    num_frames: int
    duration: float
    weights: str
    cond_src: str | None
    features: dict[str, sidecar.FeatureInfo]
    wav_src: str | None

    @property
    def signature(self) -> tuple[str, float, int, int]:
        return (self.codec, round(self.fps, 6), self.sample_rate, self.num_codebooks)


@dataclass(slots=True)
class _Row:
    scanned: _Scanned
    audio: str
    cond: str | None
    wav: str | None
    codes: np.ndarray | None = None
    cond_values: np.ndarray | None = None


def _strip_suffix(key: str, suffix: str) -> str:
    return key[: -len(suffix)] if key.lower().endswith(suffix.lower()) else key


def _scan_one(item: WorkItem, cfg: BuildConfig) -> _Scanned:
    """Read one token file's header and check its sidecar and wav; raises on any problem."""
    header = read_token_header(item.src)
    frames = header.num_frames
    cond_src = sidecar.sidecar_path_for(item.src, cfg.tokens_dir, cfg.cond_root, cfg.cond_suffix)
    features: dict[str, sidecar.FeatureInfo] = {}
    if cond_src.exists() or sidecar.json_path_for(cond_src).exists():
        sc_frames, sc_fps, features = sidecar.read_sidecar_header(cond_src)  # checks the pair
        if sc_frames != frames:
            raise sidecar.SidecarError(
                f"{cond_src}: sidecar has {sc_frames} frames but {item.src} has {frames} token "
                "frames; re-run wf-sidecar-init --overwrite and wf-sidecar-add for this file")
        if sc_fps and abs(sc_fps - header.fps) > 1e-3:
            raise sidecar.SidecarError(f"{cond_src}: sidecar fps {sc_fps} differs from the tokens' "
                                       f"{header.fps}; re-run wf-sidecar-init --overwrite")
    else:
        cond_src = None
    wav_src = None
    if cfg.wav_root is not None:
        wav_src = mirror_path(item.src, cfg.tokens_dir, cfg.wav_root, ".wav")
        if not wav_src.is_file():
            raise DatasetError(f"{item.src}: its wav {wav_src} is missing (--wav-root {cfg.wav_root}); "
                               "re-run s1 for it or drop --wav-root")
    return _Scanned(
        key=item.key, id=_strip_suffix(item.key, cfg.suffix), src=os.fspath(item.src),
        codec=sys.intern(header.model), fps=float(header.fps), sample_rate=int(header.sample_rate),
        num_codebooks=int(header.num_codebooks), num_frames=int(frames),
        duration=float(header.duration), weights=sys.intern(header.weights or "unknown"),
        cond_src=None if cond_src is None else os.fspath(cond_src), features=features,
        wav_src=None if wav_src is None else os.fspath(wav_src))


def _scan(cfg: BuildConfig, items: list[WorkItem]) -> tuple[list[_Scanned], Any]:
    """Scan every item with the shared runner (threads, progress bar, per-file errors)."""
    scanned: dict[str, _Scanned] = {}

    def fn(item: WorkItem) -> dict:
        s = _scan_one(item, cfg)
        scanned[item.key] = s
        return {"frames": s.num_frames, "cond": s.cond_src is not None}

    options = RunOptions(workers=cfg.workers, overwrite=True, progress=cfg.progress)
    runner = Runner(STAGE, options, {k: (str(v) if isinstance(v, Path) else v)
                                     for k, v in dataclasses.asdict(cfg).items()})
    report = runner.map(items, fn, executor="thread")
    ok = [scanned[it.key] for it in items if it.key in scanned]
    return ok, report


def _fail_result(report: Any, key: str, error: str) -> None:
    """Turn an item of the run report into a failure (consistency checks, embedding)."""
    for i, r in enumerate(report.results):
        if r.key == key:
            report.results[i] = ItemResult(key, FAILED, r.seconds, r.info, error)
            return
    report.results.append(ItemResult(key, FAILED, error=error))


def _describe_signature(sig: Sequence[Any]) -> str:
    codec, fps, sr, k = sig
    return f"{codec}, {fps:g} fps, {sr} Hz, {k} codebooks"


def _select_usable(scanned: Sequence[_Scanned], old_meta: dict[str, Any] | None, kept: Sequence[str]
                   ) -> tuple[list[_Scanned], dict[str, str], tuple, list[str]]:
    """One codec layout per dataset: files that differ are problems.

    The reference is the kept splits' layout (else the most common one among the files). The
    feature list is checked by :func:`check_feature_sets` first (one list, or nothing is built).
    Returns (usable, problems, layout, feature order); nothing usable when no file could be scanned
    (the caller reports why each failed).
    """
    if not scanned:
        return [], {}, (), []
    if kept and old_meta is not None:
        ref_sig = (old_meta["codec"], round(float(old_meta["fps"]), 6), int(old_meta["sample_rate"]),
                   int(old_meta["num_codebooks"]))
        ref_from = f"the existing split(s) {', '.join(kept)}"
    else:
        ref_sig = Counter(s.signature for s in scanned).most_common(1)[0][0]
        ref_from = "most files"
    orders = Counter(tuple(s.features) for s in scanned if s.cond_src is not None and s.signature == ref_sig)
    ref_order = list(orders.most_common(1)[0][0]) if orders else []
    usable: list[_Scanned] = []
    problems: dict[str, str] = {}
    for s in scanned:
        if s.signature != ref_sig:
            problems[s.key] = (f"{s.src}: tokens are {_describe_signature(s.signature)} but the dataset "
                               f"is {_describe_signature(ref_sig)} (from {ref_from}); re-encode it, or "
                               "build it into another OUT_DIR" + (" or use --fresh" if kept else ""))
        else:
            usable.append(s)
    for key, err in problems.items():
        log.warning("%s left out: %s", key, err)
    return usable, problems, ref_sig, ref_order


def _roots_args(cfg: BuildConfig) -> str:
    return f"--audio-root {shlex.quote(str(cfg.tokens_dir))}" + (
        f" --cond-root {shlex.quote(str(cfg.cond_root))}" if cfg.cond_root is not None else "")


def check_feature_sets(cfg: BuildConfig, scanned: Sequence[_Scanned]) -> None:
    """Every sidecar must list the same features in the same order, else nothing is built.

    Raises a :class:`DatasetError` listing each feature list with its files and the commands
    that make them agree (``wf-sidecar-add --drop``, ``--filename-default``, the audit).
    """
    groups: dict[tuple[str, ...], list[str]] = {}
    for s in scanned:
        if s.cond_src is not None:
            groups.setdefault(tuple(s.features), []).append(s.key)
    if len(groups) <= 1:
        return
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    lines = [f"  [{', '.join(names) or 'no features'}]: {len(keys)} file(s), e.g. "
             + ", ".join(keys[:3]) for names, keys in ordered]
    every = set.intersection(*(set(n) for n in groups))
    uneven = sorted(set().union(*groups) - every)
    roots = _roots_args(cfg)
    fixes = [f"  wf-sidecar-audit {roots}    # lists the odd files (issue mixed_features)"]
    if uneven:
        fixes.append(f"  wf-sidecar-add {roots} " + " ".join(f"--drop {shlex.quote(n)}" for n in uneven)
                     + "    # keep only the features every file has")
        fixes.append(f"  wf-sidecar-add {roots} --producer from_filename --filename-keys "
                     + " ".join(shlex.quote(n) for n in uneven) + " "
                     + " ".join(f"--filename-default {shlex.quote(n)}=VALUE" for n in uneven)
                     + " --mode overwrite    # or, for features from file names, give every file all of them")
    else:
        fixes.append(f"  wf-sidecar-init {roots} --overwrite, then wf-sidecar-add again    # same "
                     "features, different order: rebuild the sidecars in one order")
    raise DatasetError(
        f"the sidecars under {cfg.cond_root or cfg.tokens_dir} do not all have the same features, "
        "and every row of a dataset must; nothing was written. Feature lists found:\n"
        + "\n".join(lines) + "\nMake them agree, then build again, e.g.:\n" + "\n".join(fixes))


def conditioning_warnings(cfg: BuildConfig, usable: Sequence[_Scanned], ref_order: list[str]) -> list[str]:
    """Loud notes when rows will have no conditioning: no sidecars found, none with features,
    or some files without a sidecar."""
    without = [s.key for s in usable if s.cond_src is None]
    where = f"under --cond-root {cfg.cond_root}" if cfg.cond_root else "beside the token files"
    if usable and len(without) == len(usable):
        return [f"NO CONDITIONING: none of the {len(usable)} token files has a sidecar {where}, so "
                "'cond' is null in every row. If wf-sidecar-init wrote them elsewhere, pass that "
                "folder with --cond-root; else run wf-sidecar-init and wf-sidecar-add first"]
    if usable and not ref_order:
        return [f"NO CONDITIONING: the sidecars {where} have no features ('cond' is [T, 0] in every "
                f"row); add some with wf-sidecar-add {_roots_args(cfg)} --producer …"]
    if without:
        return [f"{len(without)} of {len(usable)} token files have no sidecar {where} ('cond' is null "
                f"in those rows), e.g. {', '.join(without[:3])}; run wf-sidecar-init and "
                "wf-sidecar-add for them so every row has the same features"]
    return []
