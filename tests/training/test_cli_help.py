"""The training entry points run as modules and explain themselves."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module, flags", [
    ("training.autoencoder", ("--1ch", "--32ch", "--data-dir", "--hf-dataset", "--resume", "key=value")),
    ("training.music.train_all_models", ("--datasets-dir", "--synthetic", "--resume", "--models")),
    ("training.music.download_datasets", ("--datasets-dir", "--organize", "--list")),
    ("training.audiocraft", ("fetch-fma", "prepare", "dset", "launch", "xp")),
])
def test_help(module: str, flags) -> None:
    res = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert all(f in res.stdout for f in flags)
