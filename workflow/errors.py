"""Exception classes shared by the workflow modules.

Every error raised on purpose by library code derives from :class:`WorkflowError`, so a stage's
runner can tell an expected, per-file failure (reported, run goes on) from a programming bug.
Messages name the file involved and say what to do about it.
"""

from __future__ import annotations


class WorkflowError(Exception):
    """Base class for expected, user-facing failures."""


class UsageError(WorkflowError):
    """Bad arguments or folder layout (e.g. an output folder inside the input folder)."""


class AudioReadError(WorkflowError):
    """A file could not be decoded as audio (unsupported, truncated or corrupt)."""


class AudioContentError(WorkflowError):
    """Audio decoded but is unusable: zero length, NaN or Inf samples."""


class EcdcFormatError(WorkflowError):
    """A `.ecdc` (or legacy token) file is malformed, truncated or unsupported."""


class CodecError(WorkflowError):
    """A codec could not be built, loaded or run."""


class CodecBackendError(CodecError):
    """The requested codec backend is not installed or cannot be imported."""


class WeightsNotFoundError(CodecError):
    """Pretrained weights are neither cached nor reachable, nor a usable local path."""


class DeviceError(WorkflowError):
    """The requested compute device is not available (e.g. `--device cuda` without CUDA)."""


class SidecarError(WorkflowError):
    """A conditioning sidecar (`.cond.npy` + `.cond.json`) is missing, malformed or inconsistent."""


class ProducerError(WorkflowError):
    """A param producer could not be loaded, or returned values that cannot be stored."""


class FeatureSetError(ProducerError):
    """s4's producers would give files different columns; ``fix_args`` are flags that make them agree."""

    def __init__(self, message: str, fix_args: list[str] | None = None):
        super().__init__(message)
        self.fix_args = list(fix_args or [])


class DatasetError(WorkflowError):
    """A Hugging Face dataset folder built by s5 is missing, inconsistent or cannot be built."""
