"""python -m training.audiocraft {fetch-fma,prepare,dset,launch,xp} — AudioCraft training, step by step.

Typical run, as the RunPod notebooks do it (``fetch-fma`` first, ``xp`` last; all in README.md)::

    python -m training.audiocraft prepare DATA WORK
    python -m training.audiocraft dset --name NAME --egs WORK/egs --audiocraft-dir AUDIOCRAFT
    python -m training.audiocraft launch --dset audio/NAME --dora-dir DORA -- dataset.batch_size=8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workflow.files import AUDIO_EXTENSIONS
from workflow.runner import run_cli, setup_logging


def _prepare(args: argparse.Namespace) -> int:
    from .egs import PrepareConfig, prepare

    work = args.work_dir
    cfg = PrepareConfig(sample_rate=args.sample_rate, segment_seconds=args.segment_seconds,
                        min_segment_seconds=(args.segment_seconds / 2 if args.min_segment_seconds is None
                                             else args.min_segment_seconds),
                        target_rms=args.target_rms, train_ratio=args.train_ratio, seed=args.seed)
    segments = args.segments_dir or work / "segments"
    egs = args.egs_dir or work / "egs"
    res = prepare(args.input, segments, egs, cfg, workers=args.workers, progress=not args.no_progress,
                  extensions=args.extensions, report_path=segments / ".reports" / "audiocraft_prepare.json")
    print(f"prepare: segments in {res.segments_dir}, manifests in {res.egs_dir}")
    print(res.summary())
    return 1 if res.failed and not args.skip_errors else 0


def _dset(args: argparse.Namespace) -> int:
    from .dset import write_dset

    config_dir = args.config_dir or (args.audiocraft_dir / "config" if args.audiocraft_dir else None)
    if config_dir is None:
        print("error: pass --config-dir (AudioCraft's config/ folder) or --audiocraft-dir (the checkout)",
              file=sys.stderr)
        return 2
    path, changed = write_dset(config_dir, args.name, args.egs, sample_rate=args.sample_rate,
                               channels=args.channels, force=args.force)
    print(f"dset=audio/{args.name}: {path} ({'written' if changed else 'unchanged'})")
    return 0


def _launch(args: argparse.Namespace) -> int:
    from .launch import LaunchSpec, launch

    overrides = [o for o in args.overrides if o != "--"]
    spec = LaunchSpec(dset=args.dset, solver=args.solver, overrides=overrides, dora_dir=args.dora_dir,
                      team=args.team, user=args.user, python=args.python, config_dir=args.config_dir,
                      cwd=args.cwd, grid=args.grid, clear=args.clear)
    return launch(spec, dry_run=args.dry_run)


def _xp(args: argparse.Namespace) -> int:
    from .xp import default_plot_path, describe, find_xp, load_xp, plot_losses, validate_xp

    summary = load_xp(find_xp(args.dora_dir, args.sig))
    print(describe(summary))
    if summary.history and not args.no_plot:
        print(f"loss plot: {plot_losses(summary, args.plot or default_plot_path(summary))}")
    if args.check:
        problems = validate_xp(summary, min_epochs=args.min_epochs)
        for p in problems:
            print(f"problem: {p}")
        print("check: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
        return 1 if problems else 0
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from .fma import fetch_main

    return fetch_main(args)


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    """The ``prepare`` subcommand: audio folder to segments and egs/."""
    s = sub.add_parser("prepare", help="audio folder → segments → egs/{train,valid}/data.jsonl",
                       description="Cut a folder of audio into mono segments at one rate (s1), split them "
                                   "by source track into train/valid, and write AudioCraft's egs/ folders "
                                   "(symlinks + data.jsonl). Idempotent.")
    s.add_argument("input", type=Path, help="folder of audio (wav, flac, ogg, mp3; searched recursively)")
    s.add_argument("work_dir", type=Path, help="output folder: WORK/segments and WORK/egs are created")
    s.add_argument("--segments-dir", type=Path, help="where segments go (default: WORK/segments)")
    s.add_argument("--egs-dir", type=Path, help="where egs/train and egs/valid go (default: WORK/egs)")
    s.add_argument("--sample-rate", type=int, default=32000, help="segment rate in Hz (default 32000)")
    s.add_argument("--segment-seconds", type=float, default=10.0, help="segment length (default 10)")
    s.add_argument("--min-segment-seconds", type=float, default=None,
                   help="drop a track's last piece if shorter (default: half a segment)")
    s.add_argument("--target-rms", type=float, default=0.1, help="loudness target, peak windowed RMS")
    s.add_argument("--train-ratio", type=float, default=0.9, help="share of tracks for train (default 0.9)")
    s.add_argument("--seed", type=int, default=42, help="split seed (default 42)")
    s.add_argument("--extensions", nargs="+", default=list(AUDIO_EXTENSIONS), help="input extensions")
    s.add_argument("--workers", type=int, default=2, help="parallel s1 workers (default 2)")
    s.add_argument("--skip-errors", action="store_true",
                   help="exit 0 even if some inputs failed (they are left out and listed)")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.set_defaults(func=_prepare)


def _add_dset(sub: argparse._SubParsersAction) -> None:
    """The ``dset`` subcommand: the Hydra dset config in an AudioCraft checkout."""
    d = sub.add_parser("dset", help="write config/dset/audio/<name>.yaml into an AudioCraft checkout",
                       description="Write the Hydra dset config that points AudioCraft at egs/train and "
                                   "egs/valid (valid also serves evaluate and generate).")
    d.add_argument("--name", required=True, help="dset name; used as dset=audio/<name>")
    d.add_argument("--egs", type=Path, required=True, help="the egs folder prepare wrote")
    g = d.add_mutually_exclusive_group()
    g.add_argument("--config-dir", type=Path, help="AudioCraft's config/ folder")
    g.add_argument("--audiocraft-dir", type=Path, help="an AudioCraft checkout (uses its config/)")
    d.add_argument("--sample-rate", type=int, default=32000, help="datasource.max_sample_rate")
    d.add_argument("--channels", type=int, default=1, help="datasource.max_channels")
    d.add_argument("--force", action="store_true", help="replace a same-named file this tool did not write")
    d.set_defaults(func=_dset)


def _add_launch(sub: argparse._SubParsersAction) -> None:
    """The ``launch`` subcommand: pre-flight checks, then ``dora run``."""
    lp = sub.add_parser("launch", help="pre-flight checks, then dora run (streams the log)",
                        description="Check the environment, the dset config and the manifests, then run "
                                    "`python -m dora -P audiocraft run solver=… dset=… OVERRIDES`. "
                                    "Put Hydra overrides after `--`.")
    lp.add_argument("--dset", required=True, help="config name, e.g. audio/fma_small_mini (not a path)")
    lp.add_argument("--solver", default="compression/debug", help="solver config (default compression/debug)")
    lp.add_argument("--dora-dir", type=Path, default=Path("/workspace/dora"),
                    help="AUDIOCRAFT_DORA_DIR: where XPs are written (default /workspace/dora)")
    lp.add_argument("--team", default="default", help="AUDIOCRAFT_TEAM (default: default)")
    lp.add_argument("--user", help="USER for AudioCraft's paths (default: $USER, else the account name)")
    lp.add_argument("--python", default=sys.executable, help="interpreter with audiocraft installed")
    lp.add_argument("--config-dir", type=Path, help="AudioCraft's config/ (default: next to the package)")
    lp.add_argument("--cwd", type=Path, help="working folder for dora (default: current)")
    lp.add_argument("--grid", help="run `dora grid NAME` instead (needs SLURM's srun)")
    lp.add_argument("--clear", action="store_true", help="start the XP from scratch (dora run --clear)")
    lp.add_argument("--dry-run", action="store_true", help="run the checks and print the command only")
    lp.add_argument("overrides", nargs=argparse.REMAINDER, help="Hydra overrides, e.g. dataset.batch_size=8")
    lp.set_defaults(func=_launch)


def _add_xp(sub: argparse._SubParsersAction) -> None:
    """The ``xp`` subcommand: an experiment's files, metrics and loss plot."""
    x = sub.add_parser("xp", help="the newest (or a given) experiment: files, metrics, loss plot",
                       description="Find an XP under <dora-dir>/xps, print its signature, folder, key files "
                                   "and last epoch's metrics, and plot its losses to a PNG.")
    x.add_argument("--dora-dir", type=Path, default=Path("/workspace/dora"), help="AUDIOCRAFT_DORA_DIR")
    x.add_argument("--sig", help="XP signature or a unique prefix (default: the newest)")
    x.add_argument("--plot", type=Path, help="PNG path (default: <xp>/losses.png)")
    x.add_argument("--no-plot", action="store_true", help="skip the plot")
    x.add_argument("--check", action="store_true",
                   help="exit 1 unless the run is healthy (finite losses, checkpoint, samples)")
    x.add_argument("--min-epochs", type=int, default=1, help="with --check: epochs required (default 1)")
    x.set_defaults(func=_xp)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.audiocraft", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from .fma import add_fetch_args

    f = sub.add_parser("fetch-fma", help="fetch the first N tracks of fma_small.zip (HTTP range reads)",
                       description="Read fma_small.zip's central directory with HTTP range requests and "
                                   "fetch only the first N audio members (CRC-checked); or take them from "
                                   "a local zip/folder. Re-runs skip files already fetched.")
    add_fetch_args(f)
    f.set_defaults(func=_fetch)

    _add_prepare(sub)
    _add_dset(sub)
    _add_launch(sub)
    _add_xp(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(run_cli(main))
