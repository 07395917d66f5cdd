"""wf-inspect — look inside a dataset built by s5 (wf-build-dataset), and check that it loads.

Prints the codec, frame rate, splits, features with their ranges and the first rows with their
shapes as ``TokenCondDataset`` reads them; ``--verify`` loads every row the way training does and
exits 1 listing the rows that fail. README.md, "Training data loader and wf-inspect".
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: import the package, and don't let workflow/ shadow stdlib
    import sys
    from pathlib import Path as _P

    sys.path[0] = str(_P(__file__).resolve().parents[1])

import argparse
import sys

from workflow import hfdata
from workflow.errors import UsageError
from workflow.hfdata.schema import SOURCES
from workflow.inspection import describe_dataset, moved_dataset_hint, show_rows, verify_split
from workflow.runner import INPUT_FLAGS, FolderArg, add_folder_args, parse_args, run_cli, setup_logging

MAX_LISTED_FAILURES = 50


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wf-inspect", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_folder_args(p, [FolderArg("hf_ds", ("--hf-ds", INPUT_FLAGS[0]),
                                  "dataset folder written by wf-build-dataset", "DATASET")])
    p.add_argument("--split", action="append",
                   help="split to show/verify (repeatable; default: all splits)")
    p.add_argument("--show", type=int, default=3, help="rows to print per split (default 3; 0 for none)")
    p.add_argument("--verify", action="store_true",
                   help="load every row and check shapes and values; exit 1 listing any failure")
    p.add_argument("--source", choices=SOURCES, default="auto",
                   help="where arrays are read from: 'auto' (embedded columns if present), "
                        "'embedded', or 'files' (.ecdc + sidecars, e.g. to check the files of an "
                        "embedded dataset)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar for --verify")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    setup_logging(args.verbose)
    root = args.hf_ds
    if args.show < 0:
        raise UsageError("--show must be 0 or more")
    dd = hfdata.load_dataset_dir(root)
    meta = hfdata.read_dataset_meta(root)
    names = args.split or list(dd)
    unknown = [s for s in names if s not in dd]
    if unknown:
        raise UsageError(f"{root}: no split(s) {', '.join(unknown)} (has: {', '.join(dd) or 'none'})")

    print(f"dataset: {root}")
    for line in describe_dataset(meta, {s: dd[s] for s in (args.split or list(dd))}):
        print(line)
    if meta.get("weights") == "random":
        print("WARNING: tokens were made with RANDOM codec weights; only good for smoke tests")
    from workflow.torchdata import TokenCondDataset  # torch: seconds, so not for --help

    loaders = {s: TokenCondDataset(root, s, normalize_cond=False, source=args.source) for s in names}
    if args.show:
        for s in names:
            print()
            for line in show_rows(loaders[s], args.show):
                print(line)
    if not args.verify:
        return 0

    ok, failures = 0, []
    for s in names:
        n_ok, bad = verify_split(loaders[s], progress=not args.no_progress)
        ok += n_ok
        failures.extend(bad)
    print()
    print(f"verify: {ok} rows OK, {len(failures)} failed")
    for line in failures[:MAX_LISTED_FAILURES]:
        print(f"  FAILED {line}")
    if len(failures) > MAX_LISTED_FAILURES:
        print(f"  … and {len(failures) - MAX_LISTED_FAILURES} more")
    if failures:
        for line in moved_dataset_hint(root, meta):
            print(line)
    return 1 if failures else 0


def cli() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    cli()
