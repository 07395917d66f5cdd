"""One home for multi-process and precision policy: torchrun ranks, the process group, autocast.

Used by s2 (a rank is a shard of the file list), the autoencoder and midigroove trainers (DDP),
and the music suite's training loop. torch is imported inside the functions that need it, so
reading ranks stays cheap for ``--help``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from .errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a ``torchrun`` launch (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (a no-op in a single process)."""
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()


def dist_info(env: Mapping[str, str] | None = None) -> DistInfo:
    """Rank and world size from ``torchrun``'s environment (1 process when absent)."""
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(env.get("RANK", "0")), world, int(env.get("LOCAL_RANK", "0")))


def effective_shard(shard_index: int, shard_count: int, dist: DistInfo) -> tuple[int, int]:
    """Combine user shards (e.g. SLURM array tasks) with torchrun ranks into one shard id."""
    return shard_index * dist.world_size + dist.rank, shard_count * dist.world_size


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` and pick this rank's device.

    CUDA ranks use NCCL and GPU ``LOCAL_RANK``; CPU ranks use gloo. One process: returns
    ``(DistInfo(), device)`` and starts nothing.
    """
    import torch

    info = dist_info()
    if not info.enabled:
        return info, device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise UsageError(f"distributed runs use CUDA (nccl) or CPU (gloo), not {device}")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if dist.get_world_size() != info.world_size:
        raise UsageError(f"WORLD_SIZE={info.world_size} but the process group has "
                         f"{dist.get_world_size()} ranks")
    return DistInfo(dist.get_rank(), info.world_size, info.local_rank), device


_PRECISIONS = {"fp32": None, "off": None, "no": None, "false": None,
               "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16"}


def autocast_dtype(device: torch.device, precision: str | bool | None) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or None for float32.

    ``"bf16"`` / ``"fp16"`` (also ``True`` = fp16, ``False``/``"fp32"`` = off, ``None``/``"auto"`` =
    bf16 where the GPU has it, else fp16). Mixed precision runs on CUDA only: elsewhere it is off
    (logged). bf16 on a GPU without it falls back to float32 (logged).
    """
    import torch

    if precision is None or precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    key = ("fp16" if precision else "fp32") if isinstance(precision, bool) else str(precision).lower()
    if key not in _PRECISIONS:
        raise UsageError(f"precision must be 'bf16', 'fp16', 'fp32' or 'auto', got {precision!r}")
    name = _PRECISIONS[key]
    if name is None:
        return None
    if device.type != "cuda":
        log.info("mixed precision is used on CUDA only; running in float32 on %s", device)
        return None
    if name == "bfloat16" and not torch.cuda.is_bf16_supported():
        log.warning("this GPU has no bfloat16 support; running in float32")
        return None
    return getattr(torch, name)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op context for float32."""
    import torch

    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
