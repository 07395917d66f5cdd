"""wf-inspect — look inside a dataset built by s5 (wf-build-dataset), and check that it loads.

Prints the codec, frame rate, splits (rows, frames, hours), every conditioning feature with its
units and the dataset-wide range a loader normalises it with, and the first rows of each split
with the shapes of their codes and conditioning as ``TokenCondDataset`` reads them.

``--verify`` loads every row of the chosen split(s) the way training does (embedded columns if
present, else the ``.ecdc`` and sidecar files; ``--source files`` forces the files) and checks that
the codes are ``[num_codebooks, num_frames]``, that the conditioning has the same number of frames
and one column per feature, and that its values are finite. It lists every failure and exits 1 if
there is any.

Example::

    wf-inspect --hf-ds dataset/ --split train --show 3
    wf-inspect --hf-ds dataset/ --verify
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: import the package, and don't let workflow/ shadow stdlib
    import sys
    from pathlib import Path as _P

    sys.path[0] = str(_P(__file__).resolve().parents[1])

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from workflow import hfdata
from workflow.errors import UsageError, WorkflowError
from workflow.runner import run_cli, setup_logging
from workflow.torchdata import SOURCES, TokenCondDataset

MAX_LISTED_FAILURES = 50


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def describe_dataset(meta: dict[str, Any], splits: dict[str, Any]) -> list[str]:
    """The header lines: codec, rate, splits with sizes, features with their ranges."""
    lines = [
        f"codec: {_fmt(meta.get('codec'))}  fps: {_fmt(meta.get('fps'))}  sample_rate: "
        f"{_fmt(meta.get('sample_rate'))}  codebooks: {_fmt(meta.get('num_codebooks'))}  "
        f"weights: {_fmt(meta.get('weights'))}  embedded: {'yes' if meta.get('embedded') else 'no'}",
        "splits:",
    ]
    for name, ds in splits.items():
        table = ds.data.table
        frames = _column_sum(table, "num_frames")
        seconds = _column_sum(table, "duration")
        lines.append(f"  {name}: {ds.num_rows} rows, {int(frames)} frames, {seconds:.1f} s "
                     f"({seconds / 3600:.3f} h)")
    feats = meta.get("features") or {}
    order = list(meta.get("feature_order") or feats)
    if not order:
        lines.append("features: none (cond is [T, 0])")
        return lines
    lines.append(f"features ({len(order)}; cond column order; normalised to [0, 1] with min/max):")
    rows = [["name", "units", "min", "max", "mean", "std", "range_from"]]
    for name in order:
        f = feats.get(name) or {}
        rows.append([name, _fmt(f.get("units")), _fmt(f.get("min")), _fmt(f.get("max")),
                     _fmt(f.get("mean")), _fmt(f.get("std")), _fmt(f.get("range_from"))])
    lines.extend(_table(rows))
    return lines


def _column_sum(table: Any, name: str) -> float:
    if name not in table.column_names:
        return 0.0
    import pyarrow.compute as pc

    total = pc.sum(table.column(name)).as_py()
    return float(total or 0.0)


def show_rows(ds: TokenCondDataset, n: int) -> list[str]:
    """The first ``n`` rows of a split: fields, loaded shapes, per-row raw feature ranges."""
    lines = [f"split {ds.split!r} ({'embedded columns' if ds.embedded_codes else 'files'}), "
             f"first {min(n, len(ds))} of {len(ds)} rows:"]
    for i in range(min(n, len(ds))):
        row = ds.row(i)
        lines.append(f"  [{i}] id={row.get('id')}  num_frames={row.get('num_frames')}  "
                     f"duration={_fmt(row.get('duration'))}s  audio={row.get('audio')}  "
                     f"cond={row.get('cond')}" + (f"  wav={row['wav']}" if row.get("wav") else ""))
        try:
            codes, cond, _ = ds.read_item(i)
        except WorkflowError as exc:
            lines.append(f"      cannot load: {exc}")
            continue
        lines.append(f"      codes {list(codes.shape)} {codes.dtype}  cond {list(cond.shape)}")
        for j, name in enumerate(ds.feature_names if cond.shape[1] else []):
            col = np.asarray(cond[:, j], dtype=np.float32)
            rng = f"{col.min():.6g}..{col.max():.6g}" if col.size else "empty"
            lines.append(f"      {name}: {rng}")
    return lines


def verify_split(ds: TokenCondDataset, progress: bool = True) -> tuple[int, list[str]]:
    """Load every row; returns (rows OK, failure lines)."""
    failures: list[str] = []
    n_feat = ds.num_features
    for i in tqdm(range(len(ds)), desc=f"verify {ds.split}", unit="row", disable=not progress,
                  file=sys.stderr, mininterval=0.5):
        rid: Any = i
        try:
            row = ds.row(i)
            rid = row.get("id", i)
            codes, cond, _ = ds.read_item(i)  # checks shapes against the row and each other
            problems = []
            if codes.size and int(codes.min()) < 0:
                problems.append(f"negative code {int(codes.min())}")
            if cond.shape[1] not in (0, n_feat):
                problems.append(f"cond has {cond.shape[1]} columns, dataset has {n_feat} features")
            if cond.shape[1] == 0 and row.get("cond") and n_feat:
                problems.append("row names a sidecar but no conditioning was loaded")
            if cond.size and not np.all(np.isfinite(cond)):
                problems.append("cond has NaN/Inf values")
            if problems:
                failures.append(f"{ds.split}/{rid}: " + "; ".join(problems))
        except WorkflowError as exc:
            failures.append(f"{ds.split}/{rid}: {exc}")
        except Exception as exc:  # noqa: BLE001 - report every unreadable row, keep going
            failures.append(f"{ds.split}/{rid}: {type(exc).__name__}: {exc}")
    return len(ds) - len(failures), failures


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wf-inspect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", nargs="?", type=Path, help="dataset folder (same as --hf-ds)")
    p.add_argument("--hf-ds", type=Path, help="dataset folder written by wf-build-dataset")
    p.add_argument("--split", action="append",
                   help="split to show/verify (repeatable; default: all splits)")
    p.add_argument("--show", type=int, default=3, help="rows to print per split (default 3; 0 for none)")
    p.add_argument("--verify", action="store_true",
                   help="load every row and check shapes and values; exit 1 listing any failure")
    p.add_argument("--source", choices=SOURCES, default="auto",
                   help="where arrays are read from: 'auto' (embedded columns if present), "
                        "'embedded', or 'files' (.ecdc + sidecars, e.g. to check the files of an "
                        "embedded dataset)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar for --verify")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    root = args.hf_ds or args.dataset
    if root is None:
        raise UsageError("give the dataset folder (--hf-ds DIR)")
    if args.hf_ds and args.dataset and args.hf_ds != args.dataset:
        raise UsageError("give the dataset folder once (either positionally or with --hf-ds)")
    if args.show < 0:
        raise UsageError("--show must be 0 or more")
    dd = hfdata.load_dataset_dir(root)
    meta = hfdata.read_dataset_meta(root)
    names = args.split or list(dd)
    unknown = [s for s in names if s not in dd]
    if unknown:
        raise UsageError(f"{root}: no split(s) {', '.join(unknown)} (has: {', '.join(dd) or 'none'})")

    print(f"dataset: {root}")
    for line in describe_dataset(meta, {s: dd[s] for s in (args.split or list(dd))}):
        print(line)
    if meta.get("weights") == "random":
        print("WARNING: tokens were made with RANDOM codec weights; only good for smoke tests")
    loaders = {s: TokenCondDataset(root, s, normalize_cond=False, source=args.source) for s in names}
    if args.show:
        for s in names:
            print()
            for line in show_rows(loaders[s], args.show):
                print(line)
    if not args.verify:
        return 0

    ok, failures = 0, []
    for s in names:
        n_ok, bad = verify_split(loaders[s], progress=not args.no_progress)
        ok += n_ok
        failures.extend(bad)
    print()
    print(f"verify: {ok} rows OK, {len(failures)} failed")
    for line in failures[:MAX_LISTED_FAILURES]:
        print(f"  FAILED {line}")
    if len(failures) > MAX_LISTED_FAILURES:
        print(f"  … and {len(failures) - MAX_LISTED_FAILURES} more")
    return 1 if failures else 0


def cli() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    cli()
