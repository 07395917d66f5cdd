"""A loaded codec at work: batched, chunked encoding to int16 codes and decoding back.

:class:`Codec` wraps one backend model through a small adapter per family and turns lists of
float ``[C, N]`` arrays into :class:`Encoded` records (what an ``.ecdc`` file stores). The
padding and batching rules are in the :class:`Codec` docstring. torch is imported lazily.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CodecError, UsageError
from .registry import CodecSpec

if TYPE_CHECKING:  # torch is imported lazily so that `--help` and the registry stay fast
    import torch

log = logging.getLogger(__package__)  # "workflow.codecs", the logger name from before the split


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


class _Seanet(_Adapter):
    """Our own trained SEANet + RVQ codec: a TorchScript export (``workflow/codecs/seanet.py``)."""

    def encode(self, x):
        return self.model.encode(x, self.num_codebooks)

    def decode(self, codes):
        return self.model.decode(codes)


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
    and ``windows_per_batch`` (chunking of long files, see below).

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
                       ("dac", "transformers"): _HFDac, ("xcodec", "transformers"): _HFXcodec,
                       ("seanet", "torchscript"): _Seanet}
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
        x = torch.from_numpy(batch)
        if self.device.type == "cuda":  # page-locked: the copy to the GPU is one DMA, async to the host
            x = x.pin_memory()
        x = x.to(self.device, non_blocking=True)
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
