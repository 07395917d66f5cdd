"""Evaluation metrics for predicted codec codes and the audio decoded from them.

Pure functions (no files, no models, no global state) so that ``python -m midigroove_poc eval``
and notebooks score systems the same way: token accuracy and NLL, spectral convergence, log-mel
L1, RMS-envelope correlation and onset F1, :func:`summarize` and :func:`format_table`. Undefined
values are ``NaN``, never an exception, so one odd window does not stop an evaluation; bad shapes
raise :class:`MetricError`. Details: README.md, "midigroove_poc", **Evaluation**.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

import librosa
import numpy as np
import torch

from workflow.errors import WorkflowError

log = logging.getLogger(__name__)

__all__ = [
    "MetricError",
    "token_accuracy",
    "token_nll",
    "spectral_convergence",
    "log_mel_l1",
    "rms_envelope_correlation",
    "detect_onsets",
    "onset_prf",
    "audio_metrics",
    "summarize",
    "format_table",
    "ONSET_TOLERANCE_S",
    "AUDIO_METRIC_KEYS",
]

ONSET_TOLERANCE_S = 0.05
"""Default onset matching window (± seconds), the usual MIREX value."""

LOG_EPS = 1e-5
"""Floor added before the log in :func:`log_mel_l1` (magnitude mel, so about -100 dB)."""

AUDIO_METRIC_KEYS: tuple[str, ...] = (
    "spectral_convergence",
    "log_mel_l1",
    "rms_env_corr",
    "onset_precision",
    "onset_recall",
    "onset_f1",
    "onset_n_pred",
    "onset_n_ref",
)
"""Keys of the dict returned by :func:`audio_metrics`, in table order."""


class MetricError(WorkflowError, ValueError):
    """A metric got inputs of the wrong shape, type or range (the message says which)."""


# --------------------------------------------------------------------------------------------
# input helpers


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """Return ``x`` (tensor, array or nested list) as a numpy array, detached and on the CPU."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise MetricError(f"{name}: cannot convert {type(x).__name__} to an array ({exc})") from exc


def _as_codes(x: Any, name: str) -> np.ndarray:
    """Validate integer codes of shape ``[K, T]`` or ``[B, K, T]``; return them as ``[B, K, T]``."""
    arr = _to_numpy(x, name)
    if arr.dtype.kind not in "iu":
        raise MetricError(f"{name}: expected integer codes, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise MetricError(f"{name}: expected shape [K, T] or [B, K, T], got {list(arr.shape)}")
    if 0 in arr.shape:
        raise MetricError(f"{name}: empty codes, shape {list(arr.shape)}")
    return arr


def _as_mono(x: Any, name: str) -> np.ndarray:
    """Validate a finite mono signal (``[N]``, or ``[1, N]`` / ``[1, 1, N]``); return float32 ``[N]``."""
    arr = _to_numpy(x, name)
    if arr.ndim == 0 or any(s != 1 for s in arr.shape[:-1]):
        raise MetricError(
            f"{name}: expected mono audio of shape [N] (or [1, N]), got {list(arr.shape)}; "
            "mix down or pick a channel first"
        )
    if arr.dtype.kind not in "fiu":
        raise MetricError(f"{name}: expected real-valued audio, got dtype {arr.dtype}")
    arr = arr.reshape(-1).astype(np.float32, copy=False)
    if arr.size == 0:
        raise MetricError(f"{name}: audio is empty")
    if not np.isfinite(arr).all():
        raise MetricError(f"{name}: audio contains NaN or Inf samples")
    return arr


def _check_sr(sr: Any) -> int:
    """Validate a positive integer sample rate."""
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer, float, np.floating)):
        raise MetricError(f"sr: expected a positive integer sample rate, got {sr!r}")
    if not math.isfinite(float(sr)) or float(sr) <= 0 or float(sr) != int(sr):
        raise MetricError(f"sr: expected a positive integer sample rate, got {sr!r}")
    return int(sr)


def _pair(pred: Any, ref: Any, sr: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate a (prediction, reference) audio pair and trim both to the shorter length."""
    p = _as_mono(pred, "pred")
    r = _as_mono(ref, "ref")
    sr_i = _check_sr(sr)
    n = min(p.size, r.size)
    if p.size != r.size:
        log.debug("trimming audio to %d samples (pred %d, ref %d)", n, p.size, r.size)
    return p[:n], r[:n], sr_i


def _check_n_fft(n_fft: Any, name: str = "n_fft") -> int:
    """Validate an FFT size (an integer of at least 16)."""
    if isinstance(n_fft, bool) or not isinstance(n_fft, (int, np.integer)) or n_fft < 16:
        raise MetricError(f"{name}: expected an integer >= 16, got {n_fft!r}")
    return int(n_fft)


def _stft_mag(x: np.ndarray, n_fft: int) -> torch.Tensor:
    """Magnitude STFT ``[n_fft//2 + 1, frames]`` (Hann window, hop ``n_fft // 4``, centred, zero-padded)."""
    return torch.stft(
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        n_fft=n_fft,
        hop_length=max(1, n_fft // 4),
        win_length=n_fft,
        window=torch.hann_window(n_fft),
        center=True,
        pad_mode="constant",
        return_complex=True,
    ).abs()


# --------------------------------------------------------------------------------------------
# token metrics


def token_accuracy(pred: Any, ref: Any) -> dict[str, Any]:
    """Fraction of predicted codes equal to the reference codes.

    ``pred`` and ``ref`` are integer arrays/tensors of the same shape, ``[K, T]`` or ``[B, K, T]``.
    Returns ``{"acc": float, "acc_k": [float] * K}``: overall accuracy and accuracy per codebook
    (each over all batch items and frames).
    """
    p = _as_codes(pred, "pred")
    r = _as_codes(ref, "ref")
    if p.shape != r.shape:
        raise MetricError(f"pred and ref codes differ in shape: {list(p.shape)} vs {list(r.shape)}")
    hits = p == r
    return {
        "acc": float(hits.mean()),
        "acc_k": [float(v) for v in hits.mean(axis=(0, 2))],
    }


def token_nll(logits: Any, ref: Any) -> dict[str, Any]:
    """Mean negative log-likelihood of the reference codes under ``logits``.

    ``logits`` is ``[B, K, T, V]`` or ``[K, T, V]`` (unnormalised scores; a log-softmax over V is
    applied here), ``ref`` integer codes ``[B, K, T]`` or ``[K, T]`` in ``[0, V)``.
    Returns ``{"nll": nats per token, "ppl": exp(nll), "nll_k": [nats per token] * K}``.
    """
    if isinstance(logits, torch.Tensor):
        lg = logits.detach().cpu()
    else:
        arr = _to_numpy(logits, "logits")
        if arr.dtype.kind != "f":
            raise MetricError(f"logits: expected floating-point scores, got dtype {arr.dtype}")
        lg = torch.from_numpy(np.ascontiguousarray(arr))
    if not lg.is_floating_point():
        raise MetricError(f"logits: expected floating-point scores, got dtype {lg.dtype}")
    r = _as_codes(ref, "ref")
    if lg.ndim == 3:
        lg = lg.unsqueeze(0)
    if lg.ndim != 4:
        raise MetricError(f"logits: expected shape [B, K, T, V] or [K, T, V], got {list(lg.shape)}")
    if tuple(lg.shape[:3]) != r.shape:
        raise MetricError(
            f"logits {list(lg.shape)} do not match ref codes {list(r.shape)}: "
            "expected logits [B, K, T, V] for ref [B, K, T]"
        )
    vocab = int(lg.shape[3])
    if vocab < 1:
        raise MetricError("logits: the vocabulary axis V is empty")
    if r.min() < 0 or r.max() >= vocab:
        raise MetricError(f"ref: codes must lie in [0, {vocab}), got range [{r.min()}, {r.max()}]")
    if not torch.isfinite(lg).all():
        raise MetricError("logits: contain NaN or Inf")
    with torch.no_grad():
        logp = torch.log_softmax(lg.float(), dim=-1)
        picked = torch.gather(logp, -1, torch.from_numpy(r.astype(np.int64)).unsqueeze(-1))
        nll_tok = -picked.squeeze(-1).double()  # [B, K, T]
    nll = float(nll_tok.mean())
    return {
        "nll": nll,
        "ppl": float(math.exp(nll)) if nll < 700 else math.inf,
        "nll_k": [float(v) for v in nll_tok.mean(dim=(0, 2))],
    }


# --------------------------------------------------------------------------------------------
# audio metrics


def spectral_convergence(
    pred: Any, ref: Any, sr: int, fft_sizes: Sequence[int] = (512, 1024, 2048)
) -> float:
    """Multi-resolution spectral convergence ``‖|S_ref| − |S_pred|‖_F / ‖|S_ref|‖_F``.

    One STFT per size in ``fft_sizes`` (Hann window, hop = n_fft/4), averaged over resolutions.
    0 means identical magnitudes; a silent prediction of a non-silent reference scores 1.
    ``sr`` is validated but unused (the resolutions are in samples). A silent reference gives
    0.0 against a silent prediction and NaN (undefined) against anything else.
    """
    p, r, _ = _pair(pred, ref, sr)
    sizes = list(fft_sizes)
    if not sizes:
        raise MetricError("fft_sizes: give at least one FFT size")
    values = []
    for n_fft in sizes:
        n_fft = _check_n_fft(n_fft, "fft_sizes")
        mp = _stft_mag(p, n_fft).double()
        mr = _stft_mag(r, n_fft).double()
        den = float(torch.linalg.norm(mr))
        num = float(torch.linalg.norm(mr - mp))
        if den == 0.0:
            values.append(0.0 if num == 0.0 else math.nan)
        else:
            values.append(num / den)
    return float(np.mean(values))


@functools.lru_cache(maxsize=16)
def _mel_basis(sr: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """librosa's Slaney mel filter bank ``[n_mels, n_fft//2 + 1]`` as a float32 tensor (cached)."""
    return torch.from_numpy(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels).astype(np.float32))


def log_mel_l1(pred: Any, ref: Any, sr: int, n_mels: int = 80, n_fft: int = 1024) -> float:
    """Mean ``|log(mel_ref + eps) − log(mel_pred + eps)|`` over mel bins and frames.

    Magnitude (not power) STFT, Hann window, hop = n_fft/4, librosa's Slaney mel filter bank
    (0 Hz to sr/2), natural log, ``eps = 1e-5``. 0 means identical.
    """
    p, r, sr_i = _pair(pred, ref, sr)
    n_fft = _check_n_fft(n_fft)
    if isinstance(n_mels, bool) or not isinstance(n_mels, (int, np.integer)) or n_mels < 1:
        raise MetricError(f"n_mels: expected a positive integer, got {n_mels!r}")
    basis = _mel_basis(sr_i, n_fft, int(n_mels))
    mel_p = basis @ _stft_mag(p, n_fft)
    mel_r = basis @ _stft_mag(r, n_fft)
    diff = torch.log(mel_r + LOG_EPS) - torch.log(mel_p + LOG_EPS)
    return float(diff.abs().double().mean())


def _frame_rms(x: np.ndarray, frame: int) -> np.ndarray:
    """RMS of consecutive non-overlapping frames; a trailing partial frame is dropped."""
    n = x.size // frame
    if n == 0:
        return np.sqrt(np.mean(np.square(x, dtype=np.float64)))[None]
    sq = np.square(x[: n * frame].astype(np.float64)).reshape(n, frame)
    return np.sqrt(sq.mean(axis=1))


def rms_envelope_correlation(pred: Any, ref: Any, sr: int, frame_ms: float = 20.0) -> float:
    """Pearson correlation of the two frame-RMS envelopes (non-overlapping ``frame_ms`` frames).

    Measures whether loudness rises and falls at the same times, whatever the overall gain
    (``x`` vs ``2·x`` scores 1). Returns 0.0 when either envelope is constant (including
    silence, or audio shorter than two frames), where the correlation is undefined.
    """
    p, r, sr_i = _pair(pred, ref, sr)
    if not isinstance(frame_ms, Real) or isinstance(frame_ms, bool) or not frame_ms > 0:
        raise MetricError(f"frame_ms: expected a positive number, got {frame_ms!r}")
    frame = max(1, int(round(sr_i * float(frame_ms) / 1000.0)))
    ep = _frame_rms(p, frame)
    er = _frame_rms(r, frame)
    # Envelopes that are constant up to float rounding (silence included) count as constant.
    if any(np.ptp(e) <= 1e-9 * float(np.abs(e).max()) for e in (ep, er)):
        return 0.0
    ep = ep - ep.mean()
    er = er - er.mean()
    den = math.sqrt(float(np.dot(ep, ep)) * float(np.dot(er, er)))
    return float(np.clip(np.dot(ep, er) / den, -1.0, 1.0))


def _onset_frames(sr: int) -> tuple[int, int, int]:
    """Onset-detector hop, FFT size and mel count for ``sr`` (hop ≈ 5 ms, FFT = 4 hops ≈ 21 ms)."""
    hop = int(2 ** round(math.log2(max(1.0, sr * 0.005))))
    n_fft = 4 * hop
    return hop, n_fft, min(64, n_fft // 4)


def detect_onsets(audio: Any, sr: int, *, delta: float = 0.07, wait_s: float = 0.03) -> np.ndarray:
    """Onset times (seconds, ascending float64) found in ``audio`` by librosa's spectral flux.

    Settings chosen for drums, whose attacks are sharp and can be 30 ms apart:

    * mel spectral flux (``librosa.onset.onset_strength``, ``lag=1``, ``max_size=1``) on a short
      window — hop ≈ 5 ms (the power of two nearest ``0.005·sr``: 128 at 24 kHz, 256 at 44.1 and
      48 kHz), ``n_fft = 4·hop`` (≈ 21 ms), ``min(64, n_fft/4)`` mel bands up to ``sr/2``;
    * ``librosa.onset.onset_detect`` peak picking on the normalised envelope with librosa's
      default windows (30 ms pre-max, 100 ms pre/post average), threshold ``delta`` = 0.07,
      at most one onset per ``wait_s`` = 30 ms, **no backtracking** (times are flux peaks, which
      land a few ms after the true attack — well inside a 50 ms tolerance).

    Silence yields an empty array.
    """
    y = _as_mono(audio, "audio")
    sr_i = _check_sr(sr)
    if not isinstance(delta, Real) or not delta >= 0:
        raise MetricError(f"delta: expected a non-negative number, got {delta!r}")
    if not isinstance(wait_s, Real) or not wait_s >= 0:
        raise MetricError(f"wait_s: expected a non-negative number, got {wait_s!r}")
    hop, n_fft, n_mels = _onset_frames(sr_i)
    if y.size < n_fft:  # keep librosa from warning about a too-short input
        y = np.pad(y, (0, n_fft - y.size))
    if not np.any(y):
        return np.zeros(0, dtype=np.float64)
    env = librosa.onset.onset_strength(
        y=y, sr=sr_i, hop_length=hop, n_fft=n_fft, n_mels=n_mels, fmax=sr_i / 2, lag=1, max_size=1
    )
    times = librosa.onset.onset_detect(
        onset_envelope=env,
        sr=sr_i,
        hop_length=hop,
        backtrack=False,
        units="time",
        delta=float(delta),
        wait=int(round(float(wait_s) * sr_i / hop)),
    )
    return np.sort(np.asarray(times, dtype=np.float64))


def _as_times(x: Any, name: str) -> np.ndarray:
    """Validate a 1-D list of finite onset times; return them sorted as float64."""
    arr = _to_numpy(x, name)
    if arr.ndim != 1:
        raise MetricError(f"{name}: expected a 1-D list of onset times, got shape {list(arr.shape)}")
    if arr.size and arr.dtype.kind not in "fiu":
        raise MetricError(f"{name}: expected numeric onset times, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise MetricError(f"{name}: onset times contain NaN or Inf")
    return np.sort(arr)


def onset_prf(
    detected: Any, reference: Any, tolerance: float = ONSET_TOLERANCE_S
) -> dict[str, float]:
    """Onset precision, recall and F1 with one-to-one matching within ``±tolerance`` seconds.

    Each detection and each reference onset is matched at most once; a pair matches when
    ``|detected − reference| <= tolerance``. Matching is a greedy left-to-right sweep, which
    for equal tolerance windows yields a maximum matching (so no hit is lost to a greedy
    closest-first choice). The order of the inputs does not matter.

    Empty cases: a ratio with a zero denominator is undefined and returned as NaN (precision
    when nothing was detected, recall when there is nothing to find), and F1 is then 0.0 —
    except when both lists are empty, which is perfect agreement: 1.0 for all three.
    The dict also holds ``"tp"``, ``"n_detected"`` and ``"n_reference"`` (as floats) so callers
    can pool counts over windows.
    """
    det = _as_times(detected, "detected")
    ref = _as_times(reference, "reference")
    if not isinstance(tolerance, Real) or isinstance(tolerance, bool) or not tolerance > 0:
        raise MetricError(f"tolerance: expected a positive number of seconds, got {tolerance!r}")
    tol = float(tolerance) + 1e-9  # inclusive, robust to float rounding of e.g. 0.35 - 0.30

    # Left-to-right sweep: each reference (ascending) takes the earliest unused detection
    # inside its window. With equal-width windows this is a maximum one-to-one matching, so the
    # counts equal those of an optimal bipartite matching (as in mir_eval), in O(n + m).
    tp = 0
    i = 0
    for r in ref:
        while i < det.size and det[i] < r - tol:
            i += 1
        if i < det.size and det[i] <= r + tol:
            tp += 1
            i += 1

    n_det, n_ref = int(det.size), int(ref.size)
    if n_det == 0 and n_ref == 0:
        precision = recall = f1 = 1.0
    else:
        precision = tp / n_det if n_det else math.nan
        recall = tp / n_ref if n_ref else math.nan
        f1 = 2.0 * tp / (n_det + n_ref)  # = harmonic mean of P and R when both are defined
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "tp": float(tp),
        "n_detected": float(n_det),
        "n_reference": float(n_ref),
    }


def audio_metrics(
    pred: Any,
    ref: Any,
    sr: int,
    ref_onsets: Any | None = None,
    *,
    onset_tolerance: float = ONSET_TOLERANCE_S,
) -> dict[str, float]:
    """All audio metrics of ``pred`` against ``ref`` as one flat dict (keys: ``AUDIO_METRIC_KEYS``).

    Both signals are trimmed to the shorter. Onsets are detected in the *predicted* audio and
    scored against ``ref_onsets`` (seconds from the start, e.g. the grid's MIDI onsets) when
    given — reference onsets after the trimmed end are dropped, since they cannot be heard —
    or else against onsets detected in ``ref``.
    """
    p, r, sr_i = _pair(pred, ref, sr)
    if ref_onsets is None:
        target = detect_onsets(r, sr_i)
    else:
        target = _as_times(ref_onsets, "ref_onsets")
        target = target[target <= p.size / sr_i]
    prf = onset_prf(detect_onsets(p, sr_i), target, onset_tolerance)
    return {
        "spectral_convergence": spectral_convergence(p, r, sr_i),
        "log_mel_l1": log_mel_l1(p, r, sr_i),
        "rms_env_corr": rms_envelope_correlation(p, r, sr_i),
        "onset_precision": prf["precision"],
        "onset_recall": prf["recall"],
        "onset_f1": prf["f1"],
        "onset_n_pred": prf["n_detected"],
        "onset_n_ref": prf["n_reference"],
    }


# --------------------------------------------------------------------------------------------
# aggregation


def _is_number(v: Any) -> bool:
    """True for real scalars: Python / numpy numbers and 0-d numeric arrays or tensors, not bools."""
    if isinstance(v, torch.Tensor):
        return v.ndim == 0 and v.dtype != torch.bool and not v.is_complex()
    if isinstance(v, np.ndarray):
        return v.ndim == 0 and v.dtype.kind in "fiu"
    return isinstance(v, (Real, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean of every numeric key over ``rows``, ignoring NaN (and rows where the key is missing).

    Non-numeric values (strings, lists such as ``acc_k``, bools) are skipped. A key whose values
    are all NaN maps to NaN. Keys keep their order of first appearance.
    """
    if isinstance(rows, Mapping) or not isinstance(rows, Sequence):
        raise MetricError(f"rows: expected a list of dicts, got {type(rows).__name__}")
    if not rows:
        raise MetricError("rows: nothing to summarize (empty list)")
    values: dict[str, list[float]] = {}
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise MetricError(f"rows[{i}]: expected a dict, got {type(row).__name__}")
        for key, v in row.items():
            if _is_number(v):
                values.setdefault(str(key), []).append(float(v))
    out: dict[str, float] = {}
    for key, vs in values.items():
        arr = np.asarray(vs, dtype=np.float64)
        finite = arr[~np.isnan(arr)]
        out[key] = float(finite.mean()) if finite.size else math.nan
    return out


def _fmt(v: Any, precision: int) -> str:
    """Format one table cell: numbers with ``precision`` decimals, missing as ``-``."""
    if v is None:
        return "-"
    if _is_number(v):
        f = float(v)
        return "nan" if math.isnan(f) else f"{f:.{precision}f}"
    return str(v)


def format_table(
    summary_by_system: Mapping[str, Mapping[str, Any]],
    keys: Sequence[str] | None = None,
    *,
    precision: int = 4,
) -> str:
    """An aligned plain-text table: one row per system, one column per key.

    ``keys`` defaults to every key of every system in order of first appearance. Numbers get
    ``precision`` decimals and are right-aligned; a missing key shows ``-``. No trailing newline.
    """
    if not isinstance(summary_by_system, Mapping):
        raise MetricError(
            f"summary_by_system: expected a dict of system name -> metrics dict, "
            f"got {type(summary_by_system).__name__}"
        )
    if not summary_by_system:
        raise MetricError("summary_by_system: no systems to tabulate")
    for name, summary in summary_by_system.items():
        if not isinstance(summary, Mapping):
            raise MetricError(f"summary_by_system[{name!r}]: expected a dict, got {type(summary).__name__}")
    if keys is None:
        cols = list(dict.fromkeys(k for s in summary_by_system.values() for k in s))
    elif isinstance(keys, str):
        raise MetricError("keys: expected a list of metric names, got a single string")
    else:
        cols = [str(k) for k in keys]
    if not cols:
        raise MetricError("keys: no metric columns to show")

    header = ["system", *cols]
    body = [
        [str(name), *(_fmt(summary.get(k), precision) for k in cols)]
        for name, summary in summary_by_system.items()
    ]
    widths = [max(len(r[c]) for r in [header, *body]) for c in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(w) for cell, w in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest])

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(r) for r in body)])
