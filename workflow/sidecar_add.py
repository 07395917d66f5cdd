"""The s4 engine: run param producers on token files and merge their columns into the sidecars.

``check_feature_sets`` is the pre-pass (every file gets the same columns, or nothing is written);
``add_features`` does one file (all producers first, then one validated, atomic merge under the
sidecar's lock); ``add_items`` runs it over the items through the runner, with the producers
initialised once per process (``AddJob`` is the picklable per-item function workers receive).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

import paramproducers as pp
from workflow import sidecar
from workflow.ecdc_legacy import read_token_header
from workflow.errors import FeatureSetError, ProducerError, SidecarError
from workflow.files import locked
from workflow.runner import Runner, RunOptions, RunReport, WorkItem

log = logging.getLogger(__name__)
STAGE = "s4_sidecar_add"


def has_sidecar(item: WorkItem) -> bool:
    return item.dst.exists() or sidecar.json_path_for(item.dst).exists()


def load_or_create(item: WorkItem, frames: int, fps: float, *, create_missing: bool, dtype: str) -> tuple[sidecar.Sidecar, bool]:
    """The file's sidecar (checked against the token frame count), or a new empty one."""
    npy = item.dst
    if has_sidecar(item):
        sc = sidecar.read_sidecar(npy)
        if sc.frames != frames:
            raise SidecarError(f"{npy}: sidecar has {sc.frames} frames but {item.src} has {frames} "
                               "(tokens re-encoded?); re-run wf-sidecar-init --overwrite for it")
        return sc, False
    if not create_missing:
        raise SidecarError(f"{npy}: no sidecar for {item.src}; run wf-sidecar-init (s3) first, "
                           "or pass --create-missing")
    return sidecar.empty_sidecar(frames, fps, item.key, dtype), True


def run_producers(item: WorkItem, producers: list[pp.Producer], frames: int, args: argparse.Namespace) -> dict[str, tuple]:
    """Every producer's columns for one file, refusing a name two producers return."""
    new: dict[str, tuple] = {}
    owner: dict[str, str] = {}
    for prod in producers:
        for name, col in prod.produce(item.src, frames, args).items():
            if name in new:
                raise ProducerError(f"{item.src}: producers {owner[name]!r} and {prod.name!r} both "
                                    f"return {name!r}; drop one or rename its column")
            new[name], owner[name] = col, prod.name
    return new


def warn_if_different(sc: sidecar.Sidecar, kept: Mapping[str, tuple], where: str) -> None:
    """``--mode append`` keeps a column that exists; say so if the new values would differ."""
    for name, (values, info) in kept.items():
        col = sidecar.check_values(name, values, sc.frames, where=where, producer=info.producer)
        new = col.astype(sc.dtype).astype(np.float32)
        old = sc.column(name)
        if not np.array_equal(new, old):
            log.warning("%s: column %r already present with different values (largest difference %g); "
                        "kept the stored ones (--mode overwrite replaces them)",
                        where, name, float(np.max(np.abs(new - old))))


def add_features(item: WorkItem, producers: list[pp.Producer], args: argparse.Namespace) -> dict:
    """Run every producer on one token file, then merge their columns into its sidecar.

    The producers run first (outside the lock); the read-modify-write of the sidecar holds its
    lock, so concurrent s4 runs on one folder neither lose columns nor see a half-written pair.
    """
    header = read_token_header(item.src)
    frames = header.num_frames
    if not args.create_missing and not has_sidecar(item):
        load_or_create(item, frames, header.fps, create_missing=False, dtype=args.dtype)  # raises
    new = run_producers(item, producers, frames, args)
    with locked(item.dst):
        sc, created = load_or_create(item, frames, header.fps, create_missing=args.create_missing,
                                     dtype=args.dtype)
        return merge_into(item, sc, created, new, args)


def merge_into(item: WorkItem, sc: sidecar.Sidecar, created: bool, new: dict[str, tuple],
               args: argparse.Namespace) -> dict:
    """Drop ``--drop`` columns, add ``new`` per the mode, write if anything changed (lock held)."""
    dropped = [n for n in dict.fromkeys(getattr(args, "drop", None) or []) if n in sc.features]
    if dropped:
        sc = sidecar.drop_features(sc, dropped)
    kept = [n for n in new if n in sc.features] if args.mode == "append" else []
    if kept and not args.skip_existing:
        warn_if_different(sc, {n: new[n] for n in kept}, str(item.src))
    new = {n: v for n, v in new.items() if n not in kept}
    info = {"frames": sc.frames, "added": [n for n in new if n not in sc.features],
            "replaced": [n for n in new if n in sc.features], "kept": kept, "dropped": dropped,
            "created": created}
    if not new and not created and not dropped:
        info["D"] = len(sc.features)
        return info
    merged = sidecar.merge_features(sc, new, mode=args.mode, where=str(item.src))
    sidecar.write_sidecar(item.dst, merged)
    info["D"] = len(merged.features)
    return info


def check_feature_sets(items: list[WorkItem], producers: list[pp.Producer], args: argparse.Namespace) -> None:
    """The cheap pre-pass: every file must get the same new columns, or nothing is written.

    Producers that can name a file's columns without computing them (``feature_names_for``)
    are asked for every file; a :class:`FeatureSetError` names the odd files and carries the
    flags (``fix_args``) that would make the sets agree.
    """
    per_file = [p for p in producers if p.can_name_per_file]
    if not per_file:
        return
    groups: dict[tuple[str, ...], list[str]] = {}
    for item in items:
        try:
            names = [n for p in per_file for n in p.feature_names_for(item.src, args)]
        except ProducerError:
            continue  # this file fails in the run, with its own message
        groups.setdefault(tuple(names), []).append(item.key)
    by_set: dict[frozenset, list[str]] = {}
    for names, keys in groups.items():
        by_set.setdefault(frozenset(names), []).extend(keys)
    if len(by_set) <= 1:
        return
    fix: list[str] = []
    for p in per_file:
        fix += p.suggest_args(groups, args)
    raise FeatureSetError(describe_groups(groups, [p.name for p in per_file]), fix)


def describe_groups(groups: dict[tuple[str, ...], list[str]], producers: list[str], show: int = 3) -> str:
    lines = [f"producer(s) {', '.join(producers)} would give these files different columns, but every "
             "file in a dataset needs the same ones; nothing was written:"]
    for names, keys in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        more = f", … ({len(keys) - show} more)" if len(keys) > show else ""
        lines.append(f"  {len(keys)} file(s) -> {', '.join(names) or '(no columns)'}: "
                     f"{', '.join(keys[:show])}{more}")
    return "\n".join(lines)


@dataclass(eq=False)
class AddJob:
    """The picklable per-item function handed to the runner (processes get a copy)."""

    refs: tuple[pp.ProducerRef, ...]
    args: argparse.Namespace

    def __call__(self, item: WorkItem) -> dict:
        return add_features(item, [pp.ensure_active(r, self.args) for r in self.refs], self.args)


@dataclass
class SkipDone:
    """``--skip-existing``: a file whose sidecar already has every declared column is done."""

    names: list[str]

    def __call__(self, item: WorkItem) -> bool:
        try:
            meta = sidecar.read_sidecar_meta(item.dst)
        except SidecarError:
            return False
        return item.dst.exists() and all(n in meta["features"] for n in self.names)


def add_items(items: list[WorkItem], producers: list[pp.Producer], args: argparse.Namespace,
              options: RunOptions, params: dict) -> RunReport:
    """Initialise the producers, add their columns to every item's sidecar, shut them down.

    ``args`` carries the producers' own flags and ``mode``, ``skip_existing``,
    ``create_missing``, ``dtype`` and ``executor``.
    """
    pp.activate(producers, args)
    try:
        is_done = None
        if args.skip_existing and not getattr(args, "drop", None):
            declared = [p.feature_names(args) for p in producers]
            if all(d is not None for d in declared):
                is_done = SkipDone([n for d in declared for n in d])
        check_feature_sets(items, producers, args)
        job = AddJob(tuple(p.ref for p in producers), args)
        return Runner(STAGE, options, params).map(
            items, job, is_done=is_done or (lambda it: False), executor=args.executor)
    finally:
        pp.deactivate(args)
