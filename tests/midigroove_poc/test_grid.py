"""Tests for the drum maps, E-GMD CSV/windows and the frame grids, against hand-computed values."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from midigroove_poc.drums import (
    FINE_LANES,
    GROOVAE_CLASSES,
    GROOVAE_PITCHES,
    LANE_PITCHES,
    LANE_TO_GROOVAE,
    SUSTAIN_LANES,
    TD17_PITCHES,
    pitch_to_groovae,
    pitch_to_lane,
)
from midigroove_poc.egmd import (
    EGMD_COLUMNS,
    EgmdCsvError,
    EgmdRow,
    filter_rows,
    make_windows,
    read_egmd_csv,
)
from midigroove_poc.grid import (
    DRUM_GRID_FEATURES,
    EXPRESSIVE_FEATURE_DOCS,
    EXPRESSIVE_FEATURES,
    SUSTAIN_TAU_S,
    DrumEvents,
    MidiReadError,
    drum_grid,
    expressive_grid,
    frame_position,
    load_drum_events,
    num_frames,
    window_onsets,
)
from workflow.errors import WorkflowError

from .conftest import KITS, write_midi
from .synth import render_drums

FPS = 75.0
COL = {name: i for i, name in enumerate(EXPRESSIVE_FEATURES)}
DCOL = {name: i for i, name in enumerate(DRUM_GRID_FEATURES)}


def ev(*hits: tuple[float, int, int], cc4: tuple[tuple[float, int], ...] = ()) -> DrumEvents:
    return DrumEvents.from_hits(hits, cc4)


# --------------------------------------------------------------------------------------------
# drum maps


def test_every_td17_pitch_maps_to_a_class_and_a_real_lane() -> None:
    assert len(TD17_PITCHES) == 22
    for pitch in TD17_PITCHES:
        cls = pitch_to_groovae(pitch)
        lane = pitch_to_lane(pitch)
        assert cls is not None, pitch
        assert FINE_LANES[lane] != "other", pitch
        assert LANE_TO_GROOVAE[lane] == cls, (pitch, FINE_LANES[lane], GROOVAE_CLASSES[cls])


@pytest.mark.parametrize(
    ("pitch", "cls", "lane"),
    [
        (36, "kick", "kick"),
        (38, "snare", "snare_head"),
        (40, "snare", "snare_rim"),
        (37, "snare", "snare_xstick"),
        (42, "closed_hat", "hat_closed"),
        (22, "closed_hat", "hat_closed"),
        (44, "closed_hat", "hat_pedal"),
        (46, "open_hat", "hat_open"),
        (26, "open_hat", "hat_open"),
        (43, "low_tom", "tom_low"),
        (58, "low_tom", "tom_low"),
        (45, "mid_tom", "tom_mid"),
        (47, "mid_tom", "tom_mid"),
        (48, "high_tom", "tom_high"),
        (50, "high_tom", "tom_high"),
        (49, "crash", "crash"),
        (52, "crash", "crash"),
        (55, "crash", "crash"),
        (57, "crash", "crash"),
        (51, "ride", "ride_bow"),
        (59, "ride", "ride_bow"),
        (53, "ride", "ride_bell"),
    ],
)
def test_mapping_tables(pitch: int, cls: str, lane: str) -> None:
    assert GROOVAE_CLASSES[pitch_to_groovae(pitch)] == cls
    assert FINE_LANES[pitch_to_lane(pitch)] == lane


def test_unknown_pitches_go_to_other_and_are_dropped_by_groovae() -> None:
    for pitch in (0, 39, 54, 56, 60, 81, 127):
        assert FINE_LANES[pitch_to_lane(pitch)] == "other"
        assert pitch_to_groovae(pitch) is None
    # both tables cover exactly the same pitches; sustain lanes are real lanes
    lane_pitches = {p for ps in LANE_PITCHES.values() for p in ps}
    assert lane_pitches == {p for ps in GROOVAE_PITCHES.values() for p in ps}
    assert set(SUSTAIN_LANES) <= set(FINE_LANES) and set(SUSTAIN_TAU_S) == set(SUSTAIN_LANES)


# --------------------------------------------------------------------------------------------
# expressive grid


def test_feature_names() -> None:
    assert len(EXPRESSIVE_FEATURES) == len(set(EXPRESSIVE_FEATURES)) == 3 * 14 + 4 + 6
    assert set(EXPRESSIVE_FEATURE_DOCS) == set(EXPRESSIVE_FEATURES)
    assert DRUM_GRID_FEATURES[:2] == ["hit_kick", "hit_snare"] and len(DRUM_GRID_FEATURES) == 18
    grid = expressive_grid(ev((0.1, 36, 90)), 0.0, 2.0, FPS, 120.0)
    assert grid.shape == (150, len(EXPRESSIVE_FEATURES)) and grid.dtype == np.float32


def test_num_frames() -> None:
    assert num_frames(2.0, 75.0) == 150
    assert num_frames(4 * 60 / 110, 75.0) == 164  # 163.64 frames
    assert num_frames(0.02, 75.0) == 2  # 1.5 rounds half up
    with pytest.raises(ValueError):
        num_frames(1.0, 0.0)


def test_onset_offset_velocity_hand_computed() -> None:
    events = ev((0.5, 36, 64), (1.005, 38, 100), (1.0, 42, 127), (0.0, 49, 1), (1.99, 40, 90))
    g = expressive_grid(events, 0.0, 2.0, FPS, 120.0)
    # kick at exactly 0.5 s: x = 37.5 → frame 37, centred → offset 0
    assert g[37, COL["onset_kick"]] == 1.0
    assert g[37, COL["offset_kick"]] == 0.0
    assert g[37, COL["vel_kick"]] == pytest.approx(64 / 127)
    # snare 5 ms after 1.0 s: x = 75.375 → frame 75, offset 75.375 - 75.5 = -0.125
    assert g[75, COL["onset_snare_head"]] == 1.0
    assert g[75, COL["offset_snare_head"]] == pytest.approx(-0.125, abs=1e-6)
    # hat exactly on 1.0 s: the frame's start → offset -0.5
    assert g[75, COL["onset_hat_closed"]] == 1.0
    assert g[75, COL["offset_hat_closed"]] == pytest.approx(-0.5)
    assert g[0, COL["onset_crash"]] == 1.0 and g[0, COL["offset_crash"]] == -0.5
    # 1.99 s: x = 149.25 → last frame, offset -0.25
    assert g[149, COL["onset_snare_rim"]] == 1.0
    assert g[149, COL["offset_snare_rim"]] == pytest.approx(-0.25, abs=1e-6)
    onsets = g[:, : len(FINE_LANES)]
    assert onsets.sum() == 5  # nothing else anywhere
    assert g[:, COL["vel_snare_head"]].sum() == pytest.approx(100 / 127)


def test_window_start_and_hits_outside_the_window() -> None:
    events = ev((0.3, 36, 90), (1.5, 38, 80), (2.5, 38, 70), (3.5, 36, 60))
    g = expressive_grid(events, 1.0, 2.5, FPS, 120.0)  # window [1.0, 3.5)
    assert g.shape[0] == num_frames(2.5, FPS) == 188
    assert g[:, COL["onset_kick"]].sum() == 0  # 0.3 s is before, 3.5 s is the end (excluded)
    # 1.5 s → x = 37.5 → frame 37 offset 0; 2.5 s → frame 112, offset 0
    assert np.flatnonzero(g[:, COL["onset_snare_head"]]).tolist() == [37, 112]
    assert g[[37, 112], COL["offset_snare_head"]] == pytest.approx([0.0, 0.0], abs=1e-6)


def test_flam_in_one_frame_keeps_the_loudest() -> None:
    # 0.500 and 0.505 s are both in frame 37 (covers [0.4933, 0.5067))
    g = expressive_grid(ev((0.500, 38, 40), (0.505, 38, 110)), 0.0, 1.0, FPS, 100.0)
    assert g[37, COL["onset_snare_head"]] == 1.0
    assert g[37, COL["vel_snare_head"]] == pytest.approx(110 / 127)
    assert g[37, COL["offset_snare_head"]] == pytest.approx(0.505 * 75 - 37.5, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    t=st.floats(min_value=0.0, max_value=3.999),
    start=st.sampled_from([0.0, 0.4, 1.6]),
    fps=st.sampled_from([75.0, 50.0, 86.1328125]),
)
def test_frame_and_offset_reconstruct_the_hit_time(t: float, start: float, fps: float) -> None:
    frames, offsets = frame_position(np.array([t]), start, fps)
    assert -0.5 <= offsets[0] < 0.5
    assert start + (frames[0] + 0.5 + offsets[0]) / fps == pytest.approx(t, abs=1e-6)


def test_hat_openness_follows_cc4() -> None:
    events = ev((0.1, 42, 80), cc4=((0.2, 127), (0.5, 0), (1.0, 64)))
    g = expressive_grid(events, 0.0, 2.0, FPS, 120.0)
    h = g[:, COL["hat_openness"]]
    # before the first CC4 its value (127 = closed) holds; 0.5 s is in frame 37; 1.0 s frame 75
    assert np.all(h[:37] == 0.0)
    assert np.all(h[37:75] == 1.0)
    assert np.allclose(h[75:], 1 - 64 / 127)
    # a window starting later still sees the latest CC4 before it
    g2 = expressive_grid(events, 0.6, 0.2, FPS, 120.0)
    assert np.all(g2[:, COL["hat_openness"]] == 1.0)
    # no CC4 at all → closed
    assert np.all(expressive_grid(ev((0.1, 46, 80)), 0, 1, FPS, 120.0)[:, COL["hat_openness"]] == 0)


def test_sustain_lane_decays_from_the_last_hit() -> None:
    events = ev((0.5, 49, 127), (1.9, 49, 64))
    g = expressive_grid(events, 0.0, 3.0, FPS, 120.0)
    s = g[:, COL["sustain_crash"]]
    tau = SUSTAIN_TAU_S["crash"]
    assert np.all(s[:37] == 0.0)
    assert s[37] == pytest.approx(1.0)  # frame 37's centre is the hit time
    assert s[112] == pytest.approx(math.exp(-1.0 / tau), rel=1e-5)  # centre 1.5 s, 1 s later
    assert np.all(np.diff(s[37:142]) < 0)  # decays until the next hit (1.9 s → frame 142)
    # frame 142 centre = 142.5/75 = 1.9 s → exactly the second hit's velocity
    assert s[142] == pytest.approx(64 / 127, rel=1e-5)
    # a crash before the window still rings into it
    g_late = expressive_grid(events, 1.0, 0.5, FPS, 120.0)
    centre0 = 1.0 + 0.5 / FPS
    expected = math.exp(-(centre0 - 0.5) / tau)
    assert g_late[0, COL["sustain_crash"]] == pytest.approx(expected, rel=1e-5)
    assert g_late[:, COL["onset_crash"]].sum() == 0


def test_open_hat_ring_is_choked_by_closing_the_hat() -> None:
    events = ev((0.5, 46, 127), (0.8, 44, 60), (1.2, 51, 90))
    g = expressive_grid(events, 0.0, 2.0, FPS, 120.0)
    s = g[:, COL["sustain_hat_open"]]
    assert s[37] == pytest.approx(1.0)
    assert s[59] > 0  # 0.8 s is in frame 60
    assert np.all(s[60:] == 0.0)
    # other sustain lanes are independent: the ride rings from frame 90 on
    r = g[:, COL["sustain_ride_bow"]]
    assert np.all(r[:90] == 0) and r[90] > 0.5 and np.all(g[:, COL["sustain_ride_bell"]] == 0)


def test_beat_and_bar_phase_at_known_frames() -> None:
    g = expressive_grid(ev((0.0, 36, 100)), 0.0, 4.0, FPS, 120.0)
    c = COL
    # frame 37: centre 0.5 s = beat 1 → beat phase 0, bar phase 1/4
    assert g[37, c["beat_sin"]] == pytest.approx(0.0, abs=1e-6)
    assert g[37, c["beat_cos"]] == pytest.approx(1.0)
    assert g[37, c["bar_sin"]] == pytest.approx(1.0)
    assert g[37, c["bar_cos"]] == pytest.approx(0.0, abs=1e-6)
    # frame 112: centre 1.5 s = beat 3 → bar phase 3/4
    assert g[112, c["bar_sin"]] == pytest.approx(-1.0)
    # frame 0: centre 1/150 s = beat 1/75
    assert g[0, c["beat_sin"]] == pytest.approx(math.sin(2 * math.pi / 75), abs=1e-6)
    # frame 18: centre 18.5/75 s = beat 37/75 (just before half a beat)
    assert g[18, c["beat_cos"]] == pytest.approx(math.cos(2 * math.pi * 37 / 75), abs=1e-6)
    assert np.allclose(g[:, c["bpm"]], 0.5)
    # phase is absolute (the MIDI's beat 0 is at 0 s): a window from 2.0 s, frame 37 = beat 5
    g2 = expressive_grid(ev((0.0, 36, 100)), 2.0, 1.0, FPS, 120.0)
    assert g2[37, c["bar_sin"]] == pytest.approx(1.0)
    # 3/4: bar phase of beat 1 is 1/3
    g3 = expressive_grid(ev((0.0, 36, 100)), 0.0, 1.0, FPS, 120.0, beats_per_bar=3)
    assert g3[37, c["bar_sin"]] == pytest.approx(math.sin(2 * math.pi / 3), abs=1e-6)


# --------------------------------------------------------------------------------------------
# drumgrid baseline


def test_drum_grid_quantises_to_the_16th_and_drops_the_offset() -> None:
    # 120 bpm: 16th = 0.125 s. Snare 10 ms late on beat 1 (0.5 s) → 0.5 s → frame 37.
    # Kick at 0.6 s → 16th #4.8 → #5 = 0.625 s → frame floor(46.875) = 46 (it is in frame 45).
    events = ev((0.51, 38, 100), (0.6, 36, 64), (0.61, 36, 90), (0.3, 44, 50), (0.3, 60, 127))
    g = drum_grid(events, 0.0, 2.0, FPS, 120.0)
    assert g.shape == (150, 18) and g.dtype == np.float32
    assert g[37, DCOL["hit_snare"]] == 1.0 and g[37, DCOL["vel_snare"]] == pytest.approx(100 / 127)
    assert g[46, DCOL["hit_kick"]] == 1.0 and g[45, DCOL["hit_kick"]] == 0.0
    assert g[46, DCOL["vel_kick"]] == pytest.approx(90 / 127)  # two hits on one 16th: max velocity
    # hi-hat pedal at 0.3 s → 16th #2.4 → 0.25 s → frame 18, as a closed hat; pitch 60 dropped
    assert g[18, DCOL["hit_closed_hat"]] == 1.0
    assert g[:, :9].sum() == 3
    # the expressive grid keeps where the hits really are
    e = expressive_grid(events, 0.0, 2.0, FPS, 120.0)
    assert e[38, COL["onset_snare_head"]] == 1.0 and e[45, COL["onset_kick"]] == 1.0


def test_drum_grid_window_edges() -> None:
    # window [1.0, 2.0): 0.99 s quantises to 1.0 s → frame 0; 1.97 s → 2.0 s → outside
    g = drum_grid(ev((0.99, 38, 100), (1.97, 36, 100)), 1.0, 1.0, FPS, 120.0)
    assert g[0, DCOL["hit_snare"]] == 1.0
    assert g[:, DCOL["hit_kick"]].sum() == 0


def test_window_onsets() -> None:
    events = ev((0.2, 36, 100), (1.25, 38, 90), (1.25, 42, 80), (1.3, 81, 50), (3.0, 36, 1))
    on = window_onsets(events, 1.0, 2.0)
    assert on == pytest.approx([0.25, 0.3])  # 0.2 before; 3.0 is the end; duplicates merged
    assert window_onsets(events, 5.0, 1.0).size == 0


# --------------------------------------------------------------------------------------------
# MIDI reading


def test_load_drum_events_reads_notes_and_cc4(tmp_path: Path) -> None:
    events = ev((0.25, 36, 100), (0.5, 46, 70), (0.0, 42, 60), cc4=((0.49, 10), (0.0, 127)))
    path = tmp_path / "a.midi"
    write_midi(events, 120, path)
    got = load_drum_events(path)
    assert got.pitches.tolist() == [42, 36, 46]  # sorted by time
    assert got.velocities.tolist() == [60, 100, 70]
    assert got.times == pytest.approx([0.0, 0.25, 0.5], abs=1e-3)
    assert got.cc4_values.tolist() == [127, 10]
    assert got.cc4_times == pytest.approx([0.0, 0.49], abs=1e-3)


def test_load_drum_events_non_drum_channel_falls_back(tmp_path: Path) -> None:
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0, is_drum=False)
    inst.notes.append(pretty_midi.Note(90, 38, 0.1, 0.2))
    pm.instruments.append(inst)
    pm.write(str(tmp_path / "x.mid"))
    assert load_drum_events(tmp_path / "x.mid").pitches.tolist() == [38]


def test_load_drum_events_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(MidiReadError, match="not found"):
        load_drum_events(tmp_path / "missing.midi")
    bad = tmp_path / "bad.midi"
    bad.write_bytes(b"MThd\x00\x00\x00\x06garbage")
    with pytest.raises(MidiReadError, match="bad.midi"):
        load_drum_events(bad)
    empty = tmp_path / "empty.midi"
    pretty_midi.PrettyMIDI().write(str(empty))
    with pytest.raises(MidiReadError, match="no notes"):
        load_drum_events(empty)
    assert issubclass(MidiReadError, WorkflowError)


def test_drum_events_validation() -> None:
    with pytest.raises(ValueError, match="same length"):
        DrumEvents(np.zeros(2), np.zeros(3), np.zeros(2))
    e = DrumEvents([0.3, 0.1], [36, 38], [10, 20])
    assert e.times.tolist() == [0.1, 0.3] and e.pitches.tolist() == [38, 36] and len(e) == 2


# --------------------------------------------------------------------------------------------
# E-GMD CSV, filters and windows


def test_read_egmd_csv(mini_egmd: dict) -> None:
    rows = mini_egmd["rows"]
    assert len(rows) == 12
    assert [sum(r.split == s for r in rows) for s in ("train", "validation", "test")] == [8, 2, 2]
    r = rows[0]
    assert r.drummer == "drummer1" and r.session == "drummer1/session1"
    assert r.id == "drummer1/session1/1" and r.style == "rock" and r.bpm == 110.0
    assert r.kit_name == "Acoustic Kit" and r.beat_type == "beat" and r.beats_per_bar == 4
    assert r.key == "drummer1/session1/1_rock_110_beat_4-4_1"
    assert r.midi_path == mini_egmd["root"] / r.midi_filename and r.midi_path.is_file()
    assert r.audio_path.is_file()
    assert len({row.key for row in rows}) == 12  # ids repeat across kits, keys do not
    assert {row.kit_name for row in rows} == set(KITS)
    assert {row.drummer for row in rows} == {"drummer1", "drummer2"}
    assert {row.beat_type for row in rows} == {"beat", "fill"}
    assert {row.style for row in rows} == {"rock", "funk"}
    # another dataset root
    other = read_egmd_csv(mini_egmd["csv"], dataset_root="/data/egmd")
    assert other[0].audio_path == Path("/data/egmd") / r.audio_filename


def test_read_egmd_csv_errors(tmp_path: Path) -> None:
    with pytest.raises(EgmdCsvError, match="not found"):
        read_egmd_csv(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("drummer,session,id\nd1,s1,1\n")
    with pytest.raises(EgmdCsvError, match=r"bad\.csv.*missing column.*bpm"):
        read_egmd_csv(bad)
    header = ",".join(EGMD_COLUMNS)
    row = "d1,d1/s1,d1/s1/1,rock,fast,beat,4-4,10.0,train,a.midi,a.wav,Acoustic Kit"
    bad.write_text(f"{header}\n{row}\n")
    with pytest.raises(EgmdCsvError, match=r"line 2.*'bpm'"):
        read_egmd_csv(bad)
    bad.write_text(header + "\n")
    with pytest.raises(EgmdCsvError, match="no rows"):
        read_egmd_csv(bad)


def test_filter_rows(mini_egmd: dict) -> None:
    rows = mini_egmd["rows"]
    assert len(filter_rows(rows)) == 12
    assert {r.split for r in filter_rows(rows, split="validation")} == {"validation"}
    assert len(filter_rows(rows, split=["validation", "test"])) == 4
    beats = filter_rows(rows, beat_type_only=True)
    assert len(beats) == 8 and {r.beat_type for r in beats} == {"beat"}
    assert len(filter_rows(rows, beat_type_only="fill")) == 4
    assert len(filter_rows(rows, beat_type_only=False)) == 12
    pop = filter_rows(rows, kit_include=["pop kit"])
    assert len(pop) == 6 and {r.kit_name for r in pop} == {"Pop Kit"}
    assert {r.kit_name for r in filter_rows(rows, kit_exclude=["Pop Kit"])} == {"Acoustic Kit"}
    both = filter_rows(rows, split="train", beat_type_only=True, kit_exclude=["Acoustic Kit"])
    assert [r.key for r in both] == [
        "drummer1/session1/1_rock_110_beat_4-4_2",
        "drummer1/session1/2_funk_100_beat_4-4_2",
        "drummer2/session1/3_rock_120_beat_4-4_2",
    ]


def _row(bpm: float, duration: float) -> EgmdRow:
    return EgmdRow(
        "d", "d/s", "d/s/1", "rock", bpm, "beat", "4-4", duration, "train",
        "d/s/1.midi", "d/s/1.wav", "Acoustic Kit", Path("d/s/1.midi"), Path("d/s/1.wav"),
    )  # fmt: skip


def test_make_windows_known_row() -> None:
    row = _row(120.0, 5.0)  # a beat is 0.5 s; 4-beat chunks are 2 s
    w = make_windows(row, 4.0)
    assert [x.start_s for x in w] == [0.0, 2.0] and [x.index for x in w] == [0, 1]
    assert all(x.duration_s == 2.0 and x.row is row for x in w)
    assert [x.start_beat for x in w] == [0.0, 4.0]
    # hop of 1 beat: starts 0, 0.5, ..., 3.0 (3.0 + 2.0 = 5.0 fits exactly)
    w = make_windows(row, 4.0, hop_beats=1.0)
    assert [x.start_s for x in w] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    assert all(b.start_s < a.start_s + a.duration_s for a, b in zip(w, w[1:]))  # overlap
    assert all(x.start_s + x.duration_s <= row.duration + 1e-9 for x in w)
    assert make_windows(_row(120.0, 1.9), 4.0) == []
    with pytest.raises(ValueError):
        make_windows(row, 0.0)
    with pytest.raises(ValueError):
        make_windows(row, 4.0, hop_beats=-1.0)


def test_make_windows_at_the_rows_bpm(mini_egmd: dict) -> None:
    row = mini_egmd["rows"][0]  # 110 bpm, 3 bars + 0.4 s tail = 6.945 s
    assert row.duration == pytest.approx(12 * 60 / 110 + 0.4, abs=1e-6)
    chunk = 4 * 60 / 110
    w = make_windows(row, 4.0)
    assert [x.start_s for x in w] == pytest.approx([0.0, chunk, 2 * chunk])
    w = make_windows(row, 4.0, hop_beats=2.0)  # starts every 1.09 s while start + 2.18 ≤ 6.945
    assert len(w) == 5 and w[-1].start_s == pytest.approx(4 * chunk / 2)
    assert len(make_windows(row, 8.0)) == 1


# --------------------------------------------------------------------------------------------
# the fixture's audio really follows its MIDI


def test_fixture_midi_grid_counts(mini_egmd: dict) -> None:
    row = mini_egmd["rows"][2]  # drummer1 funk: 16th hats with one open hat per bar
    events = load_drum_events(row.midi_path)
    assert len(events.cc4_times) > 1
    win = make_windows(row)[0]
    g = expressive_grid(events, win.start_s, win.duration_s, FPS, row.bpm)
    on = window_onsets(events, win.start_s, win.duration_s)
    n_hits = int(g[:, : len(FINE_LANES)].sum())
    assert 0 < n_hits <= len(on) <= n_hits + 2  # at most a few hits share a frame in one lane
    assert g[:, COL["onset_hat_open"]].sum() == 1 and g[:, COL["hat_openness"]].max() > 0.8
    assert g[:, COL["onset_snare_head"]].sum() == 5  # 2 backbeats + 3 ghost notes


def test_fixture_audio_has_onsets_where_the_midi_says(mini_egmd: dict) -> None:
    """Every hit that is audible on its own (isolated, not masked by a ring) starts within 5 ms."""
    checked = 0
    hop = 22  # 0.5 ms energy frames at 44.1 kHz
    per_ms = 44100 / 1000 / hop
    for row in mini_egmd["rows"]:
        audio, sr = sf.read(row.audio_path, dtype="float64")
        assert sr == 44100 and len(audio) == round(row.duration * sr)
        events = load_drum_events(row.midi_path)
        first = int(round(events.times[0] * sr))
        assert np.all(np.abs(audio[:first]) < 1e-4)  # silence before the first hit
        n = len(audio) // hop
        slope = np.diff(audio, prepend=0.0)  # high-passed: a kick's slow tail does not hide a hit
        energy = (slope[: n * hop] ** 2).reshape(n, hop).mean(1)
        kit = KITS.index(row.kit_name)
        for t, p, v in zip(events.times, events.pitches, events.velocities):
            k = int(t * sr) // hop
            lo, bg_end = k - int(12 * per_ms), k - int(2 * per_ms)
            if lo < 0 or np.any((events.times < t) & (events.times > t - 0.015)):
                continue  # too early to measure a background, or another hit just before
            background = energy[lo:bg_end].mean()
            alone = render_drums([(0.0, int(p), int(v))], 0.005, sr, kit=kit).astype(np.float64)
            if np.mean(np.diff(alone, prepend=0.0) ** 2) < 10 * background + 1e-8:
                continue  # masked by a ringing cymbal: no energy detector could see it
            start = k - int(10 * per_ms)
            rising = np.flatnonzero(energy[start : k + int(10 * per_ms)] > 3 * background + 1e-7)
            assert len(rising), (row.key, t, p)
            detected = (start + rising[0] + 0.5) * hop / sr
            assert abs(detected - t) <= 0.005, (row.key, t, p, detected)
            checked += 1
    assert checked > 120


def test_render_drums_is_deterministic_and_starts_at_the_hit() -> None:
    hits = [(0.1, 36, 100), (0.25, 38, 90), (0.4, 46, 80), (0.55, 44, 60), (0.7, 49, 110)]
    a = render_drums(hits, 1.0)
    b = render_drums(DrumEvents.from_hits(hits), 1.0, 24000)
    assert a.dtype == np.float32 and a.shape == (24000,) and np.array_equal(a, b)
    assert np.all(np.abs(a) < 1.0)
    for i, (t, _, _) in enumerate(hits):
        without = render_drums(hits[:i] + hits[i + 1 :], 1.0)
        start = round(t * 24000)
        diff = np.abs(a - without)
        assert diff[:start].max() == 0.0  # nothing of hit i before its time
        assert diff[start : start + 120].max() > 0.01  # and it sounds within 5 ms
    assert not np.array_equal(render_drums(hits, 1.0, kit=1), a)  # kits sound different


def test_mini_egmd_copy_is_writable(mini_egmd_copy: dict, mini_egmd: dict) -> None:
    assert mini_egmd_copy["root"] != mini_egmd["root"]
    rows = mini_egmd_copy["rows"]
    assert all(r.midi_path.is_relative_to(mini_egmd_copy["root"]) for r in rows)
    rows[0].audio_path.unlink()
    assert mini_egmd["rows"][0].audio_path.is_file()
    assert replace(rows[0], split="test").split == "test"


def test_one_midi_reader_for_grids_and_music_datasets(tmp_path: Path) -> None:
    from training.midi import MidiReadError as Shared
    from training.midi import read_midi
    from training.music.data_loaders import MidiReadError as Music

    assert MidiReadError is Shared is Music
    empty = tmp_path / "zero.mid"
    empty.write_bytes(b"")
    with pytest.raises(Shared, match=r"zero\.mid: MIDI file is empty.*filter its row out"):
        load_drum_events(empty)  # the grid's own fix is named
    with pytest.raises(Shared, match=r"zero\.mid: MIDI file is empty.*re-export it or remove it"):
        read_midi(empty)
