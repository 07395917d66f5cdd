"""The project's one training toolkit: loops, checkpoints, early stopping, metrics, logging.

One module per concern: :mod:`.errors`, :mod:`.stopping`, :mod:`.seed`, :mod:`.checkpoint`,
:mod:`.metrics`, :mod:`.logger`, :mod:`.loop` and :mod:`.dist` (ranks and the precision policy,
re-exported from :mod:`workflow.dist`). ``training.utils`` re-exports the same public names.

The SEANet autoencoder, the music suite and the midigroove Transformer all train with these
pieces, so a checkpoint, a metrics file or a resume works the same way everywhere.

* :class:`EarlyStopping` — patience on a monitored score (``mode="min"`` or ``"max"``).
* :class:`CheckpointManager` — ``<name>_best.pt`` / ``<name>_epoch<N>.pt`` / ``<name>_last.pt``,
  written atomically (temp file, fsync, ``os.replace``) and loadable with
  ``torch.load(weights_only=True)``; a resume restores model, optimizer, scheduler, AMP scaler,
  early-stopping state and the torch / numpy / python / CUDA random states.
* :class:`MetricsTracker` — per-epoch averages, history, JSON round trip, one PNG of curves.
* :func:`train_epoch` / :func:`validate_epoch` — one pass over a loader with AMP on CUDA,
  gradient clipping and a tqdm bar; :func:`fit` ties everything together (and resumes).
* :class:`ExperimentLogger` — one front for Weights & Biases, TensorBoard or nothing; a missing
  or broken tracker falls back to ``"none"`` with a warning instead of crashing a run.
* :func:`split_dataset`, :func:`get_device`, :func:`seed_everything`, :func:`seed_worker`.

Batch layout rule (used by :func:`train_epoch`, :func:`validate_epoch` and :func:`fit`):

* a ``dict`` batch: inputs are ``batch["features"]`` and targets ``batch["target"]``; without a
  ``"target"`` key the targets are the features themselves (autoencoding);
* a ``tuple`` / ``list`` of two: ``(inputs, targets)``;
* a single tensor (or a one-element tuple): inputs, with targets = inputs (autoencoding).

Inputs that are themselves a dict are passed to the model as keyword arguments
(``model(**inputs)``), anything else positionally (``model(inputs)``). Every tensor is moved to
the device (nested dicts / lists / tuples too). Any other layout: pass ``batch_fn(batch, device)
-> (inputs, targets)``.

Epochs are numbered from 1. Library code here logs (``logging``) and never prints.
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
