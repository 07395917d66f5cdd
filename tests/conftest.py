"""Repository-wide test fixtures."""

from __future__ import annotations

import logging
import os

# OpenMP threads that spin while waiting starve each other on a busy 2-core box: measured on the
# music-suite training test, 33 s idle became 156 s with two other busy processes; passive waiting
# keeps it at 57 s (36 s idle). Set before torch is first imported; subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest


@pytest.fixture(autouse=True)
def _restore_logging():
    """CLI ``main`` functions call ``logging.basicConfig(force=True)``, which binds the root logger to
    the capture stream of the test that ran it; put the root handlers back afterwards so later tests
    never log into a closed stream ("--- Logging error ---")."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
