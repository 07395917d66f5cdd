"""``xp``: find a Dora experiment folder, summarise it, plot its losses, and validate a run.

Dora keeps one folder per experiment signature: ``<dora_dir>/xps/<sig>/`` with ``.argv.json``
(the overrides), ``history.json`` (one dict per finished epoch: ``{"train": {...}, "valid": {...},
"evaluate": {...}, "generate": {...}}``), ``checkpoint.th``, ``solver.log.0`` and ``samples/``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from training.fetch import format_bytes
from workflow.errors import WorkflowError

STAGES = ("train", "valid", "evaluate", "generate")
KEY_FILES = (".argv.json", "history.json", "checkpoint.th", "solver.log.0", ".hydra/config.yaml")
# Metrics that are bookkeeping, not losses: left out of the loss plot.
NOT_LOSSES = {"duration", "bandwidth", "lr"}


class XpError(WorkflowError):
    """No experiment folder where one was expected, or its files are unreadable."""


@dataclass
class XpSummary:
    sig: str
    folder: Path
    argv: list[str]
    history: list[dict]
    files: dict[str, int] = field(default_factory=dict)  # relative name -> size in bytes
    samples: int = 0

    @property
    def epochs(self) -> int:
        return len(self.history)

    @property
    def last(self) -> dict[str, dict[str, float]]:
        return self.history[-1] if self.history else {}


def _stamp(folder: Path) -> float:
    times = [folder.stat().st_mtime]
    for name in ("history.json", "checkpoint.th", "solver.log.0"):
        p = folder / name
        if p.exists():
            times.append(p.stat().st_mtime)
    return max(times)


def find_xps(dora_dir: Path) -> list[Path]:
    """XP folders under ``<dora_dir>/xps``, oldest first (by their newest key file)."""
    root = Path(dora_dir) / "xps"
    if not root.is_dir():
        raise XpError(f"no experiments: {root} does not exist — has a launch run with "
                      f"AUDIOCRAFT_DORA_DIR={dora_dir}? (Notebook B's launch cell)")
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_stamp)


def find_xp(dora_dir: Path, sig: str | None = None) -> Path:
    """The XP ``sig`` (a unique prefix is enough), or the newest one."""
    xps = find_xps(dora_dir)
    if not xps:
        raise XpError(f"{Path(dora_dir) / 'xps'} is empty: no experiment has started yet")
    if sig is None:
        return xps[-1]
    hits = [p for p in xps if p.name.startswith(sig)]
    if len(hits) != 1:
        names = ", ".join(p.name for p in xps[-10:])
        raise XpError(f"XP {sig!r} {'is ambiguous' if hits else 'not found'} under {dora_dir}/xps "
                      f"(have: {names})")
    return hits[0]


def load_xp(folder: Path) -> XpSummary:
    """Read an XP folder's argv, history and file sizes (missing files are simply absent)."""
    folder = Path(folder)
    argv: list[str] = []
    history: list[dict] = []
    try:
        if (folder / ".argv.json").is_file():
            argv = json.loads((folder / ".argv.json").read_text(encoding="utf-8"))
        if (folder / "history.json").is_file():
            history = json.loads((folder / "history.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise XpError(f"{folder}: unreadable JSON ({exc}); the run may have been killed mid-write") from exc
    if not isinstance(history, list):
        raise XpError(f"{folder / 'history.json'} is not a list of epochs")
    files = {name: (folder / name).stat().st_size for name in KEY_FILES if (folder / name).is_file()}
    samples_dir = folder / "samples"
    samples = sum(1 for p in samples_dir.rglob("*") if p.is_file()) if samples_dir.is_dir() else 0
    return XpSummary(folder.name, folder, list(argv), history, files, samples)


def metrics_table(summary: XpSummary, epoch: int | None = None) -> str:
    """A text table of one epoch's metrics (default: the last): metric rows × stage columns."""
    if not summary.history:
        return "(no finished epoch yet: history.json is empty or missing)"
    idx = len(summary.history) if epoch is None else epoch
    row = summary.history[idx - 1]
    stages = [s for s in STAGES if s in row] + [s for s in row if s not in STAGES]
    metrics: list[str] = []
    for s in stages:
        for m in row[s]:
            if m not in metrics:
                metrics.append(m)
    width = max([len("metric")] + [len(m) for m in metrics])
    lines = [f"epoch {idx}", "metric".ljust(width) + "".join(f"{s:>12s}" for s in stages)]
    for m in metrics:
        cells = []
        for s in stages:
            v = row[s].get(m)
            cells.append(f"{v:12.4g}" if isinstance(v, (int, float)) else f"{'-':>12s}")
        lines.append(m.ljust(width) + "".join(cells))
    return "\n".join(lines)


def loss_series(summary: XpSummary) -> dict[str, dict[str, list[float]]]:
    """``{stage: {metric: [value per epoch]}}`` for train/valid losses (NaN where absent)."""
    out: dict[str, dict[str, list[float]]] = {}
    for stage in ("train", "valid"):
        names: list[str] = []
        for row in summary.history:
            for m in row.get(stage, {}):
                if m not in names and m not in NOT_LOSSES and not m.startswith("ratio"):
                    names.append(m)
        out[stage] = {m: [float(row.get(stage, {}).get(m, math.nan)) for row in summary.history]
                      for m in names}
    return out


def plot_losses(summary: XpSummary, png: Path) -> Path:
    """One subplot per loss, train and valid over epochs; written atomically to ``png``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from workflow.files import atomic_path

    series = loss_series(summary)
    names = list(dict.fromkeys(list(series["train"]) + list(series["valid"])))
    if not names:
        raise XpError(f"{summary.folder}: no losses to plot yet (history.json has no epoch)")
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.2 * cols, 2.8 * rows), layout="constrained")
    epochs = list(range(1, summary.epochs + 1))
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        for stage, style in (("train", "-o"), ("valid", "--s")):
            if name in series[stage]:
                ax.plot(epochs, series[stage][name], style, label=stage, markersize=4)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    fig.suptitle(f"XP {summary.sig}")
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(png)


def validate_xp(summary: XpSummary, *, min_epochs: int = 1, require_samples: bool = True) -> list[str]:
    """Post-run problems (empty list = healthy): epochs, finite losses, checkpoint, samples."""
    problems = []
    if summary.epochs < min_epochs:
        problems.append(f"history.json has {summary.epochs} epoch(s), expected >= {min_epochs}")
    for i, row in enumerate(summary.history, 1):
        for stage, metrics in row.items():
            for m, v in metrics.items():
                if not isinstance(v, (int, float)) or not math.isfinite(v):
                    problems.append(f"epoch {i} {stage}.{m} = {v} (not finite)")
    if "train" not in summary.last:
        problems.append("last epoch has no train metrics")
    if "checkpoint.th" not in summary.files:
        problems.append("no checkpoint.th (the epoch did not finish saving)")
    if require_samples and summary.samples == 0:
        problems.append("no files under samples/ (the generate stage did not run)")
    return problems


def describe(summary: XpSummary) -> str:
    """Signature, folder, argv, key files and the last epoch's metrics, as printed by ``xp``."""
    lines = [f"XP {summary.sig}", f"  folder : {summary.folder}",
             f"  argv   : {' '.join(summary.argv) or '-'}", f"  epochs : {summary.epochs}", "  files  :"]
    for name in KEY_FILES:
        size = summary.files.get(name)
        lines.append(f"    {name:20s} {'missing' if size is None else format_bytes(size)}")
    lines.append(f"    {'samples/':20s} {summary.samples} file(s)")
    lines.append(metrics_table(summary))
    return "\n".join(lines)


def default_plot_path(summary: XpSummary) -> Path:
    return summary.folder / "losses.png"

