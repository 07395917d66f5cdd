"""Train :class:`~midigroove_poc.model.GridToCodes` on a midigroove cache (prediction: ``predict.py``).

:func:`train_model` is step-based, not epoch-based (E-GMD windows are many and short): AdamW with
warmup + cosine decay, bf16 on CUDA, ``torchrun`` DDP, periodic evaluation, early stopping and
best-by-validation-loss checkpoints through ``training.core``; the run's mutable state is one
:class:`State`. The files it writes for ``save_path``, and what each checkpoint holds: README.md,
"midigroove_poc", **Training**.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

# Prediction lives in predict.py; its names are re-exported here, where they always were.
from midigroove_poc.predict import _check_compatible, _to_device, predict_split, predict_to_wav  # noqa: F401
from midigroove_poc.inputs import InputSpec
from midigroove_poc.model import (
    MODEL_KIND,
    PAD_ID,
    CacheDataset,
    CacheFormatError,
    GridToCodes,
    _read_cache,
    collate,
    load_model,  # noqa: F401 - imported from here by the CLI and evaluate
)
from training.core import (
    CheckpointManager,
    EarlyStopping,
    ExperimentLogger,
    MetricsTracker,
    TrainingError,
    get_device,
    seed_everything,
    seed_worker,
)
from training.core.dist import DistInfo, autocast, autocast_dtype, init_distributed
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


def _join_distributed(device: str) -> tuple[DistInfo, torch.device, bool]:
    """:func:`workflow.dist.init_distributed` on the requested device; also whether this call
    started the process group (then :func:`train_model` destroys it when it ends)."""
    already = dist.is_available() and dist.is_initialized()
    info, dev = init_distributed(get_device(device))
    return info, dev, info.enabled and not already


# ---------------------------------------------------------------------------------------------
# Loss and evaluation


def _loss(logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every real token of every codebook (float32; padding ignored)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), codes.reshape(-1),
                           ignore_index=PAD_ID)


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
            with autocast(device, amp_dtype):
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
    amp: bool = True, eval_batch_size: int | None = None, progress: bool = True,
    inputs: InputSpec | None = None, eval_max_batches: int | None = None, metrics_out: Path | str | None = None,
) -> dict[str, Any]:
    """Train a :class:`GridToCodes` on ``cache_path`` and write ``save_path`` (the best model).

    ``features`` is ``"grid"`` (expressive grid) or ``"drumgrid"`` (the quantised baseline).
    ``early_stop_steps``: stop when the validation loss has not improved for that many steps
    (counted in evaluations: patience = ceil(early_stop_steps / eval_every)). ``batch_size`` is
    per process under ``torchrun``. ``logger``: ``"none"``, ``"tensorboard"``, ``"wandb"`` or
    ``"auto"`` (files under ``<save_path folder>/logs``). Without a validation split the training
    loss (mean since the last evaluation) picks the best checkpoint instead. Returns the summary
    also written to ``<stem>_summary.json`` (paths, best step, best/final metrics, history).
    ``inputs``: ablations, stored in the checkpoint. ``eval_max_batches``: validate on the first N
    batches only (None / 0: all). ``metrics_out``: also the history as CSV, one row per evaluation.
    """
    t_start = time.perf_counter()
    _check_args(features, steps=steps, batch_size=batch_size, eval_every=eval_every,
                log_every=log_every, warmup_steps=warmup_steps, lr=lr, weight_decay=weight_decay,
                early_stop_steps=early_stop_steps)
    train_args = _plain_args(locals())
    cache_path, save_path = Path(cache_path), Path(save_path)
    paths, model_name = checkpoint_paths(save_path), save_path.stem

    info, dev, started_here = _join_distributed(device)
    try:
        seed_everything(seed)
        data = _load_data(cache_path, features, inputs or InputSpec())
        st = _build_state(data, dev, info, d_model=d_model, n_layers=n_layers, n_heads=n_heads,
                          dropout=dropout, ar_codebooks=ar_codebooks, lr=lr, weight_decay=weight_decay,
                          warmup_steps=warmup_steps, steps=steps, eval_every=eval_every,
                          early_stop_steps=early_stop_steps)
        run = _Run(
            dist=info, device=dev, data=data, model_name=model_name, paths=paths,
            batches=_endless(*_train_loader(data.train, info, dev, batch_size, seed, num_workers)),
            val_rows=_val_rows(data.val, info, eval_max_batches, eval_batch_size or max(batch_size, 32)),
            amp_dtype=autocast_dtype(dev, "bf16" if amp else "fp32"),
            monitor="val_loss" if data.val is not None else "train_loss",
            steps=int(steps), log_every=int(log_every), eval_every=int(eval_every), lr=lr,
            grad_clip=grad_clip, eval_batch_size=eval_batch_size or max(batch_size, 32),
            base_meta={"kind": MODEL_KIND, "features": features, "model_config": dict(st.model.config),
                       "cache_meta": data.meta, "cache_path": str(cache_path.resolve()),
                       "feature_names": data.train.feature_names, "train_args": train_args,
                       "inputs": data.train.inputs.as_dict()})
        _open_outputs(run, logger, train_args)
        log.info("training %s (%d parameters, features=%s, ar_codebooks=%s) on %s x%d: %d train / "
                 "%d validation rows, %d steps", model_name, st.n_params, features, ar_codebooks, dev,
                 info.world_size, len(data.train), 0 if data.val is None else len(data.val), steps)
        _train_loop(run, st, progress)
        summary = _summary(run, st, features, ar_codebooks)
        if info.is_main:
            _write_outputs(run, summary, save_path, t_start, metrics_out, st.tracker.state_dict()["epochs"])
        info.barrier()
        summary.setdefault("seconds", round(time.perf_counter() - t_start, 3))
        return summary
    finally:
        if started_here and dist.is_initialized():
            dist.destroy_process_group()


def _val_rows(val: CacheDataset | None, info: DistInfo, max_batches: int | None, batch_size: int) -> list[int] | None:
    """This rank's validation rows: all, or those of the first ``max_batches`` batches."""
    if val is None:
        return None
    n = len(val) if not max_batches else min(len(val), int(max_batches) * batch_size)
    return list(range(info.rank, n, info.world_size))


def write_metrics_csv(path: Path | str, history: dict[str, list[float]], steps: dict[str, list[int]]) -> Path:
    """The metric history as CSV, one row per evaluation (``step`` first), written atomically."""
    names = list(history)
    all_steps = sorted({s for n in names for s in steps.get(n, [])})
    by_step = {n: dict(zip(steps.get(n, []), history[n])) for n in names}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["step", *names])
    for s in all_steps:
        w.writerow([s, *("" if by_step[n].get(s) is None else f"{by_step[n][s]:.6g}" for n in names)])
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def _plain_args(args: dict[str, Any]) -> dict[str, Any]:
    """:func:`train_model`'s plain-valued arguments (paths as strings) for the checkpoint metadata."""
    plain = {k: v for k, v in args.items()
             if k not in ("t_start",) and isinstance(v, (str, int, float, bool, type(None), Path))}
    return {k: str(v) if isinstance(v, Path) else v for k, v in plain.items()}


def _write_outputs(run: _Run, summary: dict[str, Any], save_path: Path, t_start: float,
                   metrics_out: Path | str | None, steps: dict[str, list[int]]) -> None:
    """Main process: the slim final model at ``save_path``, ``<stem>_summary.json`` and the
    ``metrics_out`` CSV (``steps``: the evaluation step of each history value)."""
    _write_final(run.paths["best"], run.paths["last"], save_path)
    if metrics_out is not None:
        write_metrics_csv(metrics_out, summary["history"], steps)
    summary["seconds"] = round(time.perf_counter() - t_start, 3)
    atomic_write_text(run.paths["summary"], json.dumps(summary, indent=1, default=str) + "\n")
    log.info("%s: best %s=%.6g at step %s; model written to %s", run.model_name, run.monitor,
             summary["best_score"] if summary["best_score"] is not None else float("nan"),
             summary["best_step"], save_path)


def _check_args(features: str, *, steps: int, batch_size: int, eval_every: int, log_every: int,
                warmup_steps: int, lr: float, weight_decay: float, early_stop_steps: int | None) -> None:
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


@dataclass
class _Data:
    """The cache's splits and what its meta says about them."""

    train: CacheDataset
    val: CacheDataset | None
    meta: dict[str, Any]
    vocab: dict[str, int]
    n_codebooks: int
    codebook_size: int
    max_frames: int


def _load_data(cache_path: Path, features: str, inputs: InputSpec) -> _Data:
    """Open and check the train / validation splits of ``cache_path`` (as ``inputs`` shows them)."""
    dsd, meta = _read_cache(cache_path)
    train_ds = CacheDataset(cache_path, "train", features, inputs)
    for group, keep in inputs.as_dict().items():
        if not keep and group != "kit" and not InputSpec(**{group: False}).dropped(train_ds.all_feature_names):
            log.warning("--no-%s: the %s grid has no such columns; nothing dropped", group.replace("_", "-"), features)
    if len(train_ds) == 0:
        raise CacheFormatError(f"cache {cache_path} has an empty 'train' split; nothing to train on")
    val_ds = CacheDataset(cache_path, "validation", features, inputs) \
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
    return _Data(train_ds, val_ds, meta, vocab, n_codebooks, codebook_size, max_frames)


@dataclass
class State:
    """Everything a :func:`train_model` run mutates (models, optimizer, schedule, early stopping,
    history, counters, the best evaluation, and the running loss windows)."""

    model: GridToCodes
    train_module: nn.Module  # ``model``, or its DDP wrapper under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    stopper: EarlyStopping | None
    tracker: MetricsTracker = field(default_factory=MetricsTracker)
    step: int = 0  # optimizer steps so far
    best: tuple[int, dict[str, float]] | None = None  # (step, metrics) of the best evaluation
    last_stats: dict[str, float] = field(default_factory=dict)  # the latest evaluation's metrics
    stopped_early: bool = False
    window_loss: float = 0.0  # since the last log line
    window_norm: float = 0.0
    window_n: int = 0
    since_eval_loss: float = 0.0  # since the last evaluation
    since_eval_n: int = 0

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def _build_state(data: _Data, dev: torch.device, info: DistInfo, *, d_model: int, n_layers: int,
                 n_heads: int, dropout: float, ar_codebooks: bool, lr: float, weight_decay: float,
                 warmup_steps: int, steps: int, eval_every: int,
                 early_stop_steps: int | None) -> State:
    """A fresh model (feature scale from the training rows), AdamW, the schedule and stopper."""
    model = GridToCodes(data.train.n_features, data.n_codebooks, data.codebook_size,
                        n_drummers=data.vocab["drummer_id"], n_kits=data.vocab["kit_id"],
                        n_styles=data.vocab["style_id"], d_model=d_model, n_layers=n_layers,
                        n_heads=n_heads, dropout=dropout, max_frames=data.max_frames,
                        ar_codebooks=ar_codebooks)
    model.set_feature_scale(data.train.feature_abs_max())
    model.to(dev)
    train_module: nn.Module = model
    if info.enabled:
        train_module = nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None)
    optimizer = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98))
    scheduler = make_scheduler(optimizer, warmup_steps=warmup_steps, total_steps=steps)
    patience = None if early_stop_steps is None else max(1, math.ceil(early_stop_steps / eval_every))
    stopper = EarlyStopping(patience=patience, min_delta=0.0, mode="min", verbose=False) \
        if patience is not None else None
    return State(model, train_module, optimizer, scheduler, stopper)


def _train_loader(train_ds: CacheDataset, info: DistInfo, dev: torch.device, batch_size: int,
                  seed: int, num_workers: int) -> tuple[DataLoader, Any]:
    """The shuffled training loader (a DistributedSampler shard under torchrun) and its sampler."""
    if info.enabled:
        sampler: Any = DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank,
                                          shuffle=True, seed=seed)
        shard = len(sampler)
    else:
        sampler = torch.utils.data.RandomSampler(train_ds, generator=torch.Generator().manual_seed(seed))
        shard = len(train_ds)
    loader = DataLoader(train_ds, batch_size=batch_size, sampler=sampler, collate_fn=collate,
                        drop_last=shard >= batch_size, num_workers=num_workers,
                        persistent_workers=num_workers > 0, worker_init_fn=seed_worker,
                        pin_memory=dev.type == "cuda")
    return loader, sampler


@dataclass
class _Run:
    """A run's fixed parts: where it runs, its data, its outputs and its settings."""

    dist: DistInfo
    device: torch.device
    data: _Data
    model_name: str
    paths: dict[str, Path]
    batches: Iterator[dict[str, torch.Tensor]]
    val_rows: list[int] | None
    amp_dtype: torch.dtype | None
    monitor: str
    steps: int
    log_every: int
    eval_every: int
    lr: float
    grad_clip: float
    eval_batch_size: int
    base_meta: dict[str, Any]
    manager: CheckpointManager | None = None  # rank 0 only
    exp_logger: ExperimentLogger | None = None  # rank 0 only


def _open_outputs(run: _Run, logger: str, train_args: dict[str, Any]) -> None:
    """Rank 0: a checkpoint manager on a clean slate (old checkpoints of this name deleted) and
    the experiment logger. Every rank waits for it."""
    if run.dist.is_main:
        folder = run.paths["final"].parent
        folder.mkdir(parents=True, exist_ok=True)
        run.manager = CheckpointManager(folder, save_best_only=True, verbose=False)
        run.manager.cleanup_temp_files(run.model_name)
        old = run.manager.reset(run.model_name, delete_files=True)
        if old:
            log.warning("starting over: deleted %d old checkpoint file(s) of %r in %s",
                        len(old), run.model_name, folder)
        run.exp_logger = ExperimentLogger(logger, log_dir=folder / "logs", run_name=run.model_name,
                                          config=train_args)
    run.dist.barrier()


def _train_loop(run: _Run, st: State, progress: bool) -> None:
    """Optimizer steps until ``run.steps`` or early stopping; logs and evaluates on schedule."""
    bar = tqdm(total=run.steps, desc=f"train {run.model_name}", dynamic_ncols=True,
               disable=not (progress and run.dist.is_main))
    st.train_module.train()
    try:
        while st.step < run.steps:
            _train_step(run, st)
            bar.update(1)
            if st.step % run.log_every == 0 or st.step == run.steps:
                _log_window(run, st, bar)
            if st.step % run.eval_every and st.step != run.steps:
                continue
            if _evaluate_and_save(run, st):
                st.stopped_early = True
                log.info("%s: early stopping at step %d (%s best %.6g at step %s)", run.model_name,
                         st.step, run.monitor, st.stopper.best_score, st.stopper.best_epoch)
                break
    finally:
        bar.close()
        if run.exp_logger is not None:
            run.exp_logger.finish()


def _train_step(run: _Run, st: State) -> None:
    """One optimizer step on the next batch; adds its loss (and gradient norm) to the windows."""
    batch = _to_device(next(run.batches), run.device)
    st.optimizer.zero_grad(set_to_none=True)
    with autocast(run.device, run.amp_dtype):
        logits = st.train_module(batch["grid"], batch["drummer_id"], batch["kit_id"],
                                 batch["style_id"], codes=batch["codes"], mask=batch["mask"])
    loss = _loss(logits, batch["codes"])
    loss_value = float(loss.detach())
    if not math.isfinite(loss_value):
        raise TrainingError(f"training loss is {loss_value} at step {st.step + 1}; lower lr "
                            f"(now {run.lr}), keep grad_clip on, or check the cache for NaN")
    loss.backward()
    norm = nn.utils.clip_grad_norm_(st.model.parameters(), run.grad_clip) if run.grad_clip else None
    st.optimizer.step()
    st.scheduler.step()
    st.step += 1
    st.window_loss += loss_value
    st.window_norm += float(norm) if norm is not None else 0.0
    st.window_n += 1
    st.since_eval_loss += loss_value
    st.since_eval_n += 1


def _log_window(run: _Run, st: State, bar: Any) -> None:
    """Log the mean training loss (and gradient norm) since the last log line; reset the window."""
    stats = {"train_loss": st.window_loss / st.window_n, "lr": float(st.optimizer.param_groups[0]["lr"])}
    if run.grad_clip:
        stats["grad_norm"] = st.window_norm / st.window_n
    bar.set_postfix(loss=f"{stats['train_loss']:.4g}", refresh=False)
    log.info("%s step %d/%d: %s", run.model_name, st.step, run.steps,
             " ".join(f"{k}={v:.4g}" for k, v in stats.items()))
    if run.exp_logger is not None:
        run.exp_logger.log(stats, step=st.step)
    st.window_loss = st.window_norm = 0.0
    st.window_n = 0


def _evaluate_and_save(run: _Run, st: State) -> bool:
    """Evaluate, record, checkpoint (rank 0) and log; returns True when early stopping says stop."""
    stats = {"train_loss": st.since_eval_loss / max(1, st.since_eval_n),
             "lr": float(st.optimizer.param_groups[0]["lr"])}
    st.since_eval_loss, st.since_eval_n = 0.0, 0
    if run.data.val is not None:
        val = evaluate(st.model, run.data.val, device=run.device, indices=run.val_rows,
                       batch_size=run.eval_batch_size, amp_dtype=run.amp_dtype,
                       all_reduce=run.dist.enabled)
        stats.update({f"val_{k}": v for k, v in val.items()})
    elif run.dist.enabled:
        pair = torch.tensor([stats["train_loss"], 1.0], dtype=torch.float64, device=run.device)
        dist.all_reduce(pair)
        stats["train_loss"] = float(pair[0] / pair[1])
    st.tracker.update(stats)
    st.tracker.end_epoch(st.step)
    score = stats[run.monitor]
    st.last_stats = stats
    if math.isfinite(score) and (st.best is None or score < st.best[1][run.monitor]):
        st.best = (st.step, dict(stats))
    stop = st.stopper(score, st.step) if st.stopper is not None else False
    if run.manager is not None:
        run.manager.save_checkpoint(
            st.model, st.step, score, st.optimizer, metadata={**run.base_meta, "metrics": stats},
            model_name=run.model_name, scheduler=st.scheduler, early_stopping=st.stopper,
            extra={"metrics_history": st.tracker.state_dict()})
        st.tracker.save_to_json(run.paths["metrics"])
    if run.exp_logger is not None:
        run.exp_logger.log(stats, step=st.step)
    log.info("%s eval at step %d: %s", run.model_name, st.step,
             " ".join(f"{k}={v:.4g}" for k, v in stats.items() if "_cb" not in k))
    return stop


def _summary(run: _Run, st: State, features: str, ar_codebooks: bool) -> dict[str, Any]:
    """What :func:`train_model` returns (and rank 0 writes to ``<stem>_summary.json``)."""
    paths, best, data = run.paths, st.best, run.data
    return {
        "save_path": str(paths["final"]), "best_checkpoint": str(paths["best"]),
        "last_checkpoint": str(paths["last"]), "metrics_path": str(paths["metrics"]),
        "features": features, "ar_codebooks": bool(ar_codebooks), "monitor": run.monitor,
        "steps_run": st.step, "steps": run.steps, "stopped_early": st.stopped_early,
        "best_step": None if best is None else best[0],
        "best_score": None if best is None else best[1][run.monitor],
        "best_val_loss": None if best is None else best[1].get("val_loss"),
        "best_metrics": {} if best is None else best[1], "final_metrics": st.last_stats,
        "history": st.tracker.state_dict()["history"], "n_params": int(st.n_params),
        "device": str(run.device), "world_size": run.dist.world_size,
        "train_rows": len(data.train), "val_rows": 0 if data.val is None else len(data.val),
    }
