"""s5 — build a Hugging Face DatasetDict from a folder of `.ecdc` token files (and sidecars).

One row per token file (paths, frame counts, codec; codes and conditioning with --embed), saved
with ``save_to_disk`` so that ``datasets.load_from_disk(OUT_DIR)`` reads it. A build is staged and
swapped in, and keeps the other splits already in OUT_DIR. Columns, splits, materialize modes,
metadata and examples: README.md, "s5".
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: import the package, and don't let workflow/ shadow stdlib
    import sys
    from pathlib import Path as _P

    sys.path[0] = str(_P(__file__).resolve().parents[1])

import argparse
import os
import sys
from pathlib import Path

from workflow import hfdata
from workflow.errors import UsageError
from workflow.runner import (
    INPUT_FLAGS, OUTPUT_FLAGS, FolderArg, add_folder_args, add_runner_args, parse_args, run_cli, setup_logging,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wf-build-dataset", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_folder_args(p, [
        FolderArg("tokens_dir", INPUT_FLAGS, "folder of token files (s2 output)", "TOKENS_DIR"),
        FolderArg("out_dir", (*OUTPUT_FLAGS, "--hf-ds"),
                  "dataset folder to create or extend (must not be inside TOKENS_DIR)", "OUT_DIR")])
    g = p.add_argument_group("splits")
    g.add_argument("--split", default=None,
                   help="name of the split to build from all files (default: train); other splits "
                        "already in OUT_DIR are kept")
    g.add_argument("--split-ratios", default=None, metavar="NAME=R,...",
                   help=f"divide the files into several splits by a stable hash of their id, e.g. "
                        f"{hfdata.DEFAULT_RATIOS}; the same id always lands in the same split for "
                        "the same --seed and ratios, also when files are added")
    g.add_argument("--seed", type=int, default=0, help="seed of the split hash (default: 0)")
    g.add_argument("--fresh", action="store_true",
                   help="drop the splits already in OUT_DIR instead of keeping them")
    g = p.add_argument_group("inputs")
    g.add_argument("--suffix", default=".ecdc", help="token file suffix (default: .ecdc)")
    add_runner_args(p, only=("recursive",), group=g,
                    helps={"recursive": "search TOKENS_DIR recursively (default: on)"})
    g.add_argument("--cond-root", type=Path, default=None,
                   help="folder mirroring TOKENS_DIR that holds the .cond.npy/.cond.json sidecars "
                        "(default: beside the token files)")
    g.add_argument("--cond-suffix", default=".cond.npy", help="sidecar suffix (default: .cond.npy)")
    g.add_argument("--wav-root", type=Path, default=None,
                   help="folder of the normalised wavs (same relative path, .wav): adds a 'wav' column")
    g.add_argument("--max-files", type=int, default=None,
                   help="use only the first N token files (sorted by path), for quick trials")
    g = p.add_argument_group("output")
    g.add_argument("--materialize", choices=hfdata.MATERIALIZE_MODES, default="link",
                   help="link: relative symlinks OUT_DIR/<tokens-subdir>/<rel> to the sources (and "
                        "their sidecar pair); copy: copies (self-contained folder); none: paths "
                        "point at the sources (may start with ../). Default: link")
    g.add_argument("--tokens-subdir", default="tokens",
                   help="folder inside OUT_DIR for materialised token files (default: tokens)")
    g.add_argument("--wav-subdir", default="wav",
                   help="folder inside OUT_DIR for materialised wavs (default: wav)")
    g.add_argument("--embed", action="store_true",
                   help="also store codes (int16 [K][T]) and sidecar values (float32 [T][D]) in the "
                        "Arrow files, so training reads no small files")
    g.add_argument("--verify", action="store_true",
                   help="before committing, check every referenced file exists, header frames equal "
                        "row frames and sidecars have one row per frame (all splits); on problems "
                        "nothing is written and the exit code is 1")
    g = p.add_argument_group("dataset card (README.md)")
    g.add_argument("--license", default=None,
                   help="the card's Hub licence id, e.g. cc-by-4.0 (default: the dataset's, else 'other')")
    g.add_argument("--pretty-name", default=None,
                   help="the card's title (default: the dataset's, else '<folder>: <codec> tokens (…)')")
    # The runner's shared flags, less shards and resume (a build is one atomic step).
    add_runner_args(
        p, workers_default=max(1, min(8, os.cpu_count() or 1)), group=p.add_argument_group("run control"),
        only=("workers", "skip_errors", "report", "no_progress", "verbose"),
        helps={"workers": "threads that read headers and files (default: up to 8)",
               "skip_errors": "exit 0 even if some files were left out (they are still listed)",
               "report": "also write the JSON run report here (one is always kept in OUT_DIR/.reports)",
               "no_progress": "no progress bars"})
    return p


def config_from_args(args: argparse.Namespace) -> hfdata.BuildConfig:
    if args.split is not None and args.split_ratios is not None:
        raise UsageError("give either --split or --split-ratios, not both")
    return hfdata.BuildConfig(
        tokens_dir=args.tokens_dir, out_dir=args.out_dir, split=args.split or "train",
        split_ratios=args.split_ratios, seed=args.seed, suffix=args.suffix,
        recursive=args.recursive, tokens_subdir=args.tokens_subdir, materialize=args.materialize,
        cond_root=args.cond_root, cond_suffix=args.cond_suffix, wav_root=args.wav_root,
        wav_subdir=args.wav_subdir, embed=args.embed, max_files=args.max_files, verify=args.verify,
        fresh=args.fresh, workers=args.workers, progress=not args.no_progress, report=args.report,
        license=args.license, pretty_name=args.pretty_name)


def print_summary(result: hfdata.BuildResult) -> None:
    meta = result.meta
    print(f"dataset {result.out_dir}: {meta['codec']}, {meta['num_codebooks']} codebooks, "
          f"{meta['fps']:g} fps, weights {meta['weights']}")
    for name, sm in meta["splits"].items():
        how = "built" if name in result.built else "kept"
        print(f"  {name:>8}: {sm['rows']} rows, {sm['hours']:.3f} h ({how})")
    if meta["feature_order"]:
        print(f"  features: {', '.join(meta['feature_order'])}")
    for note in result.notes:
        print(f"  {note}")
    for w in result.warnings:
        print(f"  WARNING: {w}")
    if result.problems:
        print(f"{len(result.problems)} file(s) left out:")
        for key, err in result.problems[:20]:
            print(f"  {key}: {err}")
        if len(result.problems) > 20:
            print(f"  … and {len(result.problems) - 20} more (see {result.report_path})")
    if meta["weights"] == "random":
        print("WARNING: tokens were made with RANDOM codec weights; only good for smoke tests")
    print(f"load with: datasets.load_from_disk({str(result.out_dir)!r})")
    if result.report_path is not None:
        print(f"report: {result.report_path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    setup_logging(args.verbose)
    result = hfdata.build(config_from_args(args))
    print_summary(result)
    return 1 if result.problems and not args.skip_errors else 0


def cli() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    cli()
