"""s3 — create an empty conditioning sidecar for every token file (the skeleton s4 fills).

For each ``.ecdc`` under ``--audio-root`` this writes ``<stem>.cond.npy`` of shape ``[T, 0]`` and
its ``<stem>.cond.json`` (schema v2: fps, frames, source, no features yet), beside the token file
or mirrored under ``--cond-root``. T and fps come from the token file's header; nothing is
decoded. A re-run keeps every existing sidecar, including the columns s4 added; ``--overwrite``
resets them to empty. A sidecar whose frame count no longer matches its tokens (re-encoded
audio) is reported, never silently wiped.

``--manifest-csv`` writes one row per sidecar of this run's shard: ``rel_ecdc, rel_cond, frames,
D, fps, codebooks`` (``rel_cond`` is relative to ``--cond-root``, or to the audio root when the
sidecars sit beside the tokens; with ``--shard-count N`` each shard writes
``<name>-shard<i>of<N>.csv``).

Examples::

    wf-sidecar-init --audio-root tokens/
    wf-sidecar-init --audio-root tokens/ --cond-root cond/ --dtype float32 --manifest-csv cond/manifest.csv
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: import the package, and don't let workflow/ shadow stdlib
    import sys
    from pathlib import Path as _P

    sys.path[0] = str(_P(__file__).resolve().parents[1])

import argparse
import csv
import functools
import io
import logging
import sys
from pathlib import Path

from workflow import sidecar
from workflow.ecdc import read_ecdc_header
from workflow.errors import SidecarError, UsageError, WorkflowError
from workflow.files import atomic_write_text, discover, relative_key
from workflow.runner import (
    OK, SKIPPED, Runner, WorkItem, add_runner_args, options_from_args, print_report, run_cli,
    setup_logging,
)

log = logging.getLogger(__name__)
STAGE = "s3_sidecar_init"
MANIFEST_COLUMNS = ("rel_ecdc", "rel_cond", "frames", "D", "fps", "codebooks")


def build_items(audio_root: Path, cond_root: Path | None, suffix: str, token_suffix: str = ".ecdc",
                recursive: bool = True) -> list[WorkItem]:
    """One item per token file: ``src`` the ``.ecdc``, ``dst`` its ``.cond.npy``."""
    exclude = [cond_root] if cond_root is not None and cond_root.resolve() != audio_root.resolve() else []
    return [WorkItem(relative_key(p, audio_root), p, sidecar.sidecar_path_for(p, audio_root, cond_root, suffix))
            for p in discover(audio_root, [token_suffix], recursive=recursive, exclude=exclude)]


def manifest_row(item: WorkItem, cond_base: Path, frames: int, n_features: int, fps: float,
                 codebooks: int) -> dict:
    return {"rel_ecdc": item.key, "rel_cond": item.dst.relative_to(cond_base).as_posix(),
            "frames": int(frames), "D": int(n_features), "fps": float(fps), "codebooks": int(codebooks)}


def existing_state(item: WorkItem) -> tuple[dict, object] | None:
    """(sidecar metadata, token header) if a finished sidecar pair exists, else None."""
    if not (item.dst.exists() and sidecar.json_path_for(item.dst).exists()):
        return None
    return sidecar.read_sidecar_meta(item.dst), read_ecdc_header(item.src)


def init_sidecar(item: WorkItem, *, dtype: str, overwrite: bool, cond_base: Path) -> dict:
    """Write the ``[T, 0]`` skeleton for one token file; refuses to drop s4's features unasked."""
    header = read_ecdc_header(item.src)
    frames = header.num_frames
    if not overwrite and sidecar.json_path_for(item.dst).exists():
        try:
            meta = sidecar.read_sidecar_meta(item.dst)
        except SidecarError as exc:
            raise SidecarError(f"{exc} (or re-run wf-sidecar-init with --overwrite to replace it "
                               "with an empty sidecar)") from exc
        feats = meta.get("features", {})
        if feats and int(meta.get("frames", -1)) != frames:
            raise SidecarError(
                f"{item.dst}: sidecar has {meta.get('frames')} frames but {item.src} has {frames} "
                f"(tokens re-encoded?); its features ({', '.join(feats)}) no longer line up. "
                "Re-run wf-sidecar-init with --overwrite to reset it, then wf-sidecar-add again")
        if feats:
            raise SidecarError(f"{item.dst}: the array is missing but the metadata lists features "
                               f"({', '.join(feats)}); re-run wf-sidecar-init with --overwrite to reset "
                               "it to empty, then wf-sidecar-add again")
    sc = sidecar.empty_sidecar(frames, header.fps, item.key, dtype)
    sidecar.write_sidecar(item.dst, sc)
    return manifest_row(item, cond_base, frames, 0, header.fps, header.num_codebooks)


class _DoneCheck:
    """``is_done`` for the runner: a finished pair whose frame count matches its tokens.

    It remembers the manifest row of each done item, so the manifest needs no second pass.
    """

    def __init__(self, cond_base: Path):
        self.cond_base = cond_base
        self.rows: dict[str, dict] = {}

    def __call__(self, item: WorkItem) -> bool:
        try:
            state = existing_state(item)
        except WorkflowError:
            return False  # unreadable: let the item run and report it
        if state is None:
            return False
        meta, header = state
        if int(meta.get("frames", -1)) != header.num_frames:
            return False
        self.rows[item.key] = manifest_row(item, self.cond_base, header.num_frames,
                                           len(meta.get("features", {})), header.fps, header.num_codebooks)
        return True


def manifest_path(path: Path, shard_index: int, shard_count: int) -> Path:
    if shard_count <= 1:
        return path
    return path.with_name(f"{path.stem}-shard{shard_index}of{shard_count}{path.suffix or '.csv'}")


def write_manifest(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in sorted(rows, key=lambda r: r["rel_ecdc"]):
        w.writerow(row)
    atomic_write_text(path, buf.getvalue())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wf-sidecar-init", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio-root", type=Path, required=True,
                   help="folder of .ecdc token files (s2's output), searched recursively")
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    options = options_from_args(args, STAGE, out_root)
    params = {"audio_root": str(audio_root), "cond_root": str(cond_root) if cond_root else None,
              "suffix": args.suffix, "dtype": args.dtype}
    done = _DoneCheck(out_root)
    report = Runner(STAGE, options, params).map(
        items, functools.partial(init_sidecar, dtype=args.dtype, overwrite=args.overwrite, cond_base=out_root),
        is_done=done)
    print_report(report, options)
    if args.manifest_csv is not None and not report.dry_run:
        rows = [r.info for r in report.results if r.status == OK and r.info]
        rows += [done.rows[r.key] for r in report.results if r.status == SKIPPED and r.key in done.rows]
        path = manifest_path(args.manifest_csv, args.shard_index, args.shard_count)
        write_manifest(path, rows)
        print(f"manifest: {path} ({len(rows)} rows)")
    return report.exit_code(options.skip_errors)


def cli() -> None:
    sys.exit(run_cli(main))


if __name__ == "__main__":
    cli()
