"""Fixtures: a small messy audio tree, and an interpreter that sees a tiny AudioCraft-shaped tree.

The fake interpreter is the real Python started through a wrapper script whose PYTHONPATH holds
real (tiny) ``audiocraft``, ``dora`` and optionally ``xformers`` packages plus AudioCraft's
``config/`` layout, so the launcher's checks run against real files and a real subprocess.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def write_tone(path: Path, seconds: float, sr: int, channels: int = 1, freq: float = 220.0, **kw) -> Path:
    t = np.arange(int(round(seconds * sr))) / sr
    x = np.stack([0.3 * np.sin(2 * np.pi * (freq + 30 * c) * t) for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), sr, **kw)
    return path


@pytest.fixture
def audio_tree(tmp_path: Path) -> Path:
    """Six tracks: nested folders, a space in a name, 16-48 kHz, stereo, one mp3."""
    raw = tmp_path / "raw"
    write_tone(raw / "rock" / "track one.wav", 2.6, 44100, 2, 200)
    write_tone(raw / "rock" / "t2.wav", 3.2, 48000, 1, 260)
    write_tone(raw / "jazz" / "t3.flac", 2.1, 22050, 1, 310)
    write_tone(raw / "jazz" / "deep" / "t4.wav", 1.7, 16000, 2, 350)
    write_tone(raw / "t5.mp3", 2.0, 44100, 1, 400, format="MP3")
    write_tone(raw / "t6.wav", 2.4, 32000, 1, 450)
    return raw


@dataclass
class FakeAudioCraft:
    python: str          # wrapper script: runs the real interpreter with the fake tree importable
    root: Path           # the "site-packages" folder
    config_dir: Path     # root/config, where Dora would read configs
    bindir: Path


@pytest.fixture
def make_fake_audiocraft(tmp_path: Path):
    def make(xformers: str = "ok", ffmpeg: bool = True, name: str = "site") -> FakeAudioCraft:
        root = tmp_path / name
        (root / "audiocraft").mkdir(parents=True)
        (root / "audiocraft" / "__init__.py").write_text("__version__ = '1.3.0'\n")
        (root / "audiocraft" / "train.py").write_text("")
        (root / "dora").mkdir()
        (root / "dora" / "__init__.py").write_text("")
        for sub in ("dset/audio", "solver/compression"):
            (root / "config" / sub).mkdir(parents=True)
        if xformers != "missing":
            (root / "xformers").mkdir()
            (root / "xformers" / "__init__.py").write_text("")
            body = ("import sys\nprint('WARNING[XFORMERS]: built for another torch', file=sys.stderr)\n"
                    if xformers == "ok" else "raise ImportError('libcudart.so.12: cannot open shared object file')\n")
            (root / "xformers" / "ops.py").write_text(body)
        bindir = tmp_path / f"{name}-bin"
        bindir.mkdir()
        wrapper = bindir / "python"
        wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={root} exec {sys.executable} \"$@\"\n")
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
        if ffmpeg:
            f = bindir / "ffmpeg"
            f.write_text("#!/bin/sh\nexit 0\n")
            f.chmod(f.stat().st_mode | stat.S_IEXEC)
        return FakeAudioCraft(str(wrapper), root, root / "config", bindir)

    return make


@pytest.fixture
def clean_env() -> dict[str, str]:
    """An environment without USER and with a PATH that has neither ffmpeg nor srun."""
    env = {k: v for k, v in os.environ.items() if k not in ("USER", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")}
    env["PATH"] = "/usr/bin:/bin"
    return env


def make_fma_zip(path: Path, n_tracks: int = 6, seconds: float = 2.5) -> list[str]:
    """An fma_small.zip look-alike (README, checksums, folders, mp3 and wav tracks); returns the
    audio member names in archive order."""
    import io
    import zipfile

    names = []
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fma_small/README.txt", "FMA small look-alike for tests\n")
        zf.writestr("fma_small/checksums", "")
        for i in range(n_tracks):
            ext = "mp3" if i % 2 == 0 else "wav"
            buf = io.BytesIO()
            sr = 44100 if ext == "mp3" else 22050
            t = np.arange(int(seconds * sr)) / sr
            kw = {"format": "MP3"} if ext == "mp3" else {"format": "WAV"}
            noise = np.random.default_rng(i).normal(0, 0.05, t.size)  # real-music-like: barely compressible
            sf.write(buf, (0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + noise).astype(np.float32), sr, **kw)
            name = f"fma_small/{i // 3:03d}/{i + 2:06d}.{ext}"
            zf.writestr(name, buf.getvalue(), compress_type=zipfile.ZIP_STORED if ext == "mp3"
                        else zipfile.ZIP_DEFLATED)
            names.append(name)
    return names


def run_notebook(name: str, out_dir: Path, **parameters) -> "object":
    """Execute ``notebooks/<name>`` headless with papermill; returns the executed notebook."""
    import papermill

    repo = Path(__file__).resolve().parents[3]
    out_dir.mkdir(parents=True, exist_ok=True)
    return papermill.execute_notebook(
        str(repo / "notebooks" / name), str(out_dir / name), parameters=parameters,
        kernel_name="python3", cwd=str(out_dir), progress_bar=False, log_output=False)


def notebook_text(nb) -> str:
    """Everything the executed cells printed (stdout/stderr streams and text results)."""
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                parts.append(o.get("text", ""))
            elif "text/plain" in o.get("data", {}):
                parts.append(o["data"]["text/plain"])
            elif o.get("output_type") == "error":
                parts.append(f"{o.get('ename')}: {o.get('evalue')}")
    return "".join(parts)
