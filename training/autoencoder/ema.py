"""An exponential moving average (EMA) of the generator's weights, as AudioCraft keeps one.

Bias-corrected (AudioCraft's ``unbias=True``): the first update copies the weights, later ones
average with weight ``1 / count``, ``count = decay * count + 1``. Parameters are averaged;
buffers (the RVQ codebooks, already EMAs themselves) are copied. Details: README.md, **EMA**.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from training.utils import TrainingError

__all__ = ["ModelEMA", "EMAError"]

_FORMAT = "enc-hf-workflow.model-ema"


class EMAError(TrainingError, ValueError):
    """A bad EMA decay, or an EMA state that does not belong to this model."""


class ModelEMA:
    """A frozen copy of ``module`` (``.module``, eval mode) that :meth:`update` moves towards it."""

    def __init__(self, module: nn.Module, decay: float = 0.99) -> None:
        if not 0.0 <= float(decay) < 1.0:
            raise EMAError(f"optim.ema.decay must be in [0, 1), got {decay!r} (AudioCraft uses 0.99)")
        self.decay = float(decay)
        self.count = 0.0
        self.module = copy.deepcopy(module).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, source: nn.Module) -> None:
        """One EMA step towards ``source``'s current weights (same architecture as ``module``)."""
        self.count = self.decay * self.count + 1.0
        w = 1.0 / self.count
        for avg, p in zip(self.module.parameters(), source.parameters(), strict=True):
            avg.lerp_(p.detach().to(avg.dtype), w)
        for avg, b in zip(self.module.buffers(), source.buffers(), strict=True):
            avg.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint's ``extra`` (the averaged weights travel as the model's)."""
        return {"format": _FORMAT, "decay": self.decay, "count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the bias-correction count saved by :meth:`state_dict`."""
        if not isinstance(state, Mapping) or state.get("format") != _FORMAT:
            raise EMAError("not an EMA state (missing format tag); pass what ModelEMA.state_dict() returned")
        self.count = float(state["count"])
