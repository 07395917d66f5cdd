"""The GAN training loop: SEANet autoencoder (generator) + MS-STFT discriminator.

One step as in EnCodec: a hinge step of the discriminator, then the generator's four losses
combined by the gradient :class:`~.balancer.Balancer` on the decoded audio. Checkpoints, metrics,
logging and early stopping come from ``training/core``; a run's mutable state is one
:class:`State`, so a resume continues exactly. DDP under torchrun; progress goes to ``report``
(never stdout). Details: README.md, "SEANet autoencoder with MS-STFT GAN".
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from training.core import (
    CheckpointError, CheckpointManager, EarlyStopping, ExperimentLogger, MetricsTracker, get_device,
    seed_everything,
)
from training.core.dist import DistInfo, autocast, autocast_dtype, init_distributed
from workflow.errors import UsageError

from .config import mel_settings, model_config

if TYPE_CHECKING:  # pragma: no cover
    from .balancer import Balancer
    from .ema import ModelEMA

log = logging.getLogger(__name__)
NAME = "autoencoder"


def _unwrap(m: nn.Module) -> nn.Module:
    return m.module if hasattr(m, "module") else m


def sync_buffers(module: nn.Module, src: int = 0) -> None:
    """Give every rank rank ``src``'s buffers (the RVQ codebooks, which each rank's forward updates
    from its own batch), so all ranks quantise alike and a checkpoint is every rank's state."""
    import torch.distributed as tdist

    for b in module.buffers():
        tdist.broadcast(b, src)


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
@dataclass
class State:
    """Everything a run mutates, saved in and restored from ``autoencoder_last.pt``.

    The global RNG states travel with the checkpoint too (restored by ``load_checkpoint``).
    """

    model: nn.Module  # the generator (DDP-wrapped under torchrun)
    disc: nn.Module  # the MS-STFT discriminator (DDP-wrapped under torchrun)
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    balancer: Balancer
    early: EarlyStopping | None
    tracker: MetricsTracker
    step: int = 0  # generator updates so far (drives the adversarial warm-up)
    start_epoch: int = 1  # the first epoch this process runs (> 1 after a resume)
    initial_val_loss: float | None = None  # the untrained baseline (a fresh run only)
    ema: ModelEMA | None = None  # the generator's weight EMA (optim.ema), used for validation


def build_state(cfg: DictConfig, device: torch.device, dist: DistInfo) -> State:
    """Fresh models, optimizers, balancer, early stopping and history for ``cfg``."""
    from .balancer import Balancer
    from .discriminator import MultiScaleSTFTDiscriminator
    from .ema import ModelEMA
    from .model import build_autoencoder

    model: nn.Module = build_autoencoder(model_config(cfg)).to(device)
    disc: nn.Module = MultiScaleSTFTDiscriminator(
        in_channels=int(cfg.channels), filters=int(cfg.discriminator.filters),
        n_ffts=tuple(cfg.discriminator.n_ffts),
        negative_slope=float(cfg.discriminator.get("negative_slope", 0.2))).to(device)
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP
        ids = [device.index] if device.type == "cuda" else None
        # The generator's buffers (RVQ codebooks) are synchronised after each step instead of
        # before each forward (see Trainer.train_step and sync_buffers), and once here.
        sync_buffers(model)
        no_forward_sync = ({"forward_sync_buffers": False}  # torch >= 2.13's name
                           if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
                           else {"broadcast_buffers": False})
        model = DDP(model, device_ids=ids, **no_forward_sync)
        disc = DDP(disc, device_ids=ids)
    ema_cfg = cfg.optim.get("ema") or {}
    ema = ModelEMA(_unwrap(model), float(ema_cfg.get("decay", 0.99))) if ema_cfg.get("use", False) else None
    betas = tuple(cfg.optim.betas)
    lw = cfg.losses
    return State(
        model=model, disc=disc,
        opt_g=torch.optim.Adam(model.parameters(), lr=float(cfg.optim.lr), betas=betas),
        opt_d=torch.optim.Adam(disc.parameters(), lr=float(cfg.optim.disc_lr), betas=betas),
        balancer=Balancer(_loss_weights(cfg), **OmegaConf.to_container(lw.balancer, resolve=True)),
        early=EarlyStopping(patience=int(cfg.train.patience), mode="min", verbose=False)
        if cfg.train.patience else None,
        tracker=MetricsTracker(), ema=ema)


def _loss_weights(cfg: DictConfig) -> dict[str, float]:
    lw = cfg.losses
    return {"l1": float(lw.l1), "mel": float(lw.mel), "adv": float(lw.adv), "feat": float(lw.feat)}


def amp_dtype(cfg: DictConfig, device: torch.device) -> torch.dtype | None:
    """bf16 when ``train.amp=bf16`` on CUDA, else None (float32); see :mod:`workflow.dist`."""
    return autocast_dtype(device, "bf16" if str(cfg.train.amp).lower() == "bf16" else "fp32")


class Trainer:
    """One run: its fixed parts (config, device, losses, checkpoints) and its :class:`State`."""

    def __init__(self, cfg: DictConfig, out_dir: Path, device: torch.device,
                 dist: DistInfo | None = None):
        from .losses import MultiScaleMelLoss

        self.cfg, self.out, self.device = cfg, Path(out_dir), device
        self.dist = dist if dist is not None else DistInfo()
        self.state = build_state(cfg, device, self.dist)
        self.mel = MultiScaleMelLoss(sample_rate=int(cfg.sample_rate), **mel_settings(cfg)).to(device)
        self.weights = _loss_weights(cfg)
        self.amp_dtype = amp_dtype(cfg, device)
        self.ckpt = CheckpointManager(self.out / "checkpoints", save_best_only=True, verbose=False)
        self.warmup = int(cfg.losses.get("adv_warmup_updates", 0) or 0)
        self.adv_form = str(cfg.losses.get("adv_loss", "hinge2"))

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.device, self.amp_dtype)

    # -- steps ------------------------------------------------------------------------------------
    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        from .losses import feature_matching_loss, generator_adversarial_loss, hinge_discriminator_loss, l1_time

        st = self.state
        x = x.to(self.device, non_blocking=True)
        with self._autocast():
            out = st.model(x)
        y = out.audio.float()
        # Discriminator: hinge on real vs the detached reconstruction.
        with self._autocast():
            logits_real, _ = st.disc(x)
            logits_fake, _ = st.disc(y.detach())
        d_loss = hinge_discriminator_loss([l.float() for l in logits_real], [l.float() for l in logits_fake])
        st.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        st.opt_d.step()
        # Generator: four balanced losses on the decoded audio (+ the RVQ commitment penalty);
        # during an optional warm-up only the two reconstruction losses.
        losses = {"l1": l1_time(y, x), "mel": self.mel(y, x)}
        if st.step >= self.warmup:
            with self._autocast():
                logits_fake, fmap_fake = st.disc(y)
                with torch.no_grad():
                    _, fmap_real = st.disc(x)
            losses["adv"] = generator_adversarial_loss([l.float() for l in logits_fake], self.adv_form)
            losses["feat"] = feature_matching_loss([[f.float() for f in s] for s in fmap_real],
                                                   [[f.float() for f in s] for s in fmap_fake])
        st.opt_g.zero_grad(set_to_none=True)
        penalty = out.penalty.float() if torch.is_tensor(out.penalty) else torch.zeros((), device=self.device)
        st.balancer.backward(losses, y, extra=penalty)  # one backward pass: DDP marks each parameter once
        st.opt_g.step()
        if self.dist.enabled:
            sync_buffers(_unwrap(st.model))
        if st.ema is not None:
            st.ema.update(_unwrap(st.model))
        st.step += 1
        m = {k: float(v.detach()) for k, v in losses.items()}
        m["d_loss"] = float(d_loss.detach())
        m["g_loss"] = sum(self.weights[k] * m[k] for k in m if k in self.weights)
        m["penalty"] = float(penalty.detach())
        for k, v in (getattr(st.balancer, "metrics", None) or {}).items():
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

        model = self.eval_model()
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
            mel_terms = {f"val_mel_n{k}": float(v) for k, v in self.mel.terms(y, x).items()}
            vals = {"val_l1": float(l1_time(y, x)), "val_mel": sum(mel_terms.values()),
                    "val_si_snr": float(si_snr(y, x).mean()), **mel_terms}
            for k, v in vals.items():
                tot[k] = tot.get(k, 0.0) + v * b
            n += b
            if example is None:
                example = (x[0].cpu(), y[0].cpu())
        model.train(was)
        res = {k: v / max(n, 1) for k, v in tot.items()}
        # The selection metric (best checkpoint, early stopping): val_loss = λt·val_l1 + λf·val_mel,
        # logged term by term (val_loss_l1, val_loss_mel; val_mel_n<n_fft> splits the mel term).
        res["val_loss_l1"] = self.weights["l1"] * res["val_l1"]
        res["val_loss_mel"] = self.weights["mel"] * res["val_mel"]
        res["val_loss"] = res["val_loss_l1"] + res["val_loss_mel"]
        return res, example

    def eval_model(self) -> nn.Module:
        """The generator that validation, samples and the best checkpoint's score use: the EMA
        weights when ``optim.ema.use``, else the trained ones."""
        st = self.state
        return st.ema.module if st.ema is not None else _unwrap(st.model)

    # -- checkpoints ------------------------------------------------------------------------------
    def _container(self) -> nn.Module:
        st = self.state
        parts = {"generator": _unwrap(st.model), "discriminator": _unwrap(st.disc)}
        if st.ema is not None:
            parts["generator_ema"] = st.ema.module
        return nn.ModuleDict(parts)

    def save(self, epoch: int, score: float) -> Any:
        st = self.state
        return self.ckpt.save_checkpoint(
            self._container(), epoch, score, optimizer=st.opt_g, model_name=NAME,
            early_stopping=st.early, metadata={"config": OmegaConf.to_container(self.cfg, resolve=True)},
            extra={"opt_d": st.opt_d.state_dict(), "balancer": st.balancer.state_dict(),
                   "history": st.tracker.state_dict(), "step": st.step,
                   **({"ema": st.ema.state_dict()} if st.ema is not None else {})})

    def maybe_resume(self, resume: bool) -> None:
        st = self.state
        last = self.ckpt.latest_checkpoint(NAME)
        if last is None:
            if resume:
                log.warning("--resume: no checkpoint in %s; starting from scratch", self.ckpt.checkpoint_dir)
            return
        if not resume:
            raise CheckpointError(f"{self.out} already holds a training run ({last.name}); pass --resume to "
                                  "continue it, or choose another --out")
        info = self.ckpt.load_checkpoint(self._container(), last, optimizer=st.opt_g,
                                         early_stopping=st.early, map_location=self.device)
        extra = info.get("extra") or {}
        st.opt_d.load_state_dict(extra["opt_d"])
        st.balancer.load_state_dict(extra["balancer"])
        if extra.get("history"):
            st.tracker.load_state_dict(extra["history"])
        st.step = int(extra.get("step", 0))
        if st.ema is not None:
            st.ema.load_state_dict(extra["ema"])
        st.start_epoch = int(info["epoch"]) + 1
        log.info("resumed from %s at epoch %d", last, st.start_epoch)

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


Report = Callable[[str], None]


def train(cfg: DictConfig, out_dir: Path, *, resume: bool = False, device: str = "auto",
          report: Report | None = None) -> dict[str, Any]:
    """Run (or resume) a training run into ``out_dir``; returns a summary.

    ``report`` receives the per-epoch progress lines (rank 0 only); default ``log.info``. The CLI
    passes ``print`` so they appear on the console.
    """
    report = report or log.info
    dev = get_device(device)
    dist, dev = init_distributed(dev)
    seed = int(cfg.train.seed)
    seed_everything(seed + dist.rank)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_loader, val_loader, data_info = build_loaders(cfg, seed + dist.rank, dev)
    t = Trainer(cfg, out, dev, dist)
    t.maybe_resume(resume)
    st = t.state
    if dist.is_main:
        (out / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    logger = ExperimentLogger(str(cfg.train.logger) if dist.is_main else "none", log_dir=out / "runs",
                              project="enc-hf-workflow-autoencoder", run_name=out.name,
                              config=OmegaConf.to_container(cfg, resolve=True))
    if dist.is_main and st.start_epoch == 1:
        initial, _ = t.validate(val_loader)  # the untrained baseline every later epoch is compared to
        st.initial_val_loss = initial["val_loss"]
        report(f"epoch 0 (untrained): val_loss {initial['val_loss']:.4f}  mel {initial['val_mel']:.4f}")
    t0 = time.perf_counter()
    with logger:
        for epoch in range(st.start_epoch, int(cfg.optim.epochs) + 1):
            run_epoch(t, train_loader, epoch)
            dist.barrier()
            stop = dist.is_main and end_epoch(t, val_loader, logger, epoch, report)
            if _all_stop(stop, dist, dev):
                break
    return {"epochs": st.tracker.get_history("val_loss"), "out": str(out), "data": data_info,
            "initial_val_loss": st.initial_val_loss, "best_checkpoint": str(t.ckpt.best_path(NAME)),
            "seconds": time.perf_counter() - t0, "start_epoch": st.start_epoch}


def _all_stop(stop: bool, dist: DistInfo, device: torch.device) -> bool:
    """Rank 0's early-stopping decision, shared with every rank (so all leave the loop together)."""
    if not dist.enabled:
        return stop
    flag = torch.tensor([1.0 if stop else 0.0], device=device)
    torch.distributed.broadcast(flag, src=0)  # also the end-of-epoch synchronisation point
    return bool(flag.item())


def run_epoch(t: Trainer, train_loader: Any, epoch: int) -> None:
    """One epoch of training steps (every rank), accumulated into the state's tracker."""
    ds = train_loader.dataset
    if hasattr(ds, "set_epoch"):
        ds.set_epoch(epoch)
    if hasattr(train_loader.sampler, "set_epoch"):
        train_loader.sampler.set_epoch(epoch)
    epochs = int(t.cfg.optim.epochs)
    bar = tqdm(train_loader, desc=f"epoch {epoch}/{epochs}", unit="step", leave=False,
               disable=not (t.cfg.train.progress and t.dist.is_main), dynamic_ncols=True)
    for x in bar:
        m = t.train_step(x)
        t.state.tracker.update(m, n=x.shape[0])
        bar.set_postfix(mel=f"{m['mel']:.3f}", d=f"{m['d_loss']:.3f}", refresh=False)


def end_epoch(t: Trainer, val_loader: Any, logger: ExperimentLogger, epoch: int, report: Report) -> bool:
    """Rank 0 after an epoch: validate, log, write a sample, checkpoint, save the metrics files.
    Returns True when early stopping ends the run."""
    st, out = t.state, t.out
    val, example = t.validate(val_loader)
    if _unwrap(st.model).quantizer is not None:  # codec-grade metrics per bandwidth and codebook level
        from .evaluate import evaluate_bandwidths, flat_metrics, write_bandwidth_report

        bw_report = evaluate_bandwidths(t.eval_model(), val_loader, t.device)  # the EMA weights when on
        write_bandwidth_report(bw_report, out, epoch)
        val.update(flat_metrics(bw_report))
    st.tracker.update(val)
    stats = st.tracker.end_epoch(epoch)
    logger.log(stats, step=epoch)
    every = t.cfg.train.sample_every
    if example is not None and every and epoch % int(every) == 0:
        t.write_sample(epoch, example)
    saved = t.save(epoch, val["val_loss"])
    st.tracker.save_to_json(out / "metrics.json")
    with contextlib.suppress(Exception):
        per_bw = [k for k in val if k.startswith("val_nq") and k.endswith("_mel")]
        st.tracker.plot_metrics(["val_loss", "val_mel", "val_l1", *per_bw], save_path=out / "metrics.png")
    log.info("epoch %d: %s%s", epoch, json.dumps({k: round(v, 5) for k, v in val.items()}),
             " (best)" if getattr(saved, "is_best", False) else "")
    report(f"epoch {epoch}/{int(t.cfg.optim.epochs)}: val_loss {val['val_loss']:.4f}  "
           f"mel {val['val_mel']:.4f}  SI-SNR {val['val_si_snr']:.2f} dB  "
           f"d_loss {stats.get('d_loss', float('nan')):.3f}")
    if st.early is not None and st.early(val["val_loss"], epoch):
        report(f"early stopping at epoch {epoch}")
        return True
    return False
