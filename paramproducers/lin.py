"""Linear ramps: ``--lin name=start:end`` (repeatable) goes from start (frame 0) to end (last frame).

Example: ``wf-sidecar-add --audio-root tokens/ --producer lin --lin progress=0:1``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from workflow.errors import UsageError

from .const import parse_assignment, parse_number

_SPECS: dict[str, tuple[float, float]] = {}


def parse_ramps(items: list[str] | None) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for text in items or []:
        name, rest = parse_assignment(text, "--lin", "name=start:end, e.g. --lin progress=0:1")
        parts = rest.split(":")
        if len(parts) != 2:
            raise UsageError(f"--lin {text!r}: expected name=start:end, e.g. --lin progress=0:1")
        if name in out:
            raise UsageError(f"--lin {name} given twice")
        out[name] = (parse_number(parts[0], "--lin", text), parse_number(parts[1], "--lin", text))
    return out


def ramp(start: float, end: float, T: int) -> np.ndarray:
    """``T`` evenly spaced values, ``start`` at frame 0 and ``end`` at frame ``T - 1``."""
    return np.linspace(start, end, T, dtype=np.float64).astype(np.float32)


def add_cli_args(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--lin", action="append", metavar="NAME=START:END", default=None,
                        help="a column NAME ramping linearly from START at the first frame to END "
                             "at the last (repeatable)")


def init(args: argparse.Namespace) -> None:
    specs = parse_ramps(getattr(args, "lin", None))
    if not specs:
        raise UsageError("producer lin needs at least one --lin name=start:end")
    _SPECS.clear()
    _SPECS.update(specs)


def feature_names(args: argparse.Namespace) -> list[str]:
    return list(_SPECS)


def produce(ecdc_path: Path, T: int, *, args: argparse.Namespace) -> dict[str, np.ndarray]:
    return {name: ramp(a, b, T) for name, (a, b) in _SPECS.items()}
