"""Seeds, random-state snapshots (weights_only-safe), the train/validation split and the device."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from workflow.errors import UsageError

log = logging.getLogger(__name__)


def get_rng_state() -> dict[str, Any]:
    """The torch, CUDA, MPS, numpy and python ``random`` states as tensors / plain lists."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"bit_generator": str(np_state[0]),
                  "keys": [int(k) for k in np_state[1]],
                  "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "python": {"version": int(py_version), "internal": [int(v) for v in py_internal],
                   "gauss_next": None if py_gauss is None else float(py_gauss)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if _mps_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _set_mps_rng_state(saved: Any) -> None:
    """Restore the Apple-GPU generator, or say why not (a resume elsewhere is not bit-for-bit)."""
    if not _mps_available():
        log.warning("checkpoint holds MPS (Apple GPU) RNG state but MPS is not available; not "
                    "restored, so this resume is not bit-for-bit")
        return
    torch.mps.set_rng_state(torch.as_tensor(saved, dtype=torch.uint8).cpu())


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned (missing parts are left alone)."""
    if "torch" in state:
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    if "numpy" in state:
        s = state["numpy"]
        np.random.set_state((s["bit_generator"], np.asarray(s["keys"], dtype=np.uint32),
                             int(s["pos"]), int(s["has_gauss"]), float(s["cached_gaussian"])))
    if "python" in state:
        s = state["python"]
        random.setstate((int(s["version"]), tuple(int(v) for v in s["internal"]), s["gauss_next"]))
    if state.get("cuda") is not None:
        saved = list(state["cuda"])
        if not torch.cuda.is_available():
            log.warning("checkpoint holds CUDA RNG state but CUDA is not available; not restored")
        elif len(saved) != torch.cuda.device_count():
            log.warning("checkpoint holds CUDA RNG state for %d device(s) but %d are visible; "
                        "restoring the first %d", len(saved), torch.cuda.device_count(),
                        min(len(saved), torch.cuda.device_count()))
            for i, s in enumerate(saved[: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(torch.as_tensor(s, dtype=torch.uint8).cpu(), i)
        else:
            torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8).cpu() for s in saved])
    if state.get("mps") is not None:
        _set_mps_rng_state(state["mps"])


def split_dataset(dataset: Dataset, val_split: float | int = 0.2, shuffle: bool = True,
                  seed: int = 42) -> tuple[Subset, Subset]:
    """Split into ``(train, val)`` subsets; the same ``seed`` always gives the same split.

    ``val_split`` is a fraction in (0, 1) (rounded, then clamped so both parts are non-empty) or
    an item count. Without ``shuffle`` the last items are the validation set. The global RNGs are
    not touched.
    """
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError as exc:
        raise UsageError(f"cannot split a {type(dataset).__name__} without a length (an iterable "
                         "dataset); split its source instead") from exc
    if n < 2:
        raise UsageError(f"cannot split a dataset of {n} item(s) into non-empty train and "
                         "validation sets; it needs at least 2 items")
    if isinstance(val_split, bool) or not isinstance(val_split, (int, float)):
        raise UsageError(f"val_split must be a fraction in (0, 1) or an item count, got {val_split!r}")
    if isinstance(val_split, float) or (0 < val_split < 1):
        if not 0.0 < val_split < 1.0:
            raise UsageError(f"val_split fraction must be in (0, 1), got {val_split}")
        n_val = min(max(int(round(n * val_split)), 1), n - 1)
    else:
        if not 1 <= val_split <= n - 1:
            raise UsageError(f"val_split count must be between 1 and {n - 1} for {n} items, "
                             f"got {val_split}")
        n_val = int(val_split)
    if shuffle:
        generator = torch.Generator().manual_seed(int(seed))
        order = torch.randperm(n, generator=generator).tolist()
    else:
        order = list(range(n))
    val_idx = sorted(order[n - n_val:])
    train_idx = sorted(order[: n - n_val])
    return Subset(dataset, train_idx), Subset(dataset, val_idx)


def get_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` (CUDA > MPS > CPU), ``"cuda"`` / ``"cuda:N"``, ``"mps"`` or ``"cpu"``.

    Asking for an accelerator that is not there raises DeviceError rather than silently falling
    back to the CPU (a GPU job quietly running for days on a CPU is worse than an error).
    """
    from workflow.codecs import resolve_device

    return resolve_device(device, auto_mps=True)


def seed_everything(seed: int, deterministic: bool = False) -> int:
    """Seed python ``random``, numpy and torch (all CUDA devices); returns ``seed``.

    ``deterministic=True`` also asks torch for deterministic kernels (warn-only) and turns off
    the cuDNN autotuner: reproducible, somewhat slower.
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)  # inherited by worker subprocesses
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return seed


def seed_worker(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=seed_worker)``: seeds numpy and ``random`` in each worker from
    torch's per-worker seed (which torch derives from the epoch's base seed)."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)

