"""The autoencoder: SEANet encoder -> (optional residual vector quantizer) -> SEANet decoder.

Without a quantizer it is the seed's continuous-latent baseline; with ``quantizer: rvq`` it is an
EnCodec-style codec (8 codebooks x 10 bits x 75 Hz = 6 kbps at the paper settings).
:func:`build_autoencoder` makes one from the mapping that
:func:`training.autoencoder.config.model_config` returns, so a checkpoint's stored config rebuilds
the same model.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from training.autoencoder.quantization import ResidualVectorQuantizer
from training.autoencoder.seanet import SEANetDecoder, SEANetEncoder
from workflow.errors import UsageError

__all__ = ["Autoencoder", "AutoencoderConfigError", "AutoencoderOutput", "build_autoencoder",
           "count_parameters", "dropout_codebook_counts", "SEANET_KEYS", "RVQ_KEYS", "TOP_KEYS"]

TOP_KEYS = ("channels", "sample_rate", "seanet", "quantizer", "rvq")
SEANET_KEYS = ("dimension", "n_filters", "n_residual_layers", "ratios", "activation", "activation_params",
               "norm", "kernel_size", "last_kernel_size", "residual_kernel_size", "dilation_base", "causal",
               "pad_mode", "true_skip", "compress", "lstm")
RVQ_KEYS = ("n_q", "bins", "decay", "kmeans_init", "kmeans_iters", "threshold_ema_dead_code", "q_dropout",
            "commitment_weight", "q_dropout_bandwidths")
QUANTIZERS = (None, "none", "rvq")


class AutoencoderConfigError(UsageError, ValueError):
    """The model config has an unknown key or an invalid value (the message names the key)."""


@dataclass
class AutoencoderOutput:
    """What :meth:`Autoencoder.forward` returns.

    ``audio``: reconstruction ``[B, C, N]`` (same length as the input); ``latent``: the encoder's
    continuous output ``[B, D, T]`` (before quantization), ``T = ceil(N / hop_length)``; ``codes``:
    ``[B, n_active, T]`` long, or None without a quantizer; ``penalty``: the quantizer's commitment
    loss (a 0-dim zero tensor without one) to add to the generator loss; ``metrics``: floats.
    """

    audio: torch.Tensor
    latent: torch.Tensor
    codes: torch.Tensor | None
    penalty: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


class Autoencoder(nn.Module):
    """Encoder + optional quantizer + decoder on waveforms ``[B, channels, N]``.

    Inputs whose length is not a multiple of ``hop_length`` are zero-padded at the end before
    encoding and the reconstruction is cut back to ``N`` samples, so any ``N >= 1`` works.
    """

    def __init__(self, encoder: SEANetEncoder, decoder: SEANetDecoder,
                 quantizer: ResidualVectorQuantizer | None = None, sample_rate: int | None = None) -> None:
        super().__init__()
        if encoder.hop_length != decoder.hop_length:
            raise ValueError(f"encoder hop {encoder.hop_length} != decoder hop {decoder.hop_length}")
        if encoder.dimension != decoder.dimension:
            raise ValueError(f"encoder dimension {encoder.dimension} != decoder dimension {decoder.dimension}")
        if encoder.channels != decoder.channels:
            raise ValueError(f"encoder channels {encoder.channels} != decoder channels {decoder.channels}")
        if quantizer is not None and quantizer.dimension != encoder.dimension:
            raise ValueError(f"quantizer dimension {quantizer.dimension} != latent dimension {encoder.dimension}")
        self.encoder = encoder
        self.decoder = decoder
        self.quantizer = quantizer
        self.channels: int = encoder.channels
        self.dimension: int = encoder.dimension
        self.hop_length: int = encoder.hop_length
        self.sample_rate: int | None = sample_rate
        self.config: dict[str, Any] | None = None  # set by build_autoencoder, for checkpoints

    @property
    def frame_rate(self) -> float | None:
        """Latent frames per second (75.0 at 24 kHz with hop 320); None without a sample rate."""
        return None if self.sample_rate is None else self.sample_rate / self.hop_length

    def _check_audio(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != self.channels or x.shape[2] < 1:
            raise ValueError(f"expected audio [batch, {self.channels}, samples>=1], got {list(x.shape)}")

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        extra = (-x.shape[-1]) % self.hop_length
        return F.pad(x, (0, extra)) if extra else x

    def forward(self, x: torch.Tensor) -> AutoencoderOutput:
        """Reconstruct ``x`` [B, C, N]; in train mode the quantizer also updates its codebooks."""
        self._check_audio(x)
        length = x.shape[-1]
        latent = self.encoder(self._pad(x))
        if self.quantizer is None:
            decoder_in, codes, penalty, metrics = latent, None, latent.new_zeros((), dtype=torch.float32), {}
        else:
            q = self.quantizer(latent)
            decoder_in, codes, penalty, metrics = q.x, q.codes, q.penalty, dict(q.metrics)
            if self.frame_rate is not None:
                bits = metrics["active_quantizers"] * math.log2(self.quantizer.bins)
                metrics["bandwidth_kbps"] = bits * self.frame_rate / 1000.0
        audio = self.decoder(decoder_in)[..., :length]
        return AutoencoderOutput(audio, latent, codes, penalty, metrics)

    def encode(self, x: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Audio ``[B, C, N]`` -> codes ``[B, n_q, T]`` (long) with a quantizer, else latent ``[B, D, T]``.

        Never changes the quantizer's codebooks. ``n_q`` (first codebooks only) needs a quantizer.
        """
        self._check_audio(x)
        latent = self.encoder(self._pad(x))
        if self.quantizer is None:
            if n_q is not None:
                raise ValueError("n_q given but this autoencoder has no quantizer")
            return latent
        return self.quantizer.encode(latent, n_q=n_q)

    def decode(self, z: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Codes (integer ``[B, k, T]``) or a latent (float ``[B, D, T]``) -> audio ``[B, C, T * hop]``.

        ``length`` cuts the result to the original sample count (as :meth:`forward` does).
        """
        if not z.dtype.is_floating_point:
            if self.quantizer is None:
                raise ValueError("integer codes given but this autoencoder has no quantizer")
            z = self.quantizer.decode(z)
        audio = self.decoder(z)
        return audio if length is None else audio[..., :length]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor once); quantizer codebooks are buffers, not counted."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def dropout_codebook_counts(bandwidths_kbps: Sequence[float], *, n_q: int, bins: int,
                            frame_rate: float) -> tuple[int, ...]:
    """Codebook counts for quantizer dropout from a bandwidth set, by EnCodec's rule
    ``max(1, floor(kbps·1000 / (frame_rate·log2 bins)))``, capped at ``n_q`` (a bandwidth above the
    model's maximum means all codebooks): the paper's {1.5, 3, 6, 12, 24} at 8 codebooks → {2, 4, 8}."""
    per_q = frame_rate * math.log2(bins)
    counts = set()
    for bw in bandwidths_kbps:
        if isinstance(bw, bool) or not isinstance(bw, (int, float)) or not bw > 0:
            raise AutoencoderConfigError(f"rvq.q_dropout_bandwidths must be positive kbps values, got {bw!r}")
        counts.add(min(n_q, max(1, math.floor(float(bw) * 1000 / per_q + 1e-9))))
    if not counts:
        raise AutoencoderConfigError("rvq.q_dropout_bandwidths is empty; give kbps values or null (1..n_q uniformly)")
    return tuple(sorted(counts))


def _plain(value: Any) -> Any:
    """OmegaConf containers / mappings / lists -> dict / tuple, so constructors get plain values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return tuple(_plain(v) for v in value)
    return value


def _section(cfg: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = cfg.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise AutoencoderConfigError(f"model config {key!r} must be a mapping, got {type(value).__name__}")
    return _plain(value)


def _reject_unknown(section: Mapping[str, Any], allowed: Sequence[str], prefix: str) -> None:
    for key in section:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(prefix + c for c in close)}?" if close else ""
            raise AutoencoderConfigError(f"unknown model config key {prefix + str(key)!r}{hint} "
                                         f"(known: {', '.join(allowed)})")


def build_autoencoder(cfg: Mapping[str, Any]) -> Autoencoder:
    """Build an :class:`Autoencoder` from ``{"channels", "sample_rate", "seanet", "quantizer", "rvq"}``.

    Missing keys take the EnCodec 24 kHz defaults; an unknown key anywhere raises
    :class:`AutoencoderConfigError` naming it, so a typo never trains the default silently.
    ``rvq`` is only used when ``quantizer == "rvq"``; the codebook dimension is the SEANet one.
    """
    if not isinstance(cfg, Mapping):
        raise AutoencoderConfigError(f"model config must be a mapping, got {type(cfg).__name__}")
    _reject_unknown(cfg, TOP_KEYS, "")
    seanet = _section(cfg, "seanet")
    rvq = _section(cfg, "rvq")
    _reject_unknown(seanet, SEANET_KEYS, "seanet.")
    _reject_unknown(rvq, RVQ_KEYS, "rvq.")
    channels = cfg.get("channels", 1)
    sample_rate = cfg.get("sample_rate", 24000)
    for name, value in (("channels", channels), ("sample_rate", sample_rate)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise AutoencoderConfigError(f"model config {name!r} must be a positive integer, got {value!r}")
    kind = cfg.get("quantizer")
    if kind not in QUANTIZERS:
        raise AutoencoderConfigError(f"model config 'quantizer' must be null or 'rvq', got {kind!r}")
    try:
        encoder = SEANetEncoder(channels=channels, **seanet)
        decoder = SEANetDecoder(channels=channels, **seanet)
    except (ValueError, TypeError) as exc:
        raise AutoencoderConfigError(f"invalid model config 'seanet': {exc}") from exc
    quantizer = None
    if kind == "rvq":
        kwargs = dict(rvq)
        bandwidths = kwargs.pop("q_dropout_bandwidths", None)
        if bandwidths is not None:
            kwargs["dropout_n_q"] = dropout_codebook_counts(
                bandwidths, n_q=int(rvq.get("n_q", 8)), bins=int(rvq.get("bins", 1024)),
                frame_rate=sample_rate / encoder.hop_length)
        try:
            quantizer = ResidualVectorQuantizer(dimension=encoder.dimension, **kwargs)
        except (ValueError, TypeError) as exc:
            raise AutoencoderConfigError(f"invalid model config 'rvq': {exc}") from exc
    model = Autoencoder(encoder, decoder, quantizer, sample_rate=sample_rate)
    model.config = {"channels": channels, "sample_rate": sample_rate, "seanet": seanet,
                    "quantizer": None if kind == "none" else kind, "rvq": rvq}
    return model
