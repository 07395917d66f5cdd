"""python -m training.autoencoder — train the SEANet autoencoder with the MS-STFT GAN.

EnCodec's architecture and losses, with a continuous latent by default (``model.quantizer=rvq``
trains a real codec), on mono (``--1ch``) or 32-channel audio (``--32ch``). Defaults are the
paper's settings (configs/autoencoder/*.yaml); any config key can be overridden as key=value:

    python -m training.autoencoder --1ch --data-dir audio/ --out runs/ae1 [--resume] [optim.lr=1e-4]
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.autoencoder", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--1ch", dest="mode", action="store_const", const="1ch", help="mono model")
    mode.add_argument("--32ch", dest="mode", action="store_const", const="32ch", help="32-channel model")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data-dir", type=Path, help="folder of wav/flac files (nested, any sample rate)")
    src.add_argument("--hf-dataset", type=Path, help="an s5 dataset folder with a `wav` column")
    p.add_argument("--out", type=Path, required=False, help="run folder: checkpoints, metrics, samples")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu (a missing GPU is an error)")
    p.add_argument("--config-dir", type=Path, default=None,
                   help="folder with base.yaml, 1ch.yaml, 32ch.yaml (default: the repo's configs/autoencoder)")
    p.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    p.add_argument("--export", type=Path, metavar="FILE",
                   help="write the best checkpoint of the RVQ run in --out as a codec file for "
                        "`wf-wav2encodec24 --codec seanet --weights FILE`, and exit (no training)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. optim.lr=1e-4 optim.epochs=10 model.quantizer=rvq")
    return p


def main(argv: list[str] | None = None) -> int:
    """The CLI; a training error (e.g. a run folder already in use) is one ``error:`` line, exit 1."""
    from training.core.errors import reports_training_errors  # imported late: --help stays light

    return reports_training_errors(_main)(argv)


def _main(argv: list[str] | None) -> int:
    from workflow.errors import UsageError
    from workflow.runner import setup_logging

    # Intermixed: key=value overrides may come before, between or after the options.
    args = build_parser().parse_intermixed_args(argv)
    setup_logging(args.verbose)
    if args.export is not None:
        if args.out is None:
            raise UsageError("--export FILE needs --out RUN, the training run whose best checkpoint to export")
        from .export import export_run

        print(f"exported {export_run(args.out, args.export)} (use: wf-wav2encodec24 --codec seanet "
              f"--weights {args.export} ...)")
        return 0
    if args.mode is None:
        raise UsageError("choose the channel mode: --1ch (mono) or --32ch (32-channel spatial audio)")
    from .config import load_config

    overrides = list(args.overrides)
    if args.data_dir is not None:
        overrides.append(f"data.data_dir={args.data_dir}")
    if args.hf_dataset is not None:
        overrides.append(f"data.hf_dataset={args.hf_dataset}")
    cfg = load_config(args.mode, overrides, args.config_dir)
    if args.print_config:
        from omegaconf import OmegaConf
        print(OmegaConf.to_yaml(cfg))
        return 0
    if args.out is None:
        raise UsageError("--out DIR is required (the run folder for checkpoints, metrics and samples)")
    if not cfg.data.data_dir and not cfg.data.hf_dataset:
        raise UsageError("give the training audio: --data-dir DIR (wav/flac) or --hf-dataset DIR (s5 output)")
    from .train import train

    summary = train(cfg, args.out, resume=args.resume, device=args.device,
                    report=functools.partial(print, flush=True))
    hist = summary["epochs"]
    if hist:
        print(f"done: {len(hist)} epoch(s), val_loss {hist[0]:.4f} → {min(hist):.4f}; "
              f"best checkpoint {summary['best_checkpoint']}")
    return 0


def cli() -> None:
    from workflow.runner import run_cli
    sys.exit(run_cli(main))


if __name__ == "__main__":
    cli()
