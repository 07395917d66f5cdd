"""Reconstruction, adversarial and evaluation losses of the EnCodec recipe (torch only, no torchaudio).

``L_G = λt·l1_time + λf·mel + λg·hinge_generator + λfeat·feature_matching`` (Défossez et al.,
2022, §3.4), the λ applied by :class:`training.autoencoder.balancer.Balancer`. The mel loss follows
AudioCraft's ``MultiScaleMelSpectrogramLoss`` (the code EnCodec was trained with), not the paper's
text; ``range_`` is inclusive. Every formula, its source, and why empty mel filters are kept:
README.md, "SEANet autoencoder with MS-STFT GAN", **Losses**.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from typing import Any

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.utils import BatchError

__all__ = [
    "LossInputError",
    "MEL_PRESETS",
    "MelSpectrogram",
    "MultiScaleMelLoss",
    "feature_matching_loss",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "l1_time",
    "mel_distance",
    "mel_loss_settings",
    "si_snr",
    "stft_distance",
]


class LossInputError(BatchError, ValueError):
    """Tensors given to a loss or metric have mismatched shapes, or lists have mismatched lengths."""


def _check_same_shape(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise LossInputError(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}; "
                             "estimate and reference must be aligned and of equal length")
    if a.dim() == 0 or a.shape[-1] == 0:
        raise LossInputError(f"{what}: needs at least one sample on the last (time) axis, got {tuple(a.shape)}")


def l1_time(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between two waveforms (EnCodec's time-domain reconstruction term)."""
    _check_same_shape(x, y, "l1_time")
    return F.l1_loss(x, y)


# ---------------------------------------------------------------------------------------------
# Mel spectrograms


@functools.lru_cache(maxsize=64)
def _mel_filters(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None) -> np.ndarray:
    """librosa's HTK mel filter bank without area normalisation ``[n_mels, n_fft // 2 + 1]`` (cached)."""
    with warnings.catch_warnings():
        # "Empty filters detected": expected at small n_fft, documented in the module docstring.
        warnings.simplefilter("ignore", UserWarning)
        fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max,
                                 htk=True, norm=None, dtype=np.float32)
    fb.setflags(write=False)
    return fb


def _pad_to_full_frames(x: torch.Tensor, n_fft: int, hop_length: int) -> torch.Tensor:
    """Pad ``[M, N]`` so a non-centred STFT yields ``ceil(N / hop)`` frames covering every sample.

    Reflect-pads ``(n_fft − hop) // 2`` on both sides (zeros when the signal is too short to
    reflect), then zero-pads the end so the last frame is complete.
    """
    p = (n_fft - hop_length) // 2
    if p > 0:
        x = F.pad(x.unsqueeze(1), (p, p), mode="reflect" if x.shape[-1] > p else "constant").squeeze(1)
    length = x.shape[-1]
    frames = max(1, math.ceil((length - n_fft) / hop_length) + 1)
    extra = (frames - 1) * hop_length + n_fft - length
    return F.pad(x, (0, extra)) if extra > 0 else x


class MelSpectrogram(nn.Module):
    """Mel power spectrogram from ``torch.stft`` and a librosa filter bank (registered buffers).

    ``forward(x [..., N]) -> [..., n_mels, frames]`` with ``frames = ceil(N / hop_length)``.
    ``normalized=True`` divides the STFT by the window's L2 norm (torchaudio's "window" mode).
    """

    def __init__(self, sample_rate: int = 24000, n_fft: int = 1024, hop_length: int | None = None,
                 win_length: int | None = None, n_mels: int = 64, f_min: float = 0.0, f_max: float | None = None,
                 normalized: bool = False) -> None:
        super().__init__()
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length) if hop_length is not None else self.n_fft // 4
        self.win_length = int(win_length) if win_length is not None else self.n_fft
        if self.hop_length <= 0 or not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"need hop_length > 0 and 0 < win_length <= n_fft, got hop={self.hop_length}, "
                             f"win={self.win_length}, n_fft={self.n_fft}")
        self.n_mels = int(n_mels)
        self.normalized = normalized
        fb = torch.from_numpy(np.array(_mel_filters(int(sample_rate), self.n_fft, self.n_mels, float(f_min),
                                                    None if f_max is None else float(f_max))))
        self.empty_filters = int((fb.max(dim=1).values == 0).sum())
        # Constants derived from the arguments: not persistent, so checkpoints don't carry them.
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        self.register_buffer("mel_fb", fb, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Waveform(s) ``[..., N]`` → mel power ``[..., n_mels, frames]`` (float32 or float64)."""
        lead, n = x.shape[:-1], x.shape[-1]
        work = x if x.dtype == torch.float64 else x.float()
        with torch.autocast(device_type=x.device.type, enabled=False):
            frames = _pad_to_full_frames(work.reshape(-1, n), self.n_fft, self.hop_length)
            window = self.window.to(work.dtype)
            spec = torch.stft(frames, n_fft=self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                              window=window, center=False, return_complex=True)
            power = spec.real.square() + spec.imag.square()
            if self.normalized:
                power = power / window.square().sum()
            mel = torch.matmul(self.mel_fb.to(work.dtype), power)
        return mel.reshape(*lead, self.n_mels, mel.shape[-1])


class MultiScaleMelLoss(nn.Module):
    """EnCodec/AudioCraft multi-scale mel reconstruction loss (formula in the module docstring).

    ``range_`` is the inclusive range of exponents ``i`` (n_fft = 2**i, hop n_fft // 4).
    ``forward(x, y)`` takes equal-shape waveforms ``[..., N]`` (e.g. ``[B, C, N]``; channels
    become batch items) and returns a scalar.
    """

    def __init__(self, sample_rate: int = 24000, n_mels: int = 64, range_: tuple[int, int] = (6, 11),
                 alphas: bool = True, normalized: bool = False, floor_level: float = 1e-5, f_min: float = 0.0,
                 f_max: float | None = None) -> None:
        super().__init__()
        lo, hi = int(range_[0]), int(range_[1])
        if not 1 <= lo <= hi:
            raise ValueError(f"range_ must be (lo, hi) with 1 <= lo <= hi (exponents of 2, inclusive), got {range_}")
        if floor_level <= 0:
            raise ValueError(f"floor_level must be > 0 (it keeps log10 finite), got {floor_level}")
        self.exponents = list(range(lo, hi + 1))
        self.floor_level = float(floor_level)
        self.normalized = normalized
        self.alphas = [math.sqrt(2 ** i - 1) if alphas else 1.0 for i in self.exponents]
        self.total = sum(a + 1.0 for a in self.alphas)
        self.mels = nn.ModuleList([
            MelSpectrogram(sample_rate, n_fft=2 ** i, hop_length=2 ** i // 4, win_length=2 ** i, n_mels=n_mels,
                           f_min=f_min, f_max=f_max, normalized=normalized)
            for i in self.exponents
        ])

    def terms(self, x: torch.Tensor, y: torch.Tensor) -> dict[int, torch.Tensor]:
        """Each scale's share of :meth:`forward`, keyed by n_fft (they sum to the loss)."""
        _check_same_shape(x, y, "MultiScaleMelLoss")
        n = x.shape[-1]
        both = torch.cat([x.reshape(-1, n), y.reshape(-1, n)])
        m = x.numel() // n
        out = {}
        for alpha, mel in zip(self.alphas, self.mels):
            spec = mel(both)
            sx, sy = spec[:m], spec[m:]
            l1 = (sx - sy).abs().mean()
            log_diff = torch.log10(sx + self.floor_level) - torch.log10(sy + self.floor_level)
            term = l1 + alpha * log_diff.square().mean()
            out[mel.n_fft] = term / self.total if self.normalized else term
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Loss between estimate ``x`` and reference ``y`` (scalar, float32)."""
        return torch.stack(list(self.terms(x, y).values())).sum()


# The two named settings of ``losses.mel_loss.preset`` (values and sources: configs/autoencoder/
# base.yaml and README.md, "Losses"); ``scales`` are inclusive exponents, n_fft = 2**i.
MEL_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"scales": (5, 11), "alphas": False, "normalized": True, "f_min": 0.0, "n_mels": 64},
    "audiocraft": {"scales": (6, 10), "alphas": False, "normalized": True, "f_min": 64.0, "n_mels": 64},
}


def mel_loss_settings(preset: str = "paper", **overrides: Any) -> dict[str, Any]:
    """A preset's :class:`MultiScaleMelLoss` settings with the non-None ``overrides`` applied.

    Returns ``{"range_", "alphas", "normalized", "f_min", "n_mels"}`` (constructor keywords).
    """
    if preset not in MEL_PRESETS:
        raise ValueError(f"unknown mel loss preset {preset!r}; choose one of {', '.join(MEL_PRESETS)}")
    unknown = set(overrides) - set(MEL_PRESETS[preset])
    if unknown:
        raise ValueError(f"unknown mel loss setting(s) {sorted(unknown)}; known: {', '.join(MEL_PRESETS[preset])}")
    s = {**MEL_PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    scales = tuple(int(i) for i in s["scales"])
    if len(scales) != 2:
        raise ValueError(f"mel loss scales must be [lo, hi] (inclusive exponents of 2), got {s['scales']!r}")
    return {"range_": scales, "alphas": bool(s["alphas"]), "normalized": bool(s["normalized"]),
            "f_min": float(s["f_min"]), "n_mels": int(s["n_mels"])}


def mel_distance(estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int = 24000,
                 n_ffts: Sequence[int] = (512, 1024, 2048), n_mels: int = 80,
                 floor_level: float = 1e-5) -> torch.Tensor:
    """Evaluation metric: mean over scales of the L1 distance between log10 mel spectrograms.

    Unlike :class:`MultiScaleMelLoss` it has no linear-magnitude term and no per-scale weights,
    so quiet passages count as much as loud ones and values are comparable across runs and loss
    settings. 0 means identical spectra; scalar; lower is better. Hop ``n_fft // 4``.
    """
    _check_same_shape(estimate, reference, "mel_distance")
    n = estimate.shape[-1]
    both = torch.cat([estimate.reshape(-1, n), reference.reshape(-1, n)])
    m = estimate.numel() // n
    dists = []
    for n_fft in n_ffts:
        mel = MelSpectrogram(sample_rate, n_fft=int(n_fft), n_mels=n_mels).to(estimate.device)
        spec = torch.log10(mel(both) + floor_level)
        dists.append((spec[:m] - spec[m:]).abs().mean())
    return torch.stack(dists).mean()


def stft_distance(estimate: torch.Tensor, reference: torch.Tensor, n_ffts: Sequence[int] = (512, 1024, 2048),
                  eps: float = 1e-7) -> torch.Tensor:
    """Evaluation metric: multi-resolution STFT distance (Yamamoto et al., 2020, Parallel WaveGAN).

    Per scale (Hann window n_fft, hop n_fft // 4): spectral convergence ``‖|Y| − |X|‖_F / ‖|Y|‖_F``
    plus ``mean|log|Y| − log|X||``; averaged over scales. 0 means identical; lower is better.
    """
    _check_same_shape(estimate, reference, "stft_distance")
    n = estimate.shape[-1]
    est = estimate.reshape(-1, n).float()
    ref = reference.reshape(-1, n).float()
    dists = []
    for n_fft in n_ffts:
        window = torch.hann_window(int(n_fft), device=est.device)
        mags = [torch.stft(_pad_to_full_frames(t, int(n_fft), int(n_fft) // 4), int(n_fft), int(n_fft) // 4,
                           window=window, center=False, return_complex=True).abs() for t in (est, ref)]
        sc = torch.linalg.norm(mags[1] - mags[0]) / torch.linalg.norm(mags[1]).clamp_min(eps)
        log_mag = (torch.log(mags[0] + eps) - torch.log(mags[1] + eps)).abs().mean()
        dists.append(sc + log_mag)
    return torch.stack(dists).mean()


# ---------------------------------------------------------------------------------------------
# Adversarial losses


def _check_logit_lists(*lists: Sequence[torch.Tensor]) -> None:
    if not lists[0]:
        raise LossInputError("adversarial loss got an empty list of logits; pass one tensor per discriminator scale")
    if any(len(lst) != len(lists[0]) for lst in lists):
        raise LossInputError(f"logit lists differ in length: {[len(lst) for lst in lists]}")


def hinge_generator_loss(logits_fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """``1/K Σ_k mean(relu(1 − D_k(x̂)))``: the generator pushes fake logits above 1."""
    _check_logit_lists(logits_fake)
    return torch.stack([F.relu(1.0 - lf.float()).mean() for lf in logits_fake]).mean()


ADV_LOSS_FORMS = ("hinge2", "hinge")


def generator_adversarial_loss(logits_fake: Sequence[torch.Tensor], form: str = "hinge2") -> torch.Tensor:
    """The generator's adversarial loss in AudioCraft's naming: ``"hinge2"`` is the EnCodec paper's
    ℓg, ``1/K Σ_k mean(relu(1 − D_k(x̂)))`` (:func:`hinge_generator_loss`); ``"hinge"`` is
    AudioCraft's default, ``1/K Σ_k −mean(D_k(x̂))`` (no saturation above 1)."""
    if form == "hinge2":
        return hinge_generator_loss(logits_fake)
    if form == "hinge":
        _check_logit_lists(logits_fake)
        return torch.stack([-lf.float().mean() for lf in logits_fake]).mean()
    raise ValueError(f"adversarial loss form must be one of {ADV_LOSS_FORMS}, got {form!r}")


def hinge_discriminator_loss(logits_real: Sequence[torch.Tensor], logits_fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """``1/K Σ_k [mean(relu(1 − D_k(x))) + mean(relu(1 + D_k(x̂)))]``: real above 1, fake below −1."""
    _check_logit_lists(logits_real, logits_fake)
    terms = [F.relu(1.0 - lr.float()).mean() + F.relu(1.0 + lf.float()).mean()
             for lr, lf in zip(logits_real, logits_fake)]
    return torch.stack(terms).mean()


def feature_matching_loss(fmaps_real: Sequence[Sequence[torch.Tensor]], fmaps_fake: Sequence[Sequence[torch.Tensor]],
                          eps: float = 1e-8) -> torch.Tensor:
    """Relative L1 between discriminator activations on real and fake audio.

    Per layer ``mean|real − fake| / mean|real|`` (so every layer counts the same whatever its
    activation scale), averaged over the layers of a scale, then over scales. ``fmaps_real``
    is detached: this loss only trains the generator.
    """
    if not fmaps_real or len(fmaps_real) != len(fmaps_fake):
        raise LossInputError(f"feature maps: need one list per scale for real and fake, got "
                             f"{len(fmaps_real)} and {len(fmaps_fake)}")
    per_scale = []
    for k, (real_layers, fake_layers) in enumerate(zip(fmaps_real, fmaps_fake)):
        if not real_layers or len(real_layers) != len(fake_layers):
            raise LossInputError(f"feature maps of scale {k}: {len(real_layers)} real vs {len(fake_layers)} fake layers")
        per_layer = []
        for real, fake in zip(real_layers, fake_layers):
            if real.shape != fake.shape:
                raise LossInputError(f"feature maps of scale {k}: shapes {tuple(real.shape)} vs {tuple(fake.shape)}")
            real = real.detach().float()
            per_layer.append((fake.float() - real).abs().mean() / real.abs().mean().clamp_min(eps))
        per_scale.append(torch.stack(per_layer).mean())
    return torch.stack(per_scale).mean()


# ---------------------------------------------------------------------------------------------
# Metrics


def si_snr(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8, max_db: float | None = 100.0,
           reduction: str = "mean") -> torch.Tensor:
    """Scale-invariant signal-to-noise ratio in dB (higher is better).

    Per signal (last axis; every other axis — batch, channel — is an item): remove the means,
    project the estimate on the reference, ``10·log10(‖proj‖² / ‖estimate − proj‖²)`` with
    ``eps`` added to both energies. A perfect (or rescaled) estimate would be +inf; the result is
    capped at ``max_db`` (``None``: no cap). ``reduction``: ``"mean"`` (scalar) or ``"none"``
    (one value per item, shape ``estimate.shape[:-1]``).
    """
    _check_same_shape(estimate, reference, "si_snr")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    dtype = torch.float64 if estimate.dtype == torch.float64 else torch.float32
    est = estimate.to(dtype)
    ref = reference.to(dtype)
    est = est - est.mean(dim=-1, keepdim=True)
    ref = ref - ref.mean(dim=-1, keepdim=True)
    scale = (est * ref).sum(dim=-1, keepdim=True) / (ref.square().sum(dim=-1, keepdim=True) + eps)
    proj = scale * ref
    noise = est - proj
    db = 10.0 * torch.log10((proj.square().sum(dim=-1) + eps) / (noise.square().sum(dim=-1) + eps))
    if max_db is not None:
        db = db.clamp(max=max_db)
    return db.mean() if reduction == "mean" else db
