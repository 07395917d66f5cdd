"""The sidecar audit engine: check a token tree and its conditioning sidecars (read-only).

``audit_file`` checks one token file and its sidecar pair and never raises for a bad file, so
one broken file yields precise issues instead of stopping the scan; ``run_audit`` runs it over
a tree (in worker processes) and adds orphan sidecars. The rest turns an :class:`AuditResult`
into tables, a CSV, histograms and an exit code for ``wf-sidecar-audit`` (``sidecar_audit``).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import shlex
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workflow import sidecar as sc_mod
from workflow.ecdc import read_ecdc_header
from workflow.errors import EcdcFormatError, SidecarError, UsageError
from workflow.files import atomic_path, discover, relative_key, select_shard
from workflow.runner import FAILED, RunOptions, Runner, WorkItem

STAGE = "sidecar_audit"

ISSUE_TYPES: tuple[str, ...] = (
    "bad_ecdc", "missing_sidecar", "orphan_sidecar", "bad_sidecar", "bad_shape", "frame_mismatch",
    "dtype_mismatch", "fps_mismatch", "duplicate_names", "missing_features", "non_finite",
    "range_below_min", "range_above_max", "stats_mismatch", "mixed_codec", "mixed_features",
    "audit_error",
)
HIST_BINS = 50


@dataclass(frozen=True)
class Issue:
    """One problem found: ``file`` is the token file's relative path (the item's identity)."""

    file: str
    issue: str
    detail: str


@dataclass(frozen=True)
class AuditConfig:
    """What one file is checked against (picklable: sent to worker processes)."""

    expect_fps: float | None = None
    expect_dtype: str | None = None
    require: tuple[str, ...] = ()
    verify_ranges: bool = False
    range_tol: float = 0.0


@dataclass
class FeatureSummary:
    """Per-feature facts gathered over the scanned files (for the table and the plot)."""

    units: str | None = None
    files: int = 0
    frames: int = 0
    lo: float = math.inf
    hi: float = -math.inf
    ranges: set[tuple[float, float]] = field(default_factory=set)  # producer ranges seen

    def add(self, d: Mapping[str, Any]) -> None:
        if self.units is None:
            self.units = d.get("units")
        self.files += 1
        self.frames += int(d["n"])
        if d["n"]:
            self.lo = min(self.lo, d["lo"])
            self.hi = max(self.hi, d["hi"])
        if d.get("range") is not None:
            self.ranges.add(tuple(d["range"]))

    @property
    def producer_range(self) -> tuple[float, float] | None:
        """The producer range if every file that has one agrees on it."""
        return next(iter(self.ranges)) if len(self.ranges) == 1 else None


# -- raw reading -----------------------------------------------------------------------------------
class _JsonObject(dict):
    """A JSON object that remembers keys given more than once (``json`` keeps only the last)."""

    declared: tuple[str, ...] = ()  # every key in file order, repeats included

    @property
    def duplicates(self) -> list[str]:
        return [k for k, c in Counter(self.declared).items() if c > 1]


def _pairs_hook(pairs: list[tuple[str, Any]]) -> _JsonObject:
    obj = _JsonObject(pairs)
    obj.declared = tuple(k for k, _ in pairs)
    return obj


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _same_fps(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def _first_index(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def _check_ecdc(path: Path, issue) -> Any | None:
    """The header, or None after reporting ``bad_ecdc`` (header errors or a wrong payload size)."""
    try:
        header = read_ecdc_header(path)
    except EcdcFormatError as exc:
        issue("bad_ecdc", str(exc))
        return None
    actual = path.stat().st_size - header.data_offset
    if actual != header.payload_bytes:
        what = "truncated" if actual < header.payload_bytes else "trailing bytes"
        issue("bad_ecdc", f"{path.name}: {what}: payload is {actual} bytes but the header implies "
                          f"{header.payload_bytes} ({header.num_frames} frames); re-encode it with s2")
        return None
    return header


def _read_meta(jpath: Path, issue) -> tuple[dict | None, list[str] | None]:
    """(upgraded v2 meta, declared feature names incl. duplicates) or (None, None) if unusable."""
    try:
        text = jpath.read_text(encoding="utf-8")
        raw = json.loads(text, object_pairs_hook=_pairs_hook)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        issue("bad_sidecar", f"{jpath.name}: unreadable metadata ({str(exc)[:120]}); delete the pair "
                             "and re-run wf-sidecar-init / wf-sidecar-add")
        return None, None
    if not isinstance(raw, dict):
        issue("bad_sidecar", f"{jpath.name}: metadata must be a JSON object, got {type(raw).__name__}")
        return None, None
    declared: list[str] | None = None
    if isinstance(raw.get("features"), _JsonObject) and "names" not in raw:
        feats = raw["features"]
        if feats.duplicates:
            issue("duplicate_names", f"{jpath.name}: feature(s) {', '.join(feats.duplicates)} given "
                                     "more than once in 'features'")
        declared = list(feats.declared)
    elif isinstance(raw.get("names"), list):
        declared = [str(n) for n in raw["names"]]
        dups = [n for n, c in Counter(declared).items() if c > 1]
        if dups:
            issue("duplicate_names", f"{jpath.name}: feature(s) {', '.join(dups)} listed more than "
                                     "once in 'names'")
    try:
        meta = sc_mod.upgrade_meta(raw, jpath.name)
    except SidecarError as exc:
        issue("bad_sidecar", str(exc))
        return None, None
    if declared is None:
        declared = list(meta["features"])
    for name, info in meta["features"].items():
        if info.min is not None and info.max is not None and info.min > info.max:
            issue("bad_sidecar", f"{jpath.name}: feature {name!r} has min {_fmt(info.min)} > max "
                                 f"{_fmt(info.max)}")
    return meta, declared


def _check_fps(meta: dict, header, cfg: AuditConfig, jname: str, issue) -> None:
    """Sidecar fps vs the token file's, and vs --expect-fps unless the token file already differs."""
    ecdc_fps = header.fps if header is not None else None
    if "fps" not in meta:
        issue("bad_sidecar", f"{jname}: metadata has no 'fps'; re-run wf-sidecar-init --overwrite")
        return
    try:
        fps = float(meta["fps"])
        if not math.isfinite(fps):
            raise ValueError
    except (TypeError, ValueError):
        issue("bad_sidecar", f"{jname}: 'fps' must be a number, got {meta['fps']!r}")
        return
    if ecdc_fps is not None and not _same_fps(fps, ecdc_fps):
        issue("fps_mismatch", f"{jname}: sidecar says {_fmt(fps)} fps, token file is {_fmt(ecdc_fps)} fps")
    elif cfg.expect_fps is not None and not _same_fps(fps, cfg.expect_fps) and (
            ecdc_fps is None or _same_fps(ecdc_fps, cfg.expect_fps)):
        issue("fps_mismatch", f"{jname}: sidecar says {_fmt(fps)} fps, expected {_fmt(cfg.expect_fps)} "
                              "(--expect-fps)")


def _check_ranges(name: str, col: np.ndarray, info: sc_mod.FeatureInfo, dtype: str,
                  cfg: AuditConfig, issue) -> None:
    """Stored values against the recorded range, in the stored precision, ± ``range_tol``."""
    col = col.astype(np.float64)  # exact for float16/float32; the bounds are already rounded
    col[~np.isfinite(col)] = np.nan  # NaN/Inf are non_finite issues, never range issues
    finite = col[np.isfinite(col)]
    if finite.size == 0:
        return
    kind = "producer range" if info.range_from == "producer" else "data-derived range"
    stored_lo, stored_hi = float(finite.min()), float(finite.max())
    if info.min is not None:
        lo = sc_mod.in_stored_precision(info.min, dtype)
        below = col < lo - cfg.range_tol
        if below.any():
            issue("range_below_min", f"{name}: {int(below.sum())} value(s) below min {_fmt(info.min)} "
                                     f"({kind}), lowest {_fmt(stored_lo)} at frame {_first_index(below)}")
        elif info.range_from != "producer" and stored_lo > lo + cfg.range_tol:
            issue("stats_mismatch", f"{name}: data-derived min {_fmt(info.min)} but the data's lowest "
                                    f"value is {_fmt(stored_lo)}; re-run wf-sidecar-add to refresh stats")
    if info.max is not None:
        hi = sc_mod.in_stored_precision(info.max, dtype)
        above = col > hi + cfg.range_tol
        if above.any():
            issue("range_above_max", f"{name}: {int(above.sum())} value(s) above max {_fmt(info.max)} "
                                     f"({kind}), highest {_fmt(stored_hi)} at frame {_first_index(above)}")
        elif info.range_from != "producer" and stored_hi < hi - cfg.range_tol:
            issue("stats_mismatch", f"{name}: data-derived max {_fmt(info.max)} but the data's highest "
                                    f"value is {_fmt(stored_hi)}; re-run wf-sidecar-add to refresh stats")


def _check_array(arr: np.ndarray, npy_path: Path, jname: str, meta: dict | None,
                 declared: list[str] | None, header: Any, cfg: AuditConfig, issue) -> bool:
    """dtype, shape and frame checks of a loaded sidecar array; False if it is not float at all."""
    dtype = str(arr.dtype)
    if dtype not in sc_mod.DTYPES:
        issue("dtype_mismatch", f"{npy_path.name}: array dtype {dtype} is not a sidecar storage type "
                                f"({'/'.join(sc_mod.DTYPES)}); rewrite it with wf-sidecar-add")
        if arr.dtype.kind != "f":
            return False
    elif cfg.expect_dtype is not None and dtype != cfg.expect_dtype:
        issue("dtype_mismatch", f"{npy_path.name}: array is {dtype}, expected {cfg.expect_dtype} "
                                "(--expect-dtype)")
    if meta is not None and meta.get("dtype") is not None and meta["dtype"] != dtype:
        issue("dtype_mismatch", f"{jname} says dtype {meta['dtype']!r} but the array is {dtype}")
    if arr.ndim != 2:
        issue("bad_shape", f"{npy_path.name}: array has shape {tuple(arr.shape)}, expected [T, D]")
    elif declared is not None and arr.shape[1] != len(declared):
        issue("bad_shape", f"{npy_path.name}: array has {arr.shape[1]} column(s) but the metadata "
                           f"names {len(declared)} feature(s) ({', '.join(declared) or 'none'})")
    if arr.ndim >= 1:
        rows = int(arr.shape[0])
        if header is not None and rows != header.num_frames:
            issue("frame_mismatch", f"{npy_path.name}: {rows} rows but the token file has "
                                    f"{header.num_frames} frames; re-run wf-sidecar-init --overwrite")
        frames = meta.get("frames") if meta is not None else None
        if frames is not None and frames != rows:
            issue("frame_mismatch", f"{jname} says {frames} frames but the array has {rows} rows")
    return True


def _feature_facts(arr: np.ndarray, meta: dict, cfg: AuditConfig, issue) -> dict[str, dict[str, Any]]:
    """Per feature of a well-formed sidecar: non-finite and range checks, and the facts to sum."""
    features: dict[str, dict[str, Any]] = {}
    for i, (name, info) in enumerate(meta["features"].items()):
        col = arr[:, i]
        bad = ~np.isfinite(col)
        if bad.any():
            issue("non_finite", f"{name}: {int(bad.sum())} NaN/Inf value(s), first at frame "
                                f"{_first_index(bad)}")
        if cfg.verify_ranges:
            _check_ranges(name, col, info, str(arr.dtype), cfg, issue)
        finite = col[~bad]
        producer = (info.range_from == "producer" and info.min is not None and info.max is not None)
        features[name] = {
            "units": info.units, "n": int(finite.size),
            "lo": float(finite.min()) if finite.size else 0.0,
            "hi": float(finite.max()) if finite.size else 0.0,
            "range": [info.min, info.max] if producer else None,
        }
    return features


def audit_file(ecdc_path: Path, npy_path: Path, cfg: AuditConfig) -> dict[str, Any]:
    """Check one token file and its sidecar pair; never raises for a bad file.

    Returns ``{"issues": [[issue, detail], ...], "features": {name: {units, n, lo, hi, range}},
    "plottable": bool, "names": [feature, ...] | None, "layout": [codec, fps, sr, K] | None}``
    (plain data: it crosses process boundaries; names and layout feed the cross-file checks).
    """
    issues: list[list[str]] = []
    out: dict[str, Any] = {"issues": issues, "features": {}, "plottable": False, "names": None,
                           "layout": None}

    def issue(kind: str, detail: str) -> None:
        issues.append([kind, detail])

    header = _check_ecdc(ecdc_path, issue)
    if header is not None:
        out["layout"] = [header.model, round(float(header.fps), 6), int(header.sample_rate),
                         int(header.num_codebooks)]
        if cfg.expect_fps is not None and not _same_fps(header.fps, cfg.expect_fps):
            issue("fps_mismatch", f"token file is {_fmt(header.fps)} fps, expected "
                                  f"{_fmt(cfg.expect_fps)} (--expect-fps)")
    jpath = sc_mod.json_path_for(npy_path)
    missing = [p.name for p in (npy_path, jpath) if not p.is_file()]
    if missing:
        issue("missing_sidecar", f"{' and '.join(missing)} not found in {npy_path.parent}; run "
                                 "wf-sidecar-init (s3) for this token folder")
        return out
    meta, declared = _read_meta(jpath, issue)
    try:
        arr = sc_mod.load_npy(npy_path)
    except (OSError, ValueError, EOFError) as exc:
        issue("bad_sidecar", f"{npy_path.name}: unreadable array ({str(exc)[:120]}); delete the pair "
                             "and re-run wf-sidecar-init / wf-sidecar-add")
        arr = None
    if meta is not None:
        out["names"] = list(meta["features"])
        _check_fps(meta, header, cfg, jpath.name, issue)
        absent = [n for n in cfg.require if n not in meta["features"]]
        if absent:
            have = ", ".join(meta["features"]) or "none"
            issue("missing_features", f"missing {', '.join(absent)} (has: {have})")
    if arr is None or not _check_array(arr, npy_path, jpath.name, meta, declared, header, cfg, issue):
        return out
    shaped = (arr.ndim == 2 and meta is not None and declared is not None
              and arr.shape[1] == len(declared) == len(meta["features"]))
    if not shaped:
        bad = ~np.isfinite(arr)
        if bad.any():
            issue("non_finite", f"{npy_path.name}: {int(bad.sum())} NaN/Inf value(s)")
        return out
    out["plottable"] = True
    out["features"] = _feature_facts(arr, meta, cfg, issue)
    return out


def _consistency_issues(infos: Mapping[str, Mapping[str, Any]], audio_root: Path,
                        cond_root: Path | None) -> list[Issue]:
    """Across files: one codec layout and one feature list (what wf-build-dataset requires).

    Files that differ from the most common layout / list get ``mixed_codec`` / ``mixed_features``.
    """
    out: list[Issue] = []
    layouts = Counter(tuple(i["layout"]) for i in infos.values() if i.get("layout"))
    if len(layouts) > 1:
        ref, n = layouts.most_common(1)[0]
        for key, i in infos.items():
            if i.get("layout") and tuple(i["layout"]) != ref:
                out.append(Issue(key, "mixed_codec", f"tokens are {_layout(i['layout'])} but {n} of "
                                 f"{sum(layouts.values())} files are {_layout(ref)}; re-encode it with s2"))
    lists = Counter(tuple(i["names"]) for i in infos.values() if i.get("names") is not None)
    if len(lists) <= 1:
        return out
    ref_names, n = lists.most_common(1)[0]
    uneven = sorted(set().union(*lists) - set.intersection(*(set(x) for x in lists)))
    roots = f"--audio-root {shlex.quote(str(audio_root))}" + (
        f" --cond-root {shlex.quote(str(cond_root))}" if cond_root is not None else "")
    fix = (f"keep what every file has: wf-sidecar-add {roots} "
           + " ".join(f"--drop {shlex.quote(x)}" for x in uneven)
           + "; or give every file all of them (from_filename: --filename-keys and "
             "--filename-default NAME=VALUE)" if uneven else
           f"same features in another order: wf-sidecar-init {roots} --overwrite, then wf-sidecar-add")
    for key, i in infos.items():
        names = i.get("names")
        if names is not None and tuple(names) != ref_names:
            out.append(Issue(key, "mixed_features", f"features [{', '.join(names)}] differ from "
                             f"[{', '.join(ref_names)}] of {n} of {sum(lists.values())} files "
                             f"(wf-build-dataset refuses mixed lists); {fix}"))
    return out


def _layout(layout: Sequence[Any]) -> str:
    codec, fps, sr, k = layout
    return f"{codec}, {fps:g} fps, {sr} Hz, {k} codebooks"


def _audit_item(item: WorkItem, cfg: AuditConfig) -> dict[str, Any]:
    return audit_file(item.src, item.dst, cfg)


def _histogram_item(item: WorkItem, edges: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """Counts per wanted feature of one (already audited, well-formed) sidecar."""
    meta = sc_mod.read_sidecar_meta(item.dst)
    arr = sc_mod.load_npy(item.dst)
    counts = {}
    for i, name in enumerate(meta["features"]):
        if name in edges:
            col = arr[:, i].astype(np.float64)
            counts[name] = np.histogram(col[np.isfinite(col)], bins=np.asarray(edges[name]))[0].tolist()
    return {"counts": counts}


# -- plotting --------------------------------------------------------------------------------------
def histogram_edges(summary: FeatureSummary, bins: int = HIST_BINS) -> np.ndarray:
    """Bin edges spanning the data and, when all files agree on one, the producer range."""
    lo, hi = summary.lo, summary.hi
    if summary.producer_range is not None:
        lo, hi = min(lo, summary.producer_range[0]), max(hi, summary.producer_range[1])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def make_histogram_figure(hists: Mapping[str, tuple[np.ndarray, np.ndarray]],
                          summaries: Mapping[str, FeatureSummary] | None = None):
    """A matplotlib Figure with one histogram subplot per feature (``name → (counts, edges)``).

    Titles carry the feature name and units; dashed lines mark a producer range. The grid has
    ``ceil(sqrt(n))`` columns; unused cells are removed, so ``len(fig.axes) == len(hists)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global state, works headless

    summaries = summaries or {}
    n = max(1, len(hists))
    ncols = math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.0 * ncols, 3.0 * nrows), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg backend, attached to this figure only
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (name, (counts, edges)) in zip(axes, hists.items()):
        s = summaries.get(name)
        units = s.units if s is not None and s.units else "no units"
        ax.stairs(counts, edges, fill=True, alpha=0.8)
        ax.set_title(f"{name} [{units}]", fontsize=10)
        ax.set_xlabel(units)
        ax.set_ylabel("frames")
        if s is not None and s.producer_range is not None:
            for x in s.producer_range:
                ax.axvline(x, color="k", linestyle="--", linewidth=0.8)
        if not np.sum(counts):
            ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", va="center")
    for ax in axes[len(hists):]:
        fig.delaxes(ax)
    if not hists:
        fig.text(0.5, 0.5, "no features to plot", ha="center", va="center")
    return fig


def write_figure(fig, path: Path | str) -> None:
    """Save ``fig`` atomically (format from the extension, e.g. .png)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format=path.suffix.lstrip(".") or "png")


# -- the scan --------------------------------------------------------------------------------------
@dataclass
class AuditResult:
    """Everything one audit run found, for printing, CSV export and the exit code."""

    files: list[str] = field(default_factory=list)  # token files scanned (this shard)
    issues: list[Issue] = field(default_factory=list)
    features: dict[str, FeatureSummary] = field(default_factory=dict)
    plottable: list[str] = field(default_factory=list)

    @property
    def scanned(self) -> int:
        return len(self.files)

    def counts(self) -> Counter:
        return Counter(i.issue for i in self.issues)

    def files_with_issues(self) -> int:
        return len({i.file for i in self.issues})


def _orphans(audio_root: Path, cond_root: Path | None, suffix: str, token_suffix: str,
             known: set[str], recursive: bool) -> list[tuple[str, str]]:
    """(token key the sidecar would belong to, sidecar's relative path) for sidecars without tokens."""
    root = cond_root if cond_root is not None else audio_root
    out = []
    for p in discover(root, [suffix], recursive=recursive):
        if not p.name.endswith(suffix):
            continue
        rel = relative_key(p, root)
        key = rel[: -len(suffix)] + token_suffix
        if key not in known:
            out.append((key, rel))
    return out


def run_audit(audio_root: Path, cfg: AuditConfig, *, cond_root: Path | None = None,
              suffix: str = sc_mod.NPY_SUFFIX, token_suffix: str = ".ecdc",
              options: RunOptions | None = None, recursive: bool = True) -> AuditResult:
    """Audit this shard's token files (in ``options.workers`` processes) and their sidecars."""
    options = options or RunOptions()
    # the same list s3 and s4 work on: a --cond-root inside the token tree is not searched
    exclude = [cond_root] if cond_root is not None and cond_root.resolve() != audio_root.resolve() else []
    tokens = discover(audio_root, [token_suffix], recursive=recursive, exclude=exclude)
    items = [WorkItem(relative_key(p, audio_root), p,
                      sc_mod.sidecar_path_for(p, audio_root, cond_root, suffix)) for p in tokens]
    orphans = _orphans(audio_root, cond_root, suffix, token_suffix, {it.key for it in items}, recursive)
    if not items and not orphans:
        raise UsageError(f"no {token_suffix} token files under {audio_root}; point --audio-root at "
                         "s2's output")
    runner = Runner(STAGE, options, {"audio_root": str(audio_root), "cond_root": str(cond_root),
                                     "suffix": suffix, **asdict(cfg)})
    report = runner.map(items, functools.partial(_audit_item, cfg=cfg), is_done=lambda it: False)

    result = AuditResult(files=sorted(r.key for r in report.results))
    infos: dict[str, Mapping[str, Any]] = {}
    for r in report.results:
        if r.status == FAILED:
            result.issues.append(Issue(r.key, "audit_error", r.error or "unknown error"))
            continue
        infos[r.key] = r.info
        result.issues.extend(Issue(r.key, kind, detail) for kind, detail in r.info.get("issues", []))
        for name, d in r.info.get("features", {}).items():
            result.features.setdefault(name, FeatureSummary()).add(d)
        if r.info.get("plottable"):
            result.plottable.append(r.key)
    result.issues.extend(_consistency_issues(infos, audio_root, cond_root))
    mine = select_shard([k for k, _ in orphans], options.shard_index, options.shard_count)
    for i in mine:
        key, rel = orphans[i]
        result.issues.append(Issue(rel, "orphan_sidecar", f"no token file {key} under {audio_root}; "
                                                          "delete the sidecar or restore the tokens"))
    order = {k: n for n, k in enumerate(sorted({it.key for it in items} | {rel for _, rel in orphans}))}
    result.issues.sort(key=lambda i: (order.get(i.file, -1), ISSUE_TYPES.index(i.issue)))
    return result


def plot_features(result: AuditResult, audio_root: Path, out: Path, *, cond_root: Path | None,
                  suffix: str, options: RunOptions) -> list[str]:
    """Histogram every feature over the well-formed sidecars and write the figure; returns names."""
    edges = {n: histogram_edges(s) for n, s in sorted(result.features.items())}
    items = [WorkItem(k, audio_root / k, sc_mod.sidecar_path_for(audio_root / k, audio_root, cond_root, suffix))
             for k in result.plottable]
    totals = {n: np.zeros(len(e) - 1, np.int64) for n, e in edges.items()}
    if items:
        hist_opts = RunOptions(workers=options.workers, progress=options.progress)
        report = Runner(f"{STAGE} (histograms)", hist_opts).map(
            items, functools.partial(_histogram_item, edges={n: e.tolist() for n, e in edges.items()}),
            is_done=lambda it: False)
        for r in report.results:
            for name, counts in r.info.get("counts", {}).items():
                totals[name] += np.asarray(counts, np.int64)
    fig = make_histogram_figure({n: (totals[n], edges[n]) for n in edges}, result.features)
    write_figure(fig, out)
    return list(edges)


# -- reporting -------------------------------------------------------------------------------------
def parse_fail_on(text: str) -> frozenset[str] | None:
    """``any`` → None (every type), ``none`` → empty, else a comma list of known issue types."""
    text = text.strip().lower()
    if text == "any":
        return None
    if text == "none":
        return frozenset()
    kinds = frozenset(t.strip() for t in text.split(",") if t.strip())
    unknown = sorted(kinds - set(ISSUE_TYPES))
    if unknown or not kinds:
        raise UsageError(f"--fail-on: unknown issue type(s) {', '.join(unknown) or '(empty)'}; use any, "
                         f"none or a comma list of: {', '.join(ISSUE_TYPES)}")
    return kinds


def exit_code(result: AuditResult, fail_on: frozenset[str] | None) -> int:
    kinds = set(result.counts())
    failing = kinds if fail_on is None else kinds & fail_on
    return 1 if failing else 0


def summary_table(result: AuditResult, examples: int = 3) -> str:
    """Issue type → count → example files, in the order of :data:`ISSUE_TYPES`."""
    counts = result.counts()
    if not counts:
        return "no issues found"
    rows = []
    for kind in ISSUE_TYPES:
        if counts[kind]:
            files = list(dict.fromkeys(i.file for i in result.issues if i.issue == kind))
            ex = ", ".join(files[:examples]) + (" …" if len(files) > examples else "")
            rows.append((kind, str(counts[kind]), ex))
    w0 = max(len("issue"), *(len(r[0]) for r in rows))
    w1 = max(len("count"), *(len(r[1]) for r in rows))
    lines = [f"{'issue':<{w0}}  {'count':>{w1}}  examples"]
    lines += [f"{k:<{w0}}  {c:>{w1}}  {e}" for k, c, e in rows]
    return "\n".join(lines)


def feature_table(result: AuditResult) -> str:
    """Feature → units, files, frames, observed min/max and the producer range (if one)."""
    if not result.features:
        return "features: none found in readable sidecars"
    rows = []
    for name, s in result.features.items():
        rng = s.producer_range
        rng_s = (f"{_fmt(rng[0])}..{_fmt(rng[1])}" if rng else
                 "mixed" if s.ranges else "data")
        rows.append((name, s.units or "-", str(s.files), str(s.frames),
                     _fmt(s.lo) if s.frames else "-", _fmt(s.hi) if s.frames else "-", rng_s))
    head = ("feature", "units", "files", "frames", "min", "max", "range")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = lambda r: "  ".join(f"{c:<{w}}" for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head)] + [fmt(r) for r in rows])


def issues_csv(issues: Iterable[Issue]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["file", "issue", "detail"])
    for i in issues:
        w.writerow([i.file, i.issue, i.detail])
    return buf.getvalue()
