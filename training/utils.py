"""The project's one training toolkit: loops, checkpoints, early stopping, metrics, logging.

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

import contextlib
import importlib.util
import json
import logging
import math
import netrc
import os
import random
import re
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from workflow.errors import DeviceError, UsageError, WorkflowError
from workflow.files import TMP_MARKER, atomic_path, atomic_write_text, temp_sibling

log = logging.getLogger(__name__)

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

CHECKPOINT_FORMAT = "enc-hf-workflow.checkpoint"
CHECKPOINT_VERSION = 1
METRICS_FORMAT = "enc-hf-workflow.metrics"
METRICS_VERSION = 1
_MODES = ("min", "max")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


# ---------------------------------------------------------------------------------------------
# Errors


class TrainingError(WorkflowError):
    """Base class for expected training failures (diverged loss, bad state, ...)."""


class CheckpointError(TrainingError):
    """A checkpoint is missing, unreadable, or does not match the model / optimizer given."""


class BatchError(TrainingError):
    """A loader yielded no batches, or a batch / loss has a layout the loop cannot use."""


class MetricsError(TrainingError):
    """A metrics value or metrics JSON file cannot be used."""


def _check_mode(mode: str) -> str:
    if mode not in _MODES:
        raise UsageError(f"mode must be 'min' or 'max', got {mode!r}")
    return mode


def _as_float(value: Any, what: str) -> float:
    """A Python float from a number, a one-element tensor or a numpy scalar."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise MetricsError(f"{what} must be a scalar, got a tensor of shape {tuple(value.shape)}")
        return float(value.detach().float().cpu().item())
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise MetricsError(f"{what} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise MetricsError(f"{what} must be a number, got {type(value).__name__}: {value!r}") from exc


def _is_better(score: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if math.isnan(score):
        return False
    if best is None:
        return True
    return score < best - min_delta if mode == "min" else score > best + min_delta


# ---------------------------------------------------------------------------------------------
# Early stopping


class EarlyStopping:
    """Stop when the monitored score has not improved by ``min_delta`` for ``patience`` epochs.

    ``early_stopping(val_loss, epoch)`` records the score and returns True when training should
    stop. An improvement is ``score < best - min_delta`` (``mode="min"``) or
    ``score > best + min_delta`` (``mode="max"``); a NaN score never improves. After a later
    improvement the counter resets and the call returns False again.
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.001, mode: str = "min",
                 verbose: bool = True) -> None:
        if patience < 0:
            raise UsageError(f"patience must be >= 0, got {patience}")
        if min_delta < 0:
            raise UsageError(f"min_delta must be >= 0 (it is applied in the direction of mode), "
                             f"got {min_delta}")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.mode = _check_mode(mode)
        self.verbose = verbose
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.counter = 0
        self.early_stop = False
        self._calls = 0

    def is_improvement(self, score: float) -> bool:
        """Whether ``score`` beats the best so far by more than ``min_delta``."""
        return _is_better(_as_float(score, "early-stopping score"), self.best_score, self.mode,
                          self.min_delta)

    def __call__(self, score: float, epoch: int | None = None) -> bool:
        value = _as_float(score, "early-stopping score")
        self._calls += 1
        epoch = self._calls if epoch is None else int(epoch)
        level = logging.INFO if self.verbose else logging.DEBUG
        if math.isnan(value):
            log.warning("early stopping: score at epoch %d is NaN; counted as no improvement", epoch)
        if _is_better(value, self.best_score, self.mode, self.min_delta):
            if self.best_score is not None:
                log.log(level, "early stopping: score improved %.6g -> %.6g at epoch %d",
                        self.best_score, value, epoch)
            self.best_score = value
            self.best_epoch = epoch
            self.counter = 0
        else:
            self.counter += 1
            log.log(level, "early stopping: no improvement for %d/%d epoch(s) (best %.6g at epoch %s)",
                    self.counter, self.patience, self.best_score if self.best_score is not None
                    else float("nan"), self.best_epoch)
        self.early_stop = self.counter > 0 and self.counter >= self.patience
        if self.early_stop:
            log.log(level, "early stopping: patience of %d exhausted at epoch %d", self.patience, epoch)
        return self.early_stop

    def reset(self) -> None:
        """Forget every score (start a fresh run)."""
        self.best_score = None
        self.best_epoch = None
        self.counter = 0
        self.early_stop = False
        self._calls = 0

    def state_dict(self) -> dict[str, Any]:
        """Plain, ``weights_only``-loadable state."""
        return {"best_score": self.best_score, "best_epoch": self.best_epoch,
                "counter": self.counter, "early_stop": self.early_stop, "calls": self._calls,
                "patience": self.patience, "min_delta": self.min_delta, "mode": self.mode}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore counters and best score. ``patience`` / ``min_delta`` keep this instance's
        values (so a resumed run may change them); a different ``mode`` is refused."""
        try:
            mode = state.get("mode", self.mode)
            if mode != self.mode:
                raise CheckpointError(
                    f"early-stopping state was recorded with mode={mode!r} but this EarlyStopping "
                    f"uses mode={self.mode!r}; create it with mode={mode!r} to resume")
            best = state["best_score"]
            self.best_score = None if best is None else float(best)
            best_epoch = state.get("best_epoch")
            self.best_epoch = None if best_epoch is None else int(best_epoch)
            self.counter = int(state["counter"])
            self._calls = int(state.get("calls", 0))
            self.early_stop = self.counter > 0 and self.counter >= self.patience
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"malformed early-stopping state {dict(state)!r}: {exc}") from exc

    def __repr__(self) -> str:
        return (f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, "
                f"mode={self.mode!r}, best_score={self.best_score}, counter={self.counter})")


# ---------------------------------------------------------------------------------------------
# RNG state (weights_only-safe: tensors, ints, floats, lists)


def get_rng_state() -> dict[str, Any]:
    """The torch, CUDA, numpy and python ``random`` states as tensors / plain lists."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"bit_generator": str(np_state[0]),
                  "keys": [int(k) for k in np_state[1]],
                  "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "python": {"version": int(py_version), "internal": [int(v) for v in py_internal],
                   "gauss_next": None if py_gauss is None else float(py_gauss)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned (missing parts are left alone)."""
    if "torch" in state:
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
    if "numpy" in state:
        s = state["numpy"]
        np.random.set_state((s["bit_generator"], np.asarray(s["keys"], dtype=np.uint32),
                             int(s["pos"]), int(s["has_gauss"]), float(s["cached_gaussian"])))
    if "python" in state:
        s = state["python"]
        random.setstate((int(s["version"]), tuple(int(v) for v in s["internal"]), s["gauss_next"]))
    if state.get("cuda") is not None:
        saved = list(state["cuda"])
        if not torch.cuda.is_available():
            log.warning("checkpoint holds CUDA RNG state but CUDA is not available; not restored")
        elif len(saved) != torch.cuda.device_count():
            log.warning("checkpoint holds CUDA RNG state for %d device(s) but %d are visible; "
                        "restoring the first %d", len(saved), torch.cuda.device_count(),
                        min(len(saved), torch.cuda.device_count()))
            for i, s in enumerate(saved[: torch.cuda.device_count()]):
                torch.cuda.set_rng_state(torch.as_tensor(s, dtype=torch.uint8).cpu(), i)
        else:
            torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8).cpu() for s in saved])


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _unwrap(model: nn.Module) -> nn.Module:
    """The module whose state dict to save/load: strips DataParallel/DDP and torch.compile."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _to_safe(obj: Any, where: str) -> Any:
    """Convert user metadata to what ``torch.load(weights_only=True)`` can read, or refuse."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj).copy())
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, torch.dtype):
        return str(obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        return _to_safe(asdict(obj), where)
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise CheckpointError(f"{where} has a key of type {type(key).__name__} ({key!r}); "
                                      "checkpoint metadata keys must be str or int")
            out[key] = _to_safe(value, f"{where}[{key!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        items = [_to_safe(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise CheckpointError(
        f"{where} is a {type(obj).__module__}.{type(obj).__name__}, which a weights_only checkpoint "
        "load cannot read; store it as a str, number, list, dict or tensor")


_SAFE_LEAVES = (type(None), bool, int, float, complex, str, bytes, bytearray, torch.Size,
                torch.dtype, torch.device)
_SAFE_MAPPINGS = (dict, OrderedDict, Counter)
_SAFE_SEQUENCES = (list, tuple, set)


def _assert_loadable(obj: Any, where: str) -> None:
    """Refuse, before writing, anything ``torch.load(weights_only=True)`` would refuse later
    (e.g. a LambdaLR whose lambda is a callable object holding a custom class)."""
    if isinstance(obj, torch.Tensor) or type(obj) in _SAFE_LEAVES:
        return
    if type(obj) in _SAFE_MAPPINGS:
        for key, value in obj.items():
            _assert_loadable(key, f"{where} key")
            _assert_loadable(value, f"{where}[{key!r}]")
        for key, value in getattr(obj, "__dict__", {}).items():  # e.g. a state dict's _metadata
            _assert_loadable(value, f"{where}.{key}")
        return
    if type(obj) in _SAFE_SEQUENCES:
        for i, value in enumerate(obj):
            _assert_loadable(value, f"{where}[{i}]")
        return
    raise CheckpointError(
        f"{where} is a {type(obj).__module__}.{type(obj).__name__}, which a weights_only checkpoint "
        "load cannot read; keep only tensors and plain Python values in state dicts (for a "
        "LambdaLR use a plain function, or give the callable object plain attributes)")


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _unique_temp_name(target: Path) -> Path:
    return target.parent / f".{target.stem}{TMP_MARKER}{uuid.uuid4().hex[:12]}{target.suffix}"


def _publish(tmp: Path, targets: Sequence[Path]) -> None:
    """Make each of ``targets`` an atomic copy of the finished file ``tmp`` (hard links where the
    file system allows, copies otherwise); ``tmp`` itself becomes the last target."""
    import shutil

    for target in targets[:-1]:
        extra = _unique_temp_name(target)
        try:
            try:
                os.link(tmp, extra)
            except OSError:
                shutil.copyfile(tmp, extra)
                with open(extra, "rb+") as fh:
                    os.fsync(fh.fileno())
            os.replace(extra, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                extra.unlink()
            raise
    os.replace(tmp, targets[-1])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _read_checkpoint(path: Path, map_location: Any = "cpu", *, mmap: bool = False) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            found = sorted(p.name for p in path.parent.glob("*.pt"))[:10]
            hint = f"; checkpoints there: {', '.join(found)}" if found else "; that folder has no .pt files"
        raise CheckpointError(f"checkpoint not found: {path}{hint}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises UnpicklingError / RuntimeError / EOFError / ...
        raise CheckpointError(
            f"cannot read checkpoint {path} ({_first_line(exc)}). The file is truncated or corrupt, "
            "or was saved with Python objects a weights_only load refuses; use another checkpoint "
            "(e.g. the _best.pt / _last.pt beside it) or re-save it with tensors and plain types only"
        ) from exc
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(payload).__name__}, not a dict; "
                              "expected a file written by CheckpointManager or a state dict")
    return dict(payload)


@dataclass(frozen=True)
class SavedCheckpoint:
    """What :meth:`CheckpointManager.save_checkpoint` wrote."""

    last: Path
    best: Path | None
    epoch_file: Path | None
    is_best: bool


class CheckpointManager:
    """Save and restore training state in ``checkpoint_dir``.

    Files per ``model_name``: ``<name>_last.pt`` (always, the resume point),
    ``<name>_best.pt`` (whenever the score beats the best so far) and, when
    ``save_best_only=False``, ``<name>_epoch<N>.pt`` every epoch, pruned to the newest
    ``keep_last`` (``None`` keeps all). Each save serialises once to a temp file, fsyncs it and
    ``os.replace``s it into place, so a kill mid-save never corrupts an existing checkpoint.

    The best score of a model is remembered in memory, read back from ``<name>_best.pt`` the first
    time it is needed (so a second manager on the same folder never overwrites a better model),
    and restored by :meth:`load_checkpoint`. Use one manager per process (rank 0 under DDP).
    """

    def __init__(self, checkpoint_dir: Path | str, save_best_only: bool = True,
                 keep_last: int | None = 3, verbose: bool = True) -> None:
        if keep_last is not None and keep_last < 1:
            raise UsageError(f"keep_last must be >= 1 or None (keep all), got {keep_last}")
        self.checkpoint_dir = Path(checkpoint_dir)
        if self.checkpoint_dir.exists() and not self.checkpoint_dir.is_dir():
            raise UsageError(f"checkpoint_dir {self.checkpoint_dir} exists and is not a folder")
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.save_best_only = save_best_only
        self.keep_last = keep_last
        self.verbose = verbose
        self._best: dict[str, float | None] = {}

    # -- paths ---------------------------------------------------------------------------------

    @staticmethod
    def _check_name(model_name: str) -> str:
        if not _NAME_RE.match(model_name or ""):
            raise UsageError(f"model_name {model_name!r} must be a plain file-name stem "
                             "(letters, digits, '.', '_', '+', '-'; no path separators)")
        return model_name

    def best_path(self, model_name: str = "model") -> Path:
        return self.checkpoint_dir / f"{self._check_name(model_name)}_best.pt"

    def last_path(self, model_name: str = "model") -> Path:
        return self.checkpoint_dir / f"{self._check_name(model_name)}_last.pt"

    def epoch_path(self, model_name: str, epoch: int) -> Path:
        return self.checkpoint_dir / f"{self._check_name(model_name)}_epoch{int(epoch)}.pt"

    def epoch_checkpoints(self, model_name: str = "model") -> list[tuple[int, Path]]:
        """``(epoch, path)`` of the per-epoch files of ``model_name``, oldest first."""
        pattern = re.compile(rf"^{re.escape(self._check_name(model_name))}_epoch(\d+)\.pt$")
        found = []
        for path in self.checkpoint_dir.iterdir():
            match = pattern.match(path.name)
            if match and path.is_file():
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest_checkpoint(self, model_name: str = "model") -> Path | None:
        """The file to resume from: ``<name>_last.pt``, else the newest ``<name>_epoch<N>.pt``,
        else ``<name>_best.pt``, else None."""
        last = self.last_path(model_name)
        if last.is_file():
            return last
        epochs = self.epoch_checkpoints(model_name)
        if epochs:
            return epochs[-1][1]
        best = self.best_path(model_name)
        return best if best.is_file() else None

    def existing_files(self, model_name: str = "model") -> list[Path]:
        """Every checkpoint file of ``model_name`` in the folder."""
        files = [p for p in (self.last_path(model_name), self.best_path(model_name)) if p.is_file()]
        return files + [p for _, p in self.epoch_checkpoints(model_name)]

    def cleanup_temp_files(self, model_name: str = "model") -> list[Path]:
        """Delete temp files that a killed save of ``model_name`` left behind (hidden
        ``.<name>_*.tmp-*.pt``). Only call it while no other process saves this model here."""
        prefix = f".{self._check_name(model_name)}_"
        removed = []
        for path in self.checkpoint_dir.iterdir():
            if path.name.startswith(prefix) and TMP_MARKER in path.name and path.suffix == ".pt":
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
        if removed:
            log.info("removed %d temp file(s) left by an interrupted save in %s", len(removed),
                     self.checkpoint_dir)
        return removed

    # -- best score ----------------------------------------------------------------------------

    def best_score(self, model_name: str = "model") -> float | None:
        """Best score saved for ``model_name`` (read from ``<name>_best.pt`` if not yet known)."""
        if model_name not in self._best:
            best = self.best_path(model_name)
            score: float | None = None
            if best.is_file():
                try:
                    payload = _read_checkpoint(best, "cpu", mmap=True)
                    raw = payload.get("score")
                    score = None if raw is None else float(raw)
                except CheckpointError as exc:
                    log.warning("%s; it will be replaced by the next best checkpoint", exc)
            self._best[model_name] = score
        return self._best[model_name]

    def reset(self, model_name: str = "model", *, delete_files: bool = False) -> list[Path]:
        """Forget the best score of ``model_name``; with ``delete_files`` also delete its
        checkpoint files (returns the deleted paths). Used to start a run over."""
        self._best[model_name] = None
        deleted = []
        if delete_files:
            for path in self.existing_files(model_name):
                path.unlink()
                deleted.append(path)
            if deleted:
                log.info("deleted %d old checkpoint file(s) of %r in %s", len(deleted), model_name,
                         self.checkpoint_dir)
        return deleted

    # -- save / load ---------------------------------------------------------------------------

    def save_checkpoint(
        self,
        model: nn.Module,
        epoch: int,
        score: float | None,
        optimizer: torch.optim.Optimizer | None = None,
        metadata: Mapping[str, Any] | None = None,
        model_name: str = "model",
        scheduler: Any = None,
        early_stopping: EarlyStopping | None = None,
        mode: str = "min",
        *,
        scaler: Any = None,
        extra: Mapping[str, Any] | None = None,
        save_rng: bool = True,
    ) -> SavedCheckpoint:
        """Write ``<name>_last.pt``, plus ``<name>_best.pt`` if ``score`` is the best so far
        (strictly better; None / NaN never are) and ``<name>_epoch<N>.pt`` unless best-only.

        ``metadata`` and ``extra`` must be plain data (str / numbers / lists / dicts / tensors;
        Paths and numpy values are converted); anything else raises CheckpointError before any
        file is touched.
        """
        _check_mode(mode)
        self._check_name(model_name)
        score_value = None if score is None else _as_float(score, "checkpoint score")
        previous_best = self.best_score(model_name)
        is_best = score_value is not None and _is_better(score_value, previous_best, mode)
        new_best = score_value if is_best else previous_best
        payload: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "model_name": model_name,
            "epoch": int(epoch),
            "score": score_value,
            "best_score": new_best,
            "mode": mode,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "torch_version": str(torch.__version__),
            "metadata": _to_safe(dict(metadata or {}), "metadata"),
            "extra": _to_safe(dict(extra or {}), "extra"),
            "model_state_dict": _unwrap(model).state_dict(),
        }
        if optimizer is not None:
            payload["optimizer_state_dict"] = optimizer.state_dict()
        if scheduler is not None:
            payload["scheduler_state_dict"] = scheduler.state_dict()
        if scaler is not None:
            payload["scaler_state_dict"] = scaler.state_dict()
        if early_stopping is not None:
            payload["early_stopping"] = early_stopping.state_dict()
        if save_rng:
            payload["rng_state"] = get_rng_state()
        for key, value in payload.items():
            _assert_loadable(value, key)

        last = self.last_path(model_name)
        targets: list[Path] = []
        epoch_file = None
        if not self.save_best_only:
            epoch_file = self.epoch_path(model_name, epoch)
            targets.append(epoch_file)
        best = self.best_path(model_name) if is_best else None
        if best is not None:
            targets.append(best)
        targets.append(last)  # last: replaced last, so it never points past the other files

        tmp = temp_sibling(last)
        try:
            with open(tmp, "wb") as fh:
                torch.save(payload, fh)
                fh.flush()
                os.fsync(fh.fileno())
            _publish(tmp, targets)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        _fsync_dir(self.checkpoint_dir)
        if is_best:
            self._best[model_name] = score_value

        level = logging.INFO if self.verbose else logging.DEBUG
        if is_best:
            log.log(level, "saved best checkpoint %s (epoch %d, score %.6g)", best, epoch, score_value)
        else:
            log.debug("saved checkpoint %s (epoch %d)", last, epoch)
        if epoch_file is not None:
            self._prune(model_name)
        return SavedCheckpoint(last=last, best=best, epoch_file=epoch_file, is_best=is_best)

    def _prune(self, model_name: str) -> None:
        if self.keep_last is None:
            return
        files = self.epoch_checkpoints(model_name)
        for _, path in files[: max(0, len(files) - self.keep_last)]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                log.debug("pruned old checkpoint %s", path)

    def load_checkpoint(
        self,
        model: nn.Module,
        checkpoint_path: Path | str,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
        early_stopping: EarlyStopping | None = None,
        map_location: Any = "cpu",
        restore_rng: bool = True,
        *,
        scaler: Any = None,
        strict: bool = True,
    ) -> dict[str, Any]:
        """Load ``checkpoint_path`` (``weights_only=True``) into ``model`` and whatever of
        optimizer / scheduler / early stopping / scaler is given; restore the RNG states.

        Returns ``{"epoch", "score", "best_score", "metadata", "extra", "model_name", "mode",
        "path"}``. A bare state dict (a file holding only tensors) is accepted too; then epoch and
        score are None. Raises CheckpointError naming the file when it is missing, unreadable or
        does not fit the model / optimizer.
        """
        path = Path(checkpoint_path)
        payload = _read_checkpoint(path, map_location)
        if "model_state_dict" in payload:
            state = payload["model_state_dict"]
        elif payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            state, payload = payload, {}
        else:
            raise CheckpointError(f"checkpoint {path} has no 'model_state_dict' (keys: "
                                  f"{sorted(map(str, payload))[:12]}); it was not written by "
                                  "CheckpointManager and is not a plain state dict")
        try:
            result = _unwrap(model).load_state_dict(state, strict=strict)
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint {path} does not match the model "
                                  f"{type(_unwrap(model)).__name__}: {exc}. Build the model with "
                                  "the same configuration it was trained with") from exc
        if not strict and (result.missing_keys or result.unexpected_keys):
            log.warning("checkpoint %s: missing keys %s, unexpected keys %s", path,
                        result.missing_keys[:8], result.unexpected_keys[:8])

        def _load_part(obj: Any, key: str, what: str) -> None:
            if obj is None:
                return
            if key not in payload:
                log.warning("checkpoint %s has no %s state; %s starts fresh", path, what, what)
                return
            try:
                obj.load_state_dict(payload[key])
            except CheckpointError:
                raise
            except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
                raise CheckpointError(f"checkpoint {path}: the saved {what} state does not fit the "
                                      f"{what} given ({_first_line(exc)}); build it the same way "
                                      "as for the saved run") from exc

        _load_part(optimizer, "optimizer_state_dict", "optimizer")
        _load_part(scheduler, "scheduler_state_dict", "scheduler")
        _load_part(scaler, "scaler_state_dict", "scaler")
        _load_part(early_stopping, "early_stopping", "early-stopping")
        if restore_rng and "rng_state" in payload:
            try:
                set_rng_state(payload["rng_state"])
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise CheckpointError(f"checkpoint {path} has a malformed RNG state "
                                      f"({_first_line(exc)}); load it with restore_rng=False") from exc

        name = payload.get("model_name")
        best_score = payload.get("best_score")
        if name and path.resolve().parent == self.checkpoint_dir.resolve():
            self._best[str(name)] = None if best_score is None else float(best_score)
        level = logging.INFO if self.verbose else logging.DEBUG
        log.log(level, "loaded checkpoint %s (epoch %s)", path, payload.get("epoch"))
        return {"epoch": payload.get("epoch"), "score": payload.get("score"),
                "best_score": best_score, "metadata": payload.get("metadata", {}),
                "extra": payload.get("extra", {}), "model_name": name,
                "mode": payload.get("mode"), "path": path}



# ---------------------------------------------------------------------------------------------
# Metrics


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None


class MetricsTracker:
    """Per-epoch metric averages and their history.

    ``update({...}, n)`` accumulates values within the current epoch (weighted by ``n``, e.g. the
    batch size); ``end_epoch()`` turns them into that epoch's averages, appends them to the
    history and starts a new epoch. Metrics may appear in only some epochs: each metric keeps its
    own list of epoch numbers (``get_epochs``) beside its values (``get_history``).
    """

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.epochs: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        self._weights: dict[str, float] = {}
        self._last_epoch = 0

    def update(self, metrics: Mapping[str, Any], n: float = 1) -> None:
        """Add one observation per metric (a number, 1-element tensor or numpy scalar)."""
        if n <= 0:
            raise MetricsError(f"update weight n must be > 0, got {n}")
        for name, value in metrics.items():
            number = _as_float(value, f"metric {name!r}")
            self._sums[name] = self._sums.get(name, 0.0) + number * n
            self._weights[name] = self._weights.get(name, 0.0) + n

    def current(self) -> dict[str, float]:
        """Averages of the epoch in progress (nothing is recorded)."""
        return {k: self._sums[k] / self._weights[k] for k in self._sums}

    def end_epoch(self, epoch: int | None = None) -> dict[str, float]:
        """Close the epoch: return its averages and append them to the history.

        ``epoch`` defaults to one more than the last epoch recorded.
        """
        epoch = self._last_epoch + 1 if epoch is None else int(epoch)
        averages = self.current()
        for name, value in averages.items():
            self.history.setdefault(name, []).append(value)
            self.epochs.setdefault(name, []).append(epoch)
        self._sums.clear()
        self._weights.clear()
        self._last_epoch = epoch
        return averages

    @property
    def last_epoch(self) -> int:
        """The last epoch closed with :meth:`end_epoch` (0 before any)."""
        return self._last_epoch

    @property
    def names(self) -> list[str]:
        return list(self.history)

    def get_history(self, name: str) -> list[float]:
        """Per-epoch values of ``name`` (empty if it was never recorded)."""
        return list(self.history.get(name, []))

    def get_epochs(self, name: str) -> list[int]:
        """Epoch numbers matching :meth:`get_history`."""
        return list(self.epochs.get(name, []))

    def get_latest(self, name: str, default: float | None = None) -> float | None:
        """The most recent epoch value of ``name``, or ``default``."""
        values = self.history.get(name)
        return values[-1] if values else default

    def best(self, name: str, mode: str = "min") -> tuple[int, float] | None:
        """``(epoch, value)`` of the best finite value of ``name``, or None."""
        _check_mode(mode)
        pairs = [(e, v) for e, v in zip(self.epochs.get(name, []), self.history.get(name, []))
                 if not math.isnan(v)]
        if not pairs:
            return None
        pick = min if mode == "min" else max
        return pick(pairs, key=lambda p: p[1])

    # -- persistence -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain state (stored in checkpoints so a resume restores the history)."""
        return {"history": {k: list(v) for k, v in self.history.items()},
                "epochs": {k: list(v) for k, v in self.epochs.items()},
                "last_epoch": self._last_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Replace the history with ``state`` (the epoch in progress is discarded)."""
        try:
            history = {str(k): [float("nan") if v is None else float(v) for v in vals]
                       for k, vals in state["history"].items()}
            epochs = {str(k): [int(e) for e in vals] for k, vals in state["epochs"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MetricsError(f"malformed metrics state: {_first_line(exc)}") from exc
        for name in history:
            if len(history[name]) != len(epochs.get(name, [])):
                raise MetricsError(f"malformed metrics state: metric {name!r} has "
                                   f"{len(history[name])} values but {len(epochs.get(name, []))} epochs")
        self.history, self.epochs = history, epochs
        last = state.get("last_epoch")
        all_epochs = [e for vals in epochs.values() for e in vals]
        self._last_epoch = int(last) if last is not None else max(all_epochs, default=0)
        self._sums.clear()
        self._weights.clear()

    def save_to_json(self, path: Path | str) -> Path:
        """Write the history atomically as strict JSON (NaN / inf are stored as null)."""
        path = Path(path)
        doc = {"format": METRICS_FORMAT, "version": METRICS_VERSION,
               "last_epoch": self._last_epoch,
               "history": {k: [_json_number(v) for v in vals] for k, vals in self.history.items()},
               "epochs": self.epochs}
        atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")
        return path

    @classmethod
    def load_from_json(cls, path: Path | str) -> MetricsTracker:
        """A tracker holding the history saved by :meth:`save_to_json` (null → NaN)."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise MetricsError(f"metrics file not found: {path}") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MetricsError(f"cannot read metrics file {path} ({_first_line(exc)}); it is not "
                               "JSON written by MetricsTracker.save_to_json") from exc
        if not isinstance(doc, dict) or "history" not in doc:
            raise MetricsError(f"metrics file {path} has no 'history'; it was not written by "
                               "MetricsTracker.save_to_json")
        if "epochs" not in doc:  # a bare {"history": {name: [values]}}: epochs 1..n
            doc["epochs"] = {k: list(range(1, len(v) + 1)) for k, v in doc["history"].items()}
        tracker = cls()
        try:
            tracker.load_state_dict(doc)
        except MetricsError as exc:
            raise MetricsError(f"metrics file {path}: {exc}") from exc
        return tracker

    def plot_metrics(self, names: Sequence[str] | str | None = None, save_path: Path | str = "metrics.png",
                     *, title: str | None = None, logy: bool = False, dpi: int = 100) -> Path:
        """One PNG with a curve per metric against the epoch (atomic write; no pyplot state)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        if isinstance(names, str):
            names = [names]
        names = list(self.history) if names is None else list(names)
        unknown = [n for n in names if not self.history.get(n)]
        if unknown or not names:
            raise MetricsError(f"no recorded values for {unknown or 'any metric'}; recorded metrics: "
                               f"{sorted(self.history) or 'none (call end_epoch first)'}")
        fig = Figure(figsize=(7, 4.5), dpi=dpi)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        for name in names:
            ax.plot(self.epochs[name], self.history[name], marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("value")
        if logy:
            ax.set_yscale("log")
        if title:
            ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        save_path = Path(save_path)
        with atomic_path(save_path) as tmp:
            fig.savefig(tmp, format="png")
        return save_path


# ---------------------------------------------------------------------------------------------
# Batches and epochs


def move_to_device(obj: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move every tensor in ``obj`` (nested dicts / lists / tuples / namedtuples) to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, Mapping):
        return {k: move_to_device(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(move_to_device(v, device, non_blocking) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to_device(v, device, non_blocking) for v in obj)
    return obj


def unpack_batch(batch: Any, device: torch.device) -> tuple[Any, Any]:
    """``(inputs, targets)`` on ``device`` following the batch layout rule (module docstring)."""
    non_blocking = device.type == "cuda"
    if isinstance(batch, Mapping):
        if "features" not in batch:
            raise BatchError(f"dict batch has no 'features' key (keys: {sorted(map(str, batch))}); "
                             "name the model input 'features' and the target 'target', or pass "
                             "batch_fn=(batch, device) -> (inputs, targets)")
        inputs = batch["features"]
        targets = batch["target"] if "target" in batch else inputs
    elif isinstance(batch, torch.Tensor):
        inputs = targets = batch
    elif isinstance(batch, (list, tuple)) and len(batch) == 2:
        inputs, targets = batch
    elif isinstance(batch, (list, tuple)) and len(batch) == 1:
        inputs = targets = batch[0]
    else:
        what = f"a {type(batch).__name__} of length {len(batch)}" if isinstance(batch, (list, tuple)) \
            else f"a {type(batch).__name__}"
        raise BatchError(f"cannot split a batch that is {what} into (inputs, targets); yield "
                         "(inputs, targets), a tensor, or a dict with 'features' / 'target', or "
                         "pass batch_fn=(batch, device) -> (inputs, targets)")
    return move_to_device(inputs, device, non_blocking), move_to_device(targets, device, non_blocking)


def _batch_size(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return int(obj.shape[0]) if obj.ndim > 0 else 1
    if isinstance(obj, Mapping):
        for value in obj.values():
            return _batch_size(value)
    if isinstance(obj, (list, tuple)) and obj:
        return _batch_size(obj[0]) if isinstance(obj[0], (torch.Tensor, Mapping, list, tuple)) else len(obj)
    return 1


def _call_model(model: nn.Module, inputs: Any) -> Any:
    return model(**inputs) if isinstance(inputs, Mapping) else model(inputs)


def _split_loss(result: Any) -> tuple[torch.Tensor, dict[str, Any]]:
    """The scalar loss and any extra logged terms from what the criterion returned."""
    extras: dict[str, Any] = {}
    if isinstance(result, Mapping):
        if "loss" not in result:
            raise BatchError(f"criterion returned a dict without 'loss' (keys: {sorted(result)}); "
                             "put the value to minimise under 'loss'")
        extras = {k: v for k, v in result.items() if k != "loss"}
        result = result["loss"]
    if not isinstance(result, torch.Tensor) or result.numel() != 1:
        shape = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
        raise BatchError(f"criterion must return a scalar tensor, got {shape}; use a reduction "
                         "such as reduction='mean'")
    return result.reshape(()), extras


def _resolve_amp(amp: bool | str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None when AMP is off. None = auto (float16 on CUDA, else off)."""
    if amp is None:
        return torch.float16 if device.type == "cuda" else None
    if amp is False:
        return None
    dtypes = {True: torch.float16, "fp16": torch.float16, "float16": torch.float16,
              "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if amp not in dtypes:
        raise UsageError(f"amp must be None (auto), True/False, 'fp16' or 'bf16', got {amp!r}")
    if device.type != "cuda":
        log.warning("mixed precision is only used on CUDA; running in float32 on %s", device)
        return None
    return dtypes[amp]


def _check_loader(loader: Any, what: str) -> None:
    try:
        n_batches = len(loader)
    except TypeError:  # an iterable without a length: checked after the loop instead
        return
    if n_batches == 0:
        detail = ""
        with contextlib.suppress(TypeError, AttributeError):
            detail = (f" (dataset of {len(loader.dataset)} item(s), batch_size={loader.batch_size}, "
                      f"drop_last={loader.drop_last})")
        raise BatchError(f"the {what} loader is empty{detail}; give it data, lower batch_size "
                         "or set drop_last=False")


def _progress_total(loader: Any, max_batches: int | None) -> int | None:
    try:
        n = len(loader)
    except TypeError:
        return max_batches
    return n if max_batches is None else min(n, max_batches)


def _metric_values(metrics: Mapping[str, Callable[[Any, Any], float]] | None, outputs: Any,
                   targets: Any) -> dict[str, float]:
    out = {}
    for name, fn in (metrics or {}).items():
        out[name] = _as_float(fn(outputs, targets), f"metric {name!r}")
    return out


def train_epoch(
    model: nn.Module,
    loader: Any,
    criterion: Callable[[Any, Any], Any],
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
    *,
    grad_clip: float | None = 1.0,
    scaler: Any = None,
    amp: bool | str | None = None,
    metrics: Mapping[str, Callable[[Any, Any], float]] | None = None,
    desc: str = "train",
    progress: bool = True,
    scheduler: Any = None,
    batch_fn: Callable[[Any, torch.device], tuple[Any, Any]] | None = None,
    max_batches: int | None = None,
) -> dict[str, float]:
    """One training pass. Returns ``{"train_loss": mean, "train_<metric>": mean, ...}``.

    Means are weighted by batch size. ``criterion(outputs, targets)`` returns a scalar tensor or a
    dict with ``"loss"`` (its other entries are averaged as ``train_<key>``). ``grad_clip``
    (max total L2 norm; None/0 = off) also adds ``train_grad_norm``, the mean pre-clip norm.
    ``amp`` None = float16 autocast + GradScaler on CUDA, off elsewhere; pass one ``scaler``
    (``torch.amp.GradScaler``) across epochs to keep its scale. ``scheduler`` given here is
    stepped after every batch (OneCycleLR and friends). A NaN/inf loss raises TrainingError.
    """
    device = torch.device(device)
    _check_loader(loader, "training")
    amp_dtype = _resolve_amp(amp, device)
    if amp_dtype == torch.float16 and scaler is None:
        log.debug("creating a GradScaler for this epoch; pass scaler= to keep it across epochs")
        scaler = torch.amp.GradScaler(device.type)
    use_scaler = scaler is not None and scaler.is_enabled()
    unpack = batch_fn or unpack_batch
    model.train()
    tracker = MetricsTracker()
    grad_norms: list[float] = []
    n_batches = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, dynamic_ncols=True,
               total=_progress_total(loader, max_batches))
    try:
        for batch in bar:
            if max_batches is not None and n_batches >= max_batches:
                break
            inputs, targets = unpack(batch, device)
            bs = _batch_size(targets if targets is not None else inputs)
            optimizer.zero_grad(set_to_none=True)
            with (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
                  else contextlib.nullcontext()):
                outputs = _call_model(model, inputs)
                loss, extras = _split_loss(criterion(outputs, targets))
            loss_value = float(loss.detach().float().item())
            if not math.isfinite(loss_value):
                raise TrainingError(
                    f"training loss is {loss_value} at batch {n_batches} ({desc}); the model has "
                    "diverged or the batch holds NaN/inf. Lower the learning rate, keep grad_clip "
                    "on, check the inputs, or try amp=False / amp='bf16'")
            if use_scaler:
                scaler.scale(loss).backward()
                if grad_clip:
                    scaler.unscale_(optimizer)
            else:
                loss.backward()
            if grad_clip:
                norm = float(nn.utils.clip_grad_norm_(model.parameters(), grad_clip))
                if math.isfinite(norm):
                    grad_norms.append(norm)
            if use_scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            with torch.no_grad():
                values = {"loss": loss_value, **{k: _as_float(v, f"loss term {k!r}")
                                                 for k, v in extras.items()},
                          **_metric_values(metrics, outputs, targets)}
            tracker.update(values, n=bs)
            n_batches += 1
            bar.set_postfix(loss=f"{loss_value:.4g}", refresh=False)
    finally:
        bar.close()
    if n_batches == 0:
        raise BatchError(f"the training loader yielded no batches ({desc}); check the dataset "
                         "and batch_size / drop_last")
    result = {f"train_{k}": v for k, v in tracker.current().items()}
    if grad_norms:
        result["train_grad_norm"] = sum(grad_norms) / len(grad_norms)
    return result


def validate_epoch(
    model: nn.Module,
    loader: Any,
    criterion: Callable[[Any, Any], Any],
    device: torch.device | str,
    *,
    metrics: Mapping[str, Callable[[Any, Any], float]] | None = None,
    amp: bool | str | None = None,
    desc: str = "val",
    progress: bool = True,
    batch_fn: Callable[[Any, torch.device], tuple[Any, Any]] | None = None,
    max_batches: int | None = None,
) -> dict[str, float]:
    """One evaluation pass without gradients. Returns ``{"val_loss": mean, "val_<metric>": ...}``
    (batch-size weighted). The model's train/eval mode is restored afterwards."""
    device = torch.device(device)
    _check_loader(loader, "validation")
    amp_dtype = _resolve_amp(amp, device)
    unpack = batch_fn or unpack_batch
    was_training = model.training
    model.eval()
    tracker = MetricsTracker()
    n_batches = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress, dynamic_ncols=True,
               total=_progress_total(loader, max_batches))
    try:
        with torch.no_grad():
            for batch in bar:
                if max_batches is not None and n_batches >= max_batches:
                    break
                inputs, targets = unpack(batch, device)
                bs = _batch_size(targets if targets is not None else inputs)
                with (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
                      else contextlib.nullcontext()):
                    outputs = _call_model(model, inputs)
                    loss, extras = _split_loss(criterion(outputs, targets))
                values = {"loss": float(loss.float().item()),
                          **{k: _as_float(v, f"loss term {k!r}") for k, v in extras.items()},
                          **_metric_values(metrics, outputs, targets)}
                tracker.update(values, n=bs)
                n_batches += 1
                bar.set_postfix(loss=f"{values['loss']:.4g}", refresh=False)
    finally:
        bar.close()
        model.train(was_training)
    if n_batches == 0:
        raise BatchError(f"the validation loader yielded no batches ({desc}); check the dataset "
                         "and batch_size / drop_last")
    result = {f"val_{k}": v for k, v in tracker.current().items()}
    if not math.isfinite(result["val_loss"]):
        log.warning("validation loss is %s (%s)", result["val_loss"], desc)
    return result


# ---------------------------------------------------------------------------------------------
# Data split, device, seeds


def split_dataset(dataset: Dataset, val_split: float | int = 0.2, shuffle: bool = True,
                  seed: int = 42) -> tuple[Subset, Subset]:
    """Split into ``(train, val)`` subsets; the same ``seed`` always gives the same split.

    ``val_split`` is a fraction in (0, 1) (rounded, then clamped so both parts are non-empty) or
    an item count. Without ``shuffle`` the last items are the validation set. The global RNGs are
    not touched.
    """
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError as exc:
        raise UsageError(f"cannot split a {type(dataset).__name__} without a length (an iterable "
                         "dataset); split its source instead") from exc
    if n < 2:
        raise UsageError(f"cannot split a dataset of {n} item(s) into non-empty train and "
                         "validation sets; it needs at least 2 items")
    if isinstance(val_split, bool) or not isinstance(val_split, (int, float)):
        raise UsageError(f"val_split must be a fraction in (0, 1) or an item count, got {val_split!r}")
    if isinstance(val_split, float) or (0 < val_split < 1):
        if not 0.0 < val_split < 1.0:
            raise UsageError(f"val_split fraction must be in (0, 1), got {val_split}")
        n_val = min(max(int(round(n * val_split)), 1), n - 1)
    else:
        if not 1 <= val_split <= n - 1:
            raise UsageError(f"val_split count must be between 1 and {n - 1} for {n} items, "
                             f"got {val_split}")
        n_val = int(val_split)
    if shuffle:
        generator = torch.Generator().manual_seed(int(seed))
        order = torch.randperm(n, generator=generator).tolist()
    else:
        order = list(range(n))
    val_idx = sorted(order[n - n_val:])
    train_idx = sorted(order[: n - n_val])
    return Subset(dataset, train_idx), Subset(dataset, val_idx)


def get_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` (CUDA > MPS > CPU), ``"cuda"`` / ``"cuda:N"``, ``"mps"`` or ``"cpu"``.

    Asking for an accelerator that is not there raises DeviceError rather than silently falling
    back to the CPU (a GPU job quietly running for days on a CPU is worse than an error).
    """
    from workflow.codecs import resolve_device

    return resolve_device(device, auto_mps=True)


def seed_everything(seed: int, deterministic: bool = False) -> int:
    """Seed python ``random``, numpy and torch (all CUDA devices); returns ``seed``.

    ``deterministic=True`` also asks torch for deterministic kernels (warn-only) and turns off
    the cuDNN autotuner: reproducible, somewhat slower.
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)  # inherited by worker subprocesses
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return seed


def seed_worker(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=seed_worker)``: seeds numpy and ``random`` in each worker from
    torch's per-worker seed (which torch derives from the epoch's base seed)."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


# ---------------------------------------------------------------------------------------------
# Experiment logging


_BACKENDS = ("none", "wandb", "tensorboard", "auto")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _wandb_api_key_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = re.sub(r"^https?://", "", os.environ.get("WANDB_BASE_URL", "api.wandb.ai")).split("/")[0]
    with contextlib.suppress(OSError, netrc.NetrcParseError, TypeError):
        return netrc.netrc().authenticators(host) is not None
    return False


def _plain_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    if not config:
        return {}
    if is_dataclass(config) and not isinstance(config, type):
        config = asdict(config)
    return json.loads(json.dumps(dict(config), default=str))


class ExperimentLogger:
    """One front for experiment trackers: ``"wandb"``, ``"tensorboard"``, ``"none"`` or ``"auto"``.

    * ``"wandb"`` runs online when an API key is configured (``WANDB_API_KEY`` or a netrc login),
      otherwise offline (sync later with ``wandb sync``); ``WANDB_MODE`` always wins. Its files go
      under ``log_dir/wandb``. If an online start fails it retries offline.
    * ``"tensorboard"`` writes event files to ``log_dir/<run_name>``.
    * ``"auto"``: wandb if installed and configured (``WANDB_API_KEY``, or ``WANDB_MODE`` set to
      anything but ``disabled``), else tensorboard if installed, else none.

    A missing package or a tracker that fails to start (or later fails to log) falls back to
    ``"none"`` with a logged warning: a tracker never crashes a training run. An unknown backend
    name is a configuration mistake and raises UsageError at once. ``.backend`` is the backend
    actually in use. Metrics are also kept by :class:`MetricsTracker` JSON regardless.
    """

    def __init__(self, backend: str = "none", log_dir: Path | str = "runs",
                 project: str = "enc-hf-workflow", run_name: str | None = None,
                 config: Mapping[str, Any] | None = None) -> None:
        requested = str(backend).strip().lower()
        if requested not in _BACKENDS:
            raise UsageError(f"unknown logging backend {backend!r}; use one of {', '.join(_BACKENDS)}")
        self.requested_backend = requested
        self.log_dir = Path(log_dir)
        self.project = project
        self.run_name = run_name or time.strftime("run-%Y%m%d-%H%M%S")
        self.config = _plain_config(config)
        self.run: Any = None
        self.writer: Any = None
        self.run_dir: Path | None = None
        self._finished = False
        if requested == "auto":
            requested = self._pick_auto()
        self.backend = "none"
        if requested == "wandb":
            self._start_wandb()
        elif requested == "tensorboard":
            self._start_tensorboard()
        log.info("experiment logging: %s", self.backend if self.run_dir is None
                 else f"{self.backend} ({self.run_dir})")

    @staticmethod
    def _pick_auto() -> str:
        mode = os.environ.get("WANDB_MODE", "").strip().lower()
        if _installed("wandb") and (os.environ.get("WANDB_API_KEY") or (mode and mode != "disabled")):
            return "wandb"
        if _installed("tensorboard"):
            return "tensorboard"
        return "none"

    def _fallback(self, what: str, exc: BaseException | None = None) -> None:
        reason = f": {_first_line(exc)}" if exc is not None else ""
        log.warning("%s%s; experiment logging falls back to 'none' (metrics are still saved by "
                    "MetricsTracker)", what, reason)
        self.backend = "none"
        self.run = None
        self.writer = None
        self.run_dir = None

    def _start_wandb(self) -> None:
        try:
            import wandb
        except Exception as exc:  # ImportError, or a broken install raising anything
            self._fallback("wandb is not installed or cannot be imported (pip install wandb)", exc)
            return
        env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
        mode = env_mode or ("online" if _wandb_api_key_present() else "offline")
        if not env_mode and mode == "offline":
            log.info("wandb: no API key configured; logging offline under %s (upload later with "
                     "`wandb sync`)", self.log_dir / "wandb")
        attempts = [mode] + (["offline"] if mode == "online" else [])
        for attempt in attempts:
            try:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                self.run = self._wandb_init(wandb, attempt)
                self.backend = "wandb"
                run_dir = getattr(self.run, "dir", None)
                self.run_dir = Path(run_dir).parent if run_dir else self.log_dir / "wandb"
                return
            except Exception as exc:
                if attempt != attempts[-1]:
                    log.warning("wandb could not start online (%s); retrying offline",
                                _first_line(exc))
                    continue
                self._fallback(f"wandb could not start (mode={attempt})", exc)

    def _wandb_init(self, wandb: Any, mode: str) -> Any:
        kwargs = dict(project=self.project, name=self.run_name, dir=str(self.log_dir),
                      config=self.config, mode=mode)
        try:  # wandb >= 0.19.10: several loggers in one process each get their own run
            return wandb.init(reinit="finish_previous", **kwargs)
        except Exception as exc:
            if "reinit" not in str(exc):
                raise
            return wandb.init(reinit=True, **kwargs)  # older wandb

    def _start_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception as exc:
            self._fallback("tensorboard is not installed or cannot be imported "
                           "(pip install tensorboard)", exc)
            return
        try:
            run_dir = self.log_dir / self.run_name
            self.writer = SummaryWriter(log_dir=str(run_dir), flush_secs=30)
            if self.config:
                self.writer.add_text("config", "```\n" + json.dumps(self.config, indent=2) + "\n```", 0)
            self.backend = "tensorboard"
            self.run_dir = run_dir
        except Exception as exc:
            self._fallback(f"tensorboard could not write to {self.log_dir / self.run_name}", exc)

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log numeric ``metrics`` at ``step`` (e.g. the epoch); non-numbers are skipped."""
        if self.backend == "none" or self._finished:
            return
        values: dict[str, float] = {}
        for name, value in metrics.items():
            try:
                values[name] = _as_float(value, name)
            except MetricsError:
                log.debug("not logging non-numeric %r", name)
        try:
            if self.backend == "wandb":
                self.run.log(values, step=int(step))
            else:
                for name, value in values.items():
                    self.writer.add_scalar(name, value, int(step))
        except Exception as exc:
            backend = self.backend
            with contextlib.suppress(Exception):
                self._close(exit_code=1)
            self._fallback(f"{backend} failed to log at step {step}", exc)

    def _close(self, exit_code: int = 0) -> None:
        if self.backend == "wandb" and self.run is not None:
            self.run.finish(exit_code=exit_code)
        elif self.backend == "tensorboard" and self.writer is not None:
            self.writer.flush()
            self.writer.close()

    def finish(self, exit_code: int = 0) -> None:
        """Flush and close the tracker (safe to call twice)."""
        if self._finished:
            return
        self._finished = True
        try:
            self._close(exit_code)
        except Exception as exc:
            log.warning("closing %s failed: %s", self.backend, _first_line(exc))

    def __enter__(self) -> ExperimentLogger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)


# ---------------------------------------------------------------------------------------------
# fit


class FitHistory(dict):
    """What :func:`fit` returns: a ``dict`` metric name → per-epoch values (the whole history,
    resumed epochs included), with the run's outcome as attributes."""

    epochs: list[int]
    best_epoch: int | None
    best_score: float | None
    monitor: str
    stopped_early: bool
    start_epoch: int
    last_epoch: int
    best_checkpoint: Path | None
    last_checkpoint: Path | None


def fit(
    model: nn.Module,
    train_loader: Any,
    val_loader: Any | None,
    criterion: Callable[[Any, Any], Any],
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    device: torch.device | str = "auto",
    checkpoint_manager: CheckpointManager | None = None,
    early_stopping: EarlyStopping | None = None,
    metrics_tracker: MetricsTracker | None = None,
    logger: ExperimentLogger | None = None,
    scheduler: Any = None,
    resume: bool = False,
    model_name: str = "model",
    metrics: Mapping[str, Callable[[Any, Any], float]] | None = None,
    grad_clip: float | None = 1.0,
    amp: bool | str | None = None,
    scaler: Any = None,
    scheduler_interval: str = "epoch",
    monitor: str = "val_loss",
    mode: str = "min",
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    restore_best: bool = False,
    batch_fn: Callable[[Any, torch.device], tuple[Any, Any]] | None = None,
    metrics_path: Path | str | None = None,
    plot: bool = True,
) -> FitHistory:
    """Train for ``epochs`` epochs (numbered from 1), validating, checkpointing and logging.

    Per epoch: :func:`train_epoch`, :func:`validate_epoch` (when ``val_loader`` is given), the
    learning rate as ``lr``, ``metrics_tracker.end_epoch``, the scheduler step (per epoch;
    ReduceLROnPlateau gets the monitored score; ``scheduler_interval="batch"`` steps it per
    batch instead), early stopping, ``checkpoint_manager.save_checkpoint`` (the history and the
    RNG states go into ``<name>_last.pt``), ``<name>_metrics.json`` and ``logger.log``.

    ``monitor`` (default ``val_loss``; ``train_loss`` without a validation loader) in ``mode``
    picks the best checkpoint. ``resume=True`` loads ``<name>_last.pt`` when it exists and goes on
    at its epoch + 1 with the same model, optimizer, scheduler, scaler, early-stopping, history
    and RNG state, so the result equals an uninterrupted run; with ``epochs`` larger than before
    it extends a finished run. ``resume=False`` refuses a folder that already holds checkpoints of
    ``model_name`` unless ``overwrite=True`` (which deletes them). ``restore_best`` loads the best
    weights into ``model`` at the end. The caller owns ``logger`` (fit does not finish it).
    """
    _check_mode(mode)
    if epochs < 1:
        raise UsageError(f"epochs must be >= 1, got {epochs}")
    if scheduler_interval not in ("epoch", "batch"):
        raise UsageError(f"scheduler_interval must be 'epoch' or 'batch', got {scheduler_interval!r}")
    if resume and checkpoint_manager is None:
        raise UsageError("resume=True needs a checkpoint_manager to find the checkpoint to resume")
    device = get_device(device) if isinstance(device, str) else device
    tracker = metrics_tracker if metrics_tracker is not None else MetricsTracker()
    if val_loader is None and monitor.startswith("val_"):
        log.warning("no validation loader: monitoring %r instead of %r", "train_" + monitor[4:], monitor)
        monitor = "train_" + monitor[4:]
    if early_stopping is not None and early_stopping.mode != mode:
        raise UsageError(f"early_stopping.mode={early_stopping.mode!r} differs from fit's "
                         f"mode={mode!r} for {monitor!r}; use the same mode")
    if scaler is None and _resolve_amp(amp, device) == torch.float16:
        scaler = torch.amp.GradScaler(device.type)
    if metrics_path is None and checkpoint_manager is not None:
        metrics_path = checkpoint_manager.checkpoint_dir / f"{model_name}_metrics.json"
    model.to(device)

    start_epoch = 1
    if checkpoint_manager is not None:
        checkpoint_manager.cleanup_temp_files(model_name)
        existing = checkpoint_manager.existing_files(model_name)
        resume_from = checkpoint_manager.latest_checkpoint(model_name) if resume else None
        if resume_from is not None:
            info = checkpoint_manager.load_checkpoint(
                model, resume_from, optimizer, scheduler, early_stopping, map_location=device,
                restore_rng=True, scaler=scaler)
            history_state = (info.get("extra") or {}).get("metrics_history")
            if history_state is not None:
                tracker.load_state_dict(history_state)
            start_epoch = int(info["epoch"] or 0) + 1
            log.info("resuming %r from %s at epoch %d", model_name, resume_from, start_epoch)
        elif resume:
            log.info("resume requested but %s holds no checkpoint of %r; starting at epoch 1",
                     checkpoint_manager.checkpoint_dir, model_name)
        elif existing:
            if not overwrite:
                raise CheckpointError(
                    f"{checkpoint_manager.checkpoint_dir} already holds checkpoints of {model_name!r} "
                    f"({', '.join(p.name for p in existing[:4])}); pass resume=True to continue that "
                    "run, overwrite=True to delete them and start over, or use another folder")
            checkpoint_manager.reset(model_name, delete_files=True)
        else:
            checkpoint_manager.reset(model_name)

    result = FitHistory()
    result.start_epoch = start_epoch
    result.stopped_early = bool(early_stopping is not None and early_stopping.early_stop)
    last_saved: SavedCheckpoint | None = None
    epoch = start_epoch - 1
    if result.stopped_early:
        log.info("%r had already stopped early at epoch %d; nothing to do", model_name, epoch)
    elif start_epoch > epochs:
        log.info("%r already trained for %d epoch(s) (epochs=%d); nothing to do", model_name,
                 start_epoch - 1, epochs)
    else:
        plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        if plateau and scheduler_interval == "batch":
            raise UsageError("ReduceLROnPlateau needs scheduler_interval='epoch'")
        try:
            for epoch in range(start_epoch, epochs + 1):
                t0 = time.perf_counter()
                lr = float(optimizer.param_groups[0]["lr"])
                train_stats = train_epoch(
                    model, train_loader, criterion, optimizer, device, grad_clip=grad_clip,
                    scaler=scaler, amp=amp, metrics=metrics, desc=f"epoch {epoch}/{epochs} train",
                    progress=progress, batch_fn=batch_fn,
                    scheduler=scheduler if scheduler_interval == "batch" else None)
                val_stats = {} if val_loader is None else validate_epoch(
                    model, val_loader, criterion, device, metrics=metrics, amp=amp,
                    desc=f"epoch {epoch}/{epochs} val", progress=progress, batch_fn=batch_fn)
                tracker.update({**train_stats, **val_stats, "lr": lr})
                stats = tracker.end_epoch(epoch)
                if monitor not in stats:
                    raise UsageError(f"monitor {monitor!r} is not among this epoch's metrics "
                                     f"{sorted(stats)}; pass one of them as monitor=")
                score = stats[monitor]
                if scheduler is not None and scheduler_interval == "epoch":
                    scheduler.step(score) if plateau else scheduler.step()
                stop = early_stopping(score, epoch) if early_stopping is not None else False
                if checkpoint_manager is not None:
                    last_saved = checkpoint_manager.save_checkpoint(
                        model, epoch, score, optimizer, metadata=metadata, model_name=model_name,
                        scheduler=scheduler, early_stopping=early_stopping, mode=mode,
                        scaler=scaler, extra={"metrics_history": tracker.state_dict()})
                if metrics_path is not None:
                    tracker.save_to_json(metrics_path)
                if logger is not None:
                    logger.log(stats, step=epoch)
                best_mark = " (best)" if last_saved is not None and last_saved.is_best else ""
                log.info("%s epoch %d/%d: %s [%.1fs]%s", model_name, epoch, epochs,
                         " ".join(f"{k}={v:.4g}" for k, v in stats.items()),
                         time.perf_counter() - t0, best_mark)
                if stop:
                    result.stopped_early = True
                    log.info("%s: early stopping at epoch %d (best %s=%.6g at epoch %s)", model_name,
                             epoch, monitor, early_stopping.best_score, early_stopping.best_epoch)
                    break
        except KeyboardInterrupt:
            log.warning("%s interrupted during epoch %d; the last finished epoch is saved — "
                        "continue with resume=True", model_name, epoch)
            raise

    if plot and metrics_path is not None and tracker.history:
        try:
            losses = [n for n in tracker.names if n.endswith("_loss")]
            tracker.plot_metrics(losses or None, Path(metrics_path).with_suffix(".png"),
                                 title=model_name)
        except Exception as exc:  # a plot must never fail a finished training run
            log.warning("could not plot metrics: %s", _first_line(exc))

    best = tracker.best(monitor, mode)
    result.update({k: tracker.get_history(k) for k in tracker.names})
    result.epochs = sorted({e for vals in tracker.epochs.values() for e in vals})
    result.monitor = monitor
    result.best_epoch, result.best_score = best if best is not None else (None, None)
    result.last_epoch = tracker.last_epoch
    result.best_checkpoint = result.last_checkpoint = None
    if checkpoint_manager is not None:
        bp, lp = checkpoint_manager.best_path(model_name), checkpoint_manager.last_path(model_name)
        result.best_checkpoint = bp if bp.is_file() else None
        result.last_checkpoint = lp if lp.is_file() else None
    if restore_best:
        if result.best_checkpoint is None:
            log.warning("restore_best: no best checkpoint of %r to restore", model_name)
        else:
            checkpoint_manager.load_checkpoint(model, result.best_checkpoint,  # type: ignore[union-attr]
                                               map_location=device, restore_rng=False)
    return result
