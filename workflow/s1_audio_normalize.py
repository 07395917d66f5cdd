"""s1 — normalise a folder of audio for a codec: one rate, one channel layout, one loudness.

Every input (wav, flac, ogg, mp3, aiff; any rate, channel count, int or float) is decoded,
mixed to mono (or kept), resampled with soxr, optionally cut into fixed-length segments, scaled so
its peak windowed RMS (or integrated LUFS) hits the target, peak-guarded, and written as wav into
a mirrored tree. Bad files are reported and skipped; a re-run resumes where the last one stopped.

Example::

    wf-audio-normalize raw/ norm/ --target-rms 0.1 --window-ms 250 --sample-rate 24000
    wf-audio-normalize raw/ norm/ --channels keep --segment-seconds 10 --min-segment-seconds 2
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: import the package, and don't let workflow/ shadow stdlib
    import sys
    from pathlib import Path as _P

    sys.path[0] = str(_P(__file__).resolve().parents[1])

import argparse
import contextlib
import functools
import os
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from workflow import audio
from workflow.errors import UsageError
from workflow.files import (
    AUDIO_EXTENSIONS, check_output_not_inside_input, commit_group, discover, mirror_path,
    relative_key, temp_sibling,
)
from workflow.runner import (
    Runner, RunOptions, RunReport, WorkItem, add_runner_args, options_from_args, print_report,
    run_cli, setup_logging,
)

STAGE = "s1_audio_normalize"


@dataclass(frozen=True)
class NormalizeConfig:
    """Everything that decides what one output file contains (recorded in the run report)."""

    sample_rate: int = 24000
    channels: str = "mono"
    method: str = "rms"
    target_rms: float = 0.1
    window_ms: float = 250.0
    target_lufs: float = -23.0
    peak_limit: float = 0.999
    silence_floor_rms: float = 1e-5
    segment_seconds: float | None = None
    min_segment_seconds: float = 0.0
    gain_scope: str = "segment"
    subtype: str = "PCM_16"

    def channel_policy(self) -> str | int:
        return int(self.channels) if self.channels.isdigit() else self.channels


def segment_path(dst: Path, index: int) -> Path:
    """Where segment ``index`` of the output ``dst`` goes: ``stem_0000.wav``, ``stem_0001.wav``, …"""
    return dst.with_name(f"{dst.stem}_{index:04d}{dst.suffix}")


def output_paths(dst: Path, n_segments: int | None) -> list[Path]:
    """``stem.wav``, or ``stem_0000.wav``, ``stem_0001.wav``, … when segmenting."""
    if n_segments is None:
        return [dst]
    return [segment_path(dst, i) for i in range(n_segments)]


def first_output(dst: Path, cfg: NormalizeConfig) -> Path:
    """The file whose existence means the item is finished (segments commit it last)."""
    return output_paths(dst, 1 if cfg.segment_seconds else None)[0]


def normalize_file(src: Path, dst: Path, cfg: NormalizeConfig) -> dict:
    """Normalise one file into ``dst`` (or its segments); returns what the report records."""
    data, sr_in = audio.read_audio(src)
    info: dict = {"in_sample_rate": sr_in, "in_channels": int(data.shape[0]),
                  "in_seconds": round(data.shape[1] / sr_in, 4)}
    data = audio.resample(audio.to_channels(data, cfg.channel_policy()), sr_in, cfg.sample_rate)
    sr = cfg.sample_rate
    if cfg.segment_seconds:
        pieces = audio.split_segments(data, sr, cfg.segment_seconds, cfg.min_segment_seconds)
        if not pieces:
            info["flags"] = ["too_short"]
            info["outputs"] = 0
            return info
    else:
        pieces = [data]

    gain_kw = dict(method=cfg.method, target_rms=cfg.target_rms, window_ms=cfg.window_ms,
                   target_lufs=cfg.target_lufs, peak_limit=cfg.peak_limit,
                   silence_floor_rms=cfg.silence_floor_rms)
    if cfg.gain_scope == "file":
        # One gain for all pieces; it was peak-guarded on the whole file, so no piece clips.
        decisions = [audio.compute_gain(data, sr, **gain_kw)] * len(pieces)
    else:
        decisions = [audio.compute_gain(p, sr, **gain_kw) for p in pieces]

    outs = output_paths(dst, len(pieces) if cfg.segment_seconds else None)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if len(outs) == 1:
        audio.write_audio(outs[0], audio.apply_gain(pieces[0], decisions[0]), sr, subtype=cfg.subtype)
    else:
        tmps: list[Path] = []
        try:
            for out, piece, dec in zip(outs, pieces, decisions):
                tmps.append(temp_sibling(out))
                audio.write_audio(tmps[-1], audio.apply_gain(piece, dec), sr, subtype=cfg.subtype)
            commit_group(list(zip(tmps, outs)))
        except BaseException:
            for t in tmps:
                with contextlib.suppress(FileNotFoundError):
                    t.unlink()
            raise
    flags = sorted({f for d in decisions for f in d.flags})
    info.update(
        outputs=len(outs), seconds_out=round(sum(p.shape[1] for p in pieces) / sr, 4),
        gain_db=[round(d.gain_db, 3) for d in decisions] if len(decisions) > 1 else round(decisions[0].gain_db, 3),
        measured=round(decisions[0].measured, 6), flags=flags,
    )
    return info


def _process(item: WorkItem, cfg: NormalizeConfig) -> dict:
    return normalize_file(item.src, item.dst, cfg)


def build_items(in_root: Path, out_root: Path, extensions, recursive: bool) -> list[WorkItem]:
    """One item per input file; refuses two inputs that would write the same output."""
    items = [WorkItem(relative_key(p, in_root), p, mirror_path(p, in_root, out_root, ".wav"))
             for p in discover(in_root, extensions, recursive=recursive)]
    clashes = [dst for dst, n in Counter(it.dst for it in items).items() if n > 1]
    if clashes:
        names = ", ".join(it.key for it in items if it.dst in clashes[:3])
        raise UsageError(f"inputs would overwrite each other's output ({names}); "
                         "rename them so their stems differ")
    return items


def normalize_items(items: list[WorkItem], cfg: NormalizeConfig, options: RunOptions,
                    params: dict | None = None) -> RunReport:
    """Run s1 over ``items`` through the shared runner (resume, workers, report).

    Other tools that need normalised segments (e.g. ``training.audiocraft prepare``) call this
    rather than re-implementing the loop.
    """
    runner = Runner(STAGE, options, {**(params or {}), **asdict(cfg)})
    return runner.map(items, functools.partial(_process, cfg=cfg),
                      is_done=lambda it: first_output(it.dst, cfg).exists())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wf-audio-normalize", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Path, help="folder of audio files (searched recursively)")
    p.add_argument("output", type=Path, help="output folder (mirrors the input tree; .wav files)")
    p.add_argument("--extensions", nargs="+", default=list(AUDIO_EXTENSIONS),
                   help="file extensions to pick up (default: %(default)s)")
    g = p.add_argument_group("format")
    g.add_argument("--sample-rate", type=int, default=24000, help="output rate in Hz (default: 24000)")
    g.add_argument("--channels", default="mono",
                   help="'mono' (mix down), 'keep' (e.g. 32-channel autoencoder data) or a count")
    g.add_argument("--subtype", default="PCM_16", choices=audio.SUBTYPES,
                   help="wav sample format (default: PCM_16)")
    g = p.add_argument_group("loudness")
    g.add_argument("--method", choices=("rms", "lufs"), default="rms",
                   help="'rms': peak windowed RMS hits --target-rms; 'lufs': BS.1770 integrated loudness")
    g.add_argument("--target-rms", type=float, default=0.1, help="target peak windowed RMS (default 0.1)")
    g.add_argument("--window-ms", type=float, default=250.0, help="RMS window in ms (hop = window/4)")
    g.add_argument("--target-lufs", type=float, default=-23.0, help="target loudness for --method lufs")
    g.add_argument("--peak-limit", type=float, default=0.999,
                   help="largest allowed sample peak; a gain that would exceed it is lowered and the "
                        "file is reported as peak_limited (default 0.999)")
    g.add_argument("--silence-floor", type=float, default=1e-5,
                   help="peak windowed RMS below this counts as silent: written without gain")
    g = p.add_argument_group("segmenting")
    g.add_argument("--segment-seconds", type=float, default=None,
                   help="cut each file into pieces of this length, written as <stem>_0000.wav …")
    g.add_argument("--min-segment-seconds", type=float, default=0.0,
                   help="drop a last piece shorter than this (default: keep all)")
    g.add_argument("--gain-scope", choices=("segment", "file"), default="segment",
                   help="with segments: normalise each piece (default) or apply the whole file's gain")
    add_runner_args(p, workers_default=max(1, min(8, os.cpu_count() or 1)))
    return p


def config_from_args(args: argparse.Namespace) -> NormalizeConfig:
    if args.sample_rate <= 0:
        raise UsageError(f"--sample-rate must be positive, got {args.sample_rate}")
    if args.channels not in ("mono", "keep") and not args.channels.isdigit():
        raise UsageError(f"--channels must be mono, keep or a number, got {args.channels!r}")
    if args.target_rms <= 0 or args.window_ms <= 0:
        raise UsageError("--target-rms and --window-ms must be positive")
    if not 0 < args.peak_limit <= 1.0 and args.subtype != "FLOAT":
        raise UsageError(f"--peak-limit must be in (0, 1] for integer wav, got {args.peak_limit}")
    if args.segment_seconds is not None and args.segment_seconds <= 0:
        raise UsageError("--segment-seconds must be positive")
    return NormalizeConfig(
        sample_rate=args.sample_rate, channels=args.channels, method=args.method,
        target_rms=args.target_rms, window_ms=args.window_ms, target_lufs=args.target_lufs,
        peak_limit=args.peak_limit, silence_floor_rms=args.silence_floor,
        segment_seconds=args.segment_seconds, min_segment_seconds=args.min_segment_seconds,
        gain_scope=args.gain_scope, subtype=args.subtype,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    cfg = config_from_args(args)
    check_output_not_inside_input(args.input, args.output)
    items = build_items(args.input, args.output, args.extensions, args.recursive)
    if not items:
        raise UsageError(f"no audio files with extensions {' '.join(args.extensions)} under {args.input}")
    options = options_from_args(args, STAGE, args.output)
    report = normalize_items(items, cfg, options, {"input": str(args.input), "output": str(args.output)})
    print_report(report, options)
    if not report.dry_run:
        for flag in ("silent", "peak_limited", "too_short", "short"):
            hit = report.with_flag(flag)
            if hit:
                print(f"  {len(hit)} {flag}: " + ", ".join(r.key for r in hit[:5])
                      + (" …" if len(hit) > 5 else ""))
    return report.exit_code(options.skip_errors)


def cli() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    cli()
