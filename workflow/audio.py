"""Audio I/O and level maths: read, channel policy, resample, measure, gain, peak guard, write.

Every stage that touches waveforms goes through this module so that all of them agree on the
array layout (float32 ``[C, N]``), the error messages and the loudness maths (windowed RMS,
BS.1770 LUFS, gains that never amplify silence and respect a peak limit). README.md, "s1".
"""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import ENVIRONMENT_ERRNOS, AudioContentError, AudioReadError, UsageError
from .files import atomic_path

log = logging.getLogger(__name__)

__all__ = [
    "SUBTYPES",
    "GAIN_METHODS",
    "LUFS_BLOCK_SECONDS",
    "AudioInfo",
    "GainDecision",
    "audio_info",
    "read_audio",
    "promised_frames",
    "to_channels",
    "resample",
    "windowed_rms",
    "peak_windowed_rms",
    "integrated_lufs",
    "sample_peak",
    "compute_gain",
    "apply_gain",
    "split_segments",
    "write_audio",
]

#: Output sample formats offered by the stage scripts.
SUBTYPES: tuple[str, ...] = ("PCM_16", "PCM_24", "FLOAT")
#: Gain methods understood by :func:`compute_gain`.
GAIN_METHODS: tuple[str, ...] = ("rms", "lufs")
#: BS.1770 gating block length; pyloudnorm refuses anything shorter.
LUFS_BLOCK_SECONDS = 0.4
#: Below this integrated loudness a file counts as silent (BS.1770 absolute gate).
LUFS_SILENCE_FLOOR = -70.0

_RESAMPLE_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")
_FORMAT_BY_SUFFIX = {
    ".wav": "WAV",
    ".flac": "FLAC",
    ".ogg": "OGG",
    ".mp3": "MP3",
    ".aiff": "AIFF",
    ".aif": "AIFF",
}
_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
_BYTES_PER_SAMPLE = {"PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}


# --------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says about it (no samples decoded)."""

    sample_rate: int
    channels: int
    frames: int
    duration: float
    format: str
    subtype: str


@dataclass(frozen=True)
class GainDecision:
    """The gain chosen for one file and why.

    ``measured``/``target`` are linear RMS for ``method="rms"`` and LUFS for ``method="lufs"``.
    ``flags`` is a subset of ``("silent", "peak_limited", "short")``: ``silent`` means the gain was
    left at 1.0 because there is nothing to normalise; ``peak_limited`` means the gain was lowered
    so the sample peak equals the peak limit; ``short`` means the audio is shorter than one
    measuring window (the RMS window, or the 400 ms BS.1770 block for LUFS).
    """

    gain: float
    gain_db: float
    method: str
    measured: float
    target: float
    flags: tuple[str, ...]


# --------------------------------------------------------------------------------------------
# reading


def _decode_error(path: Path | str, exc: BaseException | str) -> AudioReadError:
    return AudioReadError(
        f"{path}: cannot decode ({exc}); is it a valid audio file? convert it with ffmpeg "
        f"(ffmpeg -i '{path}' out.wav) or remove it"
    )


def audio_info(path: Path | str) -> AudioInfo:
    """Read only the header of ``path`` (cheap; for planning and reports)."""
    try:
        info = sf.info(str(path))
    except (RuntimeError, ValueError, TypeError, OSError, EOFError) as exc:
        raise _decode_error(path, exc) from exc
    return AudioInfo(
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
        duration=float(info.duration),
        format=str(info.format),
        subtype=str(info.subtype),
    )


def _as_2d(audio: np.ndarray) -> np.ndarray:
    """``[N]`` → ``[1, N]`` view; ``[C, N]`` unchanged; anything else is a usage error."""
    audio = np.asarray(audio)
    if audio.ndim == 1:
        return audio[np.newaxis, :]
    if audio.ndim != 2:
        raise UsageError(f"audio must be shaped [C, N] or [N], got shape {audio.shape}")
    return audio


def _check_finite(data: np.ndarray, path: Path | str) -> None:
    """Raise AudioContentError if ``data`` holds NaN or Inf (one cheap pass when it does not)."""
    # A sum is one allocation-free pass; it is non-finite whenever a sample is (or on overflow,
    # which the exact count below then clears).
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(data, axis=None)
    if np.isfinite(total):
        return
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise AudioContentError(
            f"{path}: {bad} of {data.size} samples are NaN or Inf; the file is damaged or was "
            "written by a buggy tool — re-export it or remove it"
        )


def read_audio(path: Path | str, *, always_2d: bool = True) -> tuple[np.ndarray, int]:
    """Decode ``path`` to float32 ``[C, N]`` and return it with its sample rate.

    Any format libsndfile reads (wav, flac, ogg, mp3, aiff, ...), any rate, channel count and
    integer or float subtype. Integer PCM is scaled to [-1, 1). The array is a transposed view of
    soundfile's ``[N, C]`` buffer (no copy). With ``always_2d=False`` mono comes back as ``[N]``.

    Raises :class:`AudioReadError` if the file cannot be decoded (missing, empty, corrupt,
    unsupported) and :class:`AudioContentError` if it decodes to zero frames or to NaN/Inf.
    """
    p = Path(path)
    if not p.is_file():
        raise AudioReadError(f"{path}: file not found (or not a regular file); check the path")
    if p.stat().st_size == 0:
        raise AudioReadError(f"{path}: file is empty (0 bytes); re-export it or remove it")
    try:
        with sf.SoundFile(str(p)) as fh:
            declared, fmt = fh.frames, fh.format
            data, sr = fh.read(dtype="float32", always_2d=True), fh.samplerate
    except (RuntimeError, ValueError, TypeError, OSError, EOFError) as exc:
        raise _decode_error(path, exc) from exc
    promised = promised_frames(p) if fmt in ("WAV", "WAVEX", "AIFF") else declared if fmt == "FLAC" else 0
    if promised > data.shape[0]:
        raise AudioReadError(
            f"{path}: truncated: its header promises {promised / sr:.3f} s but the file holds only "
            f"{data.shape[0] / sr:.3f} s (an interrupted copy or export?); re-copy or re-export it, "
            "or remove it")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioContentError(
            f"{path}: decodes to 0 audio frames (zero length); re-export it or remove it"
        )
    _check_finite(data, path)
    audio = data.T
    if not always_2d and audio.shape[0] == 1:
        audio = audio[0]
    log.debug("read %s: %d ch, %d frames @ %d Hz", path, data.shape[1], data.shape[0], sr)
    return audio, int(sr)


def promised_frames(path: Path) -> int:
    """Frames a WAV/AIFF header promises when its data chunk is cut short (libsndfile silently
    reads what is there); 0 when the file is complete or its header gives no size."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(12)
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            end, fmt_id, data_id, skip = "<", b"fmt ", b"data", 0
        elif head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            end, fmt_id, data_id, skip = ">", b"COMM", b"SSND", 8  # SSND: offset, block size
        else:
            return 0
        pos, block = 12, 0
        while pos + 8 <= size:
            fh.seek(pos)
            cid, n = struct.unpack(end + "4sI", fh.read(8))
            if cid == fmt_id and end == "<" and n >= 16:
                block = struct.unpack("<H", fh.read(14)[12:14])[0]  # block align
            elif cid == fmt_id and n >= 8:
                channels, _, bits = struct.unpack(">hIh", fh.read(8))
                block = channels * ((bits + 7) // 8)
            elif cid == data_id:
                present = size - pos - 8
                if n in (0, 0xFFFFFFFF) or block <= 0 or n - present < block:
                    return 0
                return (n - skip) // block
            pos += 8 + n + (n & 1)
    return 0


# --------------------------------------------------------------------------------------------
# channels and rate


def to_channels(audio: np.ndarray, policy: str | int) -> np.ndarray:
    """Apply a channel policy to ``[C, N]`` audio.

    ``"mono"`` (or ``1``): mean of the channels → ``[1, N]``. ``"keep"``: unchanged. An integer
    ``n``: unchanged if ``C == n``, mono repeated to ``n`` channels, or ``n == 1`` downmix; any
    other conversion (e.g. 6 → 2) is refused with :class:`UsageError` because it needs a layout
    we do not know. Returns the input itself when nothing changes.
    """
    audio = _as_2d(audio)
    if isinstance(policy, str):
        key = policy.strip().lower()
        if key == "keep":
            return audio
        if key == "mono":
            n = 1
        elif key.isdigit():
            n = int(key)
        else:
            raise UsageError(
                f"unknown channel policy {policy!r}; use 'mono', 'keep' or a channel count"
            )
    elif isinstance(policy, (int, np.integer)) and not isinstance(policy, bool):
        n = int(policy)
    else:
        raise UsageError(f"unknown channel policy {policy!r}; use 'mono', 'keep' or a channel count")
    if n < 1:
        raise UsageError(f"channel count must be >= 1, got {n}")
    c = audio.shape[0]
    if c == n:
        return audio
    if n == 1:
        if audio.dtype.kind != "f":
            return audio.mean(axis=0, keepdims=True)
        if c == 2:  # the common case: two cheap passes, no reduction machinery
            out = audio[0] + audio[1]
            out *= out.dtype.type(0.5)
            return out[np.newaxis, :]
        return audio.mean(axis=0, keepdims=True, dtype=audio.dtype)
    if c == 1:
        return np.repeat(audio, n, axis=0)
    raise UsageError(
        f"cannot convert {c} channels to {n}: only mono→N and N→mono are defined; "
        "use 'mono' or 'keep'"
    )


def resample(audio: np.ndarray, sr_in: int, sr_out: int, *, quality: str = "HQ") -> np.ndarray:
    """Resample ``[C, N]`` (or ``[N]``) audio from ``sr_in`` to ``sr_out`` Hz with soxr.

    Returns float32 in the same shape convention; the input itself when the rates are equal.
    soxr runs on the interleaved ``[N, C]`` view, which is contiguous for arrays read by
    :func:`read_audio`, so no layout copy is made.
    """
    sr_in, sr_out = int(sr_in), int(sr_out)
    if sr_in <= 0 or sr_out <= 0:
        raise UsageError(f"sample rates must be positive, got {sr_in} → {sr_out}")
    q = str(quality).upper()
    if q not in _RESAMPLE_QUALITIES:
        raise UsageError(f"unknown resample quality {quality!r}; use one of {_RESAMPLE_QUALITIES}")
    one_d = np.ndim(audio) == 1
    a2 = _as_2d(audio)
    if a2.dtype != np.float32:
        a2 = a2.astype(np.float32)
    if sr_in == sr_out:
        return a2[0] if one_d else a2
    if a2.shape[1] == 0:
        out2 = np.zeros((a2.shape[0], 0), dtype=np.float32)
        return out2[0] if one_d else out2
    frames_first = a2.T  # [N, C]
    if not frames_first.flags.c_contiguous:
        frames_first = np.ascontiguousarray(frames_first)
    y = soxr.resample(frames_first, sr_in, sr_out, q)  # [M, C] float32
    out = y.T
    return out[0] if one_d else out


# --------------------------------------------------------------------------------------------
# measuring


def _window_samples(sr: int, window_ms: float, hop_ms: float | None) -> tuple[int, int]:
    if window_ms <= 0:
        raise UsageError(f"window_ms must be > 0, got {window_ms}")
    win = max(1, int(round(window_ms * sr / 1000.0)))
    if hop_ms is None:
        hop = max(1, int(round(win / 4)))
    else:
        if hop_ms <= 0:
            raise UsageError(f"hop_ms must be > 0, got {hop_ms}")
        hop = max(1, int(round(hop_ms * sr / 1000.0)))
    return win, hop


def _mean_square_per_frame(audio: np.ndarray) -> np.ndarray:
    """Per-frame mean square over channels, float64 ``[N]``."""
    c = audio.shape[0]
    if c == 1:
        return np.square(audio[0], dtype=np.float64)
    sq = np.square(audio[0], dtype=np.float64)
    for ch in range(1, c):  # loop over channels only (a handful), each a vectorised pass
        sq += np.square(audio[ch], dtype=np.float64)
    sq *= 1.0 / c
    return sq


def _windowed_rms_blocks(a: np.ndarray, win: int, hop: int) -> np.ndarray:
    """:func:`windowed_rms` when the window is a whole number of hops (the default window/4).

    Sums squares per hop-sized block in float64, a cache-sized chunk at a time, then adds
    ``win // hop`` neighbouring blocks: the same values as the cumulative sum over samples, without
    two full-length float64 arrays (which made s1 memory-bound with several workers).
    """
    c, n = a.shape
    nb = n // hop
    blocks = np.empty(nb, dtype=np.float64)
    step = max(1, (1 << 15) // hop)  # blocks per chunk: ~32k samples per channel
    for b0 in range(0, nb, step):
        b1 = min(nb, b0 + step)
        sq = np.square(a[:, b0 * hop:b1 * hop], dtype=np.float64)
        blocks[b0:b1] = sq.reshape(c, b1 - b0, hop).sum(axis=(0, 2))
    k = win // hop
    n_win = (n - win) // hop + 1
    csum = np.concatenate(([0.0], np.cumsum(blocks)))
    sums = csum[k:k + n_win] - csum[:n_win]
    if (n_win - 1) * hop + win < n:  # one more window aligned to the end covers the tail
        tail = np.square(a[:, n - win:], dtype=np.float64).sum()
        sums = np.append(sums, tail)
    np.maximum(sums, 0.0, out=sums)
    sums *= 1.0 / (win * c)
    return np.sqrt(sums, out=sums)


def windowed_rms(
    audio: np.ndarray, sr: int, window_ms: float = 250.0, hop_ms: float | None = None
) -> np.ndarray:
    """RMS of each analysis window of ``[C, N]`` audio (float64 array).

    Windows are ``window_ms`` long and start every ``hop_ms`` (default: a quarter window). The
    mean square is taken over all channels and all samples of the window. Every sample is
    covered: when the last regular window stops short of the end, one extra window aligned to the
    end is added. Audio shorter than one window gives a single value for the whole file; empty
    audio gives an empty array. Computed from a float64 cumulative sum of squares (O(N)).
    """
    a = _as_2d(audio)
    n = a.shape[1]
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    win, hop = _window_samples(sr, window_ms, hop_ms)
    if n > win and win % hop == 0:
        return _windowed_rms_blocks(a, win, hop)
    ms = _mean_square_per_frame(a)
    if n <= win:
        return np.array([math.sqrt(float(ms.sum()) / n)])
    csum = np.empty(n + 1, dtype=np.float64)
    csum[0] = 0.0
    np.cumsum(ms, out=csum[1:])
    del ms
    starts = np.arange(0, n - win + 1, hop)
    if starts[-1] + win < n:
        starts = np.append(starts, n - win)
    sums = csum[starts + win] - csum[starts]
    np.maximum(sums, 0.0, out=sums)  # cancellation can leave -1e-17 after loud passages
    sums *= 1.0 / win
    return np.sqrt(sums, out=sums)


def peak_windowed_rms(audio: np.ndarray, sr: int, window_ms: float = 250.0) -> float:
    """Largest :func:`windowed_rms` value (0.0 for empty audio): the level of the loudest part."""
    r = windowed_rms(audio, sr, window_ms)
    return float(r.max()) if r.size else 0.0


def sample_peak(audio: np.ndarray) -> float:
    """Largest absolute sample value (0.0 for empty audio), without a temporary ``abs`` array."""
    a = np.asarray(audio)
    if a.size == 0:
        return 0.0
    return float(max(abs(float(a.max())), abs(float(a.min()))))


def _kweighted_gated_loudness(audio: np.ndarray, sr: int) -> float:
    """BS.1770 integrated loudness for more than 5 channels (all channel weights 1.0).

    pyloudnorm only knows the 5.0 layout; here its K-weighting filters are reused and the
    block gating is done with a cumulative sum.
    """
    import pyloudnorm

    meter = pyloudnorm.Meter(sr, block_size=LUFS_BLOCK_SECONDS)
    filters = list(getattr(meter, "_filters").values())
    n = audio.shape[1]
    power = np.zeros(n, dtype=np.float64)
    for ch in range(audio.shape[0]):
        y = np.asarray(audio[ch], dtype=np.float64)
        for f in filters:
            y = f.apply_filter(y)
        power += np.square(y)
    # 400 ms blocks every 100 ms (75 % overlap), bounds computed as pyloudnorm does
    step = 0.25
    n_blocks = int(round((n / sr - LUFS_BLOCK_SECONDS) / (LUFS_BLOCK_SECONDS * step))) + 1
    j = np.arange(n_blocks)
    lo = (LUFS_BLOCK_SECONDS * (j * step) * sr).astype(np.int64)
    hi = np.minimum((LUFS_BLOCK_SECONDS * (j * step + 1) * sr).astype(np.int64), n)
    csum = np.concatenate(([0.0], np.cumsum(power)))
    z = (csum[hi] - csum[lo]) / (LUFS_BLOCK_SECONDS * sr)
    with np.errstate(divide="ignore"):
        lj = -0.691 + 10.0 * np.log10(z)
    gated = z[lj >= LUFS_SILENCE_FLOOR]
    if gated.size == 0:
        return float("-inf")
    rel = -0.691 + 10.0 * np.log10(gated.mean()) - 10.0
    keep = z[(lj > rel) & (lj > LUFS_SILENCE_FLOOR)]
    if keep.size == 0:
        return float("-inf")
    return float(-0.691 + 10.0 * np.log10(keep.mean()))


def integrated_lufs(audio: np.ndarray, sr: int) -> float:
    """Integrated loudness (LUFS, ITU-R BS.1770-4 via pyloudnorm); ``-inf`` for silence.

    Audio shorter than one 400 ms gating block is tiled (repeated end to end) until it fills one
    block, which keeps the level of a stationary sound instead of diluting it with padding zeros.
    Up to 5 channels use pyloudnorm's meter (channels 4–5 weighted as surrounds, 5.0 layout);
    more channels use the same K-weighting with every channel weighted 1.0.
    """
    import pyloudnorm

    a = _as_2d(audio)
    c, n = a.shape
    if n == 0:
        return float("-inf")
    need = int(math.ceil(LUFS_BLOCK_SECONDS * sr))
    if n < need:
        reps = int(math.ceil(need / n))
        a = np.tile(a, (1, reps))
        log.debug("integrated_lufs: %d frames < one %g s block; tiled %dx", n, LUFS_BLOCK_SECONDS, reps)
    if c > 5:
        return _kweighted_gated_loudness(a, sr)
    data = a[0] if c == 1 else a.T
    data = np.asarray(data, dtype=np.float64)  # pyloudnorm copies anyway; float64 for its sums
    meter = pyloudnorm.Meter(sr, block_size=LUFS_BLOCK_SECONDS)
    return float(meter.integrated_loudness(data))


# --------------------------------------------------------------------------------------------
# gain


def _limit_gain(peak: float, gain: float, peak_limit: float) -> float:
    """Largest gain <= ``gain`` such that float32(peak) * float32(gain) <= ``peak_limit``."""
    g = np.float32(peak_limit / peak)
    p = np.float32(peak)
    while float(p * g) > peak_limit and g > 0:  # at most a couple of ulps
        g = np.nextafter(g, np.float32(0))
    return min(float(g), gain)


def compute_gain(
    audio: np.ndarray,
    sr: int,
    *,
    method: str = "rms",
    target_rms: float = 0.1,
    window_ms: float = 250.0,
    target_lufs: float = -23.0,
    peak_limit: float = 0.999,
    silence_floor_rms: float = 1e-5,
) -> GainDecision:
    """Decide the gain that normalises ``audio`` (see :class:`GainDecision`).

    ``rms``: bring the peak windowed RMS (``window_ms`` windows) to ``target_rms``.
    ``lufs``: bring the integrated loudness to ``target_lufs``.
    Silent audio (peak windowed RMS below ``silence_floor_rms``, or loudness below -70 LUFS) gets
    gain 1.0 and the ``silent`` flag, so noise floors are never amplified by 1e6. If the gained
    sample peak would exceed ``peak_limit`` the gain is lowered until it equals it
    (``peak_limited``).
    """
    a = _as_2d(audio)
    n = a.shape[1]
    flags: list[str] = []
    if method == "rms":
        if target_rms <= 0:
            raise UsageError(f"target RMS must be > 0, got {target_rms}")
        win, _ = _window_samples(sr, window_ms, None)
        if n < win:
            flags.append("short")
        measured = peak_windowed_rms(a, sr, window_ms)
        target = float(target_rms)
        silent = not (measured >= silence_floor_rms)
        gain = 1.0 if silent else target / measured
    elif method == "lufs":
        if n < int(math.ceil(LUFS_BLOCK_SECONDS * sr)):
            flags.append("short")
        measured = integrated_lufs(a, sr)
        target = float(target_lufs)
        silent = not (math.isfinite(measured) and measured >= LUFS_SILENCE_FLOOR)
        gain = 1.0 if silent else 10.0 ** ((target - measured) / 20.0)
    else:
        raise UsageError(f"unknown gain method {method!r}; use one of {GAIN_METHODS}")

    if silent:
        flags.append("silent")
    else:
        peak = sample_peak(a)
        if peak > 0 and peak * gain > peak_limit:
            gain = _limit_gain(peak, gain, peak_limit)
            flags.append("peak_limited")
    gain_db = 20.0 * math.log10(gain) if gain > 0 else float("-inf")
    return GainDecision(
        gain=float(gain),
        gain_db=float(gain_db),
        method=method,
        measured=float(measured),
        target=target,
        flags=tuple(flags),
    )


def apply_gain(audio: np.ndarray, decision: GainDecision | float) -> np.ndarray:
    """``audio * gain`` in float32 (a new array, same layout); the input itself when gain is 1."""
    gain = decision.gain if isinstance(decision, GainDecision) else float(decision)
    a = np.asarray(audio)
    if gain == 1.0:
        return a
    if a.dtype != np.float32:
        a = a.astype(np.float32)
    return np.multiply(a, np.float32(gain))


# --------------------------------------------------------------------------------------------
# segments and writing


def split_segments(
    audio: np.ndarray, sr: int, segment_seconds: float, min_segment_seconds: float = 0.0
) -> list[np.ndarray]:
    """Cut ``[C, N]`` audio into consecutive, non-overlapping ``segment_seconds`` pieces.

    Pieces shorter than ``min_segment_seconds`` (in practice only the last one, unless the
    minimum exceeds the segment length) are dropped; ``[]`` if nothing qualifies. The pieces are
    views into ``audio`` (no copy).
    """
    if segment_seconds <= 0:
        raise UsageError(f"segment length must be > 0 seconds, got {segment_seconds}")
    if min_segment_seconds < 0:
        raise UsageError(f"minimum segment length must be >= 0 seconds, got {min_segment_seconds}")
    a = _as_2d(audio)
    n = a.shape[1]
    seg = max(1, int(round(segment_seconds * sr)))
    min_len = max(1, int(round(min_segment_seconds * sr)))
    out = []
    for start in range(0, n, seg):
        piece = a[:, start : start + seg]
        if piece.shape[1] >= min_len:
            out.append(piece)
    return out


def _resolve_format(path: Path, subtype: str) -> tuple[str, str]:
    fmt = _FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(
            f"{path}: cannot tell the audio format from suffix {path.suffix!r}; "
            f"use one of {sorted(_FORMAT_BY_SUFFIX)}"
        )
    st = str(subtype).upper()
    if sf.check_format(fmt, st):
        return fmt, st
    if fmt in ("OGG", "MP3"):  # lossy: the PCM_* choices mean nothing, use the codec's own
        default = sf.default_subtype(fmt)
        log.debug("%s: subtype %s does not apply to %s; using %s", path, st, fmt, default)
        return fmt, default
    raise UsageError(
        f"{path}: format {fmt} cannot store subtype {st}; "
        f"choose one of {sorted(sf.available_subtypes(fmt))} or another file suffix"
    )


def write_audio(path: Path | str, audio: np.ndarray, sr: int, *, subtype: str = "PCM_16") -> None:
    """Write ``[C, N]`` (or ``[N]``) audio to ``path`` atomically (temp file + rename).

    The format comes from the suffix (.wav, .flac, .ogg, .mp3, .aiff/.aif). For anything but
    float subtypes the samples are clipped to [-1, 1] first (libsndfile would wrap them).
    A killed or failed write leaves neither a partial output nor a temp file.
    """
    path = Path(path)
    fmt, st = _resolve_format(path, subtype)
    a = _as_2d(audio)
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32)
    if st not in _FLOAT_SUBTYPES and a.size and (a.max() > 1.0 or a.min() < -1.0):
        a = np.clip(a, -1.0, 1.0)
    # soundfile wants [N, C] C-contiguous (or [N] for mono): for arrays from read/resample the
    # transpose is exactly that; for mono any contiguous row works without a copy.
    data = a[0] if a.shape[0] == 1 else a.T
    with atomic_path(path) as tmp:
        _sound_write(tmp, data, int(sr), st, fmt)
    log.debug("wrote %s (%s/%s, %d ch, %d frames @ %d Hz)", path, fmt, st, a.shape[0], a.shape[1], sr)


def _sound_write(target: Path, data: np.ndarray, sr: int, subtype: str, fmt: str) -> None:
    """``soundfile.write``, with a full disk raised as the OSError it is (libsndfile reports only
    "System error", soundfile a short write as an AssertionError)."""
    try:
        sf.write(str(target), data, sr, subtype=subtype, format=fmt)
    except (RuntimeError, AssertionError) as exc:
        if isinstance(exc, RuntimeError) and "System error" not in str(exc):
            raise
        code = getattr(getattr(sf, "_ffi", None), "errno", 0)  # errno of libsndfile's failed call
        if code not in ENVIRONMENT_ERRNOS:
            try:
                free = shutil.disk_usage(Path(target).parent).free
            except OSError:
                raise exc from None
            if free >= data.size * _BYTES_PER_SAMPLE.get(subtype, 2):
                raise
            code = errno.ENOSPC
        raise OSError(code, os.strerror(code), str(target)) from exc
