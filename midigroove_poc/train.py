"""Train :class:`~midigroove_poc.model.GridToCodes` on a midigroove cache; predict; decode to wav.

``train_model(cache_path, save_path, ...)`` is a step-based loop (not epochs: E-GMD windows are
many and short, so "evaluate every N optimizer steps" is the natural unit):

* AdamW (no weight decay on biases, norms and embeddings), linear warmup then cosine decay to 0
  (:func:`warmup_cosine`), gradient clipping, cross-entropy summed over all K codebooks (mean per
  token);
* bf16 autocast on CUDA (float32 elsewhere);
* ``torchrun --nproc_per_node N ...``: one process per GPU, ``DistributedSampler`` for training
  (``batch_size`` is per process), each rank evaluates a disjoint slice of the validation split
  and the sums are all-reduced, so every rank sees the same metrics and stops at the same step;
  rank 0 alone writes files;
* every ``eval_every`` steps (and at the last step): validation loss, token accuracy (overall and
  per codebook, teacher-forced), free-running accuracy of :meth:`GridToCodes.predict`
  (``val_pred_accuracy``; differs from the teacher-forced one only with ``ar_codebooks``) and the
  share of frames whose K codes are all right (``val_frame_accuracy``);
* early stopping (``early_stop_steps``) and best-by-validation-loss checkpoints through
  ``training.utils`` (:class:`~training.utils.EarlyStopping`, :class:`~training.utils.CheckpointManager`,
  :class:`~training.utils.MetricsTracker`, :class:`~training.utils.ExperimentLogger`).

Files for ``save_path = runs/eg.pt`` (model name ``eg`` = the stem; the toolkit's "epoch" field
of these checkpoints holds the optimizer step)::

    runs/eg.pt              the best model (by validation loss): weights + metadata, no optimizer;
                            written when training ends; what load_model / predict_to_wav read
    runs/eg_best.pt         the best so far, updated during training (a killed run keeps it)
    runs/eg_last.pt         the latest evaluation step, with optimizer / scheduler / RNG state
    runs/eg_metrics.json    MetricsTracker history, one entry per evaluation step
    runs/eg_summary.json    what train_model returns

Every file loads with ``torch.load(weights_only=True)``. The metadata holds what
:func:`~midigroove_poc.model.load_model` needs: ``features``, ``model_config``, the cache's
``cache_meta`` (codec, weights, bandwidth, fps, vocabularies), ``feature_names``, ``train_args``
and the evaluation ``metrics`` at that step. A new run on the same ``save_path`` starts over and
replaces these files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from midigroove_poc.cache import cache_codec
from midigroove_poc.model import (
    MODEL_KIND,
    PAD_ID,
    CacheDataset,
    CacheFormatError,
    GridToCodes,
    _read_cache,
    collate,
    load_model,
)
from training.utils import (
    CheckpointManager,
    EarlyStopping,
    ExperimentLogger,
    MetricsTracker,
    TrainingError,
    get_device,
    seed_everything,
    seed_worker,
)
from workflow.errors import UsageError
from workflow.files import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

__all__ = [
    "warmup_cosine",
    "make_scheduler",
    "checkpoint_paths",
    "evaluate",
    "train_model",
    "predict_split",
    "predict_to_wav",
]


# ---------------------------------------------------------------------------------------------
# Schedule


def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """LR multiplier after ``step`` optimizer steps: linear warmup ``(step+1)/warmup_steps`` for
    the first ``warmup_steps`` steps, then cosine from 1 down to ``min_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int,
                   min_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following :func:`warmup_cosine` (step it once per optimizer step)."""

    def factor(step: int) -> float:  # a plain function: its state dict stays weights_only-safe
        return warmup_cosine(step, warmup_steps=warmup_steps, total_steps=total_steps,
                             min_ratio=min_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---------------------------------------------------------------------------------------------
# Files and distributed set-up


def checkpoint_paths(save_path: Path | str) -> dict[str, Path]:
    """The files ``train_model`` writes for ``save_path`` (see the module docstring)."""
    save_path = Path(save_path)
    stem, folder = save_path.stem, save_path.parent
    return {"final": save_path, "best": folder / f"{stem}_best.pt", "last": folder / f"{stem}_last.pt",
            "metrics": folder / f"{stem}_metrics.json", "summary": folder / f"{stem}_summary.json"}


@dataclass
class _Dist:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    started_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def _setup_distributed(device: str) -> tuple[_Dist, torch.device]:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1``; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(), get_device(device)
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = get_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    elif dev.type != "cpu":
        raise UsageError(f"distributed training runs on CUDA (nccl) or CPU (gloo), not {dev}")
    started = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        started = True
    if dist.get_world_size() != world:
        raise UsageError(f"WORLD_SIZE={world} but the process group has {dist.get_world_size()} ranks")
    return _Dist(world, dist.get_rank(), local_rank, started), dev


def _amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    if not amp or device.type != "cuda":
        return None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16
    log.warning("this GPU has no bfloat16 support; training in float32")
    return None


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------
# Loss and evaluation


def _loss(logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every real token of every codebook (float32; padding ignored)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), codes.reshape(-1),
                           ignore_index=PAD_ID)


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}


@torch.no_grad()
def evaluate(model: GridToCodes, dataset: CacheDataset, *, device: torch.device | str = "cpu",
             batch_size: int = 32, indices: Sequence[int] | None = None,
             amp_dtype: torch.dtype | None = None, all_reduce: bool = False) -> dict[str, float]:
    """Validation metrics of ``model`` on ``dataset`` rows ``indices`` (all by default):
    ``loss``, ``loss_cb<k>``, ``accuracy``, ``accuracy_cb<k>`` (teacher-forced argmax),
    ``pred_accuracy`` (free-running :meth:`GridToCodes.predict`), ``frame_accuracy`` (all K codes
    of a frame right, free-running). ``all_reduce`` sums the counts over the process group."""
    device = torch.device(device)
    k_books = model.n_codebooks
    # sums: loss per codebook, tf-correct per codebook, pred-correct per codebook, frames ok,
    # frames, tokens per codebook
    sums = torch.zeros(3 * k_books + 3, dtype=torch.float64, device=device)
    rows = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(rows), batch_size):
            batch = _to_device(dataset.batch(rows[start:start + batch_size]), device)
            codes, mask = batch["codes"], batch["mask"]
            with _autocast(device, amp_dtype):
                h = model.encode(batch["grid"], batch["drummer_id"], batch["kit_id"],
                                 batch["style_id"], mask)
                logits = model.head_logits(h, codes)
                pred = model.greedy(h)[0] if model.ar_codebooks else logits.argmax(-1)
            logits = logits.float()
            ce = F.cross_entropy(logits.permute(0, 3, 1, 2), codes, reduction="none",
                                 ignore_index=PAD_ID)  # [B, K, T], 0 on padding
            real = mask[:, None, :]
            sums[:k_books] += ce.sum(dim=(0, 2)).double()
            sums[k_books:2 * k_books] += ((logits.argmax(-1) == codes) & real).sum(dim=(0, 2)).double()
            hit = (pred == codes) & real
            sums[2 * k_books:3 * k_books] += hit.sum(dim=(0, 2)).double()
            sums[3 * k_books] += (hit.all(dim=1) & mask).sum().double()
            sums[3 * k_books + 1] += mask.sum().double()
            sums[3 * k_books + 2] += codes.shape[0]
    finally:
        model.train(was_training)
    if all_reduce and dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    s = sums.cpu().tolist()
    frames = s[3 * k_books + 1]
    if frames == 0:
        return {}
    out: dict[str, float] = {
        "loss": sum(s[:k_books]) / (frames * k_books),
        "accuracy": sum(s[k_books:2 * k_books]) / (frames * k_books),
        "pred_accuracy": sum(s[2 * k_books:3 * k_books]) / (frames * k_books),
        "frame_accuracy": s[3 * k_books] / frames,
    }
    for k in range(k_books):
        out[f"loss_cb{k}"] = s[k] / frames
        out[f"accuracy_cb{k}"] = s[k_books + k] / frames
    return out


# ---------------------------------------------------------------------------------------------
# Training


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay matrices of Linear / attention layers, not biases, norms, embeddings."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if isinstance(module, (nn.Embedding, nn.LayerNorm)) or name.endswith("bias"):
                no_decay.append(param)
            else:
                decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _endless(loader: DataLoader, sampler: Any) -> Iterator[dict[str, torch.Tensor]]:
    epoch = 0
    while True:
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _vocab(meta: dict[str, Any], key: str) -> int:
    return max(1, len(meta.get(key) or []))


def _check_cache(ds: CacheDataset, vocab: dict[str, int], n_codebooks: int,
                 codebook_size: int) -> None:
    """Refuse a split whose codes or ids do not fit the vocabularies (an embedding lookup would
    fail mid-run, on CUDA with an unreadable device assert)."""
    if len(ds) == 0:
        return
    if ds.num_codebooks != n_codebooks:
        raise CacheFormatError(f"cache {ds.cache_path} split {ds.split!r} has {ds.num_codebooks} "
                               f"codebooks, cache_meta.json says {n_codebooks}; rebuild the cache")
    checks = {"codes": codebook_size, "drummer_id": vocab["drummer_id"], "kit_id": vocab["kit_id"],
              "style_id": vocab["style_id"]}
    for column, size in checks.items():
        lo_hi = ds.column_range(column)
        if lo_hi is not None and (lo_hi[0] < 0 or lo_hi[1] >= size):
            raise CacheFormatError(
                f"cache {ds.cache_path} split {ds.split!r}: column {column!r} spans "
                f"{lo_hi[0]}..{lo_hi[1]} but cache_meta.json allows 0..{size - 1}; the cache and "
                "its meta disagree, rebuild the cache")


def _write_final(best: Path, last: Path, final: Path) -> Path:
    """Copy the best checkpoint (or the last one) to ``final`` without optimizer / RNG state."""
    source = best if best.is_file() else last
    if source is last:
        log.warning("no best checkpoint (validation loss never finite); %s gets the last weights", final)
    payload = torch.load(source, map_location="cpu", weights_only=True)
    keep = ("format", "format_version", "model_name", "epoch", "score", "best_score", "mode",
            "saved_at", "torch_version", "metadata", "model_state_dict")
    slim = {k: payload[k] for k in keep if k in payload}
    with atomic_path(final) as tmp:
        torch.save(slim, tmp)
    return source


def train_model(
    cache_path: Path | str,
    save_path: Path | str,
    *,
    features: str = "grid",
    device: str = "auto",
    steps: int = 2000,
    batch_size: int = 16,
    lr: float = 3e-4,
    weight_decay: float = 0.01,
    warmup_steps: int = 100,
    log_every: int = 50,
    eval_every: int = 200,
    early_stop_steps: int | None = None,
    d_model: int = 256,
    n_layers: int = 4,
    n_heads: int = 4,
    dropout: float = 0.1,
    ar_codebooks: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    grad_clip: float = 1.0,
    logger: str = "none",
    amp: bool = True,
    eval_batch_size: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a :class:`GridToCodes` on ``cache_path`` and write ``save_path`` (the best model).

    ``features`` is ``"grid"`` (expressive grid) or ``"drumgrid"`` (the quantised baseline).
    ``early_stop_steps``: stop when the validation loss has not improved for that many steps
    (counted in evaluations: patience = ceil(early_stop_steps / eval_every)). ``batch_size`` is
    per process under ``torchrun``. ``logger``: ``"none"``, ``"tensorboard"``, ``"wandb"`` or
    ``"auto"`` (files under ``<save_path folder>/logs``). Without a validation split the training
    loss (mean since the last evaluation) picks the best checkpoint instead. Returns the summary
    also written to ``<stem>_summary.json`` (paths, best step, best/final metrics, history).
    """
    t_start = time.perf_counter()
    if features not in ("grid", "drumgrid"):
        raise UsageError(f"features must be 'grid' or 'drumgrid', got {features!r}")
    for name, value in (("steps", steps), ("batch_size", batch_size), ("eval_every", eval_every),
                        ("log_every", log_every)):
        if int(value) < 1:
            raise UsageError(f"{name} must be >= 1, got {value}")
    if warmup_steps < 0 or lr < 0 or weight_decay < 0:
        raise UsageError(f"warmup_steps, lr and weight_decay must be >= 0 (got {warmup_steps}, {lr}, "
                         f"{weight_decay})")
    if early_stop_steps is not None and early_stop_steps < 1:
        raise UsageError(f"early_stop_steps must be >= 1 or None, got {early_stop_steps}")
    train_args = {k: v for k, v in locals().items()
                  if k not in ("t_start",) and isinstance(v, (str, int, float, bool, type(None), Path))}
    train_args = {k: str(v) if isinstance(v, Path) else v for k, v in train_args.items()}
    cache_path, save_path = Path(cache_path), Path(save_path)
    paths = checkpoint_paths(save_path)
    model_name = save_path.stem

    dist_state, dev = _setup_distributed(device)
    try:
        seed_everything(seed)
        dsd, meta = _read_cache(cache_path)
        train_ds = CacheDataset(cache_path, "train", features)
        if len(train_ds) == 0:
            raise CacheFormatError(f"cache {cache_path} has an empty 'train' split; nothing to train on")
        val_ds = CacheDataset(cache_path, "validation", features) \
            if "validation" in dsd and len(dsd["validation"]) else None
        if val_ds is None:
            log.warning("cache %s has no validation rows: the best checkpoint and early stopping "
                        "use the training loss", cache_path)
        if "codebook_size" not in meta or "num_codebooks" not in meta:
            raise CacheFormatError(f"{cache_path}/cache_meta.json lacks codebook_size / num_codebooks")
        n_codebooks, codebook_size = int(meta["num_codebooks"]), int(meta["codebook_size"])
        vocab = {"drummer_id": _vocab(meta, "drummers"), "kit_id": _vocab(meta, "kits"),
                 "style_id": _vocab(meta, "styles")}
        for ds in (train_ds, val_ds):
            if ds is not None:
                _check_cache(ds, vocab, n_codebooks, codebook_size)
        if val_ds is not None and val_ds.n_features != train_ds.n_features:
            raise CacheFormatError(f"cache {cache_path}: validation rows have {val_ds.n_features} "
                                   f"{features} features, training rows {train_ds.n_features}; "
                                   "rebuild the cache")
        # positions for the longest window of any split, so every row of this cache can be predicted
        max_frames = max([train_ds.max_frames] + [CacheDataset(cache_path, split, features).max_frames
                                                  for split in dsd if split != "train"])

        model = GridToCodes(train_ds.n_features, n_codebooks, codebook_size,
                            n_drummers=vocab["drummer_id"], n_kits=vocab["kit_id"],
                            n_styles=vocab["style_id"], d_model=d_model, n_layers=n_layers,
                            n_heads=n_heads, dropout=dropout, max_frames=max_frames,
                            ar_codebooks=ar_codebooks)
        model.set_feature_scale(train_ds.feature_abs_max())
        model.to(dev)
        n_params = sum(p.numel() for p in model.parameters())
        train_module: nn.Module = model
        if dist_state.enabled:
            train_module = nn.parallel.DistributedDataParallel(
                model, device_ids=[dev.index] if dev.type == "cuda" else None)

        if dist_state.enabled:
            sampler: Any = DistributedSampler(train_ds, num_replicas=dist_state.world_size,
                                              rank=dist_state.rank, shuffle=True, seed=seed)
            shard = len(sampler)
        else:
            sampler = torch.utils.data.RandomSampler(
                train_ds, generator=torch.Generator().manual_seed(seed))
            shard = len(train_ds)
        loader = DataLoader(train_ds, batch_size=batch_size, sampler=sampler, collate_fn=collate,
                            drop_last=shard >= batch_size, num_workers=num_workers,
                            persistent_workers=num_workers > 0, worker_init_fn=seed_worker,
                            pin_memory=dev.type == "cuda")
        batches = _endless(loader, sampler)
        val_rows = None if val_ds is None else \
            list(range(dist_state.rank, len(val_ds), dist_state.world_size))

        optimizer = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98))
        scheduler = make_scheduler(optimizer, warmup_steps=warmup_steps, total_steps=steps)
        amp_dtype = _amp_dtype(dev, amp)
        patience = None if early_stop_steps is None else max(1, math.ceil(early_stop_steps / eval_every))
        stopper = EarlyStopping(patience=patience, min_delta=0.0, mode="min", verbose=False) \
            if patience is not None else None
        tracker = MetricsTracker()
        manager: CheckpointManager | None = None
        exp_logger: ExperimentLogger | None = None
        if dist_state.is_main:
            save_path.parent.mkdir(parents=True, exist_ok=True)
            manager = CheckpointManager(save_path.parent, save_best_only=True, verbose=False)
            manager.cleanup_temp_files(model_name)
            old = manager.reset(model_name, delete_files=True)
            if old:
                log.warning("starting over: deleted %d old checkpoint file(s) of %r in %s",
                            len(old), model_name, save_path.parent)
            exp_logger = ExperimentLogger(logger, log_dir=save_path.parent / "logs",
                                          run_name=model_name, config=train_args)
        dist_state.barrier()
        base_meta = {"kind": MODEL_KIND, "features": features, "model_config": dict(model.config),
                     "cache_meta": meta, "cache_path": str(cache_path.resolve()),
                     "feature_names": train_ds.feature_names, "train_args": train_args}
        log.info("training %s (%d parameters, features=%s, ar_codebooks=%s) on %s x%d: %d train / "
                 "%d validation rows, %d steps", model_name, n_params, features, ar_codebooks, dev,
                 dist_state.world_size, len(train_ds), 0 if val_ds is None else len(val_ds), steps)

        monitor = "val_loss" if val_ds is not None else "train_loss"
        best: tuple[int, dict[str, float]] | None = None
        last_stats: dict[str, float] = {}
        window_loss = window_norm = 0.0
        window_n = 0
        since_eval_loss, since_eval_n = 0.0, 0
        stopped_early = False
        step = 0
        bar = tqdm(total=steps, desc=f"train {model_name}", dynamic_ncols=True,
                   disable=not (progress and dist_state.is_main))
        train_module.train()
        try:
            while step < steps:
                batch = _to_device(next(batches), dev)
                optimizer.zero_grad(set_to_none=True)
                with _autocast(dev, amp_dtype):
                    logits = train_module(batch["grid"], batch["drummer_id"], batch["kit_id"],
                                          batch["style_id"], codes=batch["codes"], mask=batch["mask"])
                loss = _loss(logits, batch["codes"])
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise TrainingError(f"training loss is {loss_value} at step {step + 1}; lower lr "
                                        f"(now {lr}), keep grad_clip on, or check the cache for NaN")
                loss.backward()
                norm = nn.utils.clip_grad_norm_(model.parameters(), grad_clip) if grad_clip else None
                optimizer.step()
                scheduler.step()
                step += 1
                bar.update(1)
                window_loss += loss_value
                window_norm += float(norm) if norm is not None else 0.0
                window_n += 1
                since_eval_loss += loss_value
                since_eval_n += 1
                if step % log_every == 0 or step == steps:
                    stats = {"train_loss": window_loss / window_n,
                             "lr": float(optimizer.param_groups[0]["lr"])}
                    if grad_clip:
                        stats["grad_norm"] = window_norm / window_n
                    bar.set_postfix(loss=f"{stats['train_loss']:.4g}", refresh=False)
                    log.info("%s step %d/%d: %s", model_name, step, steps,
                             " ".join(f"{k}={v:.4g}" for k, v in stats.items()))
                    if exp_logger is not None:
                        exp_logger.log(stats, step=step)
                    window_loss = window_norm = 0.0
                    window_n = 0
                if step % eval_every and step != steps:
                    continue
                # -- evaluation step ---------------------------------------------------------
                stats = {"train_loss": since_eval_loss / max(1, since_eval_n),
                         "lr": float(optimizer.param_groups[0]["lr"])}
                since_eval_loss, since_eval_n = 0.0, 0
                if val_ds is not None:
                    val = evaluate(model, val_ds, device=dev, indices=val_rows,
                                   batch_size=eval_batch_size or max(batch_size, 32),
                                   amp_dtype=amp_dtype, all_reduce=dist_state.enabled)
                    stats.update({f"val_{k}": v for k, v in val.items()})
                elif dist_state.enabled:
                    pair = torch.tensor([stats["train_loss"], 1.0], dtype=torch.float64, device=dev)
                    dist.all_reduce(pair)
                    stats["train_loss"] = float(pair[0] / pair[1])
                tracker.update(stats)
                tracker.end_epoch(step)
                score = stats[monitor]
                last_stats = stats
                if math.isfinite(score) and (best is None or score < best[1][monitor]):
                    best = (step, dict(stats))
                stop = stopper(score, step) if stopper is not None else False
                if manager is not None:
                    manager.save_checkpoint(
                        model, step, score, optimizer, metadata={**base_meta, "metrics": stats},
                        model_name=model_name, scheduler=scheduler, early_stopping=stopper,
                        extra={"metrics_history": tracker.state_dict()})
                    tracker.save_to_json(paths["metrics"])
                if exp_logger is not None:
                    exp_logger.log(stats, step=step)
                log.info("%s eval at step %d: %s", model_name, step,
                         " ".join(f"{k}={v:.4g}" for k, v in stats.items() if "_cb" not in k))
                if stop:
                    stopped_early = True
                    log.info("%s: early stopping at step %d (%s best %.6g at step %s)", model_name,
                             step, monitor, stopper.best_score, stopper.best_epoch)
                    break
        finally:
            bar.close()
            if exp_logger is not None:
                exp_logger.finish()

        summary: dict[str, Any] = {
            "save_path": str(save_path), "best_checkpoint": str(paths["best"]),
            "last_checkpoint": str(paths["last"]), "metrics_path": str(paths["metrics"]),
            "features": features, "ar_codebooks": bool(ar_codebooks), "monitor": monitor,
            "steps_run": step, "steps": int(steps), "stopped_early": stopped_early,
            "best_step": None if best is None else best[0],
            "best_score": None if best is None else best[1][monitor],
            "best_val_loss": None if best is None else best[1].get("val_loss"),
            "best_metrics": {} if best is None else best[1], "final_metrics": last_stats,
            "history": tracker.state_dict()["history"], "n_params": int(n_params),
            "device": str(dev), "world_size": dist_state.world_size,
            "train_rows": len(train_ds), "val_rows": 0 if val_ds is None else len(val_ds),
        }
        if dist_state.is_main:
            _write_final(paths["best"], paths["last"], save_path)
            summary["seconds"] = round(time.perf_counter() - t_start, 3)
            atomic_write_text(paths["summary"], json.dumps(summary, indent=1, default=str) + "\n")
            log.info("%s: best %s=%.6g at step %s; model written to %s", model_name, monitor,
                     summary["best_score"] if summary["best_score"] is not None else float("nan"),
                     summary["best_step"], save_path)
        dist_state.barrier()
        summary.setdefault("seconds", round(time.perf_counter() - t_start, 3))
        return summary
    finally:
        if dist_state.started_here and dist.is_initialized():
            dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------
# Prediction


def _check_compatible(info: dict[str, Any], meta: dict[str, Any], cache_path: Path) -> None:
    """Refuse a cache whose codec geometry differs from the one the model was trained on."""
    trained = info.get("cache_meta") or {}
    diffs = [f"{key}: model {trained.get(key)!r}, cache {meta.get(key)!r}"
             for key in ("codec", "num_codebooks", "codebook_size", "fps")
             if key in trained and key in meta and trained[key] != meta[key]]
    if diffs:
        raise UsageError(f"cache {cache_path} does not match the model's training cache ("
                         + "; ".join(diffs) + "); predict on a cache built with the same codec")


def predict_split(model: GridToCodes, info: dict[str, Any], cache_path: Path | str, split: str,
                  indices: Sequence[int] | None = None, device: str | torch.device = "cpu",
                  batch_size: int = 64) -> list[np.ndarray]:
    """Greedy codes for rows of ``split``: one int16 ``[K, T_row]`` array per row of ``indices``
    (all rows by default), in that order, each as long as its window. Moves ``model`` to ``device``."""
    cache_path = Path(cache_path)
    ds = CacheDataset(cache_path, split, info["features"])
    _check_compatible(info, ds.meta, cache_path)
    rows = list(range(len(ds))) if indices is None else [int(i) for i in indices]
    if not rows:
        return []
    if ds.n_features != model.n_features:
        raise UsageError(f"cache {cache_path} has {ds.n_features} {info['features']} features, the "
                         f"model expects {model.n_features}; use the cache it was trained on")
    dev = get_device(device) if isinstance(device, str) else device
    model.to(dev)
    out: list[np.ndarray] = []
    for start in range(0, len(rows), batch_size):
        batch = _to_device(ds.batch(rows[start:start + batch_size]), dev)
        pred = model.predict(batch["grid"], batch["drummer_id"], batch["kit_id"], batch["style_id"],
                             batch["mask"]).cpu().numpy().astype(np.int16)
        out.extend(np.ascontiguousarray(p[:, :t]) for p, t in zip(pred, batch["length"].tolist()))
    return out


def predict_to_wav(ckpt: Path | str, cache_path: Path | str, out_wav: Path | str, *,
                   split: str = "test", index: int = 0, device: str = "cpu",
                   decode_device: str = "cpu", reference_wav: Path | str | None = None) -> Path:
    """Predict the codes of one cache row and decode them to ``out_wav`` (float wav, atomic).

    The audio is ``T_row * sample_rate / fps`` samples long. ``reference_wav`` also writes the
    decoded true codes of that row (the codec's own reconstruction, for A/B listening).
    """
    import soundfile as sf

    from workflow.codecs import Encoded

    model, info = load_model(ckpt, device)
    cache_path = Path(cache_path)
    codes = predict_split(model, info, cache_path, split, [index], device)[0]
    _, meta = _read_cache(cache_path)
    for key in ("codec", "weights", "bandwidth", "fps"):
        if key not in meta:
            raise CacheFormatError(f"{cache_path}/cache_meta.json lacks {key!r}; cannot decode")
    codec = cache_codec(meta, device=decode_device)
    if codec.spec.segmented:
        raise UsageError(f"codec {codec.spec.name} stores segmented codes; predict_to_wav decodes "
                         "single-segment codecs only")
    sample_rate = codec.spec.sample_rate
    n_samples = int(round(codes.shape[1] * sample_rate / float(meta["fps"])))

    def write(path: Path | str, k_t: np.ndarray) -> Path:
        audio = codec.decode(Encoded(segments=[np.ascontiguousarray(k_t, dtype=np.int16)],
                                     scales=[None], audio_length=n_samples))
        with atomic_path(path) as tmp:
            sf.write(str(tmp), audio.T, sample_rate, format="WAV", subtype="FLOAT")
        return Path(path)

    if reference_wav is not None:
        true = CacheDataset(cache_path, split, info["features"])[index]["codes"]
        write(reference_wav, true.numpy().astype(np.int16))
    return write(out_wav, codes)
