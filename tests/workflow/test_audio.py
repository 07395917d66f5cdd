"""Tests for workflow.audio: real files written with soundfile into tmp_path, no mocks."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from workflow import audio as A
from workflow.errors import AudioContentError, AudioReadError, UsageError

RNG = np.random.default_rng(1234)


def tone(freq: float, sr: int, seconds: float, amp: float = 0.5, channels: int = 1) -> np.ndarray:
    """float32 [C, N] sine, channel c at freq * (c + 1) so channels differ."""
    t = np.arange(int(round(seconds * sr))) / sr
    rows = [amp * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)]
    return np.asarray(rows, dtype=np.float32)


def write_file(path: Path, audio_cn: np.ndarray, sr: int, subtype: str | None = None) -> Path:
    sf.write(str(path), audio_cn.T, sr, subtype=subtype)
    return path


def dominant_freq(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spec)])


def naive_windowed_rms(audio: np.ndarray, sr: int, window_ms: float, hop_ms: float | None) -> np.ndarray:
    a = np.asarray(audio, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    n = a.shape[1]
    win = max(1, int(round(window_ms * sr / 1000)))
    hop = max(1, int(round(win / 4))) if hop_ms is None else max(1, int(round(hop_ms * sr / 1000)))
    if n <= win:
        return np.array([math.sqrt(np.mean(a**2))])
    starts = list(range(0, n - win + 1, hop))
    if starts[-1] + win < n:
        starts.append(n - win)
    out = []
    for s in starts:
        out.append(math.sqrt(np.mean(a[:, s : s + win] ** 2)))
    return np.array(out)


def only_files(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# ------------------------------------------------------------------------------------- reading

PCM_ATOL = {"PCM_16": 2.0 / 2**15, "PCM_24": 2.0 / 2**23, "FLOAT": 0.0}


@pytest.mark.parametrize(
    "suffix,subtype,channels,sr",
    [
        (".wav", "PCM_16", 1, 8000),
        (".wav", "PCM_24", 2, 44100),
        (".wav", "FLOAT", 6, 96000),
        (".wav", "PCM_16", 2, 48000),
        (".flac", "PCM_16", 2, 44100),
        (".flac", "PCM_24", 6, 96000),
        (".aiff", "PCM_16", 2, 48000),
        (".aiff", "PCM_24", 1, 8000),
    ],
)
def test_read_lossless_matches_written(tmp_path, suffix, subtype, channels, sr):
    x = (RNG.uniform(-0.9, 0.9, size=(channels, sr // 10))).astype(np.float32)
    p = write_file(tmp_path / f"a{suffix}", x, sr, subtype)
    y, got_sr = A.read_audio(p)
    assert got_sr == sr
    assert y.dtype == np.float32
    assert y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=PCM_ATOL[subtype], rtol=0)
    info = A.audio_info(p)
    assert (info.sample_rate, info.channels, info.frames) == (sr, channels, x.shape[1])
    assert info.subtype == subtype
    assert info.duration == pytest.approx(x.shape[1] / sr)


def test_read_mono_always_2d_false(tmp_path):
    x = tone(440, 16000, 0.1)
    p = write_file(tmp_path / "m.wav", x, 16000, "FLOAT")
    y, _ = A.read_audio(p, always_2d=False)
    assert y.shape == (x.shape[1],)
    np.testing.assert_array_equal(y, x[0])
    y2, _ = A.read_audio(p)
    assert y2.shape == (1, x.shape[1])


@pytest.mark.parametrize("channels,sr", [(1, 44100), (2, 48000), (6, 48000)])
def test_read_ogg_vorbis(tmp_path, channels, sr):
    x = tone(440, sr, 0.5, amp=0.3, channels=channels)
    p = write_file(tmp_path / "a.ogg", x, sr)
    y, got_sr = A.read_audio(p)
    assert got_sr == sr and y.shape[0] == channels and y.dtype == np.float32
    assert abs(y.shape[1] - x.shape[1]) <= 2048
    # Vorbis 5.1 treats the 6th channel as LFE and low-passes it, so only check the others
    checked = 5 if channels == 6 else channels
    for c in range(checked):
        assert dominant_freq(y[c], sr) == pytest.approx(440 * (c + 1), abs=4)
    want = A.peak_windowed_rms(x[:checked], sr)
    assert A.peak_windowed_rms(y[:checked], sr) == pytest.approx(want, rel=0.05)


@pytest.mark.skipif(
    "MP3" not in sf.available_formats(),
    reason=f"libsndfile {sf.__libsndfile_version__} has no MP3 support (needs >= 1.1 built with mpg123/lame)",
)
@pytest.mark.parametrize("channels,sr", [(1, 44100), (2, 48000)])
def test_read_mp3(tmp_path, channels, sr):
    x = tone(440, sr, 0.5, amp=0.3, channels=channels)
    p = write_file(tmp_path / "a.mp3", x, sr)
    y, got_sr = A.read_audio(p)
    assert got_sr == sr and y.shape[0] == channels and y.dtype == np.float32
    assert abs(y.shape[1] - x.shape[1]) <= 2 * 1152
    for c in range(channels):
        assert dominant_freq(y[c], sr) == pytest.approx(440 * (c + 1), abs=4)
    assert A.peak_windowed_rms(y, sr) == pytest.approx(A.peak_windowed_rms(x, sr), rel=0.05)


# -------------------------------------------------------------------------------------- errors


def test_random_bytes_named_wav(tmp_path):
    p = tmp_path / "noise.wav"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(AudioReadError) as ei:
        A.read_audio(p)
    msg = str(ei.value)
    assert str(p) in msg and "cannot decode" in msg and "ffmpeg" in msg
    with pytest.raises(AudioReadError, match="noise.wav"):
        A.audio_info(p)


def test_truncated_wav_header(tmp_path):
    good = write_file(tmp_path / "good.wav", tone(440, 8000, 0.2), 8000, "PCM_16")
    p = tmp_path / "trunc.wav"
    p.write_bytes(good.read_bytes()[:30])
    with pytest.raises(AudioReadError) as ei:
        A.read_audio(p)
    assert str(p) in str(ei.value)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.flac"
    p.write_bytes(b"")
    with pytest.raises(AudioReadError) as ei:
        A.read_audio(p)
    assert str(p) in str(ei.value) and "empty" in str(ei.value)


def test_missing_file(tmp_path):
    p = tmp_path / "nope.wav"
    with pytest.raises(AudioReadError, match="nope.wav"):
        A.read_audio(p)


def test_zero_frame_wav(tmp_path):
    p = tmp_path / "zero.wav"
    sf.write(str(p), np.zeros((0, 2), dtype=np.float32), 16000)
    with pytest.raises(AudioContentError) as ei:
        A.read_audio(p)
    assert str(p) in str(ei.value) and "0" in str(ei.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_float_wav(tmp_path, bad):
    x = tone(440, 8000, 0.1, channels=2)
    x[0, 5] = bad
    x[1, 17] = bad
    x[1, 18] = bad
    p = write_file(tmp_path / "bad.wav", x, 8000, "FLOAT")
    with pytest.raises(AudioContentError) as ei:
        A.read_audio(p)
    msg = str(ei.value)
    assert str(p) in msg and "3 of" in msg


def test_errors_are_workflow_errors():
    from workflow.errors import WorkflowError

    assert issubclass(AudioReadError, WorkflowError) and issubclass(AudioContentError, WorkflowError)


# ------------------------------------------------------------------------------------ channels


def test_to_channels_policies():
    stereo = tone(100, 1000, 1.0, channels=2)
    mono = A.to_channels(stereo, "mono")
    assert mono.shape == (1, stereo.shape[1]) and mono.dtype == np.float32
    np.testing.assert_allclose(mono[0], stereo.mean(axis=0), atol=1e-7)
    assert A.to_channels(stereo, "keep") is stereo
    assert A.to_channels(stereo, 2) is stereo
    np.testing.assert_allclose(A.to_channels(stereo, 1), mono)
    six = tone(100, 1000, 0.1, channels=6)
    np.testing.assert_allclose(A.to_channels(six, "mono")[0], six.mean(axis=0), atol=1e-6)
    rep = A.to_channels(mono, 3)
    assert rep.shape == (3, stereo.shape[1])
    for c in range(3):
        np.testing.assert_array_equal(rep[c], mono[0])
    np.testing.assert_array_equal(A.to_channels(mono, "2")[1], mono[0])
    with pytest.raises(UsageError):
        A.to_channels(six, 2)
    with pytest.raises(UsageError):
        A.to_channels(stereo, "stereo-ish")
    with pytest.raises(UsageError):
        A.to_channels(stereo, 0)


def test_to_channels_on_read_layout(tmp_path):
    x = tone(300, 8000, 0.2, channels=2)
    y, _ = A.read_audio(write_file(tmp_path / "s.wav", x, 8000, "FLOAT"))
    np.testing.assert_allclose(A.to_channels(y, "mono")[0], x.mean(axis=0), atol=1e-7)


# ------------------------------------------------------------------------------------ resample


@pytest.mark.parametrize("sr_in,sr_out", [(44100, 16000), (48000, 24000), (8000, 96000), (96000, 44100)])
def test_resample_keeps_frequency_and_length(sr_in, sr_out):
    x = tone(1000, sr_in, 1.0, amp=0.5)
    y = A.resample(x, sr_in, sr_out)
    assert y.dtype == np.float32 and y.shape[0] == 1
    assert abs(y.shape[1] - x.shape[1] * sr_out / sr_in) <= 1
    assert dominant_freq(y[0], sr_out) == pytest.approx(1000, abs=1.5)
    mid = slice(y.shape[1] // 4, 3 * y.shape[1] // 4)
    assert np.sqrt(np.mean(y[0, mid] ** 2)) == pytest.approx(0.5 / math.sqrt(2), rel=0.01)


def test_resample_multichannel_and_layouts():
    x = tone(500, 48000, 0.5, amp=0.3, channels=3)  # 500, 1000, 1500 Hz
    y = A.resample(x, 48000, 16000)
    assert y.shape[0] == 3 and y.dtype == np.float32
    for c in range(3):
        assert dominant_freq(y[c], 16000) == pytest.approx(500 * (c + 1), abs=3)
    # a transposed view of an [N, C] buffer (what read_audio returns) gives the same result
    y_view = A.resample(np.ascontiguousarray(x.T).T, 48000, 16000)
    np.testing.assert_array_equal(y, y_view)
    # 1-D in, 1-D out; float64 in, float32 out
    y1 = A.resample(x[0].astype(np.float64), 48000, 16000)
    assert y1.ndim == 1 and y1.dtype == np.float32
    np.testing.assert_allclose(y1, y[0], atol=1e-6)


def test_resample_noop_and_errors():
    x = tone(500, 16000, 0.1)
    assert A.resample(x, 16000, 16000) is x
    with pytest.raises(UsageError):
        A.resample(x, 16000, 0)
    with pytest.raises(UsageError):
        A.resample(x, 16000, 8000, quality="best")
    assert A.resample(np.zeros((2, 0), np.float32), 16000, 8000).shape == (2, 0)


# ---------------------------------------------------------------------------------------- RMS


@pytest.mark.parametrize("channels", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 100, 249, 250, 251, 250 + 62 * 4, 250 + 62 * 4 + 7, 1000, 1237])
def test_windowed_rms_matches_naive(channels, n):
    sr = 1000  # 250 ms window = 250 samples, hop 62
    x = RNG.standard_normal((channels, n)).astype(np.float32)
    got = A.windowed_rms(x, sr, 250.0)
    ref = naive_windowed_rms(x, sr, 250.0, None)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("n", [6001, 6000 + 1500 * 3, 6000 + 1500 * 3 + 17, 24000 * 3 + 123, 200_000])
def test_windowed_rms_block_path_matches_naive(channels, n):
    # 24 kHz: window 6000 = 4 hops of 1500, the blocked fast path s1 uses by default.
    x = RNG.uniform(-1, 1, (channels, n)).astype(np.float32)
    x[:, n // 3: n // 2] *= 0.01  # a quiet passage after a loud one (cancellation-prone)
    np.testing.assert_allclose(A.windowed_rms(x, 24000, 250.0), naive_windowed_rms(x, 24000, 250.0, None),
                               rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3000),
    channels=st.integers(1, 4),
    window_ms=st.sampled_from([10.0, 50.0, 250.0, 1000.0]),
    hop_ms=st.sampled_from([None, 5.0, 33.0, 250.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_windowed_rms_property(n, channels, window_ms, hop_ms, seed):
    x = np.random.default_rng(seed).uniform(-1, 1, (channels, n)).astype(np.float32)
    got = A.windowed_rms(x, 1000, window_ms, hop_ms)
    np.testing.assert_allclose(got, naive_windowed_rms(x, 1000, window_ms, hop_ms), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("amp", [1e-3, 0.1, 0.9])
def test_sine_rms_is_amp_over_sqrt2(amp):
    x = tone(1000, 48000, 2.0, amp=amp)  # 250 ms window = 250 whole periods
    r = A.windowed_rms(x, 48000, 250.0)
    np.testing.assert_allclose(r, amp / math.sqrt(2), rtol=1e-5)
    assert A.peak_windowed_rms(x, 48000) == pytest.approx(amp / math.sqrt(2), rel=1e-5)


def test_windowed_rms_edge_cases():
    assert A.windowed_rms(np.zeros((1, 0), np.float32), 1000).size == 0
    assert A.peak_windowed_rms(np.zeros((2, 0), np.float32), 1000) == 0.0
    # 1-D input is mono
    x = RNG.standard_normal(500).astype(np.float32)
    np.testing.assert_allclose(A.windowed_rms(x, 1000), A.windowed_rms(x[None], 1000))
    # silence after a loud passage does not go negative / NaN through cumsum cancellation
    y = np.concatenate([np.full(5000, 0.9, np.float32), np.zeros(5000, np.float32)])
    r = A.windowed_rms(y, 1000)
    assert np.all(np.isfinite(r)) and r.min() >= 0 and r[-1] < 1e-6


# -------------------------------------------------------------------------------------- gain


@pytest.mark.parametrize("channels", [1, 2])
def test_rms_gain_hits_target_and_survives_pcm16(tmp_path, channels):
    sr = 48000
    x = tone(440, sr, 1.5, amp=0.02, channels=channels)
    x[:, : sr // 2] *= 0.1  # quiet start: the *peak* window is what is normalised
    d = A.compute_gain(x, sr, method="rms", target_rms=0.1)
    assert d.method == "rms" and d.flags == () and d.target == 0.1
    assert d.gain_db == pytest.approx(20 * math.log10(d.gain))
    y = A.apply_gain(x, d)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert A.peak_windowed_rms(y, sr) == pytest.approx(0.1, rel=0.005)
    p = tmp_path / "out.wav"
    A.write_audio(p, y, sr, subtype="PCM_16")
    z, zsr = A.read_audio(p)
    assert zsr == sr and z.shape == y.shape
    assert A.peak_windowed_rms(z, sr) == pytest.approx(0.1, rel=0.005)


def test_rms_gain_on_noise():
    sr = 16000
    x = (RNG.standard_normal((2, sr * 2)) * 0.01).astype(np.float32)
    d = A.compute_gain(x, sr, target_rms=0.05)
    assert A.peak_windowed_rms(A.apply_gain(x, d), sr) == pytest.approx(0.05, rel=0.005)


def test_peak_limited(tmp_path):
    sr = 16000
    x = (RNG.standard_normal((1, sr)) * 0.005).astype(np.float32)
    x[0, 8000] = 0.6  # one click: RMS target would push it way past full scale
    d = A.compute_gain(x, sr, target_rms=0.1, peak_limit=0.999)
    assert "peak_limited" in d.flags and "silent" not in d.flags
    y = A.apply_gain(x, d)
    peak = float(np.abs(y).max())
    assert peak <= 0.999 and peak == pytest.approx(0.999, rel=1e-6)
    assert d.gain == pytest.approx(0.999 / 0.6, rel=1e-6)
    p = tmp_path / "lim.wav"
    A.write_audio(p, y, sr)
    z, _ = A.read_audio(p)
    assert float(np.abs(z).max()) <= 0.999 + 1 / 2**15


def test_peak_limit_also_attenuates_hot_float_input():
    x = tone(440, 8000, 1.0, amp=1.8)  # a float file above full scale
    d = A.compute_gain(x, 8000, target_rms=1.8 / math.sqrt(2))
    assert "peak_limited" in d.flags and d.gain < 1
    assert float(np.abs(A.apply_gain(x, d)).max()) <= 0.999


@pytest.mark.parametrize("method", ["rms", "lufs"])
@pytest.mark.parametrize("level", [0.0, 1e-7])
def test_silent_is_not_amplified(method, level):
    sr = 16000
    x = (RNG.standard_normal((2, sr)) * level).astype(np.float32)
    d = A.compute_gain(x, sr, method=method)
    assert d.gain == 1.0 and d.gain_db == 0.0 and "silent" in d.flags
    y = A.apply_gain(x, d)
    np.testing.assert_array_equal(y, x)


def test_short_flag_and_whole_file_rms():
    sr = 16000
    x = tone(400, sr, 0.1, amp=0.2)  # 100 ms < 250 ms window
    assert A.windowed_rms(x, sr).shape == (1,)
    d = A.compute_gain(x, sr)
    assert "short" in d.flags
    assert d.measured == pytest.approx(0.2 / math.sqrt(2), rel=1e-4)
    assert A.peak_windowed_rms(A.apply_gain(x, d), sr) == pytest.approx(0.1, rel=0.005)


@pytest.mark.parametrize("channels", [1, 2])
def test_lufs_gain_hits_target(channels):
    sr = 48000
    x = tone(1000, sr, 3.0, amp=0.05, channels=channels)
    d = A.compute_gain(x, sr, method="lufs", target_lufs=-23.0)
    assert d.method == "lufs" and d.flags == () and d.target == -23.0
    y = A.apply_gain(x, d)
    assert A.integrated_lufs(y, sr) == pytest.approx(-23.0, abs=0.1)


def test_lufs_values():
    sr = 48000
    mono = tone(1000, sr, 3.0, amp=0.5)
    l1 = A.integrated_lufs(mono, sr)
    # full-scale 1 kHz sine reads about -3 LUFS; amp 0.5 is 6 dB lower
    assert l1 == pytest.approx(-3.01 - 6.02, abs=0.2)
    assert A.integrated_lufs(mono[0], sr) == pytest.approx(l1)
    stereo = np.repeat(mono, 2, axis=0)
    assert A.integrated_lufs(stereo, sr) == pytest.approx(l1 + 10 * math.log10(2), abs=0.01)
    six = np.repeat(mono, 6, axis=0)  # beyond pyloudnorm's 5 channels: own gating, weights 1.0
    assert A.integrated_lufs(six, sr) == pytest.approx(l1 + 10 * math.log10(6), abs=0.01)
    assert A.integrated_lufs(np.zeros((1, sr), np.float32), sr) == float("-inf")
    assert A.integrated_lufs(np.zeros((6, sr), np.float32), sr) == float("-inf")


def test_lufs_short_file_is_tiled():
    sr = 48000
    long = tone(1000, sr, 3.0, amp=0.3)
    short = tone(1000, sr, 0.2, amp=0.3)  # 200 periods: tiling is seamless
    assert A.integrated_lufs(short, sr) == pytest.approx(A.integrated_lufs(long, sr), abs=0.1)
    d = A.compute_gain(short, sr, method="lufs", target_lufs=-20.0)
    assert "short" in d.flags
    assert A.integrated_lufs(A.apply_gain(short, d), sr) == pytest.approx(-20.0, abs=0.1)


def test_compute_gain_bad_method():
    with pytest.raises(UsageError):
        A.compute_gain(tone(440, 8000, 0.5), 8000, method="peak")


# ------------------------------------------------------------------------------------ segments


def test_split_segments():
    sr = 100
    x = RNG.standard_normal((2, 1050)).astype(np.float32)  # 10.5 s
    segs = A.split_segments(x, sr, 2.0)
    assert [s.shape[1] for s in segs] == [200] * 5 + [50]
    np.testing.assert_array_equal(np.concatenate(segs, axis=1), x)
    assert all(s.shape[0] == 2 for s in segs)
    assert [s.shape[1] for s in A.split_segments(x, sr, 2.0, 1.0)] == [200] * 5
    assert [s.shape[1] for s in A.split_segments(x, sr, 2.0, 0.5)] == [200] * 5 + [50]
    assert A.split_segments(x, sr, 2.0, 3.0) == []
    assert [s.shape[1] for s in A.split_segments(x[:, :1000], sr, 2.0, 2.0)] == [200] * 5
    assert [s.shape[1] for s in A.split_segments(x, sr, 20.0)] == [1050]
    assert A.split_segments(x, sr, 20.0, 11.0) == []
    assert A.split_segments(np.zeros((1, 0), np.float32), sr, 1.0) == []
    with pytest.raises(UsageError):
        A.split_segments(x, sr, 0.0)


# --------------------------------------------------------------------------------------- write


@pytest.mark.parametrize("subtype", A.SUBTYPES)
@pytest.mark.parametrize("suffix", [".wav", ".flac", ".aiff"])
def test_write_roundtrip(tmp_path, subtype, suffix):
    if suffix == ".flac" and subtype == "FLOAT":
        with pytest.raises(UsageError, match="FLAC"):
            A.write_audio(tmp_path / "a.flac", tone(440, 8000, 0.1), 8000, subtype=subtype)
        assert only_files(tmp_path) == []
        return
    x = tone(440, 22050, 0.3, amp=0.7, channels=2)
    p = tmp_path / "sub" / f"out{suffix}"
    A.write_audio(p, x, 22050, subtype=subtype)
    assert only_files(p.parent) == [p.name]
    info = A.audio_info(p)
    assert info.subtype == subtype and info.channels == 2 and info.frames == x.shape[1]
    y, sr = A.read_audio(p)
    assert sr == 22050
    np.testing.assert_allclose(y, x, atol=PCM_ATOL[subtype], rtol=0)


def test_write_layouts_and_lossy(tmp_path):
    x = tone(440, 16000, 0.5, amp=0.3, channels=2)
    A.write_audio(tmp_path / "c.wav", x, 16000, subtype="FLOAT")  # C-ordered [C, N]
    A.write_audio(tmp_path / "m.wav", x[0], 16000, subtype="FLOAT")  # 1-D mono
    np.testing.assert_array_equal(A.read_audio(tmp_path / "c.wav")[0], x)
    np.testing.assert_array_equal(A.read_audio(tmp_path / "m.wav")[0], x[:1])
    A.write_audio(tmp_path / "o.ogg", x, 16000)  # PCM_16 default → the codec's own subtype
    assert A.audio_info(tmp_path / "o.ogg").subtype == "VORBIS"
    with pytest.raises(UsageError, match="suffix"):
        A.write_audio(tmp_path / "x.xyz", x, 16000)


def test_write_clips_integer_subtypes(tmp_path):
    x = np.array([[0.0, 1.5, -1.7, 0.5]], dtype=np.float32)
    A.write_audio(tmp_path / "i.wav", x, 8000, subtype="PCM_16")
    y, _ = A.read_audio(tmp_path / "i.wav")
    assert y[0, 1] == pytest.approx(1.0, abs=1e-4) and y[0, 2] == pytest.approx(-1.0, abs=1e-4)
    np.testing.assert_array_equal(x, np.array([[0.0, 1.5, -1.7, 0.5]], np.float32))  # input untouched
    A.write_audio(tmp_path / "f.wav", x, 8000, subtype="FLOAT")
    np.testing.assert_array_equal(A.read_audio(tmp_path / "f.wav")[0], x)


def test_write_is_atomic_on_failure(tmp_path):
    p = tmp_path / "out.flac"
    good = tone(440, 8000, 0.2)
    A.write_audio(p, good, 8000)
    before = p.read_bytes()
    nine = np.zeros((9, 800), np.float32)  # FLAC holds at most 8 channels: libsndfile fails mid-write
    with pytest.raises(Exception):
        A.write_audio(p, nine, 8000)
    assert only_files(tmp_path) == ["out.flac"]  # no temp file left
    assert p.read_bytes() == before  # previous output intact
    q = tmp_path / "new.flac"
    with pytest.raises(Exception):
        A.write_audio(q, nine, 8000)
    assert not q.exists() and only_files(tmp_path) == ["out.flac"]


def test_pipeline_read_resample_gain_write(tmp_path):
    """The s1 sequence on the array layout read_audio returns: no surprises between steps."""
    src = write_file(tmp_path / "in.flac", tone(440, 44100, 1.0, amp=0.05, channels=2), 44100, "PCM_24")
    x, sr = A.read_audio(src)
    x = A.to_channels(x, "keep")
    y = A.resample(x, sr, 24000)
    d = A.compute_gain(y, 24000, target_rms=0.1)
    out = tmp_path / "out" / "in.wav"
    A.write_audio(out, A.apply_gain(y, d), 24000)
    z, zsr = A.read_audio(out)
    assert zsr == 24000 and z.shape == y.shape
    assert A.peak_windowed_rms(z, zsr) == pytest.approx(0.1, rel=0.005)
    assert only_files(out.parent) == ["in.wav"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_is_reported_as_no_space_left() -> None:
    """Issue 13 item 14: libsndfile's bare "System error" on a full disk becomes ENOSPC."""
    import errno

    with pytest.raises(OSError) as info:
        A._sound_write(Path("/dev/full"), np.zeros(4800, np.float32), 24000, "PCM_16", "WAV")
    assert info.value.errno == errno.ENOSPC and info.value.filename == "/dev/full"


@pytest.mark.parametrize("fmt", ["WAV", "AIFF"])
def test_truncated_file_is_refused_naming_it(tmp_path: Path, fmt: str) -> None:
    """Issue 13 item 12: header says 1.0 s, data holds 0.5 s: libsndfile reads 0.5 s silently."""
    p = tmp_path / f"cut.{fmt.lower()}"
    sf.write(p, np.full(24000, 0.25, np.float32), 24000, subtype="PCM_16", format=fmt)
    assert A.promised_frames(p) == 0 and A.read_audio(p)[0].shape == (1, 24000)
    os.truncate(p, p.stat().st_size - 24000)  # 12000 of the 24000 two-byte frames are gone
    assert A.promised_frames(p) == 24000
    with pytest.raises(AudioReadError, match=r"cut\..*: truncated: its header promises 1\.000 s but "
                                             r"the file holds only 0\.500 s"):
        A.read_audio(p)
