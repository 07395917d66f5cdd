"""s1 — normalise a folder of audio for a codec: one rate, one channel layout, one loudness.

Every input is decoded, mixed to mono (or kept), resampled with soxr, optionally cut into
segments, scaled so that its peak windowed RMS (or integrated LUFS) hits the target, peak-guarded
and written as wav into a mirrored tree. Bad files are reported and skipped; a re-run resumes.
Formats, options and examples: README.md, "s1".
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: import the package, and don't let workflow/ shadow stdlib
    import sys
    from pathlib import Path as _P

    sys.path[0] = str(_P(__file__).resolve().parents[1])

import argparse
import os
import sys

from workflow import audio
from workflow.errors import UsageError
from workflow.files import AUDIO_EXTENSIONS, check_output_not_inside_input
from workflow.launch import add_launch_args, launch_stage
from workflow.normalize import (  # noqa: F401 - NormalizeConfig, segment_path, normalize_items re-exported
    STAGE, NormalizeConfig, build_items, normalize_items, segment_path,
)
from workflow.runner import (
    INPUT_FLAGS, OUTPUT_FLAGS, FolderArg, add_folder_args, add_runner_args, options_from_args, parse_args,
    print_report, run_cli, setup_logging,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wf-audio-normalize", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_folder_args(p, [
        FolderArg("input", INPUT_FLAGS, "folder of audio files (searched recursively)"),
        FolderArg("output", OUTPUT_FLAGS, "output folder (mirrors the input tree; .wav files)")])
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
    add_launch_args(p)
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
    args = parse_args(build_parser(), argv)
    setup_logging(args.verbose)
    cfg = config_from_args(args)
    check_output_not_inside_input(args.input, args.output)
    items = build_items(args.input, args.output, args.extensions, args.recursive)
    if not items:
        raise UsageError(f"no audio files with extensions {' '.join(args.extensions)} under {args.input}")
    if (code := launch_stage(STAGE, "workflow.s1_audio_normalize", argv, args, args.output)) is not None:
        return code
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
