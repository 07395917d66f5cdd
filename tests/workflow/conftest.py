"""Shared fixtures: small generated audio trees in tmp folders (never downloaded data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from workflow.synth import tone


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


@pytest.fixture(scope="session")
def token_tree(tmp_path_factory) -> dict[str, Path]:
    """A small real pipeline output, made once per test session (read-only for tests!):
    ``raw`` (demo set: tones/drums with parameters in their names, mixed rates), ``norm`` (s1),
    ``tokens`` (s2, random-weight EnCodec 24 kHz, 8 codebooks). Copy it before modifying."""
    from workflow import s1_audio_normalize, s2_wav2encodec24
    from workflow.synth import make_demo_set

    root = tmp_path_factory.mktemp("token_tree")
    make_demo_set(root / "raw", seconds=1.0, n_tones=4, n_drums=3)
    assert s1_audio_normalize.main([str(root / "raw"), str(root / "norm"), "--no-progress", "--workers", "1"]) == 0
    assert s2_wav2encodec24.main([str(root / "norm"), str(root / "tokens"), "--weights", "random",
                                  "--device", "cpu", "--no-progress"]) == 0
    return {"root": root, "raw": root / "raw", "norm": root / "norm", "tokens": root / "tokens"}


@pytest.fixture
def token_copy(token_tree, tmp_path: Path) -> dict[str, Path]:
    """A private, writable copy of :func:`token_tree` (tokens + norm)."""
    import shutil

    out = {"root": tmp_path}
    for key in ("raw", "norm", "tokens"):
        out[key] = tmp_path / key
        shutil.copytree(token_tree[key], out[key], ignore=shutil.ignore_patterns(".reports"))
    return out
