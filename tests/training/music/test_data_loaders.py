"""Music datasets on tiny real files (soundfile wavs, pretty_midi MIDI) made in tmp folders.

Expected feature values are computed by hand from the notes written (see each test's comments).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.music.data_loaders import (
    DYNAMICS_FEATURE_NAMES,
    EMBEDDING_DIM,
    GROOVE_FEATURE_NAMES,
    ConstantDataError,
    DynamicsDataset,
    EmotionDataset,
    GrooveDataset,
    LabelFileError,
    MelodyDataset,
    MusicDatasetError,
    decode_emotion_embedding,
    deam_to_unit,
    emotion_embedding,
    emotion_embeddings,
    mel_band_centers,
    mel_features,
    read_emotion_csv,
)
from workflow.errors import UsageError

# --------------------------------------------------------------------------------------------
# helpers


def write_tone(path: Path, freq: float, amp: float, *, sr: int = 22050, seconds: float = 0.5,
               channels: int = 1) -> Path:
    t = np.arange(int(sr * seconds)) / sr
    y = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack([y] * channels, axis=1) if channels > 1 else y, sr)
    return path


def write_midi(path: Path, notes=(), drums=(), *, bpm: float = 120.0, pedal=(), time_sig=None) -> Path:
    """notes: (pitch, velocity, start, end); drums: (pitch, velocity, onset); pedal: (time, value)."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm, resolution=480)
    if notes or pedal:
        inst = pretty_midi.Instrument(program=0)
        for pitch, vel, start, end in notes:
            inst.notes.append(pretty_midi.Note(velocity=vel, pitch=pitch, start=start, end=end))
        for time, value in pedal:
            inst.control_changes.append(pretty_midi.ControlChange(number=64, value=value, time=time))
        pm.instruments.append(inst)
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True)
        for pitch, vel, onset in drums:
            kit.notes.append(pretty_midi.Note(velocity=vel, pitch=pitch, start=onset, end=onset + 0.05))
        pm.instruments.append(kit)
    if time_sig:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(time_sig[0], time_sig[1], 0.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.write(str(path))
    return path


def write_bad_files(root: Path, suffix: str) -> None:
    (root / f"corrupt{suffix}").write_bytes(b"this is not a media file at all" * 4)
    (root / f"zero_bytes{suffix}").write_bytes(b"")


def assert_not_constant(ds) -> None:
    assert ds.features.std(axis=0).max() > 0
    assert ds.targets.std(axis=0).max() > 0


STEP = 0.125  # a 16th note at 120 bpm


def groove_bar(bar: int, hits, *, shift: dict[int, float] | None = None):
    """(pitch, velocity, onset) for (pos, pitch, vel) hits in bar ``bar`` at 120 bpm, 4/4."""
    shift = shift or {}
    return [(p, v, (bar * 16 + pos) * STEP + shift.get(p, 0.0)) for pos, p, v in hits]


BASIC = [(0, 36, 100), (4, 38, 80), (8, 36, 100), (12, 38, 80)]  # kicks on 1 and 3, snares on 2 and 4
BUSY = BASIC + [(2, 42, 60), (6, 42, 60), (10, 42, 60), (14, 46, 60), (7, 38, 30)]  # off-8th hats, a ghost


# --------------------------------------------------------------------------------------------
# labels and embedding


def test_deam_scale_maps_1_9_linearly_to_unit_interval() -> None:
    assert deam_to_unit(1) == -1.0 and deam_to_unit(5) == 0.0 and deam_to_unit(9) == 1.0
    assert deam_to_unit(7.0) == 0.5 and deam_to_unit(3.0) == -0.5
    np.testing.assert_allclose(deam_to_unit(np.array([1.0, 2.0, 9.0])), [-1.0, -0.75, 1.0])


def test_emotion_embedding_is_deterministic_bounded_and_invertible() -> None:
    a = emotion_embedding(0.3, -0.7)
    b = emotion_embedding(0.3, -0.7)
    assert a.shape == (EMBEDDING_DIM,) == (64,) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert 0 < a.min() and a.max() <= 1
    # the corner bump (v=-1, a=-1) is component 0; (v=+1, a=+1) the last
    assert np.argmax(emotion_embedding(-1, -1)) == 0 and np.argmax(emotion_embedding(1, 1)) == 63
    np.testing.assert_allclose(decode_emotion_embedding(a), (0.3, -0.7), atol=1e-4)
    # the vectorised form computes the same float32 values (exp may round differently by an ulp)
    np.testing.assert_allclose(emotion_embeddings(np.array([[0.3, -0.7]]))[0], a, rtol=1e-6, atol=1e-9)
    with pytest.raises(UsageError, match="outside"):
        emotion_embedding(1.5, 0.0)


unit = st.floats(-1.0, 1.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(unit, unit, unit, unit)
def test_emotion_embedding_distinct_inputs_give_distinct_codes(v1: float, a1: float, v2: float, a2: float) -> None:
    e1, e2 = emotion_embedding(v1, a1), emotion_embedding(v2, a2)
    if abs(v1 - v2) > 1e-3 or abs(a1 - a2) > 1e-3:
        assert np.abs(e1 - e2).max() > 1e-6
    np.testing.assert_allclose(decode_emotion_embedding(e1), (v1, a1), atol=2e-3)


def test_labels_csv_errors_name_the_line(tmp_path: Path) -> None:
    p = tmp_path / "labels.csv"
    p.write_text("filename,valence,arousal\na.wav,0.5,0.1\nb.wav,3.0,0.2\n")
    with pytest.raises(LabelFileError, match=r"line 3.*valence 3.0 is outside \[-1, 1\]"):
        read_emotion_csv(p)
    p.write_text("name,v,a\na.wav,0.5,0.1\n")
    with pytest.raises(LabelFileError, match="filename"):
        read_emotion_csv(p)
    p.write_text("song_id, valence_mean, arousal_mean\n7, 10.0, 2\n")
    with pytest.raises(LabelFileError, match="1-9"):
        read_emotion_csv(p)
    p.write_text("filename,valence,arousal\na.wav,0.5,oops\n")
    with pytest.raises(LabelFileError, match="numbers"):
        read_emotion_csv(p)


# --------------------------------------------------------------------------------------------
# emotion (audio)


def test_mel_features_of_a_1khz_tone_peak_in_the_1khz_band() -> None:
    sr = 44100  # exercises the resampler too
    t = np.arange(sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    x = mel_features(np.stack([tone, tone]), sr)  # stereo in, mono mix
    centers = mel_band_centers()
    assert x.shape == (128,) and x.dtype == np.float32
    assert int(np.argmax(x)) == int(np.argmin(np.abs(centers - 1000.0)))
    # amplitude 0.5 → peak-bin power 0.25 = -6 dB; the band also collects the Hann lobe (≤ +1.8 dB)
    assert 1 + (-6.1 - 0.5) / 40 < x.max() < 1 + (-6.0 + 1.8) / 40
    # far from the tone the level is at the -80 dB floor (→ -1)
    assert x[-1] == -1.0
    silence = mel_features(np.zeros(4000, np.float32), 22050)
    np.testing.assert_array_equal(silence, -np.ones(128, np.float32))


def make_emotion_tree(root: Path) -> Path:
    write_tone(root / "a.wav", 220.0, 0.1)
    write_tone(root / "sub" / "b.flac", 1000.0, 0.5, sr=44100, channels=2)
    write_tone(root / "c.wav", 3000.0, 0.3, sr=16000)
    sf.write(root / "empty.wav", np.zeros(0, np.float32), 22050)  # valid header, 0 frames
    write_bad_files(root, ".wav")
    write_tone(root / "unlabelled.wav", 500.0, 0.2)
    (root / "labels.csv").write_text(
        "filename,valence,arousal\n"
        "a.wav,-0.5,-0.25\nsub/b.flac,0.75,0.5\nc,0.1,0.9\n"
        "empty.wav,0,0\ncorrupt.wav,0,0\nzero_bytes.wav,0,0\nnot_there.wav,0.2,0.2\n"
    )
    return root


def test_emotion_dataset_reads_labels_and_skips_bad_audio(tmp_path: Path) -> None:
    root = make_emotion_tree(tmp_path / "training" / "audio")
    ds = EmotionDataset.from_datasets_dir(tmp_path)
    assert ds.root == root and len(ds) == 3
    assert ds.keys == ["a.wav", "c.wav", "sub/b.flac"]
    np.testing.assert_allclose(ds.targets, [[-0.5, -0.25], [0.1, 0.9], [0.75, 0.5]])
    assert sorted(p.name for p, _ in ds.skipped) == ["corrupt.wav", "empty.wav", "zero_bytes.wav"]
    assert all(reason for _, reason in ds.skipped)
    assert [p.name for p in ds.unlabelled] == ["unlabelled.wav"]
    assert ds.missing == ["not_there.wav"]
    assert (ds.feature_dim, ds.target_dim) == (128, 2)
    assert ds.feature_names[0] == "mel_000" and ds.target_names == ["valence", "arousal"]
    item = ds[1]
    assert item["features"].dtype == torch.float32 and item["features"].shape == (128,)
    assert item["target"].shape == (2,)
    centers = mel_band_centers()
    for i, f in enumerate((220.0, 3000.0, 1000.0)):  # each clip peaks in (or next to) its tone's band
        assert abs(int(np.argmax(ds.features[i])) - int(np.argmin(np.abs(centers - f)))) <= 1
    assert_not_constant(ds)


def test_emotion_dataset_deam_format_and_mp3(tmp_path: Path) -> None:
    root = tmp_path / "audio"
    write_tone(root / "1.mp3", 300.0, 0.3, sr=44100)
    write_tone(root / "2.wav", 600.0, 0.3)
    write_tone(root / "3.flac", 1200.0, 0.3)
    (root / "labels.csv").write_text(
        "song_id, valence_mean, valence_std, arousal_mean, arousal_std\n"
        "1, 3.0, 1.1, 7.0, 0.9\n2, 5, 1, 1, 1\n3, 9, 0.5, 6.2, 1.3\n"
    )
    ds = EmotionDataset(root, audio_duration=0.3)
    assert ds.label_scale == "deam" and "(x - 5) / 4" in ds.target_description
    np.testing.assert_allclose(ds.targets, [[-0.5, 0.5], [0.0, -1.0], [1.0, 0.3]], atol=1e-6)
    assert ds.skipped == []


def test_emotion_cache_hit_reads_no_audio(tmp_path: Path) -> None:
    root = make_emotion_tree(tmp_path / "audio")
    first = EmotionDataset(root)
    assert (first.extracted, first.cache_hits) == (6, 0)  # 3 good + 3 bad files decoded
    assert len(list((root / ".feature_cache").glob("*.npy"))) == 3

    # Replace a.wav's bytes with garbage of the same size and restore its mtime: only a cache hit
    # can still produce its features.
    a = root / "a.wav"
    st_a = a.stat()
    a.write_bytes(os.urandom(st_a.st_size))
    os.utime(a, ns=(st_a.st_atime_ns, st_a.st_mtime_ns))
    second = EmotionDataset(root)
    assert second.cache_hits == 3 and second.extracted == 3  # only the 3 bad files were retried
    np.testing.assert_array_equal(second.features, first.features)
    assert [k for k in second.keys] == first.keys

    # proof that a.wav is now undecodable: without the cache it is skipped
    nocache = EmotionDataset(root, cache=False)
    assert "a.wav" in [p.name for p, _ in nocache.skipped] and len(nocache) == 2

    # a changed file (new size and mtime) is decoded again
    write_tone(root / "c.wav", 3000.0, 0.05, sr=16000, seconds=0.4)
    third = EmotionDataset(root)
    assert third.cache_hits == 2 and third.extracted == 4 and len(third) == 3  # a, b cached; c decoded


def test_emotion_requires_labels_and_folder(tmp_path: Path) -> None:
    with pytest.raises(MusicDatasetError, match="not found.*--synthetic"):
        EmotionDataset(tmp_path / "nope")
    write_tone(tmp_path / "x.wav", 440.0, 0.2)
    with pytest.raises(MusicDatasetError, match="labels.csv"):
        EmotionDataset(tmp_path)


# --------------------------------------------------------------------------------------------
# melody


MELODY_NOTES = [(60, 64, 0.0, 0.4), (64, 70, 0.5, 0.9), (60, 80, 1.0, 1.4), (67, 90, 1.5, 1.9)]


def make_melody_tree(root: Path) -> Path:
    write_midi(root / "song.mid", MELODY_NOTES, drums=[(36, 100, 0.0), (38, 100, 0.5)])
    write_midi(root / "deep" / "other.midi", [(48, 50, 0.0, 1.0), (50, 50, 1.0, 2.0), (52, 50, 2.0, 3.0)])
    write_midi(root / "third.mid", [(72, 90, 0.0, 0.2), (72, 90, 0.25, 0.5), (74, 90, 0.5, 0.7)])
    write_midi(root / "drums_only.mid", drums=[(36, 100, 0.0)])
    write_midi(root / "one_note.mid", [(60, 100, 0.0, 1.0)])
    write_bad_files(root, ".mid")
    return root


def test_melody_pitch_distribution_and_continuation_target(tmp_path: Path) -> None:
    root = make_melody_tree(tmp_path / "midi")
    ds = MelodyDataset(root)
    assert ds.mode == "continuation" and (ds.feature_dim, ds.target_dim) == (128, 128)
    assert ds.keys == ["deep/other.midi", "song.mid", "third.mid"]
    i = ds.keys.index("song.mid")
    # whole piece: pitches 60, 64, 60, 67 (drums ignored) → 60: 1/2, 64: 1/4, 67: 1/4
    whole = np.zeros(128)
    whole[[60, 64, 67]] = [0.5, 0.25, 0.25]
    np.testing.assert_allclose(ds.whole_features[i], whole)
    # halves split at (0 + 1.5) / 2 = 0.75 s: first {60, 64}, second {60, 67}
    first, second = np.zeros(128), np.zeros(128)
    first[[60, 64]] = 0.5
    second[[60, 67]] = 0.5
    np.testing.assert_allclose(ds[i]["features"].numpy(), first)
    np.testing.assert_allclose(ds[i]["target"].numpy(), second)
    reasons = dict((p.name, r) for p, r in ds.skipped)
    assert set(reasons) == {"corrupt.mid", "zero_bytes.mid", "drums_only.mid", "one_note.mid"}
    assert "empty" in reasons["zero_bytes.mid"] and "cannot parse MIDI" in reasons["corrupt.mid"]
    assert "non-drum" in reasons["drums_only.mid"] and "both halves" in reasons["one_note.mid"]
    assert_not_constant(ds)


def test_melody_with_emotion_labels_targets_the_embedding(tmp_path: Path) -> None:
    root = make_melody_tree(tmp_path / "midi")
    (root / "emotion_labels.json").write_text(
        '{"song.mid": {"valence": 0.5, "arousal": -0.5}, "deep/other": {"valence": -1, "arousal": 1},'
        ' "one_note": {"valence": 0.0, "arousal": 0.0}, "gone.mid": {"valence": 0, "arousal": 0}}'
    )
    ds = MelodyDataset(root)
    assert ds.mode == "labels" and ds.target_dim == 64
    assert ds.keys == ["deep/other.midi", "one_note.mid", "song.mid"]  # a single note is fine here
    np.testing.assert_allclose(ds.targets[2], emotion_embedding(0.5, -0.5), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ds.targets[0], emotion_embedding(-1.0, 1.0), rtol=1e-6, atol=1e-9)
    assert ds.missing == ["gone.mid"] and "third.mid" in [p.name for p in ds.unlabelled]
    assert ds.features[1][60] == 1.0
    assert MelodyDataset(root, use_labels=False).mode == "continuation"
    (root / "emotion_labels.json").write_text('{"song.mid": {"valence": 2, "arousal": 0}}')
    with pytest.raises(LabelFileError, match="outside"):
        MelodyDataset(root)


def test_identical_pieces_are_refused_as_constant(tmp_path: Path) -> None:
    for name in ("a.mid", "b.mid", "c.mid"):
        write_midi(tmp_path / name, MELODY_NOTES)
    with pytest.raises(ConstantDataError, match="identical features"):
        MelodyDataset(tmp_path, cache=False)
    write_midi(tmp_path / "c.mid", [(40, 90, 0.0, 1.0), (41, 90, 1.0, 2.0)])
    (tmp_path / "emotion_labels.json").write_text(
        "{" + ", ".join(f'"{n}": {{"valence": 0.1, "arousal": 0.2}}' for n in ("a", "b", "c")) + "}"
    )
    with pytest.raises(ConstantDataError, match="same target"):
        MelodyDataset(tmp_path, cache=False)


def test_empty_folder_and_too_few_items(tmp_path: Path) -> None:
    with pytest.raises(MusicDatasetError, match="no MIDI files"):
        MelodyDataset(tmp_path)
    write_bad_files(tmp_path, ".mid")
    write_midi(tmp_path / "ok.mid", MELODY_NOTES)
    with pytest.raises(MusicDatasetError, match=r"1 usable melody item.*2 skipped"):
        MelodyDataset(tmp_path)


def test_parallel_extraction_matches_serial(tmp_path: Path) -> None:
    root = make_melody_tree(tmp_path / "midi")
    serial = MelodyDataset(root, cache=False)
    parallel = MelodyDataset(root, cache=False, workers=2)
    np.testing.assert_array_equal(serial.features, parallel.features)
    np.testing.assert_array_equal(serial.targets, parallel.targets)
    assert serial.skipped == parallel.skipped


# --------------------------------------------------------------------------------------------
# dynamics


def test_dynamics_features_hand_computed(tmp_path: Path) -> None:
    # A (60, v60, 0.0-0.5), B (64, v80, 0.5-1.5), C (67, v100, 1.0-2.0); pedal down 0.0-1.0 s.
    write_midi(tmp_path / "three.mid", [(60, 60, 0.0, 0.5), (64, 80, 0.5, 1.5), (67, 100, 1.0, 2.0)],
               pedal=[(0.0, 127), (1.0, 0)])
    write_midi(tmp_path / "other.mid", [(60, 20, 0.0, 0.1), (62, 30, 0.2, 0.3), (64, 127, 0.4, 0.5), (65, 5, 0.6, 0.7)])
    write_bad_files(tmp_path, ".mid")
    ds = DynamicsDataset(tmp_path)
    assert ds.feature_names == list(DYNAMICS_FEATURE_NAMES) and len(ds.feature_names) == 16
    assert len(ds) == 2 and len(ds.skipped) == 2
    i = ds.keys.index("three.mid")
    std = np.sqrt((20**2 + 0 + 20**2) / 3)  # 16.33
    dstd = np.sqrt(1 / 18)  # durations 0.5, 1, 1 → std sqrt(1/18)
    whole = [80 / 127, std / 127, 40 / 127, 80 / 127,
             0, 1 / 3, 1 / 3, 1 / 3,                 # 60 → [32,64), 80 → [64,96), 100 → [96,128)
             (5 / 6) / (5 / 6 + 0.5), dstd / (dstd + 0.5), 1 / 1.5,
             1 / 3,                                  # only 100 > 80 + 16.33
             1.5 / 11.5,                             # 3 notes over T = 2 s
             80 / 127,                               # slope of v/127 over u = 0, .25, .5
             20 / 127,                               # |80-60|, |100-80|
             0.5]                                    # pedal 1 s of 2 s
    np.testing.assert_allclose(ds.whole_features[i], whole, atol=1e-6)
    # first half (onset < 0.5 s): A alone, span 0.5 s, pedal covers all of it
    first = [60 / 127, 0, 0, 60 / 127, 0, 1, 0, 0, 0.5, 0, 0.5, 0, 2 / 12, 0, 0, 1.0]
    np.testing.assert_allclose(ds[i]["features"].numpy(), first, atol=1e-6)
    # second half: B and C, span 0.5-2.0 s
    second = [90 / 127, 10 / 127, 20 / 127, 90 / 127, 0, 0, 0.5, 0.5, 1 / 1.5, 0, 1 / 1.5, 0,
              (2 / 1.5) / (2 / 1.5 + 10), 60 / 127, 20 / 127, 0.5 / 1.5]
    np.testing.assert_allclose(ds[i]["target"].numpy(), second, atol=1e-6)
    assert_not_constant(ds)


# --------------------------------------------------------------------------------------------
# groove


def feature(vec: np.ndarray, name: str) -> float:
    return float(vec[GROOVE_FEATURE_NAMES.index(name)])


def make_groove_tree(root: Path) -> Path:
    write_midi(root / "basic.mid", drums=groove_bar(0, BASIC) + groove_bar(1, BASIC))
    write_midi(root / "s1" / "busy.mid", drums=groove_bar(0, BUSY) + groove_bar(1, BUSY))
    late = {38: STEP / 4}  # every snare a quarter of a 16th late
    write_midi(root / "s1" / "late.mid", drums=groove_bar(0, BASIC, shift=late) + groove_bar(1, BASIC, shift=late),
               bpm=120.0)
    write_midi(root / "fill.mid", drums=groove_bar(0, BUSY))  # one bar: no continuation target
    write_midi(root / "keys_only.mid", [(60, 80, 0.0, 1.0)])
    write_bad_files(root, ".mid")
    return root


def test_groove_features_hand_computed(tmp_path: Path) -> None:
    root = make_groove_tree(tmp_path / "training" / "groove")
    ds = GrooveDataset.from_datasets_dir(tmp_path)
    assert ds.mode == "continuation" and ds.keys == ["basic.mid", "s1/busy.mid", "s1/late.mid"]
    assert (ds.feature_dim, ds.target_dim) == (32, 32) and len(GROOVE_FEATURE_NAMES) == 32
    reasons = dict((p.name, r) for p, r in ds.skipped)
    assert set(reasons) == {"fill.mid", "keys_only.mid", "corrupt.mid", "zero_bytes.mid"}
    assert "2 bars" in reasons["fill.mid"] and "drum" in reasons["keys_only.mid"]

    basic = ds.whole_features[0]
    expected = {
        "timing_abs_dev": 0, "timing_dev_std": 0, "timing_mean_dev": 0,
        "kick_hits_per_bar": 2 / 6, "kick_occupancy": 2 / 16, "kick_vel_mean": 100 / 127, "kick_vel_std": 0,
        "snare_hits_per_bar": 2 / 6, "snare_occupancy": 2 / 16, "snare_vel_mean": 80 / 127, "snare_vel_std": 0,
        "hihat_hits_per_bar": 0, "hihat_occupancy": 0, "toms_hits_per_bar": 0, "cymbal_hits_per_bar": 0,
        "density": 4 / 20, "syncopation": 0, "sixteenth_ratio": 0, "vel_mean": 90 / 127, "vel_std": 10 / 127,
        "accent_ratio": 0, "tempo": 0.4, "backbeat": 1, "kick_downbeat": 1, "repetition": 1,
        "bar_count_cv": 0, "hihat_open_ratio": 0, "ghost_ratio": 0,
    }
    for name, value in expected.items():
        assert feature(basic, name) == pytest.approx(value, abs=1e-6), name
    # continuation: bar 0 → bar 1, identical bars here
    np.testing.assert_allclose(ds[0]["features"].numpy(), ds[0]["target"].numpy(), atol=1e-6)
    assert feature(ds.features[0], "kick_hits_per_bar") == pytest.approx(2 / 6)

    busy = ds.whole_features[1]  # per bar: kicks 0, 8; snares 4, 12, ghost 7 (v30); hats 2, 6, 10, open 14
    busy_expected = {
        "syncopation": 5 / 9, "sixteenth_ratio": 1 / 9, "backbeat": 2 / 3, "kick_downbeat": 1,
        "hihat_hits_per_bar": 4 / 8, "hihat_occupancy": 4 / 16, "hihat_open_ratio": 1 / 4,
        "hihat_vel_mean": 60 / 127, "snare_vel_mean": 190 / 3 / 127, "snare_vel_std": np.std([80, 80, 30]) / 127,
        "snare_occupancy": 3 / 16, "ghost_ratio": 1 / 9, "density": 9 / 25, "repetition": 1,
    }
    for name, value in busy_expected.items():
        assert feature(busy, name) == pytest.approx(value, abs=1e-6), name

    late = ds.whole_features[2]  # 4 kicks on the grid, 4 snares 0.25 step late
    assert feature(late, "timing_abs_dev") == pytest.approx(2 * 0.125, abs=1e-4)
    assert feature(late, "timing_dev_std") == pytest.approx(2 * 0.125, abs=1e-4)
    assert feature(late, "timing_mean_dev") == pytest.approx(2 * 0.125, abs=1e-4)
    assert feature(late, "backbeat") == 1.0
    assert_not_constant(ds)


def test_groove_meter_and_repetition(tmp_path: Path) -> None:
    # 3/4: 12 steps per bar; kick on 1, snare on 2 (pos 4), hats... bar 2 differs from bar 1
    bar1 = [(0, 36, 100), (4, 38, 90), (8, 38, 90)]
    bar2 = [(0, 36, 100), (4, 38, 90), (10, 42, 70)]
    drums = [(p, v, (0 * 12 + pos) * STEP) for pos, p, v in bar1] + [(p, v, (12 + pos) * STEP) for pos, p, v in bar2]
    write_midi(tmp_path / "waltz.mid", drums=drums, time_sig=(3, 4))
    write_midi(tmp_path / "basic.mid", drums=groove_bar(0, BASIC) + groove_bar(1, BASIC))
    ds = GrooveDataset(tmp_path)
    w = ds.whole_features[ds.keys.index("waltz.mid")]
    # bar sets {k0, s4, s8} and {k0, s4, h10}: Jaccard 2/4
    assert feature(w, "repetition") == pytest.approx(0.5)
    assert feature(w, "kick_occupancy") == pytest.approx(1 / 12)
    assert feature(w, "syncopation") == pytest.approx(1 / 6)  # only pos 10 is off a quarter beat


def test_groove_drum_labels(tmp_path: Path) -> None:
    root = make_groove_tree(tmp_path / "groove")
    (root / "drum_labels.json").write_text(
        '{"basic.mid": {"energy": 0.2, "complexity": 0.1}, "s1/busy.mid": {"energy": 0.9, "complexity": 0.8},'
        ' "fill": {"energy": 1.0, "complexity": 0.9}}'
    )
    ds = GrooveDataset(root)
    assert ds.mode == "labels" and ds.target_names == ["complexity", "energy"]
    assert ds.keys == ["basic.mid", "fill.mid", "s1/busy.mid"]  # a one-bar fill is fine with labels
    np.testing.assert_allclose(ds.targets, [[0.1, 0.2], [0.9, 1.0], [0.8, 0.9]], atol=1e-6)
    np.testing.assert_array_equal(ds.features, ds.whole_features)
    (root / "drum_labels.json").write_text('{"basic.mid": {"energy": 0.2}, "s1/busy.mid": {"swing": 0.1}}')
    with pytest.raises(LabelFileError, match="same label names"):
        GrooveDataset(root)


# --------------------------------------------------------------------------------------------
# loading, synthetic data


def test_dataloader_epochs_read_no_files(tmp_path: Path) -> None:
    root = make_groove_tree(tmp_path / "groove")
    ds = GrooveDataset(root)
    for p in root.rglob("*.mid"):  # an epoch must not touch the files
        p.unlink()
    loader = torch.utils.data.DataLoader(ds, batch_size=2, shuffle=True)
    for _ in range(2):
        batches = list(loader)
        assert sum(b["features"].shape[0] for b in batches) == 3
        assert batches[0]["features"].shape[1] == 32 and batches[0]["target"].dtype == torch.float32


@pytest.mark.parametrize("cls", [EmotionDataset, MelodyDataset, DynamicsDataset, GrooveDataset])
def test_synthetic_datasets_have_real_shapes_and_vary(cls) -> None:
    ds = cls.synthetic(n=64, seed=3)
    shapes = {EmotionDataset: (128, 2), MelodyDataset: (128, 64), DynamicsDataset: (16, 16),
              GrooveDataset: (32, 32)}[cls]
    assert len(ds) == 64 and (ds.feature_dim, ds.target_dim) == shapes
    assert len(ds.feature_names) == ds.feature_dim and len(ds.target_names) == ds.target_dim
    assert ds.mode == "synthetic" and ds.skipped == [] and ds.target_description
    assert np.isfinite(ds.features).all() and np.isfinite(ds.targets).all()
    assert_not_constant(ds)
    again = cls.synthetic(n=64, seed=3)
    np.testing.assert_array_equal(ds.features, again.features)
    np.testing.assert_array_equal(ds.targets, again.targets)
    assert not np.array_equal(cls.synthetic(n=64, seed=4).targets, ds.targets)
    item = ds[0]
    assert item["features"].dtype == torch.float32 and item["target"].shape == (shapes[1],)


def test_melody_synthetic_continuation_mode() -> None:
    ds = MelodyDataset.synthetic(n=32, labelled=False)
    assert ds.target_dim == 128
    np.testing.assert_allclose(ds.features.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ds.targets.sum(axis=1), 1.0, atol=1e-5)
    assert_not_constant(ds)
