"""midigroove_poc.fad: the Fréchet distance against closed forms, FAD∞, the reference cache, embedders."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from midigroove_poc.fad import (
    OFFLINE_MODEL,
    FadError,
    GaussianStats,
    cached_reference_stats,
    fad_inf,
    frechet_distance,
    get_embedder,
)


def _spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.5 * np.eye(d)


def _closed_form(mu1, s1, mu2, s2) -> float:
    """|mu1-mu2|² + Tr(S1 + S2) - 2 Tr((S1^½ S2 S1^½)^½), by eigendecompositions (no sqrtm)."""
    w, v = np.linalg.eigh(s1)
    r1 = v @ np.diag(np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(r1 @ s2 @ r1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(inner)))


def test_exact_statistics_match_the_closed_form() -> None:
    # 1-D: (m1 - m2)² + (s1 - s2)²
    one = frechet_distance(GaussianStats(np.array([1.0]), np.array([[4.0]]), 2),
                           GaussianStats(np.array([-2.0]), np.array([[9.0]]), 2))
    assert one == pytest.approx(9.0 + 1.0, abs=1e-9)
    # diagonal: Σ (√a - √b)²
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 16.0])
    diag = frechet_distance(GaussianStats(np.zeros(3), np.diag(a), 2), GaussianStats(np.ones(3), np.diag(b), 2))
    assert diag == pytest.approx(3.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2), abs=1e-9)
    # general (non-commuting) covariances
    rng = np.random.default_rng(0)
    mu1, mu2, s1, s2 = rng.normal(size=5), rng.normal(size=5), _spd(rng, 5), _spd(rng, 5)
    got = frechet_distance(GaussianStats(mu1, s1, 2), GaussianStats(mu2, s2, 2))
    assert got == pytest.approx(_closed_form(mu1, s1, mu2, s2), rel=1e-7)


def test_samples_of_two_gaussians_approach_the_closed_form() -> None:
    rng = np.random.default_rng(1)
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.0, -1.0])
    s1, s2 = _spd(rng, 3), _spd(rng, 3)
    n = 200_000
    x1 = rng.multivariate_normal(mu1, s1, size=n)
    x2 = rng.multivariate_normal(mu2, s2, size=n)
    want = _closed_form(mu1, s1, mu2, s2)
    # The estimate's error is O(1/√n) in the means and covariances: with entries of order 1-10 and
    # n = 2e5 that is ~1e-2 at most, so 3 % of a distance of order 1 is a safe, still-tight bound.
    assert frechet_distance(GaussianStats.of(x1), GaussianStats.of(x2)) == pytest.approx(want, rel=0.03)


def test_a_set_against_itself_is_zero_even_when_singular() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 8))
    st = GaussianStats.of(x)
    assert abs(frechet_distance(st, st)) < 1e-8
    few = rng.normal(size=(5, 16))  # 5 vectors in 16-D: a rank-4 covariance
    st = GaussianStats.of(few)
    assert np.isfinite(frechet_distance(st, st)) and abs(frechet_distance(st, st)) < 1e-3


def test_errors_are_actionable() -> None:
    with pytest.raises(FadError, match="at least 2"):
        GaussianStats.of(np.zeros((1, 3)))
    with pytest.raises(FadError, match="sizes differ"):
        frechet_distance(GaussianStats.of(np.eye(3)), GaussianStats.of(np.eye(4)))


def test_fad_inf_extrapolates_the_small_sample_bias_away() -> None:
    # Reference: the exact N(0, I). Evaluated: samples of N(mu, I) with |mu|² = 0.25, so the true
    # FAD is 0.25; FAD of N samples is biased upwards by about d/N (mean) plus a covariance term.
    d = 4
    ref = GaussianStats(np.zeros(d), np.eye(d), 10**9)
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(4000, d)) + np.array([0.5, 0.0, 0.0, 0.0])
    res = fad_inf(ref, emb, steps=10, min_n=100, seed=0)
    assert len(res.points) == 10 and res.points[0][0] == 100 and res.points[-1][0] == 4000
    small = res.points[0][1]
    assert small > 0.25 + 0.02  # the bias FAD∞ exists to remove
    assert res.score == pytest.approx(0.25, abs=0.02) and res.slope > 0 and 0.0 <= res.r2 <= 1.0
    assert abs(res.score - 0.25) < abs(frechet_distance(ref, GaussianStats.of(emb)) - 0.25)


def test_fad_inf_needs_two_subset_sizes() -> None:
    ref = GaussianStats(np.zeros(2), np.eye(2), 10)
    with pytest.raises(FadError, match="two sizes"):
        fad_inf(ref, np.random.default_rng(0).normal(size=(2, 2)))


def test_reference_statistics_are_cached_per_model_and_set(tmp_path) -> None:
    x = np.random.default_rng(4).normal(size=(50, 3))
    first = cached_reference_stats(tmp_path, "logmel-stats", ["a", "b"], lambda: x)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].name.startswith("logmel-stats-") and files[0].suffix == ".npz"

    def must_not_embed():
        raise AssertionError("reference embedded again despite the cache")
    again = cached_reference_stats(tmp_path, "logmel-stats", ["b", "a"], must_not_embed)  # order-free
    np.testing.assert_array_equal(again.mu, first.mu)
    np.testing.assert_array_equal(again.cov, first.cov)
    cached_reference_stats(tmp_path, "fadtk-clap-laion-music", ["a", "b"], lambda: x)
    cached_reference_stats(tmp_path, "logmel-stats", ["a", "c"], lambda: x)
    assert len(list(tmp_path.iterdir())) == 3  # another model or set: another file, no temps left


def test_offline_embedder_is_labelled_and_deterministic() -> None:
    label, embed = get_embedder(OFFLINE_MODEL)
    assert label == "logmel-stats" and "clap" not in label.lower()
    t = np.arange(24000) / 24000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    e1, e2 = embed(tone, 24000), embed(tone, 24000)
    assert e1.ndim == 2 and e1.shape[1] == 64 and e1.shape[0] > 20
    np.testing.assert_array_equal(e1, e2)
    assert frechet_distance(GaussianStats.of(e1), GaussianStats.of(embed(np.roll(tone, 7), 24000))) < \
        frechet_distance(GaussianStats.of(e1), GaussianStats.of(embed(0.3 * np.sin(2 * np.pi * 3000 * t), 24000)))


@pytest.mark.skipif(importlib.util.find_spec("fadtk") is not None, reason="fadtk is installed here")
def test_missing_fadtk_names_the_install_command() -> None:
    with pytest.raises(FadError, match="pip install fadtk"):
        get_embedder("clap-laion-music")


def test_collector_groups_variants_systems_and_kits(tmp_path) -> None:
    """A variant that returns the reference windows scores ~0 overall and per kit; noise does not."""
    from midigroove_poc.fad import FadCollector

    sr = 8000
    t = np.arange(sr // 2) / sr
    rng = np.random.default_rng(5)
    # ten windows per kit; each kit has its own pitch family, so mixing the kits up shows in FAD
    windows = {(kit, j): 0.3 * np.sin(2 * np.pi * (base + 40 * j) * t) * (1 + 0.1 * rng.normal(size=t.size))
               for kit, base in (("A", 300), ("B", 1500)) for j in range(10)}
    label, embed = get_embedder(OFFLINE_MODEL)
    col = FadCollector(label, embed, tmp_path, per_kit=True)
    for (kit, j), audio in windows.items():
        col.add("s", "s:copy", kit, audio, sr, (kit, j))
        col.add("s", "s:noise", kit, 0.3 * rng.normal(size=t.size), sr, (kit, j))
        other = windows[("B" if kit == "A" else "A", j)]
        col.add("s", "s:swapped", kit, other, sr, (kit, j))
    res = col.results(lambda item: (windows[item], sr))
    for key in ("fad_logmel-stats", "fad_logmel-stats[A]", "fad_logmel-stats[B]"):
        assert abs(res["s:copy"][key]) < 1e-6, key
        assert res["s:noise"][key] > 10.0, key
    assert abs(res["s:swapped"]["fad_logmel-stats"]) < 1e-6  # the same set of windows overall
    assert res["s:swapped"]["fad_logmel-stats[A]"] > 10.0  # but the wrong kit's windows per kit
    assert set(res["s:copy"]) == {f"{p}logmel-stats{k}" for p in ("fad_", "fad_inf_") for k in ("", "[A]", "[B]")}
