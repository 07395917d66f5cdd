"""The project's one training toolkit: loops, checkpoints, early stopping, metrics, logging.

The SEANet autoencoder, the music suite and the midigroove Transformer all train with these pieces,
so a checkpoint, a metrics file or a resume works the same way everywhere. One module per concern
(errors, stopping, seed, checkpoint, metrics, logger, loop, dist); ``training.utils`` re-exports the
same names. The API, the batch layout rule and resume: README.md, "The training toolkit".
"""

from __future__ import annotations

from .checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointManager, SavedCheckpoint
from .errors import BatchError, CheckpointError, MetricsError, TrainingError, reports_training_errors
from .logger import ExperimentLogger
from .loop import FitHistory, fit, move_to_device, train_epoch, unpack_batch, validate_epoch
from .metrics import METRICS_FORMAT, METRICS_VERSION, MetricsTracker
from .seed import get_device, get_rng_state, seed_everything, seed_worker, set_rng_state, split_dataset
from .stopping import EarlyStopping

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
    "reports_training_errors",
]
