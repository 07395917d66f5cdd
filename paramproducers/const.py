"""Constant columns: ``--const name=value`` (repeatable) fills every frame with ``value``.

Example: ``wf-sidecar-add --audio-root tokens/ --producer const --const gain=0.5 --const split=1``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from workflow.errors import UsageError

_SPECS: dict[str, float] = {}


def parse_assignment(text: str, flag: str, example: str) -> tuple[str, str]:
    """``"name=rest"`` → ``("name", "rest")`` with a usage error that shows ``example``."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name or not rest.strip() or any(c.isspace() for c in name):
        raise UsageError(f"{flag} {text!r}: expected {example}")
    return name, rest.strip()


def parse_number(text: str, flag: str, whole: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{flag} {whole!r}: {text!r} is not a number") from None
    if not np.isfinite(value):
        raise UsageError(f"{flag} {whole!r}: value must be finite")
    return value


def parse_named_numbers(items: list[str] | None, flag: str, example: str) -> dict[str, float]:
    """``["a=1", "b=2.5"]`` given to ``flag`` → ``{"a": 1.0, "b": 2.5}``; a name given twice is an error."""
    out: dict[str, float] = {}
    for text in items or []:
        name, value = parse_assignment(text, flag, example)
        if name in out:
            raise UsageError(f"{flag} {name} given twice")
        out[name] = parse_number(value, flag, text)
    return out


def parse_consts(items: list[str] | None) -> dict[str, float]:
    return parse_named_numbers(items, "--const", "name=value, e.g. --const gain=0.5")


def add_cli_args(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--const", action="append", metavar="NAME=VALUE", default=None,
                        help="a column NAME holding VALUE in every frame (repeatable)")


def init(args: argparse.Namespace) -> None:
    specs = parse_consts(getattr(args, "const", None))
    if not specs:
        raise UsageError("producer const needs at least one --const name=value")
    _SPECS.clear()
    _SPECS.update(specs)


def feature_names(args: argparse.Namespace) -> list[str]:
    return list(_SPECS)


def produce(ecdc_path: Path, T: int, *, args: argparse.Namespace) -> dict[str, np.ndarray]:
    return {name: np.full(T, value, np.float32) for name, value in _SPECS.items()}
