"""Split policy: ``--split-ratios`` parsing and the stable hash that assigns a file to a split.

A file's split depends only on its id, the seed and the ratios, so adding files never moves
existing ones.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping

from ..errors import UsageError
from .schema import DEFAULT_RATIOS

_SPLIT_RE = re.compile(r"^\w+$")


def parse_split_ratios(spec: str | Mapping[str, float]) -> dict[str, float]:
    """``"train=0.9,valid=0.05,test=0.05"`` → ``{"train": 0.9, …}``, normalised to sum to 1."""
    if isinstance(spec, Mapping):
        pairs = [(str(k), v) for k, v in spec.items()]
    else:
        pairs = []
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = (x.strip() for x in part.partition("="))
            if not sep:
                raise UsageError(f"--split-ratios: {part!r} is not NAME=RATIO (e.g. {DEFAULT_RATIOS})")
            pairs.append((name, value))
    out: dict[str, float] = {}
    for name, value in pairs:
        check_split_name(name)
        if name in out:
            raise UsageError(f"--split-ratios names split {name!r} twice")
        try:
            r = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"--split-ratios: ratio of {name!r} is not a number: {value!r}") from None
        if not math.isfinite(r) or r < 0:
            raise UsageError(f"--split-ratios: ratio of {name!r} must be >= 0, got {value!r}")
        out[name] = r
    total = sum(out.values())
    if not out or total <= 0:
        raise UsageError(f"--split-ratios needs at least one positive ratio (e.g. {DEFAULT_RATIOS})")
    return {k: v / total for k, v in out.items()}


def check_split_name(name: str) -> str:
    if not _SPLIT_RE.match(name or ""):
        raise UsageError(f"split name {name!r} must be letters, digits or '_' (e.g. train, valid)")
    return name


def assign_split(item_id: str, ratios: Mapping[str, float], seed: int = 0) -> str:
    """The split of ``item_id``: a stable hash of (seed, id) placed on the cumulative ratios.

    Depends only on the id, the seed and the ratios, so adding files never moves existing ones.
    """
    digest = hashlib.sha256(f"{seed}\x00{item_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    acc = 0.0
    names = list(ratios)
    for name in names:
        acc += ratios[name]
        if u < acc:
            return name
    return next((n for n in reversed(names) if ratios[n] > 0), names[-1])
