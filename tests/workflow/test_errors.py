"""errors.py: the one wording for OSErrors the machine causes (full disk, unwritable folder)."""

from __future__ import annotations

import errno
import os

from workflow.errors import describe_os_error


def test_describe_os_error_names_the_path_and_the_fix() -> None:
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/out/a.wav")
    assert describe_os_error(full) == (
        "/data/out/a.wav: no space left on device; free some space or write to another disk")
    denied = PermissionError(errno.EACCES, "Permission denied", "/data/out/.reports")
    assert describe_os_error(denied).startswith("/data/out/.reports: permission denied;")
    temp = OSError(errno.EROFS, "Read-only file system", "/mnt/ro/.ds.tmp-build-12-x")
    assert describe_os_error(temp).startswith("/mnt/ro (a temporary file in that folder): read-only")
    assert describe_os_error(OSError(errno.ENOSPC, "No space left on device")).startswith(
        "writing a file: no space left")
    assert describe_os_error(FileNotFoundError(errno.ENOENT, "No such file", "x")) is None
