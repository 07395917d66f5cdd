"""Shared fixtures: small generated audio trees in tmp folders (never downloaded data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from workflow.demo import tone


def write(path: Path, data: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    """Write ``[C, N]`` audio with soundfile, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.asarray(data).T, sr, subtype=subtype)
    return path


@pytest.fixture
def messy_tree(tmp_path: Path) -> Path:
    """Mixed formats, rates, channels and names, plus the bad cases s1 must survive."""
    root = tmp_path / "raw dir"
    write(root / "a" / "tone_pitch_60.00_amp_0.50.wav", tone(60, 0.5, 1.5, 44100, 2), 44100)
    write(root / "a" / "b" / "quiet é.flac", tone(67, 0.02, 1.2, 48000, 1), 48000)
    write(root / "c" / "float 22k.wav", tone(55, 0.3, 1.0, 22050, 1), 22050, "FLOAT")
    write(root / "c" / "six_ch.wav", tone(62, 0.4, 0.8, 16000, 6), 16000, "PCM_24")
    write(root / "short.wav", tone(70, 0.4, 0.1, 24000, 1), 24000)  # shorter than one window
    write(root / "silent.wav", np.zeros((1, 24000), np.float32), 24000)
    # A spiky file: reaching the RMS target would clip, so the gain must be peak-limited.
    spiky = np.full((1, 24000), 0.001, np.float32)
    spiky[0, ::4000] = 0.9
    write(root / "spiky.wav", spiky, 24000, "FLOAT")
    nan = tone(60, 0.5, 0.5, 24000, 1)
    nan[0, 100] = np.nan
    write(root / "bad" / "nan.wav", nan, 24000, "FLOAT")
    (root / "bad" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10)
    (root / "notes.txt").write_text("not audio")
    return root
