"""Tests for the SEANet autoencoder and its residual vector quantizer: real torch, tiny models, CPU."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from training.autoencoder.model import (
    Autoencoder,
    AutoencoderConfigError,
    AutoencoderOutput,
    build_autoencoder,
    count_parameters,
)
from training.autoencoder.quantization import QuantizerOutput, ResidualVectorQuantizer, kmeans
from training.autoencoder.seanet import NORMS, NormConv1d, NormConvTranspose1d, SEANetDecoder, SEANetEncoder
from workflow.errors import UsageError

HOP = 320


def tiny_cfg(channels: int = 1, quantizer: str | None = None, **rvq: object) -> dict:
    """A model config small enough for CPU tests (n_filters 4, dimension 16), paper ratios kept."""
    return {"channels": channels, "sample_rate": 24000,
            "seanet": {"n_filters": 4, "dimension": 16, "ratios": [8, 5, 4, 2], "n_residual_layers": 1,
                       "lstm": 1},
            "quantizer": quantizer,
            "rvq": {"n_q": 4, "bins": 16, "kmeans_iters": 3, **rvq}}


def tiny_rvq(**kwargs: object) -> ResidualVectorQuantizer:
    args = {"dimension": 8, "n_q": 4, "bins": 16, "kmeans_iters": 3}
    args.update(kwargs)
    return ResidualVectorQuantizer(**args)  # type: ignore[arg-type]


def latent(batch: int = 4, dim: int = 8, frames: int = 25, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, dim, frames, generator=torch.Generator().manual_seed(seed))


def audio(batch: int, channels: int, samples: int, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(batch, channels, samples, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------- SEANet


@pytest.mark.parametrize("channels", [1, 32])
def test_seanet_shapes_and_hop(channels: int) -> None:
    torch.manual_seed(0)
    enc = SEANetEncoder(channels=channels, dimension=16, n_filters=4, lstm=1)
    dec = SEANetDecoder(channels=channels, dimension=16, n_filters=4, lstm=1)
    assert enc.hop_length == dec.hop_length == HOP
    z = enc(audio(2, channels, 5 * HOP))
    assert z.shape == (2, 16, 5)
    assert dec(z).shape == (2, channels, 5 * HOP)
    # encoder applies the ratios reversed (downsample by 2 first), the decoder in order (8 first)
    enc_strides = [m.stride for m in enc.modules() if isinstance(m, NormConv1d) and m.stride > 1]
    dec_strides = [m.convtr.stride[0] for m in dec.modules() if isinstance(m, NormConvTranspose1d)]
    assert enc_strides == [2, 4, 5, 8] and dec_strides == [8, 5, 4, 2]


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("causal", [False, True])
def test_seanet_norms_and_causal_keep_shapes(norm: str, causal: bool) -> None:
    kwargs = {"dimension": 8, "n_filters": 2, "ratios": (4, 2), "lstm": 0, "norm": norm, "causal": causal}
    enc, dec = SEANetEncoder(**kwargs), SEANetDecoder(**kwargs)  # type: ignore[arg-type]
    z = enc(audio(1, 1, 8 * 6))
    assert z.shape == (1, 8, 6) and dec(z).shape == (1, 1, 48)


def test_causal_encoder_ignores_the_future() -> None:
    torch.manual_seed(0)
    # constant padding: "reflect" on the left would mirror the first few future samples
    enc = SEANetEncoder(dimension=8, n_filters=2, ratios=(4, 2), lstm=1, causal=True, pad_mode="constant").eval()
    x = audio(1, 1, 8 * 10)
    y = x.clone()
    y[..., 40:] = 1.0  # change only samples from frame 5 on
    with torch.no_grad():
        assert torch.equal(enc(x)[..., :5], enc(y)[..., :5])


def test_encoder_handles_short_and_odd_lengths() -> None:
    enc = SEANetEncoder(dimension=8, n_filters=2, lstm=0)
    for n in (1, HOP - 1, HOP + 1):
        assert enc(audio(1, 1, n)).shape[-1] == math.ceil(n / HOP)


def test_seanet_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="norm"):
        SEANetEncoder(norm="batch_norm")
    with pytest.raises(ValueError, match="activation"):
        SEANetDecoder(activation="NoSuchAct")
    with pytest.raises(ValueError, match="ratios"):
        SEANetEncoder(ratios=())
    with pytest.raises(ValueError, match=r"\[batch, 1, samples\]"):
        SEANetEncoder(n_filters=2, dimension=4, lstm=0)(torch.zeros(1, 2, HOP))


# ----------------------------------------------------------------------------------- Autoencoder


@pytest.mark.parametrize("channels", [1, 32])
@pytest.mark.parametrize("quantizer", [None, "rvq"])
def test_autoencoder_shapes(channels: int, quantizer: str | None) -> None:
    torch.manual_seed(0)
    model = build_autoencoder(tiny_cfg(channels, quantizer))
    assert model.channels == channels and model.sample_rate == 24000 and model.frame_rate == 75.0
    for n in (4 * HOP, 4 * HOP + 17, 1):  # a multiple of the hop, a non-multiple, a single sample
        out = model(audio(2, channels, n))
        assert isinstance(out, AutoencoderOutput)
        frames = math.ceil(n / HOP)
        assert out.audio.shape == (2, channels, n)
        assert out.latent.shape == (2, 16, frames)
        assert out.penalty.dim() == 0
        if quantizer is None:
            assert out.codes is None and out.penalty.item() == 0.0 and out.metrics == {}
        else:
            assert out.codes is not None and out.codes.dtype == torch.long
            assert out.codes.shape == (2, 4, frames)
            assert out.metrics["bandwidth_kbps"] == pytest.approx(4 * 4 * 75 / 1000)


def test_autoencoder_rejects_wrong_channels() -> None:
    model = build_autoencoder(tiny_cfg(1))
    with pytest.raises(ValueError, match=r"\[batch, 1, samples>=1\]"):
        model(torch.zeros(1, 2, HOP))
    with pytest.raises(ValueError, match="no quantizer"):
        model.decode(torch.zeros(1, 1, 3, dtype=torch.long))


def test_gradients_reach_encoder_through_rvq() -> None:
    torch.manual_seed(0)
    model = build_autoencoder(tiny_cfg(1, "rvq")).train()
    out = model(audio(4, 1, 8 * HOP))
    # reconstruction loss only: the encoder's gradient must come through the straight-through path
    out.audio.pow(2).mean().backward()
    first_conv = model.encoder.model[0].conv.parametrizations.weight.original1
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    assert list(model.quantizer.parameters()) == []  # codebooks are EMA buffers, never optimised


def test_straight_through_is_identity_and_commitment_pulls_encoder() -> None:
    torch.manual_seed(0)
    rvq = tiny_rvq().train()
    x = latent().requires_grad_(True)
    out = rvq(x)
    assert isinstance(out, QuantizerOutput) and out.x.dtype == torch.float32
    g = torch.randn_like(out.x)
    (grad_x,) = torch.autograd.grad(out.x, x, g, retain_graph=True)
    assert torch.equal(grad_x, g)
    (grad_pen,) = torch.autograd.grad(out.penalty, x)
    assert out.penalty.item() > 0 and grad_pen.abs().sum() > 0


def test_autoencoder_decode_of_encode_matches_forward() -> None:
    torch.manual_seed(0)
    model = build_autoencoder(tiny_cfg(1, "rvq"))
    model.train()(audio(4, 1, 8 * HOP))  # k-means init
    model.eval()
    x = audio(2, 1, 3 * HOP + 5, seed=1)
    with torch.no_grad():
        out = model(x)
        codes = model.encode(x)
        assert torch.equal(codes, out.codes)
        assert torch.equal(model.decode(codes, length=x.shape[-1]), out.audio)
        assert model.encode(x, n_q=2).shape == (2, 2, 4)


# ------------------------------------------------------------------------------------------- RVQ


def test_kmeans_init_happens_once_on_first_training_batch() -> None:
    torch.manual_seed(0)
    rvq = tiny_rvq(threshold_ema_dead_code=0)
    x = latent()
    rvq.eval()(x)  # eval never initialises
    assert all(layer.initialized.item() == 0 and not layer.embed.any() for layer in rvq.layers)
    rvq.train()(x)
    assert all(layer.initialized.item() == 1 and layer.embed.abs().sum() > 0 for layer in rvq.layers)
    # k-means is the only consumer of the RNG here (no dropout, no dead-code reset): a second
    # training batch leaves the RNG untouched, so k-means did not run again
    state = torch.get_rng_state()
    rvq(latent(seed=1))
    assert torch.equal(state, torch.get_rng_state())


def test_kmeans_finds_separated_clusters() -> None:
    torch.manual_seed(0)
    centers = torch.tensor([[10.0, 0.0], [-10.0, 0.0], [0.0, 10.0]])
    points = (centers[:, None, :] + 0.1 * torch.randn(3, 50, 2)).reshape(-1, 2)
    means, sizes = kmeans(points, 3, num_iters=10)
    assert sizes.sum().item() == 150
    nearest = torch.cdist(centers, means).min(dim=1).values
    assert (nearest < 0.5).all()


def test_codes_in_range_and_decode_of_encode_equals_quantized() -> None:
    torch.manual_seed(0)
    rvq = tiny_rvq()
    x = latent()
    train_out = rvq.train()(x)
    assert train_out.codes.shape == (4, 4, 25)
    assert train_out.codes.min() >= 0 and train_out.codes.max() < 16
    rvq.eval()
    out = rvq(x)
    codes = rvq.encode(x)
    assert codes.dtype == torch.long and 0 <= codes.min() and codes.max() < 16
    assert torch.equal(codes, out.codes)
    assert torch.equal(rvq.decode(codes), out.x)
    # the first k codebooks alone decode to the partial sums (coarser latent)
    assert torch.equal(rvq.decode(codes[:, :2]), rvq.decode(rvq.encode(x, n_q=2)))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        rvq.decode(torch.full((1, 1, 2), 16))
    with pytest.raises(ValueError, match="n_q"):
        rvq.encode(x, n_q=5)


def test_ema_updates_only_in_train_mode() -> None:
    torch.manual_seed(0)
    rvq = tiny_rvq()
    rvq.train()(latent())
    before = copy.deepcopy(rvq.state_dict())
    rvq.eval()(latent(seed=1))
    rvq.encode(latent(seed=2))
    assert all(torch.equal(before[k], v) for k, v in rvq.state_dict().items())
    rvq.train()(latent(seed=1))
    assert not torch.equal(before["layers.0.embed"], rvq.state_dict()["layers.0.embed"])
    assert not torch.equal(before["layers.0.cluster_size"], rvq.state_dict()["layers.0.cluster_size"])


def test_dead_codes_are_reset_to_batch_vectors() -> None:
    torch.manual_seed(0)
    rvq = tiny_rvq(n_q=1, bins=8, threshold_ema_dead_code=0.5).train()
    x = latent(batch=8, frames=25)
    rvq(x)
    layer = rvq.layers[0]
    with torch.no_grad():  # make code 3 unreachable and starved: nothing will ever pick it
        layer.embed[3] = 1e3
        layer.embed_avg[3] = 1e3
        layer.cluster_size[3] = 0.0
    out = rvq(x)
    assert out.metrics["expired_codes"] >= 1
    batch_vectors = x.transpose(1, 2).reshape(-1, 8)
    assert (batch_vectors == layer.embed[3]).all(dim=1).any()  # replaced by one of the batch vectors
    assert layer.cluster_size[3].item() == pytest.approx(0.5)


def test_quantizer_dropout_varies_in_train_and_uses_all_in_eval() -> None:
    torch.manual_seed(0)
    rvq = tiny_rvq(q_dropout=True).train()
    seen = set()
    for i in range(20):
        out = rvq(latent(seed=i))
        k = int(out.metrics["active_quantizers"])
        assert out.codes.shape[1] == k and 1 <= k <= 4
        seen.add(k)
    assert len(seen) > 1
    rvq.eval()
    for i in range(5):
        out = rvq(latent(seed=i))
        assert out.metrics["active_quantizers"] == 4 and out.codes.shape[1] == 4


def test_quantizer_dropout_draws_from_the_bandwidth_set() -> None:
    """EnCodec: a training batch uses a bandwidth of the set, i.e. one of its codebook counts."""
    torch.manual_seed(0)
    rvq = tiny_rvq(q_dropout=True, dropout_n_q=[4, 2]).train()
    seen = {int(rvq(latent(seed=i)).codes.shape[1]) for i in range(30)}
    assert seen == {2, 4}
    with pytest.raises(ValueError, match="dropout_n_q"):
        tiny_rvq(dropout_n_q=[5])


def test_dropout_codebook_counts_follow_encodec_bandwidths() -> None:
    from training.autoencoder.model import dropout_codebook_counts

    paper = [1.5, 3.0, 6.0, 12.0, 24.0]
    assert dropout_codebook_counts(paper, n_q=8, bins=1024, frame_rate=75.0) == (2, 4, 8)
    assert dropout_codebook_counts(paper, n_q=32, bins=1024, frame_rate=75.0) == (2, 4, 8, 16, 32)
    # above the model's maximum means all codebooks (a small test model keeps working)
    assert dropout_codebook_counts(paper, n_q=2, bins=16, frame_rate=75.0) == (2,)
    with pytest.raises(AutoencoderConfigError, match="empty"):
        dropout_codebook_counts([], n_q=8, bins=1024, frame_rate=75.0)
    with pytest.raises(AutoencoderConfigError, match="positive"):
        dropout_codebook_counts([0.0], n_q=8, bins=1024, frame_rate=75.0)
    # the project config: 8 codebooks of 1024 at 75 Hz train on 1.5, 3 and 6 kbps; k-means 50 iterations
    from training.autoencoder.config import load_config, model_config

    cfg = load_config("1ch", ["model.seanet.n_filters=4", "model.seanet.dimension=16", "model.quantizer=rvq"])
    q = build_autoencoder(model_config(cfg)).quantizer
    assert q is not None and q.dropout_n_q == (2, 4, 8)
    assert {layer.kmeans_iters for layer in q.layers} == {50}
    assert tiny_rvq().dropout_n_q is None  # the class default stays AudioCraft's uniform 1..n_q


def test_state_dict_round_trip_reproduces_codes_exactly() -> None:
    torch.manual_seed(0)
    cfg = tiny_cfg(1, "rvq", q_dropout=True)
    model = build_autoencoder(cfg).train()
    for i in range(3):
        model(audio(4, 1, 8 * HOP, seed=i))
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(123)
    restored = build_autoencoder(cfg)
    restored.load_state_dict(torch.load(buf, weights_only=True))
    model.eval(), restored.eval()
    x = audio(2, 1, 4 * HOP, seed=9)
    with torch.no_grad():
        assert torch.equal(model.encode(x), restored.encode(x))
        assert torch.equal(model(x).audio, restored(x).audio)
    # dropout may have left some codebooks untouched (still uninitialised): the flags travel too
    assert [layer.is_initialized for layer in restored.quantizer.layers] == \
        [layer.is_initialized for layer in model.quantizer.layers]


def test_training_state_is_deterministic_given_the_seed() -> None:
    def run() -> dict[str, torch.Tensor]:
        torch.manual_seed(7)
        rvq = tiny_rvq(q_dropout=True).train()
        for i in range(4):
            rvq(latent(seed=i))
        return rvq.state_dict()

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_quantizer_runs_in_float32_under_autocast() -> None:
    torch.manual_seed(0)
    rvq = tiny_rvq()
    rvq.train()(latent())
    rvq.eval()
    x = latent(seed=3)
    plain = rvq(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = rvq(x)
    assert mixed.x.dtype == torch.float32
    assert torch.equal(plain.codes, mixed.codes)


# ------------------------------------------------------------------------------ build_autoencoder


@pytest.mark.parametrize(("cfg_patch", "key"), [
    ({"chanels": 1}, "'chanels'"),
    ({"seanet": {"n_filter": 4}}, "'seanet.n_filter'.*did you mean seanet.n_filters"),
    ({"rvq": {"nq": 4}}, "'rvq.nq'"),
])
def test_build_autoencoder_rejects_unknown_keys(cfg_patch: dict, key: str) -> None:
    cfg = tiny_cfg(1, "rvq")
    for k, v in cfg_patch.items():
        if isinstance(v, dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    with pytest.raises(AutoencoderConfigError, match=key) as info:
        build_autoencoder(cfg)
    assert isinstance(info.value, UsageError) and isinstance(info.value, ValueError)


def test_build_autoencoder_rejects_bad_values() -> None:
    with pytest.raises(AutoencoderConfigError, match="quantizer"):
        build_autoencoder({**tiny_cfg(), "quantizer": "vq"})
    with pytest.raises(AutoencoderConfigError, match="seanet.*norm"):
        build_autoencoder({**tiny_cfg(), "seanet": {**tiny_cfg()["seanet"], "norm": "batch"}})
    with pytest.raises(AutoencoderConfigError, match="channels"):
        build_autoencoder({**tiny_cfg(), "channels": 0})


def test_build_autoencoder_from_project_config() -> None:
    from training.autoencoder.config import load_config, model_config

    cfg = load_config("32ch", ["model.seanet.n_filters=4", "model.seanet.dimension=16", "model.quantizer=rvq"])
    model = build_autoencoder(model_config(cfg))
    assert isinstance(model, Autoencoder) and model.channels == 32 and model.quantizer is not None
    assert model.quantizer.n_q == 8 and model.quantizer.bins == 1024 and model.quantizer.q_dropout
    assert model.config is not None and model.config["seanet"]["ratios"] == (8, 5, 4, 2)


# ------------------------------------------------------------------------------ paper-size models


def test_paper_size_models_parameter_counts_and_forward() -> None:
    torch.manual_seed(0)
    counts = {}
    for channels in (1, 32):
        model = build_autoencoder({"channels": channels, "sample_rate": 24000, "quantizer": "rvq"}).eval()
        counts[channels] = count_parameters(model)
        # EnCodec 24 kHz's SEANet is ~14.7-14.9 M parameters (codebooks are buffers, not counted)
        assert 14.0e6 < counts[channels] < 15.5e6
        x = audio(1, channels, 2400)  # 0.1 s at 24 kHz
        with torch.no_grad():
            out = model(x)
        assert out.audio.shape == (1, channels, 2400) and out.latent.shape == (1, 128, 8)
        assert out.codes is not None and out.codes.shape == (1, 8, 8)
    assert counts[1] == 14_675_810
    # with a learned 1x1 skip (EnCodec's true_skip=False) the encoder matches Meta's encodec
    # SEANetEncoder() exactly: 7,425,792 parameters
    assert count_parameters(SEANetEncoder(true_skip=False)) == 7_425_792
    assert count_parameters(nn.Sequential(SEANetDecoder(true_skip=False))) == 7_426_018
