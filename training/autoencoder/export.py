"""Export a trained RVQ autoencoder as a self-contained TorchScript codec for ``wf-wav2encodec24``.

The file holds the scripted encoder, the codebooks and the decoder, plus a ``codec.json`` entry
with the token geometry, so ``--codec seanet --weights FILE`` needs neither this package nor the
training config. Format and use: README.md, "SEANet autoencoder with MS-STFT GAN", **Export**.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from training.core import CheckpointError
from workflow.errors import UsageError

from .config import model_config
from .model import Autoencoder, build_autoencoder

log = logging.getLogger(__name__)

__all__ = ["EXPORT_FORMAT", "ExportedCodec", "export_codec", "export_run", "load_run_model"]

EXPORT_FORMAT = "enc-hf-workflow/seanet-codec"  # codec.json "format"; workflow/codecs/seanet.py reads it
EXPORT_VERSION = 1


class ExportedCodec(nn.Module):
    """Audio ``[B, C, N]`` ↔ codes ``[B, k, T]`` with the trained encoder, codebooks and decoder.

    ``encode(x, n_q)`` zero-pads to a whole number of hops (``T = ceil(N / hop)``) and returns the
    first ``n_q`` codebooks' codes exactly as :meth:`Autoencoder.encode` does; ``decode(codes)``
    returns ``[B, C, T * hop]``.
    """

    def __init__(self, model: Autoencoder) -> None:
        super().__init__()
        if model.quantizer is None:
            raise ValueError("only an RVQ autoencoder (model.quantizer=rvq) can be exported as a codec")
        self.encoder = model.encoder
        self.decoder = model.decoder
        self.hop = int(model.hop_length)
        self.register_buffer("codebooks", torch.stack([layer.embed.detach().float().clone()
                                                       for layer in model.quantizer.layers]))

    @torch.jit.export
    def encode(self, x: torch.Tensor, n_q: int) -> torch.Tensor:
        extra = (-x.shape[-1]) % self.hop
        if extra > 0:
            x = F.pad(x, (0, extra))
        latent = self.encoder(x)
        b, d, t = latent.shape
        residual = latent.float().transpose(1, 2).reshape(-1, d)
        codes = []
        for i in range(n_q):
            embed = self.codebooks[i]
            dist = (residual.pow(2).sum(1, keepdim=True) - 2 * residual @ embed.t()
                    + embed.pow(2).sum(1)[None, :])
            idx = dist.argmin(dim=1)
            residual = residual - F.embedding(idx, embed)
            codes.append(idx)
        return torch.stack(codes).reshape(n_q, b, t).permute(1, 0, 2)

    @torch.jit.export
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        z = F.embedding(codes[:, 0], self.codebooks[0])
        for i in range(1, codes.shape[1]):
            z = z + F.embedding(codes[:, i], self.codebooks[i])
        return self.decoder(z.transpose(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x, int(self.codebooks.shape[0])))[..., : x.shape[-1]]


def _without_parametrizations(model: Autoencoder) -> Autoencoder:
    """A copy with weight norm folded into plain weights (parametrizations cannot be scripted)."""
    from torch.nn.utils import parametrize

    if model.config is None:
        raise ValueError("export needs a model made by build_autoencoder (it rebuilds it from model.config)")
    copy = build_autoencoder(model.config)
    copy.load_state_dict(model.state_dict())
    model = copy.eval()
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return model


def export_codec(model: Autoencoder, path: Path | str, source: str = "") -> Path:
    """Script ``model`` (eval mode, on the CPU) into ``path`` with its ``codec.json`` (atomic write)."""
    from workflow.files import atomic_path

    q = model.quantizer
    if q is None or model.sample_rate is None:
        raise UsageError("only an RVQ autoencoder (trained with model.quantizer=rvq) can be exported as a codec; "
                         "a continuous-latent model has no codes to write")
    model = _without_parametrizations(model.to("cpu").eval())
    scripted = torch.jit.script(ExportedCodec(model))
    meta = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "sample_rate": int(model.sample_rate),
            "channels": int(model.channels), "hop_length": int(model.hop_length), "codebook_size": int(q.bins),
            "n_q": int(q.n_q), "bits": math.ceil(math.log2(q.bins)),
            "causal": bool((model.config or {}).get("seanet", {}).get("causal", False)),
            "model_config": model.config, "source": source}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.jit.save(scripted, str(tmp), _extra_files={"codec.json": json.dumps(meta)})
    log.info("exported %s (%d codebooks of %d, %.1f Hz) to %s", source or "model", q.n_q, q.bins,
             model.frame_rate, path)
    return path


def load_run_model(checkpoint: Path | str) -> Autoencoder:
    """The generator of a training checkpoint (``autoencoder_best.pt``; its EMA weights when it has
    them, as validation used), rebuilt from its stored config."""
    from omegaconf import OmegaConf

    path = Path(checkpoint)
    try:
        payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
        cfg = OmegaConf.create(payload["metadata"]["config"])
        weights = payload["model_state_dict"]
        prefix = "generator_ema." if any(k.startswith("generator_ema.") for k in weights) else "generator."
        state = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    except (OSError, RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not an autoencoder training checkpoint ({exc}); pass a run "
                              "folder's checkpoints/autoencoder_best.pt") from exc
    model = build_autoencoder(model_config(cfg))
    model.load_state_dict(state)
    return model


def export_run(run_dir: Path | str, path: Path | str) -> Path:
    """Export the best checkpoint of the training run in ``run_dir`` to ``path``."""
    best = Path(run_dir) / "checkpoints" / "autoencoder_best.pt"
    if not best.is_file():
        raise CheckpointError(f"{best} not found: --export needs --out pointing at a finished training run")
    return export_codec(load_run_model(best), path, source=str(best))
