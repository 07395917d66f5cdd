"""The training toolkit's error classes, and the CLI wrapper that reports them.

:class:`TrainingError` is training's own base, not a :class:`workflow.errors.WorkflowError`: the
workflow stages and the trainers fail in different ways. A training CLI's ``main``
is wrapped in :func:`reports_training_errors`, which reports a TrainingError the way
``workflow.runner.run_cli`` reports a WorkflowError (one ``error:`` line on stderr, exit code 1);
UsageError stays exit code 2.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

__all__ = ["TrainingError", "CheckpointError", "BatchError", "MetricsError", "reports_training_errors"]


class TrainingError(Exception):
    """Base class for expected training failures (diverged loss, bad state, ...)."""


class CheckpointError(TrainingError):
    """A checkpoint is missing, unreadable, or does not match the model / optimizer given."""


class BatchError(TrainingError):
    """A loader yielded no batches, or a batch / loss has a layout the loop cannot use."""


class MetricsError(TrainingError):
    """A metrics value or metrics JSON file cannot be used."""


def reports_training_errors(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Wrap a training CLI's ``main(argv) -> int`` in ``workflow.runner.run_cli`` with
    TrainingError expected: one ``error:`` line and exit 1 (UsageError 2, Ctrl-C 130)."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        from workflow.runner import run_cli

        return run_cli(main, argv, expected=(TrainingError,))

    return wrapper
