"""Autoencoder training data on real wav/flac files written in tmp folders (no mocks)."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from training.autoencoder.data import (
    MIN_FRACTION,
    AudioFileInfo,
    AudioSegmentDataset,
    AutoencoderDataError,
    EpochSampler,
    ValidationSet,
    files_from_hf_dataset,
    find_audio_files,
    make_loaders,
    read_segment,
    scan_files,
    split_files,
)
from workflow.audio import read_audio, resample
from workflow.errors import WorkflowError

SR = 24000


def write(path: Path, data: np.ndarray, sr: int, subtype: str = "FLOAT") -> Path:
    """Write ``[C, N]`` audio, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.asarray(data, dtype=np.float32).T, sr, subtype=subtype)
    return path


def noise(channels: int, seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    """Band-limited noise (well below every Nyquist used here) so resampling is near-lossless."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    out = np.zeros((channels, n), np.float32)
    for c in range(channels):
        for f in rng.uniform(50, 6000, size=6):
            out[c] += 0.08 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return out


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """Mono/stereo/4-channel/32-channel files at 16/44.1/48 kHz, nested, plus bad and short ones."""
    root = tmp_path / "data"
    consts = np.array([0.1, 0.2, 0.3, 0.4], np.float32)[:, None] * np.ones((4, 3 * 16000), np.float32)
    return {
        "root": root,
        "mono16": write(root / "a" / "mono16.wav", noise(1, 3.0, 16000, 1), 16000),
        "stereo44": write(root / "a" / "b" / "stereo44.flac", noise(2, 2.5, 44100, 2), 44100, "PCM_24"),
        "four48": write(root / "four48.wav", noise(4, 2.0, 48000, 3), 48000),
        "consts": write(root / "consts4.wav", consts, 16000),
        "em32": write(root / "c" / "em32_48k.wav", noise(32, 1.5, 48000, 4), 48000),
        "short": write(root / "short.wav", noise(1, 0.4, SR, 5), SR),
        "tiny": write(root / "tiny.wav", noise(1, 0.05, SR, 6), SR),
        "corrupt": _corrupt(root / "c" / "corrupt.wav"),
    }


def _corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10)
    return path


def scan(tree: dict[str, Path], mode: str, channels: int, *keys: str):
    usable, skipped = scan_files([tree[k] for k in keys], mode, channels, SR, 1.0)
    return usable, skipped


# ---------------------------------------------------------------------------------- finding files


def test_find_audio_files_nested_and_errors(tree, tmp_path: Path) -> None:
    found = find_audio_files(tree["root"])
    assert {p.name for p in found} == {"mono16.wav", "stereo44.flac", "four48.wav", "consts4.wav",
                                       "em32_48k.wav", "short.wav", "tiny.wav", "corrupt.wav"}
    assert [p.name for p in find_audio_files(tree["root"], [".flac"])] == ["stereo44.flac"]
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("x")
    with pytest.raises(AutoencoderDataError, match=r"no \.wav/\.flac files under .*empty"):
        find_audio_files(tmp_path / "empty")
    with pytest.raises(AutoencoderDataError, match="data folder not found: .*missing"):
        find_audio_files(tmp_path / "missing")
    assert issubclass(AutoencoderDataError, WorkflowError)


# ---------------------------------------------------------------------------------- scanning


def test_scan_1ch_keeps_any_channel_count_and_reports_bad_files(tree) -> None:
    usable, skipped = scan(tree, "1ch", 1, "mono16", "stereo44", "four48", "em32", "short", "tiny",
                           "corrupt")
    assert {u.path for u in usable} == {tree[k] for k in ("mono16", "stereo44", "four48", "em32", "short")}
    reasons = {p: r for p, r in skipped}
    assert set(reasons) == {tree["tiny"], tree["corrupt"]}
    assert reasons[tree["corrupt"]].startswith("unreadable") and "corrupt.wav" in reasons[tree["corrupt"]]
    assert "too short" in reasons[tree["tiny"]] and f"{MIN_FRACTION:.0%}" in reasons[tree["tiny"]]
    info = next(u for u in usable if u.path == tree["stereo44"])
    assert (info.sample_rate, info.channels) == (44100, 2) and info.duration == pytest.approx(2.5)


def test_scan_32ch_skips_files_with_too_few_channels(tree, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="training.autoencoder.data"):
        usable, skipped = scan(tree, "32ch", 32, "em32", "stereo44", "mono16")
    assert [u.path for u in usable] == [tree["em32"]]
    reasons = dict(skipped)
    assert "has 2 channel(s) but mode '32ch' needs 32" in reasons[tree["stereo44"]]
    assert "stereo44.flac" in caplog.text
    # more channels than asked: kept, the first `channels` are used
    usable, skipped = scan(tree, "32ch", 4, "em32", "four48", "stereo44")
    assert [u.path for u in usable] == [tree["em32"], tree["four48"]] and len(skipped) == 1


def test_bad_mode_arguments(tree) -> None:
    with pytest.raises(AutoencoderDataError, match="mode must be one of"):
        scan_files([tree["mono16"]], "stereo", 2, SR, 1.0)
    with pytest.raises(AutoencoderDataError, match="channels=32"):
        scan_files([tree["mono16"]], "1ch", 32, SR, 1.0)
    with pytest.raises(AutoencoderDataError, match="run scan_files"):
        AudioSegmentDataset([tree["mono16"]], mode="1ch", channels=1)
    with pytest.raises(AutoencoderDataError, match="no usable audio files"):
        AudioSegmentDataset([], mode="1ch", channels=1)


# ---------------------------------------------------------------------------------- segments


def test_segments_have_exact_length_and_channels_in_both_modes(tree) -> None:
    usable, _ = scan(tree, "1ch", 1, "mono16", "stereo44", "four48", "em32", "short")
    ds = AudioSegmentDataset(usable, mode="1ch", channels=1, length=40, seed=3)
    seen = set()
    for i in range(len(ds)):
        x = ds[i]
        assert x.dtype == torch.float32 and tuple(x.shape) == (1, SR)
        assert torch.isfinite(x).all()
        seen.add(ds.segment_ref(i).path)
    assert len(seen) >= 4  # files of every rate get drawn

    usable32, _ = scan(tree, "32ch", 32, "em32")
    ds32 = AudioSegmentDataset(usable32, mode="32ch", channels=32, length=3)
    assert all(tuple(ds32[i].shape) == (32, SR) for i in range(3))
    # a rate with no fine common grid with 24 kHz (gcd 1): any start frame, still exact length
    odd = write(tree["root"] / "odd_rate.wav", noise(1, 1.7, 22051, 9), 22051)
    (odd_info,), _ = scan_files([odd], "1ch", 1, SR, 1.0)
    ds_odd = AudioSegmentDataset([odd_info], mode="1ch", channels=1, length=4)
    assert all(tuple(ds_odd[i].shape) == (1, SR) and ds_odd[i].abs().max() > 0.01 for i in range(4))
    usable4, _ = scan(tree, "32ch", 4, "em32", "four48")
    ds4 = AudioSegmentDataset(usable4, mode="32ch", channels=4, length=6, segment_seconds=0.5)
    assert all(tuple(ds4[i].shape) == (4, SR // 2) for i in range(6))


def test_1ch_mode_draws_different_channels(tree) -> None:
    usable, _ = scan(tree, "1ch", 1, "consts")
    ds = AudioSegmentDataset(usable, mode="1ch", channels=1, length=40)
    picked = []
    for i in range(len(ds)):
        x = ds[i].numpy()
        ch = ds.segment_ref(i).channel
        # the middle of the segment (away from the file edges) holds that channel's constant
        assert np.allclose(x[0, 2000:-2000], 0.1 * (ch + 1), atol=1e-3)
        picked.append(ch)
    assert set(picked) == {0, 1, 2, 3}


def test_32ch_mode_uses_first_channels_in_order(tree) -> None:
    usable, _ = scan(tree, "32ch", 3, "consts")
    ds = AudioSegmentDataset(usable, mode="32ch", channels=3, length=2)
    x = ds[0].numpy()
    assert np.allclose(x[:, 2000:-2000], np.array([[0.1], [0.2], [0.3]]), atol=1e-3)


def test_short_file_is_zero_padded_and_keeps_its_content(tree) -> None:
    usable, _ = scan(tree, "1ch", 1, "short")
    ds = AudioSegmentDataset(usable, mode="1ch", channels=1, length=3)
    src, _ = read_audio(tree["short"])
    n = src.shape[1]
    for i in range(3):
        x = ds[i].numpy()
        assert x.shape == (1, SR)
        np.testing.assert_allclose(x[0, :n], src[0], atol=1e-6)
        assert not x[0, n:].any()


@pytest.mark.parametrize("key", ["mono16", "stereo44", "four48", "em32"])
def test_segment_equals_resampled_source_at_its_offset(tree, key) -> None:
    usable, _ = scan(tree, "1ch", 1, key)
    info = usable[0]
    ds = AudioSegmentDataset(usable, mode="1ch", channels=1, length=6, seed=11)
    full, sr = read_audio(info.path)
    ref_audio = resample(full, sr, SR)
    for i in range(len(ds)):
        ref = ds.segment_ref(i)
        t0 = ref.start * SR / sr
        assert t0 == int(t0)  # starts sit on the exact-alignment grid
        expect = ref_audio[ref.channel, int(t0):int(t0) + SR]
        got = ds[i].numpy()[0, :expect.shape[0]]
        assert np.max(np.abs(got - expect)) < 1e-4, (key, ref)


def test_read_segment_reads_only_a_span(tree) -> None:
    """Direct use: a start near the end is zero-padded past the file's last frame."""
    (info,), _ = scan(tree, "1ch", 1, "mono16")
    seg = read_segment(info, info.frames - 8000, channel=0, channels=1, sample_rate=SR, segment_samples=SR)
    assert seg.shape == (1, SR) and not seg[0, 12100:].any() and np.abs(seg[0, :11900]).max() > 0.01


# ---------------------------------------------------------------------------------- randomness


def test_reproducible_per_seed_epoch_and_index(tree) -> None:
    usable, _ = scan(tree, "1ch", 1, "mono16", "stereo44", "four48")
    a = AudioSegmentDataset(usable, mode="1ch", channels=1, length=8, seed=5)
    b = AudioSegmentDataset(usable, mode="1ch", channels=1, length=8, seed=5)
    for i in (0, 3, 7):
        assert torch.equal(a[i], b[i])
    e0 = [a[i] for i in range(8)]
    a.set_epoch(1)
    assert a.epoch == 1
    assert all(not torch.equal(x, a[i]) for i, x in enumerate(e0))
    a.set_epoch(0)
    assert all(torch.equal(x, a[i]) for i, x in enumerate(e0))
    c = AudioSegmentDataset(usable, mode="1ch", channels=1, length=8, seed=6)
    assert not torch.equal(c[0], e0[0])
    # picklable (DataLoader workers, spawn) and the copy gives the same items
    d = pickle.loads(pickle.dumps(a))
    assert torch.equal(d[2], e0[2])


def test_workers_give_distinct_segments_and_follow_set_epoch(tree) -> None:
    usable, _ = scan(tree, "1ch", 1, "mono16", "stereo44", "four48")
    ds = AudioSegmentDataset(usable, mode="1ch", channels=1, length=24, seed=2, segment_seconds=0.25)
    expected = {e: torch.stack([_at(ds, e, i) for i in range(24)]) for e in (0, 1, 2)}
    ds.set_epoch(0)
    loader = DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True,
                        sampler=EpochSampler(ds))
    for epoch in (0, 1, 2):
        if epoch == 1:
            ds.set_epoch(1)  # explicit; epoch 2 comes from the sampler's auto-advance
        got = torch.cat(list(loader))
        assert torch.equal(got, expected[epoch])
        flat = got.reshape(len(got), -1)
        assert len({bytes(r.numpy().tobytes()) for r in flat}) == len(flat)  # no duplicates
    assert ds.epoch == 2
    refs = [ds.segment_ref(i) for i in range(24)]
    assert len({(r.path, r.channel, r.start) for r in refs}) == 24


def _at(ds: AudioSegmentDataset, epoch: int, i: int) -> torch.Tensor:
    ds.set_epoch(epoch)
    return ds[i]


def test_validation_set_is_fixed(tree) -> None:
    usable, _ = scan(tree, "1ch", 1, "mono16", "stereo44", "four48", "short")
    v1 = ValidationSet(usable, mode="1ch", channels=1, n_segments=10, seed=7)
    v2 = ValidationSet(usable, mode="1ch", channels=1, n_segments=10, seed=7)
    assert v1.refs == v2.refs and len(v1) == 10
    assert {r.path for r in v1.refs} == {u.path for u in usable}  # round-robin over files
    first = [v1[i] for i in range(10)]
    assert all(torch.equal(x, v1[i]) for i, x in enumerate(first))
    assert all(torch.equal(x, v2[i]) for i, x in enumerate(first))
    assert all(tuple(x.shape) == (1, SR) for x in first)
    assert ValidationSet(usable, mode="1ch", channels=1, n_segments=10, seed=8).refs != v1.refs


# ---------------------------------------------------------------------------------- split & loaders


def test_split_files_deterministic(tree, tmp_path: Path, caplog) -> None:
    files = [tmp_path / "x" / f"f{i:03d}.wav" for i in range(50)]
    train, val = split_files(files, 0.2, seed=0)
    assert set(val) == set(split_files(list(reversed(files)), 0.2, seed=0)[1])  # order-independent
    assert sorted(train + val) == sorted(files) and not set(train) & set(val)
    assert 3 <= len(val) <= 20
    # the same relative layout in another folder splits the same way (hash of the relative path)
    moved = [tmp_path / "elsewhere" / p.name for p in files]
    assert [p.name for p in split_files(moved, 0.2)[1]] == [p.name for p in val]
    assert split_files(files, 0.2, seed=1)[1] != val
    two = files[:2]
    t, v = split_files(two, 0.01)
    assert len(t) == 1 and len(v) == 1
    t, v = split_files(two, 0.99)
    assert len(t) == 1 and len(v) == 1
    with caplog.at_level(logging.WARNING, logger="training.autoencoder.data"):
        t, v = split_files(files[:1])
    assert t == v == files[:1] and "same file" in caplog.text
    infos = [AudioFileInfo(p, SR, 1, SR) for p in files]
    assert [i.path for i in split_files(infos, 0.2)[1]] == val
    with pytest.raises(AutoencoderDataError, match="val_fraction"):
        split_files(files, 0.0)


def test_make_loaders(tree) -> None:
    usable, _ = scan(tree, "1ch", 1, "mono16", "stereo44", "four48", "em32")
    train_files, val_files = split_files(usable, 0.25)
    train, val = make_loaders(train_files, val_files, batch_size=3, num_workers=0, mode="1ch", channels=1,
                              sample_rate=SR, segment_seconds=0.5, updates_per_epoch=2, n_val_segments=5,
                              seed=4)
    batches = list(train)
    assert len(batches) == 2 and all(tuple(b.shape) == (3, 1, SR // 2) for b in batches)
    assert len(train.dataset) == 6 and isinstance(train.sampler, EpochSampler)
    vb = list(val)
    assert [tuple(b.shape) for b in vb] == [(3, 1, SR // 2), (2, 1, SR // 2)]
    assert all(torch.equal(a, b) for a, b in zip(vb, list(val)))
    second = list(train)  # no set_epoch: the sampler advances the epoch itself
    assert train.dataset.epoch == 1 and not torch.equal(batches[0], second[0])


# ---------------------------------------------------------------------------------- s5 dataset


def test_files_from_hf_dataset(tmp_path: Path) -> None:
    from workflow import s2_wav2encodec24
    from workflow.s5_build_dataset_from_folder import main as s5

    wavs = tmp_path / "wavs"
    for i in range(3):
        write(wavs / ("sub" if i else "") / f"clip{i}.wav", noise(1, 0.5, SR, i), SR, "PCM_16")
    tokens = tmp_path / "tokens"
    assert s2_wav2encodec24.main([str(wavs), str(tokens), "--weights", "random", "--device", "cpu",
                                  "--no-progress"]) == 0
    with_wav, without = tmp_path / "ds", tmp_path / "ds_nowav"
    assert s5([str(tokens), str(with_wav), "--wav-root", str(wavs), "--no-progress"]) == 0
    assert s5([str(tokens), str(without), "--no-progress"]) == 0

    paths = files_from_hf_dataset(with_wav)
    assert len(paths) == 3 and all(p.is_file() for p in paths)
    got = sorted(sf.read(p)[0][:100].tobytes() for p in paths)
    assert got == sorted(sf.read(p)[0][:100].tobytes() for p in find_audio_files(wavs))
    usable, skipped = scan_files(paths, "1ch", 1, SR, 0.25)
    assert len(usable) == 3 and not skipped
    with pytest.raises(AutoencoderDataError, match=r"no 'wav' column.*--wav-root"):
        files_from_hf_dataset(without)
    with pytest.raises(AutoencoderDataError, match="no split 'valid'"):
        files_from_hf_dataset(with_wav, split="valid")
