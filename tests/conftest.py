"""Repository-wide test fixtures."""

from __future__ import annotations

import logging

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
