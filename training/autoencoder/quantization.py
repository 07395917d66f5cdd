"""Residual vector quantizer (RVQ) with EMA codebooks, as in EnCodec / SoundStream.

Each codebook quantizes the residual of the previous ones, so the first ``k`` give a coarser
version of the same latent (quantizer dropout; several bitrates from one model). Codebooks are
EMA-learned buffers with k-means init and dead-code replacement; the encoder learns through a
straight-through estimator plus the commitment loss; everything runs in float32. Details:
README.md, "SEANet autoencoder with MS-STFT GAN", **Residual vector quantizer**.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

log = logging.getLogger(__name__)

__all__ = ["QuantizerOutput", "EMACodebook", "ResidualVectorQuantizer", "kmeans"]

_EPS = 1e-5


@dataclass
class QuantizerOutput:
    """What :meth:`ResidualVectorQuantizer.forward` returns.

    ``x``: quantized latent ``[B, D, T]`` (float32); ``codes``: ``[B, n_active, T]`` long, where
    ``n_active`` is ``n_q`` except under quantizer dropout in training; ``penalty``: the commitment
    loss (0-dim tensor, already multiplied by ``commitment_weight``); ``metrics``: floats for logging.
    """

    x: torch.Tensor
    codes: torch.Tensor
    penalty: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


def _sample_vectors(samples: torch.Tensor, num: int) -> torch.Tensor:
    """``num`` rows of ``samples`` drawn at random (without replacement when there are enough)."""
    n = samples.shape[0]
    if n >= num:
        idx = torch.randperm(n, device=samples.device)[:num]
    else:
        idx = torch.randint(0, n, (num,), device=samples.device)
    return samples[idx]


def _nearest(x: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
    """Index of the closest row of ``embed`` [K, D] for every row of ``x`` [N, D] (squared L2)."""
    dist = (x.pow(2).sum(1, keepdim=True) - 2 * x @ embed.t() + embed.pow(2).sum(1)[None, :])
    return dist.argmin(dim=1)


def _counts(codes: torch.Tensor, bins: int) -> torch.Tensor:
    """How many times each code occurs (deterministic on GPU too, unlike ``bincount``)."""
    return F.one_hot(codes, bins).sum(0)


def kmeans(samples: torch.Tensor, num_clusters: int, num_iters: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on ``samples`` [N, D]: returns ``(centroids [K, D], cluster sizes [K])``.

    Centroids start as random samples; a cluster that ends up empty keeps its previous centroid.
    """
    means = _sample_vectors(samples, num_clusters)
    sizes = torch.zeros(num_clusters, device=samples.device, dtype=samples.dtype)
    for _ in range(num_iters):
        assign = _nearest(samples, means)
        onehot = F.one_hot(assign, num_clusters).to(samples.dtype)
        sizes = onehot.sum(0)
        sums = onehot.t() @ samples
        new_means = sums / sizes.clamp(min=1)[:, None]
        means = torch.where((sizes == 0)[:, None], means, new_means)
    return means, sizes


class EMACodebook(nn.Module):
    """One codebook of ``bins`` vectors of size ``dimension``, learned by EMA (no gradients).

    Buffers (all in the state dict): ``embed`` [K, D] the codewords, ``embed_avg`` [K, D] and
    ``cluster_size`` [K] the EMA statistics, ``initialized`` (0-dim, 0 or 1).
    """

    def __init__(self, dimension: int, bins: int, decay: float = 0.99, kmeans_init: bool = True,
                 kmeans_iters: int = 50, threshold_ema_dead_code: float = 2.0) -> None:
        super().__init__()
        self.dimension = dimension
        self.bins = bins
        self.decay = decay
        self.kmeans_iters = kmeans_iters
        self.threshold_ema_dead_code = threshold_ema_dead_code
        if kmeans_init:
            embed = torch.zeros(bins, dimension)
        else:
            embed = torch.empty(bins, dimension)
            nn.init.kaiming_uniform_(embed)
        self.register_buffer("initialized", torch.tensor(0.0 if kmeans_init else 1.0))
        self.register_buffer("cluster_size", torch.zeros(bins))
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())
        self._warned_uninitialized = False
        self._known_initialized = False

    @property
    def is_initialized(self) -> bool:
        """False until k-means has run (only with ``kmeans_init``); cached to avoid a GPU sync per step."""
        if not self._known_initialized:
            self._known_initialized = bool(self.initialized.item())
        return self._known_initialized

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super()._load_from_state_dict(*args, **kwargs)
        self._known_initialized = False  # the loaded buffer decides again

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Codes [N] of the nearest codewords to ``x`` [N, D]; pure (no state change)."""
        if not self._warned_uninitialized and not self.is_initialized:
            log.warning("RVQ codebook used before its k-means initialisation (which happens on the "
                        "first training batch); codes are meaningless until the model has trained")
            self._warned_uninitialized = True
        return _nearest(x, self.embed.float())

    def dequantize(self, codes: torch.Tensor) -> torch.Tensor:
        """Codewords for ``codes`` (any shape) -> ``codes.shape + (D,)``."""
        return F.embedding(codes, self.embed.float())

    @torch.no_grad()
    def _init_kmeans(self, x: torch.Tensor) -> None:
        embed, sizes = kmeans(x, self.bins, self.kmeans_iters)
        self.embed.copy_(embed)
        self.embed_avg.copy_(embed)
        self.cluster_size.copy_(sizes)
        self.initialized.fill_(1.0)
        self._known_initialized = True

    @torch.no_grad()
    def update(self, x: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One EMA step with the batch ``x`` [N, D] and its ``codes`` [N], then dead-code reset.

        Returns the per-code counts of this batch and the number of codes replaced (0-dim tensors,
        so no host sync happens here).
        """
        onehot = F.one_hot(codes, self.bins).to(x.dtype)
        counts = onehot.sum(0)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(onehot.t() @ x, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + _EPS) / (total + self.bins * _EPS) * total
        self.embed.copy_(self.embed_avg / smoothed[:, None])
        return counts, self._expire_codes(x)

    @torch.no_grad()
    def _expire_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Replace codes whose EMA cluster size fell below the threshold by random batch vectors.

        A replaced code restarts with cluster size = threshold and ``embed_avg = vector * threshold``,
        so it stays where it was put unless it goes unused again. Returns how many were replaced.
        """
        if self.threshold_ema_dead_code <= 0:
            return torch.zeros((), device=x.device)
        dead = self.cluster_size < self.threshold_ema_dead_code
        fresh = _sample_vectors(x, self.bins)
        reset_size = float(self.threshold_ema_dead_code)
        self.embed.copy_(torch.where(dead[:, None], fresh, self.embed))
        self.embed_avg.copy_(torch.where(dead[:, None], fresh * reset_size, self.embed_avg))
        self.cluster_size.masked_fill_(dead, reset_size)
        return dead.sum().to(x.dtype)


class ResidualVectorQuantizer(nn.Module):
    """``n_q`` EMA codebooks of ``bins`` codes applied to successive residuals of a ``[B, D, T]`` latent.

    ``q_dropout``: in training, each batch uses a random number of codebooks (drawn from torch's
    RNG), so the decoder learns every bitrate; eval always uses ``n_q``. The number is drawn
    uniformly from ``dropout_n_q`` (EnCodec: the codebook counts of its bandwidth set) or, when
    that is None, from ``1..n_q`` (AudioCraft). ``kmeans_iters``: 50 as in AudioCraft's config.
    """

    def __init__(self, dimension: int = 128, n_q: int = 8, bins: int = 1024, decay: float = 0.99,
                 kmeans_init: bool = True, kmeans_iters: int = 50, threshold_ema_dead_code: float = 2,
                 q_dropout: bool = False, commitment_weight: float = 1.0,
                 dropout_n_q: Sequence[int] | None = None) -> None:
        super().__init__()
        for name, value, low in (("dimension", dimension, 1), ("n_q", n_q, 1), ("bins", bins, 2),
                                 ("kmeans_iters", kmeans_iters, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        if threshold_ema_dead_code < 0 or commitment_weight < 0:
            raise ValueError("threshold_ema_dead_code and commitment_weight must be >= 0")
        if dropout_n_q is not None:
            dropout_n_q = tuple(sorted(set(dropout_n_q)))
            if not dropout_n_q or any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_q
                                      for k in dropout_n_q):
                raise ValueError(f"dropout_n_q must be a non-empty list of integers in 1..{n_q}, got {dropout_n_q!r}")
        self.dropout_n_q: tuple[int, ...] | None = dropout_n_q
        self.dimension = dimension
        self.n_q = n_q
        self.bins = bins
        self.q_dropout = q_dropout
        self.commitment_weight = float(commitment_weight)
        self.threshold_ema_dead_code = threshold_ema_dead_code
        self.layers = nn.ModuleList(
            EMACodebook(dimension, bins, decay=decay, kmeans_init=kmeans_init, kmeans_iters=kmeans_iters,
                        threshold_ema_dead_code=threshold_ema_dead_code)
            for _ in range(n_q))
        self._warned_small_batch = False

    @property
    def bits_per_frame(self) -> float:
        """Bits per latent frame with all codebooks (``n_q * log2(bins)``)."""
        return self.n_q * math.log2(self.bins)

    def _flatten(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """``[B, D, T]`` -> float32 ``[B*T, D]`` plus ``B`` and ``T``; rejects any other shape."""
        if x.dim() != 3 or x.shape[1] != self.dimension:
            raise ValueError(f"quantizer expects [batch, {self.dimension}, frames], got {list(x.shape)}")
        return x.float().transpose(1, 2).reshape(-1, self.dimension), x.shape[0], x.shape[2]

    def _check_n_q(self, n_q: int | None) -> int:
        if n_q is None:
            return self.n_q
        if isinstance(n_q, bool) or not isinstance(n_q, int) or not 1 <= n_q <= self.n_q:
            raise ValueError(f"n_q must be an integer in 1..{self.n_q}, got {n_q!r}")
        return n_q

    def _dropout_n_q(self) -> int:
        """This training batch's codebook count under quantizer dropout."""
        if self.dropout_n_q is None:
            return int(torch.randint(1, self.n_q + 1, (1,)).item())
        return self.dropout_n_q[int(torch.randint(0, len(self.dropout_n_q), (1,)).item())]

    def _maybe_warn_small_batch(self, n_vectors: int) -> None:
        if self._warned_small_batch or self.threshold_ema_dead_code <= 0:
            return
        if n_vectors < self.bins * self.threshold_ema_dead_code:
            log.warning("RVQ training batch has %d latent vectors for %d codes: the average EMA cluster "
                        "size is below threshold_ema_dead_code=%s, so codes will be reset every step; "
                        "use larger batches or segments, or a lower threshold", n_vectors, self.bins,
                        self.threshold_ema_dead_code)
            self._warned_small_batch = True

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """Quantize ``x`` [B, D, T]; in train mode also initialise / update the codebooks."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            flat, batch, frames = self._flatten(x)
            n_q = self.n_q
            if self.training and self.q_dropout:
                n_q = self._dropout_n_q()
            if self.training:
                self._maybe_warn_small_batch(flat.shape[0])
            residual = flat
            quantized = torch.zeros_like(flat)
            codes, losses, stats = [], [], []
            for layer in self.layers[:n_q]:
                target = residual.detach()
                if self.training and not layer.is_initialized:
                    layer._init_kmeans(target)
                idx = layer.quantize(target)
                q = layer.dequantize(idx)
                losses.append(F.mse_loss(residual, q))  # q has no grad: commitment pulls the encoder
                if self.training:
                    counts, expired = layer.update(target, idx)
                else:
                    counts, expired = _counts(idx, self.bins).to(flat.dtype), flat.new_zeros(())
                stats.append((counts, expired))
                residual = residual - q
                quantized = quantized + q
                codes.append(idx)
            if self.training:
                quantized = flat + (quantized - flat).detach()  # straight-through to the encoder
            penalty = torch.stack(losses).mean() * self.commitment_weight
        out = quantized.reshape(batch, frames, self.dimension).transpose(1, 2)
        code_tensor = torch.stack(codes).reshape(n_q, batch, frames).permute(1, 0, 2)
        return QuantizerOutput(out, code_tensor, penalty, self._metrics(stats, n_q))

    @staticmethod
    def _metrics(stats: list[tuple[torch.Tensor, torch.Tensor]], n_q: int) -> dict[str, float]:
        """Batch statistics of the active codebooks, fetched with one host sync.

        ``perplexity``: mean over codebooks of exp(entropy of code usage) (``bins`` = uniform use);
        ``codebook_usage``: mean fraction of codes used in this batch; ``expired_codes``: codes reset
        this step (all codebooks); ``active_quantizers``: codebooks used (varies under dropout).
        """
        counts = torch.stack([c for c, _ in stats])
        probs = counts / counts.sum(1, keepdim=True).clamp(min=1)
        entropy = -(probs * probs.clamp(min=1e-10).log()).sum(1)
        expired = torch.stack([e for _, e in stats]).sum()
        perplexity, usage, n_expired = torch.stack(
            [entropy.exp().mean(), (counts > 0).float().mean(), expired.float()]).tolist()
        return {"perplexity": perplexity, "codebook_usage": usage, "expired_codes": n_expired,
                "active_quantizers": float(n_q)}

    @torch.no_grad()
    def encode(self, x: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Codes ``[B, n_q, T]`` (long) for ``x`` [B, D, T]; never changes the codebooks."""
        n_q = self._check_n_q(n_q)
        with torch.autocast(device_type=x.device.type, enabled=False):
            residual, batch, frames = self._flatten(x)
            codes = []
            for layer in self.layers[:n_q]:
                idx = layer.quantize(residual)
                residual = residual - layer.dequantize(idx)
                codes.append(idx)
        return torch.stack(codes).reshape(n_q, batch, frames).permute(1, 0, 2)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Quantized latent ``[B, D, T]`` (float32) from codes ``[B, k, T]`` with ``k <= n_q``."""
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= self.n_q:
            raise ValueError(f"codes must be [batch, 1..{self.n_q}, frames], got {list(codes.shape)}")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"codes must be an integer tensor, got {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.bins):
            raise ValueError(f"codes must lie in [0, {self.bins}), got values in "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        codes = codes.long()
        out = None
        for k, layer in enumerate(self.layers[: codes.shape[1]]):
            q = layer.dequantize(codes[:, k])  # [B, T, D]
            out = q if out is None else out + q
        assert out is not None
        return out.transpose(1, 2)
