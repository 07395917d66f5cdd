"""Per-bandwidth evaluation of an RVQ autoencoder: the bandwidth table, metrics, files (CPU, real torch)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from training.autoencoder.evaluate import (
    bandwidth_levels,
    evaluate_bandwidths,
    flat_metrics,
    write_bandwidth_report,
)
from training.autoencoder.model import build_autoencoder

# 2400 Hz, hop 8 -> 300 frames/s; 32 codes = 5 bits -> 1.5 kbps per codebook, so 1.5/3/6/12 kbps
# are 1, 2, 4 and 8 codebooks.
TINY_RVQ = {"channels": 1, "sample_rate": 2400, "quantizer": "rvq",
            "seanet": {"n_filters": 4, "ratios": (4, 2), "dimension": 8, "lstm": 0},
            "rvq": {"n_q": 8, "bins": 32, "decay": 0.0, "threshold_ema_dead_code": 0, "q_dropout": False}}


def test_bandwidth_levels() -> None:
    assert bandwidth_levels(32, 1024, 75.0) == [(1.5, 2), (3.0, 4), (6.0, 8), (12.0, 16)]  # EnCodec 24 kHz
    assert bandwidth_levels(8, 1024, 75.0) == [(1.5, 2), (3.0, 4), (6.0, 8)]  # the config's n_q 8: 12 kbps = 8
    assert bandwidth_levels(2, 16, 75.0) == [(1.5, 2)]  # everything clamps to n_q
    assert bandwidth_levels(8, 32, 300.0) == [(1.5, 1), (3.0, 2), (6.0, 4), (12.0, 8)]


def test_more_codebooks_lower_the_distance_and_report_is_written(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_autoencoder(TINY_RVQ)
    t = torch.arange(2400) / 2400
    x = torch.stack([0.4 * torch.sin(2 * math.pi * f * t) + 0.05 * torch.randn(2400) for f in (110, 230, 370, 520)])
    x = x[:, None, :]
    model.train()
    model(x)  # k-means initialises every codebook on these latents (one training forward)
    report = evaluate_bandwidths(model, [x[:2], x[2:]], "cpu")
    rows = report["bandwidths"]
    assert [r["n_q"] for r in rows] == [1, 2, 4, 8] and [r["kbps"] for r in rows] == [1.5, 3.0, 6.0, 12.0]
    assert report["items"] == 4 and model.training  # the train/eval mode is restored
    dist = [r["mel_to_unquantized"] for r in rows]
    # Each doubling of the codebooks halves the latent residual here (decay 0: the codebooks are
    # the k-means centroids after one Lloyd step); measured 0.22, 0.13, 0.062, 0.016: asserted < 0.75x.
    assert all(b < 0.75 * a for a, b in zip(dist, dist[1:])), dist
    for r in rows:
        assert all(math.isfinite(r[k]) for k in ("si_snr", "mel", "stft", "mel_to_unquantized"))
    books = report["codebooks"]
    assert [c["level"] for c in books] == list(range(1, 9))
    assert all(0 < c["usage"] <= 1 and 1 <= c["perplexity"] <= 32 for c in books)
    flat = flat_metrics(report)
    assert flat["val_nq8_mel_to_unquantized"] == dist[-1] and "val_cb8_perplexity" in flat
    paths = write_bandwidth_report(report, tmp_path, epoch=3)
    assert [p.name for p in paths] == ["bandwidths.json", "bandwidths.png"]
    doc = json.loads(paths[0].read_text())
    assert doc["epoch"] == 3 and doc["bandwidths"][0]["n_q"] == 1 and paths[1].stat().st_size > 1000


def test_needs_a_quantizer() -> None:
    model = build_autoencoder({**TINY_RVQ, "quantizer": None})
    with pytest.raises(ValueError, match="RVQ"):
        evaluate_bandwidths(model, [torch.zeros(1, 1, 240)])
