"""Shared fixtures for midigroove_poc tests: a mini E-GMD (CSV + MIDI + 44.1 kHz wav) built in tmp.

The mini set mimics E-GMD's layout and CSV exactly (``drummerN/sessionM/<n>_<style>_<bpm>_
<beat_type>_4-4_<kit>.midi|wav`` beside ``e-gmd-v1.0.0.csv``). Six performances, each rendered
with two kits ("Acoustic Kit", "Pop Kit") = 12 rows; splits by performance as in E-GMD
(train 4 performances = 8 rows, validation 1 = 2 rows, test 1 = 2 rows)::

    id                    drummer   style  bpm  beat_type  bars  split
    drummer1/session1/1   drummer1  rock   110  beat       3     train
    drummer1/session1/2   drummer1  funk   100  beat       3     train
    drummer2/session1/3   drummer2  rock   120  beat       3     train
    drummer2/session1/4   drummer2  funk   105  fill       2     train
    drummer2/session2/5   drummer2  rock   115  beat       2     validation
    drummer1/session2/6   drummer1  funk   108  fill       2     test

Each style is one consistent groove (rock: 8th hats, kick 1 & 3, snare 2 & 4, crash on bar 1;
funk: 16th hats with an open hat on the "a" of 4 (CC4 opens it), ghost snares, syncopated kick);
fills end with a 16th-note run over snare and the three toms. drummer1 plays behind the beat
(snare +12 ms), drummer2 ahead (-8 ms) and rides the ride cymbal (bow + bell, pedal hi-hat) in
rock. Every hit gets Gaussian timing jitter (sd 3 ms) and velocity jitter (sd 6), from a seeded
generator, so the data is learnable yet expressive. Audio comes from :func:`synth.render_drums`
(``mini_egmd``) or from FluidSynth's General MIDI kits (``mini_egmd_gm``, :mod:`.fluid`).
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from midigroove_poc.egmd import EGMD_COLUMNS, read_egmd_csv
from midigroove_poc.grid import DrumEvents, load_drum_events

from .fluid import fluidsynth_missing, render_gm_drums
from .synth import render_drums

AUDIO_SR = 44100
KITS = ("Acoustic Kit", "Pop Kit")
TAIL_S = 0.4  # audio continues this long after the last bar (E-GMD durations include the ring)

#: (drummer, session, number, style, bpm, beat_type, bars, split)
PERFORMANCES = [
    ("drummer1", "session1", 1, "rock", 110, "beat", 3, "train"),
    ("drummer1", "session1", 2, "funk", 100, "beat", 3, "train"),
    ("drummer2", "session1", 3, "rock", 120, "beat", 3, "train"),
    ("drummer2", "session1", 4, "funk", 105, "fill", 2, "train"),
    ("drummer2", "session2", 5, "rock", 115, "beat", 2, "validation"),
    ("drummer1", "session2", 6, "funk", 108, "fill", 2, "test"),
]

# drummer → (timing offset of snare-family hits in s, of everything else, velocity gain)
_FEEL = {
    "drummer1": (0.012, 0.004, 0.95),
    "drummer2": (-0.008, -0.003, 1.08),
}


def _bar_pattern(style: str, drummer: str, bar: int, n_bars: int) -> list[tuple[int, int, int]]:
    """(16th position, pitch, base velocity) of one bar of a style's groove."""
    hits: list[tuple[int, int, int]] = []
    ride = style == "rock" and drummer == "drummer2"
    if style == "rock":
        hits += [(0, 36, 100), (8, 36, 96), (10, 36, 80), (4, 38, 105), (12, 38, 108)]
        for pos in range(0, 16, 2):
            if ride:
                hits.append((pos, 53 if pos % 4 == 0 else 51, 88 if pos % 4 == 0 else 70))
            elif not (bar == 0 and pos == 0):
                hits.append((pos, 42, 88 if pos % 4 == 0 else 66))
        if ride:
            hits += [(4, 44, 60), (12, 44, 60)]
            if bar == 1:
                hits.append((0, 59, 80))
        if bar == 0:
            hits.append((0, 49 if drummer == "drummer1" else 55, 112))
    else:  # funk
        hits += [(0, 36, 100), (3, 36, 78), (10, 36, 92), (4, 38, 110), (12, 38, 112)]
        hits += [(7, 38, 34), (9, 38, 30), (15, 38, 36)]  # ghost notes
        for pos in range(16):
            if pos == 14:
                hits.append((pos, 46 if drummer == "drummer1" else 26, 92))
            else:
                accent = pos % 4 == 0
                pitch = 22 if (accent and drummer == "drummer2") else 42
                hits.append((pos, pitch, 84 if accent else 52))
        if bar == n_bars - 1:
            hits.append((12, 40, 118))  # rim shot on the last backbeat
    return hits


def _fill_bar(style: str, drummer: str) -> list[tuple[int, int, int]]:
    """A one-bar 16th-note fill: snare (or x-stick), then high, mid and low toms."""
    first = 37 if style == "funk" else 38
    run = [first] * 4 + [48, 50, 48, 48] + [45, 47, 45, 45] + [43, 58, 43, 43]
    hits = [(pos, p, 70 + 3 * pos) for pos, p in enumerate(run)]
    hits += [(0, 36, 100), (8, 36, 100), (0, 57 if drummer == "drummer1" else 52, 105)]
    return hits


def performance_events(
    drummer: str, style: str, bpm: float, beat_type: str, n_bars: int, seed: int
) -> DrumEvents:
    """The MIDI hits (and CC4 pedal moves) of one synthetic performance, with human jitter."""
    rng = np.random.default_rng(seed)
    sixteenth = 15.0 / bpm
    snare_dt, other_dt, vel_gain = _FEEL[drummer]
    hits: list[tuple[float, int, int]] = []
    for bar in range(n_bars):
        if beat_type == "fill" and bar == n_bars - 1:
            pattern = _fill_bar(style, drummer)
        else:
            pattern = _bar_pattern(style, drummer, bar, n_bars)
        for pos, pitch, vel in pattern:
            t = (bar * 16 + pos) * sixteenth
            t += (snare_dt if pitch in (37, 38, 40) else other_dt) + rng.normal(0.0, 0.003)
            v = int(np.clip(round(vel * vel_gain + rng.normal(0.0, 6.0)), 1, 127))
            hits.append((max(0.0, t), pitch, v))
    # Hi-hat pedal: Roland sends CC4 before each hat strike (0 = open ... 127 = closed); the
    # pedal opens just before every open-hat hit and closes again an 8th later.
    cc4: list[tuple[float, int]] = [(0.0, 127)]
    for t, pitch, _ in hits:
        if pitch in (46, 26):
            cc4 += [(max(0.0, t - 0.010), 40), (max(0.0, t - 0.005), 12)]
            cc4.append((t + 2 * sixteenth - 0.02, 127))
    return DrumEvents.from_hits(hits, cc4)


def write_midi(events: DrumEvents, bpm: float, path: Path) -> None:
    """Write hits + CC4 as a one-track drum MIDI file (channel 10) at ``bpm``, like E-GMD's."""
    pm = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=float(bpm))
    pm.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    inst = pretty_midi.Instrument(program=0, is_drum=True, name="Drums")
    for t, p, v in zip(events.times, events.pitches, events.velocities):
        inst.notes.append(pretty_midi.Note(int(v), int(p), float(t), float(t) + 0.05))
    for t, v in zip(events.cc4_times, events.cc4_values):
        inst.control_changes.append(pretty_midi.ControlChange(4, int(v), float(t)))
    pm.instruments.append(inst)
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.write(str(path))


def _toy_render(events: DrumEvents, duration: float, kit: int, seed: int) -> np.ndarray:
    return render_drums(events, duration, AUDIO_SR, kit=kit, seed=seed)


def _gm_render(events: DrumEvents, duration: float, kit: int, seed: int) -> np.ndarray:
    return render_gm_drums(events, duration, AUDIO_SR, kit=kit)


def build_mini_egmd(root: Path, render: Callable[..., np.ndarray] = _toy_render) -> dict:
    """Write the mini E-GMD under ``root``; returns {"root", "csv", "rows", "events"}.

    ``render(events, duration_s, kit, seed)`` makes each row's 44.1 kHz audio.
    """
    root.mkdir(parents=True, exist_ok=True)
    records = []
    events_by_key: dict[str, DrumEvents] = {}
    for i, (drummer, session, num, style, bpm, beat_type, bars, split) in enumerate(PERFORMANCES):
        performed = performance_events(drummer, style, bpm, beat_type, bars, seed=1000 + i)
        duration = bars * 4 * 60.0 / bpm + TAIL_S
        for k, kit in enumerate(KITS):
            stem = f"{drummer}/{session}/{num}_{style}_{bpm}_{beat_type}_4-4_{k + 1}"
            write_midi(performed, bpm, root / f"{stem}.midi")
            # Render what the file holds (tick-rounded), as E-GMD rendered its MIDI on the TD-17.
            events = load_drum_events(root / f"{stem}.midi")
            audio = render(events, duration, k, i)
            sf.write(root / f"{stem}.wav", audio, AUDIO_SR, subtype="PCM_16")
            events_by_key[stem] = events
            records.append({
                "drummer": drummer, "session": f"{drummer}/{session}",
                "id": f"{drummer}/{session}/{num}", "style": style, "bpm": str(bpm),
                "beat_type": beat_type, "time_signature": "4-4", "duration": f"{duration:.6f}",
                "split": split, "midi_filename": f"{stem}.midi", "audio_filename": f"{stem}.wav",
                "kit_name": kit,
            })  # fmt: skip
    csv_path = root / "e-gmd-v1.0.0.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(EGMD_COLUMNS))
        writer.writeheader()
        writer.writerows(records)
    return {"root": root, "csv": csv_path, "rows": read_egmd_csv(csv_path), "events": events_by_key}


@pytest.fixture(scope="session")
def mini_egmd(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A mini E-GMD (12 rows, MIDI + 44.1 kHz wav + CSV), built once per session — READ-ONLY.

    Returns ``{"root": Path, "csv": Path, "rows": list[EgmdRow], "events": {row.key: DrumEvents}}``
    (``events`` are the hits each MIDI file holds, as read back by
    ``load_drum_events``; the audio was rendered from exactly these). Use ``mini_egmd_copy`` to
    modify it.
    """
    return build_mini_egmd(tmp_path_factory.mktemp("mini_egmd") / "e-gmd-v1.0.0")


def require_fluidsynth() -> None:
    """Skip (fail under CI=true) with the install command when FluidSynth cannot render here."""
    why = fluidsynth_missing()
    if why is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must render the drum fixture with FluidSynth: {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def mini_egmd_gm(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """``mini_egmd`` with real drum sounds: the same MIDI rendered by FluidSynth with TimGM6mb's
    General MIDI kits ("Acoustic Kit" = Standard, "Pop Kit" = Power) — READ-ONLY. Onsets stay the
    MIDI's (``events``). Skips with the install command where libfluidsynth3 is missing."""
    require_fluidsynth()
    return build_mini_egmd(tmp_path_factory.mktemp("mini_egmd_gm") / "e-gmd-v1.0.0", _gm_render)


@pytest.fixture
def mini_egmd_copy(mini_egmd: dict, tmp_path: Path) -> dict:
    """A writable copy of ``mini_egmd`` in this test's tmp folder (same keys, paths re-rooted)."""
    root = tmp_path / "e-gmd-v1.0.0"
    shutil.copytree(mini_egmd["root"], root)
    csv_path = root / mini_egmd["csv"].name
    return {"root": root, "csv": csv_path, "rows": read_egmd_csv(csv_path),
            "events": dict(mini_egmd["events"])}  # fmt: skip
