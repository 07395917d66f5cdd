"""Codec-grade evaluation of an RVQ autoencoder: metrics per bandwidth and per codebook.

The codes are truncated to the codebooks each target bitrate allows (1.5/3/6/12 kbps at the
model's frame rate and codebook size); each truncation is decoded and scored. Metrics, keys and
the files written: README.md, "SEANet autoencoder with MS-STFT GAN", **Per-bandwidth evaluation**.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from .losses import mel_distance, si_snr, stft_distance
from .model import Autoencoder

__all__ = ["BANDWIDTHS_KBPS", "bandwidth_levels", "evaluate_bandwidths", "flat_metrics", "plot_bandwidths",
           "write_bandwidth_report"]

BANDWIDTHS_KBPS = (1.5, 3.0, 6.0, 12.0)  # EnCodec 24 kHz's bitrates up to 12 kbps


def bandwidth_levels(n_q: int, bins: int, frame_rate: float,
                     bandwidths: Sequence[float] = BANDWIDTHS_KBPS) -> list[tuple[float, int]]:
    """``(target kbps, codebooks)`` per bandwidth, codebooks = ⌊kbps·1000 / (frame_rate·log2 bins)⌋.

    Clamped to ``1..n_q``; a bandwidth that maps to the same count as a lower one is dropped.
    EnCodec's 24 kHz geometry (75 Hz, 1024 bins, n_q 32) gives 2, 4, 8, 16 codebooks.
    """
    per_codebook = frame_rate * math.log2(bins) / 1000.0
    out: list[tuple[float, int]] = []
    for bw in sorted(float(b) for b in bandwidths):
        k = min(n_q, max(1, int(math.floor(bw / per_codebook + 1e-9))))
        if not out or k != out[-1][1]:
            out.append((bw, k))
    return out


def _usage(counts: torch.Tensor) -> tuple[float, float]:
    """(fraction of codes used, perplexity = exp(entropy of the code distribution))."""
    probs = counts / counts.sum().clamp(min=1)
    entropy = -(probs * probs.clamp(min=1e-12).log()).sum()
    return float((counts > 0).float().mean()), float(entropy.exp())


@torch.no_grad()
def evaluate_bandwidths(model: Autoencoder, batches: Iterable[torch.Tensor], device: torch.device | str = "cpu",
                        bandwidths: Sequence[float] = BANDWIDTHS_KBPS) -> dict[str, Any]:
    """Score ``model`` at each bandwidth on ``batches`` of audio ``[B, C, N]`` (float32, eval mode).

    Per bandwidth: SI-SNR (dB), mel distance and multi-resolution STFT distance to the input, and the
    mel distance to the unquantised decode (what quantisation alone costs). Per codebook level: the
    fraction of codes used and the perplexity over all batches. Values are batch-size-weighted means.
    """
    q = model.quantizer
    if q is None:
        raise ValueError("per-bandwidth evaluation needs an RVQ model (model.quantizer=rvq)")
    fps = model.frame_rate or 1.0
    levels = bandwidth_levels(q.n_q, q.bins, fps, bandwidths)
    was = model.training
    model.eval()
    sums: dict[int, dict[str, float]] = {k: {} for _, k in levels}
    counts = torch.zeros(q.n_q, q.bins, dtype=torch.float64)
    total = 0
    for x in batches:
        x = x.to(device).float()
        b, n = x.shape[0], x.shape[-1]
        latent = model.encoder(model._pad(x))
        codes = q.encode(latent)
        counts += F.one_hot(codes.transpose(0, 1).reshape(q.n_q, -1), q.bins).sum(1).double().cpu()
        y_cont = model.decoder(latent)[..., :n]
        for _, k in levels:
            y = model.decode(codes[:, :k], length=n)
            vals = {"si_snr": si_snr(y, x), "mel": mel_distance(y, x), "stft": stft_distance(y, x),
                    "mel_to_unquantized": mel_distance(y, y_cont)}
            for name, v in vals.items():
                sums[k][name] = sums[k].get(name, 0.0) + float(v) * b
        total += b
    model.train(was)
    bits = math.log2(q.bins)
    rows = [{"target_kbps": bw, "n_q": k, "kbps": round(k * fps * bits / 1000.0, 4),
             **{name: v / max(total, 1) for name, v in sums[k].items()}} for bw, k in levels]
    books = [dict(zip(("level", "usage", "perplexity"), (i + 1, *_usage(c)))) for i, c in enumerate(counts)]
    return {"frame_rate": fps, "bins": q.bins, "n_q": q.n_q, "items": total, "bandwidths": rows,
            "codebooks": books}


def flat_metrics(report: dict[str, Any], prefix: str = "val_") -> dict[str, float]:
    """The report as flat history keys: ``val_nq<k>_<metric>`` and ``val_cb<i>_{usage,perplexity}``."""
    out = {f"{prefix}nq{r['n_q']}_{name}": float(r[name])
           for r in report["bandwidths"] for name in ("si_snr", "mel", "stft", "mel_to_unquantized")}
    for c in report["codebooks"]:
        out[f"{prefix}cb{c['level']}_usage"] = float(c["usage"])
        out[f"{prefix}cb{c['level']}_perplexity"] = float(c["perplexity"])
    return out


def plot_bandwidths(report: dict[str, Any], path: Path | str, title: str = "") -> Path:
    """One PNG: SI-SNR, mel and STFT distance against kbps, and perplexity per codebook level."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from workflow.files import atomic_path

    fig = Figure(figsize=(12, 3.2))
    FigureCanvasAgg(fig)
    kbps = [r["kbps"] for r in report["bandwidths"]]
    panels = [("si_snr", "SI-SNR (dB, higher is better)"), ("mel", "mel distance"), ("stft", "MR-STFT distance")]
    for i, (key, label) in enumerate(panels):
        ax = fig.add_subplot(1, 4, i + 1)
        ax.plot(kbps, [r[key] for r in report["bandwidths"]], marker="o")
        ax.set_xlabel("kbps")
        ax.set_title(label, fontsize=9)
    ax = fig.add_subplot(1, 4, 4)
    ax.bar([c["level"] for c in report["codebooks"]], [c["perplexity"] for c in report["codebooks"]])
    ax.set_xlabel("codebook level")
    ax.set_title(f"perplexity (of {report['bins']} codes)", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    return path


def write_bandwidth_report(report: dict[str, Any], out_dir: Path | str, epoch: int) -> list[Path]:
    """``bandwidths.json`` (the report, with its epoch) and ``bandwidths.png`` in ``out_dir``."""
    from workflow.files import atomic_write_text

    out = Path(out_dir)
    js = out / "bandwidths.json"
    atomic_write_text(js, json.dumps({"epoch": epoch, **report}, indent=1) + "\n")
    return [js, plot_bandwidths(report, out / "bandwidths.png", f"epoch {epoch}")]
