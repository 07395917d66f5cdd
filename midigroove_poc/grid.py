"""Drum MIDI → frame grids at the codec frame rate: the expressive grid and the drumgrid baseline.

A hit lands on the frame containing it (``f = floor((h - start_s) * fps)``), and belongs to a
window iff ``start_s <= h < start_s + duration_s`` (also for :func:`window_onsets`).
:func:`expressive_grid` keeps per fine lane onset, sub-frame offset and velocity, plus cymbal decay,
hi-hat openness, beat/bar phase and bpm (``[T, 52]``); :func:`drum_grid` keeps hit + velocity of
the 9 GrooVAE classes on the nearest 16th (``[T, 18]``). Every column: README.md, "midigroove_poc".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.midi import MidiReadError, read_midi

from .drums import FINE_LANES, GROOVAE_CLASSES, SUSTAIN_LANES, pitch_to_groovae, pitch_to_lane

log = logging.getLogger(__name__)

__all__ = [
    "BPM_SCALE",
    "DRUM_GRID_FEATURES",
    "DrumEvents",
    "EXPRESSIVE_FEATURES",
    "EXPRESSIVE_FEATURE_DOCS",
    "MidiReadError",
    "OFFSET_COLUMNS",
    "ONSET_COLUMNS",
    "SUSTAIN_TAU_S",
    "VELOCITY_COLUMNS",
    "drum_grid",
    "expressive_grid",
    "frame_position",
    "load_drum_events",
    "num_frames",
    "window_onsets",
]

HAT_CC = 4  # MIDI CC number of the hi-hat control pedal (Roland "FOOT")
BPM_SCALE = 240.0
FRAME_EPS = 1e-6  # in frames: a hit this close below a frame boundary counts as the next frame

#: Decay time constant (seconds) of each sustain lane's ring.
SUSTAIN_TAU_S: dict[str, float] = {
    "hat_open": 0.35, "crash": 1.5, "ride_bow": 0.8, "ride_bell": 1.2,
}  # fmt: skip

_N_LANES = len(FINE_LANES)
_N_CLASSES = len(GROOVAE_CLASSES)
_CHOKE_LANES = ("hat_closed", "hat_pedal")  # a hit here closes a ringing open hi-hat

EXPRESSIVE_FEATURES: list[str] = (
    [f"onset_{lane}" for lane in FINE_LANES]
    + [f"offset_{lane}" for lane in FINE_LANES]
    + [f"vel_{lane}" for lane in FINE_LANES]
    + [f"sustain_{lane}" for lane in SUSTAIN_LANES]
    + ["hat_openness", "beat_sin", "beat_cos", "bar_sin", "bar_cos", "bpm"]
)
ONSET_COLUMNS = slice(0, _N_LANES)
OFFSET_COLUMNS = slice(_N_LANES, 2 * _N_LANES)
VELOCITY_COLUMNS = slice(2 * _N_LANES, 3 * _N_LANES)
_SUSTAIN0 = 3 * _N_LANES
_MISC0 = _SUSTAIN0 + len(SUSTAIN_LANES)

#: One-line meaning of every expressive column (for dataset cards and --help).
EXPRESSIVE_FEATURE_DOCS: dict[str, str] = {
    **{f"onset_{lane}": f"1 on the frame containing a {lane} hit" for lane in FINE_LANES},
    **{
        f"offset_{lane}": f"{lane} hit position in its frame, frames from the centre, [-0.5, 0.5)"
        for lane in FINE_LANES
    },
    **{f"vel_{lane}": f"{lane} hit velocity / 127" for lane in FINE_LANES},
    **{
        f"sustain_{lane}": (
            f"{lane} ring since its last hit: vel/127 * exp(-dt / {SUSTAIN_TAU_S[lane]} s)"
        )
        for lane in SUSTAIN_LANES
    },
    "hat_openness": "1 - CC4/127 (Roland hi-hat pedal: 1 = open, 0 = closed)",
    "beat_sin": "sin(2π beat phase) at the frame centre",
    "beat_cos": "cos(2π beat phase) at the frame centre",
    "bar_sin": "sin(2π bar phase) at the frame centre",
    "bar_cos": "cos(2π bar phase) at the frame centre",
    "bpm": f"tempo / {BPM_SCALE:g}",
}

DRUM_GRID_FEATURES: list[str] = [f"hit_{c}" for c in GROOVAE_CLASSES] + [
    f"vel_{c}" for c in GROOVAE_CLASSES
]

_LANE_OF_PITCH = np.array([pitch_to_lane(p) for p in range(128)], dtype=np.int64)
_CLASS_OF_PITCH = np.array(
    [-1 if pitch_to_groovae(p) is None else pitch_to_groovae(p) for p in range(128)],
    dtype=np.int64,
)


def _as_1d(values: Iterable | np.ndarray, dtype: type, name: str) -> np.ndarray:
    """A 1-D array of ``dtype`` (ValueError naming the field otherwise)."""
    arr = np.asarray(values, dtype=dtype)
    if arr.ndim != 1:
        raise ValueError(f"DrumEvents.{name} must be 1-D, got shape {arr.shape}")
    return arr


@dataclass
class DrumEvents:
    """The drum hits (seconds, MIDI pitch, velocity) and hi-hat CC4 events of a performance.

    Arrays are converted on construction and sorted by time, so every consumer can rely on it.
    """

    times: np.ndarray
    pitches: np.ndarray
    velocities: np.ndarray
    cc4_times: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    cc4_values: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        times = _as_1d(self.times, np.float64, "times")
        pitches = _as_1d(self.pitches, np.int64, "pitches")
        velocities = _as_1d(self.velocities, np.int64, "velocities")
        if not (len(times) == len(pitches) == len(velocities)):
            raise ValueError(
                "DrumEvents: times, pitches and velocities must have the same length, got "
                f"{len(times)}, {len(pitches)}, {len(velocities)}"
            )
        cc4_times = _as_1d(self.cc4_times, np.float64, "cc4_times")
        cc4_values = _as_1d(self.cc4_values, np.int64, "cc4_values")
        if len(cc4_times) != len(cc4_values):
            raise ValueError(
                f"DrumEvents: cc4_times and cc4_values differ in length "
                f"({len(cc4_times)} vs {len(cc4_values)})"
            )
        order = np.argsort(times, kind="stable")
        self.times, self.pitches, self.velocities = times[order], pitches[order], velocities[order]
        order = np.argsort(cc4_times, kind="stable")
        self.cc4_times, self.cc4_values = cc4_times[order], cc4_values[order]

    @classmethod
    def from_hits(
        cls,
        hits: Iterable[tuple[float, int, int]],
        cc4: Iterable[tuple[float, int]] = (),
    ) -> DrumEvents:
        """Build from ``(time_s, pitch, velocity)`` tuples and optional ``(time_s, value)`` CC4s."""
        h = np.asarray(list(hits), dtype=np.float64).reshape(-1, 3)
        c = np.asarray(list(cc4), dtype=np.float64).reshape(-1, 2)
        return cls(
            h[:, 0], np.rint(h[:, 1]).astype(np.int64), np.rint(h[:, 2]).astype(np.int64),
            c[:, 0], np.rint(c[:, 1]).astype(np.int64),
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.times)


def load_drum_events(midi_path: Path | str) -> DrumEvents:
    """Read the drum notes and hi-hat CC4 events of a MIDI file (tempo map applied by pretty_midi).

    Notes come from the drum instruments (MIDI channel 10); a file without any drum instrument
    (a drum part saved on another channel) falls back to all instruments, with a warning.
    """
    path = Path(midi_path)
    pm = read_midi(path, fix="re-extract it from the dataset archive, or filter its row out",
                   missing_fix="check the dataset root / CSV paths")
    instruments = [inst for inst in pm.instruments if inst.is_drum]
    if not instruments:
        instruments = list(pm.instruments)
        if instruments:
            log.warning("%s: no drum-channel instrument; reading all %d instruments as drums",
                        path, len(instruments))  # fmt: skip
    notes = [n for inst in instruments for n in inst.notes]
    if not notes:
        raise MidiReadError(
            f"{path}: the MIDI file has no notes; it cannot be turned into a drum grid — "
            "filter its row out of the CSV"
        )
    ccs = [c for inst in instruments for c in inst.control_changes if c.number == HAT_CC]
    return DrumEvents(
        times=np.array([n.start for n in notes], np.float64),
        pitches=np.array([n.pitch for n in notes], np.int64),
        velocities=np.array([n.velocity for n in notes], np.int64),
        cc4_times=np.array([c.time for c in ccs], np.float64),
        cc4_values=np.array([c.value for c in ccs], np.int64),
    )


def num_frames(duration_s: float, fps: float) -> int:
    """Number of codec frames in ``duration_s`` seconds: ``duration_s * fps`` rounded (half up)."""
    if duration_s < 0 or fps <= 0:
        raise ValueError(f"need duration_s >= 0 and fps > 0, got {duration_s}, {fps}")
    return int(math.floor(duration_s * fps + 0.5))


def frame_position(times: np.ndarray, start_s: float, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Frame index (int64, may be <0 or >=T) and offset in [-0.5, 0.5) of absolute times."""
    x = (np.asarray(times, np.float64) - start_s) * fps
    frames = np.floor(x + FRAME_EPS).astype(np.int64)
    offsets = np.clip(x - frames - 0.5, -0.5, 0.5 - FRAME_EPS)
    return frames, offsets


def _check_window(start_s: float, duration_s: float, fps: float, bpm: float | None) -> int:
    """Validate a window and return its frame count."""
    if not (math.isfinite(start_s) and math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"need a finite window with duration_s > 0, got {start_s}, {duration_s}")
    if bpm is not None and not (math.isfinite(bpm) and bpm > 0):
        raise ValueError(f"bpm must be a positive number, got {bpm!r}")
    return num_frames(duration_s, fps)


def _first_per_cell(cells: np.ndarray, velocities: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Indices of the loudest (then earliest) event of each distinct cell."""
    order = np.lexsort((times, -velocities, cells))
    _, first = np.unique(cells[order], return_index=True)
    return order[first]


def expressive_grid(
    events: DrumEvents,
    start_s: float,
    duration_s: float,
    fps: float,
    bpm: float,
    *,
    beats_per_bar: int = 4,
) -> np.ndarray:
    """The expressive grid ``float32 [T, len(EXPRESSIVE_FEATURES)]`` of one window (module doc)."""
    T = _check_window(start_s, duration_s, fps, bpm)
    if beats_per_bar <= 0:
        raise ValueError(f"beats_per_bar must be positive, got {beats_per_bar}")
    grid = np.zeros((T, len(EXPRESSIVE_FEATURES)), np.float32)
    frames, offsets = frame_position(events.times, start_s, fps)
    lanes = _LANE_OF_PITCH[np.clip(events.pitches, 0, 127)]
    vel = np.clip(events.velocities, 0, 127) / 127.0

    # onsets / offsets / velocities
    rel = events.times - start_s
    inside = np.flatnonzero((rel >= 0) & (rel < duration_s) & (frames >= 0) & (frames < T))
    if len(inside):
        cells = frames[inside] * _N_LANES + lanes[inside]
        keep = inside[_first_per_cell(cells, events.velocities[inside], events.times[inside])]
        f, lane = frames[keep], lanes[keep]
        grid[f, ONSET_COLUMNS.start + lane] = 1.0
        grid[f, OFFSET_COLUMNS.start + lane] = offsets[keep]
        grid[f, VELOCITY_COLUMNS.start + lane] = vel[keep]

    t_idx = np.arange(T)
    centres = start_s + (t_idx + 0.5) / fps

    # sustain lanes: ring of the latest hit on or before each frame (hits before the window too)
    choke_mask = np.isin(lanes, [FINE_LANES.index(n) for n in _CHOKE_LANES])
    choke_frames, choke_times = frames[choke_mask], events.times[choke_mask]
    for j, name in enumerate(SUSTAIN_LANES):
        m = lanes == FINE_LANES.index(name)
        if not m.any():
            continue
        lf, lt, lv = frames[m], events.times[m], vel[m]
        last = np.searchsorted(lf, t_idx, side="right") - 1  # frames are sorted with times
        has = last >= 0
        li = np.clip(last, 0, None)
        dt = np.maximum(0.0, centres - lt[li])
        ring = np.where(has, lv[li] * np.exp(-dt / SUSTAIN_TAU_S[name]), 0.0)
        if name == "hat_open" and len(choke_frames):
            lc = np.searchsorted(choke_frames, t_idx, side="right") - 1
            choked = (lc >= 0) & has & (choke_times[np.clip(lc, 0, None)] > lt[li])
            ring = np.where(choked, 0.0, ring)
        grid[:, _SUSTAIN0 + j] = ring

    # hi-hat pedal state from CC4
    col = _MISC0
    if len(events.cc4_times):
        cc_frames, _ = frame_position(events.cc4_times, start_s, fps)
        last = np.searchsorted(cc_frames, t_idx, side="right") - 1
        value = events.cc4_values[np.clip(last, 0, None)]  # before the first CC4: its value
        grid[:, col] = 1.0 - np.clip(value, 0, 127) / 127.0
    col += 1

    beats = centres * bpm / 60.0
    beat_phase = 2 * np.pi * np.mod(beats, 1.0)
    bar_phase = 2 * np.pi * np.mod(beats / beats_per_bar, 1.0)
    grid[:, col] = np.sin(beat_phase)
    grid[:, col + 1] = np.cos(beat_phase)
    grid[:, col + 2] = np.sin(bar_phase)
    grid[:, col + 3] = np.cos(bar_phase)
    grid[:, col + 4] = bpm / BPM_SCALE
    return grid


def drum_grid(
    events: DrumEvents, start_s: float, duration_s: float, fps: float, bpm: float
) -> np.ndarray:
    """The drumgrid baseline ``float32 [T, 18]``: GrooVAE hits + velocities on quantised 16ths."""
    T = _check_window(start_s, duration_s, fps, bpm)
    grid = np.zeros((T, len(DRUM_GRID_FEATURES)), np.float32)
    classes = _CLASS_OF_PITCH[np.clip(events.pitches, 0, 127)]
    sixteenth = 15.0 / bpm
    q = np.floor(events.times / sixteenth + 0.5) * sixteenth
    frames, _ = frame_position(q, start_s, fps)
    m = (classes >= 0) & (q >= start_s) & (q < start_s + duration_s) & (frames >= 0) & (frames < T)
    if m.any():
        f, c = frames[m], classes[m]
        v = np.clip(events.velocities[m], 0, 127) / 127.0
        grid[f, c] = 1.0
        np.maximum.at(grid, (f, _N_CLASSES + c), v.astype(np.float32))
    return grid


def window_onsets(events: DrumEvents, start_s: float, duration_s: float) -> np.ndarray:
    """Sorted distinct hit times (s) in ``[0, duration_s)`` relative to the window start."""
    rel = events.times - start_s
    return np.unique(rel[(rel >= 0) & (rel < duration_s)])
