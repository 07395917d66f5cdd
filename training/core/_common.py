"""Small value helpers shared by the toolkit's modules (scores, modes, error text)."""

from __future__ import annotations

import math
from typing import Any

import torch

from workflow.errors import UsageError

from .errors import MetricsError

_MODES = ("min", "max")


def _check_mode(mode: str) -> str:
    if mode not in _MODES:
        raise UsageError(f"mode must be 'min' or 'max', got {mode!r}")
    return mode


def _as_float(value: Any, what: str) -> float:
    """A Python float from a number, a one-element tensor or a numpy scalar."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise MetricsError(f"{what} must be a scalar, got a tensor of shape {tuple(value.shape)}")
        return float(value.detach().float().cpu().item())
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise MetricsError(f"{what} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise MetricsError(f"{what} must be a number, got {type(value).__name__}: {value!r}") from exc


def _is_better(score: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if math.isnan(score):
        return False
    if best is None:
        return True
    return score < best - min_delta if mode == "min" else score > best + min_delta


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
