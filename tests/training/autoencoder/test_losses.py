"""Tests for the MS-STFT discriminator, the EnCodec losses/metrics and the loss balancer (CPU, real torch)."""

from __future__ import annotations

import math
import re

import librosa
import numpy as np
import pytest
import torch
import yaml
from torch import nn

from training.autoencoder.balancer import Balancer, BalancerError, NonFiniteGradientError
from training.autoencoder.config import DEFAULT_CONFIG_DIR, load_config, mel_settings
from training.autoencoder.discriminator import DiscriminatorInputError, MultiScaleSTFTDiscriminator
from training.autoencoder.losses import (
    MEL_PRESETS,
    LossInputError,
    MelSpectrogram,
    MultiScaleMelLoss,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
    l1_time,
    mel_distance,
    si_snr,
    stft_distance,
)
from workflow.errors import UsageError

SR = 24000


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _tone(n: int = 4800, freq: float = 440.0, batch: int = 2, channels: int = 1) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float32) / SR
    x = 0.5 * torch.sin(2 * math.pi * freq * t) + 0.05 * torch.randn(batch, channels, n)
    return x


# ---------------------------------------------------------------------------------------------
# Discriminator


@pytest.mark.parametrize("channels", [1, 32])
def test_discriminator_shapes_and_gradients(channels: int) -> None:
    disc = MultiScaleSTFTDiscriminator(in_channels=channels)
    x = torch.randn(2, channels, 4096, requires_grad=True)
    logits, fmaps = disc(x)
    assert disc.num_discriminators == 5 and len(logits) == 5 and len(fmaps) == 5
    for n_fft, logit, fmap in zip((1024, 2048, 512, 256, 128), logits, fmaps):
        frames = (4096 - n_fft) // (n_fft // 4) + 1
        # time axis keeps its length (dilations, no stride); frequency is halved by each of 3 strides
        freq = n_fft // 2 + 1
        for _ in range(3):
            freq = (freq - 1) // 2 + 1
        assert logit.shape == (2, 1, frames, freq)
        assert len(fmap) == 5 and all(f.shape[:2] == (2, 32) for f in fmap)
    sum(lg.mean() for lg in logits).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in disc.parameters())


def test_discriminator_first_conv_sees_real_and_imaginary_parts_of_every_channel() -> None:
    disc = MultiScaleSTFTDiscriminator(in_channels=32, n_ffts=(256,))
    spec = disc.discriminators[0].spectrogram(torch.randn(1, 32, 1024))
    assert spec.shape == (1, 64, (1024 - 256) // 64 + 1, 129)  # [B, 2C, frames, freq]
    assert disc.discriminators[0].convs[0].in_channels == 64


def test_discriminator_state_dict_round_trip_and_no_window_in_checkpoint() -> None:
    a = MultiScaleSTFTDiscriminator(n_ffts=(256, 128), filters=8)
    b = MultiScaleSTFTDiscriminator(n_ffts=(256, 128), filters=8)
    assert not any("window" in k for k in a.state_dict())
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 1, 1024)
    for la, lb in zip(a(x)[0], b(x)[0]):
        assert torch.equal(la, lb)


def test_discriminator_rejects_bad_input() -> None:
    disc = MultiScaleSTFTDiscriminator(in_channels=1, n_ffts=(512, 256))
    with pytest.raises(DiscriminatorInputError, match="in_channels=1"):
        disc(torch.randn(1, 2, 2048))
    with pytest.raises(DiscriminatorInputError, match="at least 512"):
        disc(torch.randn(1, 1, 300))
    with pytest.raises(DiscriminatorInputError, match=r"\[batch, channels, samples\]"):
        disc(torch.randn(2048))


# ---------------------------------------------------------------------------------------------
# Adversarial losses


def test_generator_adversarial_loss_forms() -> None:
    from training.autoencoder.losses import generator_adversarial_loss

    logits = [torch.tensor([2.0, 0.0, -1.0]), torch.tensor([[0.5]])]
    # hinge2 (the paper): mean(relu(1 - D)) per scale = (0 + 1 + 2)/3 and 0.5 → 0.75
    assert float(generator_adversarial_loss(logits, "hinge2")) == pytest.approx(0.75)
    # hinge (AudioCraft's default): mean(-D) per scale = -1/3 and -0.5 → -5/12
    assert float(generator_adversarial_loss(logits, "hinge")) == pytest.approx(-5 / 12)
    with pytest.raises(ValueError, match="hinge2"):
        generator_adversarial_loss(logits, "mse")


def test_hinge_generator_loss_hand_computed() -> None:
    # scale 1: relu(1 - [2, 0, -1]) = [0, 1, 2] -> 1;  scale 2: relu(1 - 0.5) = 0.5;  mean 0.75
    loss = hinge_generator_loss([torch.tensor([2.0, 0.0, -1.0]), torch.tensor([[0.5]])])
    assert loss.item() == pytest.approx(0.75)


def test_hinge_discriminator_loss_hand_computed() -> None:
    real = [torch.tensor([2.0, 0.5]), torch.tensor([-1.0])]
    fake = [torch.tensor([-2.0, 0.0]), torch.tensor([3.0])]
    # scale 1: mean([0, .5]) + mean([0, 1]) = .75;  scale 2: 2 + 4 = 6;  mean 3.375
    assert hinge_discriminator_loss(real, fake).item() == pytest.approx(3.375)
    # confident, correct discriminator: zero loss
    assert hinge_discriminator_loss([torch.full((3,), 1.5)], [torch.full((3,), -1.5)]).item() == 0.0


def test_hinge_losses_reject_bad_lists() -> None:
    with pytest.raises(LossInputError):
        hinge_generator_loss([])
    with pytest.raises(LossInputError):
        hinge_discriminator_loss([torch.zeros(2)], [torch.zeros(2), torch.zeros(2)])


def test_feature_matching_hand_value_identity_and_scale_invariance() -> None:
    real = [[torch.ones(4), torch.full((4,), 2.0)], [torch.full((2, 3), -4.0)]]
    fake = [[torch.zeros(4), torch.ones(4)], [torch.full((2, 3), -2.0)]]
    # scale 1: layer |1-0|/1 = 1, layer |2-1|/2 = .5 -> .75; scale 2: 2/4 = .5; mean .625
    assert feature_matching_loss(real, fake).item() == pytest.approx(0.625)
    assert feature_matching_loss(real, real).item() == 0.0
    scaled_r = [[1e3 * t for t in layers] for layers in real]
    scaled_f = [[1e3 * t for t in layers] for layers in fake]
    assert feature_matching_loss(scaled_r, scaled_f).item() == pytest.approx(0.625)


def test_feature_matching_trains_only_the_fake_side() -> None:
    r = torch.randn(5, requires_grad=True)
    f = torch.randn(5, requires_grad=True)
    feature_matching_loss([[r * 2]], [[f * 2]]).backward()
    assert r.grad is None and f.grad is not None and f.grad.abs().sum() > 0
    with pytest.raises(LossInputError):
        feature_matching_loss([[torch.zeros(3)]], [[torch.zeros(4)]])


# ---------------------------------------------------------------------------------------------
# Reconstruction losses


def test_l1_time() -> None:
    assert l1_time(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 1.0])).item() == pytest.approx(1.5)
    with pytest.raises(LossInputError, match="shapes differ"):
        l1_time(torch.zeros(2, 1, 10), torch.zeros(2, 1, 11))


def test_mel_spectrogram_matches_librosa() -> None:
    n_fft, hop = 512, 128
    x = _tone(3000, batch=1)[0, 0].double().numpy()
    ours = MelSpectrogram(SR, n_fft=n_fft, n_mels=64)(torch.from_numpy(x)).numpy()
    assert ours.shape == (64, math.ceil(3000 / hop))
    p = (n_fft - hop) // 2
    ref = librosa.feature.melspectrogram(y=np.pad(x, (p, p), mode="reflect"), sr=SR, n_fft=n_fft, hop_length=hop,
                                         center=False, power=2.0, n_mels=64, htk=True, norm=None)
    k = ref.shape[1]
    np.testing.assert_allclose(ours[:, :k], ref, rtol=1e-4, atol=1e-8)


def test_mel_loss_scales_and_empty_filters() -> None:
    loss = MultiScaleMelLoss()
    assert [m.n_fft for m in loss.mels] == [64, 128, 256, 512, 1024, 2048]  # range_ inclusive
    assert [m.n_fft for m in MultiScaleMelLoss(range_=(6, 10)).mels] == [64, 128, 256, 512, 1024]  # AudioCraft's
    assert loss.alphas[0] == pytest.approx(math.sqrt(63))
    assert loss.mels[0].empty_filters == 22 and loss.mels[-1].empty_filters == 0
    assert not any("mel_fb" in k or "window" in k for k in loss.state_dict())


def test_mel_loss_zero_identical_and_grows_with_difference() -> None:
    loss = MultiScaleMelLoss()
    x = _tone()
    noise = torch.randn_like(x)
    assert loss(x, x).item() == 0.0
    values = [loss(x + a * noise, x).item() for a in (0.01, 0.1, 1.0)]
    assert 0 < values[0] < values[1] < values[2]
    silent = torch.zeros(1, 1, 2048, requires_grad=True)
    out = loss(silent, torch.zeros(1, 1, 2048))
    out.backward()
    assert out.item() == 0.0 and torch.isfinite(silent.grad).all()


def test_mel_loss_multichannel_is_channels_as_batch_and_differentiable() -> None:
    loss = MultiScaleMelLoss(normalized=True)
    y = _tone(2400, batch=2, channels=32)
    x = (y + 0.1 * torch.randn_like(y)).requires_grad_()
    value = loss(x, y)
    flat = loss(x.detach().reshape(64, 1, 2400), y.reshape(64, 1, 2400))
    assert value.item() == pytest.approx(flat.item(), rel=1e-5)
    value.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_mel_presets_match_the_values_written_in_the_config_comment() -> None:
    # base.yaml documents each preset as one "#   name: key=value ..." line (with its source);
    # the code's presets must be exactly those values, so the comment cannot drift from the code.
    text = (DEFAULT_CONFIG_DIR / "base.yaml").read_text(encoding="utf-8")
    lines = re.findall(r"^\s*#\s+(\w+):\s+(scales=.*)$", text, flags=re.M)
    written = {name: {k: yaml.safe_load(v) for k, v in re.findall(r"(\w+)=(\[[^\]]*\]|\S+)", rest)}
               for name, rest in lines}
    assert set(written) == set(MEL_PRESETS) == {"paper", "audiocraft"}
    for name, values in MEL_PRESETS.items():
        assert {**values, "scales": list(values["scales"])} == written[name], name
    assert written["paper"] == {"scales": [5, 11], "alphas": False, "normalized": True, "f_min": 0, "n_mels": 64}
    assert written["audiocraft"] == {"scales": [6, 10], "alphas": False, "normalized": True, "f_min": 64,
                                     "n_mels": 64}


def test_mel_loss_config_reaches_the_loss() -> None:
    paper = MultiScaleMelLoss(**mel_settings(load_config("1ch")))  # the default preset
    assert [m.n_fft for m in paper.mels] == [32, 64, 128, 256, 512, 1024, 2048]
    assert paper.alphas == [1.0] * 7 and paper.normalized and paper.mels[0].normalized
    ac = MultiScaleMelLoss(**mel_settings(load_config("1ch", ["losses.mel_loss.preset=audiocraft"])))
    assert [m.n_fft for m in ac.mels] == [64, 128, 256, 512, 1024] and ac.mels[0].n_mels == 64
    # f_min 64 Hz: at n_fft 1024 (23.4 Hz bins) no filter reaches below bin 2; with f_min 0 one does.
    assert float(ac.mels[-1].mel_fb[:, :3].sum()) == 0.0 and float(paper.mels[-2].mel_fb[:, :3].sum()) > 0
    own = mel_settings(load_config("1ch", ["losses.mel_loss.scales=[6,8]", "losses.mel_loss.alphas=true",
                                           "losses.mel_loss.n_mels=32", "losses.mel_loss.f_min=100"]))
    assert own == {"range_": (6, 8), "alphas": True, "normalized": True, "f_min": 100.0, "n_mels": 32}
    with pytest.raises(UsageError, match="paper, audiocraft"):
        load_config("1ch", ["losses.mel_loss.preset=papr"])


def test_mel_loss_terms_sum_to_the_loss() -> None:
    loss = MultiScaleMelLoss(range_=(5, 8), normalized=True)
    x, y = _tone(), _tone(freq=550.0)
    terms = loss.terms(x, y)
    assert list(terms) == [32, 64, 128, 256] and all(v.item() > 0 for v in terms.values())
    assert loss(x, y).item() == pytest.approx(sum(v.item() for v in terms.values()), rel=1e-6)


def test_stft_distance_zero_identical_and_grows_with_noise() -> None:
    x = _tone()
    noise = torch.randn_like(x)
    assert stft_distance(x, x).item() == 0.0
    values = [stft_distance(x + a * noise, x).item() for a in (0.01, 0.1, 1.0)]
    assert 0 < values[0] < values[1] < values[2]
    with pytest.raises(LossInputError):
        stft_distance(x, x[..., :100])


def test_mel_loss_short_input_and_bad_args() -> None:
    loss = MultiScaleMelLoss()
    x = torch.randn(1, 1, 300)  # shorter than the 2048-point scale's reflect padding
    assert torch.isfinite(loss(x, 0.5 * x)) and loss(x, 0.5 * x).item() > 0
    with pytest.raises(LossInputError):
        loss(torch.zeros(1, 1, 100), torch.zeros(1, 2, 100))
    with pytest.raises(ValueError):
        MultiScaleMelLoss(range_=(8, 6))


def test_mel_distance_metric() -> None:
    x = _tone()
    assert mel_distance(x, x).item() == 0.0
    near = mel_distance(x + 0.01 * torch.randn_like(x), x).item()
    far = mel_distance(torch.randn_like(x), x).item()
    assert 0 < near < far


# ---------------------------------------------------------------------------------------------
# SI-SNR


def test_si_snr_identity_scale_invariance_and_noise() -> None:
    x = _tone(batch=3)
    assert si_snr(x, x).item() == pytest.approx(100.0)  # capped at max_db
    assert si_snr(2 * x, x).item() == si_snr(x, x).item()  # scale-invariant
    assert si_snr(x, x, max_db=None).item() > 100.0
    assert si_snr(torch.randn_like(x), x).item() < -20.0
    est = x + 0.3 * torch.randn_like(x)
    assert si_snr(0.25 * est, x).item() == pytest.approx(si_snr(est, x).item(), abs=1e-3)
    assert si_snr(est, x, reduction="none").shape == (3, 1)


def test_si_snr_known_value() -> None:
    # reference: whole periods of a sine; error: an orthogonal cosine with 1/10 of its energy -> 10 dB
    t = torch.arange(2400, dtype=torch.float64) / SR
    ref = torch.sin(2 * math.pi * 100 * t)
    err = math.sqrt(0.1) * torch.cos(2 * math.pi * 100 * t)
    assert si_snr(ref + err, ref).item() == pytest.approx(10.0, abs=1e-6)
    assert si_snr(3 * (ref + err), ref).item() == pytest.approx(10.0, abs=1e-6)


# ---------------------------------------------------------------------------------------------
# Balancer


def _two_losses(y: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Two losses whose raw gradients w.r.t. ``y`` differ by ~6 orders of magnitude."""
    return {"a": 1000.0 * y.square().sum(), "b": 0.001 * (y - target).abs().sum()}


def _contributions(y_grad: torch.Tensor, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Split the combined gradient into ``s_k · g_k`` by least squares (independent of the balancer's metrics)."""
    basis = torch.stack([g.flatten().double() for g in grads.values()], dim=1)
    col_norms = basis.norm(dim=0)  # columns differ by ~1e6 in scale: solve on unit columns
    target = y_grad.flatten().double()
    coef = torch.linalg.lstsq(basis / col_norms, target.unsqueeze(1)).solution.squeeze(1) / col_norms
    assert (basis @ coef - target).norm() <= 1e-5 * target.norm()  # float32 rounding only
    return {k: c * g.double() for (k, g), c in zip(grads.items(), coef)}


def _per_item_norm(g: torch.Tensor) -> float:
    return g.flatten(1).norm(dim=1).mean().item()


def _balanced_step(balancer: Balancer, net: nn.Module, x: torch.Tensor, target: torch.Tensor
                   ) -> tuple[dict[str, float], float, torch.Tensor]:
    """One balanced backward; returns each loss's per-item contribution norm, the raw-norm ratio, ∂/∂y.

    The balancer runs on a leaf copy of the output so ``.grad`` holds exactly what it sent back
    (``retain_grad`` on a non-leaf would also collect the balancer's internal ``autograd.grad``
    calls); that gradient is then pushed through ``net`` as the balancer would have done.
    """
    out = net(x)
    y = out.detach().requires_grad_()
    losses = _two_losses(y, target)
    grads = {k: torch.autograd.grad(v, y, retain_graph=True)[0] for k, v in losses.items()}
    balancer.backward(losses, y)
    out.backward(y.grad)
    parts = _contributions(y.grad, grads)
    raw_ratio = _per_item_norm(grads["a"]) / _per_item_norm(grads["b"])
    return {k: _per_item_norm(p) for k, p in parts.items()}, raw_ratio, y.grad.detach().clone()


def test_balancer_gradient_shares_follow_weights_not_loss_scales() -> None:
    net = nn.Conv1d(1, 1, 5, padding=2)
    x, target = torch.randn(4, 1, 256), torch.randn(4, 1, 256)
    balancer = Balancer({"a": 3.0, "b": 1.0}, total_norm=2.0)
    norms, raw_ratio, _ = _balanced_step(balancer, net, x, target)
    assert raw_ratio > 1e4  # without balancing "a" would own > 99.99 % of the gradient
    total = norms["a"] + norms["b"]
    assert norms["a"] / total == pytest.approx(0.75, abs=1e-4)
    assert total == pytest.approx(2.0, rel=1e-4)
    metrics = balancer.metrics
    assert metrics["share_a"] == pytest.approx(0.75, abs=1e-4) and metrics["share_b"] == pytest.approx(0.25, abs=1e-4)
    assert metrics["grad_norm_a"] / metrics["grad_norm_b"] == pytest.approx(raw_ratio, rel=1e-4)


def test_balancer_shares_hold_over_training_steps_with_ema() -> None:
    """Fresh batches every step (norms fluctuate) and a slowly training net: the EMA keeps 3:1."""
    net = nn.Conv1d(1, 1, 5, padding=2)
    opt = torch.optim.SGD(net.parameters(), lr=1e-5)
    balancer = Balancer({"a": 3.0, "b": 1.0}, monitor=True)  # default ema_decay=0.999
    shares, totals = [], []
    for _ in range(40):
        x, target = torch.randn(4, 1, 256), torch.randn(4, 1, 256)
        opt.zero_grad()
        norms, _, _ = _balanced_step(balancer, net, x, target)
        opt.step()
        shares.append(norms["a"] / (norms["a"] + norms["b"]))
        totals.append(norms["a"] + norms["b"])
    assert shares[-1] == pytest.approx(0.75, abs=0.03)
    assert totals[-1] == pytest.approx(1.0, rel=0.08)
    assert float(np.mean(shares)) == pytest.approx(0.75, abs=0.02)
    assert balancer.metrics["ratio_a"] > 0.99  # the unbalanced share, reported with monitor=True


def test_balancer_result_is_invariant_to_a_loss_rescaling() -> None:
    y = torch.randn(3, 1, 64, requires_grad=True)
    t = torch.randn(3, 1, 64)
    grads = []
    for factor in (1.0, 1e6):
        y.grad = None
        Balancer({"a": 1.0, "b": 1.0}).backward({"a": factor * y.square().sum(), "b": (y - t).abs().sum()}, y)
        grads.append(y.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_balancer_plain_weighted_sum_when_not_balancing() -> None:
    y = torch.randn(2, 1, 32, requires_grad=True)
    t = torch.randn(2, 1, 32)
    losses = _two_losses(y, t)
    g = {k: torch.autograd.grad(v, y, retain_graph=True)[0] for k, v in losses.items()}
    total = Balancer({"a": 3.0, "b": 0.5}, balance_grads=False).backward(losses, y)
    torch.testing.assert_close(y.grad, 3.0 * g["a"] + 0.5 * g["b"])
    assert total.item() == pytest.approx((losses["a"] + losses["b"]).item())  # unweighted sum, detached
    assert not total.requires_grad


def test_balancer_skips_zero_weights_and_rejects_bad_losses() -> None:
    y = torch.randn(2, 1, 32, requires_grad=True)
    unrelated = torch.randn(3, requires_grad=True)
    balancer = Balancer({"a": 1.0, "off": 0.0, "c": 1.0})
    out = balancer.backward({"a": y.square().sum(), "off": unrelated.sum()}, y)
    assert out.item() == pytest.approx(y.square().sum().item())
    assert set(balancer.ema_norms()) == {"a"} and "share_off" not in balancer.metrics

    before = balancer.state_dict()
    with pytest.raises(BalancerError, match="'c' does not depend"):
        balancer.backward({"a": y.square().sum(), "c": unrelated.square().sum()}, y)
    with pytest.raises(BalancerError, match="'c' does not depend"):
        balancer.backward({"a": y.square().sum(), "c": torch.tensor(2.0)}, y)
    with pytest.raises(BalancerError, match="no weight"):
        balancer.backward({"typo": y.sum()}, y)
    with pytest.raises(BalancerError, match="requires grad"):
        balancer.backward({"a": y.sum()}, y.detach())
    with pytest.raises(NonFiniteGradientError, match="'a'"):
        balancer.backward({"a": (y * float("nan")).sum()}, y)
    assert balancer.state_dict() == before  # failed calls leave the EMA untouched
    with pytest.raises(BalancerError):
        Balancer({"a": -1.0})


def test_balancer_state_dict_round_trip_gives_identical_next_gradient(tmp_path) -> None:
    t = torch.randn(2, 1, 64)
    first = Balancer({"a": 2.0, "b": 1.0})
    for step in range(5):  # norms change every step, so the EMA differs from any single norm
        y = (torch.randn(2, 1, 64) * (step + 1)).requires_grad_()
        first.backward(_two_losses(y, t), y)
    torch.save(first.state_dict(), tmp_path / "bal.pt")
    resumed = Balancer({"a": 2.0, "b": 1.0})
    resumed.load_state_dict(torch.load(tmp_path / "bal.pt", weights_only=True))
    fresh = Balancer({"a": 2.0, "b": 1.0})

    y_next = torch.randn(2, 1, 64)
    grads = []
    for bal in (first, resumed, fresh):
        y = y_next.clone().requires_grad_()
        bal.backward(_two_losses(y, t), y)
        grads.append(y.grad)
    assert torch.equal(grads[0], grads[1])
    assert not torch.allclose(grads[0], grads[2])  # the EMA state matters
    with pytest.raises(BalancerError):
        fresh.load_state_dict({"ema_sum": {}})


def test_generator_step_with_discriminator_losses_and_balancer() -> None:
    """The pieces together: a tiny 'generator' gets gradients from all four EnCodec losses."""
    gen = nn.Conv1d(1, 1, 7, padding=3)
    disc = MultiScaleSTFTDiscriminator(filters=8, n_ffts=(512, 256, 128))
    mel = MultiScaleMelLoss(range_=(6, 9))
    x = _tone(2048)
    y_hat = gen(x)
    logits_fake, fmaps_fake = disc(y_hat)
    _, fmaps_real = disc(x)
    losses = {"l1": l1_time(y_hat, x), "mel": mel(y_hat, x), "adv": hinge_generator_loss(logits_fake),
              "feat": feature_matching_loss(fmaps_real, fmaps_fake)}
    balancer = Balancer({"l1": 0.1, "mel": 1.0, "adv": 3.0, "feat": 3.0})
    total = balancer.backward(losses, y_hat)
    assert torch.isfinite(total)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in gen.parameters())
    shares = [balancer.metrics[f"share_{k}"] for k in losses]
    assert shares == pytest.approx([0.1 / 7.1, 1.0 / 7.1, 3.0 / 7.1, 3.0 / 7.1], abs=1e-4)


def test_balancer_extra_loss_joins_the_single_backward() -> None:
    """``extra=`` (the commitment penalty) gives the same gradients as a separate backward before
    the balanced one — in one pass, which is what DDP needs."""
    def grads(separate: bool) -> torch.Tensor:
        w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
        y = w[None, :] * torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.25, -1.0]])
        penalty = (w ** 2).sum()
        bal = Balancer({"a": 1.0, "b": 3.0})
        losses = {"a": y.abs().mean(), "b": (y ** 2).mean()}
        if separate:
            penalty.backward(retain_graph=True)
            bal.backward(losses, y)
        else:
            bal.backward(losses, y, extra=penalty)
        return w.grad

    joint = grads(False)
    assert torch.allclose(joint, grads(True)) and joint.abs().sum() > 0
