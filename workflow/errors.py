"""Exception classes shared by the workflow modules.

Every error raised on purpose by library code derives from :class:`WorkflowError`, so a stage's
runner can tell an expected, per-file failure (reported, run goes on) from a programming bug.
Messages name the file involved and say what to do about it.
"""

from __future__ import annotations

import errno
import os


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


class LaunchError(WorkflowError):
    """A cluster launch (``--launcher slurm|local``) could not be submitted, or one of its jobs failed."""


class DatasetError(WorkflowError):
    """A Hugging Face dataset folder built by s5 is missing, inconsistent or cannot be built."""


# What an OSError caused by the machine rather than the data means, and what to do about it.
_OS_ERROR_HINTS = {
    errno.ENOSPC: "no space left on device; free some space or write to another disk",
    errno.EDQUOT: "disk quota exceeded; free some space or write to another disk",
    errno.EFBIG: "file too large for this file system; write to another disk",
    errno.EROFS: "read-only file system; choose a writable output folder",
    errno.EACCES: "permission denied; check the permissions of this path and its folder "
                  "(an output folder must be writable)",
    errno.EPERM: "operation not permitted; check the permissions of this path and its folder",
}
ENVIRONMENT_ERRNOS = frozenset(_OS_ERROR_HINTS)


def describe_os_error(exc: OSError) -> str | None:
    """One line for an OSError the environment caused (full disk, quota, read-only or
    unwritable folder), naming the path; ``None`` for any other OSError (likely a bug)."""
    hint = _OS_ERROR_HINTS.get(exc.errno)
    if hint is None:
        return None
    where = os.fsdecode(exc.filename) if exc.filename is not None else "writing a file"
    base = os.path.basename(where)
    if base.startswith(".") and ".tmp-" in base:  # a temp file: name the folder it was going into
        where = f"{os.path.dirname(where) or '.'} (a temporary file in that folder)"
    return f"{where}: {hint}"
