"""Early stopping: patience on a monitored score (``mode="min"`` or ``"max"``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from workflow.errors import UsageError

from ._common import _as_float, _check_mode, _is_better
from .errors import CheckpointError

log = logging.getLogger(__name__)


class EarlyStopping:
    """Stop when the monitored score has not improved by ``min_delta`` for ``patience`` epochs.

    ``early_stopping(val_loss, epoch)`` records the score and returns True when training should
    stop. An improvement is ``score < best - min_delta`` (``mode="min"``) or
    ``score > best + min_delta`` (``mode="max"``); a NaN score never improves. After a later
    improvement the counter resets and the call returns False again.
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.001, mode: str = "min",
                 verbose: bool = True) -> None:
        if patience < 0:
            raise UsageError(f"patience must be >= 0, got {patience}")
        if min_delta < 0:
            raise UsageError(f"min_delta must be >= 0 (it is applied in the direction of mode), "
                             f"got {min_delta}")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.mode = _check_mode(mode)
        self.verbose = verbose
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.counter = 0
        self.early_stop = False
        self._calls = 0

    def is_improvement(self, score: float) -> bool:
        """Whether ``score`` beats the best so far by more than ``min_delta``."""
        return _is_better(_as_float(score, "early-stopping score"), self.best_score, self.mode,
                          self.min_delta)

    def __call__(self, score: float, epoch: int | None = None) -> bool:
        value = _as_float(score, "early-stopping score")
        self._calls += 1
        epoch = self._calls if epoch is None else int(epoch)
        level = logging.INFO if self.verbose else logging.DEBUG
        if math.isnan(value):
            log.warning("early stopping: score at epoch %d is NaN; counted as no improvement", epoch)
        if _is_better(value, self.best_score, self.mode, self.min_delta):
            if self.best_score is not None:
                log.log(level, "early stopping: score improved %.6g -> %.6g at epoch %d",
                        self.best_score, value, epoch)
            self.best_score = value
            self.best_epoch = epoch
            self.counter = 0
        else:
            self.counter += 1
            log.log(level, "early stopping: no improvement for %d/%d epoch(s) (best %.6g at epoch %s)",
                    self.counter, self.patience, self.best_score if self.best_score is not None
                    else float("nan"), self.best_epoch)
        self.early_stop = self.counter > 0 and self.counter >= self.patience
        if self.early_stop:
            log.log(level, "early stopping: patience of %d exhausted at epoch %d", self.patience, epoch)
        return self.early_stop

    def reset(self) -> None:
        """Forget every score (start a fresh run)."""
        self.best_score = None
        self.best_epoch = None
        self.counter = 0
        self.early_stop = False
        self._calls = 0

    def state_dict(self) -> dict[str, Any]:
        """Plain, ``weights_only``-loadable state."""
        return {"best_score": self.best_score, "best_epoch": self.best_epoch,
                "counter": self.counter, "early_stop": self.early_stop, "calls": self._calls,
                "patience": self.patience, "min_delta": self.min_delta, "mode": self.mode}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore counters and best score. ``patience`` / ``min_delta`` keep this instance's
        values (so a resumed run may change them); a different ``mode`` is refused."""
        try:
            mode = state.get("mode", self.mode)
            if mode != self.mode:
                raise CheckpointError(
                    f"early-stopping state was recorded with mode={mode!r} but this EarlyStopping "
                    f"uses mode={self.mode!r}; create it with mode={mode!r} to resume")
            best = state["best_score"]
            self.best_score = None if best is None else float(best)
            best_epoch = state.get("best_epoch")
            self.best_epoch = None if best_epoch is None else int(best_epoch)
            self.counter = int(state["counter"])
            self._calls = int(state.get("calls", 0))
            self.early_stop = self.counter > 0 and self.counter >= self.patience
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"malformed early-stopping state {dict(state)!r}: {exc}") from exc

    def __repr__(self) -> str:
        return (f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, "
                f"mode={self.mode!r}, best_score={self.best_score}, counter={self.counter})")
