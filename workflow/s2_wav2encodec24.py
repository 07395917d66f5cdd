"""s2 — encode a folder of audio into `.ecdc` token files with a neural codec.

Each input becomes ``OUT/<same relative path>.ecdc`` (Meta EnCodec's container plus codec,
bandwidth, frame rate and weights provenance). Threads or processes decode while the model encodes
length-sorted batches; a re-run encodes only what is missing or invalid; under ``torchrun`` each
rank takes its own shard and GPU. Codecs, weights and examples: README.md, "s2".
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: import the package, and don't let workflow/ shadow stdlib
    import sys
    from pathlib import Path as _P

    sys.path[0] = str(_P(__file__).resolve().parents[1])

import argparse
import math
import sys

import numpy as np

from workflow.dist import DistInfo, dist_info, effective_shard  # noqa: F401 - DistInfo re-exported
from workflow.encode import (
    DECODE_MODES, DEFAULT_BATCH_SECONDS, STAGE, build_items, encode_items, list_missing, plan_items,
    rank_device, verify_shard,
)
from workflow.errors import UsageError
from workflow.files import AUDIO_EXTENSIONS, check_output_not_inside_input, relative_key
from workflow.launch import add_launch_args, launch_stage
from workflow.runner import (
    INPUT_FLAGS, OUTPUT_FLAGS, FolderArg, Runner, add_folder_args, add_runner_args, options_from_args,
    parse_args, print_report, run_cli, setup_logging,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wf-wav2encodec24", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_folder_args(p, [
        FolderArg("input", INPUT_FLAGS, "folder of audio (normally s1's output)"),
        FolderArg("output", OUTPUT_FLAGS, "folder for the .ecdc files (mirrors the input tree)")])
    p.add_argument("--extensions", nargs="+", default=list(AUDIO_EXTENSIONS),
                   help="input extensions (default: %(default)s)")
    p.add_argument("--suffix", default=".ecdc", help="output suffix (default: .ecdc)")
    g = p.add_argument_group("codec")
    g.add_argument("--codec", default="encodec_24khz",
                   help="codec name: encodec_24khz (default), encodec_32khz, encodec_48khz, "
                        "dac_16khz, dac_24khz, dac_44khz, xcodec, or seanet (our own trained codec: "
                        "--weights FILE from `python -m training.autoencoder --out RUN --export FILE`)")
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
    g.add_argument("--decode", choices=DECODE_MODES, default="auto",
                   help="decode/resample inputs in --workers threads or worker processes (auto: "
                        "processes on a GPU, threads on the CPU; default: %(default)s)")
    g.add_argument("--max-chunk-seconds", type=float, default=30.0,
                   help="files longer than this are encoded in chunks to bound memory")
    g = p.add_argument_group("checking")
    g.add_argument("--list-missing", action="store_true",
                   help="list inputs without a valid output and outputs without an input; encode nothing")
    g.add_argument("--verify", action="store_true",
                   help="after encoding, re-read sampled outputs, check frames, decode and report SNR")
    g.add_argument("--verify-samples", type=int, default=20, help="how many outputs --verify checks")
    add_runner_args(p, workers_default=2)
    add_launch_args(p)
    return p


def _expected(spec, args: argparse.Namespace) -> tuple[int, str | None]:
    """The codebooks and weights provenance the real run would write: ``--list-missing`` and
    ``--dry-run`` judge existing outputs by them, as the real run does."""
    from workflow.codecs.weights import expected_weights_id

    return spec.codebooks_for(args.bandwidth), expected_weights_id(spec.name, args.weights, args.backend)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    setup_logging(args.verbose)
    from workflow.codecs import load_codec, resolve_spec

    spec = resolve_spec(args.codec, args.weights)  # seanet: the geometry of its --weights export
    check_output_not_inside_input(args.input, args.output)
    items = build_items(args.input, args.output, args.extensions, args.suffix, args.recursive)
    if not items:
        raise UsageError(f"no audio files with extensions {' '.join(args.extensions)} under {args.input}")

    if args.list_missing:
        missing, orphans = list_missing(items, args.output, args.suffix, spec.name, *_expected(spec, args))
        for it, why in missing:
            print(f"missing\t{it.key}\t{why}")
        for p in orphans:
            print(f"orphan\t{relative_key(p, args.output)}")
        print(f"{len(items) - len(missing)} of {len(items)} inputs have a valid output; "
              f"{len(missing)} missing or invalid; {len(orphans)} orphan outputs")
        return 0

    if (code := launch_stage(STAGE, "workflow.s2_wav2encodec24", argv, args, args.output)) is not None:
        return code
    dist = dist_info()
    args.shard_index, args.shard_count = effective_shard(args.shard_index, args.shard_count, dist)
    device = rank_device(args.device, dist)
    options = options_from_args(args, STAGE, args.output)
    params = {"input": str(args.input), "output": str(args.output), "codec": spec.name,
              "bandwidth": args.bandwidth, "weights": args.weights, "device": device,
              "batch_seconds": args.batch_seconds, "rank": dist.rank, "world_size": dist.world_size}
    runner = Runner(STAGE, options, params)

    if options.dry_run:
        report = plan_items(runner, items, spec.name, device, *_expected(spec, args))
        print_report(report, options)
        return 0

    print(f"loading codec {spec.name} ({args.weights} weights, backend {args.backend}, device {device}); "
          "this can take a minute…", file=sys.stderr, flush=True)
    codec = load_codec(spec.name, weights=args.weights, device=device, bandwidth=args.bandwidth,
                       backend=args.backend, max_chunk_seconds=args.max_chunk_seconds)
    if codec.weights_id == "random":
        print("warning: RANDOM codec weights — tokens are for smoke tests only "
              "(recorded as \"weights\": \"random\" in every file)", file=sys.stderr)
    report = encode_items(runner, items, codec, args.batch_seconds, decode=args.decode)
    print_report(report, options)
    resampled = [r for r in report.results if r.info.get("resampled_from") or r.info.get("channels_from")]
    if resampled:
        print(f"  {len(resampled)} inputs were resampled/mixed to {spec.sample_rate} Hz × "
              f"{spec.channels} ch on the fly (s1 output needs none)")
    if args.verify:
        rows = verify_shard(codec, items, options, args.verify_samples)
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
