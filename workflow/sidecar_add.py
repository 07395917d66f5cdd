"""The s4 engine: run param producers on token files and merge their columns into the sidecars.

``add_features`` does one file (all producers first, then one validated, atomic merge);
``add_items`` runs it over the work items through the runner, with the producers initialised
once per process (``AddJob`` is the picklable per-item function worker processes receive).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import paramproducers as pp
from workflow import sidecar
from workflow.ecdc import read_ecdc_header
from workflow.errors import ProducerError, SidecarError
from workflow.runner import Runner, RunOptions, RunReport, WorkItem

STAGE = "s4_sidecar_add"


def load_or_create(item: WorkItem, frames: int, fps: float, *, create_missing: bool, dtype: str) -> tuple[sidecar.Sidecar, bool]:
    """The file's sidecar (checked against the token frame count), or a new empty one."""
    npy = item.dst
    if npy.exists() or sidecar.json_path_for(npy).exists():
        sc = sidecar.read_sidecar(npy)
        if sc.frames != frames:
            raise SidecarError(f"{npy}: sidecar has {sc.frames} frames but {item.src} has {frames} "
                               "(tokens re-encoded?); re-run wf-sidecar-init --overwrite for it")
        return sc, False
    if not create_missing:
        raise SidecarError(f"{npy}: no sidecar for {item.src}; run wf-sidecar-init (s3) first, "
                           "or pass --create-missing")
    return sidecar.empty_sidecar(frames, fps, item.key, dtype), True


def add_features(item: WorkItem, producers: list[pp.Producer], args: argparse.Namespace) -> dict:
    """Run every producer on one token file and merge their columns into its sidecar."""
    header = read_ecdc_header(item.src)
    frames = header.num_frames
    sc, created = load_or_create(item, frames, header.fps, create_missing=args.create_missing,
                                 dtype=args.dtype)
    new: dict[str, tuple] = {}
    owner: dict[str, str] = {}
    for prod in producers:
        for name, col in prod.produce(item.src, frames, args).items():
            if name in new:
                raise ProducerError(f"{item.src}: producers {owner[name]!r} and {prod.name!r} both "
                                    f"return {name!r}; drop one or rename its column")
            new[name], owner[name] = col, prod.name
    kept = []
    if args.skip_existing:
        kept = [n for n in new if n in sc.features]
        new = {n: v for n, v in new.items() if n not in sc.features}
    info = {"frames": frames, "added": [n for n in new if n not in sc.features],
            "replaced": [n for n in new if n in sc.features], "kept": kept, "created": created}
    if not new and not created:
        info["D"] = len(sc.features)
        return info
    merged = sidecar.merge_features(sc, new, mode=args.mode, where=str(item.src))
    sidecar.write_sidecar(item.dst, merged)
    info["D"] = len(merged.features)
    return info


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
        if args.skip_existing:
            declared = [p.feature_names(args) for p in producers]
            if all(d is not None for d in declared):
                is_done = SkipDone([n for d in declared for n in d])
        job = AddJob(tuple(p.ref for p in producers), args)
        return Runner(STAGE, options, params).map(
            items, job, is_done=is_done or (lambda it: False), executor=args.executor)
    finally:
        pp.deactivate(args)
