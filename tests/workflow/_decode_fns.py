"""Picklable loaders for the decoding-process tests (worker processes import them by name)."""

from __future__ import annotations

import os

from workflow.encode import AudioLoader
from workflow.runner import WorkItem


class CrashingLoader(AudioLoader):
    """Dies like a segfault in an audio library (no Python exception) on files named crash*."""

    def __call__(self, item: WorkItem):
        if item.src.name.startswith("crash"):
            os._exit(70)
        return super().__call__(item)
