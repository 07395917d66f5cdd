"""Train the four music models (emotion, melody, dynamics, groove) with the shared toolkit.

Each model uses its real dataset under ``--datasets-dir`` when the folder holds usable files
(``python -m training.music.download_datasets --organize`` makes them) and otherwise its synthetic
one, with a loud warning. Checkpoints, metrics and ``--resume`` per model. Example::

    python -m training.music.train_all_models --synthetic --epochs 3    # smoke test, CPU
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: make the repository importable
    import sys
    from pathlib import Path as _P

    sys.path[0] = str(_P(__file__).resolve().parents[2])

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ALL_MODELS = ("emotion", "melody", "dynamics", "groove")


@dataclass
class ModelRun:
    """What one model's training did (one row of the closing table and of ``summary.json``)."""

    model: str
    data: str  # "real" | "synthetic" | "synthetic (fallback: …)"
    train_items: int
    val_items: int
    skipped_files: int
    epochs_run: int
    first_val_loss: float | None
    best_val_loss: float | None
    best_epoch: int | None
    stopped_early: bool
    best_checkpoint: str | None
    seconds: float
    split: str = "random"  # "official (<metadata file>)" | "random"
    test_items: int = 0  # official test items, held out of training and validation


def load_data(name: str, datasets_dir: Path, *, synthetic: bool, synthetic_items: int, seed: int,
              workers: int, progress: bool) -> tuple[Any, str, int]:
    """The dataset for ``name``: real when present and usable, else synthetic (with the reason)."""
    from training.music.data_loaders import MusicDatasetError
    from training.music.layout import describe_folders, find_data_root
    from training.music.models import MODEL_REGISTRY

    spec = MODEL_REGISTRY[name]
    if synthetic:
        return spec.dataset_cls.synthetic(n=synthetic_items, seed=seed), "synthetic", 0
    root = find_data_root(datasets_dir, name)
    if not root.is_dir():
        reason = f"{describe_folders(datasets_dir, name)} not found"
    else:
        try:
            ds = spec.dataset_cls(root, workers=workers, progress=progress)
            if len(ds) >= 2:
                for path, why in ds.skipped[:5]:
                    log.warning("%s: skipped %s (%s)", name, path, why)
                return ds, "real", len(ds.skipped)
            reason = f"only {len(ds)} usable item(s) in {root}"
        except MusicDatasetError as exc:
            reason = str(exc).splitlines()[0]
    print(f"WARNING: {name}: no usable real data ({reason}); training on SYNTHETIC data instead. "
          f"Run `python -m training.music.download_datasets --datasets "
          f"{ {'emotion': 'deam', 'melody': 'lakh', 'dynamics': 'maestro', 'groove': 'groove'}[name] } "
          f"--organize` to get it.", file=sys.stderr)
    return spec.dataset_cls.synthetic(n=synthetic_items, seed=seed), f"synthetic (fallback: {reason})", 0


def make_split(ds: Any, *, val_split: float, seed: int) -> tuple[Any, Any, int, str]:
    """``(train, validation, test item count, how)``: the dataset's official split when its
    metadata is there (MAESTRO ``maestro-v*.csv``, Groove ``info.csv``), else a seeded random one."""
    from torch.utils.data import Subset

    from training.core import split_dataset
    from training.music.layout import official_split

    official = official_split(getattr(ds, "root", None), getattr(ds, "keys", []))
    if official is not None:
        how = f"official ({official.source.name})"
        log.info("%s: %s split: %d train, %d validation, %d test (held out)", getattr(ds, "NAME", "?"),
                 how, len(official.train), len(official.validation), len(official.test))
        return Subset(ds, official.train), Subset(ds, official.validation), len(official.test), how
    name = getattr(ds, "NAME", "?")
    if getattr(ds, "root", None) is not None:
        level = logging.WARNING if name in ("dynamics", "groove") else logging.INFO  # these ship one
        log.log(level, "%s: no official split metadata (maestro-v*.csv / info.csv) in %s; using a random "
                "%.0f %% validation split (seed %d)", name, ds.root, 100 * val_split, seed)
    train_set, val_set = split_dataset(ds, val_split=val_split, shuffle=True, seed=seed)
    return train_set, val_set, 0, "random"


def train_one(name: str, args: argparse.Namespace, device: Any) -> ModelRun:
    """Split, build, fit and checkpoint one model."""
    import torch
    from torch.utils.data import DataLoader

    from training.music.models import MODEL_REGISTRY, build_loss, build_model
    from training.core import CheckpointManager, EarlyStopping, ExperimentLogger, fit, seed_everything, seed_worker

    t0 = time.perf_counter()
    seed_everything(args.seed)
    ds, source, skipped = load_data(name, args.datasets_dir, synthetic=args.synthetic,
                                    synthetic_items=args.synthetic_items, seed=args.seed,
                                    workers=args.workers, progress=not args.no_progress)
    train_set, val_set, test_items, split = make_split(ds, val_split=args.val_split, seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, generator=gen,
                              num_workers=args.loader_workers, worker_init_fn=seed_worker,
                              drop_last=len(train_set) > args.batch_size)
    val_loader = DataLoader(val_set, batch_size=args.batch_size, num_workers=args.loader_workers)
    model = build_model(name, ds.feature_dim, ds.target_dim)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5,
                                                           patience=max(1, args.patience // 3))
    out = args.output / name
    config = {"model": name, "data": source, "split": split, "feature_dim": ds.feature_dim,
              "target_dim": ds.target_dim,
              "target": getattr(ds, "target_description", ""), **{k: str(v) for k, v in vars(args).items()}}
    with ExperimentLogger(args.logger, log_dir=out / "runs", project="enc-hf-workflow-music",
                          run_name=name, config=config) as logger:
        history = fit(model, train_loader, val_loader, build_loss(MODEL_REGISTRY[name].loss), optimizer,
                      epochs=args.epochs, device=device,
                      checkpoint_manager=CheckpointManager(out / "checkpoints", save_best_only=True),
                      early_stopping=EarlyStopping(patience=args.patience, min_delta=args.min_delta),
                      logger=logger, scheduler=scheduler, resume=args.resume, overwrite=args.overwrite,
                      model_name=name, metadata={"data": source, "target": config["target"]},
                      metrics_path=out / "metrics.json", progress=not args.no_progress)
    val = history.get("val_loss", [])
    return ModelRun(
        model=name, data=source, train_items=len(train_set), val_items=len(val_set), skipped_files=skipped,
        epochs_run=len(val), first_val_loss=float(val[0]) if val else None,
        best_val_loss=history.best_score, best_epoch=history.best_epoch,
        stopped_early=history.stopped_early,
        best_checkpoint=str(history.best_checkpoint) if history.best_checkpoint else None,
        seconds=round(time.perf_counter() - t0, 2), split=split, test_items=test_items,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.music.train_all_models", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets-dir", type=Path, default=Path("datasets"),
                   help="root of the organised datasets (default: datasets/)")
    p.add_argument("--output", type=Path, default=Path("outputs/music"),
                   help="where checkpoints, metrics and plots go (default: outputs/music/)")
    p.add_argument("--models", default=",".join(ALL_MODELS),
                   help=f"comma list of models to train (default: all: {','.join(ALL_MODELS)})")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu (a missing GPU is an error)")
    p.add_argument("--synthetic", action="store_true", help="train every model on synthetic data")
    p.add_argument("--synthetic-items", type=int, default=512, help="items per synthetic dataset")
    p.add_argument("--val-split", type=float, default=0.2, help="validation fraction of the seeded random split, used when the data has no "
                   "official split (MAESTRO maestro-v*.csv, Groove info.csv)")
    p.add_argument("--patience", type=int, default=10, help="early-stopping patience in epochs")
    p.add_argument("--min-delta", type=float, default=1e-4, help="smallest val-loss gain that counts")
    p.add_argument("--resume", action="store_true", help="continue each model from its last checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="delete existing checkpoints of these models and start over")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--workers", type=int, default=0, help="processes for feature extraction (0: in-process)")
    p.add_argument("--loader-workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--logger", default="none", choices=("none", "auto", "wandb", "tensorboard"),
                   help="experiment tracker (wandb runs offline without an API key)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    from workflow.errors import UsageError
    from workflow.runner import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in ALL_MODELS]
    if unknown or not models:
        raise UsageError(f"unknown model(s) {unknown or models}; choose from {', '.join(ALL_MODELS)}")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite contradict each other; pick one")
    from training.core import get_device

    device = get_device(args.device)
    runs: list[ModelRun] = []
    failed: list[str] = []
    for name in models:
        print(f"\n== {name} ==", flush=True)
        try:
            runs.append(train_one(name, args, device))
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - one model's failure must not lose the others
            from training.core import TrainingError
            from workflow.errors import WorkflowError
            expected = isinstance(exc, (WorkflowError, TrainingError))
            msg = str(exc) if expected else f"{type(exc).__name__}: {exc}"
            print(f"ERROR: {name} failed: {msg}", file=sys.stderr)
            log.debug("traceback", exc_info=True)
            failed.append(name)
    args.output.mkdir(parents=True, exist_ok=True)
    from workflow.files import atomic_write_text
    atomic_write_text(args.output / "summary.json", json.dumps([asdict(r) for r in runs], indent=2) + "\n")
    print(f"\n{'model':10} {'data':10} {'train':>6} {'val':>5} {'epochs':>6} {'val loss first → best':>24}  checkpoint")
    for r in runs:
        first = f"{r.first_val_loss:.4f}" if r.first_val_loss is not None else "-"
        best = f"{r.best_val_loss:.4f}" if r.best_val_loss is not None else "-"
        print(f"{r.model:10} {r.data.split(' ')[0]:10} {r.train_items:6d} {r.val_items:5d} {r.epochs_run:6d} "
              f"{first + ' → ' + best:>24}  {r.best_checkpoint}")
    print(f"summary: {args.output / 'summary.json'}")
    return 1 if failed else 0


def cli() -> None:
    from workflow.runner import run_cli
    sys.exit(run_cli(main))


if __name__ == "__main__":
    cli()
