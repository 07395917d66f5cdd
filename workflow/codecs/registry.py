"""The codec registry: what each codec name means, and the ``transformers`` configs behind it.

Every stage that touches codec tokens resolves names here, so all of them agree on sample rate,
hop, codebooks per bandwidth, ... . Imported by ``--help``: no torch or transformers at import time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CodecBackendError, CodecError, UsageError

DEFAULT_CODEC = "encodec_24khz"


@dataclass(frozen=True)
class CodecSpec:
    """What a codec name means: rates, token geometry and the bandwidth → codebooks table.

    ``bandwidths[i]`` kbps uses ``codebooks[i]`` codebooks. ``segment_samples``/``segment_stride``
    are set only for codecs that encode in scaled, overlapping segments (EnCodec 48 kHz).
    """

    name: str
    hub_id: str
    family: str  # "encodec" | "dac" | "xcodec"
    sample_rate: int
    channels: int
    hop_length: int
    codebook_size: int
    bandwidths: tuple[float, ...]
    codebooks: tuple[int, ...]
    default_bandwidth: float
    causal: bool
    segment_samples: int | None = None
    segment_stride: int | None = None
    scaled: bool = False
    backends: tuple[str, ...] = ("transformers",)
    notes: str = ""

    def __post_init__(self) -> None:
        if len(self.bandwidths) != len(self.codebooks):
            raise ValueError(f"{self.name}: bandwidths and codebooks differ in length")
        if self.default_bandwidth not in self.bandwidths:
            raise ValueError(f"{self.name}: default bandwidth {self.default_bandwidth} not in {self.bandwidths}")

    @property
    def fps(self) -> float:
        """Token frames per second (``sample_rate / hop_length``; 86.1328125 for DAC 44 kHz)."""
        return self.sample_rate / self.hop_length

    @property
    def bits(self) -> int:
        """Bits per code in the packed `.ecdc` stream: ``ceil(log2(codebook_size))``."""
        return math.ceil(math.log2(self.codebook_size))

    @property
    def max_codebooks(self) -> int:
        return max(self.codebooks)

    @property
    def segmented(self) -> bool:
        return self.segment_samples is not None

    def codebooks_for(self, bandwidth: float | None = None) -> int:
        """Number of codebooks used at ``bandwidth`` kbps (``None``: the default bandwidth)."""
        return self.codebooks[self.bandwidths.index(self.check_bandwidth(bandwidth))]

    def check_bandwidth(self, bandwidth: float | None) -> float:
        """The registry's value for ``bandwidth`` (within 0.01 kbps); UsageError listing valid ones."""
        if bandwidth is None:
            return self.default_bandwidth
        try:
            value = float(bandwidth)
        except (TypeError, ValueError):
            value = math.nan
        for bw in self.bandwidths:
            if abs(bw - value) < 0.01:
                return bw
        valid = ", ".join(f"{b:g}" for b in self.bandwidths)
        raise UsageError(f"codec {self.name} does not support bandwidth {bandwidth!r} kbps; "
                         f"valid values: {valid} (default {self.default_bandwidth:g})")

    def num_frames(self, num_samples: int) -> int:
        """Token frames for ``num_samples`` of audio (summed over segments for segmented codecs)."""
        n = int(num_samples)
        if n <= 0:
            return 0
        if not self.segmented:
            return -(-n // self.hop_length)
        return sum(-(-(min(off + self.segment_samples, n) - off) // self.hop_length)
                   for off in range(0, n, self.segment_stride))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the spec including the derived ``fps`` and ``bits`` (for reports)."""
        return {
            "name": self.name, "hub_id": self.hub_id, "family": self.family,
            "sample_rate": self.sample_rate, "channels": self.channels, "hop_length": self.hop_length,
            "fps": self.fps, "codebook_size": self.codebook_size, "bits": self.bits,
            "bandwidths": list(self.bandwidths), "codebooks": list(self.codebooks),
            "default_bandwidth": self.default_bandwidth, "causal": self.causal,
            "segment_samples": self.segment_samples, "segment_stride": self.segment_stride,
            "scaled": self.scaled, "backends": list(self.backends),
        }


def _dac_table(n_codebooks: int, sample_rate: int, hop: int, bits: int = 10) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """DAC takes any number of quantizers 1..n: kbps = k · fps · bits / 1000 (rounded to 0.01)."""
    per = sample_rate / hop * bits / 1000
    ks = tuple(range(1, n_codebooks + 1))
    return tuple(round(k * per, 2) for k in ks), ks


def _build_registry() -> dict[str, CodecSpec]:
    dac16 = _dac_table(12, 16000, 320)
    dac24 = _dac_table(32, 24000, 320)
    dac44 = _dac_table(9, 44100, 512)
    specs = [
        # transformers EncodecConfig() defaults are facebook/encodec_24khz (the conversion script
        # uses them unchanged); Meta's factory: target_bandwidths [1.5, 3, 6, 12, 24], causal,
        # weight_norm, n_q = 24000 // (75 * 10) = 32. codebooks = floor(kbps*1000 / (75*10)).
        CodecSpec("encodec_24khz", "facebook/encodec_24khz", "encodec", 24000, 1, 320, 1024,
                  (1.5, 3.0, 6.0, 12.0, 24.0), (2, 4, 8, 16, 32), 6.0, causal=True,
                  backends=("transformers", "encodec")),
        # MusicGen's EnCodec (AudioCraft): 32 kHz mono, ratios [8, 5, 4, 4] (hop 640, 50 fps),
        # 2048 bins (11 bits), target_bandwidths [2.2] -> 2200 // (50 * 11) = 4 codebooks.
        CodecSpec("encodec_32khz", "facebook/encodec_32khz", "encodec", 32000, 1, 640, 2048,
                  (2.2,), (4,), 2.2, causal=False),
        # Conversion script / Meta's factory: 48 kHz stereo, non-causal, time_group_norm,
        # normalize=True (per-segment scale), 1 s segments with 1 % overlap (stride 47520),
        # target_bandwidths [3, 6, 12, 24] at 150 fps x 10 bits -> 2, 4, 8, 16 codebooks.
        CodecSpec("encodec_48khz", "facebook/encodec_48khz", "encodec", 48000, 2, 320, 1024,
                  (3.0, 6.0, 12.0, 24.0), (2, 4, 8, 16), 6.0, causal=False,
                  segment_samples=48000, segment_stride=47520, scaled=True,
                  backends=("transformers", "encodec")),
        # descript-audio-codec conf/final/{16khz,24khz,44khz}.yml: encoder_rates [2,4,5,8] (hop 320)
        # or [2,4,8,8] (hop 512), n_codebooks 12 / 32 / 9, codebook_size 1024, codebook_dim 8.
        CodecSpec("dac_16khz", "descript/dac_16khz", "dac", 16000, 1, 320, 1024,
                  dac16[0], dac16[1], dac16[0][-1], causal=False),
        CodecSpec("dac_24khz", "descript/dac_24khz", "dac", 24000, 1, 320, 1024,
                  dac24[0], dac24[1], dac24[0][-1], causal=False),
        CodecSpec("dac_44khz", "descript/dac_44khz", "dac", 44100, 1, 512, 1024,
                  dac44[0], dac44[1], dac44[0][-1], causal=False),
        # transformers XcodecConfig() defaults = X-Codec's configs: 16 kHz, ratios [8,5,4,2]
        # (hop 320, 50 fps), 1024 bins, target_bandwidths [0.5, 1, 1.5, 2, 4] at 0.5 kbps per
        # quantizer -> 1, 2, 3, 4, 8 codebooks. Default = the highest, as in transformers.
        CodecSpec("xcodec", "hf-audio/xcodec-hubert-general", "xcodec", 16000, 1, 320, 1024,
                  (0.5, 1.0, 1.5, 2.0, 4.0), (1, 2, 3, 4, 8), 4.0, causal=False),
    ]
    return {s.name: s for s in specs}


CODECS: dict[str, CodecSpec] = _build_registry()


def codec_names() -> list[str]:
    """Registered codec names, default first."""
    return [DEFAULT_CODEC] + [n for n in CODECS if n != DEFAULT_CODEC]


def get_spec(name: str | CodecSpec) -> CodecSpec:
    """The :class:`CodecSpec` for ``name``; UsageError listing the valid names otherwise."""
    if isinstance(name, CodecSpec):
        return name
    key = str(name).strip().lower().replace("-", "_")
    if key in CODECS:
        return CODECS[key]
    raise UsageError(f"unknown codec {name!r}; valid names: {', '.join(codec_names())}")


# -------------------------------------------------------------------------- configs (random/.th)
# Keyword arguments for the transformers config class of each codec (merged with user overrides).
_CONFIG_KWARGS: dict[str, dict[str, Any]] = {
    "encodec_24khz": {},
    "encodec_32khz": dict(sampling_rate=32000, audio_channels=1, upsampling_ratios=[8, 5, 4, 4],
                          codebook_size=2048, target_bandwidths=[2.2], num_filters=64,
                          use_causal_conv=False, use_conv_shortcut=False, norm_type="weight_norm",
                          pad_mode="reflect", normalize=False),
    "encodec_48khz": dict(sampling_rate=48000, audio_channels=2, target_bandwidths=[3.0, 6.0, 12.0, 24.0],
                          use_causal_conv=False, norm_type="time_group_norm", normalize=True,
                          chunk_length_s=1.0, overlap=0.01),
    "dac_16khz": dict(sampling_rate=16000, encoder_hidden_size=64, downsampling_ratios=[2, 4, 5, 8],
                      decoder_hidden_size=1536, n_codebooks=12, codebook_size=1024, codebook_dim=8),
    "dac_24khz": dict(sampling_rate=24000, encoder_hidden_size=64, downsampling_ratios=[2, 4, 5, 8],
                      decoder_hidden_size=1536, n_codebooks=32, codebook_size=1024, codebook_dim=8),
    "dac_44khz": dict(sampling_rate=44100, encoder_hidden_size=64, downsampling_ratios=[2, 4, 8, 8],
                      decoder_hidden_size=1536, n_codebooks=9, codebook_size=1024, codebook_dim=8),
    "xcodec": {},
}


def _deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _model_classes(family: str) -> tuple[type, type]:
    """(config class, model class) of ``transformers`` for a codec family (imported lazily)."""
    try:
        if family == "encodec":
            from transformers import EncodecConfig, EncodecModel
            return EncodecConfig, EncodecModel
        if family == "dac":
            from transformers import DacConfig, DacModel
            return DacConfig, DacModel
        if family == "xcodec":
            from transformers import XcodecConfig, XcodecModel
            return XcodecConfig, XcodecModel
    except ImportError as exc:  # pragma: no cover - depends on the installed transformers
        raise CodecBackendError(
            f"transformers cannot provide the {family} model ({exc}); "
            "install a transformers version with it (pip install -U transformers)") from exc
    raise CodecError(f"unknown codec family {family!r}")


def build_config(name: str | CodecSpec, overrides: Mapping[str, Any] | None = None):
    """The ``transformers`` config a ``random`` (or converted) model of ``name`` is built from.

    ``overrides`` are merged in (nested dicts merge into sub-configs, e.g. X-Codec's
    ``semantic_model_config``): useful for small test models. They must not change the token
    geometry; :func:`load_codec` checks that against the registry.
    """
    spec = get_spec(name)
    config_cls, _ = _model_classes(spec.family)
    kwargs = _deep_merge(_CONFIG_KWARGS[spec.name], overrides or {})
    try:
        return config_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bad config_overrides for {spec.name}: {exc}") from exc


def _config_geometry(config: Any, family: str) -> dict[str, Any]:
    """Token geometry a config implies, computed the way the model classes compute it."""
    if family == "encodec":
        hop = int(np.prod(config.upsampling_ratios))
        bits = math.ceil(math.log2(config.codebook_size))
        frame_rate = math.ceil(config.sampling_rate / hop)
        table = {float(bw): max(1, int(bw * 1000 // (frame_rate * bits))) for bw in config.target_bandwidths}
        return dict(sample_rate=config.sampling_rate, channels=config.audio_channels, hop=hop,
                    codebook_size=config.codebook_size, max_codebooks=config.num_quantizers, table=table)
    if family == "dac":
        hop = int(np.prod(config.downsampling_ratios))
        return dict(sample_rate=config.sampling_rate, channels=1, hop=hop,
                    codebook_size=config.codebook_size, max_codebooks=config.n_codebooks, table=None)
    if family == "xcodec":
        hop = config.hop_length
        per_q = math.log2(config.codebook_size) * config.frame_rate / 1000
        table = {float(bw): max(1, int(math.floor(bw / per_q))) for bw in config.target_bandwidths}
        return dict(sample_rate=config.sample_rate, channels=1, hop=hop,
                    codebook_size=config.codebook_size, max_codebooks=config.num_quantizers, table=table)
    raise CodecError(f"unknown codec family {family!r}")


def _check_config(spec: CodecSpec, config: Any, source: str) -> None:
    """Refuse a model whose config disagrees with the registry: its token files would lie."""
    geo = _config_geometry(config, spec.family)
    problems = []
    for key, want in (("sample_rate", spec.sample_rate), ("channels", spec.channels),
                      ("hop", spec.hop_length), ("codebook_size", spec.codebook_size)):
        if geo[key] != want:
            problems.append(f"{key} {geo[key]} (registry: {want})")
    if geo["max_codebooks"] < spec.max_codebooks:
        problems.append(f"{geo['max_codebooks']} codebooks (registry needs {spec.max_codebooks})")
    if geo["table"] is not None:
        for bw, k in zip(spec.bandwidths, spec.codebooks):
            got = next((v for b, v in geo["table"].items() if abs(b - bw) < 0.01), None)
            if got != k:
                problems.append(f"bandwidth {bw:g} kbps -> {got} codebooks (registry: {k})")
    if problems:
        raise CodecError(f"{source}: model config does not match codec {spec.name}: "
                         + "; ".join(problems)
                         + ". Pick the --codec that matches these weights (or fix config_overrides).")
