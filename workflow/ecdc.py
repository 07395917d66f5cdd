"""The `.ecdc` token container: write, fast read, header-only read, legacy torch-pickle read.

The container is Meta EnCodec's (byte-identical for ``encodec_24khz`` / ``encodec_48khz``) plus
header keys Meta's reader ignores; frame counts follow the encoder's exact ``ceil(n / hop)``.
Reads are vectorised and check header-implied sizes against the file before allocating. Layout:
README.md, "File formats".
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from .ecdc_bits import ceil_div as _ceil_div
from .ecdc_bits import pack_rows as _pack_rows
from .ecdc_bits import unpack_codes as _unpack_codes
from .errors import EcdcFormatError
from .files import atomic_write_bytes

log = logging.getLogger(__name__)

MAGIC = b"ECDC"
VERSION = 0
PREFIX = struct.Struct("!4sBI")  # magic, version, JSON length
MAX_HEADER_BYTES = 1 << 20
MAX_BITS = 15  # codes are returned as int16
MAX_CODEBOOKS = 4096
MAX_AUDIO_LENGTH = 1 << 40
MAX_HOP = 1 << 24
MAX_SAMPLE_RATE = 10_000_000
MAX_SEGMENTS_PER_STRIDE = 1024  # ceil(seg / stride): bounds the number of partial tail segments
SCALE_BYTES = 4
RESERVED_KEYS = ("m", "al", "nc", "lm")

REENCODE_HINT = "re-encode the audio with s2 (wf-wav2encodec24) to regenerate it"

PathLike = Union[str, "os.PathLike[str]"]
Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]


@dataclass(frozen=True)
class MetaModel:
    """Fixed container layout of one of Meta's pretrained EnCodec models."""

    sample_rate: int
    fps: float
    hop: int
    bits: int
    segment: int | None  # samples per segment, None for one segment
    stride: int | None
    scaled: bool


META_MODELS: dict[str, MetaModel] = {
    "encodec_24khz": MetaModel(24000, 75, 320, 10, None, None, False),
    "encodec_48khz": MetaModel(48000, 150, 320, 10, 48000, 47520, True),
}


def bits_for(bins: int) -> int:
    """Bits per code for a codebook of ``bins`` entries: ``ceil(log2(bins))``, at least 1."""
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)):
        raise TypeError(f"codebook size must be an int, got {type(bins).__name__}")
    bins = int(bins)
    if not 1 <= bins <= 1 << MAX_BITS:
        raise ValueError(f"codebook size must be in [1, {1 << MAX_BITS}], got {bins}")
    return max(1, (bins - 1).bit_length())


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _fail(name: str, what: str, hint: str = REENCODE_HINT) -> EcdcFormatError:
    return EcdcFormatError(f"{name}: {what}; {hint}" if hint else f"{name}: {what}")


# ----------------------------------------------------------------------------------- layout plan


@dataclass(frozen=True)
class _Run:
    """``count`` consecutive segments from segment ``first`` on, each ``frames`` frames long."""

    first: int
    count: int
    frames: int


@dataclass(frozen=True)
class _Plan:
    """Everything a header implies, validated; computed without per-segment allocation."""

    bits: int
    sample_rate: int
    fps: float
    hop: int
    segment: int  # samples per full segment (== audio_length for one segment)
    stride: int
    scaled: bool
    num_segments: int
    runs: tuple[_Run, ...]
    num_codebooks: int

    def segment_bytes(self, frames: int) -> int:
        """Bytes of one segment of ``frames`` frames (scale included)."""
        return _ceil_div(frames * self.num_codebooks * self.bits, 8) + SCALE_BYTES * self.scaled

    @property
    def num_frames(self) -> int:
        return sum(r.count * r.frames for r in self.runs)

    @property
    def payload_bytes(self) -> int:
        return sum(r.count * self.segment_bytes(r.frames) for r in self.runs)


def _get_int(meta: dict, key: str, name: str, lo: int, hi: int, default: Any = None) -> Any:
    if key not in meta:
        return default
    v = meta[key]
    if not _is_int(v) or not lo <= v <= hi:
        raise _fail(name, f"header key {key!r} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _build_plan(meta: Any, name: str) -> _Plan:
    """Validate a parsed JSON header and derive the segment layout from it."""
    if not isinstance(meta, dict):
        raise _fail(name, f"JSON header is a {type(meta).__name__}, not an object")
    for key in RESERVED_KEYS:
        if key not in meta:
            raise _fail(name, f"JSON header lacks the required key {key!r}")
    model = meta["m"]
    if not isinstance(model, str) or not model or len(model) > 256:
        raise _fail(name, f"header key 'm' must be a non-empty model name, got {model!r}")
    if not isinstance(meta["lm"], bool):
        raise _fail(name, f"header key 'lm' must be true or false, got {meta['lm']!r}")
    al = _get_int(meta, "al", name, 0, MAX_AUDIO_LENGTH)
    nc = _get_int(meta, "nc", name, 1, MAX_CODEBOOKS)
    table = META_MODELS.get(model)

    bits = _get_int(meta, "bits", name, 1, MAX_BITS, table.bits if table else None)
    hop = _get_int(meta, "hop", name, 1, MAX_HOP, table.hop if table else None)
    sr = _get_int(meta, "sr", name, 1, MAX_SAMPLE_RATE, table.sample_rate if table else None)
    for key, val in (("bits", bits), ("hop", hop), ("sr", sr)):
        if val is None:
            raise _fail(name, f"header of non-Meta model {model!r} lacks the key {key!r}")
    fps: Any = meta.get("fps", table.fps if table else sr / hop)
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not math.isfinite(fps) or fps <= 0:
        raise _fail(name, f"header key 'fps' must be a positive number, got {fps!r}")
    scaled = meta.get("scaled", table.scaled if table else False)
    if not isinstance(scaled, bool):
        raise _fail(name, f"header key 'scaled' must be true or false, got {scaled!r}")

    seg = _get_int(meta, "seg", name, 1, MAX_AUDIO_LENGTH, table.segment if table else None)
    if seg is None:  # one segment covering the whole audio
        seg = stride = al
        n = 1 if al > 0 else 0
    else:
        default_stride = table.stride if table and table.stride and "seg" not in meta else seg
        stride = _get_int(meta, "stride", name, 1, seg, default_stride)
        if stride > seg:
            raise _fail(name, f"header key 'stride' ({stride}) exceeds 'seg' ({seg})")
        if _ceil_div(seg, stride) > MAX_SEGMENTS_PER_STRIDE:
            raise _fail(name, f"segment overlap too large (seg={seg}, stride={stride})")
        n = _ceil_div(al, stride)

    runs: list[_Run] = []
    explicit = meta.get("seg_frames")
    if explicit is not None:  # legacy files: per-segment frame counts given explicitly
        ok = isinstance(explicit, list) and all(_is_int(f) and 0 <= f <= MAX_AUDIO_LENGTH for f in explicit)
        if not ok:
            raise _fail(name, "header key 'seg_frames' must be a list of non-negative integers")
        n = len(explicit)
        i = 0
        while i < n:
            j = i
            while j < n and explicit[j] == explicit[i]:
                j += 1
            runs.append(_Run(i, j - i, explicit[i]))
            i = j
    elif n:
        n_full = (al - seg) // stride + 1 if al >= seg else 0
        if n_full:
            runs.append(_Run(0, n_full, _ceil_div(seg, hop)))
        for i in range(n_full, n):  # at most ceil(seg / stride) partial tail segments
            runs.append(_Run(i, 1, _ceil_div(al - i * stride, hop)))
    return _Plan(bits, sr, float(fps), hop, seg, stride, scaled, n, tuple(runs), nc)


# ------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class EcdcHeader:
    """A parsed, validated `.ecdc` header (``meta`` is the full JSON object)."""

    model: str
    audio_length: int
    num_codebooks: int
    use_lm: bool
    meta: dict
    data_offset: int  # byte offset of the first segment (0 for legacy torch files)

    @functools.cached_property
    def _plan(self) -> _Plan:
        return _build_plan(self.meta, "<header>")

    @property
    def bits(self) -> int:
        """Bits per packed code."""
        return self._plan.bits

    @property
    def sample_rate(self) -> int:
        return self._plan.sample_rate

    @property
    def fps(self) -> float:
        """Token frames per second."""
        return self._plan.fps

    @property
    def hop(self) -> int:
        """Audio samples per token frame."""
        return self._plan.hop

    @property
    def scaled(self) -> bool:
        """Whether each segment is preceded by a float32 scale."""
        return self._plan.scaled

    @property
    def segment_samples(self) -> int:
        """Samples per full segment (the whole audio for single-segment layouts)."""
        return self._plan.segment

    @property
    def segment_stride(self) -> int:
        return self._plan.stride

    @property
    def num_segments(self) -> int:
        return self._plan.num_segments

    @property
    def num_frames(self) -> int:
        """Total token frames, summed over segments (computed without a per-segment list)."""
        return self._plan.num_frames

    @property
    def payload_bytes(self) -> int:
        """Payload size in bytes that the header implies."""
        return self._plan.payload_bytes

    @property
    def duration(self) -> float:
        """Audio duration in seconds."""
        return self.audio_length / self.sample_rate

    @property
    def bandwidth(self) -> float | None:
        bw = self.meta.get("bw")
        return float(bw) if isinstance(bw, (int, float)) and not isinstance(bw, bool) else None

    @property
    def weights(self) -> str | None:
        w = self.meta.get("weights")
        return w if isinstance(w, str) else None

    def segment_layout(self) -> list[tuple[int, int, int]]:
        """``(start_sample, n_samples, n_frames)`` for each segment."""
        plan = self._plan
        out = []
        for run in plan.runs:
            for i in range(run.first, run.first + run.count):
                start = i * plan.stride
                out.append((start, max(0, min(self.audio_length - start, plan.segment)), run.frames))
        return out


@dataclass
class EcdcTokens:
    """Decoded tokens: one ``[K, T_s]`` int16 array and one scale (or None) per segment."""

    header: EcdcHeader
    segments: list[np.ndarray]
    scales: list[float | None]

    @property
    def codes(self) -> np.ndarray:
        """All segments concatenated along time: ``[K, sum T_s]`` int16."""
        if len(self.segments) == 1:
            return self.segments[0]
        if not self.segments:
            return np.zeros((self.header.num_codebooks, 0), dtype=np.int16)
        return np.concatenate(self.segments, axis=1)

    @property
    def num_frames(self) -> int:
        return sum(int(s.shape[1]) for s in self.segments)

    @property
    def num_codebooks(self) -> int:
        return self.header.num_codebooks


# ------------------------------------------------------------------------------------ writing


def _as_segments(segments: Any, name: str) -> list[np.ndarray]:
    if isinstance(segments, np.ndarray) or hasattr(segments, "__array__"):
        arr = np.asarray(segments)
        if arr.ndim == 2:
            return [arr]
        if arr.ndim == 3:
            return list(arr)
        raise _fail(name, f"codes must be [K, T] or [S, K, T], got shape {arr.shape}", "")
    out = []
    for i, seg in enumerate(segments):
        arr = np.asarray(seg)
        if arr.ndim != 2:
            raise _fail(name, f"segment {i} must be a [K, T] array, got shape {arr.shape}", "")
        out.append(arr)
    return out


def _check_meta_compatible(meta: dict, plan: _Plan, name: str) -> None:
    """Refuse to write a Meta model name with a layout Meta's reader would misread."""
    table = META_MODELS.get(meta["m"])
    if table is None:
        return
    want = {"bits": table.bits, "sr": table.sample_rate, "hop": table.hop, "fps": table.fps,
            "scaled": table.scaled, "seg": table.segment, "stride": table.stride}
    got = {"bits": plan.bits, "sr": plan.sample_rate, "hop": plan.hop, "fps": plan.fps,
           "scaled": plan.scaled, "seg": meta.get("seg"), "stride": meta.get("stride")}
    if table.segment is not None:
        got["seg"], got["stride"] = plan.segment, plan.stride
    bad = [f"{k}={got[k]!r} (Meta: {want[k]!r})" for k in want if got[k] != want[k]]
    if bad:
        raise _fail(name, f"model {meta['m']!r} is Meta's and its container layout is fixed, but "
                    f"{', '.join(bad)}", "use another model name for a different layout")


def encode_ecdc(
    segments: Any,
    *,
    model: str,
    audio_length: int,
    bits: int,
    scales: Sequence[float | None] | None = None,
    extra: dict | None = None,
    name: str = "<ecdc>",
) -> bytes:
    """Serialise codes to `.ecdc` bytes (byte-identical to Meta's when ``extra`` is None).

    ``segments`` is a list of ``[K, T_s]`` integer arrays (or one ``[K, T]`` / ``[S, K, T]``
    array) whose frame counts must match the layout the header implies. ``bits`` is added to the
    header when the reader could not infer it. For ``audio_length == 0`` pass one ``[K, 0]``
    segment: the file is then header-only. ``extra`` keys are appended to the JSON header.
    """
    if not _is_int(audio_length) and not isinstance(audio_length, np.integer):
        raise _fail(name, f"audio_length must be an int, got {audio_length!r}", "")
    if not _is_int(bits) or not 1 <= bits <= MAX_BITS:
        raise _fail(name, f"bits must be an int in [1, {MAX_BITS}], got {bits!r}", "")
    segs = _as_segments(segments, name)
    meta, k = _encode_meta(segs, model, audio_length, bits, scales, extra, name)
    plan = _build_plan(meta, name)
    _check_meta_compatible(meta, plan, name)

    if plan.num_segments == 0 and any(s.shape[1] for s in segs):
        raise _fail(name, "audio_length is 0 but codes were given", "")
    segs = segs if plan.num_segments else []
    frames = [int(s.shape[1]) for s in segs]
    want = [r.frames for r in plan.runs for _ in range(r.count)]
    if frames != want:
        raise _fail(name, f"segment frame counts {frames[:8]}{'...' if len(frames) > 8 else ''} "
                    f"do not match the layout the header implies {want[:8]}"
                    f"{'...' if len(want) > 8 else ''} (audio_length={audio_length}, hop={plan.hop}, "
                    f"seg={plan.segment}, stride={plan.stride})", "")
    scale_bytes = _scale_bytes(scales, plan, len(segs), name)

    try:
        head = json.dumps(meta, allow_nan=False).encode("utf-8")  # Meta's json.dumps defaults
    except (TypeError, ValueError) as exc:
        raise _fail(name, f"header is not JSON-serialisable: {exc}", "") from exc
    if len(head) > MAX_HEADER_BYTES:
        raise _fail(name, f"JSON header is {len(head)} bytes (limit {MAX_HEADER_BYTES})", "")
    out = np.zeros(PREFIX.size + len(head) + plan.payload_bytes, dtype=np.uint8)
    out[: PREFIX.size] = np.frombuffer(PREFIX.pack(MAGIC, VERSION, len(head)), dtype=np.uint8)
    out[PREFIX.size : PREFIX.size + len(head)] = np.frombuffer(head, dtype=np.uint8)
    pos = PREFIX.size + len(head)
    limit = 1 << bits
    for run in plan.runs:
        stack = np.stack(segs[run.first : run.first + run.count])  # [S, K, T]
        if stack.size:
            lo, hi = int(stack.min()), int(stack.max())
            if lo < 0 or hi >= limit:
                raise _fail(name, f"codes in segments {run.first}..{run.first + run.count - 1} span "
                            f"[{lo}, {hi}], outside [0, {limit - 1}] for {bits}-bit codes",
                            "pass bits=bits_for(codebook_size)")
        values = stack.transpose(0, 2, 1).reshape(run.count, run.frames * k)  # time-major: t, then k
        seg_len = plan.segment_bytes(run.frames)
        region = out[pos : pos + run.count * seg_len].reshape(run.count, seg_len)
        if plan.scaled:
            region[:, :SCALE_BYTES] = scale_bytes[run.first : run.first + run.count]
        region[:, SCALE_BYTES * plan.scaled :] = _pack_rows(values, bits)
        pos += run.count * seg_len
    return out.tobytes()


def _encode_meta(segs: list, model: str, audio_length: int, bits: int, scales, extra, name: str):
    """``encode_ecdc``'s JSON header (Meta's keys, ``extra``, then bits/scaled if needed) and K."""
    if not segs:
        raise _fail(name, "no segments given (pass one [K, 0] array for empty audio)", "")
    k = int(segs[0].shape[0])
    for i, s in enumerate(segs):
        if s.shape[0] != k:
            raise _fail(name, f"segment {i} has {s.shape[0]} codebooks, segment 0 has {k}", "")
        if s.dtype.kind not in "iub":
            raise _fail(name, f"segment {i} has non-integer dtype {s.dtype}", "")
    extra = dict(extra or {})
    if clash := [key for key in RESERVED_KEYS if key in extra]:
        raise _fail(name, f"extra header keys {clash} are reserved", "pass them as arguments")
    if "seg_frames" in extra:
        raise _fail(name, "'seg_frames' is only used for legacy files", "describe the layout with seg/stride")
    if "bits" in extra and extra["bits"] != bits:
        raise _fail(name, f"extra['bits']={extra['bits']!r} disagrees with bits={bits}", "")
    meta: dict[str, Any] = {"m": model, "al": int(audio_length), "nc": k, "lm": False, **extra}
    table = META_MODELS.get(model)
    if "bits" not in meta and (table is None or table.bits != bits):
        meta["bits"] = bits
    if "scaled" not in meta and table is None and scales is not None and any(x is not None for x in scales):
        meta["scaled"] = True
    return meta, k


def _scale_bytes(scales: Sequence[float | None] | None, plan: _Plan, n: int, name: str) -> np.ndarray:
    """Big-endian float32 scale bytes ``[n, 4]``, validated against the layout."""
    if scales is not None:
        scales = list(scales)
        if len(scales) != n:
            raise _fail(name, f"{len(scales)} scales given for {n} segments", "")
    if not plan.scaled:
        if scales is not None and any(x is not None for x in scales):
            raise _fail(name, "scales given but the layout has no per-segment scale", "")
        return np.zeros((n, SCALE_BYTES), dtype=np.uint8)
    if scales is None or any(x is None for x in scales):
        raise _fail(name, "this layout needs one float scale per segment", "")
    vals = np.array([float(x) for x in scales], dtype=np.float64)
    if not np.all(np.isfinite(vals)) or np.any(np.abs(vals) > np.finfo(np.float32).max):
        raise _fail(name, "scales must be finite float32 values", "")
    return vals.astype(">f4").view(np.uint8).reshape(n, SCALE_BYTES)


def write_ecdc(
    path: PathLike,
    segments: Any,
    *,
    model: str,
    audio_length: int,
    bits: int,
    scales: Sequence[float | None] | None = None,
    extra: dict | None = None,
) -> None:
    """Write a `.ecdc` file atomically (see :func:`encode_ecdc`)."""
    data = encode_ecdc(segments, model=model, audio_length=audio_length, bits=bits,
                       scales=scales, extra=extra, name=str(path))
    atomic_write_bytes(path, data)
    log.debug("wrote %s (%d bytes)", path, len(data))


# ------------------------------------------------------------------------------------ reading


def _parse_prefix(name: str, read: Callable[[int], bytes], size: int, *, allow_lm: bool) -> EcdcHeader:
    """Parse magic, version and JSON header; ``size`` is the whole file's size in bytes."""
    if size < PREFIX.size:
        raise _fail(name, f"file is {size} bytes, too short for an .ecdc header")
    prefix = read(PREFIX.size)
    if len(prefix) != PREFIX.size:
        raise _fail(name, "file ended inside the .ecdc header")
    magic, version, json_len = PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise _fail(name, f"not an .ecdc file (magic {magic!r}, expected {MAGIC!r})",
                    "check the path; legacy torch token files are read by load_tokens()")
    if version != VERSION:
        raise _fail(name, f"unsupported .ecdc version {version} (only {VERSION} is known)")
    if json_len > MAX_HEADER_BYTES:
        raise _fail(name, f"JSON header claims {json_len} bytes (limit {MAX_HEADER_BYTES})")
    if PREFIX.size + json_len > size:
        raise _fail(name, f"truncated: JSON header claims {json_len} bytes but the file has "
                    f"{size - PREFIX.size} after the prefix")
    raw = read(json_len)
    if len(raw) != json_len:
        raise _fail(name, "file ended inside the JSON header")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise _fail(name, f"JSON header is not valid UTF-8 JSON ({str(exc)[:80]})") from exc
    plan = _build_plan(meta, name)
    if meta["lm"] and not allow_lm:
        raise _fail(name, "file was compressed with Meta's entropy-coding language model (lm=true), "
                    "which this reader does not decode",
                    "re-encode with encodec's use_lm=False, or with our s2 (wf-wav2encodec24)")
    header = EcdcHeader(meta["m"], meta["al"], meta["nc"], meta["lm"], meta, PREFIX.size + json_len)
    header.__dict__["_plan"] = plan  # seed the cached_property with the already-validated plan
    return header


def _source_name(source: Source) -> str:
    return "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else str(source)


def read_ecdc_header(source: Source, *, allow_lm: bool = False) -> EcdcHeader:
    """Parse only the header (never touches the payload): frames, codebooks, length, layout.

    ``lm: true`` files are refused unless ``allow_lm`` (their header is still meaningful).
    """
    name = _source_name(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        view = memoryview(source).cast("B")
        cursor = [0]

        def read(n: int) -> bytes:
            chunk = bytes(view[cursor[0] : cursor[0] + n])
            cursor[0] += len(chunk)
            return chunk

        return _parse_prefix(name, read, len(view), allow_lm=allow_lm)
    try:
        with open(source, "rb") as fh:
            return _parse_prefix(name, fh.read, os.fstat(fh.fileno()).st_size, allow_lm=allow_lm)
    except OSError as exc:
        raise _fail(name, f"cannot read file ({exc.strerror or exc})", "check the path") from exc


def read_ecdc(source: Source) -> EcdcTokens:
    """Read and decode a whole `.ecdc` file (path or bytes) into int16 codes per segment."""
    name = _source_name(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = np.frombuffer(memoryview(source).cast("B"), dtype=np.uint8)
        header = read_ecdc_header(source)
        _check_payload_size(name, header, data.size - header.data_offset)
        payload = data[header.data_offset :]
    else:
        try:
            with open(source, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                header = _parse_prefix(name, fh.read, size, allow_lm=False)
                _check_payload_size(name, header, size - header.data_offset)
                payload = np.empty(header.payload_bytes, dtype=np.uint8)  # now known to be real
                view = memoryview(payload)
                got = 0
                while got < payload.size:
                    n = fh.readinto(view[got:])
                    if not n:
                        raise _fail(name, "file shrank while being read")
                    got += n
                if fh.read(1):
                    raise _fail(name, "file grew while being read")
        except OSError as exc:
            raise _fail(name, f"cannot read file ({exc.strerror or exc})", "check the path") from exc
    return _decode_payload(header, payload)


def _check_payload_size(name: str, header: EcdcHeader, actual: int) -> None:
    expected = header.payload_bytes
    if actual < expected:
        raise _fail(name, f"truncated: payload is {actual} bytes but the header implies {expected} "
                    f"({header.num_frames} frames x {header.num_codebooks} codebooks x {header.bits} bits "
                    f"in {header.num_segments} segments)")
    if actual > expected:
        raise _fail(name, f"payload is {actual} bytes but the header implies {expected}: "
                    "trailing data or a corrupt header")


def _decode_payload(header: EcdcHeader, payload: np.ndarray) -> EcdcTokens:
    plan = header._plan
    k = header.num_codebooks
    segments: list[np.ndarray] = []
    scales: list[float | None] = []
    pos = 0
    for run in plan.runs:
        seg_len = plan.segment_bytes(run.frames)
        region = payload[pos : pos + run.count * seg_len].reshape(run.count, seg_len)
        pos += run.count * seg_len
        if plan.scaled:
            raw = np.ascontiguousarray(region[:, :SCALE_BYTES]).view(">f4")[:, 0]
            scales.extend(raw.astype(float).tolist())
        else:
            scales.extend([None] * run.count)
        codes = _unpack_codes(region[:, SCALE_BYTES * plan.scaled :], run.frames, k, plan.bits)
        segments.extend(codes)  # views [K, T] into one [S, K, T] block
    return EcdcTokens(header, segments, scales)


def validate_ecdc(path: Source) -> EcdcHeader:
    """Fully read and decode a file; return its header or raise :class:`EcdcFormatError`."""
    return read_ecdc(path).header


def load_tokens(path: PathLike) -> EcdcTokens:
    """Read any token file: `.ecdc` by magic, else the seed's torch pickle (zip or raw pickle)."""
    name = str(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise _fail(name, f"cannot read file ({exc.strerror or exc})", "check the path") from exc
    if head == MAGIC:
        return read_ecdc(path)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return read_legacy_tokens(path)
    raise _fail(name, f"neither an .ecdc file nor a legacy torch token file (starts with {head!r})",
                "check the path")


__all__ = [
    "EcdcHeader",
    "EcdcTokens",
    "META_MODELS",
    "MetaModel",
    "bits_for",
    "encode_ecdc",
    "load_tokens",
    "read_ecdc",
    "read_ecdc_header",
    "read_legacy_tokens",
    "validate_ecdc",
    "write_ecdc",
]


# The seed's torch.save token files (imported last: that module uses the records above).
from .ecdc_legacy import read_legacy_tokens  # noqa: E402,F401
