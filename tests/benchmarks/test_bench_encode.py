"""benchmarks/bench_encode.py: the GPU mode's refusal without a GPU, and the no-op-model pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.bench_encode import check_device, main, pipeline_ceiling
from workflow import ecdc
from workflow.synth import tone
from tests.workflow.conftest import write


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_cuda_mode_refuses_clearly_without_a_gpu(capsys) -> None:
    assert check_device("cpu") is None
    assert main(["--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "needs a GPU, but torch sees no CUDA GPU" in err and "--device cpu" in err


def test_pipeline_ceiling_runs_the_real_pipeline_with_a_no_op_model(tmp_path: Path) -> None:
    for i, secs in enumerate((0.3, 0.5, 0.2)):
        write(tmp_path / "in" / f"f{i}.wav", tone(50 + i, 0.3, secs, 24000, 1), 24000)
    r = pipeline_ceiling(tmp_path / "in", tmp_path / "out", "encodec_24khz", "processes", 2)
    assert r["files_s"] > 0
    for i, secs in enumerate((0.3, 0.5, 0.2)):
        tok = ecdc.read_ecdc(tmp_path / "out" / f"f{i}.ecdc")
        assert tok.header.audio_length == round(secs * 24000)
        assert tok.codes.shape == (8, -(-round(secs * 24000) // 320)) and not np.any(tok.codes)


def test_gpu_mode_model_rows_run_on_the_cpu_too() -> None:
    from benchmarks.bench_encode import model_speed
    rows = model_speed("encodec_24khz", "cpu", [1, 2], item_s=0.2) + model_speed("dac_44khz", "cpu", [1], item_s=0.2)
    assert [(r["codec"], r["batch"]) for r in rows] == [("encodec_24khz", 1), ("encodec_24khz", 2), ("dac_44khz", 1)]
    assert all(r["x_real_time"] > 0 for r in rows)
