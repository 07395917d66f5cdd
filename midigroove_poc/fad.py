"""Fréchet Audio Distance: Gaussian statistics of embeddings, FAD, FAD∞, cached reference statistics.

Embedders: ``fadtk:<model>`` (e.g. ``clap-laion-music``, needs the optional ``fadtk`` package,
imported lazily) and ``logmel-stats`` (offline, deterministic; never reported as CLAP). Every
number is reported under a key that names its embedder. Details: README.md, "midigroove_poc".
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from workflow.errors import WorkflowError
from workflow.files import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

OFFLINE_MODEL = "logmel-stats"
"""The offline embedder's name (log-mel frames; no network, no weights)."""


class FadError(WorkflowError):
    """A FAD could not be computed (too few embeddings, a missing optional package, bad statistics)."""


@dataclass(frozen=True)
class GaussianStats:
    """Mean and covariance of a set of embedding vectors (rows)."""

    mu: np.ndarray
    cov: np.ndarray
    n: int

    @classmethod
    def of(cls, emb: np.ndarray) -> GaussianStats:
        emb = np.asarray(emb, dtype=np.float64)
        if emb.ndim != 2 or emb.shape[0] < 2:
            raise FadError(f"need at least 2 embedding vectors of shape [n, d] for a covariance, got {emb.shape}")
        return cls(emb.mean(axis=0), np.cov(emb, rowvar=False).reshape(emb.shape[1], emb.shape[1]), emb.shape[0])


def frechet_distance(a: GaussianStats, b: GaussianStats, eps: float = 1e-6) -> float:
    """``|mu_a - mu_b|² + Tr(S_a + S_b - 2 (S_a S_b)^½)`` (the FAD/FID formula).

    ``scipy.linalg.sqrtm`` of a near-singular product can be non-finite: then ``eps·I`` is added to
    both covariances; an imaginary part above 1e-3 (relative) is an error, smaller ones are dropped.
    """
    from scipy import linalg

    if a.mu.shape != b.mu.shape:
        raise FadError(f"embedding sizes differ: {a.mu.shape[0]} vs {b.mu.shape[0]} (same embedder on both sides?)")
    diff = a.mu - b.mu
    covmean = linalg.sqrtm(a.cov @ b.cov)
    if not np.isfinite(covmean).all():
        log.warning("FAD: singular covariance product; adding %g to the diagonals", eps)
        offset = np.eye(a.cov.shape[0]) * eps
        covmean = linalg.sqrtm((a.cov + offset) @ (b.cov + offset))
    if np.iscomplexobj(covmean):
        scale = max(1.0, float(np.max(np.abs(covmean))))
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3 * scale):
            raise FadError(f"FAD: matrix square root has an imaginary part of {np.max(np.abs(covmean.imag)):.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * np.trace(covmean))


@dataclass(frozen=True)
class FadInf:
    """FAD∞: the intercept at 1/N = 0 of the line fitted to (1/N, FAD_N)."""

    score: float
    slope: float
    r2: float
    points: list[tuple[int, float]] = field(default_factory=list)


def fad_inf(ref: GaussianStats, emb: np.ndarray, *, steps: int = 25, min_n: int = 500, seed: int = 0) -> FadInf:
    """FAD∞ as fadtk defines it: FAD of ``steps`` random subsets of the evaluated embeddings (sizes
    evenly spaced from ``min_n`` to all), a least-squares line FAD = slope/N + intercept, and the
    intercept as the score. ``min_n`` is lowered to half the set when the set is smaller."""
    emb = np.asarray(emb, dtype=np.float64)
    total = emb.shape[0]
    lo = min(min_n, max(2, total // 2))
    ns = sorted({int(n) for n in np.linspace(lo, total, steps)})
    if len(ns) < 2:
        raise FadError(f"FAD∞ needs subsets of at least two sizes; only {total} embedding vectors")
    rng = np.random.default_rng(seed)
    points = [(n, frechet_distance(ref, GaussianStats.of(emb[rng.choice(total, size=n, replace=False)])))
              for n in ns]
    xs = 1.0 / np.asarray(ns, dtype=np.float64)
    ys = np.asarray([p[1] for p in points])
    slope, intercept = np.polyfit(xs, ys, 1)
    resid = ys - (slope * xs + intercept)
    spread = float(np.sum((ys - ys.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid ** 2)) / spread if spread > 0 else 1.0
    return FadInf(float(intercept), float(slope), r2, points)


Embedder = Callable[[np.ndarray, int], np.ndarray]
"""(mono audio, sample rate) → embedding frames ``[n_frames, d]``."""


def logmel_embedder(sr: int = 16000, n_mels: int = 64, n_fft: int = 1024) -> Embedder:
    """The offline embedder: audio resampled to ``sr``, log-mel frames (hop n_fft/2) as vectors."""
    import librosa

    from workflow import audio as A

    basis = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)

    def embed(audio: np.ndarray, audio_sr: int) -> np.ndarray:
        x = A.resample(np.asarray(audio, dtype=np.float32)[None], audio_sr, sr)[0]
        x = np.pad(x, (0, max(0, n_fft - x.shape[0])))
        frames = librosa.util.frame(x, frame_length=n_fft, hop_length=n_fft // 2).T * np.hanning(n_fft)
        mag = np.abs(np.fft.rfft(frames, axis=1))
        return np.log(mag @ basis.T + 1e-5).astype(np.float64)
    return embed


def fadtk_embedder(model: str, device: str | None = None) -> Embedder:
    """A fadtk model (e.g. ``clap-laion-music``) as an :data:`Embedder` on ``device`` (fadtk's
    choice when None); fadtk is imported here."""
    try:
        from fadtk.model_loader import get_all_models
    except ImportError as e:
        raise FadError(f"--fad-fadtk with --fadtk-model {model} needs fadtk: pip install fadtk "
                       f"(or use --fadtk-model {OFFLINE_MODEL}, which works offline) [{e}]") from e
    models = {m.name: m for m in get_all_models()}
    if model not in models:
        raise FadError(f"fadtk has no model {model!r}; choose one of: {', '.join(sorted(models))}")
    loader = models[model]
    if device is not None:
        import torch
        loader.device = torch.device(device)
    loader.load_model()

    def embed(audio: np.ndarray, audio_sr: int) -> np.ndarray:
        from workflow import audio as A

        x = A.resample(np.asarray(audio, dtype=np.float32)[None], audio_sr, loader.sr)[0]
        return np.asarray(loader.get_embedding(x), dtype=np.float64).reshape(-1, loader.num_features)
    return embed


def get_embedder(model: str, device: str | None = None) -> tuple[str, Embedder]:
    """(label used in every output key, embedder) for ``--fadtk-model`` (on ``--fadtk-device``)."""
    if model == OFFLINE_MODEL:
        return OFFLINE_MODEL, logmel_embedder()
    return f"fadtk-{model}", fadtk_embedder(model, device)


def reference_key(label: str, items: Sequence[Any]) -> str:
    """The cache key of a reference set: the embedder's label + a hash of the items' descriptions."""
    h = hashlib.sha256(json.dumps([label, sorted(map(str, items))]).encode()).hexdigest()[:16]
    return f"{label}-{h}"


def cached_reference_stats(stats_dir: Path, label: str, items: Sequence[Any],
                           embed_all: Callable[[], np.ndarray]) -> GaussianStats:
    """Reference statistics from ``stats_dir/<key>.npz``, else ``embed_all()``'s, then written atomically."""
    path = Path(stats_dir) / f"{reference_key(label, items)}.npz"
    if path.is_file():
        with np.load(path) as z:
            log.info("FAD: reference statistics from %s", path)
            return GaussianStats(z["mu"], z["cov"], int(z["n"]))
    stats = GaussianStats.of(embed_all())
    buf = io.BytesIO()
    np.savez(buf, mu=stats.mu, cov=stats.cov, n=stats.n)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return stats


@dataclass
class FadCollector:
    """Embeddings of decoded windows per (variant, kit) and their reference windows per (system, kit);
    :meth:`results` turns them into ``fad_<label>`` / ``fad_inf_<label>`` (``[kit]`` suffixed per kit)."""

    label: str
    embed: Embedder
    stats_dir: Path
    per_kit: bool = False
    seed: int = 0
    preds: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)
    refs: dict[tuple[str, str], dict[Any, None]] = field(default_factory=dict)
    system_of: dict[str, str] = field(default_factory=dict)
    ref_stats: dict[str, GaussianStats] = field(default_factory=dict)  # "system" / "system[kit]" → stats

    def add(self, system: str, variant: str, kit: str, audio: np.ndarray, sr: int, ref_item: Any) -> None:
        """Embed one decoded window of ``variant``; ``ref_item`` describes its reference window."""
        self.preds.setdefault((variant, kit), []).append(self.embed(audio, sr))
        self.system_of[variant] = system
        self.refs.setdefault((system, kit), {})[ref_item] = None

    def results(self, load_ref: Callable[[Any], tuple[np.ndarray, int]]) -> dict[str, dict[str, float]]:
        """``{variant: {key: value}}``; ``load_ref(ref_item)`` gives a reference window's (audio, sr)."""
        memo: dict[str, GaussianStats] = {}
        out: dict[str, dict[str, float]] = {}
        kits = sorted({k for _, k in self.preds}) if self.per_kit else []
        for variant, system in self.system_of.items():
            for kit in [None, *kits]:
                pred = [e for (v, k), es in self.preds.items() if v == variant and kit in (None, k) for e in es]
                items = [i for (s, k), its in self.refs.items() if s == system and kit in (None, k) for i in its]
                if not pred or not items:
                    continue
                key = reference_key(self.label, items)
                if key not in memo:
                    memo[key] = cached_reference_stats(self.stats_dir, self.label, items, lambda: np.concatenate(
                        [self.embed(*load_ref(i)) for i in items]))
                self.ref_stats[system if kit is None else f"{system}[{kit}]"] = memo[key]
                out.setdefault(variant, {}).update(self._scores(memo[key], np.concatenate(pred), kit))
        return out

    def save_ref_stats(self, path: Path | str) -> Path:
        """The reference statistics of the last :meth:`results` as one .npz (atomic): arrays
        ``mu[<system>]``, ``cov[<system>]``, ``n[<system>]`` (and ``...[<system>[<kit>]]`` per kit)."""
        arrays = {f"{name}[{key}]": value for key, st in self.ref_stats.items()
                  for name, value in (("mu", st.mu), ("cov", st.cov), ("n", np.asarray(st.n)))}
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(path, buf.getvalue())
        return Path(path)

    def _scores(self, ref: GaussianStats, emb: np.ndarray, kit: str | None) -> dict[str, float]:
        suffix = "" if kit is None else f"[{kit}]"
        try:
            inf = fad_inf(ref, emb, seed=self.seed).score
        except FadError as e:
            log.warning("FAD∞ %s: %s", suffix or "all kits", e)
            inf = float("nan")
        return {f"fad_{self.label}{suffix}": frechet_distance(ref, GaussianStats.of(emb)),
                f"fad_inf_{self.label}{suffix}": inf}


def write_per_kit_csv(path: Path | str, summaries: dict[str, dict[str, float]], label: str) -> Path:
    """One row per (variant, kit) with its ``fad`` and ``fad_inf`` (the ``[kit]`` keys), atomically."""
    import csv

    rows = []
    for variant, scores in summaries.items():
        for key, value in scores.items():
            prefix = f"fad_{label}["
            if key.startswith(prefix) and key.endswith("]"):
                kit = key[len(prefix):-1]
                rows.append({"system": variant, "kit": kit, "model": label, "fad": value,
                             "fad_inf": scores.get(f"fad_inf_{label}[{kit}]")})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["system", "kit", "model", "fad", "fad_inf"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return Path(path)
