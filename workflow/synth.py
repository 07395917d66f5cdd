"""Synthetic test signals with known parameters: tones, drum hits, and the demo's audio tree.

Used by the demo, the tests and the benchmarks, so everyone exercises the same kind of data. The
parameters are in the file names (``tone_pitch_64.00_amp_0.75.wav``), which the s4 examples read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def midi_to_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)


def tone(pitch: float, amp: float, seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    """A decaying harmonic tone, ``[C, N]`` float32, slightly different per channel."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = midi_to_hz(pitch)
    sig = sum((0.6 ** h) * np.sin(2 * np.pi * f0 * (h + 1) * t) for h in range(4))
    env = np.minimum(1.0, t / 0.01) * np.exp(-t * 1.5)
    chans = [amp * sig * env * (1.0 - 0.1 * c) for c in range(channels)]
    return (np.stack(chans) / 1.6).astype(np.float32)


def drum(kind: str, velocity: int, seconds: float, sr: int, seed: int, channels: int = 1) -> np.ndarray:
    """A few synthetic hits (kick: pitched thump, snare/hat: filtered noise) at 120 bpm."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.zeros(n, np.float64)
    hit_len = int(0.25 * sr)
    t = np.arange(hit_len) / sr
    if kind == "kick":
        hit = np.sin(2 * np.pi * (50 + 100 * np.exp(-t * 30)) * t) * np.exp(-t * 12)
    else:
        noise = rng.standard_normal(hit_len)
        if kind == "hat":
            noise = np.diff(noise, prepend=0.0)
        hit = noise * np.exp(-t * (40 if kind == "hat" else 18)) * 0.5
    for start in range(0, n - hit_len, int(0.5 * sr)):
        out[start:start + hit_len] += hit * (velocity / 127.0) * rng.uniform(0.8, 1.0)
    return np.repeat(out[None].astype(np.float32), channels, axis=0)


def make_demo_set(root: Path | str, *, seconds: float = 3.0, n_tones: int = 6, n_drums: int = 6) -> list[Path]:
    """Write the synthetic demo set under ``root``; returns the files written (sorted)."""
    root = Path(root)
    written: list[Path] = []
    rates = [(44100, 2), (48000, 1), (22050, 1), (24000, 1)]
    for i in range(n_tones):
        pitch = 48.0 + 4.5 * i
        amp = round(0.25 + 0.1 * i, 2)
        sr, ch = rates[i % len(rates)]
        path = root / "tones" / f"set{i % 2}" / f"tone_pitch_{pitch:.2f}_amp_{amp:.2f}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone(pitch, amp, seconds, sr, ch).T, sr, subtype="PCM_16")
        written.append(path)
    kinds = ["kick", "snare", "hat"]
    for i in range(n_drums):
        kind = kinds[i % 3]
        vel = 40 + 15 * i
        sr, ch = rates[(i + 1) % len(rates)]
        path = root / "drums" / kind / f"{kind}_vel_{vel}_pitch_{36 + i}.5.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, drum(kind, vel, seconds, sr, seed=i, channels=ch).T, sr, subtype="PCM_16")
        written.append(path)
    return sorted(written)
