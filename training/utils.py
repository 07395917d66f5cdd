"""The training toolkit's historical import path: a re-export of :mod:`training.core`.

``from training.utils import CheckpointManager, fit, ...`` keeps working for every public name
(and the format constants); new code may import from :mod:`training.core` or its modules
(:mod:`training.core.checkpoint`, :mod:`training.core.loop`, ...). See :mod:`training.core` for
the toolkit's overview and the batch layout rule.
"""

from __future__ import annotations

from training.core import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    METRICS_FORMAT,
    METRICS_VERSION,
    BatchError,
    CheckpointError,
    CheckpointManager,
    EarlyStopping,
    ExperimentLogger,
    FitHistory,
    MetricsError,
    MetricsTracker,
    SavedCheckpoint,
    TrainingError,
    fit,
    get_device,
    get_rng_state,
    move_to_device,
    seed_everything,
    seed_worker,
    set_rng_state,
    split_dataset,
    train_epoch,
    unpack_batch,
    validate_epoch,
)

__all__ = [
    "TrainingError",
    "CheckpointError",
    "BatchError",
    "MetricsError",
    "EarlyStopping",
    "CheckpointManager",
    "SavedCheckpoint",
    "MetricsTracker",
    "ExperimentLogger",
    "FitHistory",
    "train_epoch",
    "validate_epoch",
    "fit",
    "split_dataset",
    "get_device",
    "seed_everything",
    "seed_worker",
    "unpack_batch",
    "move_to_device",
    "get_rng_state",
    "set_rng_state",
]
