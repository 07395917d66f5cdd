"""s4 — add conditioning columns to the sidecars with param producers.

Each ``--producer`` (a built-in, a ``.py`` in ``--producers-dir``, a ``.py`` path or a dotted
module) is called once per token file with the file's frame count T and returns named columns of
T values. All producers run first; then the columns are validated (length T, finite) and merged
into ``<stem>.cond.npy`` / ``.cond.json`` in one atomic write, so a file either gets every new
column or none. A producer that fails, returns the wrong length or NaN fails only that file, with
a message naming the producer and the file.

``--mode append`` (default) keeps existing columns and refuses a name that already exists;
``--mode overwrite`` (or ``--overwrite``) replaces such columns in place, keeping the units,
doc string and range they had when the producer gives none. ``--skip-existing`` instead leaves
existing columns alone and adds only the missing ones (use it to resume an interrupted run:
files that already have every column are skipped without running the producers, when the
producers can name their columns up front).

Producers are initialised once per process (``init(args)``) before the first file and shut down
at the end. ``--workers 1`` (default) runs everything in this process. With ``--workers N``,
``--executor process`` (default) forks worker processes that inherit the initialised producers
(where fork is unavailable, each worker calls ``init`` itself on its first file);
``--executor thread`` shares one initialised copy between threads (producers must then be
thread-safe; use it for producers holding state that cannot be forked, e.g. a GPU model).

Examples::

    wf-sidecar-add --audio-root tokens/ --producer from_filename
    wf-sidecar-add --audio-root tokens/ --producer const --const gain=0.5 --producer lin --lin progress=0:1
    wf-sidecar-add --audio-root tokens/ --producer from_audio --wav-root norm/ --features rms_db f0 voiced
    wf-sidecar-add --audio-root tokens/ --producer from_csv --csv labels.csv --csv-columns valence
    wf-sidecar-add --list-producers --producers-dir my_producers/
    wf-sidecar-add --producer from_csv --help        # that producer's own flags
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: import the package, and don't let workflow/ shadow stdlib
    import sys
    from pathlib import Path as _P

    sys.path[0] = str(_P(__file__).resolve().parents[1])

import argparse
import sys
from pathlib import Path

import paramproducers as pp
from workflow import sidecar
from workflow.errors import ProducerError, UsageError, WorkflowError
from workflow.runner import (
    INPUT_FLAGS, OK, FolderArg, add_folder_args, add_runner_args, options_from_args, parse_args, print_report,
    run_cli, setup_logging,
)
from workflow.sidecar_add import STAGE, AddJob, add_items  # noqa: F401 - AddJob re-exported
from workflow.sidecar_init import build_items


# -- argument parsing (two phases: find the producers, then let them add their flags) -------------------
def _add_selector_args(g: argparse._ActionsContainer) -> None:
    g.add_argument("--producer", action="append", default=[], metavar="NAME",
                   help="a producer to run (repeatable): built-in name, stem of a .py in "
                        "--producers-dir, path to a .py file, or dotted module path")
    g.add_argument("--producers-dir", type=Path, default=None, metavar="DIR",
                   help="folder of your own producer .py files")
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
                   help="append: refuse a column name that exists (default); overwrite: replace it")
    g.add_argument("--skip-existing", action="store_true",
                   help="keep columns that already exist and add only the missing ones (resume)")
    g.add_argument("--create-missing", action="store_true",
                   help="create the empty sidecar of a token file that has none (as s3 would)")
    g.add_argument("--dtype", choices=sidecar.DTYPES, default="float16",
                   help="storage type of sidecars created by --create-missing (default: float16; "
                        "existing sidecars keep theirs)")
    g.add_argument("--executor", choices=("process", "thread"), default="process",
                   help="how --workers > 1 run: forked processes (default) or threads")
    add_runner_args(p, workers_default=1)
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
    producers = pp.load_all(pre.producer, pre.producers_dir)
    args = parse_args(build_parser(producers), argv)
    setup_logging(args.verbose)
    if not producers:
        raise UsageError("name at least one --producer (see --list-producers)")
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
    items = build_items(args.audio_root, args.cond_root, args.suffix, args.token_suffix, args.recursive)
    if not items:
        raise UsageError(f"no {args.token_suffix} files under {args.audio_root}")
    out_root = args.cond_root if args.cond_root is not None else args.audio_root
    options = options_from_args(args, STAGE, out_root)
    params = {"audio_root": str(args.audio_root), "cond_root": str(args.cond_root) if args.cond_root else None,
              "producers": [p.ref.name for p in producers], "mode": args.mode,
              "skip_existing": args.skip_existing, "create_missing": args.create_missing}
    report = add_items(items, producers, args, options, params)
    print_report(report, options)
    if not report.dry_run:
        added = list(dict.fromkeys(n for r in report.results if r.status == OK
                                   for n in r.info.get("added", []) + r.info.get("replaced", [])))
        if added:
            print(f"  columns written: {', '.join(added)}")
    return report.exit_code(options.skip_errors)


def cli() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    cli()
