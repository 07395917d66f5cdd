"""Per-file features of the music datasets, and the records the datasets are built from.

Emotion :func:`mel_features`, melody :func:`pitch_counts`, dynamics :func:`dynamics_features` (16),
groove :func:`groove_features` (32); each docstring gives the exact formulas and ranges. An
``_extract_*`` function returns a record ``[3, F]``: whole piece, first half, second half (split at
``t_mid = (first onset + last onset) / 2``, Groove at bar ``floor(B/2)``); an unformable half is a
NaN row. More: README.md, "The music-model suite".
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.midi import MidiReadError, read_midi
from workflow.audio import read_audio, resample, to_channels
from workflow.errors import AudioContentError, UsageError, WorkflowError

__all__ = [
    "SAMPLE_RATE",
    "N_FFT",
    "HOP_LENGTH",
    "N_MELS",
    "DB_FLOOR",
    "DEFAULT_AUDIO_DURATION",
    "MIDI_EXTENSIONS",
    "DYNAMICS_FEATURE_NAMES",
    "GROOVE_FEATURE_NAMES",
    "MidiReadError",
    "NoteArrays",
    "mel_band_centers",
    "mel_features",
    "load_midi",
    "midi_notes",
    "sustain_intervals",
    "pitch_counts",
    "dynamics_features",
    "groove_features",
]

#: Emotion audio analysis parameters (see :func:`mel_features`).
SAMPLE_RATE = 22050
N_FFT = 2048
HOP_LENGTH = 512
N_MELS = 128
DB_FLOOR = -80.0
DEFAULT_AUDIO_DURATION = 45.0
_POWER_FLOOR = 1e-10

MIDI_EXTENSIONS: tuple[str, ...] = (".mid", ".midi")
#: Bumped whenever a feature definition changes, so stale cache entries are not reused.
FEATURE_VERSION = 1

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


class _SkipFile(WorkflowError):
    """Raised by a per-file extractor: the file is readable but unusable (reason in message)."""


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

    The emotion dataset reads audio with :func:`workflow.audio.read_audio` and cuts it to its
    first ``audio_duration`` seconds (default 45 s, a DEAM clip) first. Here: mixed to mono,
    resampled to 22050 Hz (soxr), an STFT (n_fft 2048, hop 512, periodic Hann, centred,
    zero-padded; audio shorter than 2048 samples is zero-padded to 2048). Power is divided by
    ``(n_fft/4)**2`` so a full-scale sine centred on an STFT bin has peak-bin power 1 (0 dB). A
    128-band mel filter bank (librosa, Slaney mel scale, 0–11025 Hz, unnormalised triangles of
    peak 1) gives mel power, averaged over all frames (power, not dB, is averaged). Then::

        dB_b   = 10 * log10(max(mean_power_b, 1e-10))
        x_b    = clip(dB_b, -80, 0) / 40 + 1            # -80 dB → -1, 0 dB → +1

    Feature ``mel_<b>`` is ``x_b`` of band ``b``, centred at ``mel_band_centers()[b]``. An
    absolute reference (not the per-clip maximum) keeps overall loudness, an arousal cue.
    Raises :class:`AudioContentError` for empty or non-finite audio.
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


#: The MIDI reader of the datasets (:func:`training.midi.read_midi`); a missing, empty or
#: unparsable file raises :class:`MidiReadError`, which the datasets turn into a skip.
load_midi = read_midi


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
    """The 16 dynamics features of ``notes`` (table below), float32 ``[16]``.

    ``pedal``: ``[K, 2]`` sustain-pedal (on, off) intervals in seconds (:func:`sustain_intervals`).

    Over the ``n`` non-drum notes with velocity ``v_i``, onset ``s_i``, offset ``e_i``, duration
    ``d_i = max(e_i - s_i, 0)``; span ``T = max(max e - min s, 0.001)`` s; ``std`` is the population
    standard deviation; ``sq(x, c) = x / (x + c)`` squashes a non-negative quantity to [0, 1) (``c``
    maps to 0.5).

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


@dataclass(frozen=True)
class _GrooveGrid:
    """Drum onsets placed on the 16th grid: per-onset deviation, position, bar (0-based) and class."""

    pit: np.ndarray
    vel: np.ndarray
    dev: np.ndarray
    pos: np.ndarray
    rel: np.ndarray
    cls: np.ndarray
    spb: int
    nb: int


def _groove_grid(
    onsets: np.ndarray, pitches: np.ndarray, velocities: np.ndarray, bpm: float, steps_per_bar: int, n_bars: int | None
) -> _GrooveGrid:
    """Validate :func:`groove_features`' inputs and place the onsets on the grid."""
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
    return _GrooveGrid(pit, vel, dev, pos, rel, _drum_class(pit), spb, nb)


def _groove_timing(dev: np.ndarray) -> list[float]:
    """Features 0-2: grid deviation magnitude, spread and sign."""
    return [2.0 * float(np.abs(dev).mean()), 2.0 * float(dev.std()), 2.0 * float(dev.mean())]


def _groove_class_stats(g: _GrooveGrid, i: int, with_occ: bool) -> list[float]:
    """Hits per bar, [occupancy,] velocity mean[, velocity std] of drum class ``i``."""
    m = g.cls == i
    cnt = int(m.sum())
    if cnt == 0:
        return [0.0, 0.0, 0.0, 0.0] if with_occ else [0.0, 0.0]
    hits = _sq(cnt / g.nb, 4.0)
    vm = float(g.vel[m].mean()) / 127.0
    if not with_occ:
        return [hits, vm]
    return [hits, len(np.unique(g.pos[m])) / g.spb, vm, float(g.vel[m].std()) / 127.0]


def _groove_repetition(g: _GrooveGrid) -> float:
    """Mean Jaccard similarity of consecutive bars' (class, position) sets; 1 for a single bar."""
    tokens = g.cls * g.spb + g.pos
    bar_sets = [set(tokens[g.rel == b].tolist()) for b in range(g.nb)]
    if g.nb < 2:
        return 1.0
    sims = []
    for a_set, b_set in zip(bar_sets[:-1], bar_sets[1:]):
        union = a_set | b_set
        sims.append(1.0 if not union else len(a_set & b_set) / len(union))
    return float(np.mean(sims))


def _groove_ensemble(g: _GrooveGrid, bpm: float) -> list[float]:
    """Features 19-31: density, syncopation, velocity, tempo, backbeat, repetition, hi-hat, ghosts."""
    pos, vel = g.pos, g.vel
    mean, std = float(vel.mean()), float(vel.std())
    snare, kick, hats = g.cls == 1, g.cls == 0, g.cls == 2
    counts = np.bincount(g.rel, minlength=g.nb).astype(np.float64)
    cv = float(counts.std() / counts.mean())
    return [
        _sq(vel.size / g.nb, 16.0),
        float((pos % 4 != 0).mean()),
        float((pos % 2 == 1).mean()),
        mean / 127.0,
        std / 127.0,
        float((vel > mean + std).mean()) if std > 0 else 0.0,
        (min(max(float(bpm), 40.0), 240.0) - 40.0) / 200.0,
        float((pos[snare] % 8 == 4).mean()) if snare.any() else 0.0,
        float((pos[kick] % 8 == 0).mean()) if kick.any() else 0.0,
        _groove_repetition(g),
        _sq(cv, 1.0),
        float(np.isin(g.pit[hats], HIHAT_OPEN).mean()) if hats.any() else 0.0,
        float((vel < 40).mean()),
    ]


def groove_features(
    onsets: np.ndarray,
    pitches: np.ndarray,
    velocities: np.ndarray,
    bpm: float,
    steps_per_bar: int = 16,
    n_bars: int | None = None,
) -> np.ndarray:
    """The 32 groove features of drum onsets (table below), float32 ``[32]``.

    ``onsets`` in seconds from a bar line (MIDI time 0), ``bpm`` the tempo defining the 16th grid.
    With ``n_bars`` the bars are counted from onset time 0 (bars ``0 .. n_bars-1``); without it,
    ``B`` spans the first to the last onset's bar.

    Over the drum-track (``is_drum``) notes, with the MIDI's first tempo ``bpm`` (pretty_midi's 120
    if none; later tempo changes are ignored — Groove files have one) and first time signature
    ``num/den`` (4/4 if none). Grid step ``δ = 60 / (4 bpm)`` s (a 16th note), ``steps_per_bar S =
    round(16 num / den)``. Each onset ``t`` gets step ``k = floor(t/δ + 1/2)``, deviation ``dev =
    t/δ - k`` in [-1/2, 1/2), bar ``k // S`` and position ``pos = k mod S``; ``B`` = bars from the
    first to the last onset's bar (for the continuation halves: that half's bar count). Drum classes
    (General MIDI + Groove's Roland extras): kick {35, 36}; snare {37, 38, 40}; hi-hat {42, 44, 46,
    22, 26} (open: 46, 26); toms {41, 43, 45, 47, 48, 50, 58}; cymbals {49, 51, 52, 53, 55, 57, 59};
    anything else "other". ``sq`` as above; empty classes give 0 for their stats.

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
    """
    g = _groove_grid(onsets, pitches, velocities, bpm, steps_per_bar, n_bars)
    out = [
        *_groove_timing(g.dev),
        *_groove_class_stats(g, 0, True),
        *_groove_class_stats(g, 1, True),
        *_groove_class_stats(g, 2, True),
        *_groove_class_stats(g, 3, False),
        *_groove_class_stats(g, 4, False),
        *_groove_ensemble(g, bpm),
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
