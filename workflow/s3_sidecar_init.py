"""s3 — create an empty conditioning sidecar for every token file (the skeleton s4 fills).

Writes ``<stem>.cond.npy`` ``[T, 0]`` and ``<stem>.cond.json`` beside each ``.ecdc`` (or under
``--cond-root``), with T and fps from the token header. A re-run keeps the columns s4 added
(``--overwrite`` resets them); ``--manifest-csv`` lists the sidecars. Details and examples:
README.md, "s3".
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: import the package, and don't let workflow/ shadow stdlib
    import sys
    from pathlib import Path as _P

    sys.path[0] = str(_P(__file__).resolve().parents[1])

import argparse
import sys
from pathlib import Path

from workflow import sidecar
from workflow.errors import UsageError
from workflow.launch import add_launch_args, launch_stage
from workflow.runner import (
    INPUT_FLAGS, FolderArg, add_folder_args, add_runner_args, options_from_args, parse_args, print_report,
    run_cli, setup_logging,
)
from workflow.sidecar_init import (  # noqa: F401 - build_items re-exported
    STAGE, build_items, init_items, manifest_path, write_manifest,
)
from workflow.sidecar_root import MARKER, record_cond_root


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wf-sidecar-init", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_folder_args(p, [FolderArg("audio_root", INPUT_FLAGS[::-1],
                                  "folder of .ecdc token files (s2's output), searched recursively")])
    p.add_argument("--cond-root", type=Path, default=None,
                   help="where sidecars go, mirroring --audio-root (default: beside each .ecdc)")
    p.add_argument("--suffix", default=sidecar.NPY_SUFFIX,
                   help="sidecar array suffix; the JSON swaps .npy for .json (default: %(default)s)")
    p.add_argument("--token-suffix", default=".ecdc", help="token file extension (default: %(default)s)")
    p.add_argument("--dtype", choices=sidecar.DTYPES, default="float16",
                   help="storage type of the sidecar array (default: float16)")
    p.add_argument("--manifest-csv", type=Path, default=None,
                   help="also write a CSV: rel_ecdc, rel_cond, frames, D, fps, codebooks")
    add_runner_args(p, workers_default=1)
    add_launch_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    setup_logging(args.verbose)
    audio_root: Path = args.audio_root
    if not audio_root.is_dir():
        raise UsageError(f"--audio-root {audio_root} is not a folder")
    if not args.suffix.endswith(".npy") or args.suffix == ".npy":
        raise UsageError(f"--suffix must end in .npy and have a name part, e.g. .cond.npy; got {args.suffix!r}")
    cond_root: Path | None = args.cond_root
    # Sidecars beside (or under) the tokens are the normal layout: no output-inside-input refusal.
    items = build_items(audio_root, cond_root, args.suffix, args.token_suffix, args.recursive)
    if not items:
        raise UsageError(f"no {args.token_suffix} files under {audio_root}; run s2 (wf-wav2encodec24) first")
    out_root = cond_root if cond_root is not None else audio_root  # reports, and rel_cond's base
    if (code := launch_stage(STAGE, "workflow.s3_sidecar_init", argv, args, out_root)) is not None:
        return code
    options = options_from_args(args, STAGE, out_root)
    params = {"audio_root": str(audio_root), "cond_root": str(cond_root) if cond_root else None,
              "suffix": args.suffix, "dtype": args.dtype}
    report, rows = init_items(items, options, params, dtype=args.dtype, overwrite=args.overwrite,
                              cond_base=out_root)
    print_report(report, options)
    if not report.dry_run and record_cond_root(audio_root, cond_root, args.suffix) is not None:
        print(f"sidecar folder recorded in {audio_root / MARKER} (wf-build-dataset and "
              "wf-sidecar-audit find it without --cond-root)")
    if args.manifest_csv is not None and not report.dry_run:
        path = manifest_path(args.manifest_csv, args.shard_index, args.shard_count)
        write_manifest(path, rows)
        print(f"manifest: {path} ({len(rows)} rows)")
    return report.exit_code(options.skip_errors)


def cli() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    cli()
