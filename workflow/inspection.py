"""What ``wf-inspect`` shows and checks of a dataset built by s5.

``describe_dataset`` and ``show_rows`` render the dataset's header and first rows as text lines;
``verify_split`` loads every row of a split the way training does and lists what fails.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from workflow.errors import WorkflowError

if TYPE_CHECKING:  # torch is imported by the caller, not by `wf-inspect --help`
    from workflow.torchdata import TokenCondDataset


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


def moved_dataset_hint(root: Path | str, meta: dict[str, Any]) -> list[str]:
    """How to fix a dataset whose links (or ``../`` paths) point at nothing: it was moved or
    copied without its sources. Empty when every link resolves and every source folder exists."""
    root = Path(root)
    broken = sum(1 for d, _, files in os.walk(root) for f in files
                 if os.path.islink(os.path.join(d, f)) and not os.path.exists(os.path.join(d, f)))
    srcs = [sm.get("source", {}) for sm in meta.get("splits", {}).values()]
    expected = list(dict.fromkeys(p for s in srcs if s.get("materialize") in ("link", "none")
                                  for p in (s.get("tokens_dir"), s.get("cond_root"), s.get("wav_root")) if p))
    gone = [p for p in expected if not (root / p).is_dir()]
    if not broken and not gone:
        return []
    lines = ["how to fix: this dataset refers to its sources by relative links/paths"
             + (f" ({broken} link(s) here point at nothing)" if broken else "") + "."]
    for p in gone:
        lines.append(f"  it expects {p} (relative to the dataset folder, i.e. "
                     f"{os.path.normpath(root.absolute() / p)}), which is not there: the dataset "
                     "was moved or copied (cp -r) without its sources.")
    lines += ["  Either put it back beside its sources (move or copy both together, keeping their "
              "relative position),",
              "  or make a self-contained copy: `cp -rL` from the original place (follows the "
              "links), or rebuild: wf-build-dataset TOKENS_DIR "
              f"{root} --materialize copy (or --embed)."]
    return lines
