"""Training data for the SEANet autoencoder: random fixed-length segments of wav/flac files.

Modes ``"1ch"`` (a random channel of any file) and ``"32ch"`` (``channels`` channels; files with
fewer are skipped). Only one segment's span is decoded, then resampled with soxr, on a start grid
that makes a segment equal the same slice of the whole file resampled. Item ``i`` of epoch ``e``
uses ``default_rng([seed, e, i])``, so any number of workers gives the same data; call
:meth:`AudioSegmentDataset.set_epoch`. Details: README.md, "SEANet autoencoder", **Data pipeline**.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from workflow.audio import audio_info, resample
from workflow.errors import AudioReadError, WorkflowError
from workflow.files import discover, normalize_extensions
from workflow.hfdata import load_dataset_dir, resolve_path

log = logging.getLogger(__name__)

__all__ = [
    "MODES",
    "MIN_FRACTION",
    "AutoencoderDataError",
    "AudioFileInfo",
    "SegmentRef",
    "find_audio_files",
    "files_from_hf_dataset",
    "scan_files",
    "split_files",
    "read_segment",
    "AudioSegmentDataset",
    "ValidationSet",
    "EpochSampler",
    "make_loaders",
]

Mode = Literal["1ch", "32ch"]
MODES: tuple[str, ...] = ("1ch", "32ch")
#: A file shorter than one segment is zero-padded at the end if it holds at least this fraction
#: of a segment, and skipped otherwise (a mostly-silent example teaches the model little).
MIN_FRACTION = 0.1
#: Seconds of source context read before and after a segment so that soxr's filter sees the
#: real neighbouring samples instead of zeros (10 ms is well beyond the HQ filter's reach).
_CONTEXT_SECONDS = 0.01
#: Largest alignment step, as a fraction of a second, before falling back to any frame offset.
_MAX_STEP_SECONDS = 0.01
#: Attempts (each a fresh random draw) before a read failure in a worker becomes an error.
_READ_ATTEMPTS = 4


class AutoencoderDataError(WorkflowError):
    """Autoencoder training data is missing, unusable or inconsistent with the chosen mode."""


@dataclass(frozen=True)
class AudioFileInfo:
    """One usable audio file, as its header describes it (no samples decoded)."""

    path: Path
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class SegmentRef:
    """Where one segment comes from.

    ``start`` is a frame index at the file's own rate (0 for a padded short file); ``channel`` is
    the channel used in ``"1ch"`` mode and ``None`` in ``"32ch"`` mode (the first ``channels``).
    """

    file_index: int
    path: Path
    channel: int | None
    start: int


# ============================================================================ finding files


def find_audio_files(data_dir: Path | str, extensions: Sequence[str] = (".wav", ".flac")) -> list[Path]:
    """All audio files under ``data_dir`` (nested folders, any rate), sorted by relative path."""
    root = Path(data_dir)
    if not root.is_dir():
        raise AutoencoderDataError(f"data folder not found: {root}; pass --data-dir pointing at a "
                                   "folder of wav/flac files (nested folders are searched)")
    exts = normalize_extensions(extensions)
    files = discover(root, exts, recursive=True)
    if not files:
        raise AutoencoderDataError(f"no {'/'.join(exts)} files under {root} (searched nested folders); "
                                   "point --data-dir at the audio, or set data.extensions to the "
                                   "suffixes your files use")
    log.info("found %d audio files under %s", len(files), root)
    return files


def files_from_hf_dataset(dataset_dir: Path | str, split: str = "train") -> list[Path]:
    """The wav files of one split of an s5 DatasetDict (its ``wav`` column, resolved to paths)."""
    dsd = load_dataset_dir(dataset_dir)
    if split not in dsd:
        raise AutoencoderDataError(f"{dataset_dir}: has no split {split!r} (splits: "
                                   f"{', '.join(dsd) or 'none'}); pass one of those as data.hf_split")
    ds = dsd[split]
    if "wav" not in ds.column_names:
        raise AutoencoderDataError(
            f"{dataset_dir}: split {split!r} has no 'wav' column (columns: {', '.join(ds.column_names)}); "
            "rebuild it with `wf-build-dataset TOKENS_DIR OUT_DIR --wav-root NORMALIZED_WAV_DIR` so "
            "each row records its wav file, or train from the wav folder with --data-dir")
    rels = ds.select_columns(["wav"]).with_format("arrow")[:].column("wav").to_pylist()
    paths = [p for p in (resolve_path(dataset_dir, r) for r in rels) if p is not None]
    if len(paths) < len(rels):
        log.warning("%s: %d of %d rows of split %r have no wav; they are left out",
                    dataset_dir, len(rels) - len(paths), len(rels), split)
    if not paths:
        raise AutoencoderDataError(f"{dataset_dir}: no row of split {split!r} has a wav path; rebuild "
                                   "it with `wf-build-dataset ... --wav-root NORMALIZED_WAV_DIR`")
    log.info("%s: %d wav files in split %r", dataset_dir, len(paths), split)
    return paths


# ============================================================================ scanning


def _check_mode(mode: str, channels: int) -> None:
    if mode not in MODES:
        raise AutoencoderDataError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "1ch" and channels != 1:
        raise AutoencoderDataError(f"mode '1ch' gives 1-channel segments, but channels={channels}; "
                                   "set channels=1 or use mode '32ch'")
    if channels < 1:
        raise AutoencoderDataError(f"channels must be >= 1, got {channels}")


def _segment_samples(sample_rate: int, segment_seconds: float) -> int:
    if sample_rate <= 0 or segment_seconds <= 0:
        raise AutoencoderDataError(f"sample_rate and segment_seconds must be positive, got "
                                   f"{sample_rate} and {segment_seconds}")
    n = int(round(sample_rate * segment_seconds))
    if n < 1:
        raise AutoencoderDataError(f"segment_seconds={segment_seconds} is less than one sample at "
                                   f"{sample_rate} Hz")
    return n


def _source_frames(n_out: int, sr_in: int, sr_out: int) -> int:
    """Frames at ``sr_in`` that cover ``n_out`` samples at ``sr_out``."""
    return -(-n_out * sr_in // sr_out)


def scan_files(
    files: Sequence[Path | str],
    mode: Mode,
    channels: int,
    sample_rate: int,
    segment_seconds: float,
) -> tuple[list[AudioFileInfo], list[tuple[Path, str]]]:
    """Check every file's header and return ``(usable, skipped)``; ``skipped`` has the reasons.

    Skipped: unreadable headers; in ``"32ch"`` mode files with fewer than ``channels`` channels;
    files shorter than :data:`MIN_FRACTION` of a segment. Files shorter than one segment but at
    least that long are KEPT and zero-padded at the end when read. Files with more than
    ``channels`` channels (``"32ch"``) are kept; their first ``channels`` channels are used.
    """
    _check_mode(mode, channels)
    n_out = _segment_samples(sample_rate, segment_seconds)
    usable: list[AudioFileInfo] = []
    skipped: list[tuple[Path, str]] = []
    padded = wider = 0
    for f in files:
        path = Path(f)
        try:
            info = audio_info(path)
        except AudioReadError as exc:
            skipped.append((path, f"unreadable: {exc}"))
            continue
        if mode == "32ch" and info.channels < channels:
            skipped.append((path, f"has {info.channels} channel(s) but mode '32ch' needs {channels}; "
                                  "use mode '1ch' for it, or remove it from the data folder"))
            continue
        need = _source_frames(n_out, info.sample_rate, sample_rate)
        if info.frames < MIN_FRACTION * need:
            skipped.append((path, f"too short: {info.frames / info.sample_rate:.3f} s is less than "
                                  f"{MIN_FRACTION:.0%} of a {segment_seconds:g} s segment (shorter "
                                  "files are zero-padded only above that)"))
            continue
        padded += info.frames < need
        wider += mode == "32ch" and info.channels > channels
        usable.append(AudioFileInfo(path, info.sample_rate, info.channels, info.frames))
    for path, reason in skipped:
        log.warning("%s skipped: %s", path, reason)
    if padded:
        log.info("%d file(s) are shorter than one %g s segment and will be zero-padded",
                 padded, segment_seconds)
    if wider:
        log.info("%d file(s) have more than %d channels; their first %d channels are used",
                 wider, channels, channels)
    log.info("scanned %d files: %d usable, %d skipped", len(usable) + len(skipped), len(usable),
             len(skipped))
    return usable, skipped


# ============================================================================ splitting

_T = TypeVar("_T", Path, AudioFileInfo)


def _path_of(item: Path | str | AudioFileInfo) -> Path:
    return item.path if isinstance(item, AudioFileInfo) else Path(item)


def split_files(files: Sequence[_T], val_fraction: float = 0.1, seed: int = 0) -> tuple[list[_T], list[_T]]:
    """Split ``files`` (paths or :class:`AudioFileInfo`) into ``(train, val)`` by a path hash.

    A file goes to validation when the hash of ``seed`` and its path relative to the files' common
    folder falls below ``val_fraction``: the split survives moving the folder and adding files.
    With two or more files each side gets at least one; with a single file both sides use it
    (a warning says the validation loss then measures training data).
    """
    if not 0.0 < val_fraction < 1.0:
        raise AutoencoderDataError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    items = list(files)
    if not items:
        raise AutoencoderDataError("no files to split; check the data folder (find_audio_files)")
    if len(items) == 1:
        log.warning("only one file (%s): validation uses the same file as training, so the "
                    "validation loss is not a held-out measure; add more files", _path_of(items[0]))
        return items, list(items)
    paths = [os.path.abspath(_path_of(it)) for it in items]
    common = os.path.commonpath(paths)
    if len(set(paths)) == 1:
        common = os.path.dirname(common)

    def score(p: str) -> float:
        key = Path(os.path.relpath(p, common)).as_posix()
        digest = hashlib.sha1(f"{seed}:{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64

    scores = [score(p) for p in paths]
    is_val = [s < val_fraction for s in scores]
    if not any(is_val):
        is_val[int(np.argmin(scores))] = True
    if all(is_val):
        is_val[int(np.argmax(scores))] = False
    train = [it for it, v in zip(items, is_val) if not v]
    val = [it for it, v in zip(items, is_val) if v]
    log.info("split %d files: %d train, %d validation", len(items), len(train), len(val))
    return train, val


# ============================================================================ reading one segment


def _grid(sr_in: int, sr_out: int) -> tuple[int, int]:
    """``(step_in, step_out)``: starts that are multiples of ``step_in`` source frames fall exactly
    on output sample ``k * step_out``. Falls back to ``(1, 0)`` (any frame, unaligned) when the
    exact grid would be coarser than 10 ms (rates with a tiny common divisor)."""
    g = math.gcd(sr_in, sr_out)
    step_in, step_out = sr_in // g, sr_out // g
    if step_in > max(1, int(_MAX_STEP_SECONDS * sr_in)):
        return 1, 0
    return step_in, step_out


def read_segment(
    info: AudioFileInfo,
    start: int,
    *,
    channel: int | None,
    channels: int,
    sample_rate: int,
    segment_samples: int,
) -> np.ndarray:
    """Decode one segment starting at source frame ``start`` → float32 ``[C, segment_samples]``.

    Reads only the segment's span plus a little context, keeps ``channel`` (or the first
    ``channels`` channels when ``channel`` is None), resamples to ``sample_rate`` and trims;
    anything past the end of the file is zeros. Raises :class:`AudioReadError` if decoding fails.
    """
    sr_in = info.sample_rate
    need = _source_frames(segment_samples, sr_in, sample_rate)
    if sr_in == sample_rate:
        pre = post = 0
    else:
        step_in, _ = _grid(sr_in, sample_rate)
        ctx = -(-int(math.ceil(_CONTEXT_SECONDS * sr_in)) // step_in) * step_in
        pre = min(start, ctx)  # a multiple of step_in when start is on the grid
        post = ctx + 1
    lo = start - pre
    hi = min(info.frames, start + need + post)
    try:
        data, _ = sf.read(str(info.path), start=lo, frames=max(0, hi - lo), dtype="float32",
                          always_2d=True)
    except (RuntimeError, ValueError, TypeError, OSError, EOFError) as exc:
        raise AudioReadError(f"{info.path}: cannot decode frames {lo}..{hi} ({exc}); the file may be "
                             "truncated or changed since it was scanned; re-export or remove it") from exc
    block = data[:, channel:channel + 1] if channel is not None else data[:, :channels]  # [n, C]
    if block.shape[1] != (1 if channel is not None else channels):
        raise AudioReadError(f"{info.path}: has {data.shape[1]} channel(s) now, expected "
                             f"{info.channels}; it changed since it was scanned — rescan the data")
    audio = resample(block.T, sr_in, sample_rate)  # [C, M]
    skip = int(round(pre * sample_rate / sr_in))
    seg = audio[:, skip:skip + segment_samples]
    out = np.zeros((seg.shape[0], segment_samples), dtype=np.float32)
    out[:, :seg.shape[1]] = seg
    if not np.isfinite(out).all():
        raise AudioReadError(f"{info.path}: NaN or Inf samples near frame {start}; re-export the file "
                             "or remove it")
    return out


def _draw_start(info: AudioFileInfo, rng: np.random.Generator, sample_rate: int, segment_samples: int) -> int:
    """A random segment start (source frames) on the alignment grid; 0 for a short file."""
    need = _source_frames(segment_samples, info.sample_rate, sample_rate)
    step_in, _ = _grid(info.sample_rate, sample_rate)
    if info.frames <= need:
        return 0
    n_starts = (info.frames - need) // step_in + 1
    return int(rng.integers(n_starts)) * step_in


def _check_files(files: Sequence[AudioFileInfo], mode: str, channels: int, what: str) -> list[AudioFileInfo]:
    files = list(files)
    if not files:
        raise AutoencoderDataError(f"{what}: no usable audio files; check the data folder and the "
                                   "files scan_files skipped")
    for f in files:
        if not isinstance(f, AudioFileInfo):
            raise AutoencoderDataError(f"{what}: expected AudioFileInfo records from scan_files, got "
                                       f"{type(f).__name__} ({f!r}); run scan_files on the paths first")
        if mode == "32ch" and f.channels < channels:
            raise AutoencoderDataError(f"{f.path}: has {f.channels} channel(s) but mode '32ch' needs "
                                       f"{channels}; filter the files with scan_files")
    return files


def _init_segments(obj: Dataset, files: Sequence[AudioFileInfo], *, mode: Mode, channels: int,
                   sample_rate: int, segment_seconds: float, seed: int) -> None:
    """The checks and attributes both segment datasets share (files, mode, rate, segment length, seed)."""
    _check_mode(mode, channels)
    obj.files = _check_files(files, mode, channels, type(obj).__name__)
    obj.mode = mode
    obj.channels = int(channels)
    obj.sample_rate = int(sample_rate)
    obj.segment_seconds = float(segment_seconds)
    obj.segment_samples = _segment_samples(obj.sample_rate, obj.segment_seconds)
    obj.seed = int(seed)


# ============================================================================ datasets


class AudioSegmentDataset(Dataset):
    """Random training segments: float32 tensors ``[C, N]``, ``N = round(sample_rate*segment_seconds)``.

    Item ``i`` draws, from ``default_rng([seed, epoch, i])``: a file with probability proportional
    to its duration (every second of audio is equally likely, so a long recording is not
    under-sampled next to many short ones), a start uniform over the file, and in ``"1ch"`` mode a
    channel uniform over the file's channels (``"32ch"``: the first ``channels``). ``length``
    items make one epoch (default 2000 updates × batch 32). Cheap to build and to pickle: it holds
    only the file records and a cumulative-duration table.
    """

    def __init__(
        self,
        files: Sequence[AudioFileInfo],
        *,
        mode: Mode,
        channels: int,
        sample_rate: int = 24000,
        segment_seconds: float = 1.0,
        length: int = 2000 * 32,
        seed: int = 0,
    ) -> None:
        _init_segments(self, files, mode=mode, channels=channels, sample_rate=sample_rate,
                       segment_seconds=segment_seconds, seed=seed)
        if length < 1:
            raise AutoencoderDataError(f"length (items per epoch) must be >= 1, got {length}")
        self.length = int(length)
        self._cum = np.cumsum([f.frames / f.sample_rate for f in self.files], dtype=np.float64)
        # shared memory: persistent DataLoader workers read the epoch set in the main process
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self._epoch_sets = 0  # counts set_epoch calls (read by EpochSampler in the main process)

    def __len__(self) -> int:
        return self.length

    @property
    def epoch(self) -> int:
        """The epoch whose segments ``__getitem__`` returns."""
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch (call before iterating; visible to already-started workers)."""
        if epoch < 0:
            raise AutoencoderDataError(f"epoch must be >= 0, got {epoch}")
        self._epoch.fill_(int(epoch))
        self._epoch_sets += 1

    def _rng(self, index: int, epoch: int, attempt: int) -> np.random.Generator:
        key = [self.seed, epoch, index] + ([attempt] if attempt else [])
        return np.random.default_rng(key)

    def segment_ref(self, index: int, epoch: int | None = None, *, attempt: int = 0) -> SegmentRef:
        """Where item ``index`` of ``epoch`` (default: the current one) comes from, without reading."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of length {self.length}")
        rng = self._rng(index, self.epoch if epoch is None else int(epoch), attempt)
        fi = int(np.searchsorted(self._cum, rng.random() * self._cum[-1], side="right"))
        fi = min(fi, len(self.files) - 1)
        info = self.files[fi]
        start = _draw_start(info, rng, self.sample_rate, self.segment_samples)
        channel = int(rng.integers(info.channels)) if self.mode == "1ch" else None
        return SegmentRef(fi, info.path, channel, start)

    def load(self, ref: SegmentRef) -> torch.Tensor:
        """Decode the segment ``ref`` describes."""
        audio = read_segment(self.files[ref.file_index], ref.start, channel=ref.channel,
                             channels=self.channels, sample_rate=self.sample_rate,
                             segment_samples=self.segment_samples)
        return torch.from_numpy(audio)

    def __getitem__(self, index: int) -> torch.Tensor:
        epoch = self.epoch
        last: AudioReadError | None = None
        for attempt in range(_READ_ATTEMPTS):
            ref = self.segment_ref(int(index), epoch, attempt=attempt)
            try:
                return self.load(ref)
            except AudioReadError as exc:  # one bad block must not end a long run: draw again
                log.warning("%s; drawing another segment", exc)
                last = exc
        raise AutoencoderDataError(f"{_READ_ATTEMPTS} reads in a row failed (last: {last}); check the "
                                   "data folder (files changed or damaged since the scan?)") from last

    def __repr__(self) -> str:
        return (f"AudioSegmentDataset({len(self.files)} files, mode={self.mode!r}, channels={self.channels}, "
                f"{self.sample_rate} Hz, {self.segment_seconds:g} s, length={self.length}, seed={self.seed})")


class ValidationSet(Dataset):
    """A fixed list of ``n_segments`` segments, chosen once from ``seed``: the same every epoch/run.

    Files are visited round-robin in a seeded order (so every validation file is used before any
    repeats), each segment with a seeded random start and, in ``"1ch"`` mode, channel. The list is
    in :attr:`refs`; ``__getitem__`` re-reads its segment each time (nothing is cached, so 32-channel
    sets cost no memory) and returns the same tensor every time.
    """

    def __init__(
        self,
        files: Sequence[AudioFileInfo],
        *,
        mode: Mode,
        channels: int,
        sample_rate: int = 24000,
        segment_seconds: float = 1.0,
        n_segments: int = 64,
        seed: int = 1234,
    ) -> None:
        _init_segments(self, files, mode=mode, channels=channels, sample_rate=sample_rate,
                       segment_seconds=segment_seconds, seed=seed)
        if n_segments < 1:
            raise AutoencoderDataError(f"n_segments must be >= 1, got {n_segments}")
        rng = np.random.default_rng([self.seed, 0x7A1])
        order = rng.permutation(len(self.files))
        refs = []
        for j in range(int(n_segments)):
            fi = int(order[j % len(order)])
            info = self.files[fi]
            start = _draw_start(info, rng, self.sample_rate, self.segment_samples)
            channel = int(rng.integers(info.channels)) if mode == "1ch" else None
            refs.append(SegmentRef(fi, info.path, channel, start))
        self.refs: list[SegmentRef] = refs

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, index: int) -> torch.Tensor:
        ref = self.refs[index]
        try:
            audio = read_segment(self.files[ref.file_index], ref.start, channel=ref.channel,
                                 channels=self.channels, sample_rate=self.sample_rate,
                                 segment_samples=self.segment_samples)
        except AudioReadError as exc:
            raise AutoencoderDataError(f"validation segment {index}: {exc}") from exc
        return torch.from_numpy(audio)

    def __repr__(self) -> str:
        return (f"ValidationSet({len(self.refs)} segments from {len(self.files)} files, "
                f"mode={self.mode!r}, channels={self.channels}, {self.sample_rate} Hz, "
                f"{self.segment_seconds:g} s, seed={self.seed})")


# ============================================================================ loaders


class EpochSampler(Sampler[int]):
    """Indices ``0..len-1`` in order (each item is already random), advancing the epoch itself.

    If :meth:`AudioSegmentDataset.set_epoch` was not called since the previous pass, the next
    pass uses the following epoch, so epochs never silently repeat; calling ``set_epoch`` (e.g.
    after a resume) always wins.
    """

    def __init__(self, dataset: AudioSegmentDataset) -> None:
        self.dataset = dataset
        self._sets_seen: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[int]:
        ds = self.dataset
        if self._sets_seen is not None and ds._epoch_sets == self._sets_seen:
            ds.set_epoch(ds.epoch + 1)
        self._sets_seen = ds._epoch_sets
        return iter(range(len(ds)))


def make_loaders(
    train_files: Sequence[AudioFileInfo],
    val_files: Sequence[AudioFileInfo],
    *,
    batch_size: int,
    num_workers: int,
    mode: Mode,
    channels: int,
    sample_rate: int,
    segment_seconds: float,
    updates_per_epoch: int,
    n_val_segments: int,
    seed: int,
) -> tuple[DataLoader, DataLoader]:
    """``(train_loader, val_loader)``: ``updates_per_epoch`` full batches of random segments, and
    the fixed validation batches. Workers are persistent; memory is pinned when CUDA is present.
    The training segments are seeded with ``seed``, the validation set with ``seed + 1234``.

    The train loader's sampler is an :class:`EpochSampler`: call
    ``train_loader.dataset.set_epoch(e)`` before each epoch (or let it advance by itself).
    """
    if batch_size < 1 or updates_per_epoch < 1 or num_workers < 0:
        raise AutoencoderDataError(f"need batch_size >= 1, updates_per_epoch >= 1 and num_workers >= 0, got "
                                   f"{batch_size}, {updates_per_epoch}, {num_workers}")
    common: dict[str, Any] = dict(mode=mode, channels=channels, sample_rate=sample_rate,
                                  segment_seconds=segment_seconds)
    train_ds = AudioSegmentDataset(train_files, length=updates_per_epoch * batch_size, seed=seed, **common)
    val_ds = ValidationSet(val_files, n_segments=n_val_segments, seed=seed + 1234, **common)
    loader_args: dict[str, Any] = dict(batch_size=batch_size, num_workers=num_workers,
                                       pin_memory=torch.cuda.is_available(),
                                       persistent_workers=num_workers > 0)
    train = DataLoader(train_ds, sampler=EpochSampler(train_ds), drop_last=True, **loader_args)
    val = DataLoader(val_ds, shuffle=False, drop_last=False, **loader_args)
    return train, val
