"""--encoder-model / --codec mean the upstream study's codecs (random weights, small widths), and
--cache accepts the --cache-dir folder when it holds exactly one finished cache."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from midigroove_poc.__main__ import _cache_config, build_parser, main
from midigroove_poc.cache import CacheError, codec_name, load_cache, resolve_cache, resolve_codec
from workflow.codecs import load_codec
from workflow.errors import UsageError
from workflow.runner import run_cli

torch.set_num_threads(1)

# Narrower layers; the token geometry (rates, hops, codebooks) stays the registry's.
SMALL = {
    "encodec_32khz": {"num_filters": 4, "hidden_size": 16, "num_lstm_layers": 1},
    "dac_44khz": {"encoder_hidden_size": 4, "decoder_hidden_size": 16},
    "xcodec": {"acoustic_model_config": {"encoder_hidden_size": 4, "decoder_hidden_size": 16},
               "semantic_model_config": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                                         "intermediate_size": 32, "conv_dim": [16] * 7,
                                         "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 2}},
}


def _cfg(*argv: str):
    return _cache_config(build_parser().parse_args(["drumgrid", "train", *argv]))


@pytest.mark.parametrize("model,name,codebooks,fps", [
    ("encodec", "encodec_32khz", 4, 50.0),
    ("dac", "dac_44khz", 9, 44100 / 512),
    ("xcodec", "xcodec", 4, 50.0),
])
def test_encoder_model_geometry_is_upstreams(model, name, codebooks, fps):
    cfg = _cfg("--encoder-model", model, "--weights", "random")
    assert cfg.codec == name
    codec = load_codec(cfg.codec, "random", bandwidth=cfg.bandwidth, device="cpu", config_overrides=SMALL[name])
    spec = codec.spec
    assert codec.num_codebooks == codebooks and spec.fps == pytest.approx(fps)
    seconds = 1.0
    n = int(seconds * spec.sample_rate)
    t = np.arange(n, dtype=np.float32) / spec.sample_rate
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * np.exp(-4 * (t % 0.25)))[None].astype(np.float32)
    codes = codec.encode(audio).segments[0]
    assert codes.shape == (codebooks, math.ceil(n / spec.hop_length))
    assert codes.shape[1] / seconds == pytest.approx(fps, abs=1.0)


def test_codec_flag_takes_any_registry_name_and_bandwidths():
    assert (_cfg("--codec", "dac_24khz").codec, _cfg("--codec", "dac_24khz").bandwidth) == ("dac_24khz", None)
    assert _cfg("--codec", "encodec_24khz", "--bandwidth", "1.5").bandwidth == 1.5
    assert _cfg("--codec", "dac").codec == "dac_44khz"  # short names work here too
    assert _cfg("--encoder-model", "xcodec").bandwidth == 2.0
    assert _cfg("--encoder-model", "xcodec", "--xcodec-bandwidth", "4").bandwidth == 4.0
    assert resolve_codec(codec="xcodec") == ("xcodec", None)  # a registry name: its own default (4 kbps)
    with pytest.raises(UsageError, match="encodec_32khz.*dac_44khz"):
        resolve_codec(codec="dac44")
    with pytest.raises(UsageError, match="valid values: 2.2"):
        resolve_codec("encodec", bandwidth=6.0)
    assert run_cli(main, ["drumgrid", "train", "--precache-only", "--train-csv", "x.csv", "--codec", "nope"]) == 2
    assert [codec_name(n) for n in ("encodec", "dac", "xcodec", "dac_24khz", "Encodec-24khz")] == \
        ["encodec_32khz", "dac_44khz", "xcodec", "dac_24khz", "encodec_24khz"]


def _fake_cache(folder, codec="encodec_32khz"):
    folder.mkdir(parents=True)
    (folder / "cache_meta.json").write_text(json.dumps(
        {"codec": codec, "num_codebooks": 4, "config": {"weights": "random"}}))
    return folder


def test_cache_resolution(tmp_path):
    one = _fake_cache(tmp_path / "c1" / "encodec_32khz-aaaa")
    assert resolve_cache(one) == one
    assert resolve_cache(one.parent) == one
    _fake_cache(tmp_path / "c1" / "dac_44khz-bbbb", codec="dac_44khz")
    with pytest.raises(CacheError) as err:
        resolve_cache(one.parent)
    msg = str(err.value)
    assert "holds 2 finished caches" in msg and "encodec_32khz-aaaa" in msg and "dac_44khz-bbbb" in msg
    assert "dac_44khz, 4 codebooks, weights random" in msg
    (tmp_path / "empty" / "encodec_32khz-cccc.parts").mkdir(parents=True)
    with pytest.raises(CacheError, match=r"expected cache_meta.json in it, or one <codec>-<hash>/ .*"
                                         r"unfinished: encodec_32khz-cccc.parts"):
        resolve_cache(tmp_path / "empty")
    with pytest.raises(CacheError, match="does not exist"):
        load_cache(tmp_path / "missing")
    assert run_cli(main, ["expressivegrid", "train", "--cache", str(one.parent), "--save",
                          str(tmp_path / "m.pt")]) == 1  # several caches: an error line, no traceback
