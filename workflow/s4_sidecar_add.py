"""s4 — add conditioning columns to the sidecars with param producers (see README.md, s4).

Each ``--producer`` returns named columns of T values per token file; they are merged into
``<stem>.cond.npy`` / ``.cond.json`` in one locked, atomic write. ``--mode append`` (default) keeps
existing columns (a re-run is a no-op), ``--mode overwrite`` replaces them, ``--drop NAME`` removes
one; a cheap pre-pass refuses a run that would give files different columns. Modes and examples:
README.md, "s4"; the producer protocol: paramproducers/README_paramproducers.md.
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: import the package, and don't let workflow/ shadow stdlib
    import sys
    from pathlib import Path as _P

    sys.path[0] = str(_P(__file__).resolve().parents[1])

import argparse
import shlex
import sys
from pathlib import Path

import paramproducers as pp
from workflow import sidecar
from workflow.errors import FeatureSetError, ProducerError, UsageError, WorkflowError
from workflow.launch import add_launch_args, launch_stage
from workflow.runner import (
    INPUT_FLAGS, OK, FolderArg, add_folder_args, add_runner_args, options_from_args, parse_args, print_report,
    run_cli, setup_logging,
)
from workflow.sidecar_add import STAGE, AddJob, add_items  # noqa: F401 - AddJob re-exported
from workflow.sidecar_init import build_items
from workflow.sidecar_root import cond_root_or_recorded


# The shared run flags, worded for this stage (their generic help describes file-producing stages).
RUN_HELPS = {
    "recursive": "descend into sub-folders of --audio-root (default: on)",
    "overwrite": "same as --mode overwrite: replace columns that already exist (default: keep them)",
    "dry_run": "list the token files whose sidecars would be changed; write nothing",
    "report": "where to write the JSON run report (default: <--cond-root, else --audio-root>"
              "/.reports/s4_sidecar_add-<time>.json)",
}


# -- argument parsing (two phases: find the producers, then let them add their flags) -------------------
def _add_selector_args(g: argparse._ActionsContainer) -> None:
    g.add_argument("--producer", action="append", default=[], metavar="NAME",
                   help="a producer to run (repeatable): built-in name, stem of a .py in "
                        "--producers-dir, path to a .py file, or dotted module path")
    g.add_argument("--producers-dir", type=Path, default=None, metavar="DIR",
                   help="folder of your own producer .py files")
    g.add_argument("--from-filename", action="store_true",
                   help="the seed's spelling of --producer from_filename (adds it if not named)")
    g.add_argument("--list-producers", action="store_true",
                   help="list the built-in producers (and those in --producers-dir) and exit")
    g.add_argument("--show-producer", default=None, metavar="NAME",
                   help="print a producer's documentation and flags and exit")


def build_parser(producers: list[pp.Producer] = ()) -> argparse.ArgumentParser:
    """The full parser; each producer adds its own flags in a group of its own."""
    p = argparse.ArgumentParser(prog="wf-sidecar-add", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_folder_args(p, [FolderArg("audio_root", INPUT_FLAGS[::-1],
                                  "folder of .ecdc token files, searched recursively", required=False)])
    p.add_argument("--cond-root", type=Path, default=None,
                   help="folder of the sidecars, mirroring --audio-root (default: beside each .ecdc)")
    p.add_argument("--suffix", default=sidecar.NPY_SUFFIX, help="sidecar array suffix (default: %(default)s)")
    p.add_argument("--token-suffix", default=".ecdc", help="token file extension (default: %(default)s)")
    _add_selector_args(p.add_argument_group("producers"))
    g = p.add_argument_group("adding columns")
    g.add_argument("--mode", choices=sidecar.MODES, default="append",
                   help="append: keep a column that exists, a re-run is a no-op (default); "
                        "overwrite: replace it")
    g.add_argument("--skip-existing", action="store_true",
                   help="keep columns that already exist and add only the missing ones (resume)")
    g.add_argument("--drop", action="append", default=None, metavar="NAME",
                   help="remove column NAME from every sidecar (repeatable; before adding)")
    g.add_argument("--create-missing", action="store_true",
                   help="create the empty sidecar of a token file that has none (as s3 would)")
    g.add_argument("--dtype", choices=sidecar.DTYPES, default="float16",
                   help="storage type of sidecars created by --create-missing (default: float16; "
                        "existing sidecars keep theirs)")
    g.add_argument("--executor", choices=("process", "thread"), default="process",
                   help="how --workers > 1 run: forked processes (default) or threads")
    add_runner_args(p, workers_default=1, helps=RUN_HELPS)
    add_launch_args(p)
    for prod in producers:
        group = p.add_argument_group(f"producer {prod.name}", prod.summary)
        try:
            prod.add_cli_args(group)
        except argparse.ArgumentError as exc:
            raise UsageError(f"producer {prod.name!r} adds a flag that is already taken ({exc}); "
                             "rename its flags (prefix them with the producer's name)") from None
        except WorkflowError:
            raise
        except Exception as exc:  # noqa: BLE001 - user code
            raise ProducerError(f"producer {prod.name!r} failed in add_cli_args(): "
                                f"{type(exc).__name__}: {exc}") from exc
    return p


def _preparse(argv: list[str]) -> argparse.Namespace:
    pre = argparse.ArgumentParser(add_help=False)
    _add_selector_args(pre)
    known, _ = pre.parse_known_args(argv)
    return known


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = _preparse(argv)
    if pre.list_producers:
        print(pp.format_listing(pp.available(pre.producers_dir)))
        return 0
    if pre.show_producer:
        print(pp.describe(pp.load(pre.show_producer, pre.producers_dir)))
        return 0
    names = pre.producer + (["from_filename"] if pre.from_filename and "from_filename" not in pre.producer else [])
    producers = pp.load_all(names, pre.producers_dir)
    args = parse_args(build_parser(producers), argv)
    setup_logging(args.verbose)
    if not producers and not args.drop:
        raise UsageError("name at least one --producer (see --list-producers), or --drop a column")
    if args.audio_root is None:
        raise UsageError("no AUDIO_ROOT given (the folder of .ecdc token files); pass it as an "
                         "argument or with --audio-root")
    if not args.audio_root.is_dir():
        raise UsageError(f"--audio-root {args.audio_root} is not a folder")
    if not args.suffix.endswith(".npy") or args.suffix == ".npy":
        raise UsageError(f"--suffix must end in .npy and have a name part, e.g. .cond.npy; got {args.suffix!r}")
    if args.overwrite:
        args.mode = "overwrite"  # the runner's --overwrite means "replace what exists" here too
    if args.skip_existing and args.mode == "overwrite":
        raise UsageError("--skip-existing keeps existing columns; it cannot be combined with "
                         "--mode overwrite / --overwrite")
    args.cond_root, note = cond_root_or_recorded(args.audio_root, args.cond_root)
    if note:
        print(note)
    items = build_items(args.audio_root, args.cond_root, args.suffix, args.token_suffix, args.recursive)
    if not items:
        raise UsageError(f"no {args.token_suffix} files under {args.audio_root}")
    out_root = args.cond_root if args.cond_root is not None else args.audio_root
    if (code := launch_stage(STAGE, "workflow.s4_sidecar_add", argv, args, out_root)) is not None:
        return code
    options = options_from_args(args, STAGE, out_root)
    params = {"audio_root": str(args.audio_root), "cond_root": str(args.cond_root) if args.cond_root else None,
              "producers": [p.ref.name for p in producers], "mode": args.mode,
              "skip_existing": args.skip_existing, "create_missing": args.create_missing,
              "drop": args.drop or []}
    try:
        report = add_items(items, producers, args, options, params)
    except FeatureSetError as exc:
        raise FeatureSetError(f"{exc}\n{fix_advice(argv, exc.fix_args)}", exc.fix_args) from None
    print_report(report, options)
    if not report.dry_run:
        print_columns(report)
    return report.exit_code(options.skip_errors)


def fix_advice(argv: list[str], fix_args: list[str]) -> str:
    """The user's command line with ``fix_args`` appended (later flags win in argparse)."""
    if not fix_args:
        return "fix: rename the odd files, or parse the names differently with --filename-regex"
    cmd = shlex.join(["wf-sidecar-add", *argv, *fix_args])
    zero = " (replace each 0 by the value files without that key should get)" if "--filename-default" in fix_args else ""
    return f"fix{zero}:\n  {cmd}\nor parse the names differently with --filename-regex"


def print_columns(report) -> None:
    for what, keys in (("written", ("added", "replaced")), ("dropped", ("dropped",)),
                       ("kept (already present; --mode overwrite replaces them)", ("kept",))):
        names = list(dict.fromkeys(n for r in report.results if r.status == OK
                                   for k in keys for n in r.info.get(k, [])))
        if names:
            print(f"  columns {what}: {', '.join(names)}")


def cli() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    cli()
