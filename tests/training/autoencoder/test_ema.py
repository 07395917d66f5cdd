"""The generator weight EMA: its arithmetic, its state, and the trainer validating and saving it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from training.autoencoder.config import load_config
from training.autoencoder.ema import EMAError, ModelEMA
from training.autoencoder.losses import l1_time
from training.autoencoder.train import Trainer, _unwrap

from .test_ddp import TINY


def test_bias_corrected_average_of_parameters_and_copied_buffers() -> None:
    src = nn.BatchNorm1d(2)  # parameters and buffers
    ema = ModelEMA(src, decay=0.5)
    values = [torch.tensor([1.0, 2.0]), torch.tensor([4.0, 8.0]), torch.tensor([0.0, 16.0])]
    for v in values:
        with torch.no_grad():
            src.weight.copy_(v)
            src.running_mean.copy_(v)
        ema.update(src)
    # count 1 → 1.5 → 1.75; weights 1, 2/3, 4/7: the unbiased average 1/1.75·(0.25·v0 + 0.5·v1 + v2)
    expect = (0.25 * values[0] + 0.5 * values[1] + values[2]) / 1.75
    assert torch.allclose(ema.module.weight, expect)
    assert torch.equal(ema.module.running_mean, values[2])  # buffers are copied, not averaged
    assert not ema.module.training and not ema.module.weight.requires_grad
    other = ModelEMA(src, decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.count == pytest.approx(1.75)
    with pytest.raises(EMAError, match="decay"):
        ModelEMA(src, decay=1.0)
    with pytest.raises(EMAError, match="format"):
        other.load_state_dict({"count": 1})


def test_trainer_validates_and_checkpoints_the_ema(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = load_config("1ch", [*TINY, "model.quantizer=rvq", "optim.ema.decay=0.9"])
    t = Trainer(cfg, tmp_path, torch.device("cpu"))
    x = 0.1 * torch.randn(2, 1, 1200)
    for _ in range(3):
        t.train_step(x)
    ema = t.state.ema
    assert ema is not None and t.eval_model() is ema.module
    val, _ = t.validate([x])
    with torch.no_grad():
        expect_ema = float(l1_time(ema.module(x).audio, x))
        live = _unwrap(t.state.model).eval()
        live_l1 = float(l1_time(live(x).audio, x))
    assert val["val_l1"] == pytest.approx(expect_ema, rel=1e-5)
    assert abs(val["val_l1"] - live_l1) > 1e-6  # the EMA is not the live generator
    t.save(1, val["val_loss"])
    best = torch.load(tmp_path / "checkpoints" / "autoencoder_best.pt", weights_only=False)
    ema_keys = [k for k in best["model_state_dict"] if k.startswith("generator_ema.")]
    assert ema_keys and best["extra"]["ema"]["count"] == pytest.approx(1 + 0.9 + 0.81)
    # a resumed trainer gets the same averaged weights and count back
    t2 = Trainer(cfg, tmp_path, torch.device("cpu"))
    t2.maybe_resume(True)
    assert t2.state.ema.count == pytest.approx(ema.count)
    for a, b in zip(t2.state.ema.module.parameters(), ema.module.parameters()):
        assert torch.equal(a, b)
