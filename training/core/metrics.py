"""Per-epoch metric averages, their history, a JSON round trip and one PNG of curves."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from workflow.files import atomic_path, atomic_write_text

from ._common import _as_float, _check_mode, _first_line
from .errors import MetricsError

log = logging.getLogger(__name__)

METRICS_FORMAT = "enc-hf-workflow.metrics"
METRICS_VERSION = 1


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


class MetricsTracker:
    """Per-epoch metric averages and their history.

    ``update({...}, n)`` accumulates values within the current epoch (weighted by ``n``, e.g. the
    batch size); ``end_epoch()`` turns them into that epoch's averages, appends them to the
    history and starts a new epoch. Metrics may appear in only some epochs: each metric keeps its
    own list of epoch numbers (``get_epochs``) beside its values (``get_history``).
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epochs: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        self._weights: dict[str, float] = {}
        self._last_epoch = 0

    def update(self, metrics: Mapping[str, Any], n: float = 1) -> None:
        """Add one observation per metric (a number, 1-element tensor or numpy scalar)."""
        if n <= 0:
            raise MetricsError(f"update weight n must be > 0, got {n}")
        for name, value in metrics.items():
            number = _as_float(value, f"metric {name!r}")
            self._sums[name] = self._sums.get(name, 0.0) + number * n
            self._weights[name] = self._weights.get(name, 0.0) + n

    def current(self) -> dict[str, float]:
        """Averages of the epoch in progress (nothing is recorded)."""
        return {k: self._sums[k] / self._weights[k] for k in self._sums}

    def end_epoch(self, epoch: int | None = None) -> dict[str, float]:
        """Close the epoch: return its averages and append them to the history.

        ``epoch`` defaults to one more than the last epoch recorded.
        """
        epoch = self._last_epoch + 1 if epoch is None else int(epoch)
        averages = self.current()
        for name, value in averages.items():
            self.history.setdefault(name, []).append(value)
            self.epochs.setdefault(name, []).append(epoch)
        self._sums.clear()
        self._weights.clear()
        self._last_epoch = epoch
        return averages

    @property
    def last_epoch(self) -> int:
        """The last epoch closed with :meth:`end_epoch` (0 before any)."""
        return self._last_epoch

    @property
    def names(self) -> list[str]:
        return list(self.history)

    def get_history(self, name: str) -> list[float]:
        """Per-epoch values of ``name`` (empty if it was never recorded)."""
        return list(self.history.get(name, []))

    def get_epochs(self, name: str) -> list[int]:
        """Epoch numbers matching :meth:`get_history`."""
        return list(self.epochs.get(name, []))

    def get_latest(self, name: str, default: float | None = None) -> float | None:
        """The most recent epoch value of ``name``, or ``default``."""
        values = self.history.get(name)
        return values[-1] if values else default

    def best(self, name: str, mode: str = "min") -> tuple[int, float] | None:
        """``(epoch, value)`` of the best finite value of ``name``, or None."""
        _check_mode(mode)
        pairs = [(e, v) for e, v in zip(self.epochs.get(name, []), self.history.get(name, []))
                 if not math.isnan(v)]
        if not pairs:
            return None
        pick = min if mode == "min" else max
        return pick(pairs, key=lambda p: p[1])

    # -- persistence -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain state (stored in checkpoints so a resume restores the history)."""
        return {"history": {k: list(v) for k, v in self.history.items()},
                "epochs": {k: list(v) for k, v in self.epochs.items()},
                "last_epoch": self._last_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the history with ``state`` (the epoch in progress is discarded)."""
        try:
            history = {str(k): [float("nan") if v is None else float(v) for v in vals]
                       for k, vals in state["history"].items()}
            epochs = {str(k): [int(e) for e in vals] for k, vals in state["epochs"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MetricsError(f"malformed metrics state: {_first_line(exc)}") from exc
        for name in history:
            if len(history[name]) != len(epochs.get(name, [])):
                raise MetricsError(f"malformed metrics state: metric {name!r} has "
                                   f"{len(history[name])} values but {len(epochs.get(name, []))} epochs")
        self.history, self.epochs = history, epochs
        last = state.get("last_epoch")
        all_epochs = [e for vals in epochs.values() for e in vals]
        self._last_epoch = int(last) if last is not None else max(all_epochs, default=0)
        self._sums.clear()
        self._weights.clear()

    def save_to_json(self, path: Path | str) -> Path:
        """Write the history atomically as strict JSON (NaN / inf are stored as null)."""
        path = Path(path)
        doc = {"format": METRICS_FORMAT, "version": METRICS_VERSION,
               "last_epoch": self._last_epoch,
               "history": {k: [_json_number(v) for v in vals] for k, vals in self.history.items()},
               "epochs": self.epochs}
        atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")
        return path

    @classmethod
    def load_from_json(cls, path: Path | str) -> MetricsTracker:
        """A tracker holding the history saved by :meth:`save_to_json` (null → NaN)."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise MetricsError(f"metrics file not found: {path}") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MetricsError(f"cannot read metrics file {path} ({_first_line(exc)}); it is not "
                               "JSON written by MetricsTracker.save_to_json") from exc
        if not isinstance(doc, dict) or "history" not in doc:
            raise MetricsError(f"metrics file {path} has no 'history'; it was not written by "
                               "MetricsTracker.save_to_json")
        if "epochs" not in doc:  # a bare {"history": {name: [values]}}: epochs 1..n
            doc["epochs"] = {k: list(range(1, len(v) + 1)) for k, v in doc["history"].items()}
        tracker = cls()
        try:
            tracker.load_state_dict(doc)
        except MetricsError as exc:
            raise MetricsError(f"metrics file {path}: {exc}") from exc
        return tracker

    def plot_metrics(self, names: Sequence[str] | str | None = None, save_path: Path | str = "metrics.png",
                     *, title: str | None = None, logy: bool = False, dpi: int = 100) -> Path:
        """One PNG with a curve per metric against the epoch (atomic write; no pyplot state)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        if isinstance(names, str):
            names = [names]
        names = list(self.history) if names is None else list(names)
        unknown = [n for n in names if not self.history.get(n)]
        if unknown or not names:
            raise MetricsError(f"no recorded values for {unknown or 'any metric'}; recorded metrics: "
                               f"{sorted(self.history) or 'none (call end_epoch first)'}")
        fig = Figure(figsize=(7, 4.5), dpi=dpi)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        for name in names:
            ax.plot(self.epochs[name], self.history[name], marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("value")
        if logy:
            ax.set_yscale("log")
        if title:
            ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        save_path = Path(save_path)
        with atomic_path(save_path) as tmp:
            fig.savefig(tmp, format="png")
        return save_path

