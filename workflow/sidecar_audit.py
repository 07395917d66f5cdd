"""Audit a token tree and its conditioning sidecars before building a dataset (read-only).

Checks every ``.ecdc`` header and its sidecar pair against the tokens and against what you expect
(fps, dtype, required features, ranges), reading each file raw so that one broken file gives
precise issues instead of stopping the scan. Issue types, exit status and examples: README.md,
"Audit".
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: import the package, and don't let workflow/ shadow stdlib
    import sys
    from pathlib import Path as _P

    sys.path[0] = str(_P(__file__).resolve().parents[1])

import argparse
import math
import os
import sys
from pathlib import Path

from workflow import sidecar as sc_mod
from workflow.audit import (  # noqa: F401 - AuditResult, FeatureSummary, make_histogram_figure re-exported
    ISSUE_TYPES, AuditConfig, AuditResult, FeatureSummary, exit_code, feature_table, issues_csv,
    make_histogram_figure, parse_fail_on, plot_features, run_audit, summary_table,
)
from workflow.errors import UsageError
from workflow.files import atomic_write_text
from workflow.runner import (
    INPUT_FLAGS, FolderArg, RunOptions, add_folder_args, add_runner_args, parse_args, run_cli, setup_logging,
)
from workflow.sidecar_root import cond_root_or_recorded


def _list_arg(text: str) -> int | None:
    if text.strip().lower() == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'all', got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wf-sidecar-audit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_folder_args(p, [FolderArg("audio_root", INPUT_FLAGS[::-1], "folder of .ecdc token files (s2's output)")])
    p.add_argument("--cond-root", type=Path, default=None,
                   help="folder mirroring the token tree that holds the sidecars (default: beside the tokens)")
    p.add_argument("--suffix", default=sc_mod.NPY_SUFFIX,
                   help="sidecar array suffix; the JSON is the same name ending in .json (default: %(default)s)")
    p.add_argument("--token-suffix", default=".ecdc", help="token file extension (default: %(default)s)")
    g = p.add_argument_group("expectations")
    g.add_argument("--expect-fps", type=float, default=None,
                   help="frame rate every token file and sidecar must have (e.g. 75)")
    g.add_argument("--expect-dtype", choices=sc_mod.DTYPES, default=None,
                   help="storage type every sidecar array must have")
    g.add_argument("--require", action="append", default=[], metavar="A,B",
                   help="feature names every sidecar must have (comma list; may be repeated)")
    g.add_argument("--verify-ranges", action="store_true",
                   help="check stored values against each feature's min/max (producer ranges) and "
                        "data-derived min/max against the data")
    g.add_argument("--range-tol", type=float, default=0.0,
                   help="absolute slack for --verify-ranges, on top of comparing in the stored "
                        "precision (default: 0)")
    g = p.add_argument_group("output")
    g.add_argument("--list", type=_list_arg, default=20, metavar="N|all",
                   help="print the first N issue lines, or all (default: 20; 0 for none)")
    g.add_argument("--export-csv", type=Path, default=None, metavar="OUT.csv",
                   help="write one row per issue: file, issue, detail")
    g.add_argument("--plot", type=Path, default=None, metavar="OUT.png",
                   help="write one histogram per feature (over the well-formed sidecars)")
    g.add_argument("--fail-on", default="any", metavar="any|none|TYPE,…",
                   help="which issues make the exit status 1: any (default), none, or a comma list "
                        "of issue types: " + ", ".join(ISSUE_TYPES))
    # The runner's shared flags, less those for writing outputs (the audit only reads).
    add_runner_args(
        p, workers_default=max(1, min(8, os.cpu_count() or 1)), group=p.add_argument_group("run control"),
        only=("recursive", "workers", "shard_index", "shard_count", "no_progress", "verbose"),
        helps={"recursive": "descend into sub-folders (default: on)",
               "workers": "parallel reader processes (default: up to 8)",
               "shard_index": "this job's shard, 0-based"})
    return p


def _roots(args: argparse.Namespace) -> tuple[Path, Path | None]:
    root = args.audio_root
    if not root.is_dir():
        raise UsageError(f"token folder not found: {root}")
    if args.cond_root is not None and not args.cond_root.is_dir():
        raise UsageError(f"--cond-root folder not found: {args.cond_root}; run wf-sidecar-init first")
    cond_root, note = cond_root_or_recorded(root, args.cond_root)
    if note:
        print(note)
    return root, cond_root


def config_from_args(args: argparse.Namespace) -> AuditConfig:
    if args.expect_fps is not None and not (math.isfinite(args.expect_fps) and args.expect_fps > 0):
        raise UsageError(f"--expect-fps must be a positive number, got {args.expect_fps}")
    if not (math.isfinite(args.range_tol) and args.range_tol >= 0):
        raise UsageError(f"--range-tol must be >= 0, got {args.range_tol}")
    if not args.suffix.endswith(".npy") or args.suffix == ".npy":
        raise UsageError(f"--suffix must end in .npy and have a name part, e.g. .cond.npy; got {args.suffix!r}")
    require = tuple(dict.fromkeys(n.strip() for r in args.require for n in r.split(",") if n.strip()))
    return AuditConfig(expect_fps=args.expect_fps, expect_dtype=args.expect_dtype, require=require,
                       verify_ranges=args.verify_ranges, range_tol=args.range_tol)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    setup_logging(args.verbose)
    cfg = config_from_args(args)
    fail_on = parse_fail_on(args.fail_on)
    root, cond_root = _roots(args)
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    options = RunOptions(workers=args.workers, shard_index=args.shard_index,
                         shard_count=args.shard_count, progress=not args.no_progress)
    result = run_audit(root, cfg, cond_root=cond_root, suffix=args.suffix,
                       token_suffix=args.token_suffix, options=options, recursive=args.recursive)

    shard = f" (shard {args.shard_index}/{args.shard_count})" if args.shard_count > 1 else ""
    print(f"wf-sidecar-audit: {result.scanned} token file(s) scanned{shard} under {root}; "
          f"{len(result.issues)} issue(s) in {result.files_with_issues()} file(s)")
    print(summary_table(result))
    print()
    print(feature_table(result))
    shown = result.issues if args.list is None else result.issues[: args.list]
    if shown:
        print()
        for i in shown:
            print(f"{i.issue}  {i.file}: {i.detail}")
        if len(shown) < len(result.issues):
            print(f"… and {len(result.issues) - len(shown)} more (--list all, or --export-csv)")
    if args.export_csv is not None:
        atomic_write_text(args.export_csv, issues_csv(result.issues))
        print(f"issues written to {args.export_csv}")
    if args.plot is not None:
        names = plot_features(result, root, args.plot, cond_root=cond_root, suffix=args.suffix,
                              options=options)
        print(f"histograms of {len(names)} feature(s) written to {args.plot}")
    rc = exit_code(result, fail_on)
    if rc:
        print(f"exit 1: issues selected by --fail-on {args.fail_on}")
    return rc


def cli() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    cli()
