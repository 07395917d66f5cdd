"""Training and validation passes and :func:`fit` (see :mod:`training.core` for the batch layout)."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from workflow.errors import UsageError

from ._common import _as_float, _check_mode, _first_line
from .checkpoint import CheckpointManager, SavedCheckpoint
from .dist import autocast, autocast_dtype
from .errors import BatchError, CheckpointError, TrainingError
from .logger import ExperimentLogger
from .metrics import MetricsTracker
from .seed import get_device
from .stopping import EarlyStopping

log = logging.getLogger(__name__)


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


_AMP_VALUES = (True, False, "fp16", "float16", "bf16", "bfloat16")


def _resolve_amp(amp: bool | str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None when AMP is off. None = auto (float16 on CUDA, else off).

    The dtype comes from :func:`workflow.dist.autocast_dtype`. This loop's auto differs from
    that policy's (bf16 where the GPU has it): ``amp=None`` stays float16 + GradScaler on CUDA,
    so it is passed on as an explicit ``"fp16"``.
    """
    if amp is None:
        amp = "fp16" if device.type == "cuda" else False
    if amp not in _AMP_VALUES:
        raise UsageError(f"amp must be None (auto), True/False, 'fp16' or 'bf16', got {amp!r}")
    if amp is not False and device.type != "cuda":
        log.warning("mixed precision is only used on CUDA; running in float32 on %s", device)
        return None
    return autocast_dtype(device, amp)


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
            with autocast(device, amp_dtype):
                outputs = _call_model(model, inputs)
                loss, extras = _split_loss(criterion(outputs, targets))
            loss_value = float(loss.detach().float().item())
            if not math.isfinite(loss_value):
                raise TrainingError(
                    f"training loss is {loss_value} at batch {n_batches} ({desc}); the model has "
                    "diverged or the batch holds NaN/inf. Lower the learning rate, keep grad_clip "
                    "on, check the inputs, or try amp=False / amp='bf16'")
            norm = _backward_and_step(loss, model, optimizer, scaler if use_scaler else None, grad_clip)
            if norm is not None and math.isfinite(norm):
                grad_norms.append(norm)
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


def _backward_and_step(loss: torch.Tensor, model: nn.Module, optimizer: torch.optim.Optimizer,
                       scaler: Any, grad_clip: float | None) -> float | None:
    """Backward (scaled when ``scaler`` is given), clip, optimizer step; the pre-clip norm."""
    if scaler is not None:
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
    else:
        loss.backward()
    norm = float(nn.utils.clip_grad_norm_(model.parameters(), grad_clip)) if grad_clip else None
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return norm


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
                with autocast(device, amp_dtype):
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
    monitor = _check_fit_args(epochs, scheduler_interval, resume, checkpoint_manager, val_loader,
                              monitor, mode, early_stopping, scheduler)
    device = get_device(device) if isinstance(device, str) else device
    if scaler is None and _resolve_amp(amp, device) == torch.float16:
        scaler = torch.amp.GradScaler(device.type)
    if metrics_path is None and checkpoint_manager is not None:
        metrics_path = checkpoint_manager.checkpoint_dir / f"{model_name}_metrics.json"
    model.to(device)
    run = _FitRun(model=model, train_loader=train_loader, val_loader=val_loader, criterion=criterion,
                  optimizer=optimizer, epochs=epochs, device=device, manager=checkpoint_manager,
                  early_stopping=early_stopping,
                  tracker=metrics_tracker if metrics_tracker is not None else MetricsTracker(),
                  logger=logger, scheduler=scheduler, scheduler_interval=scheduler_interval,
                  model_name=model_name, metrics=metrics, grad_clip=grad_clip, amp=amp, scaler=scaler,
                  monitor=monitor, mode=mode, metadata=metadata, progress=progress,
                  batch_fn=batch_fn, metrics_path=metrics_path)
    start_epoch = _start_or_resume(run, resume, overwrite)
    result = FitHistory()
    result.start_epoch = start_epoch
    result.stopped_early = bool(early_stopping is not None and early_stopping.early_stop)
    if result.stopped_early:
        log.info("%r had already stopped early at epoch %d; nothing to do", model_name, start_epoch - 1)
    elif start_epoch > epochs:
        log.info("%r already trained for %d epoch(s) (epochs=%d); nothing to do", model_name,
                 start_epoch - 1, epochs)
    else:
        result.stopped_early = _run_epochs(run, start_epoch)
    _plot(run, plot)
    _fill_result(result, run, restore_best)
    return result


@dataclass
class _FitRun:
    """Everything :func:`fit`'s epochs share (its arguments, resolved)."""

    model: nn.Module
    train_loader: Any
    val_loader: Any | None
    criterion: Callable[[Any, Any], Any]
    optimizer: torch.optim.Optimizer
    epochs: int
    device: torch.device
    manager: CheckpointManager | None
    early_stopping: EarlyStopping | None
    tracker: MetricsTracker
    logger: ExperimentLogger | None
    scheduler: Any
    scheduler_interval: str
    model_name: str
    metrics: Mapping[str, Callable[[Any, Any], float]] | None
    grad_clip: float | None
    amp: bool | str | None
    scaler: Any
    monitor: str
    mode: str
    metadata: Mapping[str, Any] | None
    progress: bool
    batch_fn: Callable[[Any, torch.device], tuple[Any, Any]] | None
    metrics_path: Path | str | None

    @property
    def plateau(self) -> bool:
        return isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _check_fit_args(epochs: int, scheduler_interval: str, resume: bool, manager: Any,
                    val_loader: Any, monitor: str, mode: str, early_stopping: Any,
                    scheduler: Any) -> str:
    """Refuse contradictory arguments; returns the monitored metric (``train_*`` without a
    validation loader)."""
    _check_mode(mode)
    if epochs < 1:
        raise UsageError(f"epochs must be >= 1, got {epochs}")
    if scheduler_interval not in ("epoch", "batch"):
        raise UsageError(f"scheduler_interval must be 'epoch' or 'batch', got {scheduler_interval!r}")
    if resume and manager is None:
        raise UsageError("resume=True needs a checkpoint_manager to find the checkpoint to resume")
    if val_loader is None and monitor.startswith("val_"):
        log.warning("no validation loader: monitoring %r instead of %r", "train_" + monitor[4:], monitor)
        monitor = "train_" + monitor[4:]
    if early_stopping is not None and early_stopping.mode != mode:
        raise UsageError(f"early_stopping.mode={early_stopping.mode!r} differs from fit's "
                         f"mode={mode!r} for {monitor!r}; use the same mode")
    return monitor


def _start_or_resume(run: _FitRun, resume: bool, overwrite: bool) -> int:
    """Load ``<name>_last.pt`` when resuming (returns its epoch + 1), else clear the way (1)."""
    manager, name = run.manager, run.model_name
    if manager is None:
        return 1
    manager.cleanup_temp_files(name)
    existing = manager.existing_files(name)
    resume_from = manager.latest_checkpoint(name) if resume else None
    if resume_from is not None:
        info = manager.load_checkpoint(
            run.model, resume_from, run.optimizer, run.scheduler, run.early_stopping,
            map_location=run.device, restore_rng=True, scaler=run.scaler)
        history_state = (info.get("extra") or {}).get("metrics_history")
        if history_state is not None:
            run.tracker.load_state_dict(history_state)
        start_epoch = int(info["epoch"] or 0) + 1
        log.info("resuming %r from %s at epoch %d", name, resume_from, start_epoch)
        return start_epoch
    if resume:
        log.info("resume requested but %s holds no checkpoint of %r; starting at epoch 1",
                 manager.checkpoint_dir, name)
    elif existing:
        if not overwrite:
            raise CheckpointError(
                f"{manager.checkpoint_dir} already holds checkpoints of {name!r} "
                f"({', '.join(p.name for p in existing[:4])}); pass resume=True to continue that "
                "run, overwrite=True to delete them and start over, or use another folder")
        manager.reset(name, delete_files=True)
    else:
        manager.reset(name)
    return 1


def _run_epochs(run: _FitRun, start_epoch: int) -> bool:
    """Epochs ``start_epoch..run.epochs``; returns whether early stopping ended them."""
    if run.plateau and run.scheduler_interval == "batch":
        raise UsageError("ReduceLROnPlateau needs scheduler_interval='epoch'")
    epoch = start_epoch - 1
    try:
        for epoch in range(start_epoch, run.epochs + 1):
            if _fit_epoch(run, epoch):
                es = run.early_stopping
                log.info("%s: early stopping at epoch %d (best %s=%.6g at epoch %s)", run.model_name,
                         epoch, run.monitor, es.best_score, es.best_epoch)  # type: ignore[union-attr]
                return True
    except KeyboardInterrupt:
        log.warning("%s interrupted during epoch %d; the last finished epoch is saved — "
                    "continue with resume=True", run.model_name, epoch)
        raise
    return False


def _fit_epoch(run: _FitRun, epoch: int) -> bool:
    """Train, validate, step the scheduler, checkpoint and log one epoch; True = stop early."""
    t0 = time.perf_counter()
    lr = float(run.optimizer.param_groups[0]["lr"])
    train_stats = train_epoch(
        run.model, run.train_loader, run.criterion, run.optimizer, run.device,
        grad_clip=run.grad_clip, scaler=run.scaler, amp=run.amp, metrics=run.metrics,
        desc=f"epoch {epoch}/{run.epochs} train", progress=run.progress, batch_fn=run.batch_fn,
        scheduler=run.scheduler if run.scheduler_interval == "batch" else None)
    val_stats = {} if run.val_loader is None else validate_epoch(
        run.model, run.val_loader, run.criterion, run.device, metrics=run.metrics, amp=run.amp,
        desc=f"epoch {epoch}/{run.epochs} val", progress=run.progress, batch_fn=run.batch_fn)
    run.tracker.update({**train_stats, **val_stats, "lr": lr})
    stats = run.tracker.end_epoch(epoch)
    if run.monitor not in stats:
        raise UsageError(f"monitor {run.monitor!r} is not among this epoch's metrics "
                         f"{sorted(stats)}; pass one of them as monitor=")
    score = stats[run.monitor]
    if run.scheduler is not None and run.scheduler_interval == "epoch":
        run.scheduler.step(score) if run.plateau else run.scheduler.step()
    stop = run.early_stopping(score, epoch) if run.early_stopping is not None else False
    saved: SavedCheckpoint | None = None
    if run.manager is not None:
        saved = run.manager.save_checkpoint(
            run.model, epoch, score, run.optimizer, metadata=run.metadata, model_name=run.model_name,
            scheduler=run.scheduler, early_stopping=run.early_stopping, mode=run.mode,
            scaler=run.scaler, extra={"metrics_history": run.tracker.state_dict()})
    if run.metrics_path is not None:
        run.tracker.save_to_json(run.metrics_path)
    if run.logger is not None:
        run.logger.log(stats, step=epoch)
    log.info("%s epoch %d/%d: %s [%.1fs]%s", run.model_name, epoch, run.epochs,
             " ".join(f"{k}={v:.4g}" for k, v in stats.items()), time.perf_counter() - t0,
             " (best)" if saved is not None and saved.is_best else "")
    return stop


def _plot(run: _FitRun, plot: bool) -> None:
    if not (plot and run.metrics_path is not None and run.tracker.history):
        return
    try:
        losses = [n for n in run.tracker.names if n.endswith("_loss")]
        run.tracker.plot_metrics(losses or None, Path(run.metrics_path).with_suffix(".png"),
                                 title=run.model_name)
    except Exception as exc:  # a plot must never fail a finished training run
        log.warning("could not plot metrics: %s", _first_line(exc))


def _fill_result(result: FitHistory, run: _FitRun, restore_best: bool) -> None:
    """History, best epoch / score and checkpoint paths; loads the best weights if asked."""
    tracker, manager = run.tracker, run.manager
    best = tracker.best(run.monitor, run.mode)
    result.update({k: tracker.get_history(k) for k in tracker.names})
    result.epochs = sorted({e for vals in tracker.epochs.values() for e in vals})
    result.monitor = run.monitor
    result.best_epoch, result.best_score = best if best is not None else (None, None)
    result.last_epoch = tracker.last_epoch
    result.best_checkpoint = result.last_checkpoint = None
    if manager is not None:
        bp, lp = manager.best_path(run.model_name), manager.last_path(run.model_name)
        result.best_checkpoint = bp if bp.is_file() else None
        result.last_checkpoint = lp if lp.is_file() else None
    if restore_best:
        if result.best_checkpoint is None:
            log.warning("restore_best: no best checkpoint of %r to restore", run.model_name)
        else:
            manager.load_checkpoint(run.model, result.best_checkpoint,  # type: ignore[union-attr]
                                    map_location=run.device, restore_rng=False)
