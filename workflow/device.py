"""Device resolution: the project's one resolver for ``--device`` (codecs and training use it).

Re-exported by :mod:`workflow.codecs`. torch is imported inside the function, so importing this
module stays light.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .errors import DeviceError, UsageError

if TYPE_CHECKING:  # torch is imported lazily so that `--help` and the registry stay fast
    import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None = "auto", *, auto_mps: bool = False) -> torch.device:
    """``"auto"`` (CUDA if available, else MPS when ``auto_mps``, else CPU), ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` or ``"mps"``. The project's one device resolver (training uses it too).

    Asking for CUDA without CUDA raises DeviceError: a silent CPU fallback would turn a GPU job
    into a days-long CPU job without anyone noticing.
    """
    import torch

    text = "auto" if device is None else str(device).strip().lower()
    mps_ok = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if auto_mps and mps_ok else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match:
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {device!r} requested but CUDA is not available (torch {torch.__version__}, "
                f"built for CUDA {torch.version.cuda or 'none'}). Use --device cpu, or --device auto "
                "to use a GPU only when there is one.")
        index = int(match.group(1) or torch.cuda.current_device())
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceError(f"device {device!r} requested but only {count} CUDA device(s) are "
                              f"visible (cuda:0..cuda:{count - 1}); check CUDA_VISIBLE_DEVICES")
        return torch.device("cuda", index)
    if text == "mps":
        if not mps_ok:
            raise DeviceError("device 'mps' requested but Apple MPS is not available; use --device cpu")
        return torch.device("mps")
    raise UsageError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
