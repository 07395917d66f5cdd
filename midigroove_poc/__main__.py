"""python -m midigroove_poc — expressive drum MIDI → neural codec tokens (E-GMD).

Commands: ``drumgrid train`` (build the cache; train the quantised-grid baseline unless
--precache-only), ``expressivegrid train`` (the Transformer on the expressive grid),
``expressivegrid predict`` (a cached window's predicted codes → wav), ``eval`` (token and audio
metrics of systems, + oracle / random). The full walk-through with every step: README.md,
"midigroove_poc".
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    g.add_argument("--steps", type=int, default=20000)
    g.add_argument("--batch-size", type=int, default=16)
    g.add_argument("--lr", type=float, default=3e-4)
    g.add_argument("--warmup-steps", type=int, default=500)
    g.add_argument("--log-every", type=int, default=100)
    g.add_argument("--eval-every", type=int, default=500)
    g.add_argument("--early-stop-steps", type=int, default=None,
                   help="stop when validation loss has not improved for this many steps")
    g.add_argument("--d-model", type=int, default=256)
    g.add_argument("--n-layers", type=int, default=4)
    g.add_argument("--n-heads", type=int, default=4)
    g.add_argument("--dropout", type=float, default=0.1)
    g.add_argument("--ar-codebooks", action="store_true",
                   help="condition codebook k on codebooks < k of the same frame")
    g.add_argument("--logger", default="none", choices=("none", "auto", "wandb", "tensorboard"))


def _add_cache_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data and cache")
    g.add_argument("--cache-dir", type=Path, default=Path("cache"), help="where caches live")
    g.add_argument("--train-csv", type=Path, default=None,
                   help="E-GMD CSV (default: $EGMD_CSV); its split column is used unless --val-csv is given")
    g.add_argument("--val-csv", type=Path, default=None, help="a second CSV whose rows become the validation split")
    g.add_argument("--dataset-root", type=Path, default=None, help="E-GMD folder (default: $EGMD_ROOT or the CSV's)")
    g.add_argument("--encoder-model", choices=("encodec", "dac", "xcodec"), default="encodec",
                   help="the upstream study's codecs: encodec = encodec_32khz (4 codebooks x 50 fps), "
                        "dac = dac_44khz (9 x 86.13 fps), xcodec = xcodec at 2 kbps (4 x 50 fps)")
    g.add_argument("--codec", default=None, metavar="NAME",
                   help="any workflow.codecs registry name (e.g. encodec_24khz, dac_24khz); overrides --encoder-model")
    g.add_argument("--weights", default="pretrained",
                   help="codec weights: pretrained, random (smoke tests), a save_pretrained folder or .th")
    g.add_argument("--bandwidth", type=float, default=None, help="codec bandwidth in kbps (codebooks)")
    g.add_argument("--xcodec-bandwidth", type=float, default=None, help="bandwidth for --encoder-model xcodec")
    g.add_argument("--beat-type-only", choices=("beat", "fill"), default=None)
    g.add_argument("--kit-category-only", default=None, help="comma list of E-GMD kit names to keep")
    g.add_argument("--kit-category-exclude", default=None, help="comma list of E-GMD kit names to drop")
    g.add_argument("--beats-per-chunk", type=float, default=4.0)
    g.add_argument("--hop-beats", type=float, default=None, help="default: --beats-per-chunk (no overlap)")
    g.add_argument("--max-rows", type=int, default=None, help="use only the first N rows (quick trials)")
    g.add_argument("--encode-device", default="auto", help="device for the codec (CUDA runs in this process)")
    g.add_argument("--num-workers", type=int, default=4, help="threads for MIDI/audio loading")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--precache", action="store_true", help="build the cache first (the default when missing)")
    g.add_argument("--precache-only", action="store_true", help="build the cache and exit")
    g.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m midigroove_poc", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="count", default=0)
    sub = p.add_subparsers(dest="group", required=True)

    dg = sub.add_parser("drumgrid", help="cache building + the quantised-grid baseline")
    dg_sub = dg.add_subparsers(dest="cmd", required=True)
    t = dg_sub.add_parser("train", help="build the cache, then (unless --precache-only) train the baseline",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_cache_args(t)
    t.add_argument("--save", type=Path, default=Path("runs/drumgrid.pt"), help="best checkpoint path")
    _add_model_args(t)

    eg = sub.add_parser("expressivegrid", help="the expressive-grid Transformer")
    eg_sub = eg.add_subparsers(dest="cmd", required=True)
    t = eg_sub.add_parser("train", help="train on a cache", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--cache", type=Path, required=True,
                   help="a cache folder, or the --cache-dir folder when it holds one cache")
    t.add_argument("--save", type=Path, default=Path("runs/expressivegrid.pt"), help="best checkpoint path")
    t.add_argument("--encoder-model", default=None, metavar="NAME",
                   help="check that the cache was built with this codec (encodec|dac|xcodec or a registry name)")
    t.add_argument("--seed", type=int, default=0)
    _add_model_args(t)
    pr = eg_sub.add_parser("predict", help="decode a cached window's predicted codes to a wav")
    pr.add_argument("--ckpt", type=Path, required=True)
    pr.add_argument("--cache", type=Path, default=None,
                    help="a cache folder or a --cache-dir holding one (default: the checkpoint's training cache)")
    pr.add_argument("--out", type=Path, required=True, help="output wav")
    pr.add_argument("--split", default="test")
    pr.add_argument("--index", type=int, default=0)
    pr.add_argument("--device", default="cpu")
    pr.add_argument("--decode-device", default="cpu")

    ev = sub.add_parser("eval", help="token and audio metrics", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ev.add_argument("--system", action="append", default=[], metavar="NAME:CKPT:CACHE[:CODEC]",
                    help="repeatable; CODEC: encodec|dac|xcodec or a registry name (must be the cache's)")
    ev.add_argument("--eval-sr", type=int, default=32000, help="audio metrics resample both sides to this rate")
    ev.add_argument("--split", default="test")
    ev.add_argument("--intersection", action="store_true", help="only windows present in every system's cache")
    ev.add_argument("--max-items", type=int, default=None)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--decode-device", default="cpu")
    ev.add_argument("--audio-metrics", action="store_true", help="decode and compute audio metrics (slower)")
    ev.add_argument("--add-oracle", action="store_true", help="also score the true codes decoded (codec ceiling)")
    ev.add_argument("--add-random", action="store_true", help="also score uniformly random codes")
    ev.add_argument("--pred-dir", type=Path, default=None, help="save predicted codes (.npy) here")
    ev.add_argument("--pred-include-ref", action="store_true", help="with --save-preds, also write reference wavs")
    ev.add_argument("--save-preds", type=int, default=0, metavar="N", help="write the first N predictions as wavs")
    ev.add_argument("--save-wavs", type=Path, default=None, metavar="DIR",
                    help="write reference / oracle / prediction wavs of every window and DIR/index.html to listen")
    ev.add_argument("--out-dir", type=Path, default=Path("eval_out"))
    ev.add_argument("--seed", type=int, default=0, help="random codes and FAD∞ subsets")
    g = ev.add_argument_group("FAD (Fréchet Audio Distance, and FAD∞, against the real windows)")
    g.add_argument("--fad-fadtk", action="store_true", help="compute FAD / FAD∞ of every variant")
    g.add_argument("--fadtk-model", default="clap-laion-music",
                   help="a fadtk model (needs: pip install fadtk), or logmel-stats (offline, not CLAP)")
    g.add_argument("--fadtk-per-kit", action="store_true", help="also FAD per kit (keys suffixed [kit])")
    g.add_argument("--fad-stats-dir", type=Path, default=None,
                   help="reference statistics cache (default: OUT_DIR/fad_ref_stats)")
    return p


def _rows(args: argparse.Namespace):
    from workflow.errors import UsageError

    from .egmd import read_egmd_csv

    csv_path = args.train_csv or (Path(os.environ["EGMD_CSV"]) if os.environ.get("EGMD_CSV") else None)
    root = args.dataset_root or (Path(os.environ["EGMD_ROOT"]) if os.environ.get("EGMD_ROOT") else None)
    if csv_path is None:
        raise UsageError("give the E-GMD CSV: --train-csv PATH or set EGMD_CSV (and --dataset-root / EGMD_ROOT)")
    rows = read_egmd_csv(csv_path, root)
    if args.val_csv is not None:
        from dataclasses import replace
        rows = [replace(r, split="train") for r in rows] + \
               [replace(r, split="validation") for r in read_egmd_csv(args.val_csv, root)]
    return rows


def _cache_config(args: argparse.Namespace):
    from .cache import CacheConfig, resolve_codec

    split = lambda s: tuple(x.strip() for x in s.split(",") if x.strip()) if s else ()  # noqa: E731
    xcodec = args.encoder_model == "xcodec" and not args.codec
    bw = args.xcodec_bandwidth if xcodec and args.xcodec_bandwidth else args.bandwidth
    codec, bw = resolve_codec(args.encoder_model, args.codec, bw)
    return CacheConfig(codec=codec, weights=args.weights, bandwidth=bw,
                       beats_per_chunk=args.beats_per_chunk, hop_beats=args.hop_beats,
                       beat_type_only=args.beat_type_only, kit_include=split(args.kit_category_only),
                       kit_exclude=split(args.kit_category_exclude), max_rows=args.max_rows)


def _train_kwargs(args: argparse.Namespace) -> dict:
    return dict(device=args.device, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                warmup_steps=args.warmup_steps, log_every=args.log_every, eval_every=args.eval_every,
                early_stop_steps=args.early_stop_steps, d_model=args.d_model, n_layers=args.n_layers,
                n_heads=args.n_heads, dropout=args.dropout, ar_codebooks=args.ar_codebooks, seed=args.seed,
                logger=args.logger)


def main(argv: list[str] | None = None) -> int:
    """The CLI; a training error (diverged loss, unreadable checkpoint) is one ``error:`` line, exit 1."""
    from training.core.errors import reports_training_errors  # imported late: --help stays light

    return reports_training_errors(_main)(argv)


def _main(argv: list[str] | None) -> int:
    from workflow.errors import UsageError
    from workflow.runner import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.group == "drumgrid":
        from .cache import build_cache
        from .train import train_model

        cfg = _cache_config(args)
        path = build_cache(_rows(args), cfg, args.cache_dir, num_workers=args.num_workers,
                           encode_device=args.encode_device, progress=not args.no_progress)
        print(f"cache: {path}")
        if args.precache_only:
            return 0
        summary = train_model(path, args.save, features="drumgrid", **_train_kwargs(args))
        print(f"drumgrid baseline: best val loss {summary.get('best_val_loss')} → {args.save}")
        return 0
    if args.group == "expressivegrid" and args.cmd == "train":
        from .cache import codec_name, load_cache, resolve_cache
        from .train import train_model

        args.cache = resolve_cache(args.cache)
        _, meta = load_cache(args.cache)
        if args.encoder_model and codec_name(args.encoder_model) != meta["codec"]:
            raise UsageError(f"{args.cache} was built with {meta['codec']}, not {args.encoder_model} "
                             f"({codec_name(args.encoder_model)}); drop --encoder-model or pass the matching cache")
        summary = train_model(args.cache, args.save, features="grid", **_train_kwargs(args))
        print(f"expressivegrid: best val loss {summary.get('best_val_loss')} → {args.save}")
        return 0
    if args.group == "expressivegrid" and args.cmd == "predict":
        from .train import load_model, predict_to_wav

        cache = args.cache
        if cache is None:
            _, info = load_model(args.ckpt)
            cache = info.get("cache_path")
            if not cache:
                raise UsageError("this checkpoint does not name its cache; pass --cache")
        from .cache import resolve_cache

        out = predict_to_wav(args.ckpt, resolve_cache(cache), args.out, split=args.split, index=args.index,
                             device=args.device, decode_device=args.decode_device)
        print(f"wrote {out or args.out}")
        return 0
    if args.group == "eval":
        from . import metrics as M
        from .evaluate import System, evaluate

        fad = None
        if args.fad_fadtk:
            from .fad import FadCollector, get_embedder

            label, embed = get_embedder(args.fadtk_model)
            fad = FadCollector(label, embed, args.fad_stats_dir or args.out_dir / "fad_ref_stats",
                               per_kit=args.fadtk_per_kit, seed=args.seed)
        res = evaluate([System.parse(s) for s in args.system], split=args.split, intersection=args.intersection,
                       max_items=args.max_items, device=args.device, decode_device=args.decode_device,
                       audio_metrics=args.audio_metrics, add_oracle=args.add_oracle, add_random=args.add_random,
                       save_preds=args.save_preds, pred_include_ref=args.pred_include_ref, out_dir=args.out_dir,
                       pred_dir=args.pred_dir, eval_sr=args.eval_sr, seed=args.seed, fad=fad,
                       save_wavs=args.save_wavs)
        keys = ["items", "acc", "nll", "ppl"] + (["spectral_convergence", "log_mel_l1", "rms_env_corr", "onset_f1",
                                                  "codec_spectral_convergence", "codec_onset_f1"]
                                                 if args.audio_metrics else [])
        if fad is not None:  # every FAD key names its embedder, e.g. fad_fadtk-clap-laion-music[Pop Kit]
            keys += list(dict.fromkeys(k for v in res["systems"].values() for k in v if k.startswith("fad_")))
        print(M.format_table(res["systems"], keys))
        print(f"summary: {args.out_dir / 'summary.json'}")
        if res.get("index_html"):
            print(f"listen: {res['index_html']}")
        return 0
    raise UsageError("unknown command")


def cli() -> None:
    from workflow.runner import run_cli
    sys.exit(run_cli(main))


if __name__ == "__main__":
    cli()
