"""benchmarks/bench_autoencoder.py: the GPU mode's paper batches and its refusal without a GPU."""

from __future__ import annotations

import pytest
import torch

from benchmarks.bench_autoencoder import DEFAULT_BATCHES, check_device, main
from training.autoencoder.config import load_config


def test_cuda_mode_uses_the_paper_batches() -> None:
    assert DEFAULT_BATCHES["cuda"] == (load_config("1ch").optim.batch_size, load_config("32ch").optim.batch_size)
    assert DEFAULT_BATCHES["cuda"] == (32, 4)
    assert check_device("cpu") is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_cuda_mode_refuses_clearly_without_a_gpu(capsys) -> None:
    assert main(["--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA GPU" in err and "--device cpu" in err
