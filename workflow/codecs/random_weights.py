"""Random (untrained) weights that still give usable codes: seeded, with conditioned codebooks.

``weights="random"`` builds the registry's config with torch's RNG seeded (the same model every
time), then fills the zero-initialised EnCodec/X-Codec codebooks from a fixed probe signal so
codes vary with the input like real ones, and (EnCodec) zeroes the decoder's biases so decoded
audio varies with the codes. Used for smoke tests and the demo; torch is lazy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import CodecError
from .registry import CodecSpec, _check_config, _model_classes, build_config

if TYPE_CHECKING:  # torch is imported lazily so that `--help` and the registry stay fast
    import torch

RANDOM_SEED = 0
"""Seed for ``weights="random"``: the same untrained model every time, so smoke tests are repeatable."""


def _seeded_random():
    """Context manager: fork torch's RNG and seed it, so random models are the same every time."""
    import torch

    class _Ctx:
        def __enter__(self):
            self._fork = torch.random.fork_rng(devices=[])
            self._fork.__enter__()
            torch.manual_seed(RANDOM_SEED)

        def __exit__(self, *exc):
            return self._fork.__exit__(*exc)

    return _Ctx()


class _ProbeDone(Exception):
    """Raised inside a probe forward pass once the quantizer input has been captured."""


def _probe_signal(spec: CodecSpec, seconds: float = 2.0) -> torch.Tensor:
    """A fixed test signal (noise under a varying envelope plus tones), ``[1, C, N]``."""
    import torch

    n = int(seconds * spec.sample_rate) // spec.hop_length * spec.hop_length
    t = torch.arange(n, dtype=torch.float32) / spec.sample_rate
    env = 0.02 + 0.3 * (0.5 + 0.5 * torch.sin(2 * math.pi * 1.3 * t)) ** 2
    tones = 0.1 * torch.sin(2 * math.pi * 220 * t) + 0.05 * torch.sin(2 * math.pi * 1250 * t * (1 + t))
    chans = [env * torch.randn(n) + tones * (1 + 0.1 * c) for c in range(spec.channels)]
    return torch.stack(chans)[None]


def _quantizer_input(model: Any, spec: CodecSpec) -> torch.Tensor:
    """Frames ``[N, D]`` the quantizer sees for the probe signal (captured, model left unchanged)."""
    import torch

    quantizer = model.quantizer
    captured: list[torch.Tensor] = []

    def grab(embeddings, *args, **kwargs):
        captured.append(embeddings.detach())
        raise _ProbeDone

    quantizer.encode = grab  # instance attribute shadows the method for this one call
    try:
        with torch.no_grad():
            model.encode(_probe_signal(spec))
    except _ProbeDone:
        pass
    finally:
        del quantizer.encode
    if not captured:  # pragma: no cover - a model whose encode() bypasses quantizer.encode
        raise CodecError(f"{spec.name}: could not probe the quantizer input")
    emb = captured[0]
    return emb.permute(0, 2, 1).reshape(-1, emb.shape[1])


def _randomize_codebooks(model: Any, spec: CodecSpec) -> None:
    """Give an untrained model usable codebooks.

    EnCodec and X-Codec initialise codebooks to zeros (training fills them by k-means), so every
    code of an untrained model would be 0. Each residual stage instead gets entries spread around
    the mean of what that stage sees for a fixed probe signal, at equal distance in units of the
    per-dimension spread: codes then vary with the input like real ones. DAC needs nothing (random
    ``nn.Embedding`` codebooks with an l2-normalised lookup already give varied codes).
    """
    import torch

    if spec.family == "encodec":
        _condition_encodec_latents(model, spec)
        _zero_decoder_biases(model)
        layers = getattr(model.quantizer, "layers", None)
        books = [l.codebook for l in layers] if layers is not None else [l._codebook for l in model.quantizer.vq.layers]
    elif spec.family == "xcodec":
        books = [l.codebook for l in model.quantizer.quantizers]
    else:
        return
    residual = _quantizer_input(model, spec).float()
    with torch.no_grad():
        for book in books:
            n, d = book.embed.shape
            mean, spread = residual.mean(0), residual.std(0) + 1e-5
            direction = torch.randn(n, d)
            direction = direction / direction.norm(dim=1, keepdim=True) * math.sqrt(d)
            embed = mean + spread * direction
            book.embed.copy_(embed)
            if hasattr(book, "embed_avg"):
                book.embed_avg.copy_(embed)
            if hasattr(book, "inited"):
                book.inited.fill_(1)
            if hasattr(book, "cluster_size"):
                book.cluster_size.fill_(1)
            nearest = torch.cdist(residual, embed).argmin(dim=1)
            residual = residual - embed[nearest]


def _condition_encodec_latents(model: Any, spec: CodecSpec) -> None:
    """Centre an untrained EnCodec's latents and give them unit spread per dimension.

    Untrained, the encoder's last convolution outputs frames that are nearly all its bias (mean
    norm ~26x the spread), so the quantizer's float32 distances ``|x|^2 - 2x.e + |e|^2`` cancel
    catastrophically and rounding decides many codes. Rescaling that convolution (weight and
    bias) on the probe signal gives latents shaped like a trained model's, and codes that depend
    on the input, not on the order of a floating-point sum.
    """
    import torch

    last = model.encoder.layers[-1] if hasattr(model.encoder, "layers") else model.encoder.model[-1]
    conv = last.conv if hasattr(last.conv, "bias") and hasattr(last.conv, "weight") else last.conv.conv
    latents = _quantizer_input(model, spec).float()
    mean, spread = latents.mean(0), latents.std(0).median().clamp_min(1e-8)
    with torch.no_grad():
        if hasattr(conv, "parametrizations"):  # transformers: torch.nn.utils.parametrizations.weight_norm
            conv.parametrizations.weight.original0.div_(spread)
        elif hasattr(conv, "weight_g"):  # Meta's encodec: the older torch.nn.utils.weight_norm
            conv.weight_g.div_(spread)
        else:  # pragma: no cover - no weight norm
            conv.weight.div_(spread)
        conv.bias.sub_(mean).div_(spread)


def _zero_decoder_biases(model: Any) -> None:
    """Zero every bias of an untrained EnCodec decoder, so what it outputs comes from the codes.

    Untrained, the biases swamp the code-dependent part: measured on a drum loop (24 kHz, 1.5 kbps),
    the output was a DC of 0.149 with a std of 0.014, and decoding uniform random codes instead of
    the true ones moved the spectrum by 0.5 % (spectral convergence 0.0055); without biases, 0.74.
    """
    import torch

    with torch.no_grad():
        for name, param in model.decoder.named_parameters():
            if name.rsplit(".", 1)[-1].startswith("bias"):
                param.zero_()


def _load_random(spec: CodecSpec, overrides: Mapping[str, Any] | None) -> Any:
    _, model_cls = _model_classes(spec.family)
    config = build_config(spec, overrides)
    _check_config(spec, config, "config_overrides" if overrides else "registry config")
    with _seeded_random():
        model = model_cls(config).eval()
        _randomize_codebooks(model, spec)
    return model
