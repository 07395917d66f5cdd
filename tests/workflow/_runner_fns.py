"""Picklable per-item functions for the runner tests (process pools need importable functions)."""

from __future__ import annotations

import os
import time

from workflow.errors import AudioReadError
from workflow.files import atomic_write_text
from workflow.runner import WorkItem


def copy_upper(item: WorkItem) -> dict:
    text = item.src.read_text()
    if "bad" in text:
        raise AudioReadError(f"{item.src}: cannot decode; remove it")
    if "bug" in text:
        raise ZeroDivisionError("boom")
    atomic_write_text(item.dst, text.upper())
    return {"pid": os.getpid(), "chars": len(text)}


def slow_pid(item: WorkItem) -> dict:
    time.sleep(0.2)
    atomic_write_text(item.dst, "x")
    return {"pid": os.getpid()}


def crash_on_kill(item: WorkItem) -> dict:
    """Simulates an out-of-memory kill: the worker process dies without a Python exception."""
    if item.src.read_text() == "kill":
        os._exit(9)
    time.sleep(0.05)
    atomic_write_text(item.dst, "x")
    return {}
