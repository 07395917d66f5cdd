"""Tests for workflow.codecs: registry, weights resolution, batched/chunked encoding, decoding.

All models are built from configs with random weights (no network). Large codecs (DAC, X-Codec)
are tested with ``config_overrides`` that shrink their widths but keep the token geometry, through
the same public ``load_codec`` path users take.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from workflow import codecs
from workflow.codecs import (
    CODECS,
    Codec,
    CodecBackendError,
    CodecError,
    DeviceError,
    Encoded,
    UsageError,
    WeightsNotFoundError,
    build_config,
    convert_meta_encodec_state_dict,
    get_spec,
    load_codec,
    resolve_device,
)

from tests.codec_checks import (
    LATENT_RTOL,
    Margins,
    assert_codes_match_up_to_ties,
    dac_margins,
    encodec_latents,
    encodec_margins,
    padded_row,
)

torch.set_num_threads(2)

SMALL_DAC = {"encoder_hidden_size": 8, "decoder_hidden_size": 32}
SMALL_XCODEC = {
    "acoustic_model_config": {"encoder_hidden_size": 8, "decoder_hidden_size": 32},
    "semantic_model_config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                              "intermediate_size": 64, "conv_dim": [32] * 7,
                              "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2},
}


def signal(sr: int, channels: int, n: int, seed: int = 0) -> np.ndarray:
    """A chirp plus noise, float32 [C, N] (different per channel)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    out = [0.2 * np.sin(2 * np.pi * (200 + 50 * c) * t * (1 + 0.5 * t)) + 0.05 * rng.standard_normal(n)
           for c in range(channels)]
    return np.stack(out).astype(np.float32)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def enc24() -> Codec:
    return load_codec("encodec_24khz", "random", device="cpu")


@pytest.fixture(scope="module")
def enc48() -> Codec:
    return load_codec("encodec_48khz", "random", device="cpu")


@pytest.fixture(scope="module")
def meta_encodec():
    """Meta's `encodec` package, imported with an empty `torchaudio` stand-in.

    The package imports torchaudio at import time (for file I/O and resampling helpers) but the
    model code never uses it. The stand-in is removed right after the import: left in place, it
    would make transformers believe torchaudio is installed.
    """
    import transformers  # noqa: F401 - import before the stand-in exists

    saved = sys.modules.get("torchaudio")
    sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    try:
        import encodec
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Meta's encodec package is not importable: {exc}")
    finally:
        if saved is None:
            sys.modules.pop("torchaudio", None)
        else:
            sys.modules["torchaudio"] = saved
    return encodec


# ------------------------------------------------------------------------------------ registry
def test_registry_entries():
    assert list(CODECS) == ["encodec_24khz", "encodec_32khz", "encodec_48khz", "dac_16khz",
                            "dac_24khz", "dac_44khz", "xcodec"]
    s = get_spec("encodec_24khz")
    assert (s.sample_rate, s.channels, s.hop_length, s.fps, s.bits) == (24000, 1, 320, 75.0, 10)
    assert dict(zip(s.bandwidths, s.codebooks)) == {1.5: 2, 3.0: 4, 6.0: 8, 12.0: 16, 24.0: 32}
    assert s.causal and not s.segmented and s.default_bandwidth == 6.0
    s = get_spec("encodec_48khz")
    assert (s.segment_samples, s.segment_stride, s.scaled, s.fps, s.channels) == (48000, 47520, True, 150.0, 2)
    assert get_spec("encodec_32khz").bits == 11 and get_spec("encodec_32khz").codebooks == (4,)
    assert get_spec("dac_44khz").fps == pytest.approx(86.1328125)
    assert get_spec("dac_24khz").codebooks[-1] == 32 and get_spec("dac_24khz").bandwidths[-1] == 24.0
    assert get_spec("xcodec").hub_id == "hf-audio/xcodec-hubert-general"
    assert get_spec("DAC-16kHz").name == "dac_16khz"  # forgiving spelling


@pytest.mark.parametrize("name", list(CODECS))
def test_registry_matches_config_of_random_model(name):
    """Every number in the registry equals what the config a random model is built from implies."""
    spec = get_spec(name)
    cfg = build_config(name)
    if spec.family == "encodec":
        from transformers.models.encodec.modeling_encodec import EncodecResidualVectorQuantizer

        assert (cfg.sampling_rate, cfg.audio_channels, cfg.hop_length) == (spec.sample_rate, spec.channels, spec.hop_length)
        assert cfg.frame_rate == spec.fps and cfg.codebook_nbits == spec.bits
        assert cfg.codebook_size == spec.codebook_size
        assert tuple(cfg.target_bandwidths) == spec.bandwidths
        assert cfg.use_causal_conv == spec.causal and cfg.normalize == spec.scaled
        rvq = EncodecResidualVectorQuantizer(cfg)
        assert [rvq.get_num_quantizers_for_bandwidth(bw) for bw in spec.bandwidths] == list(spec.codebooks)
        if spec.segmented:
            assert (cfg.chunk_length, cfg.chunk_stride) == (spec.segment_samples, spec.segment_stride)
        else:
            assert cfg.chunk_length is None
    elif spec.family == "dac":
        assert (cfg.sampling_rate, cfg.hop_length, cfg.codebook_size) == (spec.sample_rate, spec.hop_length, spec.codebook_size)
        assert cfg.n_codebooks == spec.codebooks[-1] == len(spec.codebooks)
        assert cfg.sampling_rate / cfg.hop_length == spec.fps and math.log2(cfg.codebook_size) == spec.bits
        for bw, k in zip(spec.bandwidths, spec.codebooks):
            assert bw == pytest.approx(k * spec.fps * spec.bits / 1000, abs=0.005)
    else:
        from transformers.models.xcodec.modeling_xcodec import XcodecResidualVectorQuantization

        assert (cfg.sample_rate, cfg.hop_length, cfg.codebook_size) == (spec.sample_rate, spec.hop_length, spec.codebook_size)
        assert cfg.frame_rate == spec.fps and cfg.codebook_nbits == spec.bits
        assert tuple(float(b) for b in cfg.target_bandwidths) == spec.bandwidths
        rvq = XcodecResidualVectorQuantization(cfg)
        assert [rvq.get_num_quantizers_for_bandwidth(bw) for bw in cfg.target_bandwidths] == list(spec.codebooks)


def test_spec_num_frames():
    s24, s48 = get_spec("encodec_24khz"), get_spec("encodec_48khz")
    assert [s24.num_frames(n) for n in (1, 320, 321, 24000)] == [1, 1, 2, 75]
    # 48 kHz: segments at 0, 47520, 95040 -> 150 + 150 + ceil(961/320) frames
    assert s48.num_frames(96001) == 150 + 150 + 4
    assert s48.num_frames(48000) == 150 + 2  # Meta's loop also makes a 480-sample tail segment


def test_unknown_codec_and_bad_bandwidth():
    with pytest.raises(UsageError, match="encodec_24khz.*xcodec"):
        get_spec("encodec_99khz")
    with pytest.raises(UsageError, match=r"1\.5, 3, 6, 12, 24"):
        load_codec("encodec_24khz", "random", device="cpu", bandwidth=5.0)
    with pytest.raises(UsageError, match="backend"):
        load_codec("dac_16khz", "random", device="cpu", backend="encodec")


# --------------------------------------------------------------------------------------- device
def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_an_error():
    for dev in ("cuda", "cuda:1"):
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device(dev)
    with pytest.raises(DeviceError):
        load_codec("encodec_24khz", "random", device="cuda")


# ---------------------------------------------------------------------------- encodec 24 kHz
def test_batched_codes_equal_alone_except_at_near_ties(enc24, record_property):
    """Batching moves latents by rounding only; codes may differ only from a near-tie level on."""
    lengths = [24000 + 17, 13333, 30001, 641]  # none a multiple of the hop (320)
    audios = [signal(24000, 1, n, seed=i) for i, n in enumerate(lengths)]
    batched = enc24.encode_batch(audios)
    # The one pass the codec runs for whole items of >= 8 frames: zero-padded to the longest.
    rows = [padded_row(enc24, a) for a in audios]
    shared = [i for i, r in enumerate(rows) if r.shape[1] >= 8 * 320]
    assert shared == [0, 1, 2]
    batch = np.zeros((len(shared), 1, max(rows[i].shape[1] for i in shared)), dtype=np.float32)
    for row, i in enumerate(shared):
        batch[row, :, :rows[i].shape[1]] = rows[i]
    with torch.inference_mode():
        z_batch = enc24.model.encoder(torch.from_numpy(batch)).double()
    differing = frames = 0
    for i, (audio, enc) in enumerate(zip(audios, batched)):
        alone = enc24.encode(audio).segments[0]
        assert len(enc.segments) == 1 and enc.scales == [None]
        codes = enc.segments[0]
        assert codes.dtype == np.int16 and codes.shape == (8, ceil_div(audio.shape[1], 320))
        assert enc.audio_length == audio.shape[1] and enc.num_frames == codes.shape[1]
        assert 0 <= codes.min() and codes.max() < 1024
        assert len(np.unique(codes[0])) > codes.shape[1] // 4  # random weights, yet varied codes
        z = encodec_latents(enc24, rows[i])
        delta = 0.0
        if i in shared:  # padding never reaches an item's own frames: latents agree to rounding
            dz = (z_batch[shared.index(i), :, :z.shape[1]] - z).norm(dim=0)
            assert float(dz.max()) <= LATENT_RTOL * float(z.norm(dim=0).max())
            delta = dz.numpy()
        else:  # a short item runs alone, so its codes are the very same computation
            np.testing.assert_array_equal(codes, alone)
        differing += assert_codes_match_up_to_ties(codes, encodec_margins(enc24, z, alone, delta))
        frames += codes.shape[1]
    record_property("batched_frames_differing", f"{differing}/{frames}")


def test_tie_check_fails_on_real_batching_bugs(enc24):
    a, b = signal(24000, 1, 24017, seed=0), signal(24000, 1, 30001, seed=2)
    ref = enc24.encode(a).segments[0]
    margins = encodec_margins(enc24, encodec_latents(enc24, padded_row(enc24, a)), ref, 0.0)
    assert assert_codes_match_up_to_ties(ref.copy(), margins) == 0
    with pytest.raises(AssertionError, match="not a near-tie"):  # frames shifted by one
        assert_codes_match_up_to_ties(np.roll(ref, 1, axis=1), margins)
    with pytest.raises(AssertionError, match="not a near-tie"):  # items swapped
        assert_codes_match_up_to_ties(enc24.encode(b).segments[0][:, :ref.shape[1]], margins)
    with pytest.raises(AssertionError, match="shape"):  # wrong length
        assert_codes_match_up_to_ties(ref[:, :-1], margins)
    # Padding leaking into valid frames: a 2-frame item zero-padded inside a batch, where EnCodec's
    # reflect padding reaches the zeros (why the codec runs such items alone).
    short = signal(24000, 1, 641, seed=3)
    row = padded_row(enc24, short)
    alone = enc24.encode(short).segments[0]
    batch = np.zeros((2, 1, 24000), dtype=np.float32)
    batch[0, :, :row.shape[1]] = row
    batch[1] = a[:, :24000]
    with torch.inference_mode():
        leaked = enc24._adapter.encode(torch.from_numpy(batch))[0, :, :alone.shape[1]].numpy()
    short_margins = encodec_margins(enc24, encodec_latents(enc24, row), alone, 0.0)
    with pytest.raises(AssertionError, match="not a near-tie"):
        assert_codes_match_up_to_ties(leaked.astype(np.int16), short_margins)


def test_bandwidth_sets_number_of_codebooks(enc24):
    audio = signal(24000, 1, 4800)
    full = Codec(enc24.spec, enc24.model, backend="transformers", device=enc24.device,
                 bandwidth=24.0, weights_id="random").encode(audio).segments[0]
    for bw, k in zip(enc24.spec.bandwidths, enc24.spec.codebooks):
        codec = Codec(enc24.spec, enc24.model, backend="transformers", device=enc24.device,
                      bandwidth=bw, weights_id="random")
        codes = codec.encode(audio).segments[0]
        assert codec.num_codebooks == k and codes.shape == (k, 15)
        np.testing.assert_array_equal(codes, full[:k])  # residual VQ: a prefix of the full codes
    assert load_codec("encodec_24khz", "random", device="cpu", bandwidth=1.5).num_codebooks == 2


def test_random_weights_are_deterministic(enc24):
    again = load_codec("encodec_24khz", "random", device="cpu")
    audio = signal(24000, 1, 9000, seed=3)
    np.testing.assert_array_equal(enc24.encode(audio).segments[0], again.encode(audio).segments[0])


def test_ecdc_meta(enc24, enc48):
    assert enc24.ecdc_meta() == {"m": "encodec_24khz", "bits": 10, "sr": 24000, "fps": 75.0,
                                 "hop": 320, "bw": 6.0, "weights": "random"}
    meta = enc48.ecdc_meta()
    assert (meta["seg"], meta["stride"], meta["scaled"], meta["m"]) == (48000, 47520, True, "encodec_48khz")


def test_decode_shape(enc24):
    audio = signal(24000, 1, 12345)
    out = enc24.decode(enc24.encode(audio))
    assert out.shape == (1, 12345) and out.dtype == np.float32 and np.isfinite(out).all()
    # codes from a model (e.g. a token LM) decode too
    codes = np.zeros((8, 10), dtype=np.int16)
    assert enc24.decode(Encoded([codes], [None], 3200)).shape == (1, 3200)


def test_random_decoder_follows_the_codes(enc24):
    """Untrained EnCodec: other codes decode to other audio (biases no longer swamp the codes)."""
    codes = enc24.encode(signal(24000, 1, 24000)).segments[0]
    other = np.random.default_rng(0).integers(0, 1024, size=codes.shape).astype(np.int16)
    a, b = (enc24.decode(Encoded([c], [None], 24000))[0] for c in (codes, other))
    assert abs(float(a.mean())) < 0.1 * float(a.std())  # no bias-made DC
    mag_a, mag_b = np.abs(np.fft.rfft(a)), np.abs(np.fft.rfft(b))
    assert np.linalg.norm(mag_a - mag_b) / np.linalg.norm(mag_a) > 0.3  # was 0.005 with the biases


def test_bad_audio_is_refused(enc24):
    with pytest.raises(UsageError, match=r"\[1, N\]"):
        enc24.encode(np.zeros((2, 100), dtype=np.float32))
    with pytest.raises(UsageError, match=r"\[1, N\]"):
        enc24.encode(np.zeros(100, dtype=np.float32))
    with pytest.raises(UsageError, match="resample"):
        enc24.encode(np.zeros((1, 100), dtype=np.float32), sample_rate=44100)
    with pytest.raises(UsageError, match="zero samples"):
        enc24.encode(np.zeros((1, 0), dtype=np.float32))
    with pytest.raises(UsageError, match="dtype"):
        enc24.encode(np.zeros((1, 100), dtype=np.int16))
    assert enc24.encode_batch([]) == []


def test_chunked_encoding_matches_unchunked(enc24, record_property):
    audio = signal(24000, 1, 24000 * 5 + 123, seed=7)
    enc24.max_chunk_seconds = None
    try:
        whole = enc24.encode(audio).segments[0]
        enc24.max_chunk_seconds = 1.5  # cores of 1.5 s, 1 s of left context
        chunked = enc24.encode(audio).segments[0]
    finally:
        enc24.max_chunk_seconds = 30.0
    assert chunked.shape == whole.shape == (8, ceil_div(audio.shape[1], 320))
    core = int(1.5 * 75)
    boundaries = range(core, whole.shape[1], core)
    away = np.ones(whole.shape[1], dtype=bool)
    for b in boundaries:
        away[max(0, b - 2):b + 2] = False
    frac_all = float((chunked == whole).mean())
    frac_away = float((chunked[:, away] == whole[:, away]).mean())
    frac_first_cb = float((chunked[0] == whole[0]).mean())
    record_property("chunk_match_all", frac_all)
    record_property("chunk_match_away", frac_away)
    print(f"\nchunked vs unchunked (encodec_24khz, random weights): {frac_all:.4f} of codes equal; "
          f"{frac_away:.4f} away from chunk boundaries; first codebook {frac_first_cb:.4f}")
    np.testing.assert_array_equal(chunked[:, :core], whole[:, :core])  # first chunk: same input
    assert frac_away >= 0.9 and frac_first_cb >= 0.9


# ---------------------------------------------------------------------------- encodec 48 kHz
def test_encodec48_segments_batched_equals_alone(enc48):
    lengths = [72000, 30000, 96001]
    audios = [signal(48000, 2, n, seed=i) for i, n in enumerate(lengths)]
    batched = enc48.encode_batch(audios)
    for audio, enc in zip(audios, batched):
        n = audio.shape[1]
        offsets = list(range(0, n, 47520))
        assert len(enc.segments) == len(enc.scales) == len(offsets)
        for off, seg, scale in zip(offsets, enc.segments, enc.scales):
            seg_len = min(off + 48000, n) - off
            assert seg.shape == (4, ceil_div(seg_len, 320)) and seg.dtype == np.int16
            mono = audio[:, off:off + seg_len].mean(axis=0)
            assert scale == pytest.approx(float(np.sqrt(np.mean(mono.astype(np.float64) ** 2))), rel=1e-4)
        assert enc.num_frames == enc48.num_frames(n)
        alone = enc48.encode(audio)
        assert enc.scales == alone.scales  # computed in float64 per segment: exactly equal
        margins = []
        for off, b, scale in zip(offsets, alone.segments, alone.scales):
            row = padded_row(enc48, audio[:, off:off + 48000] / np.float32(scale))
            z = encodec_latents(enc48, row)
            delta = LATENT_RTOL * float(z.norm(dim=0).max())  # segments batch with others of their length
            margins.append(encodec_margins(enc48, z, b, delta))
        assert_codes_match_up_to_ties(np.concatenate(enc.segments, axis=1), Margins.concat(margins))
    out = enc48.decode(batched[0])
    assert out.shape == (2, 72000) and np.isfinite(out).all()


# ----------------------------------------------------------------------- other families (small)
@pytest.mark.parametrize("name,overrides", [
    ("encodec_32khz", None),
    ("dac_16khz", SMALL_DAC),
    ("dac_24khz", SMALL_DAC),
    ("dac_44khz", SMALL_DAC),
    ("xcodec", SMALL_XCODEC),
])
def test_other_codecs_encode_decode(name, overrides):
    spec = get_spec(name)
    codec = load_codec(name, "random", device="cpu", config_overrides=overrides)
    assert codec.num_codebooks == spec.codebooks_for(None)
    lengths = [spec.sample_rate + 17, spec.sample_rate // 2 + 5]
    audios = [signal(spec.sample_rate, spec.channels, n, seed=i) for i, n in enumerate(lengths)]
    batched = codec.encode_batch(audios)
    for audio, enc in zip(audios, batched):
        codes = enc.segments[0]
        assert codes.dtype == np.int16 and codes.shape == (codec.num_codebooks, ceil_div(audio.shape[1], spec.hop_length))
        assert 0 <= codes.min() and codes.max() < spec.codebook_size
        assert len(np.unique(codes[0])) > 3
    alone = codec.encode(audios[0]).segments[0]
    if spec.family == "dac":
        # The longest item of a batch sees no padding: its codes match encoding it alone except
        # from a near-tie on (the batch of 2 rounds differently from a batch of 1).
        rows = np.zeros((2, spec.channels, ceil_div(lengths[0], spec.hop_length) * spec.hop_length), np.float32)
        for row, audio in zip(rows, audios):
            row[:, :audio.shape[1]] = audio
        with torch.no_grad():
            z_batch = codec.model.encoder(torch.from_numpy(rows))[0]
            z_alone = codec.model.encoder(torch.from_numpy(rows[:1]))[0]
        rel = float((z_batch - z_alone).norm(dim=0).max() / z_alone.norm(dim=0).max())
        assert rel <= LATENT_RTOL
        # 4x the measured latent difference, plus 1e-6 for what each level's projections add.
        assert_codes_match_up_to_ties(batched[0].segments[0], dac_margins(codec, rows[0], alone, 4 * rel + 1e-6))
    elif spec.family == "encodec":  # EnCodec 32 kHz: as for 24 kHz
        z = encodec_latents(codec, padded_row(codec, audios[0]))
        delta = LATENT_RTOL * float(z.norm(dim=0).max())
        assert_codes_match_up_to_ties(batched[0].segments[0], encodec_margins(codec, z, alone, delta))
    else:  # X-Codec runs only equal-length rows together: each item alone, the same computation
        np.testing.assert_array_equal(batched[0].segments[0], alone)
        np.testing.assert_array_equal(batched[1].segments[0], codec.encode(audios[1]).segments[0])
    out = codec.decode(batched[1])
    assert out.shape == (spec.channels, lengths[1]) and np.isfinite(out).all()
    low = load_codec(name, "random", device="cpu", config_overrides=overrides, bandwidth=spec.bandwidths[0])
    assert low.encode(audios[1]).segments[0].shape[0] == spec.codebooks[0]


def test_config_overrides_may_not_change_token_geometry():
    with pytest.raises(CodecError, match="hop"):
        load_codec("dac_16khz", "random", device="cpu",
                   config_overrides={**SMALL_DAC, "downsampling_ratios": [2, 4, 8, 8]})
    with pytest.raises(UsageError, match="config_overrides"):
        load_codec("dac_16khz", "pretrained", device="cpu", config_overrides=SMALL_DAC)


# ------------------------------------------------------------------------------------ weights
def test_save_pretrained_folder_round_trip(enc24, tmp_path):
    folder = tmp_path / "my_encodec"
    enc24.model.save_pretrained(folder)
    loaded = load_codec("encodec_24khz", folder, device="cpu")
    assert loaded.weights_id.startswith("sha256:") and loaded.weights_id != "random"
    assert loaded.weights_id == load_codec("encodec_24khz", str(folder), device="cpu").weights_id
    audios = [signal(24000, 1, n, seed=n) for n in (7000, 15555)]
    for a, b in zip(enc24.encode_batch(audios), loaded.encode_batch(audios)):
        np.testing.assert_array_equal(a.segments[0], b.segments[0])
    # a folder for another codec is refused with a clear message
    with pytest.raises(CodecError, match="encodec_32khz"):
        load_codec("encodec_32khz", folder, device="cpu")
    dac_folder = tmp_path / "dac"
    load_codec("dac_16khz", "random", device="cpu", config_overrides=SMALL_DAC).model.save_pretrained(dac_folder)
    with pytest.raises(CodecError, match="'dac' model"):
        load_codec("encodec_24khz", dac_folder, device="cpu")


def test_missing_weights_path():
    with pytest.raises(WeightsNotFoundError, match="not found"):
        load_codec("encodec_24khz", "/nonexistent/weights.th", device="cpu")


def test_meta_key_conversion_is_structural():
    state = {
        "encoder.model.1.block.1.conv.conv.weight_g": 1,
        "encoder.model.12.conv.norm.bias": 2,
        "encoder.model.13.lstm.weight_hh_l1": 3,
        "decoder.model.3.convtr.convtr.weight_v": 4,
        "decoder.model.3.convtr.norm.weight": 5,
        "decoder.model.4.shortcut.conv.conv.bias": 6,
        "quantizer.vq.layers.31._codebook.embed_avg": 7,
    }
    assert convert_meta_encodec_state_dict(state) == {
        "encoder.layers.1.block.1.conv.parametrizations.weight.original0": 1,
        "encoder.layers.12.norm.bias": 2,
        "encoder.layers.13.lstm.weight_hh_l1": 3,
        "decoder.layers.3.conv.parametrizations.weight.original1": 4,
        "decoder.layers.3.norm.weight": 5,
        "decoder.layers.4.shortcut.conv.bias": 6,
        "quantizer.layers.31.codebook.embed_avg": 7,
    }


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")  # raised by Meta's package
@pytest.mark.parametrize("name,channels,sr", [("encodec_24khz", 1, 24000), ("encodec_48khz", 2, 48000)])
def test_th_checkpoint_matches_meta_model(meta_encodec, tmp_path, name, channels, sr):
    factory = getattr(meta_encodec.EncodecModel, f"encodec_model_{name.split('_')[1]}")
    torch.manual_seed(0)
    meta = factory(pretrained=False).eval()
    codecs._randomize_codebooks(meta, get_spec(name))  # codes vary with the input, few near-ties
    meta.set_target_bandwidth(6.0)
    ckpt = tmp_path / f"{name}.th"
    torch.save(meta.state_dict(), ckpt)

    ours = load_codec(name, ckpt, device="cpu", bandwidth=6.0)
    via_meta = load_codec(name, ckpt, device="cpu", bandwidth=6.0, backend="encodec")
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()[:16]
    assert ours.weights_id == via_meta.weights_id == f"sha256:{digest}"

    for n in (sr, sr + 1017):  # a multiple of the hop, and not
        audio = signal(sr, channels, n, seed=n)
        with torch.no_grad():
            frames = meta.encode(torch.from_numpy(audio)[None])
        enc, enc_meta = ours.encode(audio), via_meta.encode(audio)
        assert len(frames) == len(enc.segments)
        offsets = range(0, n, ours.spec.segment_stride) if ours.spec.segmented else [0]
        refs, margins = [], []
        for off, (ref, ref_scale), seg, seg_meta, scale in zip(offsets, frames, enc.segments,
                                                              enc_meta.segments, enc.scales):
            ref = ref[0].numpy()
            assert len(np.unique(ref[0])) > 1
            np.testing.assert_array_equal(seg, seg_meta)  # both backends, same code path
            # Two implementations of one network round differently: equal up to near-ties.
            piece = audio[:, off:off + (ours.spec.segment_samples or n)]
            z = encodec_latents(ours, padded_row(ours, piece / np.float32(scale) if scale else piece))
            m = encodec_margins(ours, z, seg, LATENT_RTOL * float(z.norm(dim=0).max()))
            if name == "encodec_24khz" and n % 320:
                # Meta reflect-pads inside the network, we zero-pad to a whole hop: only the last
                # (partial) frame may differ.
                ref, m = ref[:, :-1], Margins(seg[:, :-1], m.margin[:, :-1], m.tie[:, :-1])
            refs.append(ref)
            margins.append(m)
            if ref_scale is not None:
                assert scale == pytest.approx(float(ref_scale), rel=1e-6)
        assert_codes_match_up_to_ties(np.concatenate(refs, axis=1), Margins.concat(margins))


def test_encodec_backend_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "encodec", None)  # makes `import encodec` fail
    with pytest.raises(CodecBackendError, match="(?i)install `encodec`.*transformers"):
        load_codec("encodec_24khz", "random", device="cpu", backend="encodec")


def _isolate_hub(monkeypatch, home: Path, *, offline: bool, endpoint: str | None = None) -> None:
    """Point huggingface_hub at ``home``; it reads some settings at import, so patch those too."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    if endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            endpoint + "/{repo_id}/resolve/{revision}/{filename}")


def test_offline_and_not_cached(monkeypatch, tmp_path):
    _isolate_hub(monkeypatch, tmp_path / "hf", offline=True)
    with pytest.raises(WeightsNotFoundError) as info:
        load_codec("encodec_24khz", "pretrained", device="cpu")
    msg = str(info.value)
    assert "facebook/encodec_24khz" in msg and "offline" in msg
    assert "huggingface-cli download facebook/encodec_24khz" in msg  # 1. cache it
    assert "--weights PATH" in msg and "save_pretrained" in msg and ".th" in msg  # 2. local copy
    assert "--weights random" in msg  # 3. smoke test


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dead_proxy_is_detected_at_once(monkeypatch, tmp_path):
    """Behind a proxy that does not answer, one quick probe instead of ~25 s of hub retries."""
    from workflow.codecs.weights import _hub_unreachable

    _isolate_hub(monkeypatch, tmp_path / "hf", offline=False)
    for var in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    why = _hub_unreachable()
    assert why is not None and "through the proxy" in why and "refused" in why
    assert time.monotonic() - started < 5


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.mkdir, (str(self.marker),)


@pytest.mark.parametrize("evil", [False, True], ids=["state-dict", "code-in-pickle"])
def test_meta_checkpoint_download_loads_tensors_only(evil, monkeypatch, tmp_path):
    """Meta's checkpoint is fetched with torch.hub (hash-checked) and unpickled with weights_only."""
    from tests.http_range_server import serve
    from workflow.codecs import weights

    marker = tmp_path / "code-ran"
    state = {"w": torch.arange(3.0)} | ({"x": _RunsCodeWhenUnpickled(marker)} if evil else {})
    torch.save(state, tmp_path / "ckpt.th")
    data = (tmp_path / "ckpt.th").read_bytes()
    name = f"encodec_24khz-{hashlib.sha256(data).hexdigest()[:8]}.th"  # torch.hub checks this prefix
    _isolate_hub(monkeypatch, tmp_path / "hf", offline=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setitem(weights._META_CHECKPOINTS, "encodec_24khz", name)
    with serve() as server:
        server.state.files["/encodec/v0/" + name] = data
        monkeypatch.setattr(weights, "_META_URL", server.url("/encodec/v0/"))
        if evil:
            with pytest.raises(WeightsNotFoundError, match="(?i)weights_only|unpickl"):
                weights._meta_checkpoint(codecs.get_spec("encodec_24khz"))
        else:
            path = weights._meta_checkpoint(codecs.get_spec("encodec_24khz"))
            assert path == tmp_path / "torch" / "hub" / "checkpoints" / name
            assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3.0))
    assert not marker.exists()  # the pickle's code never ran
    assert (tmp_path / "torch" / "hub" / "checkpoints" / name).exists() is not evil


class _HubHandler(BaseHTTPRequestHandler):
    """Just enough of the Hub's HTTP API for `from_pretrained`: revision info and file resolve."""

    root: Path
    commit = "0123456789abcdef0123456789abcdef01234567"
    requests: list[str]

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None, send_body: bool = True):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body and body:
            self.wfile.write(body)

    def _serve(self, send_body: bool):
        path = self.path.split("?")[0]
        self.requests.append(f"{self.command} {path}")
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo = self.root / parts[2] / parts[3]
            if not repo.is_dir():
                return self._reply(404, headers={"X-Error-Code": "RepoNotFound"})
            info = {"id": f"{parts[2]}/{parts[3]}", "sha": self.commit,
                    "siblings": [{"rfilename": p.name} for p in repo.iterdir()]}
            return self._reply(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, send_body)
        if len(parts) >= 5 and parts[2] == "resolve":
            file = self.root / parts[0] / parts[1] / "/".join(parts[4:])
            if file.is_file():
                data = file.read_bytes()
                return self._reply(200, data, {"X-Repo-Commit": self.commit,
                                               "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}, send_body)
            return self._reply(404, headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": self.commit})
        return self._reply(404)

    def do_HEAD(self):
        self._serve(send_body=False)

    def do_GET(self):
        self._serve(send_body=True)


def test_pretrained_download_from_local_hub(enc24, monkeypatch, tmp_path):
    """The real `from_pretrained` download path against a local HTTP server, then offline reuse."""
    repo = tmp_path / "server" / "facebook" / "encodec_24khz"
    enc24.model.save_pretrained(repo)
    handler = type("Handler", (_HubHandler,), {"root": tmp_path / "server", "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        _isolate_hub(monkeypatch, tmp_path / "hf", offline=False, endpoint=endpoint)
        try:
            codec = load_codec("encodec_24khz", "pretrained", device="cpu")
        except WeightsNotFoundError as exc:
            if not any("/resolve/" in r for r in handler.requests):
                pytest.skip(f"this huggingface_hub does not use HF_ENDPOINT as patched here: {exc}")
            raise
        assert codec.weights_id == f"facebook/encodec_24khz@{_HubHandler.commit}"
        assert any(r.endswith("/model.safetensors") for r in handler.requests)
        audio = signal(24000, 1, 8000)
        np.testing.assert_array_equal(codec.encode(audio).segments[0], enc24.encode(audio).segments[0])
        # now cached: works offline, same provenance
        _isolate_hub(monkeypatch, tmp_path / "hf", offline=True, endpoint=endpoint)
        again = load_codec("encodec_24khz", "pretrained", device="cpu")
        assert again.weights_id == codec.weights_id
    finally:
        server.shutdown()
        server.server_close()
    # server gone and HF_HUB_OFFLINE unset (a laptop on a train): the cache is used at once
    _isolate_hub(monkeypatch, tmp_path / "hf", offline=False, endpoint=endpoint)
    started = time.monotonic()
    assert load_codec("encodec_24khz", "pretrained", device="cpu").weights_id == codec.weights_id
    assert time.monotonic() - started < 10  # no network retries
