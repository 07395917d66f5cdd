"""The GAN training loop: SEANet autoencoder (generator) + MS-STFT discriminator.

One step, as in EnCodec: the discriminator takes a hinge step on (real, detached reconstruction);
then the generator's four losses — L1 in time (λt), multi-scale mel (λf), hinge adversarial (λg)
and feature matching (λfeat) — are combined by the gradient :class:`~.balancer.Balancer` on the
decoded audio, so each loss's share of the gradient follows its weight whatever its scale. With
``model.quantizer=rvq`` the commitment penalty is added directly to the encoder's gradient.

Uses the shared toolkit (``training/utils.py``): ``CheckpointManager`` (best by validation loss,
``autoencoder_last.pt`` for resume), ``MetricsTracker`` (JSON + PNG), ``ExperimentLogger``
(wandb / TensorBoard / none), ``EarlyStopping``, device and seeding helpers. A resumed run
continues exactly: both models, both optimizers, the balancer's EMA state, the epoch and the RNG
state are restored, and the data order depends only on (seed, epoch, index).

Multi-GPU: ``torchrun --nproc-per-node N -m training.autoencoder --1ch ...`` runs DDP; each rank
draws its own random segments (seed + rank); rank 0 validates, checkpoints and writes samples.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from training.utils import (
    CheckpointError, CheckpointManager, EarlyStopping, ExperimentLogger, MetricsTracker, get_device,
    seed_everything,
)
from workflow.errors import UsageError

from .config import model_config

log = logging.getLogger(__name__)
NAME = "autoencoder"


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the ``torchrun`` process group when launched by it (one process otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local), device


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if hasattr(m, "module") else m


# -- data ---------------------------------------------------------------------------------------------
def build_loaders(cfg: DictConfig, seed: int, device: torch.device):
    """Train/validation loaders from ``data.data_dir`` or ``data.hf_dataset`` (see ``data.py``)."""
    from . import data as D

    dc = cfg.data
    if bool(dc.data_dir) == bool(dc.hf_dataset):
        raise UsageError("give exactly one of --data-dir (data.data_dir) or --hf-dataset (data.hf_dataset)")
    if dc.data_dir:
        files = D.find_audio_files(Path(dc.data_dir), tuple(dc.extensions))
    else:
        files = D.files_from_hf_dataset(Path(dc.hf_dataset), dc.hf_split)
    kw = dict(mode=cfg.mode, channels=int(cfg.channels), sample_rate=int(cfg.sample_rate),
              segment_seconds=float(dc.segment_seconds))
    # Scan first, split after: in 32ch mode a split made before scanning could leave one side
    # with nothing but skipped (too few channels) files.
    usable, skipped = D.scan_files(files, **kw)  # logs each skipped file with its reason
    if not usable:
        raise UsageError(f"no usable {cfg.mode} audio among {len(files)} file(s); first reasons: "
                         f"{[str(w) for _, w in skipped[:3]]}")
    train_ok, val_ok = D.split_files(usable, val_fraction=dc.val_fraction, seed=cfg.train.seed)
    skipped = len(skipped)
    train_loader, val_loader = D.make_loaders(
        train_ok, val_ok, batch_size=int(cfg.optim.batch_size), num_workers=int(dc.num_workers),
        updates_per_epoch=int(cfg.optim.updates_per_epoch), n_val_segments=int(dc.n_val_segments),
        seed=seed, **kw)
    return train_loader, val_loader, {"train_files": len(train_ok), "val_files": len(val_ok), "skipped": skipped}


# -- the trainer --------------------------------------------------------------------------------------
class Trainer:
    """Holds both models, both optimizers, the losses and the balancer for one run."""

    def __init__(self, cfg: DictConfig, out_dir: Path, device: torch.device, dist: Dist):
        from .balancer import Balancer
        from .discriminator import MultiScaleSTFTDiscriminator
        from .losses import MultiScaleMelLoss
        from .model import build_autoencoder

        self.cfg, self.out, self.device, self.dist = cfg, Path(out_dir), device, dist
        self.model = build_autoencoder(model_config(cfg)).to(device)
        self.disc = MultiScaleSTFTDiscriminator(
            in_channels=int(cfg.channels), filters=int(cfg.discriminator.filters),
            n_ffts=tuple(cfg.discriminator.n_ffts)).to(device)
        if dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            ids = [device.index] if device.type == "cuda" else None
            self.model = DDP(self.model, device_ids=ids)
            self.disc = DDP(self.disc, device_ids=ids)
        betas = tuple(cfg.optim.betas)
        self.opt_g = torch.optim.Adam(self.model.parameters(), lr=float(cfg.optim.lr), betas=betas)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=float(cfg.optim.disc_lr), betas=betas)
        self.mel = MultiScaleMelLoss(sample_rate=int(cfg.sample_rate)).to(device)
        lw = cfg.losses
        self.weights = {"l1": float(lw.l1), "mel": float(lw.mel), "adv": float(lw.adv), "feat": float(lw.feat)}
        self.balancer = Balancer(self.weights, **OmegaConf.to_container(lw.balancer, resolve=True))
        self.amp = device.type == "cuda" and str(cfg.train.amp).lower() == "bf16"
        self.ckpt = CheckpointManager(self.out / "checkpoints", save_best_only=True, verbose=False)
        self.early = EarlyStopping(patience=int(cfg.train.patience), mode="min", verbose=False) \
            if cfg.train.patience else None
        self.start_epoch = 1
        self.step = 0  # generator updates so far (drives the adversarial warm-up)
        self.warmup = int(cfg.losses.get("adv_warmup_updates", 0) or 0)
        self.tracker = MetricsTracker()

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()

    # -- steps ------------------------------------------------------------------------------------
    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        from .losses import feature_matching_loss, hinge_discriminator_loss, hinge_generator_loss, l1_time

        x = x.to(self.device, non_blocking=True)
        with self._autocast():
            out = self.model(x)
        y = out.audio.float()
        # Discriminator: hinge on real vs the detached reconstruction.
        with self._autocast():
            logits_real, _ = self.disc(x)
            logits_fake, _ = self.disc(y.detach())
        d_loss = hinge_discriminator_loss([l.float() for l in logits_real], [l.float() for l in logits_fake])
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        # Generator: four balanced losses on the decoded audio (+ the RVQ commitment penalty);
        # during an optional warm-up only the two reconstruction losses.
        losses = {"l1": l1_time(y, x), "mel": self.mel(y, x)}
        if self.step >= self.warmup:
            with self._autocast():
                logits_fake, fmap_fake = self.disc(y)
                with torch.no_grad():
                    _, fmap_real = self.disc(x)
            losses["adv"] = hinge_generator_loss([l.float() for l in logits_fake])
            losses["feat"] = feature_matching_loss([[f.float() for f in s] for s in fmap_real],
                                                   [[f.float() for f in s] for s in fmap_fake])
        self.opt_g.zero_grad(set_to_none=True)
        penalty = out.penalty.float() if torch.is_tensor(out.penalty) else torch.zeros((), device=self.device)
        if penalty.requires_grad:
            penalty.backward(retain_graph=True)
        self.balancer.backward(losses, y)
        self.opt_g.step()
        self.step += 1
        m = {k: float(v.detach()) for k, v in losses.items()}
        m["d_loss"] = float(d_loss.detach())
        m["g_loss"] = sum(self.weights[k] * m[k] for k in m if k in self.weights)
        m["penalty"] = float(penalty.detach())
        for k, v in (getattr(self.balancer, "metrics", None) or {}).items():
            if isinstance(v, (int, float)) and math.isfinite(float(v)):
                m[f"balancer_{k}"] = float(v)
        for k, v in (out.metrics or {}).items():
            with contextlib.suppress(TypeError, ValueError):
                m[f"rvq_{k}"] = float(v)
        return m

    @torch.no_grad()
    def validate(self, loader) -> tuple[dict[str, float], tuple[torch.Tensor, torch.Tensor] | None]:
        """Reconstruction metrics on the fixed validation segments; returns one example pair."""
        from .losses import l1_time, si_snr

        model = _unwrap(self.model)
        was = model.training
        model.eval()
        tot: dict[str, float] = {}
        n = 0
        example = None
        for x in loader:
            x = x.to(self.device)
            with self._autocast():
                y = model(x).audio.float()
            b = x.shape[0]
            vals = {"val_l1": float(l1_time(y, x)), "val_mel": float(self.mel(y, x)),
                    "val_si_snr": float(si_snr(y, x).mean())}
            for k, v in vals.items():
                tot[k] = tot.get(k, 0.0) + v * b
            n += b
            if example is None:
                example = (x[0].cpu(), y[0].cpu())
        model.train(was)
        res = {k: v / max(n, 1) for k, v in tot.items()}
        res["val_loss"] = self.weights["l1"] * res["val_l1"] + self.weights["mel"] * res["val_mel"]
        return res, example

    # -- checkpoints ------------------------------------------------------------------------------
    def _container(self) -> nn.Module:
        return nn.ModuleDict({"generator": _unwrap(self.model), "discriminator": _unwrap(self.disc)})

    def save(self, epoch: int, score: float) -> Any:
        return self.ckpt.save_checkpoint(
            self._container(), epoch, score, optimizer=self.opt_g, model_name=NAME,
            early_stopping=self.early, metadata={"config": OmegaConf.to_container(self.cfg, resolve=True)},
            extra={"opt_d": self.opt_d.state_dict(), "balancer": self.balancer.state_dict(),
                   "history": self.tracker.state_dict(), "step": self.step})

    def maybe_resume(self, resume: bool) -> None:
        last = self.ckpt.latest_checkpoint(NAME)
        if last is None:
            if resume:
                log.warning("--resume: no checkpoint in %s; starting from scratch", self.ckpt.checkpoint_dir)
            return
        if not resume:
            raise CheckpointError(f"{self.out} already holds a training run ({last.name}); pass --resume to "
                                  "continue it, or choose another --out")
        info = self.ckpt.load_checkpoint(self._container(), last, optimizer=self.opt_g,
                                         early_stopping=self.early, map_location=self.device)
        extra = info.get("extra") or {}
        self.opt_d.load_state_dict(extra["opt_d"])
        self.balancer.load_state_dict(extra["balancer"])
        if extra.get("history"):
            self.tracker.load_state_dict(extra["history"])
        self.step = int(extra.get("step", 0))
        self.start_epoch = int(info["epoch"]) + 1
        log.info("resumed from %s at epoch %d", last, self.start_epoch)

    # -- samples ----------------------------------------------------------------------------------
    def write_sample(self, epoch: int, pair: tuple[torch.Tensor, torch.Tensor]) -> list[Path]:
        """Input vs reconstruction as wav files and a spectrogram PNG (channel 0)."""
        import soundfile as sf
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from workflow.files import atomic_path

        folder = self.out / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        sr = int(self.cfg.sample_rate)
        paths = []
        for tag, t in zip(("input", "recon"), pair):
            p = folder / f"epoch{epoch:04d}_{tag}.wav"
            with atomic_path(p) as tmp:
                sf.write(tmp, np.clip(t.numpy().T, -1, 1), sr, subtype="FLOAT")
            paths.append(p)
        fig = Figure(figsize=(10, 6))
        FigureCanvasAgg(fig)
        window = torch.hann_window(1024)
        for i, (tag, t) in enumerate(zip(("input", "reconstruction"), pair)):
            spec = torch.stft(t[0], 1024, 256, window=window, return_complex=True).abs()
            ax = fig.add_subplot(2, 1, i + 1)
            ax.imshow(20 * torch.log10(spec + 1e-5).numpy(), origin="lower", aspect="auto", cmap="magma",
                      extent=(0, t.shape[-1] / sr, 0, sr / 2 / 1000), vmin=-100, vmax=20)
            ax.set_title(f"{tag} (epoch {epoch}, channel 0)")
            ax.set_ylabel("kHz")
        fig.axes[-1].set_xlabel("seconds")
        fig.tight_layout()
        png = folder / f"epoch{epoch:04d}_spectrogram.png"
        with atomic_path(png) as tmp:
            fig.savefig(tmp, format="png", dpi=80)
        return paths + [png]


def train(cfg: DictConfig, out_dir: Path, *, resume: bool = False, device: str = "auto") -> dict[str, Any]:
    """Run (or resume) a training run into ``out_dir``; returns a summary."""
    dev = get_device(device)
    dist, dev = setup_distributed(dev)
    seed = int(cfg.train.seed)
    seed_everything(seed + dist.rank)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_loader, val_loader, data_info = build_loaders(cfg, seed + dist.rank, dev)
    t = Trainer(cfg, out, dev, dist)
    t.maybe_resume(resume)
    if dist.main:
        (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    epochs = int(cfg.optim.epochs)
    logger = ExperimentLogger(str(cfg.train.logger) if dist.main else "none", log_dir=out / "runs",
                              project="enc-hf-workflow-autoencoder", run_name=out.name,
                              config=OmegaConf.to_container(cfg, resolve=True))
    initial = None
    if dist.main and t.start_epoch == 1:
        initial, _ = t.validate(val_loader)  # the untrained baseline every later epoch is compared to
        print(f"epoch 0 (untrained): val_loss {initial['val_loss']:.4f}  mel {initial['val_mel']:.4f}", flush=True)
    t0 = time.perf_counter()
    with logger:
        for epoch in range(t.start_epoch, epochs + 1):
            ds = train_loader.dataset
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(epoch)
            if hasattr(train_loader.sampler, "set_epoch"):
                train_loader.sampler.set_epoch(epoch)
            bar = tqdm(train_loader, desc=f"epoch {epoch}/{epochs}", unit="step", leave=False,
                       disable=not (cfg.train.progress and dist.main), dynamic_ncols=True)
            for x in bar:
                m = t.train_step(x)
                t.tracker.update(m, n=x.shape[0])
                bar.set_postfix(mel=f"{m['mel']:.3f}", d=f"{m['d_loss']:.3f}", refresh=False)
            if dist.world > 1:
                torch.distributed.barrier()
            if dist.main:
                val, example = t.validate(val_loader)
                t.tracker.update(val)
                stats = t.tracker.end_epoch(epoch)
                logger.log(stats, step=epoch)
                if example is not None and cfg.train.sample_every and epoch % int(cfg.train.sample_every) == 0:
                    t.write_sample(epoch, example)
                saved = t.save(epoch, val["val_loss"])
                t.tracker.save_to_json(out / "metrics.json")
                with contextlib.suppress(Exception):
                    t.tracker.plot_metrics(["val_loss", "val_mel", "val_l1"], save_path=out / "metrics.png")
                log.info("epoch %d: %s%s", epoch, json.dumps({k: round(v, 5) for k, v in val.items()}),
                         " (best)" if getattr(saved, "is_best", False) else "")
                print(f"epoch {epoch}/{epochs}: val_loss {val['val_loss']:.4f}  mel {val['val_mel']:.4f}  "
                      f"SI-SNR {val['val_si_snr']:.2f} dB  d_loss {stats.get('d_loss', float('nan')):.3f}",
                      flush=True)
                if t.early is not None and t.early(val["val_loss"], epoch):
                    print(f"early stopping at epoch {epoch}")
                    break
            if dist.world > 1:
                torch.distributed.barrier()
    return {"epochs": t.tracker.get_history("val_loss"), "out": str(out), "data": data_info,
            "initial_val_loss": initial["val_loss"] if initial else None,
            "best_checkpoint": str(t.ckpt.best_path(NAME)) if hasattr(t.ckpt, "best_path") else None,
            "seconds": time.perf_counter() - t0, "start_epoch": t.start_epoch}
