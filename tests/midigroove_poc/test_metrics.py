"""Tests for midigroove_poc.metrics on hand-checkable codes and synthetic drum-like audio."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from midigroove_poc.metrics import (
    AUDIO_METRIC_KEYS,
    MetricError,
    audio_metrics,
    detect_onsets,
    format_table,
    log_mel_l1,
    onset_prf,
    rms_envelope_correlation,
    spectral_convergence,
    summarize,
    token_accuracy,
    token_nll,
)

SR = 24000
HIT_TIMES = np.array([0.10, 0.35, 0.60, 0.85, 1.10, 1.23, 1.60, 1.90])


def drum_audio(times: np.ndarray, duration: float = 2.2, seed: int = 0, sr: int = SR) -> np.ndarray:
    """Decaying noise bursts of varied loudness at ``times`` over a faint noise floor."""
    rng = np.random.default_rng(seed)
    y = 1e-4 * rng.standard_normal(int(duration * sr))
    n = int(0.5 * sr)
    decay = np.exp(-np.arange(n) / (0.03 * sr))
    for i, t in enumerate(times):
        s = int(round(t * sr))
        e = min(y.size, s + n)
        y[s:e] += [0.9, 0.3, 0.6, 0.15][i % 4] * rng.standard_normal(n)[: e - s] * decay[: e - s]
    return y.astype(np.float32)


def click_audio(times: np.ndarray, duration: float = 2.0, sr: int = SR) -> np.ndarray:
    """2 ms rectangular clicks at ``times`` in silence."""
    y = np.zeros(int(duration * sr), dtype=np.float32)
    for t in times:
        s = int(round(t * sr))
        y[s : s + int(0.002 * sr)] = 0.8
    return y


@pytest.fixture(scope="module")
def drums() -> np.ndarray:
    return drum_audio(HIT_TIMES)


# ---------------------------------------------------------------------------- token metrics


def test_token_accuracy_per_codebook() -> None:
    ref = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    pred = np.array([[1, 2, 3, 0], [5, 6, 7, 8]])  # 3/4 in codebook 0, 4/4 in codebook 1
    out = token_accuracy(pred, ref)
    assert out["acc_k"] == [0.75, 1.0]
    assert out["acc"] == pytest.approx(7 / 8)


def test_token_accuracy_batched_torch() -> None:
    ref = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=torch.int16)
    pred = torch.stack([torch.tensor([[1, 2, 3, 0], [5, 6, 7, 8]]), ref.long()])  # [B=2, K, T]
    out = token_accuracy(pred, torch.stack([ref, ref]).long())
    assert out["acc_k"] == [pytest.approx(7 / 8), 1.0]
    assert out["acc"] == pytest.approx(15 / 16)


@pytest.mark.parametrize(
    ("pred", "ref"),
    [
        (np.zeros((2, 4), int), np.zeros((2, 5), int)),  # shape mismatch
        (np.zeros((2, 4)), np.zeros((2, 4))),  # float codes
        (np.zeros(4, int), np.zeros(4, int)),  # 1-D
        (np.zeros((1, 2, 3, 4), int), np.zeros((1, 2, 3, 4), int)),  # 4-D
        (np.zeros((2, 0), int), np.zeros((2, 0), int)),  # empty
    ],
)
def test_token_accuracy_rejects_bad_input(pred: np.ndarray, ref: np.ndarray) -> None:
    with pytest.raises(MetricError):
        token_accuracy(pred, ref)


def test_metric_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        token_accuracy(np.zeros((2, 4), int), np.zeros((3, 4), int))


def test_token_nll_uniform_is_log_vocab() -> None:
    vocab = 16
    logits = torch.zeros(2, 3, 5, vocab)
    ref = torch.randint(0, vocab, (2, 3, 5))
    out = token_nll(logits, ref)
    assert out["nll"] == pytest.approx(math.log(vocab), rel=1e-6)
    assert out["ppl"] == pytest.approx(vocab, rel=1e-5)
    assert out["nll_k"] == pytest.approx([math.log(vocab)] * 3, rel=1e-6)
    # unbatched numpy [K, T, V] gives the same
    assert token_nll(np.zeros((3, 5, vocab), np.float32), ref[0].numpy())["nll"] == pytest.approx(
        math.log(vocab), rel=1e-6
    )


def test_token_nll_hand_computed() -> None:
    # softmax([0, log 3]) = [1/4, 3/4]; one token of each class, in two codebooks
    logits = torch.tensor([[[0.0, math.log(3.0)]], [[0.0, math.log(3.0)]]])  # [K=2, T=1, V=2]
    ref = torch.tensor([[1], [0]])
    out = token_nll(logits, ref)
    assert out["nll_k"] == pytest.approx([-math.log(0.75), -math.log(0.25)], rel=1e-6)
    assert out["nll"] == pytest.approx((-math.log(0.75) - math.log(0.25)) / 2, rel=1e-6)


def test_token_nll_rejects_bad_input() -> None:
    with pytest.raises(MetricError, match=r"\[0, 4\)"):
        token_nll(torch.zeros(2, 3, 4), torch.full((2, 3), 4))
    with pytest.raises(MetricError, match="do not match"):
        token_nll(torch.zeros(2, 3, 4), torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(MetricError, match="floating"):
        token_nll(torch.zeros(2, 3, 4, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(MetricError):
        token_nll(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------------------- spectral metrics


def test_spectral_convergence_reference_values(drums: np.ndarray) -> None:
    assert spectral_convergence(drums, drums, SR) == pytest.approx(0.0, abs=1e-6)
    assert spectral_convergence(np.zeros_like(drums), drums, SR) == pytest.approx(1.0, abs=1e-6)
    # magnitudes are linear in the gain: 0.5·x → 0.5, 2·x → 1.0
    assert spectral_convergence(0.5 * drums, drums, SR) == pytest.approx(0.5, abs=1e-5)
    assert spectral_convergence(2.0 * drums, drums, SR) == pytest.approx(1.0, abs=1e-5)
    other = drum_audio(HIT_TIMES + 0.12, seed=1)
    assert spectral_convergence(other, drums, SR) > 0.5


def test_spectral_convergence_silent_reference_and_trimming(drums: np.ndarray) -> None:
    silence = np.zeros(SR, np.float32)
    assert spectral_convergence(silence, silence, SR) == 0.0
    assert math.isnan(spectral_convergence(drums[:SR], silence, SR))
    longer = np.concatenate([drums, np.ones(500, np.float32)])  # extra tail is trimmed away
    assert spectral_convergence(longer, drums, SR) == pytest.approx(0.0, abs=1e-6)
    assert spectral_convergence(drums, drums, SR, fft_sizes=(256,)) == pytest.approx(0.0, abs=1e-6)


def test_log_mel_l1(drums: np.ndarray) -> None:
    assert log_mel_l1(drums, drums, SR) == pytest.approx(0.0, abs=1e-6)
    loud = 0.5 * np.random.default_rng(3).standard_normal(SR).astype(np.float32)
    # far above eps, a gain of 2 shifts every log-mel value by log 2
    assert log_mel_l1(2.0 * loud, loud, SR) == pytest.approx(math.log(2.0), abs=0.01)
    near = log_mel_l1(drums + 0.001 * np.random.default_rng(4).standard_normal(drums.size), drums, SR)
    far = log_mel_l1(drum_audio(HIT_TIMES + 0.12, seed=1), drums, SR)
    assert 0.0 < near < far
    assert log_mel_l1(drums, drums, SR, n_mels=40, n_fft=512) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("pred", "ref", "sr"),
    [
        (np.zeros((2, 100), np.float32), np.zeros(100, np.float32), SR),  # stereo
        (np.zeros(100, np.float32), np.zeros(0, np.float32), SR),  # empty
        (np.full(100, np.nan, np.float32), np.zeros(100, np.float32), SR),  # NaN
        (np.zeros(100, np.float32), np.zeros(100, np.float32), 0),  # bad sr
        (np.zeros(100, np.float32), np.zeros(100, np.float32), 22050.5),  # bad sr
    ],
)
def test_audio_metrics_reject_bad_input(pred: np.ndarray, ref: np.ndarray, sr: float) -> None:
    for fn in (spectral_convergence, log_mel_l1, rms_envelope_correlation, audio_metrics):
        with pytest.raises(MetricError):
            fn(pred, ref, sr)


def test_audio_accepts_leading_unit_dims(drums: np.ndarray) -> None:
    as_tensor = torch.from_numpy(drums)[None, None]  # [1, 1, N], as a decoder returns
    assert spectral_convergence(as_tensor, drums[None], SR) == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------- RMS envelopes


def test_rms_envelope_correlation() -> None:
    rng = np.random.default_rng(5)
    n = 2 * SR
    ramp = np.linspace(0.0, 1.0, n)
    noise_a = rng.standard_normal(n)
    noise_b = rng.standard_normal(n)
    x = (noise_a * ramp).astype(np.float32)
    assert rms_envelope_correlation(2.0 * x, x, SR) == pytest.approx(1.0, abs=1e-9)
    down = (noise_b * ramp[::-1]).astype(np.float32)
    assert rms_envelope_correlation(down, x, SR) < -0.95
    # independent random loudness curves (one level per 20 ms frame) are uncorrelated
    frame = int(0.02 * SR)
    env_a = np.repeat(rng.uniform(0.1, 1.0, n // frame), frame)
    env_b = np.repeat(rng.uniform(0.1, 1.0, n // frame), frame)
    r = rms_envelope_correlation(noise_a * env_a, noise_b * env_b, SR)
    assert abs(r) < 0.25


def test_rms_envelope_correlation_constant_is_zero() -> None:
    x = np.random.default_rng(6).standard_normal(SR).astype(np.float32)
    silence = np.zeros(SR, np.float32)
    assert rms_envelope_correlation(silence, x, SR) == 0.0
    assert rms_envelope_correlation(np.ones(SR, np.float32), x, SR) == 0.0
    assert rms_envelope_correlation(x[:100], x[:100], SR) == 0.0  # shorter than one frame


# ---------------------------------------------------------------------------- onsets


def test_onset_prf_tolerance() -> None:
    ref = [0.5, 1.0, 1.5]
    det = [0.54, 1.06, 1.5]  # 40 ms off counts, 60 ms off does not
    out = onset_prf(det, ref)
    assert (out["precision"], out["recall"], out["f1"]) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert out["tp"] == 2.0
    assert onset_prf([0.35], [0.30])["f1"] == 1.0  # exactly 50 ms is inclusive
    assert onset_prf([0.56], [0.50], tolerance=0.07)["f1"] == 1.0


def test_onset_prf_one_to_one() -> None:
    out = onset_prf([0.99, 1.01], [1.0])  # two detections, one reference: only one may match
    assert (out["precision"], out["recall"]) == (0.5, 1.0)
    assert out["f1"] == pytest.approx(2 / 3)
    out = onset_prf([1.0], [0.99, 1.01])
    assert (out["precision"], out["recall"]) == (1.0, 0.5)
    # closest-first would pair 1.03↔1.05 and lose a hit; the matching finds both pairs
    out = onset_prf([1.07, 1.03], [1.05, 1.00])
    assert (out["precision"], out["recall"], out["f1"]) == (1.0, 1.0, 1.0)


def test_onset_prf_empty_cases() -> None:
    assert onset_prf([], []) == {
        "precision": 1.0, "recall": 1.0, "f1": 1.0, "tp": 0.0, "n_detected": 0.0, "n_reference": 0.0,
    }
    no_ref = onset_prf([0.1, 0.2], [])
    assert no_ref["precision"] == 0.0 and math.isnan(no_ref["recall"]) and no_ref["f1"] == 0.0
    no_det = onset_prf(np.array([]), np.array([0.1]))
    assert math.isnan(no_det["precision"]) and no_det["recall"] == 0.0 and no_det["f1"] == 0.0


def test_onset_prf_rejects_bad_input() -> None:
    with pytest.raises(MetricError):
        onset_prf([[0.1, 0.2]], [0.1])
    with pytest.raises(MetricError):
        onset_prf([0.1, float("nan")], [0.1])
    with pytest.raises(MetricError):
        onset_prf([0.1], [0.1], tolerance=0.0)


@pytest.mark.parametrize("sr", [16000, 24000, 44100])
def test_detect_onsets_finds_clicks(sr: int) -> None:
    found = detect_onsets(click_audio(HIT_TIMES, sr=sr), sr)
    assert found.shape == HIT_TIMES.shape
    assert np.all(np.abs(found - HIT_TIMES) <= 0.02)


def test_detect_onsets_drum_bursts_and_silence(drums: np.ndarray) -> None:
    found = detect_onsets(drums, SR)
    assert found.shape == HIT_TIMES.shape  # quiet hits (0.15) are found, decays are not re-triggered
    assert np.all(np.abs(found - HIT_TIMES) <= 0.02)
    assert detect_onsets(np.zeros(SR, np.float32), SR).size == 0
    assert detect_onsets(np.zeros(10, np.float32), SR).size == 0


# ---------------------------------------------------------------------------- combined + tables


def test_audio_metrics_keys_and_values(drums: np.ndarray) -> None:
    same = audio_metrics(drums, drums, SR)
    assert tuple(same) == AUDIO_METRIC_KEYS
    assert all(math.isfinite(v) for v in same.values())
    assert same["spectral_convergence"] == pytest.approx(0.0, abs=1e-6)
    assert same["rms_env_corr"] == pytest.approx(1.0)
    assert same["onset_f1"] == 1.0

    shifted = drum_audio(HIT_TIMES + 0.12, seed=1)
    vs_grid = audio_metrics(shifted, drums, SR, ref_onsets=list(HIT_TIMES) + [5.0])
    assert all(math.isfinite(v) for v in vs_grid.values())
    assert vs_grid["onset_n_ref"] == len(HIT_TIMES)  # the onset after the audio's end is dropped
    assert vs_grid["onset_f1"] < 0.5  # 120 ms late everywhere (bar coincidences)
    assert vs_grid["spectral_convergence"] > same["spectral_convergence"]


def test_summarize_ignores_nan_and_non_numbers() -> None:
    rows = [
        {"acc": 0.5, "onset_precision": float("nan"), "acc_k": [0.5], "id": "a", "flag": True},
        {"acc": np.float32(1.0), "onset_precision": 0.25, "only_here": 3},
        {"acc": torch.tensor(0.0), "onset_precision": 0.75, "all_nan": float("nan")},
    ]
    out = summarize(rows)
    assert list(out) == ["acc", "onset_precision", "only_here", "all_nan"]
    assert out["acc"] == pytest.approx(0.5)
    assert out["onset_precision"] == pytest.approx(0.5)
    assert out["only_here"] == 3.0
    assert math.isnan(out["all_nan"])
    with pytest.raises(MetricError):
        summarize([])
    with pytest.raises(MetricError):
        summarize([{"acc": 1.0}, "acc"])  # type: ignore[list-item]


def test_format_table_aligns() -> None:
    table = format_table(
        {"ground_truth_codes": {"acc": 1.0, "onset_f1": 0.9876543}, "model": {"acc": 0.25}},
        ["acc", "onset_f1"],
    )
    lines = table.split("\n")
    assert len(lines) == 4  # header, rule, two systems
    assert len({len(line) for line in lines}) == 1
    header, rule, gt, model = lines
    assert header.split() == ["system", "acc", "onset_f1"]
    assert gt.split() == ["ground_truth_codes", "1.0000", "0.9877"]
    assert model.split() == ["model", "0.2500", "-"]
    # every column's right edge lines up with the header's
    for name in ("acc", "onset_f1"):
        edge = header.index(name) + len(name)
        assert gt[edge - 1] != " " and (edge == len(gt) or gt[edge] == " ")
        assert model[edge - 1] != " "
    assert set(rule.replace(" ", "")) == {"-"}
    default_cols = format_table({"a": {"x": float("nan"), "y": 2}}).split("\n")
    assert default_cols[0].split() == ["system", "x", "y"]
    assert default_cols[2].split() == ["a", "nan", "2.0000"]
    with pytest.raises(MetricError):
        format_table({}, ["acc"])
    with pytest.raises(MetricError):
        format_table({"a": {"acc": 1.0}}, "acc")
