"""Per-frame audio features from the normalised wav: rms_db, spectral_centroid, f0, voiced, onset_strength, zcr.

For ``tokens/a/b.ecdc`` the wav is ``--wav-root/a/b.wav`` (s1's output tree); features are
computed on its mono mix at hop = sample_rate / fps, centred on each token frame, and padded or
trimmed to T rows. A wav whose length disagrees with the tokens fails that file. Definitions:
paramproducers/README_paramproducers.md.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from workflow import audio
from workflow.ecdc_legacy import read_token_header
from workflow.errors import ProducerError, UsageError
from workflow.files import mirror_path

FEATURES = ("rms_db", "spectral_centroid", "f0", "voiced", "onset_strength", "zcr")
UNITS = {"rms_db": "dBFS", "spectral_centroid": "Hz", "f0": "Hz", "voiced": "flag",
         "onset_strength": "dB", "zcr": "crossings/sample"}
DOCS = {
    "rms_db": "frame RMS level in dBFS (floor -100)",
    "spectral_centroid": "spectral centroid of the frame in Hz",
    "f0": "YIN fundamental frequency in Hz, 0 where unvoiced",
    "voiced": "1 if the frame is periodic at its YIN period and not silent",
    "onset_strength": "log-mel spectral flux (onset strength)",
    "zcr": "zero-crossing rate per sample",
}
DB_FLOOR = -100.0
_STATE: dict = {}


def add_cli_args(parser: argparse._ActionsContainer) -> None:
    parser.add_argument("--wav-root", type=Path, default=None,
                        help="folder of normalised wavs mirroring --audio-root (s1's output); required")
    parser.add_argument("--features", nargs="+", choices=FEATURES, default=list(FEATURES), metavar="NAME",
                        help=f"which features to add (default: all of {', '.join(FEATURES)})")
    parser.add_argument("--n-fft", type=int, default=None,
                        help="analysis window in samples (default: the power of two >= 2 hops, "
                             "1024 at 24 kHz / 75 fps)")
    parser.add_argument("--f0-min", type=float, default=50.0, help="lowest f0 searched, Hz (default 50)")
    parser.add_argument("--f0-max", type=float, default=2000.0, help="highest f0 searched, Hz (default 2000)")
    parser.add_argument("--voiced-threshold", type=float, default=0.6,
                        help="normalised autocorrelation at the YIN period needed for voiced=1 (default 0.6)")
    parser.add_argument("--silence-db", type=float, default=-60.0,
                        help="frames quieter than this (rms_db) are never voiced (default -60)")


def init(args: argparse.Namespace) -> None:
    wav_root = getattr(args, "wav_root", None)
    if wav_root is None:
        raise UsageError("producer from_audio needs --wav-root (the normalised wav folder written by s1)")
    if not Path(wav_root).is_dir():
        raise UsageError(f"--wav-root {wav_root} is not a folder")
    f0_min, f0_max = getattr(args, "f0_min", 50.0), getattr(args, "f0_max", 2000.0)
    if not 0 < f0_min < f0_max:
        raise UsageError(f"--f0-min/--f0-max must satisfy 0 < min < max, got {f0_min}, {f0_max}")
    n_fft = getattr(args, "n_fft", None)
    if n_fft is not None and n_fft < 16:
        raise UsageError(f"--n-fft must be >= 16, got {n_fft}")
    import librosa  # noqa: F401 - slow first import: pay it once here, not on the first file

    _STATE.clear()
    _STATE.update(wav_root=Path(wav_root), features=list(dict.fromkeys(getattr(args, "features", FEATURES))),
                  n_fft=n_fft, f0_min=f0_min, f0_max=f0_max,
                  voiced_threshold=getattr(args, "voiced_threshold", 0.6),
                  silence_db=getattr(args, "silence_db", -60.0))


def feature_names(args: argparse.Namespace) -> list[str]:
    return list(_STATE["features"])


def wav_path_for(ecdc_path: Path, args: argparse.Namespace) -> Path:
    root = getattr(args, "audio_root", None)
    if root is None:
        return _STATE["wav_root"] / (Path(ecdc_path).stem + ".wav")
    return mirror_path(Path(ecdc_path), Path(root), _STATE["wav_root"], ".wav")


def fit_length(x: np.ndarray, T: int) -> np.ndarray:
    """Trim to ``T`` or pad by repeating the last value (zeros if there is none)."""
    x = np.asarray(x, np.float64).reshape(-1)
    if x.shape[0] >= T:
        return x[:T]
    fill = x[-1] if x.size else 0.0
    return np.concatenate([x, np.full(T - x.shape[0], fill)])


def _voicing(y: np.ndarray, f0: np.ndarray, sr: float, hop: int, frame_length: int, max_lag: int) -> np.ndarray:
    """Normalised autocorrelation of each YIN frame at its own period (1 = perfectly periodic)."""
    import librosa

    ypad = np.pad(y, frame_length // 2)
    frames = librosa.util.frame(ypad, frame_length=frame_length, hop_length=hop)  # [F, n]
    n = min(frames.shape[1], f0.shape[0])
    width = frame_length - max_lag
    lags = np.clip(np.rint(sr / np.maximum(f0[:n], 1e-6)), 1, max_lag).astype(np.int64)
    out = np.zeros(n, np.float64)
    base = np.arange(width)[:, None]
    for s in range(0, n, 512):  # blocks of frames keep the gathered copies small
        e = min(n, s + 512)
        block = frames[:, s:e]
        a = block[:width]
        b = np.take_along_axis(block, base + lags[None, s:e], axis=0)
        num = np.sum(a * b, axis=0)
        den = np.sqrt(np.sum(a * a, axis=0) * np.sum(b * b, axis=0))
        out[s:e] = np.where(den > 1e-12, num / np.maximum(den, 1e-12), 0.0)
    return out


def compute_features(y: np.ndarray, sr: int, fps: float, T: int, features: list[str], *,
                     n_fft: int | None = None, f0_min: float = 50.0, f0_max: float = 2000.0,
                     voiced_threshold: float = 0.6, silence_db: float = -60.0) -> dict[str, np.ndarray]:
    """``{name: float64[T]}`` for mono ``y`` at ``sr``, aligned to token frames at ``fps``."""
    import librosa

    exact_hop = sr / fps
    hop = max(1, int(round(exact_hop)))
    n_fft = n_fft or max(16, 1 << math.ceil(math.log2(2 * hop)))
    # Centre analysis frame t at the middle of token frame t: drop half a hop at the start,
    # then librosa's centred frames sit at t·hop of what is left.
    y = np.ascontiguousarray(y[hop // 2:], dtype=np.float32)
    if y.size < 2:
        y = np.zeros(2, np.float32)
    want = set(features)
    raw: dict[str, np.ndarray] = {}
    need_rms = want & {"rms_db", "voiced", "f0"}
    if need_rms:
        rms = librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop, center=True)[0]
        raw["rms_db"] = np.maximum(20.0 * np.log10(np.maximum(rms, 1e-12)), DB_FLOOR)
    if want & {"spectral_centroid", "onset_strength"}:
        S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, center=True))
        if "spectral_centroid" in want:
            raw["spectral_centroid"] = librosa.feature.spectral_centroid(S=S, sr=sr, n_fft=n_fft)[0]
        if "onset_strength" in want:
            mel = librosa.feature.melspectrogram(S=S ** 2, sr=sr, n_fft=n_fft, n_mels=min(64, n_fft // 8))
            raw["onset_strength"] = librosa.onset.onset_strength(
                S=librosa.power_to_db(mel), sr=sr, lag=1, center=False, detrend=False)
    if "zcr" in want:
        raw["zcr"] = librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop, center=True)[0]
    if want & {"f0", "voiced"}:
        f0_max = min(f0_max, 0.45 * sr)
        max_lag = int(math.ceil(sr / f0_min))
        frame_length = max(n_fft, 1 << math.ceil(math.log2(2 * max_lag + 2)))
        f0 = librosa.yin(y, fmin=f0_min, fmax=f0_max, sr=sr, frame_length=frame_length,
                         hop_length=hop, center=True)
        periodic = _voicing(y, f0, sr, hop, frame_length, max_lag)
        level = fit_length(raw["rms_db"], periodic.shape[0])
        voiced = (periodic >= voiced_threshold) & (level > silence_db)
        raw["voiced"] = voiced.astype(np.float64)
        raw["f0"] = np.where(voiced, fit_length(f0, voiced.shape[0]), 0.0)
    integer_hop = abs(exact_hop - hop) < 1e-6
    # Non-integer hop (e.g. 16 kHz at 75 fps): features sit on a grid of the rounded hop and are
    # read at the token frame centres; the grid must cover all T of them.
    n_grid = T if integer_hop else int(math.ceil(T * exact_hop / hop)) + 1
    out = {}
    for name in features:
        col = fit_length(np.nan_to_num(raw[name], nan=0.0, posinf=0.0, neginf=0.0), n_grid)
        if not integer_hop and T:
            grid = (np.arange(n_grid) * hop + hop // 2) / sr
            col = np.interp((np.arange(T) + 0.5) / fps, grid, col)
        out[name] = col
    return out


def produce(ecdc_path: Path, T: int, *, args: argparse.Namespace) -> dict[str, dict]:
    wav = wav_path_for(ecdc_path, args)
    if not wav.is_file():
        raise ProducerError(f"no wav at {wav}; --wav-root must mirror the token tree (s1's output)")
    fps = read_token_header(ecdc_path).fps
    data, sr = audio.read_audio(wav)
    y = data.mean(axis=0) if data.shape[0] > 1 else data[0]
    wav_frames = math.ceil(y.shape[0] * fps / sr)
    if abs(wav_frames - T) > max(2, 0.02 * T):
        raise ProducerError(f"{wav} lasts {y.shape[0] / sr:.3f}s ({wav_frames} frames) but the tokens have "
                            f"{T} frames ({T / fps:.3f}s); is --wav-root the folder these tokens were "
                            "encoded from?")
    s = _STATE
    feats = compute_features(y, sr, fps, T, s["features"], n_fft=s["n_fft"], f0_min=s["f0_min"],
                             f0_max=s["f0_max"], voiced_threshold=s["voiced_threshold"],
                             silence_db=s["silence_db"])
    out: dict[str, dict] = {}
    for name, col in feats.items():
        entry: dict = {"values": col, "units": UNITS[name], "doc_string": DOCS[name]}
        if name == "voiced":
            entry.update(min=0.0, max=1.0)
        out[name] = entry
    return out
