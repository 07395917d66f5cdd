"""workflow.dist: torchrun ranks, shard arithmetic and the precision policy."""

from __future__ import annotations

import pytest
import torch

from workflow.dist import DistInfo, autocast, autocast_dtype, dist_info, effective_shard, init_distributed
from workflow.errors import UsageError


def test_ranks_from_the_environment() -> None:
    assert dist_info({}) == DistInfo() and not DistInfo().enabled and DistInfo().is_main
    info = dist_info({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert info == DistInfo(3, 4, 1) and info.enabled and not info.is_main
    assert effective_shard(1, 2, info) == (7, 8) and effective_shard(0, 1, DistInfo()) == (0, 1)


def test_single_process_starts_no_group(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info, dev = init_distributed(torch.device("cpu"))
    assert info == DistInfo() and dev == torch.device("cpu")
    assert not torch.distributed.is_initialized()
    info.barrier()  # a no-op


def test_precision_policy_on_cpu_is_float32() -> None:
    cpu = torch.device("cpu")
    for p in ("bf16", "fp16", "fp32", "auto", None, True, False, "BF16"):
        assert autocast_dtype(cpu, p) is None
    with pytest.raises(UsageError, match="bf16"):
        autocast_dtype(cpu, "int8")
    with autocast(cpu, None):
        assert not torch.is_autocast_enabled()
