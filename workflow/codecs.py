"""Neural audio codecs: the registry, ``load_codec(...)``, batched encode/decode, weights resolution.

Every stage that touches codec tokens goes through this module, so all of them agree on what a
codec name means (sample rate, hop, codebooks per bandwidth, ...) and on how audio becomes codes.

* :data:`CODECS` — one frozen :class:`CodecSpec` per supported codec. The numbers were checked
  against the ``transformers`` config classes, the ``encodec`` package's model factories and the
  upstream training configs (see the comments at each entry).
* :func:`load_codec` — builds a :class:`Codec` from ``"pretrained"`` weights (Hugging Face hub id,
  honouring the HF cache and ``HF_HUB_OFFLINE``), ``"random"`` weights (untrained, deterministic,
  for smoke tests), or a local path: a ``save_pretrained`` folder, or an original EnCodec ``.th``
  checkpoint (Meta's state-dict format, converted here to ``transformers``' layout).
* :meth:`Codec.encode_batch` — encodes a list of float32 ``[C, N]`` arrays (already at the codec's
  sample rate and channel count) into :class:`Encoded` records: int16 ``[K, T]`` code segments,
  per-segment scales and the audio length, i.e. exactly what an ``.ecdc`` file stores.

Padding and batching rules (why batched codes equal one-at-a-time codes where it is possible):

* Single-segment codecs (all but EnCodec 48 kHz) right-pad every item with zeros to a whole number
  of hops (``T = ceil(N / hop)`` frames), also when an item is encoded alone. A batch is padded to
  its longest item. For the causal ``encodec_24khz`` no frame can see the padding, so batched codes
  equal one-at-a-time codes exactly. (Meta's own CLI reflect-pads inside the network instead, so
  the *last* frame of a file whose length is not a multiple of the hop may differ from Meta's;
  every other frame is identical.)
* Non-causal codecs (EnCodec 32 kHz, DAC) see the zero padding within their receptive field: the
  last few frames of a shorter item in a batch can differ slightly from encoding it alone. Callers
  bucket items of similar length together (s2 sorts by duration), which keeps this rare and small.
* Codecs with whole-sequence operations are never padded: X-Codec (HuBERT attention and group norm
  over time) is batched only across items of equal padded length, and EnCodec 48 kHz (time group
  norm, per-segment scale) is encoded in Meta's 1 s segments, batched only across segments of equal
  length. Both therefore give exactly the one-at-a-time codes.
* Files longer than ``max_chunk_seconds`` are encoded in hop-aligned chunks with ``context_seconds``
  of extra audio on the left (and, for non-causal codecs, on the right) whose frames are dropped;
  the frame count equals the unchunked count. EnCodec 48 kHz needs no chunking (its 1 s segments
  are independent); at most ``max_chunk_seconds`` worth of segments is run per forward pass.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CodecBackendError, CodecError, DeviceError, UsageError, WeightsNotFoundError

if TYPE_CHECKING:  # torch is imported lazily so that `--help` and the registry stay fast
    import torch

__all__ = [
    "CODECS",
    "DEFAULT_CODEC",
    "Codec",
    "CodecBackendError",
    "CodecError",
    "CodecSpec",
    "DeviceError",
    "Encoded",
    "UsageError",
    "WeightsNotFoundError",
    "build_config",
    "codec_names",
    "convert_meta_encodec_state_dict",
    "get_spec",
    "load_codec",
    "resolve_device",
]

log = logging.getLogger(__name__)

DEFAULT_CODEC = "encodec_24khz"
RANDOM_SEED = 0
"""Seed for ``weights="random"``: the same untrained model every time, so smoke tests are repeatable."""

# Meta's published checkpoints (see `encodec.model.EncodecModel.encodec_model_24khz/48khz`).
_META_CHECKPOINTS = {
    "encodec_24khz": "encodec_24khz-d7cc33bc.th",
    "encodec_48khz": "encodec_48khz-7e698e3e.th",
}
_META_URL = "https://dl.fbaipublicfiles.com/encodec/v0/"


# ------------------------------------------------------------------------------------- registry
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


# --------------------------------------------------------------------------------------- device
def resolve_device(device: str | torch.device | None = "auto", *, auto_mps: bool = False) -> torch.device:
    """``"auto"`` (CUDA if available, else MPS when ``auto_mps``, else CPU), ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` or ``"mps"``. The project's one device resolver (training uses it too).

    Asking for CUDA without CUDA raises DeviceError: a silent CPU fallback would turn a GPU job
    into a days-long CPU job without anyone noticing.
    """
    import torch

    text = "auto" if device is None else str(device).strip().lower()
    mps_ok = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if auto_mps and mps_ok else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match:
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {device!r} requested but CUDA is not available (torch {torch.__version__}, "
                f"built for CUDA {torch.version.cuda or 'none'}). Use --device cpu, or --device auto "
                "to use a GPU only when there is one.")
        index = int(match.group(1) or torch.cuda.current_device())
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceError(f"device {device!r} requested but only {count} CUDA device(s) are "
                              f"visible (cuda:0..cuda:{count - 1}); check CUDA_VISIBLE_DEVICES")
        return torch.device("cuda", index)
    if text == "mps":
        if not mps_ok:
            raise DeviceError("device 'mps' requested but Apple MPS is not available; use --device cpu")
        return torch.device("mps")
    raise UsageError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")


# -------------------------------------------------------------------------------- Encoded record
@dataclass
class Encoded:
    """The codes of one audio item: what an ``.ecdc`` file holds.

    ``segments`` are int16 ``[K, T_s]`` arrays (one for single-segment codecs, one per 1 s segment
    for EnCodec 48 kHz), ``scales`` one float (or ``None``) per segment, ``audio_length`` the
    number of input samples.
    """

    segments: list[np.ndarray]
    scales: list[float | None]
    audio_length: int

    @property
    def num_codebooks(self) -> int:
        return int(self.segments[0].shape[0]) if self.segments else 0

    @property
    def num_frames(self) -> int:
        return int(sum(s.shape[-1] for s in self.segments))


@dataclass
class _Job:
    """One forward-pass row: samples ``[start, stop)`` of item ``item``; keep some of its frames."""

    item: int
    start: int
    stop: int
    keep_from: int  # first frame to keep (frames of left context are dropped)
    keep: int  # number of frames kept
    part: int  # index of this piece within its item (chunk or segment number)
    length: int = field(init=False)  # padded length of this row

    def __post_init__(self) -> None:
        self.length = self.stop - self.start


# ----------------------------------------------------------------------------- model adapters
class _Adapter:
    """Runs one backend's model: ``[B, C, L]`` float → ``[B, K, T]`` codes, and back."""

    pad_sensitive = False  # True: never zero-pad a row (whole-sequence normalisation / attention)
    min_exact_length = 0  # rows shorter than this (samples) are not zero-padded either

    def __init__(self, model: Any, spec: CodecSpec, bandwidth: float, num_codebooks: int):
        self.model = model
        self.spec = spec
        self.bandwidth = bandwidth
        self.num_codebooks = num_codebooks

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode(self, codes: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class _HFEncodec(_Adapter):
    def __init__(self, *args: Any):
        super().__init__(*args)
        self.pad_sensitive = self.spec.segmented  # 48 kHz: time group norm + per-segment scale
        # EnCodec reflect-pads every convolution; on a sequence no longer than the pad, the
        # reflection reaches into what follows (last conv: kernel 7 over frames), so items under
        # 8 frames would see a batch's padding even in the causal model.
        self.min_exact_length = 8 * self.spec.hop_length

    def encode(self, x):
        emb = self.model.encoder(x)
        return self.model.quantizer.encode(emb, self.bandwidth).transpose(0, 1)

    def decode(self, codes):
        return self.model.decoder(self.model.quantizer.decode(codes.transpose(0, 1)))


class _MetaEncodec(_HFEncodec):
    """Meta's ``encodec`` package: same module layout, the quantizer also takes the frame rate."""

    def encode(self, x):
        emb = self.model.encoder(x)
        return self.model.quantizer.encode(emb, self.model.frame_rate, self.bandwidth).transpose(0, 1)


class _HFDac(_Adapter):
    def encode(self, x):
        return self.model.encode(x, n_quantizers=self.num_codebooks, return_dict=True).audio_codes

    def decode(self, codes):
        out = self.model.decode(audio_codes=codes, return_dict=True).audio_values
        return out.unsqueeze(1) if out.dim() == 2 else out


class _HFXcodec(_Adapter):
    pad_sensitive = True  # HuBERT: group norm over time and full attention see any padding

    def encode(self, x):
        return self.model.encode(x, bandwidth=self.bandwidth, return_dict=True).audio_codes

    def decode(self, codes):
        out = self.model.decode(codes, return_dict=True).audio_values
        return out.unsqueeze(1) if out.dim() == 2 else out


# ---------------------------------------------------------------------------------------- Codec
class Codec:
    """A loaded codec: encodes float audio to int16 codes in batches, and decodes them back.

    Attributes: ``spec``, ``backend`` (``"transformers"``/``"encodec"``), ``device``,
    ``bandwidth`` (kbps), ``num_codebooks``, ``weights_id`` (provenance written into every file),
    ``model`` (the underlying ``torch.nn.Module``), ``max_chunk_seconds``, ``context_seconds``
    and ``windows_per_batch`` (chunking of long files, see the module docstring).
    """

    def __init__(self, spec: CodecSpec, model: Any, *, backend: str, device: torch.device,
                 bandwidth: float, weights_id: str, max_chunk_seconds: float | None = 30.0,
                 context_seconds: float = 1.0, windows_per_batch: int = 4):
        self.spec = spec
        self.model = model
        self.backend = backend
        self.device = device
        self.bandwidth = spec.check_bandwidth(bandwidth)
        self.num_codebooks = spec.codebooks_for(self.bandwidth)
        self.weights_id = weights_id
        self.max_chunk_seconds = max_chunk_seconds
        self.context_seconds = context_seconds
        self.windows_per_batch = windows_per_batch
        adapter_cls = {("encodec", "transformers"): _HFEncodec, ("encodec", "encodec"): _MetaEncodec,
                       ("dac", "transformers"): _HFDac, ("xcodec", "transformers"): _HFXcodec}
        self._adapter = adapter_cls[(spec.family, backend)](model, spec, self.bandwidth, self.num_codebooks)

    def __repr__(self) -> str:
        return (f"Codec({self.spec.name!r}, backend={self.backend!r}, device={str(self.device)!r}, "
                f"bandwidth={self.bandwidth:g}, num_codebooks={self.num_codebooks}, "
                f"weights_id={self.weights_id!r})")

    # -- metadata ---------------------------------------------------------------------------
    def ecdc_meta(self) -> dict[str, Any]:
        """Header entries for the `.ecdc` files this codec writes (besides al/nc/lm)."""
        spec = self.spec
        meta: dict[str, Any] = {"m": spec.name, "bits": spec.bits, "sr": spec.sample_rate,
                                "fps": spec.fps, "hop": spec.hop_length, "bw": self.bandwidth,
                                "weights": self.weights_id}
        if spec.segmented:
            meta.update(seg=spec.segment_samples, stride=spec.segment_stride, scaled=spec.scaled)
        return meta

    def num_frames(self, num_samples: int) -> int:
        """Token frames the codec produces for ``num_samples`` of audio."""
        return self.spec.num_frames(num_samples)

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, audio: np.ndarray, *, sample_rate: int | None = None) -> Encoded:
        """Encode one float ``[C, N]`` array (see :meth:`encode_batch`)."""
        return self.encode_batch([audio], sample_rate=sample_rate)[0]

    def encode_batch(self, audios: Sequence[np.ndarray], *, sample_rate: int | None = None) -> list[Encoded]:
        """Encode float32 ``[C, N]`` arrays already at ``spec.sample_rate`` with ``spec.channels``.

        Resampling and channel mixing are the caller's job (``workflow.audio``); pass
        ``sample_rate`` to have it checked. Returns one :class:`Encoded` per input, in order.
        """
        import torch

        spec = self.spec
        if sample_rate is not None and int(sample_rate) != spec.sample_rate:
            raise UsageError(f"audio is {sample_rate} Hz but codec {spec.name} needs {spec.sample_rate} Hz; "
                             "resample first (workflow.audio.resample / stage s1)")
        arrays = [self._check_audio(a, i) for i, a in enumerate(audios)]
        if not arrays:
            return []
        jobs = self._segment_jobs(arrays) if spec.segmented else self._chunk_jobs(arrays)
        pieces: list[list[tuple[int, np.ndarray, float | None]]] = [[] for _ in arrays]
        with torch.inference_mode():
            for group in self._group_jobs(jobs):
                for job, codes, scale in self._run_group(arrays, group):
                    pieces[job.item].append((job.part, codes, scale))
        results = []
        for i, (a, got) in enumerate(zip(arrays, pieces)):
            got.sort(key=lambda p: p[0])
            if spec.segmented:
                enc = Encoded([c for _, c, _ in got], [s for _, _, s in got], int(a.shape[-1]))
            else:
                codes = got[0][1] if len(got) == 1 else np.concatenate([c for _, c, _ in got], axis=1)
                enc = Encoded([codes], [None], int(a.shape[-1]))
            if enc.num_frames != spec.num_frames(a.shape[-1]):  # pragma: no cover - internal bug guard
                raise CodecError(f"item {i}: got {enc.num_frames} frames, expected "
                                 f"{spec.num_frames(a.shape[-1])} for {a.shape[-1]} samples")
            results.append(enc)
        return results

    def _check_audio(self, audio: Any, index: int) -> np.ndarray:
        spec = self.spec
        if not isinstance(audio, np.ndarray):
            raise UsageError(f"item {index}: expected a numpy array [C, N], got {type(audio).__name__}")
        if audio.ndim != 2 or audio.shape[0] != spec.channels:
            raise UsageError(f"item {index}: audio shape {tuple(audio.shape)} but codec {spec.name} needs "
                             f"[{spec.channels}, N] ({spec.channels} channel(s) first); mix/upmix first "
                             "(workflow.audio.to_channels)")
        if audio.shape[1] == 0:
            raise UsageError(f"item {index}: audio has zero samples")
        if not np.issubdtype(audio.dtype, np.floating):
            raise UsageError(f"item {index}: audio dtype {audio.dtype}; expected float32 samples in [-1, 1]")
        return audio if audio.dtype == np.float32 else audio.astype(np.float32)

    def _chunk_jobs(self, arrays: list[np.ndarray]) -> list[_Job]:
        """Single-segment codecs: one row per item, or hop-aligned chunks with context for long items."""
        hop = self.spec.hop_length
        sr = self.spec.sample_rate
        chunk = None
        if self.max_chunk_seconds:
            chunk = max(hop, int(round(self.max_chunk_seconds * sr / hop)) * hop)
        ctx = max(0, int(round(self.context_seconds * sr / hop)) * hop)
        jobs = []
        for i, a in enumerate(arrays):
            n = a.shape[-1]
            padded = -(-n // hop) * hop
            if chunk is None or n <= chunk:
                jobs.append(_Job(i, 0, padded, 0, padded // hop, 0))
                continue
            for part, s in enumerate(range(0, padded, chunk)):
                e = min(s + chunk, padded)
                ws = max(0, s - ctx)
                we = e if self.spec.causal else min(padded, e + ctx)
                jobs.append(_Job(i, ws, we, (s - ws) // hop, (e - s) // hop, part))
            log.debug("item %d (%d samples) encoded in %d chunks", i, n, part + 1)
        return jobs

    def _segment_jobs(self, arrays: list[np.ndarray]) -> list[_Job]:
        """EnCodec 48 kHz: Meta's overlapping 1 s segments, each encoded on its own."""
        seg, stride, hop = self.spec.segment_samples, self.spec.segment_stride, self.spec.hop_length
        jobs = []
        for i, a in enumerate(arrays):
            n = a.shape[-1]
            for part, off in enumerate(range(0, n, stride)):
                stop = min(off + seg, n)
                jobs.append(_Job(i, off, stop, 0, -(-(stop - off) // hop), part))
        return jobs

    def _group_jobs(self, jobs: list[_Job]) -> list[list[_Job]]:
        """Split rows into forward passes.

        Whole items share one pass (the caller chose the batch); chunk windows of long items run
        ``windows_per_batch`` at a time; EnCodec 48 kHz segments run up to ``max_chunk_seconds``
        worth at a time. Pad-sensitive codecs only share a pass between rows of equal length.
        """
        spec = self.spec
        if spec.segmented:
            seconds = self.max_chunk_seconds or 30.0
            cap = max(1, int(seconds * spec.sample_rate // spec.segment_samples))
            return _by_length(jobs, cap)
        per_item = Counter(j.item for j in jobs)
        whole = [j for j in jobs if per_item[j.item] == 1]
        windows = sorted((j for j in jobs if per_item[j.item] > 1), key=lambda j: j.length)
        cap = max(1, self.windows_per_batch)
        if self._adapter.pad_sensitive:
            return _by_length(whole, max(1, len(whole))) + _by_length(windows, cap)
        tiny = self._adapter.min_exact_length
        fragile = [j for j in whole if j.length < tiny]
        whole = [j for j in whole if j.length >= tiny]
        groups = ([whole] if whole else []) + _by_length(fragile, max(1, len(fragile)))
        return groups + [windows[k:k + cap] for k in range(0, len(windows), cap)]

    def _run_group(self, arrays: list[np.ndarray], group: list[_Job]):
        """One forward pass: pad rows into one array, move it once, sync once for the codes."""
        import torch

        spec = self.spec
        length = max(j.length for j in group)
        first = group[0]
        src = arrays[first.item]
        if (len(group) == 1 and first.start == 0 and first.stop == src.shape[-1]
                and src.flags.c_contiguous and src.flags.writeable):
            batch = src[None]  # no copy: the whole item, already a multiple of the hop
        else:
            batch = np.zeros((len(group), spec.channels, length), dtype=np.float32)
            for row, j in enumerate(group):
                piece = arrays[j.item][:, j.start:min(j.stop, arrays[j.item].shape[-1])]
                batch[row, :, :piece.shape[-1]] = piece
        x = torch.from_numpy(batch).to(self.device, non_blocking=True)
        scales_np = None
        if spec.scaled:
            # RMS of the mono mix, per row, in float64 on the CPU: identical however rows are batched.
            scales_np = np.array([np.sqrt(np.mean(np.square(
                arrays[j.item][:, j.start:j.stop].mean(axis=0, dtype=np.float64)))) + 1e-8 for j in group],
                dtype=np.float32)
            x = x / torch.from_numpy(scales_np).to(self.device).view(-1, 1, 1)
        codes = self._adapter.encode(x)
        if codes.dim() != 3 or codes.shape[1] != self.num_codebooks:
            raise CodecError(f"{spec.name}: model returned codes of shape {tuple(codes.shape)}, "
                             f"expected [B, {self.num_codebooks}, T]")
        expect_t = -(-length // spec.hop_length)
        if codes.shape[-1] != expect_t:
            raise CodecError(f"{spec.name}: model returned {codes.shape[-1]} frames for {length} samples, "
                             f"expected {expect_t} (hop {spec.hop_length})")
        codes_np = codes.to(torch.int16).cpu().numpy()  # the one device sync of this pass
        for row, j in enumerate(group):
            c = np.ascontiguousarray(codes_np[row, :, j.keep_from:j.keep_from + j.keep])
            yield j, c, (float(scales_np[row]) if scales_np is not None else None)

    # -- decoding ---------------------------------------------------------------------------
    def decode(self, encoded: Encoded) -> np.ndarray:
        """Decode one :class:`Encoded` back to float32 ``[C, audio_length]`` (for checks and SNR)."""
        import torch

        spec = self.spec
        if not encoded.segments:
            raise UsageError("nothing to decode: no code segments")
        for seg in encoded.segments:
            if seg.ndim != 2 or seg.shape[0] > spec.max_codebooks:
                raise UsageError(f"code segment of shape {tuple(seg.shape)} does not fit codec {spec.name} "
                                 f"([K <= {spec.max_codebooks}, T])")
        scales = list(encoded.scales) if encoded.scales else [None] * len(encoded.segments)
        if len(scales) != len(encoded.segments):
            raise UsageError(f"{len(encoded.segments)} code segments but {len(scales)} scales")
        outs = []
        with torch.inference_mode():
            for seg, scale in zip(encoded.segments, scales):
                codes = torch.from_numpy(np.asarray(seg, dtype=np.int64)).to(self.device)[None]
                y = self._adapter.decode(codes)[0]
                if scale is not None:
                    y = y * float(np.float32(scale))
                outs.append(y.float().cpu().numpy())
        if spec.segmented and len(outs) > 1:
            audio = _overlap_add(outs, spec.segment_stride)
        else:
            audio = outs[0]
        n = int(encoded.audio_length)
        if audio.shape[-1] < n:
            audio = np.pad(audio, ((0, 0), (0, n - audio.shape[-1])))
        return np.ascontiguousarray(audio[:, :n], dtype=np.float32)


def _by_length(jobs: list[_Job], cap: int) -> list[list[_Job]]:
    """Groups of at most ``cap`` rows that all have the same length (no padding needed)."""
    same: dict[int, list[_Job]] = {}
    for j in jobs:
        same.setdefault(j.length, []).append(j)
    return [rows[k:k + cap] for rows in same.values() for k in range(0, len(rows), cap)]


def _overlap_add(frames: list[np.ndarray], stride: int) -> np.ndarray:
    """Cross-fade decoded segments with triangular weights peaking mid-segment (EnCodec 48 kHz)."""
    seg_len = frames[0].shape[-1]
    total = stride * (len(frames) - 1) + frames[-1].shape[-1]
    t = (np.arange(seg_len, dtype=np.float64) + 1.0) / (seg_len + 1.0)
    weight = 0.5 - np.abs(t - 0.5)
    out = np.zeros((frames[0].shape[0], total), dtype=np.float64)
    norm = np.zeros(total, dtype=np.float64)
    for k, frame in enumerate(frames):
        n = frame.shape[-1]
        off = k * stride
        out[:, off:off + n] += weight[:n] * frame
        norm[off:off + n] += weight[:n]
    return (out / norm).astype(np.float32)


# ---------------------------------------------------------------------------- weights loading
def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _hf_offline() -> bool:
    """Offline mode, read from the environment *now* (huggingface_hub reads it once at import)."""
    if _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        return True
    try:
        from huggingface_hub import constants
        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # noqa: BLE001 - very old/new hub versions
        return False


def _hf_cache_dir() -> str | None:
    """The hub cache folder from the environment now (``None``: huggingface_hub's default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return None


def _hub_commit(repo_id: str, cache_dir: str | None) -> str | None:
    """Commit hash of the cached snapshot that ``from_pretrained`` used, if it can be found."""
    try:
        from huggingface_hub import try_to_load_from_cache
        path = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir)
    except Exception:  # noqa: BLE001 - provenance is best effort
        return None
    match = re.search(r"snapshots[/\\]([0-9a-f]{40})[/\\]", str(path)) if isinstance(path, str) else None
    return match.group(1) if match else None


def _not_found_message(spec: CodecSpec, repo_id: str, reason: str) -> str:
    cache = _hf_cache_dir() or "the default Hugging Face cache (~/.cache/huggingface/hub)"
    mode = " (offline mode: HF_HUB_OFFLINE=1)" if _hf_offline() else ""
    return (
        f"weights for codec {spec.name} ({repo_id}) are not in {cache} and could not be downloaded"
        f"{mode}. Fix one of:\n"
        f"  1. cache them: run once with network access, or `huggingface-cli download {repo_id}` "
        "(same cache; HF_HUB_OFFLINE=1 works afterwards);\n"
        "  2. pass local weights with `--weights PATH`: a folder in `save_pretrained` layout "
        "(config.json + model.safetensors) or an original EnCodec `.th` checkpoint;\n"
        "  3. use `--weights random` for a smoke test (untrained model; outputs record "
        "\"weights\": \"random\").\n"
        f"Underlying error: {reason}"
    )


def _hash_files(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _folder_weight_files(folder: Path) -> list[Path]:
    files = [folder / "config.json"]
    files += sorted(p for p in folder.iterdir()
                    if p.suffix in (".safetensors", ".bin") or p.name.endswith(".index.json"))
    return files


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


def _load_random(spec: CodecSpec, overrides: Mapping[str, Any] | None) -> Any:
    _, model_cls = _model_classes(spec.family)
    config = build_config(spec, overrides)
    _check_config(spec, config, "config_overrides" if overrides else "registry config")
    with _seeded_random():
        model = model_cls(config).eval()
        _randomize_codebooks(model, spec)
    return model


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the hub endpoint cannot be reached (``None`` if a TCP connection opens).

    One quick connect instead of huggingface_hub's ~20 s of retries when there is no network.
    """
    import socket
    from urllib.parse import urlsplit

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return None  # through a proxy a direct connect proves nothing; let the hub client try

    try:
        from huggingface_hub import constants
        endpoint = constants.ENDPOINT
    except Exception:  # noqa: BLE001
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot reach {endpoint} ({exc})"


def _load_pretrained(spec: CodecSpec, repo_id: str) -> tuple[Any, str]:
    """``from_pretrained`` from the HF cache if it is there, else from the hub (unless offline).

    The cache is tried first: codec weights are frozen, and without network (but without
    ``HF_HUB_OFFLINE`` either) huggingface_hub would otherwise retry for ~20 s before using it.
    """
    import torch

    _, model_cls = _model_classes(spec.family)
    cache_dir = _hf_cache_dir()
    offline = _hf_offline()
    try:
        from huggingface_hub import errors as hub_errors
        hub_exc: tuple[type[BaseException], ...] = (hub_errors.EntryNotFoundError,)
    except Exception:  # noqa: BLE001
        hub_exc = ()
    attempts = [True] if offline else [True, False]
    for local_only in attempts:
        if not local_only and (why := _hub_unreachable()) is not None:
            raise WeightsNotFoundError(_not_found_message(spec, repo_id, why))
        log.info("loading %s from %s (%s, cache %s)", spec.name, repo_id,
                 "cache only" if local_only else "hub", cache_dir or "default")
        try:
            model = model_cls.from_pretrained(repo_id, cache_dir=cache_dir, local_files_only=local_only,
                                              dtype=torch.float32)
            break
        except (OSError, *hub_exc) as exc:
            if local_only and not offline:
                log.debug("%s is not (fully) cached: %s", repo_id, exc)
                continue
            raise WeightsNotFoundError(_not_found_message(spec, repo_id, f"{type(exc).__name__}: {exc}")) from exc
    _check_config(spec, model.config, repo_id)
    commit = _hub_commit(repo_id, cache_dir)
    return model, f"{repo_id}@{commit}" if commit else repo_id


def _load_folder(spec: CodecSpec, folder: Path) -> tuple[Any, str]:
    import torch

    config_path = folder / "config.json"
    if not config_path.is_file():
        raise WeightsNotFoundError(f"weights folder {folder} has no config.json; expected a "
                                   "`save_pretrained` folder (config.json + model.safetensors)")
    try:
        model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as exc:
        raise CodecError(f"{config_path}: unreadable config ({exc})") from exc
    if model_type != spec.family:
        raise CodecError(f"{folder} holds a {model_type!r} model but codec {spec.name} is a "
                         f"{spec.family!r} model; pick the matching --codec")
    _, model_cls = _model_classes(spec.family)
    try:
        model = model_cls.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    except OSError as exc:
        raise WeightsNotFoundError(f"{folder}: could not load weights ({exc}); expected a "
                                   "`save_pretrained` folder (config.json + model.safetensors)") from exc
    _check_config(spec, model.config, str(folder))
    return model, "sha256:" + _hash_files(_folder_weight_files(folder))


_META_KEY = re.compile(r"^(encoder|decoder)\.model\.(\d+)\.(.+)$")
_META_VQ_KEY = re.compile(r"^quantizer\.vq\.layers\.(\d+)\._codebook\.(\w+)$")


def convert_meta_encodec_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """Rename a Meta ``encodec`` state dict to ``transformers``' ``EncodecModel`` names.

    Meta wraps every convolution twice (``SConv1d.conv`` → ``NormConv1d.conv``/``.norm``) and its
    weight norm stores ``weight_g``/``weight_v``; transformers has one wrapper (``.conv``/``.norm``)
    and a weight-norm parametrization (``original0``/``original1``). Sequential indices are the
    same on both sides, so the renaming is purely structural:

    ``encoder.model.1.block.1.conv.conv.weight_g`` → ``encoder.layers.1.block.1.conv.parametrizations.weight.original0``
    ``decoder.model.3.convtr.norm.weight`` → ``decoder.layers.3.norm.weight``
    ``quantizer.vq.layers.5._codebook.embed`` → ``quantizer.layers.5.codebook.embed``
    """
    out: dict[str, Any] = {}
    for key, value in state.items():
        vq = _META_VQ_KEY.match(key)
        if vq:
            out[f"quantizer.layers.{vq.group(1)}.codebook.{vq.group(2)}"] = value
            continue
        m = _META_KEY.match(key)
        if not m:
            raise CodecError(f"unexpected key {key!r} in EnCodec checkpoint")
        side, index, rest = m.groups()
        rest = re.sub(r"\b(?:conv|convtr)\.(?:conv|convtr)\.", "conv.", rest)  # SConv1d.conv.conv -> conv
        rest = re.sub(r"\b(?:conv|convtr)\.norm\.", "norm.", rest)  # SConv1d.conv.norm -> norm
        rest = re.sub(r"\.weight_g$", ".parametrizations.weight.original0", rest)
        rest = re.sub(r"\.weight_v$", ".parametrizations.weight.original1", rest)
        out[f"{side}.layers.{index}.{rest}"] = value
    return out


def _read_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickles with custom objects, truncated files, ...
        raise CodecError(f"{path}: not a loadable state-dict checkpoint ({type(exc).__name__}: {exc}). "
                         "Expected Meta's EnCodec .th file (a plain state dict).") from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise CodecError(f"{path}: checkpoint is not a state dict (got {type(state).__name__})")
    return dict(state)


def _load_state_into(model: Any, state: Mapping[str, Any], path: Path) -> None:
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CodecError(f"{path}: weights do not fit this codec's architecture: {exc}") from exc
    if missing or unexpected:
        raise CodecError(f"{path}: checkpoint does not match the model: missing {sorted(missing)[:5]}"
                         f"{'…' if len(missing) > 5 else ''}, unexpected {sorted(unexpected)[:5]}"
                         f"{'…' if len(unexpected) > 5 else ''}")


def _load_checkpoint_file(spec: CodecSpec, path: Path, overrides: Mapping[str, Any] | None) -> tuple[Any, str]:
    state = _read_checkpoint(path)
    is_meta = any(k.startswith(("encoder.model.", "quantizer.vq.")) for k in state)
    if is_meta:
        if spec.name not in _META_CHECKPOINTS:
            raise UsageError(f"{path} is a Meta EnCodec checkpoint; those exist for "
                             f"{', '.join(_META_CHECKPOINTS)} only, not {spec.name}")
        state = convert_meta_encodec_state_dict(state)
    elif spec.family != "encodec" and path.suffix != ".safetensors":
        raise UsageError(f"checkpoint files are supported for Meta EnCodec models; for {spec.name} "
                         "pass a `save_pretrained` folder with --weights")
    _, model_cls = _model_classes(spec.family)
    config = build_config(spec, overrides)
    _check_config(spec, config, str(path))
    with _seeded_random():
        model = model_cls(config)
    _load_state_into(model, state, path)
    return model, "sha256:" + _hash_files([path])


def _import_meta_encodec() -> Any:
    try:
        import encodec  # noqa: F401 - imports torchaudio at import time
        from encodec import EncodecModel as MetaEncodecModel
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken torchaudio raising anything
        raise CodecBackendError(
            f"backend 'encodec' needs Meta's `encodec` package, which could not be imported "
            f"({type(exc).__name__}: {exc}). Install `encodec` and a torchaudio matching your torch, "
            "or use the default backend 'transformers' (same weights, no torchaudio needed).") from exc
    return MetaEncodecModel


def _load_meta(spec: CodecSpec, weights: str | Path) -> tuple[Any, str]:
    """Meta's ``encodec`` model (24/48 kHz) with pretrained, random or ``.th`` weights."""
    import torch

    if spec.name not in _META_CHECKPOINTS:
        raise UsageError(f"backend 'encodec' provides {', '.join(_META_CHECKPOINTS)} only, not {spec.name}; "
                         "use --backend transformers")
    meta_cls = _import_meta_encodec()
    factory = getattr(meta_cls, f"encodec_model_{spec.name.split('_')[1]}")
    with _seeded_random():
        model = factory(pretrained=False)
    if weights == "random":
        with _seeded_random():
            _randomize_codebooks(model.eval(), spec)
        return model, "random"
    if weights == "pretrained":
        name = _META_CHECKPOINTS[spec.name]
        path = Path(torch.hub.get_dir()) / "checkpoints" / name
        if not path.is_file():
            if _hf_offline():
                raise WeightsNotFoundError(_not_found_message(
                    spec, f"{_META_URL}{name}", f"{path} is not cached and offline mode is on"))
            try:
                torch.hub.load_state_dict_from_url(_META_URL + name, map_location="cpu", check_hash=True)
            except Exception as exc:  # noqa: BLE001 - URLError, HTTPError, hash mismatch
                raise WeightsNotFoundError(_not_found_message(spec, _META_URL + name, str(exc))) from exc
        weights = path
    path = Path(weights)
    if path.is_dir():
        raise UsageError(f"backend 'encodec' loads Meta .th checkpoints, not folders ({path}); "
                         "use --backend transformers for save_pretrained folders")
    state = _read_checkpoint(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CodecError(f"{path}: not a Meta {spec.name} checkpoint: {exc}") from exc
    return model, "sha256:" + _hash_files([path])


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def load_codec(
    name: str = DEFAULT_CODEC,
    weights: str | os.PathLike = "pretrained",
    *,
    device: str | torch.device = "auto",
    bandwidth: float | None = None,
    backend: str = "transformers",
    max_chunk_seconds: float | None = 30.0,
    config_overrides: Mapping[str, Any] | None = None,
) -> Codec:
    """Build a ready-to-use :class:`Codec`.

    ``weights``: ``"pretrained"`` (the registry's hub id via ``from_pretrained``: HF cache,
    ``HF_HUB_OFFLINE`` and ``HF_HOME``/``HF_HUB_CACHE`` are honoured as set *now*), ``"random"``
    (untrained, deterministic; provenance ``"random"``), a ``save_pretrained`` folder, an original
    EnCodec ``.th`` checkpoint (converted), or another hub id (``org/name``).
    ``bandwidth`` (kbps) selects the number of codebooks (default: the registry's default).
    ``backend="encodec"`` uses Meta's package (24/48 kHz only; needs torchaudio).
    ``config_overrides`` tweak the config of random/checkpoint models (e.g. smaller test models);
    they may not change the token geometry.
    """
    spec = get_spec(name)
    bw = spec.check_bandwidth(bandwidth)
    dev = resolve_device(device)
    if backend not in spec.backends:
        if backend not in ("transformers", "encodec"):
            raise UsageError(f"unknown backend {backend!r}; use 'transformers' or 'encodec'")
        raise UsageError(f"backend {backend!r} is not available for {spec.name} "
                         f"(available: {', '.join(spec.backends)})")
    if max_chunk_seconds is not None and max_chunk_seconds <= 0:
        max_chunk_seconds = None
    weights_str = os.fspath(weights) if isinstance(weights, os.PathLike) else str(weights)
    if config_overrides and not (weights_str == "random" or Path(weights_str).is_file()):
        raise UsageError("config_overrides apply to weights='random' or a checkpoint file only; "
                         "pretrained models and folders bring their own config")

    if backend == "encodec":
        if weights_str not in ("pretrained", "random") and not Path(weights_str).exists():
            raise WeightsNotFoundError(f"weights path not found: {weights_str}")
        model, weights_id = _load_meta(spec, weights_str)
    elif weights_str == "random":
        model, weights_id = _load_random(spec, config_overrides), "random"
    elif weights_str == "pretrained":
        model, weights_id = _load_pretrained(spec, spec.hub_id)
    else:
        path = Path(weights_str).expanduser()
        if path.is_dir():
            model, weights_id = _load_folder(spec, path)
        elif path.is_file():
            model, weights_id = _load_checkpoint_file(spec, path, config_overrides)
        elif _HUB_ID.match(weights_str) and not weights_str.startswith((".", "/")):
            try:
                model, weights_id = _load_pretrained(spec, weights_str)
            except WeightsNotFoundError as exc:
                raise WeightsNotFoundError(f"--weights {weights_str!r} is not a local path, and as a hub id: "
                                           f"{exc}") from exc
        else:
            raise WeightsNotFoundError(
                f"weights path not found: {path}. Pass 'pretrained', 'random', a save_pretrained "
                "folder or an EnCodec .th checkpoint")
    model.eval()
    model.to(dev)
    codec = Codec(spec, model, backend=backend, device=dev, bandwidth=bw, weights_id=weights_id,
                  max_chunk_seconds=max_chunk_seconds)
    log.info("loaded %r", codec)
    return codec
