"""The built-in producers' parsing and maths, without a token tree."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paramproducers import const, from_audio, from_csv, from_filename, lin
from workflow.synth import midi_to_hz, tone
from workflow.errors import ProducerError, UsageError

RX = from_filename.compile_regex(from_filename.DEFAULT_REGEX)


# -- from_filename -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    ("kick_vel_64_pitch_60.5", {"vel": 64.0, "pitch": 60.5}),
    ("kick_vel_40_pitch_36.5", {"vel": 40.0, "pitch": 36.5}),
    ("tone_pitch_48.00_amp_0.25", {"pitch": 48.0, "amp": 0.25}),
    ("hat_vel_70_pitch_38.5", {"vel": 70.0, "pitch": 38.5}),
    ("gain_-3.5_lr_1e-3_x_.5", {"gain": -3.5, "lr": 1e-3, "x": 0.5}),
    ("snare", {}),
    ("take2_vel_10", {"vel": 10.0}),          # "take2" has no _<number>: ignored
    ("amp_0.25x_vel_3", {"vel": 3.0}),        # a number glued to letters is not a value
    ("v2vel_5", {}),                          # a key must start after a non-alphanumeric
])
def test_default_regex(name: str, expected: dict) -> None:
    assert from_filename.parse_name(name, RX) == expected


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ", min_size=1, max_size=6),
                       st.one_of(st.integers(-10**6, 10**6).map(float),
                                 st.floats(-1e4, 1e4, allow_nan=False).map(lambda f: round(f, 3))),
                       min_size=1, max_size=4),
       st.sampled_from(["", "kick_", "tone_", "a_b_"]))
def test_default_regex_round_trips_key_value_names(pairs: dict, prefix: str) -> None:
    name = prefix + "_".join(f"{k}_{v}" for k, v in pairs.items())
    assert from_filename.parse_name(name, RX) == pairs


def test_custom_regex_and_errors() -> None:
    rx = from_filename.compile_regex(r"v(?P<vel>\d+)_n(?P<note>\d+)")
    assert from_filename.parse_name("take_v100_n36", rx) == {"vel": 100.0, "note": 36.0}
    assert from_filename.parse_name("nothing", rx) == {}
    with pytest.raises(ProducerError, match="twice"):
        from_filename.parse_name("a_1_a_2", RX)
    with pytest.raises(ProducerError, match="not a number"):
        from_filename.parse_name("x_abc", from_filename.compile_regex(r"x_(?P<x>\w+)"))
    for bad in (r"(\d+)", r"(?P<key>\w+)_\d", "(unclosed"):
        with pytest.raises(UsageError):
            from_filename.compile_regex(bad)


def test_from_filename_produce_and_keys(tmp_path: Path) -> None:
    args = argparse.Namespace(filename_regex=from_filename.DEFAULT_REGEX, filename_keys=["pitch"],
                              filename_match="path", audio_root=tmp_path)
    from_filename.init(args)
    assert from_filename.feature_names(args) == ["pitch"]
    out = from_filename.produce(tmp_path / "vel_9" / "kick_pitch_60.5.ecdc", 4, args=args)
    assert list(out) == ["pitch"] and np.all(out["pitch"]["values"] == 60.5)
    with pytest.raises(ProducerError, match="no value for pitch"):
        from_filename.produce(tmp_path / "kick_vel_3.ecdc", 4, args=args)


# -- const / lin -----------------------------------------------------------------------------------------
def test_const_and_lin_parsing() -> None:
    assert const.parse_consts(["a=1", "b = -2.5e1"]) == {"a": 1.0, "b": -25.0}
    assert lin.parse_ramps(["r=-1:1", "s=0:1e3"]) == {"r": (-1.0, 1.0), "s": (0.0, 1000.0)}
    for bad in (["a"], ["a="], ["=1"], ["a=x"], ["a=1", "a=2"], ["a=nan"], ["a b=1"]):
        with pytest.raises(UsageError):
            const.parse_consts(bad)
    for bad in (["r=1"], ["r=1:2:3"], ["r=a:1"]):
        with pytest.raises(UsageError):
            lin.parse_ramps(bad)
    np.testing.assert_array_equal(lin.ramp(0, 1, 5), [0, 0.25, 0.5, 0.75, 1])
    assert lin.ramp(3, 4, 1).tolist() == [3.0] and lin.ramp(3, 4, 0).shape == (0,)
    with pytest.raises(UsageError, match="--const"):
        const.init(argparse.Namespace(const=None))


# -- from_csv ------------------------------------------------------------------------------------------
def test_csv_keys_and_table_checks(tmp_path: Path) -> None:
    assert from_csv.normalise_key(r".\drums\k1.WAV") == "drums/k1"
    assert from_csv.normalise_key("./a/kick_vel_40_pitch_36.5") == "a/kick_vel_40_pitch_36.5"
    assert from_csv.normalise_key("x.ecdc") == "x"
    p = tmp_path / "t.csv"

    def table(text: str, **kw):
        p.write_text(text)
        opts = dict(key_column=None, time_column=None, columns=None, delimiter=None)
        return from_csv.read_table(p, **{**opts, **kw})

    t = table("id,a,note,b\nx.wav,1,hi,\ny,2,,3\n")
    assert t.columns == ["a", "b"] and t.rows["y"][0][1] == {"a": 2.0, "b": 3.0}
    assert t.rows["x"][0][1]["b"] is None
    with pytest.raises(UsageError, match="appears twice"):
        table("file,a\nx,1\nx.wav,2\n")
    with pytest.raises(UsageError, match="line 3: column 'a'"):
        table("file,a\nx,1\ny,oops\n", columns=["a"])
    with pytest.raises(UsageError, match="no file-name column"):
        table("who,a\nx,1\n")
    with pytest.raises(UsageError, match="not in the header"):
        table("file,a\nx,1\n", time_column="t")
    with pytest.raises(UsageError, match="two rows at time"):
        table("file,t,a\nx,0,1\nx,0,2\n", time_column="t")
    with pytest.raises(UsageError, match="no numeric columns"):
        table("file,c\nx,hello\n")


def test_csv_interpolation_modes() -> None:
    times, vals = np.array([0.0, 1.0, 2.0]), np.array([0.0, 10.0, 30.0])
    at = np.array([-1.0, 0.4, 0.6, 1.5, 3.0])
    np.testing.assert_allclose(from_csv.interpolate(times, vals, at, "linear"), [0, 4, 6, 20, 30])
    np.testing.assert_array_equal(from_csv.interpolate(times, vals, at, "previous"), [0, 0, 0, 10, 30])
    np.testing.assert_array_equal(from_csv.interpolate(times, vals, at, "nearest"), [0, 0, 10, 10, 30])


# -- from_audio ------------------------------------------------------------------------------------------
def test_audio_features_tone_vs_silence() -> None:
    sr, fps = 24000, 75.0
    y = np.concatenate([tone(57, 0.5, 1.0, sr)[0], np.zeros(sr, np.float32)])
    feats = from_audio.compute_features(y, sr, fps, 150, list(from_audio.FEATURES))
    assert all(v.shape == (150,) and np.all(np.isfinite(v)) for v in feats.values())
    assert feats["rms_db"][5:70].min() > feats["rms_db"][80:].max() + 30
    voiced = feats["voiced"] > 0
    assert voiced[5:70].mean() > 0.9 and not voiced[80:].any()
    np.testing.assert_allclose(feats["f0"][voiced], midi_to_hz(57), rtol=0.02)
    assert np.all(feats["spectral_centroid"][80:] == 0) and np.all(feats["zcr"][80:] == 0)
    noise = np.random.default_rng(0).standard_normal(sr).astype(np.float32) * 0.1
    nf = from_audio.compute_features(noise, sr, fps, 75, ["voiced", "zcr"])
    assert list(nf) == ["voiced", "zcr"] and nf["voiced"].mean() < 0.1 and nf["zcr"].mean() > 0.3


@pytest.mark.parametrize("sr, fps, T", [(24000, 75.0, 80), (24000, 75.0, 70), (16000, 75.0, 75),
                                       (44100, 86.1328125, 86)])
def test_audio_features_have_exactly_T_rows(sr: int, fps: float, T: int) -> None:
    y = tone(60, 0.3, 1.0, sr)[0]
    feats = from_audio.compute_features(y, sr, fps, T, ["rms_db", "f0", "onset_strength"])
    assert all(v.shape == (T,) for v in feats.values())
    assert feats["rms_db"][T // 2] > -40


def test_fit_length() -> None:
    np.testing.assert_array_equal(from_audio.fit_length(np.array([1.0, 2.0]), 4), [1, 2, 2, 2])
    np.testing.assert_array_equal(from_audio.fit_length(np.arange(5.0), 3), [0, 1, 2])
    np.testing.assert_array_equal(from_audio.fit_length(np.array([]), 2), [0, 0])
    with pytest.raises(UsageError, match="--wav-root"):
        from_audio.init(argparse.Namespace(wav_root=None))
