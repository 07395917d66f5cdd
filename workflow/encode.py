"""The s2 engine: encode audio files into `.ecdc` token files with a neural codec.

``encode_items`` runs a loaded codec over work items through the runner's pipeline: threads, or
worker processes (``decode_pool``), decode and resample (``AudioLoader``) while ``EncodeSink``
encodes length-sorted batches and writes the files in the background. ``output_problem`` decides what counts as done (resume),
``verify_outputs`` re-reads and decodes a sample. Torch is only imported by the codec loader.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import random
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workflow import audio, ecdc
from workflow.codecs.weights import weights_match
from workflow.decode_pool import ProcessLoader
from workflow.dist import DistInfo
from workflow.errors import EcdcFormatError, UsageError
from workflow.files import discover, mirror_path, relative_key, select_shard
from workflow.runner import Runner, RunOptions, RunReport, WorkItem

STAGE = "s2_wav2encodec24"
log = logging.getLogger(f"workflow.{STAGE}")  # log lines keep the stage's name
# Measured with EnCodec 24 kHz on a 2-core CPU: ~10 s of audio per forward pass is fastest
# (35× real time; 60 s batches drop to 12×, the activations outgrow the caches).
DEFAULT_BATCH_SECONDS = {"cpu": 10.0, "cuda": 120.0}
DECODE_MODES = ("auto", "threads", "processes")


def decode_in_processes(mode: str, device_type: str) -> bool:
    """``auto``: processes on a GPU (the model is fast, inputs are the bottleneck), threads on
    the CPU (the model is the bottleneck and decoding s1's output costs ~1% of encoding it)."""
    if mode not in DECODE_MODES:
        raise UsageError(f"decode mode {mode!r}: use one of {', '.join(DECODE_MODES)}")
    return mode == "processes" or (mode == "auto" and device_type == "cuda")


# -- outputs ---------------------------------------------------------------------------------------
def output_problem(path: Path, codec_name: str | None = None, num_codebooks: int | None = None,
                   weights: str | None = None) -> str | None:
    """Why ``path`` is not a finished output (``None`` when it is): missing, corrupt, or made with
    another codec, codebook count or weights (a smoke run with random weights must not make the
    real run skip everything). ``--dry-run`` and ``--list-missing`` apply this same test."""
    if not path.exists():
        return "missing"
    try:
        header = ecdc.read_ecdc_header(path)
        expected = header.data_offset + header.payload_bytes
        size = path.stat().st_size
        if size != expected:
            return f"truncated ({size} of {expected} bytes)"
    except EcdcFormatError as exc:
        return f"invalid ({exc})"
    if codec_name is not None and header.model != codec_name:
        return f"made with codec {header.model}"
    if num_codebooks is not None and header.num_codebooks != num_codebooks:
        return f"has {header.num_codebooks} codebooks, {num_codebooks} requested"
    if not weights_match(header.meta.get("weights"), weights):
        return f"made with weights {header.meta.get('weights')!r}, not {weights!r}"
    return None


def orphan_outputs(out_root: Path, items: list[WorkItem], suffix: str) -> list[Path]:
    """Token files under ``out_root`` whose input no longer exists."""
    if not out_root.exists():
        return []
    expected = {it.dst.resolve() for it in items}
    return [p for p in discover(out_root, suffix) if p.resolve() not in expected]


# -- the encode sink -------------------------------------------------------------------------------
@dataclass
class Loaded:
    audio: np.ndarray
    resampled_from: int | None
    channels_from: int | None


class EncodeSink:
    """Collects loaded audio into batches of about ``batch_seconds``, encodes them, and writes
    the `.ecdc` files in a background thread so bit-packing and disk I/O overlap the next batch."""

    def __init__(self, codec, batch_seconds: float, max_batch_items: int = 64, max_pending_writes: int = 2):
        self.codec = codec
        self.budget = int(batch_seconds * codec.spec.sample_rate)
        self.max_items = max_batch_items
        self.batch: list[tuple[WorkItem, Loaded]] = []
        self.samples = 0
        meta = dict(codec.ecdc_meta())
        self.model = meta.pop("m")
        self.bits = int(meta.pop("bits"))
        self.extra = meta
        self._writer = cf.ThreadPoolExecutor(1, thread_name_prefix="ecdc-writer")
        self._writes: deque[cf.Future] = deque()
        self._max_pending = max_pending_writes

    def add(self, item: WorkItem, payload: Loaded) -> list:
        n = payload.audio.shape[-1]
        done = []
        # Encode first if this item would overflow the batch: batches stay near the budget.
        if self.batch and (self.samples + n > self.budget or len(self.batch) >= self.max_items):
            done = self._encode_pending()
        self.batch.append((item, payload))
        self.samples += n
        return done + self._collect(block=False)

    def flush(self) -> list:
        done = self._encode_pending()
        done += self._collect(block=True)
        self._writer.shutdown(wait=True)
        return done

    def _encode_pending(self) -> list:
        """Encode the current batch and queue its writes; returns items that failed to encode."""
        batch, self.batch, self.samples = self.batch, [], 0
        if not batch:
            return []
        try:
            encoded = self.codec.encode_batch([p.audio for _, p in batch])
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory: retry one by one
            if len(batch) == 1:
                return [(batch[0][0], exc)]
            log.warning("batch of %d failed (%s); encoding its items one at a time", len(batch), exc)
            failed = []
            for pair in batch:
                self.batch = [pair]
                failed += self._encode_pending()
            return failed
        if len(self._writes) >= self._max_pending:  # back-pressure: wait for the oldest write
            cf.wait([self._writes[0]])
        self._writes.append(self._writer.submit(self._write_batch, batch, encoded))
        return []

    def _collect(self, block: bool) -> list:
        out = []
        while self._writes and (block or self._writes[0].done()):
            out += self._writes.popleft().result()
        return out

    def _write_batch(self, batch, encoded) -> list:
        results = []
        for (item, loaded), enc in zip(batch, encoded):
            try:
                ecdc.write_ecdc(item.dst, enc.segments, model=self.model, audio_length=enc.audio_length,
                                bits=self.bits, scales=enc.scales, extra=self.extra)
                info = {"frames": int(sum(s.shape[-1] for s in enc.segments)),
                        "seconds": round(enc.audio_length / self.codec.spec.sample_rate, 4)}
                if loaded.resampled_from:
                    info["resampled_from"] = loaded.resampled_from
                if loaded.channels_from:
                    info["channels_from"] = loaded.channels_from
                results.append((item, info))
            except Exception as exc:  # noqa: BLE001 - reported per item
                results.append((item, exc))
        return results


class AudioLoader:
    """Reads one input and brings it to the codec's rate and channels (warns once if needed)."""

    def __init__(self, sample_rate: int, channels: int):
        self.sample_rate = sample_rate
        self.channels = channels
        self._warned = threading.Event()

    def __getstate__(self) -> dict:  # picklable for decoding processes (each warns once itself)
        return {"sample_rate": self.sample_rate, "channels": self.channels}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["sample_rate"], state["channels"])

    def __call__(self, item: WorkItem) -> Loaded:
        data, sr = audio.read_audio(item.src)
        ch_in = data.shape[0]
        if ch_in != self.channels or sr != self.sample_rate:
            if not self._warned.is_set():
                self._warned.set()
                log.warning("%s is %d Hz × %d ch; resampling/mixing to the codec's %d Hz × %d ch "
                            "(run s1 first to do this once)", item.key, sr, ch_in,
                            self.sample_rate, self.channels)
            data = audio.resample(audio.to_channels(data, self.channels), sr, self.sample_rate)
        return Loaded(np.ascontiguousarray(data, dtype=np.float32),
                      sr if sr != self.sample_rate else None,
                      ch_in if ch_in != self.channels else None)


def by_duration(items: list[WorkItem]) -> list[WorkItem]:
    """Sort by input duration so each batch holds similar lengths (less padding)."""
    def seconds(it: WorkItem) -> float:
        try:
            return audio.audio_info(it.src).duration
        except Exception:  # noqa: BLE001 - the load step reports it properly
            return math.inf
    return sorted(items, key=seconds)


# -- verification ------------------------------------------------------------------------------------
def snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    n = min(ref.shape[-1], est.shape[-1])
    ref, est = ref[..., :n].astype(np.float64), est[..., :n].astype(np.float64)
    noise = np.sum((ref - est) ** 2)
    return float(10 * np.log10(np.sum(ref ** 2) / noise)) if noise > 0 else math.inf


def verify_outputs(codec, items: list[WorkItem], samples: int, seed: int = 0) -> list[dict]:
    """Re-read sampled outputs, check frame counts against the audio, decode and measure SNR."""
    from workflow.codecs import Encoded

    done = [it for it in items if it.dst.exists()]
    picked = random.Random(seed).sample(done, min(samples, len(done)))
    load = AudioLoader(codec.spec.sample_rate, codec.spec.channels)
    rows = []
    for it in sorted(picked, key=lambda i: i.key):
        row: dict = {"key": it.key}
        try:
            tok = ecdc.read_ecdc(it.dst)
            ref = load(it).audio
            expect_frames = tok.header.num_frames
            row["frames"] = tok.num_frames
            row["frames_ok"] = tok.header.audio_length == ref.shape[-1] and tok.num_frames == expect_frames
            dec = codec.decode(Encoded(tok.segments, tok.scales, tok.header.audio_length))
            row["snr_db"] = round(snr_db(ref, dec), 2)
        except Exception as exc:  # noqa: BLE001 - a verification failure is a finding, not a crash
            row["error"] = str(exc)
            row["frames_ok"] = False
        rows.append(row)
    return rows


# -- the run -----------------------------------------------------------------------------------------
def build_items(in_root: Path, out_root: Path, extensions, suffix: str, recursive: bool) -> list[WorkItem]:
    return [WorkItem(relative_key(p, in_root), p, mirror_path(p, in_root, out_root, suffix))
            for p in discover(in_root, extensions, recursive=recursive, exclude=[out_root])]


def list_missing(items: list[WorkItem], out_root: Path, suffix: str, codec_name: str,
                 num_codebooks: int | None = None,
                 weights: str | None = None) -> tuple[list[tuple[WorkItem, str]], list[Path]]:
    """(items without a valid output and why, outputs without an input): ``--list-missing``,
    by the real run's test (:func:`output_problem` with the expected codebooks and weights)."""
    missing = [(it, why) for it in items
               if (why := output_problem(it.dst, codec_name, num_codebooks, weights)) is not None]
    return missing, orphan_outputs(out_root, items, suffix)


def rank_device(device: str, dist: DistInfo) -> str:
    """Under torchrun, ``auto``/``cuda`` become this rank's own GPU."""
    if dist.world_size > 1 and device in ("auto", "cuda"):
        return f"cuda:{dist.local_rank}"
    return device


def plan_items(runner: Runner, items: list[WorkItem], codec_name: str, device: str,
               num_codebooks: int | None = None, weights: str | None = None) -> RunReport:
    """``--dry-run``: what the real run would encode, by its test (still fails early on a bad
    ``device``)."""
    from workflow.codecs import resolve_device

    resolve_device(device)
    return runner.pipeline(items, lambda it: None, None, is_done=lambda it: output_problem(
        it.dst, codec_name, num_codebooks, weights) is None)


def encode_items(runner: Runner, items: list[WorkItem], codec, batch_seconds: float | None = None,
                 decode: str = "auto", prefetch: int | None = None) -> RunReport:
    """Encode the items that lack a valid output with ``codec`` (records its identity in the
    runner's params); ``batch_seconds`` defaults to :data:`DEFAULT_BATCH_SECONDS` per device.
    ``decode`` picks threads or ``runner.options.workers`` processes (:func:`decode_in_processes`);
    at most ``prefetch`` (default 4 × workers) decoded inputs wait for the model."""
    runner.params.update(weights_id=codec.weights_id, num_codebooks=codec.num_codebooks,
                         device=str(codec.device))
    batch_seconds = batch_seconds or DEFAULT_BATCH_SECONDS.get(codec.device.type, 10.0)
    processes = decode_in_processes(decode, codec.device.type)
    runner.params.update(batch_seconds=batch_seconds, decode="processes" if processes else "threads")
    spec = codec.spec
    load = AudioLoader(spec.sample_rate, spec.channels)
    pool = ProcessLoader(load, runner.options.workers) if processes else None
    try:
        return runner.pipeline(
            items, pool or load, EncodeSink(codec, batch_seconds),
            is_done=lambda it: output_problem(it.dst, spec.name, codec.num_codebooks, codec.weights_id) is None,
            order=by_duration, prefetch=prefetch,
        )
    finally:
        if pool is not None:
            pool.close()


def verify_shard(codec, items: list[WorkItem], options: RunOptions, samples: int) -> list[dict]:
    """:func:`verify_outputs` over this shard's items only."""
    mine = [items[i] for i in select_shard([it.key for it in items], options.shard_index,
                                           options.shard_count)]
    return verify_outputs(codec, mine, samples)
