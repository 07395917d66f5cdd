"""s2 — encode a folder of audio into `.ecdc` token files with a neural codec.

Each input becomes ``OUT/<same relative path>.ecdc``: Meta EnCodec's container (readable by
``encodec`` itself) holding the codes and a header recording codec, bandwidth, frame rate and
weights provenance. Audio is decoded and resampled in ``--workers`` threads while the model
encodes length-sorted batches of about ``--batch-seconds`` of audio, so I/O overlaps the model.
Re-running encodes only what is missing or invalid. Under ``torchrun`` each rank takes its own
shard and GPU.

Examples::

    wf-wav2encodec24 norm/ tokens/ --bandwidth 6.0 --device cuda
    wf-wav2encodec24 norm/ tokens/ --codec dac_44khz --weights ./dac44_local/
    wf-wav2encodec24 norm/ tokens/ --list-missing
    torchrun --nproc-per-node 4 -m workflow.s2_wav2encodec24 norm/ tokens/ --device cuda
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: import the package, and don't let workflow/ shadow stdlib
    import sys
    from pathlib import Path as _P

    sys.path[0] = str(_P(__file__).resolve().parents[1])

import argparse
import concurrent.futures as cf
import logging
import math
import random
import sys
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workflow import audio, ecdc
from workflow.dist import DistInfo, dist_info, effective_shard  # noqa: F401 - DistInfo re-exported
from workflow.errors import EcdcFormatError, UsageError
from workflow.files import (
    AUDIO_EXTENSIONS, check_output_not_inside_input, discover, mirror_path, relative_key,
    select_shard,
)
from workflow.runner import (
    Runner, WorkItem, add_runner_args, options_from_args, print_report, run_cli, setup_logging,
)

log = logging.getLogger(__name__)
STAGE = "s2_wav2encodec24"
# Measured with EnCodec 24 kHz on a 2-core CPU: ~10 s of audio per forward pass is fastest
# (35× real time; 60 s batches drop to 12×, the activations outgrow the caches).
DEFAULT_BATCH_SECONDS = {"cpu": 10.0, "cuda": 120.0}


# -- outputs ---------------------------------------------------------------------------------------
def output_problem(path: Path, codec_name: str | None = None, num_codebooks: int | None = None,
                   weights: str | None = None) -> str | None:
    """Why ``path`` is not a finished output (``None`` when it is): missing, corrupt, or made with
    another codec, codebook count or weights (a smoke run with random weights must not make the
    real run skip everything)."""
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
    if weights is not None and header.meta.get("weights") != weights:
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


# -- CLI ---------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wf-wav2encodec24", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Path, help="folder of audio (normally s1's output)")
    p.add_argument("output", type=Path, help="folder for the .ecdc files (mirrors the input tree)")
    p.add_argument("--extensions", nargs="+", default=list(AUDIO_EXTENSIONS),
                   help="input extensions (default: %(default)s)")
    p.add_argument("--suffix", default=".ecdc", help="output suffix (default: .ecdc)")
    g = p.add_argument_group("codec")
    g.add_argument("--codec", default="encodec_24khz",
                   help="codec name: encodec_24khz (default), encodec_32khz, encodec_48khz, "
                        "dac_16khz, dac_24khz, dac_44khz, xcodec")
    g.add_argument("--bandwidth", type=float, default=None,
                   help="target bandwidth in kbps; sets the number of codebooks (EnCodec 24 kHz: "
                        "1.5, 3, 6, 12, 24; default: the codec's default, 6.0 for EnCodec 24 kHz)")
    g.add_argument("--weights", default="pretrained",
                   help="'pretrained' (hub, cached), 'random' (untrained, for smoke tests), a "
                        "save_pretrained folder, or an original EnCodec .th checkpoint")
    g.add_argument("--backend", default="transformers", choices=("transformers", "encodec"),
                   help="model implementation (encodec = Meta's package, needs torchaudio)")
    g.add_argument("--device", default="auto",
                   help="auto, cpu, cuda or cuda:N (cuda without a GPU is an error)")
    g.add_argument("--batch-seconds", type=float, default=None,
                   help="audio per encode batch, in seconds (default: %g on CPU, where bigger "
                        "batches run slower, %g on a GPU; raise it on big GPUs)"
                        % (DEFAULT_BATCH_SECONDS["cpu"], DEFAULT_BATCH_SECONDS["cuda"]))
    g.add_argument("--max-chunk-seconds", type=float, default=30.0,
                   help="files longer than this are encoded in chunks to bound memory")
    g = p.add_argument_group("checking")
    g.add_argument("--list-missing", action="store_true",
                   help="list inputs without a valid output and outputs without an input; encode nothing")
    g.add_argument("--verify", action="store_true",
                   help="after encoding, re-read sampled outputs, check frames, decode and report SNR")
    g.add_argument("--verify-samples", type=int, default=20, help="how many outputs --verify checks")
    add_runner_args(p, workers_default=2)
    return p


def build_items(in_root: Path, out_root: Path, extensions, suffix: str, recursive: bool) -> list[WorkItem]:
    return [WorkItem(relative_key(p, in_root), p, mirror_path(p, in_root, out_root, suffix))
            for p in discover(in_root, extensions, recursive=recursive)]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from workflow.codecs import get_spec, load_codec, resolve_device

    spec = get_spec(args.codec)
    check_output_not_inside_input(args.input, args.output)
    items = build_items(args.input, args.output, args.extensions, args.suffix, args.recursive)
    if not items:
        raise UsageError(f"no audio files with extensions {' '.join(args.extensions)} under {args.input}")

    if args.list_missing:
        missing = [(it, why) for it in items
                   if (why := output_problem(it.dst, spec.name)) is not None]
        orphans = orphan_outputs(args.output, items, args.suffix)
        for it, why in missing:
            print(f"missing\t{it.key}\t{why}")
        for p in orphans:
            print(f"orphan\t{relative_key(p, args.output)}")
        print(f"{len(items) - len(missing)} of {len(items)} inputs have a valid output; "
              f"{len(missing)} missing or invalid; {len(orphans)} orphan outputs")
        return 0

    dist = dist_info()
    args.shard_index, args.shard_count = effective_shard(args.shard_index, args.shard_count, dist)
    device = args.device
    if dist.world_size > 1 and device in ("auto", "cuda"):
        device = f"cuda:{dist.local_rank}"
    options = options_from_args(args, STAGE, args.output)
    params = {"input": str(args.input), "output": str(args.output), "codec": spec.name,
              "bandwidth": args.bandwidth, "weights": args.weights, "device": device,
              "batch_seconds": args.batch_seconds, "rank": dist.rank, "world_size": dist.world_size}
    runner = Runner(STAGE, options, params)

    if options.dry_run:
        resolve_device(device)  # still fail early on a bad --device
        report = runner.pipeline(items, lambda it: None, None,
                                 is_done=lambda it: output_problem(it.dst, spec.name) is None)
        print_report(report, options)
        return 0

    codec = load_codec(spec.name, weights=args.weights, device=device, bandwidth=args.bandwidth,
                       backend=args.backend, max_chunk_seconds=args.max_chunk_seconds)
    if codec.weights_id == "random":
        print("warning: RANDOM codec weights — tokens are for smoke tests only "
              "(recorded as \"weights\": \"random\" in every file)", file=sys.stderr)
    runner.params.update(weights_id=codec.weights_id, num_codebooks=codec.num_codebooks,
                         device=str(codec.device))
    batch_seconds = args.batch_seconds or DEFAULT_BATCH_SECONDS.get(codec.device.type, 10.0)
    runner.params["batch_seconds"] = batch_seconds
    report = runner.pipeline(
        items, AudioLoader(spec.sample_rate, spec.channels),
        EncodeSink(codec, batch_seconds),
        is_done=lambda it: output_problem(it.dst, spec.name, codec.num_codebooks, codec.weights_id) is None,
        order=by_duration,
    )
    print_report(report, options)
    resampled = [r for r in report.results if r.info.get("resampled_from") or r.info.get("channels_from")]
    if resampled:
        print(f"  {len(resampled)} inputs were resampled/mixed to {spec.sample_rate} Hz × "
              f"{spec.channels} ch on the fly (s1 output needs none)")
    if args.verify:
        mine = [items[i] for i in select_shard([it.key for it in items], options.shard_index,
                                               options.shard_count)]
        rows = verify_outputs(codec, mine, args.verify_samples)
        bad = [r for r in rows if not r.get("frames_ok")]
        snrs = [r["snr_db"] for r in rows if "snr_db" in r and math.isfinite(r["snr_db"])]
        print(f"verify: {len(rows) - len(bad)}/{len(rows)} sampled outputs have correct frame counts"
              + (f"; decoded SNR mean {np.mean(snrs):.2f} dB (min {np.min(snrs):.2f})" if snrs else ""))
        for r in bad:
            print(f"  BAD {r['key']}: {r.get('error', 'frame count mismatch')}")
        if codec.weights_id == "random":
            print("  (random weights: SNR is meaningless, frame checks still hold)")
        if bad:
            return 1
    return report.exit_code(options.skip_errors)


def cli() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    cli()
