"""Datasets for the four music models: emotion (DEAM-style audio), melody (MIDI), dynamics
(MAESTRO) and groove (Groove MIDI drums).

Every dataset turns a folder of files into two in-memory float32 matrices, ``features [N, F]`` and
``targets [N, Y]``, computed once in ``__init__``: each file is decoded and validated up front, bad
files are skipped and recorded, and a DataLoader epoch only indexes arrays (it never opens a file,
so it can never hit a bad one). Per-file results are cached on disk, so a second run decodes
nothing.

Folder layout (under ``--datasets-dir``, default ``datasets/``; see :meth:`MusicDataset.from_datasets_dir`)::

    datasets/training/audio/     EmotionDataset   *.wav|*.mp3|*.flac|... + labels.csv (required)
    datasets/training/midi/      MelodyDataset    *.mid|*.midi (recursive) + emotion_labels.json (optional)
    datasets/training/maestro/   DynamicsDataset  MAESTRO *.mid|*.midi (recursive)
    datasets/training/groove/    GrooveDataset    Groove MIDI *.mid|*.midi (recursive) + drum_labels.json (optional)

Items and attributes (all four classes, see :class:`MusicDataset`)::

    ds[i] == {"features": float32 tensor [F], "target": float32 tensor [Y]}
    ds.feature_dim, ds.target_dim          F, Y
    ds.feature_names, ds.target_names      list[str] of length F, Y
    ds.target_description                  what the target is, in words
    ds.mode                                "labels" | "continuation" | "synthetic"
    ds.paths, ds.keys                      the file of each item (absolute / relative to root)
    ds.skipped                             list[(path, reason)]: corrupt, empty or unusable files
    ds.unlabelled, ds.missing              files without a label / label keys without a file
    ds.cache_hits, ds.extracted            files served by the feature cache / decoded this run (bad ones too)

Targets (F → Y):

==========  ===================  ====================================  =====================================
dataset     features             target with labels                    target without labels (continuation)
==========  ===================  ====================================  =====================================
emotion     128 mel bands        (valence, arousal) in [-1, 1]: 2      labels.csv is required
melody      128 pitch distr.     :func:`emotion_embedding` (v, a): 64  pitch distribution of the 2nd half: 128
dynamics    16 dynamics stats    (MAESTRO has no labels)               the 16 stats of the 2nd half: 16
groove      32 groove stats      drum_labels.json values: K            the 32 stats of the 2nd half: 32
==========  ===================  ====================================  =====================================

**Continuation targets (why).** MAESTRO and unlabelled MIDI/Groove folders carry no emotion labels,
and no model may learn from a constant target. Instead the *first half* of each piece is the input
and the same features computed on the *second half* are the target: "how does this piece go on?".
The target is real data, differs from piece to piece, is not contained in the input (the model
must learn which properties persist through a performance — a player's touch, a drummer's swing,
a melody's register and key — and which drift), and it trains exactly the feature→feature mapping
the models are used for. For MIDI the halves split at ``t_mid = (first onset + last onset) / 2``
(notes with onset ``< t_mid`` form the first half); Groove splits at a bar line (first
``floor(B/2)`` bars vs the rest, ``B`` = bars spanned by onsets). Pieces whose halves cannot both
be formed (one note, one bar, a single chord) are skipped with that reason. The whole-piece
features of every item are kept in ``ds.whole_features`` for inference and analysis.

**Emotion features** (:func:`mel_features`). Audio is read with :func:`workflow.audio.read_audio`,
cut to its first ``audio_duration`` seconds (default 45 s, a DEAM clip), mixed to mono, resampled
to 22050 Hz (soxr), and an STFT is taken (n_fft 2048, hop 512, periodic Hann, centred, zero-padded;
audio shorter than 2048 samples is zero-padded to 2048). Power is divided by ``(n_fft/4)**2`` so a
full-scale sine centred on an STFT bin has peak-bin power 1 (0 dB). A 128-band mel filter bank
(librosa, Slaney mel scale, 0–11025 Hz, unnormalised triangles of peak 1) gives mel power, which is
averaged over all frames (power, not dB, is averaged). Then::

    dB_b   = 10 * log10(max(mean_power_b, 1e-10))
    x_b    = clip(dB_b, -80, 0) / 40 + 1            # -80 dB → -1, 0 dB → +1

=====================  ============================================================  ========
feature                formula                                                       range
=====================  ============================================================  ========
``mel_000..mel_127``   ``x_b`` above; band ``b`` centred at ``mel_band_centers()[b]``  [-1, 1]
=====================  ============================================================  ========

An absolute reference (not per-clip max) is used so overall loudness, an arousal cue, survives.

**labels.csv** (EmotionDataset; in the audio folder, or ``labels_path=``). A header row, then one
row per clip. Key column ``filename`` or ``song_id``; value columns either ``valence,arousal``
(already in [-1, 1]) or DEAM's ``valence_mean,arousal_mean`` (1–9 scale, mapped linearly to
[-1, 1] by :func:`deam_to_unit`: ``(x - 5) / 4``, so 1 → -1, 5 → 0, 9 → +1). Other columns
(DEAM's ``*_std``) are ignored; spaces after commas (as in DEAM's files) are fine. A key matches a
file by relative path, file name, relative path without suffix, or stem — so DEAM's ``song_id``
``2`` finds ``2.mp3``. DEAM ships its static annotations in two CSVs (songs 1–2000 and
2000–2058): concatenate them (one header) into ``labels.csv``.

**Melody features** (:func:`pitch_counts`): the non-drum notes of all instruments.

======================  ==========================================================  ======
feature                 formula                                                     range
======================  ==========================================================  ======
``pitch_000..127``      (# non-drum notes with MIDI pitch p) / (# non-drum notes)   [0, 1]
======================  ==========================================================  ======

(sums to 1 per item). **emotion_labels.json** (optional, in the MIDI folder):
``{"<file key>": {"valence": v, "arousal": a}, ...}`` with v, a in [-1, 1]; keys match files as for
labels.csv. With it, items are the labelled files (features: whole piece) and the target is
:func:`emotion_embedding` ``(v, a)``; without it, the continuation target.

**Dynamics features** (:func:`dynamics_features`): over the ``n`` non-drum notes with velocity
``v_i``, onset ``s_i``, offset ``e_i``, duration ``d_i = max(e_i - s_i, 0)``; span
``T = max(max e - min s, 0.001)`` s; ``std`` is the population standard deviation;
``sq(x, c) = x / (x + c)`` squashes a non-negative quantity to [0, 1) (``c`` maps to 0.5).

==  =====================  ==================================================================  =======
#   name                   formula                                                             range
==  =====================  ==================================================================  =======
0   ``vel_mean``           mean(v) / 127                                                       [0, 1]
1   ``vel_std``            std(v) / 127                                                        [0, .5]
2   ``vel_range``          (max v - min v) / 127                                               [0, 1]
3   ``vel_median``         median(v) / 127                                                     [0, 1]
4   ``vel_hist_0_31``      fraction of notes with v in [0, 32)                                 [0, 1]
5   ``vel_hist_32_63``     fraction with v in [32, 64)                                         [0, 1]
6   ``vel_hist_64_95``     fraction with v in [64, 96)                                         [0, 1]
7   ``vel_hist_96_127``    fraction with v in [96, 128)                                        [0, 1]
8   ``dur_mean``           sq(mean(d), 0.5 s)                                                  [0, 1)
9   ``dur_std``            sq(std(d), 0.5 s)                                                   [0, 1)
10  ``dur_median``         sq(median(d), 0.5 s)                                                [0, 1)
11  ``accent_ratio``       fraction of notes with v > mean(v) + std(v)                         [0, 1]
12  ``note_density``       sq(n / T, 10 notes/s)                                               [0, 1)
13  ``vel_trend``          clip(least-squares slope of v/127 against u_i = (s_i - min s)/T,    [-1, 1]
                           -1, 1); 0 if all onsets coincide (crescendo > 0, diminuendo < 0)
14  ``vel_local_change``   mean |v_{i+1} - v_i| / 127 over notes sorted by (onset, pitch);     [0, 1]
                           0 for one note
15  ``sustain_fraction``   seconds of [min s, min s + T] with sustain pedal (CC64 >= 64, any   [0, 1]
                           non-drum track) down, / T
==  =====================  ==================================================================  =======

**Groove features** (:func:`groove_features`): over the drum-track (``is_drum``) notes, with the
MIDI's first tempo ``bpm`` (pretty_midi's 120 if none; later tempo changes are ignored — Groove
files have one) and first time signature ``num/den`` (4/4 if none). Grid step ``δ = 60 / (4 bpm)``
s (a 16th note), ``steps_per_bar S = round(16 num / den)``. Each onset ``t`` gets step
``k = floor(t/δ + 1/2)``, deviation ``dev = t/δ - k`` in [-1/2, 1/2), bar ``k // S`` and position
``pos = k mod S``; ``B`` = bars from the first to the last onset's bar (for the continuation
halves: that half's bar count). Drum classes (General MIDI + Groove's Roland extras):
kick {35, 36}; snare {37, 38, 40}; hi-hat {42, 44, 46, 22, 26} (open: 46, 26); toms
{41, 43, 45, 47, 48, 50, 58}; cymbals {49, 51, 52, 53, 55, 57, 59}; anything else "other".
``sq`` as above; empty classes give 0 for their stats.

==  ========================  ===============================================================  =======
#   name                      formula                                                          range
==  ========================  ===============================================================  =======
0   ``timing_abs_dev``        2 mean |dev|  (0 = quantised)                                    [0, 1]
1   ``timing_dev_std``        2 std(dev)    (timing regularity)                                [0, 1]
2   ``timing_mean_dev``       2 mean(dev)   (< 0 ahead of the grid, > 0 laid back)             [-1, 1]
3   ``kick_hits_per_bar``     sq(#kick / B, 4)                                                 [0, 1)
4   ``kick_occupancy``        #distinct kick positions pos / S  (16-step occupancy)            [0, 1]
5   ``kick_vel_mean``         mean kick velocity / 127                                         [0, 1]
6   ``kick_vel_std``          std of kick velocity / 127                                       [0, .5]
7   ``snare_hits_per_bar``    as 3-6 for snare                                                 [0, 1)
8   ``snare_occupancy``                                                                        [0, 1]
9   ``snare_vel_mean``                                                                         [0, 1]
10  ``snare_vel_std``                                                                          [0, .5]
11  ``hihat_hits_per_bar``    as 3-6 for hi-hat                                                [0, 1)
12  ``hihat_occupancy``                                                                        [0, 1]
13  ``hihat_vel_mean``                                                                         [0, 1]
14  ``hihat_vel_std``                                                                          [0, .5]
15  ``toms_hits_per_bar``     sq(#toms / B, 4)                                                 [0, 1)
16  ``toms_vel_mean``         mean tom velocity / 127                                          [0, 1]
17  ``cymbal_hits_per_bar``   sq(#cymbals / B, 4)                                              [0, 1)
18  ``cymbal_vel_mean``       mean cymbal velocity / 127                                       [0, 1]
19  ``density``               sq(#onsets / B, 16)                                              [0, 1)
20  ``syncopation``           fraction of onsets off the quarter-note beats (pos mod 4 != 0)   [0, 1]
21  ``sixteenth_ratio``       fraction of onsets on odd 16ths (pos odd)                        [0, 1]
22  ``vel_mean``              mean velocity / 127                                              [0, 1]
23  ``vel_std``               std velocity / 127                                               [0, .5]
24  ``accent_ratio``          fraction of onsets with v > mean + std                           [0, 1]
25  ``tempo``                 (clip(bpm, 40, 240) - 40) / 200                                  [0, 1]
26  ``backbeat``              fraction of snare onsets on beats 2 and 4 (pos mod 8 == 4)       [0, 1]
27  ``kick_downbeat``         fraction of kick onsets on beats 1 and 3 (pos mod 8 == 0)        [0, 1]
28  ``repetition``            mean Jaccard similarity of the (class, pos) sets of consecutive  [0, 1]
                              bars (two empty bars count 1; 1 if B < 2)
29  ``bar_count_cv``          sq(std / mean of per-bar onset counts over the B bars, 1)        [0, 1)
30  ``hihat_open_ratio``      fraction of hi-hat onsets that are open (46, 26)                 [0, 1]
31  ``ghost_ratio``           fraction of onsets with velocity < 40                            [0, 1]
==  ========================  ===============================================================  =======

**drum_labels.json** (optional, in the groove folder): ``{"<file key>": {"<label>": number, ...}}``.
Every entry must carry the same label names; the target is their values in sorted name order
(``ds.target_names``), e.g. ``{"energy": 0.8, "complexity": 0.3}`` → ``[complexity, energy]``.
Scale labels to about [-1, 1]; a label that is the same for every file is refused (constant).

**Feature cache.** ``<root>/.feature_cache/<sha1>.npy``, one file per input, keyed by the
absolute path, size, mtime (ns), the extraction parameters and a feature version; written
atomically. Edit a file and it is re-decoded; delete the folder to rebuild everything. Pass
``cache_dir=`` for a read-only dataset folder, ``cache=False`` to disable.

**Synthetic data.** ``Cls.synthetic(n=256, seed=0)`` builds an in-memory dataset of the same
shapes whose targets follow from the features through a hidden, noisy but learnable structure
(for ``--synthetic`` smoke runs; deterministic for a seed).

Errors: :class:`MusicDatasetError` (folder missing / nothing usable), :class:`LabelFileError`
(malformed label file; the message names the line), :class:`ConstantDataError` (all inputs or all
targets identical), :class:`MidiReadError` (a MIDI file cannot be parsed; caught and turned into a
skip by the datasets).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from workflow.audio import read_audio, resample, to_channels
from workflow.errors import AudioContentError, AudioReadError, UsageError, WorkflowError
from workflow.files import AUDIO_EXTENSIONS, atomic_path, discover, relative_key

log = logging.getLogger(__name__)

__all__ = [
    "SAMPLE_RATE",
    "N_FFT",
    "HOP_LENGTH",
    "N_MELS",
    "DB_FLOOR",
    "DEFAULT_AUDIO_DURATION",
    "MIDI_EXTENSIONS",
    "EMBEDDING_DIM",
    "DYNAMICS_FEATURE_NAMES",
    "GROOVE_FEATURE_NAMES",
    "MusicDatasetError",
    "LabelFileError",
    "ConstantDataError",
    "MidiReadError",
    "NoteArrays",
    "MusicDataset",
    "EmotionDataset",
    "MelodyDataset",
    "DynamicsDataset",
    "GrooveDataset",
    "deam_to_unit",
    "emotion_embedding",
    "emotion_embeddings",
    "decode_emotion_embedding",
    "mel_band_centers",
    "mel_features",
    "load_midi",
    "midi_notes",
    "sustain_intervals",
    "pitch_counts",
    "dynamics_features",
    "groove_features",
    "read_emotion_csv",
    "read_emotion_json",
    "read_drum_labels",
]

# --------------------------------------------------------------------------------------------
# constants

#: Emotion audio analysis parameters (see the module docstring).
SAMPLE_RATE = 22050
N_FFT = 2048
HOP_LENGTH = 512
N_MELS = 128
DB_FLOOR = -80.0
DEFAULT_AUDIO_DURATION = 45.0
_POWER_FLOOR = 1e-10

MIDI_EXTENSIONS: tuple[str, ...] = (".mid", ".midi")
CACHE_DIRNAME = ".feature_cache"
#: Bumped whenever a feature definition changes, so stale cache entries are not reused.
FEATURE_VERSION = 1

#: Valence/arousal embedding: an 8 x 8 grid of Gaussian bumps over [-1, 1]^2.
EMBEDDING_GRID = 8
EMBEDDING_DIM = EMBEDDING_GRID * EMBEDDING_GRID
EMBEDDING_SIGMA = 2.0 / (EMBEDDING_GRID - 1)
_GRID = np.linspace(-1.0, 1.0, EMBEDDING_GRID)
_CENTERS_V = np.repeat(_GRID, EMBEDDING_GRID)  # component i*8 + j ↔ (valence c_i, arousal c_j)
_CENTERS_A = np.tile(_GRID, EMBEDDING_GRID)

# General MIDI drum map plus the Roland TD-11 extras the Groove MIDI Dataset uses.
KICK = (35, 36)
SNARE = (37, 38, 40)
HIHAT = (22, 26, 42, 44, 46)
HIHAT_OPEN = (26, 46)
TOMS = (41, 43, 45, 47, 48, 50, 58)
CYMBALS = (49, 51, 52, 53, 55, 57, 59)
_DRUM_CLASSES = (KICK, SNARE, HIHAT, TOMS, CYMBALS)  # class ids 0..4, "other" = 5

DYNAMICS_FEATURE_NAMES: tuple[str, ...] = (
    "vel_mean", "vel_std", "vel_range", "vel_median",
    "vel_hist_0_31", "vel_hist_32_63", "vel_hist_64_95", "vel_hist_96_127",
    "dur_mean", "dur_std", "dur_median", "accent_ratio",
    "note_density", "vel_trend", "vel_local_change", "sustain_fraction",
)  # fmt: skip

GROOVE_FEATURE_NAMES: tuple[str, ...] = (
    "timing_abs_dev", "timing_dev_std", "timing_mean_dev",
    "kick_hits_per_bar", "kick_occupancy", "kick_vel_mean", "kick_vel_std",
    "snare_hits_per_bar", "snare_occupancy", "snare_vel_mean", "snare_vel_std",
    "hihat_hits_per_bar", "hihat_occupancy", "hihat_vel_mean", "hihat_vel_std",
    "toms_hits_per_bar", "toms_vel_mean", "cymbal_hits_per_bar", "cymbal_vel_mean",
    "density", "syncopation", "sixteenth_ratio", "vel_mean", "vel_std", "accent_ratio",
    "tempo", "backbeat", "kick_downbeat", "repetition", "bar_count_cv",
    "hihat_open_ratio", "ghost_ratio",
)  # fmt: skip

_MIN_SPAN = 1e-3  # seconds; keeps rates finite for a single zero-length note

# --------------------------------------------------------------------------------------------
# errors


class MusicDatasetError(WorkflowError):
    """A music dataset folder is missing, empty, or yields too few usable items."""


class LabelFileError(MusicDatasetError):
    """A label file (labels.csv, emotion_labels.json, drum_labels.json) is malformed."""


class ConstantDataError(MusicDatasetError):
    """Every item has the same input or the same target: a model would learn nothing."""


class MidiReadError(WorkflowError):
    """A MIDI file is empty, truncated or not MIDI."""


class _SkipFile(WorkflowError):
    """Raised by a per-file extractor: the file is readable but unusable (reason in message)."""


# --------------------------------------------------------------------------------------------
# emotion labels and embedding


def deam_to_unit(x: float | np.ndarray) -> float | np.ndarray:
    """Map DEAM's 1–9 rating scale linearly to [-1, 1]: ``(x - 5) / 4`` (1 → -1, 5 → 0, 9 → 1)."""
    if isinstance(x, np.ndarray):
        return (x.astype(np.float64) - 5.0) / 4.0
    return (float(x) - 5.0) / 4.0


def _check_va(v: float, a: float, where: str) -> None:
    for name, x in (("valence", v), ("arousal", a)):
        if not math.isfinite(x) or abs(x) > 1.0 + 1e-6:
            raise UsageError(f"{where}: {name} {x!r} is outside [-1, 1]; rescale it (DEAM 1-9: (x-5)/4)")


def emotion_embeddings(va: np.ndarray) -> np.ndarray:
    """Vectorised :func:`emotion_embedding`: ``[N, 2]`` (valence, arousal) → float32 ``[N, 64]``."""
    arr = np.asarray(va, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise UsageError(f"expected (valence, arousal) pairs shaped [N, 2], got {arr.shape}")
    if arr.size and (not np.isfinite(arr).all() or np.abs(arr).max() > 1.0 + 1e-6):
        raise UsageError("valence/arousal must be finite and in [-1, 1]; rescale them first")
    dv = arr[:, 0:1] - _CENTERS_V[None, :]
    da = arr[:, 1:2] - _CENTERS_A[None, :]
    return np.exp(-(dv * dv + da * da) / (2.0 * EMBEDDING_SIGMA**2)).astype(np.float32)


def emotion_embedding(valence: float, arousal: float) -> np.ndarray:
    """The fixed 64-dim embedding of a valence-arousal point (both in [-1, 1]).

    Component ``8 i + j`` is a Gaussian bump ``exp(-((v - c_i)^2 + (a - c_j)^2) / (2 σ^2))`` with
    centres ``c = linspace(-1, 1, 8)`` and ``σ = 2/7`` (the grid spacing): a smooth, deterministic
    radial-basis code in (0, 1]. Nearby moods get nearby codes, distinct (v, a) get distinct codes
    (the map is injective: :func:`decode_emotion_embedding` inverts it), and there is no random
    projection that could change between runs or machines.
    """
    v, a = float(valence), float(arousal)
    _check_va(v, a, "emotion_embedding")
    return emotion_embeddings(np.array([[v, a]]))[0]


def decode_emotion_embedding(embedding: np.ndarray) -> tuple[float, float]:
    """Invert :func:`emotion_embedding` (exactly for a clean code, least squares for a predicted one).

    ``-2σ² log e_k - c_vk² - c_ak² = -2 c_vk v - 2 c_ak a + (v² + a²)`` is linear in
    ``(v, a, v² + a²)``; it is solved by weighted least squares over the components larger than
    1e-3 × the largest (weights = the components). Returns (valence, arousal) clipped to [-1, 1].
    """
    e = np.asarray(embedding, dtype=np.float64).reshape(-1)
    if e.size != EMBEDDING_DIM:
        raise UsageError(f"an emotion embedding has {EMBEDDING_DIM} values, got {e.size}")
    top = float(e.max()) if np.isfinite(e).all() else 0.0
    if top <= 0.0:
        return 0.0, 0.0
    use = e > 1e-3 * top
    if use.sum() < 3:  # too few usable components for the linear solve: weighted centroid
        w = np.clip(e, 0.0, None)
        return (float(np.clip((w * _CENTERS_V).sum() / w.sum(), -1, 1)),
                float(np.clip((w * _CENTERS_A).sum() / w.sum(), -1, 1)))
    cv, ca, ek = _CENTERS_V[use], _CENTERS_A[use], e[use]
    lhs = np.stack([-2.0 * cv, -2.0 * ca, np.ones_like(cv)], axis=1)
    rhs = -2.0 * EMBEDDING_SIGMA**2 * np.log(ek) - cv * cv - ca * ca
    w = np.sqrt(ek)
    sol, *_ = np.linalg.lstsq(lhs * w[:, None], rhs * w, rcond=None)
    return float(np.clip(sol[0], -1.0, 1.0)), float(np.clip(sol[1], -1.0, 1.0))


# --------------------------------------------------------------------------------------------
# label files


def _norm_key(key: str) -> str:
    """Label keys compare as POSIX relative paths without a leading ``./``."""
    k = str(key).strip().replace("\\", "/")
    while k.startswith("./"):
        k = k[2:]
    return k


def read_emotion_csv(path: Path | str) -> tuple[dict[str, tuple[float, float]], str]:
    """Read ``labels.csv`` → ``({key: (valence, arousal) in [-1, 1]}, scale)``.

    ``scale`` is ``"unit"`` (columns ``valence,arousal``, values must be in [-1, 1]) or ``"deam"``
    (columns ``valence_mean,arousal_mean`` on DEAM's 1–9 scale, mapped with :func:`deam_to_unit`).
    The key column is ``filename`` or ``song_id``. Raises :class:`LabelFileError` naming the line.
    """
    p = Path(path)
    try:
        fh = open(p, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise LabelFileError(f"{p}: cannot open labels file ({exc})") from exc
    with fh:
        reader = csv.reader(fh, skipinitialspace=True)
        header = next(reader, None)
        if not header:
            raise LabelFileError(f"{p}: empty labels file; write a header 'filename,valence,arousal'")
        cols = [h.strip().lower() for h in header]
        key_col = next((c for c in ("filename", "song_id") if c in cols), None)
        if key_col is None:
            raise LabelFileError(
                f"{p}: no 'filename' or 'song_id' column in header {header}; "
                "write a header 'filename,valence,arousal' (or keep DEAM's 'song_id,valence_mean,arousal_mean')"
            )
        if "valence" in cols and "arousal" in cols:
            scale, vcol, acol = "unit", "valence", "arousal"
        elif "valence_mean" in cols and "arousal_mean" in cols:
            scale, vcol, acol = "deam", "valence_mean", "arousal_mean"
        else:
            raise LabelFileError(
                f"{p}: need columns 'valence,arousal' (in [-1, 1]) or DEAM's 'valence_mean,arousal_mean' "
                f"(1-9); header is {header}"
            )
        ki, vi, ai = cols.index(key_col), cols.index(vcol), cols.index(acol)
        labels: dict[str, tuple[float, float]] = {}
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) <= max(ki, vi, ai):
                raise LabelFileError(f"{p}, line {line}: expected {len(cols)} fields, got {len(row)}: {row}")
            key = _norm_key(row[ki])
            try:
                v, a = float(row[vi]), float(row[ai])
            except ValueError as exc:
                raise LabelFileError(
                    f"{p}, line {line}: valence/arousal must be numbers, got {row[vi]!r}, {row[ai]!r}"
                ) from exc
            if scale == "deam":
                for name, x in ((vcol, v), (acol, a)):
                    if not (1.0 <= x <= 9.0):
                        raise LabelFileError(f"{p}, line {line}: {name} {x} is outside DEAM's 1-9 scale")
                v, a = float(deam_to_unit(v)), float(deam_to_unit(a))
            else:
                for name, x in ((vcol, v), (acol, a)):
                    if not (math.isfinite(x) and -1.0 <= x <= 1.0):
                        raise LabelFileError(
                            f"{p}, line {line}: {name} {x} is outside [-1, 1]; rescale it, or name the "
                            "columns valence_mean,arousal_mean if they are on DEAM's 1-9 scale"
                        )
            if not key:
                raise LabelFileError(f"{p}, line {line}: empty {key_col}")
            if key in labels:
                raise LabelFileError(f"{p}, line {line}: {key!r} is labelled twice; keep one row")
            labels[key] = (v, a)
    if not labels:
        raise LabelFileError(f"{p}: header but no label rows")
    return labels, scale


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LabelFileError(f"{path}: cannot read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise LabelFileError(f"{path}: not valid JSON ({exc}); fix the file or remove it") from exc
    if not isinstance(data, dict) or not data:
        raise LabelFileError(f"{path}: expected a non-empty JSON object {{\"<file>\": {{...}}}}")
    return data


def read_emotion_json(path: Path | str) -> dict[str, tuple[float, float]]:
    """Read ``emotion_labels.json`` (``{file: {"valence": v, "arousal": a}}``, v, a in [-1, 1])."""
    p = Path(path)
    out: dict[str, tuple[float, float]] = {}
    for key, entry in _read_json_object(p).items():
        try:
            v, a = float(entry["valence"]), float(entry["arousal"])
        except (TypeError, KeyError, ValueError) as exc:
            raise LabelFileError(
                f"{p}: entry {key!r} must be {{\"valence\": number, \"arousal\": number}}, got {entry!r}"
            ) from exc
        for name, x in (("valence", v), ("arousal", a)):
            if not (math.isfinite(x) and -1.0 <= x <= 1.0):
                raise LabelFileError(f"{p}: entry {key!r}: {name} {x} is outside [-1, 1]; rescale it")
        out[_norm_key(key)] = (v, a)
    return out


def read_drum_labels(path: Path | str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Read ``drum_labels.json`` → ``({key: float32 [K]}, label names sorted)``.

    Every entry must have the same label names and finite numeric values.
    """
    p = Path(path)
    out: dict[str, np.ndarray] = {}
    names: list[str] | None = None
    for key, entry in _read_json_object(p).items():
        if not isinstance(entry, dict) or not entry:
            raise LabelFileError(f"{p}: entry {key!r} must be an object of numeric labels, got {entry!r}")
        these = sorted(entry)
        if names is None:
            names = these
        elif these != names:
            raise LabelFileError(
                f"{p}: entry {key!r} has labels {these}, the first entry has {names}; "
                "give every file the same label names"
            )
        try:
            vals = np.array([float(entry[n]) for n in names], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise LabelFileError(f"{p}: entry {key!r}: labels must be numbers, got {entry!r}") from exc
        if not np.isfinite(vals).all():
            raise LabelFileError(f"{p}: entry {key!r}: labels must be finite, got {entry!r}")
        out[_norm_key(key)] = vals.astype(np.float32)
    assert names is not None
    return out, names


def _labelled_files(
    root: Path, files: list[Path], labels_path: Path | str | None, default_name: str, use_labels: bool,
    read: Callable[[Path], Mapping[str, Any]],
) -> tuple[bool, Path, list[tuple[Path, Any]], list[str], list[Path]]:
    """Find the optional label file and pair files with labels.

    Returns ``(labelled, label_path, [(file, label or None)], missing keys, unlabelled files)``;
    an explicit ``labels_path`` that does not exist is an error, a missing default file just
    means "no labels" (continuation mode).
    """
    lpath = Path(labels_path) if labels_path is not None else root / default_name
    if labels_path is not None and not lpath.is_file():
        raise MusicDatasetError(f"{lpath}: labels file not found; check the path")
    if not (use_labels and lpath.is_file()):
        return False, lpath, [(p, None) for p in files], [], []
    matched, missing, unlabelled = _match_labels(files, root, read(lpath), lpath)
    if missing:
        log.warning("%s: %d labelled file(s) not found (e.g. %s)", lpath, len(missing), missing[:3])
    return True, lpath, matched, missing, unlabelled


def _match_labels(
    files: Sequence[Path], root: Path, labels: Mapping[str, Any], source: Path
) -> tuple[list[tuple[Path, Any]], list[str], list[Path]]:
    """Pair label keys with files → (matched in discovery order, keys without file, files without key).

    A key matches a file's relative path, that path without its suffix, its name, or its stem.
    """
    index: dict[str, set[Path]] = {}
    for p in files:
        rel = relative_key(p, root)
        for k in (rel, rel.rsplit(".", 1)[0], p.name, p.stem):
            index.setdefault(k, set()).add(p)
    matched: dict[Path, Any] = {}
    missing: list[str] = []
    for key, value in labels.items():
        cands = sorted(index.get(key, ()))
        if not cands:
            missing.append(key)
            continue
        if len(cands) > 1:
            shown = ", ".join(relative_key(c, root) for c in cands[:3])
            raise LabelFileError(
                f"{source}: label key {key!r} matches {len(cands)} files ({shown}); "
                "use the file's relative path (with suffix) as its key"
            )
        p = cands[0]
        if p in matched:
            raise LabelFileError(f"{source}: {relative_key(p, root)} is labelled by two keys; keep one")
        matched[p] = value
    ordered = [(p, matched[p]) for p in files if p in matched]
    unlabelled = [p for p in files if p not in matched]
    return ordered, missing, unlabelled


# --------------------------------------------------------------------------------------------
# audio features


@functools.lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    import librosa

    return librosa.filters.mel(
        sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=0.0, fmax=SAMPLE_RATE / 2, htk=False, norm=None
    ).astype(np.float64)


def mel_band_centers() -> np.ndarray:
    """Centre frequency (Hz) of each of the 128 mel bands used by :func:`mel_features`."""
    import librosa

    return librosa.mel_frequencies(N_MELS + 2, fmin=0.0, fmax=SAMPLE_RATE / 2, htk=False)[1:-1]


def mel_features(audio: np.ndarray, sr: int) -> np.ndarray:
    """128 time-averaged mel bands of ``audio`` (``[C, N]`` or ``[N]`` at ``sr``), in [-1, 1].

    See the module docstring for the exact analysis and dB mapping. Raises
    :class:`AudioContentError` for empty or non-finite audio.
    """
    import librosa

    a = np.asarray(audio, dtype=np.float32)
    if a.size == 0:
        raise AudioContentError("audio has no samples; nothing to analyse")
    if not np.isfinite(a).all():
        raise AudioContentError("audio contains NaN or Inf samples")
    y = resample(to_channels(a, "mono"), int(sr), SAMPLE_RATE)[0]
    if y.size < N_FFT:
        y = np.pad(y, (0, N_FFT - y.size))
    spec = librosa.stft(y, n_fft=N_FFT, hop_length=HOP_LENGTH, window="hann", center=True, pad_mode="constant")
    power = (spec.real.astype(np.float64) ** 2 + spec.imag.astype(np.float64) ** 2) / (N_FFT / 4.0) ** 2
    mel = _mel_basis() @ power  # [128, frames]
    db = 10.0 * np.log10(np.maximum(mel.mean(axis=1), _POWER_FLOOR))
    return (np.clip(db, DB_FLOOR, 0.0) / (-DB_FLOOR / 2.0) + 1.0).astype(np.float32)


def _extract_emotion(path: str, params: Mapping[str, Any]) -> np.ndarray:
    audio, sr = read_audio(path)
    duration = params.get("audio_duration")
    if duration is not None:
        audio = audio[:, : max(1, int(round(float(duration) * sr)))]
    return mel_features(audio, sr)


# --------------------------------------------------------------------------------------------
# MIDI parsing and features


@dataclass(frozen=True)
class NoteArrays:
    """Notes as parallel arrays (seconds, MIDI pitch, velocity 0-127), in onset order."""

    starts: np.ndarray
    ends: np.ndarray
    pitches: np.ndarray
    velocities: np.ndarray

    def __len__(self) -> int:
        return int(self.starts.size)

    @classmethod
    def from_lists(
        cls, starts: Sequence[float], ends: Sequence[float], pitches: Sequence[int], velocities: Sequence[float]
    ) -> NoteArrays:
        """Build from sequences, sorted by (onset, pitch)."""
        s = np.asarray(starts, dtype=np.float64).reshape(-1)
        e = np.asarray(ends, dtype=np.float64).reshape(-1)
        p = np.asarray(pitches, dtype=np.int64).reshape(-1)
        v = np.asarray(velocities, dtype=np.float64).reshape(-1)
        if not (s.size == e.size == p.size == v.size):
            raise UsageError("starts, ends, pitches and velocities must have the same length")
        order = np.lexsort((p, s))
        return cls(s[order], e[order], p[order], v[order])

    def select(self, mask: np.ndarray) -> NoteArrays:
        return NoteArrays(self.starts[mask], self.ends[mask], self.pitches[mask], self.velocities[mask])


def load_midi(path: Path | str) -> Any:
    """Parse ``path`` with pretty_midi; :class:`MidiReadError` if it is missing, empty or not MIDI."""
    import pretty_midi

    p = Path(path)
    if not p.is_file():
        raise MidiReadError(f"{p}: file not found (or not a regular file); check the path")
    if p.stat().st_size == 0:
        raise MidiReadError(f"{p}: file is empty (0 bytes); re-export it or remove it")
    try:
        with warnings.catch_warnings():
            # pretty_midi warns about tempo/meta events on non-zero tracks, common and harmless.
            warnings.simplefilter("ignore", RuntimeWarning)
            return pretty_midi.PrettyMIDI(str(p))
    except Exception as exc:  # mido raises OSError, EOFError, KeyError, ValueError, IndexError...
        raise MidiReadError(
            f"{p}: cannot parse MIDI ({type(exc).__name__}: {exc}); re-export it or remove it"
        ) from exc


def midi_notes(pm: Any, *, drums: bool) -> NoteArrays:
    """All notes of the drum (``drums=True``) or non-drum instruments of a PrettyMIDI object."""
    s: list[float] = []
    e: list[float] = []
    p: list[int] = []
    v: list[int] = []
    for inst in pm.instruments:
        if bool(inst.is_drum) != drums:
            continue
        for n in inst.notes:
            s.append(n.start)
            e.append(n.end)
            p.append(n.pitch)
            v.append(n.velocity)
    return NoteArrays.from_lists(s, e, p, v)


def sustain_intervals(pm: Any) -> np.ndarray:
    """``[K, 2]`` (on, off) seconds where a non-drum track holds the sustain pedal (CC64 >= 64)."""
    out: list[tuple[float, float]] = []
    end_time = float(pm.get_end_time())
    for inst in pm.instruments:
        if inst.is_drum:
            continue
        down: float | None = None
        for cc in sorted((c for c in inst.control_changes if c.number == 64), key=lambda c: c.time):
            if cc.value >= 64 and down is None:
                down = float(cc.time)
            elif cc.value < 64 and down is not None:
                out.append((down, float(cc.time)))
                down = None
        if down is not None:
            out.append((down, max(end_time, down)))
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def _coverage(intervals: np.ndarray, t0: float, t1: float) -> float:
    """Seconds of [t0, t1] covered by the union of ``intervals``."""
    if intervals.size == 0 or t1 <= t0:
        return 0.0
    iv = intervals[np.argsort(intervals[:, 0])]
    total, cur_s, cur_e = 0.0, None, None
    for s, e in iv:
        s, e = max(s, t0), min(e, t1)
        if e <= s:
            continue
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return float(total)


def pitch_counts(pitches: np.ndarray) -> np.ndarray:
    """Number of notes at each of the 128 MIDI pitches (float64 ``[128]``)."""
    p = np.asarray(pitches, dtype=np.int64)
    return np.bincount(np.clip(p, 0, 127), minlength=128).astype(np.float64)


def _sq(x: float, c: float) -> float:
    return float(x / (x + c)) if x > 0 else 0.0


def dynamics_features(notes: NoteArrays, pedal: np.ndarray | None = None) -> np.ndarray:
    """The 16 dynamics features of ``notes`` (table in the module docstring), float32 ``[16]``.

    ``pedal``: ``[K, 2]`` sustain-pedal (on, off) intervals in seconds (:func:`sustain_intervals`).
    """
    n = len(notes)
    if n == 0:
        raise UsageError("dynamics_features needs at least one note")
    v = notes.velocities.astype(np.float64)
    s, e = notes.starts, notes.ends
    d = np.maximum(e - s, 0.0)
    t0 = float(s.min())
    span = max(float(e.max()) - t0, _MIN_SPAN)
    mean, std = float(v.mean()), float(v.std())
    hist = np.bincount(np.clip(v.astype(np.int64) // 32, 0, 3), minlength=4) / n
    u = (s - t0) / span
    var_u = float(u.var())
    trend = 0.0
    if var_u > 1e-12:
        trend = float(np.clip(((u - u.mean()) * (v / 127.0 - v.mean() / 127.0)).mean() / var_u, -1.0, 1.0))
    order = np.lexsort((notes.pitches, s))
    local = float(np.abs(np.diff(v[order])).mean() / 127.0) if n > 1 else 0.0
    pedal_frac = 0.0
    if pedal is not None and np.size(pedal):
        pedal_frac = _coverage(np.asarray(pedal, dtype=np.float64).reshape(-1, 2), t0, t0 + span) / span
    out = [
        mean / 127.0,
        std / 127.0,
        (float(v.max()) - float(v.min())) / 127.0,
        float(np.median(v)) / 127.0,
        *hist.tolist(),
        _sq(float(d.mean()), 0.5),
        _sq(float(d.std()), 0.5),
        _sq(float(np.median(d)), 0.5),
        float((v > mean + std).mean()) if std > 0 else 0.0,
        _sq(n / span, 10.0),
        trend,
        local,
        min(max(pedal_frac, 0.0), 1.0),
    ]
    return np.asarray(out, dtype=np.float32)


def _first_half_mask(starts: np.ndarray) -> np.ndarray:
    """Notes whose onset is before the midpoint of the first and last onsets."""
    if starts.size == 0:
        return np.zeros(0, dtype=bool)
    t_mid = 0.5 * (float(starts.min()) + float(starts.max()))
    return starts < t_mid


def _dynamics_record(notes: NoteArrays, pedal: np.ndarray | None) -> np.ndarray:
    """``[3, 16]``: whole piece, first half, second half (NaN rows where a half is empty)."""
    rec = np.full((3, 16), np.nan, dtype=np.float32)
    rec[0] = dynamics_features(notes, pedal)
    first = _first_half_mask(notes.starts)
    for row, mask in ((1, first), (2, ~first)):
        if mask.any():
            rec[row] = dynamics_features(notes.select(mask), pedal)
    return rec


def _melody_record(notes: NoteArrays) -> np.ndarray:
    """``[3, 128]`` pitch counts: whole piece, first half, second half."""
    first = _first_half_mask(notes.starts)
    return np.stack(
        [pitch_counts(notes.pitches), pitch_counts(notes.pitches[first]), pitch_counts(notes.pitches[~first])]
    ).astype(np.float32)


def _drum_class(pitches: np.ndarray) -> np.ndarray:
    cls = np.full(pitches.shape, len(_DRUM_CLASSES), dtype=np.int64)
    for i, members in enumerate(_DRUM_CLASSES):
        cls[np.isin(pitches, members)] = i
    return cls


def _grid(onsets: np.ndarray, bpm: float) -> tuple[np.ndarray, np.ndarray, float]:
    step = 60.0 / (4.0 * float(bpm))
    pos_f = onsets / step
    k = np.floor(pos_f + 0.5).astype(np.int64)
    return k, pos_f - k, step


def groove_features(
    onsets: np.ndarray,
    pitches: np.ndarray,
    velocities: np.ndarray,
    bpm: float,
    steps_per_bar: int = 16,
    n_bars: int | None = None,
) -> np.ndarray:
    """The 32 groove features of drum onsets (table in the module docstring), float32 ``[32]``.

    ``onsets`` in seconds from a bar line (MIDI time 0), ``bpm`` the tempo defining the 16th grid.
    With ``n_bars`` the bars are counted from onset time 0 (bars ``0 .. n_bars-1``); without it,
    ``B`` spans the first to the last onset's bar.
    """
    on = np.asarray(onsets, dtype=np.float64).reshape(-1)
    pit = np.asarray(pitches, dtype=np.int64).reshape(-1)
    vel = np.asarray(velocities, dtype=np.float64).reshape(-1)
    n = on.size
    if n == 0 or pit.size != n or vel.size != n:
        raise UsageError("groove_features needs at least one onset and equal-length arrays")
    if not (bpm > 0) or steps_per_bar < 1:
        raise UsageError(f"bpm must be > 0 and steps_per_bar >= 1, got {bpm}, {steps_per_bar}")
    spb = int(steps_per_bar)
    k, dev, _ = _grid(on, bpm)
    bar = np.floor_divide(k, spb)
    pos = k - bar * spb
    if n_bars is None:
        b0, nb = int(bar.min()), int(bar.max() - bar.min() + 1)
    else:
        b0, nb = 0, max(int(n_bars), 1)
    rel = np.clip(bar - b0, 0, nb - 1)
    cls = _drum_class(pit)

    def per_class(i: int, with_occ: bool) -> list[float]:
        m = cls == i
        cnt = int(m.sum())
        if cnt == 0:
            return [0.0, 0.0, 0.0, 0.0] if with_occ else [0.0, 0.0]
        hits = _sq(cnt / nb, 4.0)
        vm = float(vel[m].mean()) / 127.0
        if not with_occ:
            return [hits, vm]
        return [hits, len(np.unique(pos[m])) / spb, vm, float(vel[m].std()) / 127.0]

    mean, std = float(vel.mean()), float(vel.std())
    snare, kick, hats = cls == 1, cls == 0, cls == 2
    # repetition: Jaccard of consecutive bars' (class, position) sets
    tokens = cls * spb + pos
    bar_sets = [set(tokens[rel == b].tolist()) for b in range(nb)]
    if nb < 2:
        repetition = 1.0
    else:
        sims = []
        for a_set, b_set in zip(bar_sets[:-1], bar_sets[1:]):
            union = a_set | b_set
            sims.append(1.0 if not union else len(a_set & b_set) / len(union))
        repetition = float(np.mean(sims))
    counts = np.bincount(rel, minlength=nb).astype(np.float64)
    cv = float(counts.std() / counts.mean())
    out = [
        2.0 * float(np.abs(dev).mean()),
        2.0 * float(dev.std()),
        2.0 * float(dev.mean()),
        *per_class(0, True),
        *per_class(1, True),
        *per_class(2, True),
        *per_class(3, False),
        *per_class(4, False),
        _sq(n / nb, 16.0),
        float((pos % 4 != 0).mean()),
        float((pos % 2 == 1).mean()),
        mean / 127.0,
        std / 127.0,
        float((vel > mean + std).mean()) if std > 0 else 0.0,
        (min(max(float(bpm), 40.0), 240.0) - 40.0) / 200.0,
        float((pos[snare] % 8 == 4).mean()) if snare.any() else 0.0,
        float((pos[kick] % 8 == 0).mean()) if kick.any() else 0.0,
        repetition,
        _sq(cv, 1.0),
        float(np.isin(pit[hats], HIHAT_OPEN).mean()) if hats.any() else 0.0,
        float((vel < 40).mean()),
    ]
    return np.asarray(out, dtype=np.float32)


def _groove_record(onsets: np.ndarray, pitches: np.ndarray, velocities: np.ndarray, bpm: float, spb: int) -> np.ndarray:
    """``[3, 32]``: whole, first floor(B/2) bars, remaining bars (NaN halves when B < 2)."""
    rec = np.full((3, 32), np.nan, dtype=np.float32)
    rec[0] = groove_features(onsets, pitches, velocities, bpm, spb)
    k, _, step = _grid(onsets, bpm)
    bar = np.floor_divide(k, spb)
    b_min, b_max = int(bar.min()), int(bar.max())
    nb = b_max - b_min + 1
    if nb >= 2:
        h = nb // 2
        for row, lo, count in ((1, b_min, h), (2, b_min + h, nb - h)):
            m = (bar >= lo) & (bar < lo + count)
            rec[row] = groove_features(onsets[m] - lo * spb * step, pitches[m], velocities[m], bpm, spb, count)
    return rec


def _extract_melody(path: str, params: Mapping[str, Any]) -> np.ndarray:
    notes = midi_notes(load_midi(path), drums=False)
    if len(notes) == 0:
        raise _SkipFile("no non-drum notes")
    return _melody_record(notes)


def _extract_dynamics(path: str, params: Mapping[str, Any]) -> np.ndarray:
    pm = load_midi(path)
    notes = midi_notes(pm, drums=False)
    if len(notes) == 0:
        raise _SkipFile("no non-drum notes")
    return _dynamics_record(notes, sustain_intervals(pm))


def _extract_groove(path: str, params: Mapping[str, Any]) -> np.ndarray:
    pm = load_midi(path)
    notes = midi_notes(pm, drums=True)
    if len(notes) == 0:
        raise _SkipFile("no drum notes (is_drum / channel 10)")
    _, tempi = pm.get_tempo_changes()
    bpm = float(tempi[0]) if len(tempi) else 120.0
    spb = 16
    if pm.time_signature_changes:
        ts = pm.time_signature_changes[0]
        spb = max(1, int(round(16 * ts.numerator / ts.denominator)))
    return _groove_record(notes.starts, notes.pitches, notes.velocities, bpm, spb)


# --------------------------------------------------------------------------------------------
# extraction with cache


_SKIPPABLE = (_SkipFile, MidiReadError, AudioReadError, AudioContentError)


def _cache_key(kind: str, path: Path, params: Mapping[str, Any]) -> str:
    st = path.stat()
    material = json.dumps(
        {"kind": kind, "version": FEATURE_VERSION, "path": str(path.resolve()), "size": st.st_size,
         "mtime_ns": st.st_mtime_ns, "params": dict(params)},
        sort_keys=True,
    )
    return hashlib.sha1(material.encode("utf-8")).hexdigest()


@dataclass
class _Extraction:
    records: dict[Path, np.ndarray]
    skipped: list[tuple[Path, str]]
    cache_hits: int  # files served by the cache
    extracted: int  # files opened and decoded this run (including those then skipped)


def _extract_all(
    files: Sequence[Path],
    *,
    kind: str,
    extractor: Callable[[str, Mapping[str, Any]], np.ndarray],
    params: Mapping[str, Any],
    shape: tuple[int, ...],
    cache_dir: Path | None,
    workers: int,
    progress: bool,
) -> _Extraction:
    """Run ``extractor`` on every file not in the cache; skip (and log) unusable files."""
    records: dict[Path, np.ndarray] = {}
    skipped: list[tuple[Path, str]] = []
    pending: list[tuple[Path, Path | None]] = []
    hits = 0
    for p in files:
        cpath = cache_dir / f"{_cache_key(kind, p, params)}.npy" if cache_dir is not None else None
        if cpath is not None and cpath.is_file():
            try:
                arr = np.load(cpath, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                log.warning("%s: unreadable cache entry %s (%s); recomputing", p, cpath, exc)
            else:
                if arr.shape == shape and arr.dtype == np.float32:
                    records[p] = arr
                    hits += 1
                    continue
                log.warning("%s: cache entry %s has shape %s, expected %s; recomputing", p, cpath, arr.shape, shape)
        pending.append((p, cpath))

    cache_ok = cache_dir is not None

    def done(p: Path, cpath: Path | None, arr: np.ndarray | None, reason: str | None) -> None:
        nonlocal cache_ok
        if arr is None:
            log.warning("%s: skipped (%s)", p, reason)
            skipped.append((p, str(reason)))
            return
        arr = np.asarray(arr, dtype=np.float32)
        records[p] = arr
        if cpath is not None and cache_ok:
            try:
                with atomic_path(cpath) as tmp, open(tmp, "wb") as fh:
                    np.save(fh, arr, allow_pickle=False)
            except OSError as exc:
                cache_ok = False
                log.warning("cannot write feature cache in %s (%s); continuing without it "
                            "(pass cache_dir= a writable folder)", cpath.parent, exc)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(pending), desc=f"{kind} features", unit="file", disable=not progress or not pending)
    try:
        if workers > 0 and len(pending) > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(extractor, str(p), dict(params)): (p, c) for p, c in pending}
                results: dict[Path, tuple[np.ndarray | None, str | None]] = {}
                for fut in as_completed(futures):
                    p, _ = futures[fut]
                    try:
                        results[p] = (fut.result(), None)
                    except _SKIPPABLE as exc:
                        results[p] = (None, str(exc))
                    bar.update(1)
            for p, c in pending:  # commit in file order: deterministic logs and skip list
                done(p, c, *results[p])
        else:
            for p, c in pending:
                try:
                    arr, reason = extractor(str(p), params), None
                except _SKIPPABLE as exc:
                    arr, reason = None, str(exc)
                done(p, c, arr, reason)
                bar.update(1)
    finally:
        bar.close()
    return _Extraction(records, skipped, hits, len(pending))


# --------------------------------------------------------------------------------------------
# datasets


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

    Subclasses build the arrays from a folder in ``__init__`` (see the module docstring) or from a
    generator in :meth:`synthetic`. ``ds[i]`` is ``{"features": [F], "target": [Y]}`` (float32
    tensors sharing memory with the arrays), so the default DataLoader collate gives
    ``{"features": [B, F], "target": [B, Y]}``.
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
        """Build from ``<datasets_dir>/<SUBFOLDER>`` (e.g. ``datasets/training/audio``)."""
        return cls(Path(datasets_dir) / cls.SUBFOLDER, **kwargs)

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


def _emotion_names() -> list[str]:
    return [f"va_rbf_v{_GRID[i]:+.2f}_a{_GRID[j]:+.2f}" for i in range(8) for j in range(8)]


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
        root = self._resolve_root(root, "MIDI files (*.mid)")
        files = self._discover(root, MIDI_EXTENSIONS, "MIDI")
        labelled, lpath, matched, missing, unlabelled = _labelled_files(
            root, files, labels_path, "emotion_labels.json", use_labels, read_emotion_json)
        ext = _extract_all(
            [p for p, _ in matched], kind=self.NAME, extractor=_extract_melody, params={},
            shape=(3, 128), cache_dir=self._cache_dir(root, cache, cache_dir), workers=workers, progress=progress,
        )
        skipped = list(ext.skipped)
        names = [f"pitch_{p:03d}" for p in range(128)]
        rows = _halves_rows(
            matched, ext, skipped, labelled=labelled,
            view=lambda rec: rec / np.maximum(rec.sum(axis=1, keepdims=True), 1.0),
            label_target=lambda va: emotion_embedding(*va),
            too_short=lambda rec: rec[1].sum() == 0 or rec[2].sum() == 0,
            short_reason="too short for the continuation target (needs notes in both halves)")
        if labelled:
            tnames, mode = _emotion_names(), "labels"
            desc = "emotion_embedding(valence, arousal) from emotion_labels.json"
        else:
            tnames = [f"next_{n}" for n in names]
            desc = "pitch distribution of the second half of the piece (input: first half)"
            mode = "continuation"
        self._setup(
            root=root, mode=mode, features=np.array(rows.features).reshape(-1, 128),
            targets=np.array(rows.targets).reshape(-1, len(tnames)), feature_names=names, target_names=tnames,
            target_description=desc, paths=rows.paths, whole_features=np.array(rows.whole).reshape(-1, 128),
            skipped=skipped, unlabelled=unlabelled, missing=missing,
            cache_hits=ext.cache_hits, extracted=ext.extracted,
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
        root = self._resolve_root(root, "Groove MIDI drum files")
        files = self._discover(root, MIDI_EXTENSIONS, "MIDI")
        label_names: list[str] = []

        def read(path: Path) -> dict[str, np.ndarray]:
            labels, label_names[:] = read_drum_labels(path)
            return labels

        labelled, lpath, matched, missing, unlabelled = _labelled_files(
            root, files, labels_path, "drum_labels.json", use_labels, read)
        ext = _extract_all(
            [p for p, _ in matched], kind=self.NAME, extractor=_extract_groove, params={}, shape=(3, 32),
            cache_dir=self._cache_dir(root, cache, cache_dir), workers=workers, progress=progress,
        )
        skipped = list(ext.skipped)
        rows = _halves_rows(
            matched, ext, skipped, labelled=labelled, view=lambda rec: rec, label_target=lambda lab: lab,
            too_short=lambda rec: not np.isfinite(rec).all(),
            short_reason="too short for the continuation target (spans fewer than 2 bars)")
        if labelled:
            tnames, mode = list(label_names), "labels"
            desc = f"drum_labels.json values ({', '.join(label_names)})"
        else:
            tnames, mode = [f"next_{x}" for x in GROOVE_FEATURE_NAMES], "continuation"
            desc = "32 groove features of the second half of the bars (input: first half)"
        self._setup(
            root=root, mode=mode, features=np.array(rows.features).reshape(-1, 32),
            targets=np.array(rows.targets).reshape(-1, len(tnames)), feature_names=list(GROOVE_FEATURE_NAMES),
            target_names=tnames, target_description=desc, paths=rows.paths,
            whole_features=np.array(rows.whole).reshape(-1, 32), skipped=skipped, unlabelled=unlabelled,
            missing=missing, cache_hits=ext.cache_hits, extracted=ext.extracted,
        )
        if labelled:
            const = [n for j, n in enumerate(tnames) if float(np.ptp(self.targets[:, j])) == 0.0]
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
