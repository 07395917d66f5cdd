"""The four music datasets: a folder of files → in-memory ``features [N, F]`` / ``targets [N, Y]``.

Each file is decoded and validated once in ``__init__`` (through the feature cache) and bad files
are skipped with the reason, so a DataLoader epoch never opens a file. Without labels the target
is the *continuation* (the same features of the piece's second half). ``ds[i]`` is
``{"features": [F], "target": [Y]}`` (float32); attributes on :class:`MusicDataset`;
``Cls.synthetic(n=256, seed=0)`` for smoke runs. More: README.md, "The music-model suite".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from workflow.errors import UsageError
from workflow.files import AUDIO_EXTENSIONS, discover, relative_key

from .cache import CACHE_DIRNAME, _extract_all, _Extraction
from .features import (
    DEFAULT_AUDIO_DURATION,
    DYNAMICS_FEATURE_NAMES,
    GROOVE_FEATURE_NAMES,
    HOP_LENGTH,
    MIDI_EXTENSIONS,
    N_FFT,
    N_MELS,
    SAMPLE_RATE,
    NoteArrays,
    _dynamics_record,
    _extract_dynamics,
    _extract_emotion,
    _extract_groove,
    _extract_melody,
    _groove_record,
)
from .labels import (
    MusicDatasetError,
    _emotion_names,
    _labelled_files,
    _match_labels,
    emotion_embedding,
    emotion_embeddings,
    read_drum_labels,
    read_emotion_csv,
    read_emotion_json,
)
from .layout import find_data_root

log = logging.getLogger(__name__)


class ConstantDataError(MusicDatasetError):
    """Every item has the same input or the same target: a model would learn nothing."""


@dataclass
class _Rows:
    paths: list[Path]
    features: list[np.ndarray]
    targets: list[np.ndarray]
    whole: list[np.ndarray]


def _halves_rows(
    matched: Sequence[tuple[Path, Any]],
    ext: _Extraction,
    skipped: list[tuple[Path, str]],
    *,
    labelled: bool,
    view: Callable[[np.ndarray], np.ndarray],
    label_target: Callable[[Any], np.ndarray],
    too_short: Callable[[np.ndarray], bool],
    short_reason: str,
) -> _Rows:
    """Rows from ``[3, F]`` records (whole, first half, second half), as ``view`` shows them.

    Labelled: whole piece → ``label_target(label)``. Continuation: first half → second half; a
    record ``too_short`` for that is skipped with ``short_reason`` (appended to ``skipped``).
    """
    rows = _Rows([], [], [], [])
    for p, label in matched:
        rec = ext.records.get(p)
        if rec is None:
            continue
        v = view(rec)
        if labelled:
            rows.features.append(v[0])
            rows.targets.append(label_target(label))
        else:
            if too_short(rec):
                log.warning("%s: skipped (%s)", p, short_reason)
                skipped.append((p, short_reason))
                continue
            rows.features.append(v[1])
            rows.targets.append(v[2])
        rows.whole.append(v[0])
        rows.paths.append(p)
    return rows


class MusicDataset(Dataset):
    """Base class: in-memory ``features [N, F]`` / ``targets [N, Y]`` with the shared attributes.

    Subclasses build the arrays from a folder in ``__init__`` or from a generator in
    :meth:`synthetic`; :meth:`from_datasets_dir` reads ``<datasets_dir>/<SUBFOLDER>``
    (``training/audio``, ``training/midi``, ``training/maestro`` or ``training/dynamics_midi``,
    ``training/groove`` or ``training/drums``).
    ``ds[i]`` is ``{"features": [F], "target": [Y]}`` (float32 tensors sharing memory with the
    arrays), so the default DataLoader collate gives ``{"features": [B, F], "target": [B, Y]}``.

    Attributes: ``feature_dim``, ``target_dim`` (F, Y); ``feature_names``, ``target_names``;
    ``target_description`` (the target in words); ``mode`` (``"labels"``, ``"continuation"`` or
    ``"synthetic"``); ``paths``, ``keys`` (each item's file, absolute / relative to ``root``);
    ``whole_features``; ``skipped`` (``[(path, reason)]``: corrupt, empty or unusable files);
    ``unlabelled``, ``missing`` (files without a label / label keys without a file);
    ``cache_hits``, ``extracted`` (files served by the feature cache / decoded this run, bad ones
    too).
    """

    NAME: ClassVar[str] = ""
    SUBFOLDER: ClassVar[str] = ""

    root: Path | None
    mode: str
    features: np.ndarray
    targets: np.ndarray
    whole_features: np.ndarray
    paths: list[Path]
    keys: list[str]
    feature_names: list[str]
    target_names: list[str]
    target_description: str
    skipped: list[tuple[Path, str]]
    unlabelled: list[Path]
    missing: list[str]
    cache_hits: int
    extracted: int

    # ---- construction helpers

    @classmethod
    def from_datasets_dir(cls, datasets_dir: Path | str = "datasets", **kwargs: Any) -> MusicDataset:
        """Build from ``<datasets_dir>/<SUBFOLDER>`` (e.g. ``datasets/training/audio``) or the
        music-suite guide's name for it (``training/dynamics_midi``, ``training/drums``)."""
        return cls(find_data_root(datasets_dir, cls.NAME), **kwargs)

    def _setup(
        self,
        *,
        root: Path | None,
        mode: str,
        features: np.ndarray,
        targets: np.ndarray,
        feature_names: Sequence[str],
        target_names: Sequence[str],
        target_description: str,
        paths: Sequence[Path] = (),
        whole_features: np.ndarray | None = None,
        skipped: Sequence[tuple[Path, str]] = (),
        unlabelled: Sequence[Path] = (),
        missing: Sequence[str] = (),
        cache_hits: int = 0,
        extracted: int = 0,
    ) -> None:
        where = str(root) if root is not None else f"synthetic {self.NAME} data"
        f = np.ascontiguousarray(features, dtype=np.float32).reshape(len(features), len(feature_names))
        t = np.ascontiguousarray(targets, dtype=np.float32).reshape(len(targets), len(target_names))
        if len(f) != len(t):
            raise MusicDatasetError(f"{where}: {len(f)} feature rows but {len(t)} target rows")
        _check_usable(f, t, where, list(skipped), self.NAME)
        self.root = root
        self.mode = mode
        self.features, self.targets = f, t
        self.whole_features = f if whole_features is None else np.ascontiguousarray(whole_features, dtype=np.float32)
        self.paths = list(paths)
        self.keys = [relative_key(p, root) for p in self.paths] if root is not None else []
        self.feature_names, self.target_names = list(feature_names), list(target_names)
        self.target_description = target_description
        self.skipped, self.unlabelled, self.missing = list(skipped), list(unlabelled), list(missing)
        self.cache_hits, self.extracted = int(cache_hits), int(extracted)
        self._f = torch.from_numpy(self.features)
        self._t = torch.from_numpy(self.targets)
        if self.skipped:
            log.warning("%s: %d file(s) skipped (see dataset.skipped)", where, len(self.skipped))
        log.info("%s dataset: %d items (%s), %d -> %d dims, %d cached, %d decoded",
                 self.NAME, len(f), mode, f.shape[1], t.shape[1], self.cache_hits, self.extracted)

    @classmethod
    def _from_arrays(cls, **kwargs: Any) -> Any:
        obj = cls.__new__(cls)
        MusicDataset._setup(obj, **kwargs)
        return obj

    def _build_from_midi(
        self,
        root: Path | str,
        *,
        what: str,
        label_file: str,
        labels_path: Path | str | None,
        use_labels: bool,
        read_labels: Callable[[Path], Any],
        extractor: Callable[..., np.ndarray],
        dim: int,
        view: Callable[[np.ndarray], np.ndarray],
        label_target: Callable[[Any], np.ndarray],
        too_short: Callable[[np.ndarray], bool],
        short_reason: str,
        feature_names: Sequence[str],
        describe: Callable[[bool], tuple[list[str], str]],
        cache: bool,
        cache_dir: Path | str | None,
        workers: int,
        progress: bool,
    ) -> tuple[bool, Path]:
        """The ``__init__`` of a MIDI dataset with an optional label file (melody, groove).

        Finds the MIDI files under ``root`` and ``label_file`` (or ``labels_path``), extracts the
        ``[3, dim]`` records, and sets the dataset up in labels mode (whole piece →
        ``label_target(label)``) or continuation mode (first half → second half; records
        ``too_short`` are skipped with ``short_reason``). ``describe(labelled)`` gives the target
        names and description. Returns ``(labelled, label file path)``.
        """
        root = self._resolve_root(root, what)
        files = self._discover(root, MIDI_EXTENSIONS, "MIDI")
        labelled, lpath, matched, missing, unlabelled = _labelled_files(
            root, files, labels_path, label_file, use_labels, read_labels)
        ext = _extract_all(
            [p for p, _ in matched], kind=self.NAME, extractor=extractor, params={}, shape=(3, dim),
            cache_dir=self._cache_dir(root, cache, cache_dir), workers=workers, progress=progress,
        )
        skipped = list(ext.skipped)
        rows = _halves_rows(
            matched, ext, skipped, labelled=labelled, view=view, label_target=label_target,
            too_short=too_short, short_reason=short_reason)
        tnames, desc = describe(labelled)
        self._setup(
            root=root, mode="labels" if labelled else "continuation",
            features=np.array(rows.features).reshape(-1, dim),
            targets=np.array(rows.targets).reshape(-1, len(tnames)), feature_names=feature_names,
            target_names=tnames, target_description=desc, paths=rows.paths,
            whole_features=np.array(rows.whole).reshape(-1, dim), skipped=skipped,
            unlabelled=unlabelled, missing=missing, cache_hits=ext.cache_hits, extracted=ext.extracted,
        )
        return labelled, lpath

    @staticmethod
    def _resolve_root(root: Path | str, what: str) -> Path:
        r = Path(root)
        if not r.is_dir():
            raise MusicDatasetError(
                f"dataset folder not found: {r}; put {what} there (see training/music/README section), "
                "point --datasets-dir at the folder that holds training/, or run with --synthetic"
            )
        return r

    @staticmethod
    def _discover(root: Path, extensions: Sequence[str], what: str) -> list[Path]:
        files = discover(root, extensions, recursive=True)
        if not files:
            raise MusicDatasetError(
                f"no {what} files ({', '.join(extensions)}) under {root}; add some or run with --synthetic"
            )
        return files

    @staticmethod
    def _cache_dir(root: Path, cache: bool, cache_dir: Path | str | None) -> Path | None:
        if not cache:
            return None
        return Path(cache_dir) if cache_dir is not None else root / CACHE_DIRNAME

    # ---- Dataset protocol and attributes

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"features": self._f[index], "target": self._t[index]}

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def target_dim(self) -> int:
        return int(self.targets.shape[1])

    def summary(self) -> dict[str, Any]:
        """A JSON-able description for run reports."""
        return {
            "dataset": self.NAME, "root": None if self.root is None else str(self.root), "mode": self.mode,
            "items": len(self), "feature_dim": self.feature_dim, "target_dim": self.target_dim,
            "target": self.target_description, "skipped": [[str(p), r] for p, r in self.skipped],
            "unlabelled": len(self.unlabelled), "missing_labelled_files": list(self.missing),
            "cache_hits": self.cache_hits, "extracted": self.extracted,
        }

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(items={len(self)}, mode={self.mode!r}, "
                f"features={self.feature_dim}, target={self.target_dim}, skipped={len(self.skipped)})")


def _check_usable(f: np.ndarray, t: np.ndarray, where: str, skipped: list[tuple[Path, str]], name: str) -> None:
    if len(f) < 2:
        why = "; ".join(f"{p.name}: {r}" for p, r in skipped[:5])
        raise MusicDatasetError(
            f"{where}: {len(f)} usable {name} item(s), training needs at least 2"
            + (f" ({len(skipped)} skipped: {why})" if skipped else "")
            + "; add files, fix the skipped ones, or run with --synthetic"
        )
    if not (np.isfinite(f).all() and np.isfinite(t).all()):
        raise MusicDatasetError(f"{where}: non-finite feature or target values (a bug; please report)")
    if float(np.ptp(f, axis=0).max()) == 0.0:
        raise ConstantDataError(f"{where}: all {len(f)} items have identical features; add varied files")
    if float(np.ptp(t, axis=0).max()) == 0.0:
        raise ConstantDataError(
            f"{where}: all {len(t)} items have the same target; a model would learn nothing — "
            "check the labels (all equal?) or add varied files"
        )



class EmotionDataset(MusicDataset):
    """DEAM-style audio + ``labels.csv`` → 128 mel features → (valence, arousal) in [-1, 1].

    ``root`` holds the audio (any depth; wav, flac, mp3, ogg, aiff) and ``labels.csv`` (or pass
    ``labels_path``). Audio without a label row is listed in ``unlabelled`` and not used; label rows
    without audio are listed in ``missing``. ``audio_duration`` seconds are read from the start of
    each file (None: all). ``workers > 0`` decodes in that many processes. ``extracted`` counts
    audio files decoded by this instance, ``cache_hits`` files served by the feature cache.
    """

    NAME = "emotion"
    SUBFOLDER = "training/audio"

    def __init__(
        self,
        root: Path | str,
        *,
        labels_path: Path | str | None = None,
        audio_duration: float | None = DEFAULT_AUDIO_DURATION,
        cache: bool = True,
        cache_dir: Path | str | None = None,
        workers: int = 0,
        progress: bool = False,
    ) -> None:
        root = self._resolve_root(root, "audio files and labels.csv")
        if audio_duration is not None and not audio_duration > 0:
            raise UsageError(f"audio_duration must be > 0 seconds (or None for whole files), got {audio_duration}")
        lpath = Path(labels_path) if labels_path is not None else root / "labels.csv"
        if not lpath.is_file():
            raise MusicDatasetError(
                f"{lpath}: labels file not found; write 'filename,valence,arousal' rows (values in "
                "[-1, 1]) or copy DEAM's static_annotations_averaged_songs_*.csv there as labels.csv"
            )
        labels, scale = read_emotion_csv(lpath)
        files = self._discover(root, AUDIO_EXTENSIONS, "audio")
        matched, missing, unlabelled = _match_labels(files, root, labels, lpath)
        if missing:
            log.warning("%s: %d labelled file(s) not found under %s (e.g. %s)", lpath, len(missing), root, missing[:3])
        if unlabelled:
            log.info("%s: %d audio file(s) have no label row and are not used", root, len(unlabelled))
        ext = _extract_all(
            [p for p, _ in matched], kind=self.NAME, extractor=_extract_emotion,
            params={"sr": SAMPLE_RATE, "n_fft": N_FFT, "hop": HOP_LENGTH, "n_mels": N_MELS,
                    "audio_duration": audio_duration},
            shape=(N_MELS,), cache_dir=self._cache_dir(root, cache, cache_dir), workers=workers, progress=progress,
        )
        ok = [(p, va) for p, va in matched if p in ext.records]
        self._setup(
            root=root, mode="labels",
            features=np.stack([ext.records[p] for p, _ in ok]) if ok else np.zeros((0, N_MELS)),
            targets=np.array([va for _, va in ok], dtype=np.float32).reshape(-1, 2),
            feature_names=[f"mel_{b:03d}" for b in range(N_MELS)], target_names=["valence", "arousal"],
            target_description=(
                "(valence, arousal) in [-1, 1] from "
                + ("labels.csv" if scale == "unit" else "DEAM valence_mean/arousal_mean, (x - 5) / 4")
            ),
            paths=[p for p, _ in ok], skipped=ext.skipped, unlabelled=unlabelled, missing=missing,
            cache_hits=ext.cache_hits, extracted=ext.extracted,
        )
        self.label_scale = scale

    @classmethod
    def synthetic(cls, n: int = 256, seed: int = 0) -> EmotionDataset:
        """Mel-like spectra driven by a hidden (valence, arousal): arousal raises level and
        brightness, valence adds a spectral ripple, plus noise; targets are (v, a)."""
        rng = np.random.default_rng(seed)
        va = rng.uniform(-1.0, 1.0, size=(n, 2))
        b = np.linspace(0.0, 1.0, N_MELS)[None, :]
        feats = (-0.15 - 0.55 * b + 0.25 * va[:, 1:2] * (1.0 - 0.4 * b) + 0.15 * va[:, 1:2] * b
                 + 0.12 * va[:, 0:1] * np.sin(2 * np.pi * 6 * b) + rng.normal(0.0, 0.04, (n, N_MELS)))
        return cls._from_arrays(
            root=None, mode="synthetic", features=np.clip(feats, -1, 1), targets=va,
            feature_names=[f"mel_{i:03d}" for i in range(N_MELS)], target_names=["valence", "arousal"],
            target_description="synthetic (valence, arousal) in [-1, 1]",
        )


class MelodyDataset(MusicDataset):
    """MIDI folder → 128-pitch distribution → emotion embedding (labels) or next-half distribution.

    With ``emotion_labels.json`` in ``root`` (or ``labels_path``) and ``use_labels`` true: the
    labelled files, whole-piece distribution → :func:`emotion_embedding` (64). Otherwise
    (continuation): first-half distribution → second-half distribution (128); pieces without notes
    in both halves are skipped.
    """

    NAME = "melody"
    SUBFOLDER = "training/midi"

    def __init__(
        self,
        root: Path | str,
        *,
        labels_path: Path | str | None = None,
        use_labels: bool = True,
        cache: bool = True,
        cache_dir: Path | str | None = None,
        workers: int = 0,
        progress: bool = False,
    ) -> None:
        names = [f"pitch_{p:03d}" for p in range(128)]

        def describe(labelled: bool) -> tuple[list[str], str]:
            if labelled:
                return _emotion_names(), "emotion_embedding(valence, arousal) from emotion_labels.json"
            return ([f"next_{n}" for n in names],
                    "pitch distribution of the second half of the piece (input: first half)")

        self._build_from_midi(
            root, what="MIDI files (*.mid)", label_file="emotion_labels.json", labels_path=labels_path,
            use_labels=use_labels, read_labels=read_emotion_json, extractor=_extract_melody, dim=128,
            view=lambda rec: rec / np.maximum(rec.sum(axis=1, keepdims=True), 1.0),
            label_target=lambda va: emotion_embedding(*va),
            too_short=lambda rec: rec[1].sum() == 0 or rec[2].sum() == 0,
            short_reason="too short for the continuation target (needs notes in both halves)",
            feature_names=names, describe=describe, cache=cache, cache_dir=cache_dir, workers=workers,
            progress=progress,
        )

    @classmethod
    def synthetic(cls, n: int = 256, seed: int = 0, *, labelled: bool = True) -> MelodyDataset:
        """Melodies whose register follows valence and whose spread follows arousal.

        Each piece draws (v, a), a centre pitch ``48 + 12 (v + 1)`` and spread ``2 + 3 (a + 1)``
        semitones; 48 notes per half are sampled (the second half drifts by up to ±3 semitones).
        ``labelled``: whole-piece distribution → emotion embedding (64); otherwise first-half →
        second-half distribution (128), like the real continuation mode.
        """
        rng = np.random.default_rng(seed)
        va = rng.uniform(-1.0, 1.0, size=(n, 2))
        pitches = np.arange(128)
        halves = np.zeros((n, 2, 128))
        for i, (v, a) in enumerate(va):
            centre, spread = 48 + 12 * (v + 1), 2 + 3 * (a + 1)
            for h, shift in enumerate((0.0, rng.uniform(-3, 3))):
                p = np.exp(-0.5 * ((pitches - centre - shift) / spread) ** 2)
                halves[i, h] = rng.multinomial(48, p / p.sum())
        first = halves[:, 0] / halves[:, 0].sum(axis=1, keepdims=True)
        second = halves[:, 1] / halves[:, 1].sum(axis=1, keepdims=True)
        whole = halves.sum(axis=1)
        whole = whole / whole.sum(axis=1, keepdims=True)
        names = [f"pitch_{p:03d}" for p in range(128)]
        if labelled:
            return cls._from_arrays(
                root=None, mode="synthetic", features=whole, targets=emotion_embeddings(va),
                feature_names=names, target_names=_emotion_names(),
                target_description="synthetic emotion_embedding(valence, arousal)",
            )
        return cls._from_arrays(
            root=None, mode="synthetic", features=first, targets=second, whole_features=whole,
            feature_names=names, target_names=[f"next_{x}" for x in names],
            target_description="synthetic second-half pitch distribution (input: first half)",
        )


class DynamicsDataset(MusicDataset):
    """MAESTRO MIDI → 16 dynamics features of the first half → the same 16 of the second half.

    MAESTRO has no emotion labels, so the target is the continuation (see the module docstring).
    ``whole_features`` holds the whole-performance vector of each item.
    """

    NAME = "dynamics"
    SUBFOLDER = "training/maestro"

    def __init__(
        self,
        root: Path | str,
        *,
        cache: bool = True,
        cache_dir: Path | str | None = None,
        workers: int = 0,
        progress: bool = False,
    ) -> None:
        root = self._resolve_root(root, "MAESTRO MIDI files")
        files = self._discover(root, MIDI_EXTENSIONS, "MIDI")
        ext = _extract_all(
            files, kind=self.NAME, extractor=_extract_dynamics, params={}, shape=(3, 16),
            cache_dir=self._cache_dir(root, cache, cache_dir), workers=workers, progress=progress,
        )
        self._from_records(root, files, ext)

    def _from_records(self, root: Path, files: Sequence[Path], ext: _Extraction) -> None:
        skipped = list(ext.skipped)
        ok: list[Path] = []
        for p in files:
            rec = ext.records.get(p)
            if rec is None:
                continue
            if not np.isfinite(rec).all():
                reason = "too short for the continuation target (needs notes in both halves)"
                log.warning("%s: skipped (%s)", p, reason)
                skipped.append((p, reason))
                continue
            ok.append(p)
        recs = np.stack([ext.records[p] for p in ok]) if ok else np.zeros((0, 3, 16), np.float32)
        self._setup(
            root=root, mode="continuation", features=recs[:, 1], targets=recs[:, 2],
            feature_names=list(DYNAMICS_FEATURE_NAMES), target_names=[f"next_{x}" for x in DYNAMICS_FEATURE_NAMES],
            target_description="16 dynamics features of the second half of the piece (input: first half)",
            paths=ok, whole_features=recs[:, 0], skipped=skipped,
            cache_hits=ext.cache_hits, extracted=ext.extracted,
        )

    @classmethod
    def synthetic(cls, n: int = 256, seed: int = 0) -> DynamicsDataset:
        """Synthetic performances run through the real feature extractor.

        Each piece draws a touch (velocity mean 35-105, spread 4-22), a tempo (2-14 notes/s),
        articulation (mean duration 0.08-1.2 s), a crescendo/diminuendo (±25 velocity over the
        piece) and pedalling (0-90 % of 1 s windows); 40-120 notes are sampled and split in halves.
        """
        rng = np.random.default_rng(seed)
        recs = np.zeros((n, 3, 16), dtype=np.float32)
        for i in range(n):
            mu, sd = rng.uniform(35, 105), rng.uniform(4, 22)
            rate, dur = rng.uniform(2, 14), rng.uniform(0.08, 1.2)
            trend, pedal_p = rng.uniform(-25, 25), rng.uniform(0.0, 0.9)
            m = int(rng.integers(40, 121))
            gaps = rng.exponential(1.0 / rate, m)
            starts = np.cumsum(gaps) - gaps[0]
            u = starts / max(starts[-1], 1e-6)
            vel = np.clip(np.rint(rng.normal(mu + trend * (u - 0.5), sd)), 1, 127)
            ends = starts + dur * rng.lognormal(0.0, 0.4, m)
            wins = np.arange(0.0, float(ends.max()) + 1.0, 1.0)
            on = wins[rng.random(wins.size) < pedal_p]
            pedal = np.stack([on, on + 1.0], axis=1) if on.size else np.zeros((0, 2))
            notes = NoteArrays.from_lists(starts, ends, rng.integers(36, 96, m), vel)
            recs[i] = _dynamics_record(notes, pedal)
        return cls._from_arrays(
            root=None, mode="synthetic", features=recs[:, 1], targets=recs[:, 2], whole_features=recs[:, 0],
            feature_names=list(DYNAMICS_FEATURE_NAMES), target_names=[f"next_{x}" for x in DYNAMICS_FEATURE_NAMES],
            target_description="synthetic: 16 dynamics features of the second half (input: first half)",
        )


class GrooveDataset(MusicDataset):
    """Groove MIDI drums → 32 groove features → ``drum_labels.json`` values or the next half's 32.

    With ``drum_labels.json`` in ``root`` (or ``labels_path``) and ``use_labels`` true: labelled
    files, whole-clip features → label vector (``target_names`` = sorted label names). Otherwise
    (continuation): first half of the bars → the 32 features of the second half; clips spanning
    fewer than 2 bars are skipped.
    """

    NAME = "groove"
    SUBFOLDER = "training/groove"

    def __init__(
        self,
        root: Path | str,
        *,
        labels_path: Path | str | None = None,
        use_labels: bool = True,
        cache: bool = True,
        cache_dir: Path | str | None = None,
        workers: int = 0,
        progress: bool = False,
    ) -> None:
        label_names: list[str] = []

        def read(path: Path) -> dict[str, np.ndarray]:
            labels, label_names[:] = read_drum_labels(path)
            return labels

        def describe(labelled: bool) -> tuple[list[str], str]:
            if labelled:
                return list(label_names), f"drum_labels.json values ({', '.join(label_names)})"
            return ([f"next_{x}" for x in GROOVE_FEATURE_NAMES],
                    "32 groove features of the second half of the bars (input: first half)")

        labelled, lpath = self._build_from_midi(
            root, what="Groove MIDI drum files", label_file="drum_labels.json", labels_path=labels_path,
            use_labels=use_labels, read_labels=read, extractor=_extract_groove, dim=32,
            view=lambda rec: rec, label_target=lambda lab: lab,
            too_short=lambda rec: not np.isfinite(rec).all(),
            short_reason="too short for the continuation target (spans fewer than 2 bars)",
            feature_names=list(GROOVE_FEATURE_NAMES), describe=describe, cache=cache, cache_dir=cache_dir,
            workers=workers, progress=progress,
        )
        if labelled:
            const = [n for j, n in enumerate(self.target_names) if float(np.ptp(self.targets[:, j])) == 0.0]
            if const:
                log.warning("%s: label(s) %s are the same for every file; they teach nothing", lpath, const)

    @classmethod
    def synthetic(cls, n: int = 256, seed: int = 0) -> GrooveDataset:
        """Synthetic 8-bar drum clips run through the real feature extractor (continuation target).

        Each clip draws a tempo (70-170 bpm), a one-bar template (kick on 1 plus random 8ths,
        snare backbeat, 8th or 16th hi-hats, ghost notes, open hats, toms, crash), per-drum
        velocities, swing, push/lay-back and timing jitter; every bar plays the template with
        random drop-outs and extra hits. First 4 bars → features of the last 4.
        """
        rng = np.random.default_rng(seed)
        spb, bars = 16, 8
        recs = np.zeros((n, 3, 32), dtype=np.float32)
        for i in range(n):
            bpm = rng.uniform(70, 170)
            step = 60.0 / (4 * bpm)
            tmpl: list[tuple[int, int, float]] = [(0, 36, 1.0)]
            tmpl += [(p, 36, 1.0) for p in range(2, 16, 2) if rng.random() < rng.uniform(0.05, 0.4)]
            tmpl += [(4, 38, 1.0), (12, 38, 1.0)]
            ghost_p = rng.uniform(0.0, 0.25)
            tmpl += [(p, 38, 0.3) for p in range(1, 16, 2) if rng.random() < ghost_p]
            hat_step = 2 if rng.random() < 0.6 else 1
            open_p = rng.uniform(0.0, 0.3)
            tmpl += [(p, 46 if rng.random() < open_p else 42, 1.0) for p in range(0, 16, hat_step)]
            if rng.random() < 0.3:
                tmpl.append((14, int(rng.choice([45, 48, 43])), 1.0))
            base = {36: rng.uniform(70, 120), 38: rng.uniform(70, 120), 42: rng.uniform(40, 100),
                    46: rng.uniform(50, 110), 45: 90.0, 48: 90.0, 43: 90.0, 49: 110.0}
            vsd = rng.uniform(3, 15)
            swing, push, jitter = rng.uniform(0, 0.3), rng.uniform(-0.1, 0.1), rng.uniform(0.0, 0.12)
            keep_p, extra_p = rng.uniform(0.8, 1.0), rng.uniform(0.0, 0.05)
            on: list[float] = []
            pit: list[int] = []
            vel: list[float] = []
            for b in range(bars):
                hits = [h for h in tmpl if rng.random() < keep_p or h[0] == 0]
                hits += [(int(p), 38, 0.5) for p in np.nonzero(rng.random(spb) < extra_p)[0]]
                if b == 0 and rng.random() < 0.5:
                    hits.append((0, 49, 1.0))
                for p, drum, scale in hits:
                    off = push + (swing if p % 4 == 2 else 0.0) + rng.normal(0.0, jitter)
                    on.append(max((b * spb + p + float(np.clip(off, -0.45, 0.45))) * step, 0.0))
                    pit.append(drum)
                    vel.append(float(np.clip(round(rng.normal(base[drum] * scale, vsd)), 1, 127)))
            recs[i] = _groove_record(np.array(on), np.array(pit), np.array(vel), bpm, spb)
        return cls._from_arrays(
            root=None, mode="synthetic", features=recs[:, 1], targets=recs[:, 2], whole_features=recs[:, 0],
            feature_names=list(GROOVE_FEATURE_NAMES), target_names=[f"next_{x}" for x in GROOVE_FEATURE_NAMES],
            target_description="synthetic: 32 groove features of the last 4 bars (input: first 4)",
        )
