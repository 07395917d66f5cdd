"""Ranks, the ``torchrun`` process group and the precision policy: :mod:`workflow.dist`, re-exported
so training code imports everything from :mod:`training.core`."""

from __future__ import annotations

from workflow.dist import (
    DistInfo,
    autocast,
    autocast_dtype,
    dist_info,
    effective_shard,
    init_distributed,
)

__all__ = ["DistInfo", "dist_info", "effective_shard", "init_distributed", "autocast_dtype", "autocast"]
