"""python -m midigroove_poc — expressive drum MIDI → neural codec tokens (E-GMD).

Commands: ``drumgrid train`` (build the cache; train the quantised-grid baseline unless
--precache-only), ``expressivegrid train`` (the Transformer on the expressive grid),
``expressivegrid predict`` (codes for a MIDI file, a grid .npz or a cached window → wav),
``eval`` (token and audio metrics of systems, + oracle / random). Every step and upstream's
flags: README.md, "midigroove_poc".
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
    g.add_argument("--epochs", type=float, default=None,
                   help="train this many passes over the training split instead of --steps (validating once "
                        "per epoch)")
    g.add_argument("--early-stop-patience", type=int, default=None,
                   help="with --epochs: stop after this many epochs without a better validation loss")
    g.add_argument("--eval-max-batches", type=int, default=0,
                   help="validate on the first N batches only (0: the whole validation split)")
    g.add_argument("--metrics-out", type=Path, default=None,
                   help="also write the metric history as CSV here (one row per evaluation)")
    a = p.add_argument_group("model inputs (upstream's ablation flags; stored in the checkpoint)")
    a.add_argument("--no-vel", action="store_true", help="drop the velocity columns (vel_*)")
    a.add_argument("--no-sustain", action="store_true", help="drop the sustain columns (sustain_*)")
    a.add_argument("--no-hh-cc4", action="store_true", help="drop the hi-hat CC4 openness column (hat_openness)")
    a.add_argument("--include-sustain", action="store_true",
                   help="keep the sustain columns (the default here; upstream left them out unless given)")
    a.add_argument("--include-hh-cc4", action="store_true",
                   help="keep the hi-hat CC4 column (the default here; upstream left it out unless given)")
    k = a.add_mutually_exclusive_group()
    k.add_argument("--use-kit-name", dest="use_kit_name", action="store_true", default=True,
                   help="condition on the kit (the default)")
    k.add_argument("--no-kit-name", dest="use_kit_name", action="store_false",
                   help="do not tell the model the kit (every window gets kit id 0)")


def _add_cache_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data and cache")
    g.add_argument("--cache-dir", type=Path, default=Path("cache"), help="where caches live")
    g.add_argument("--train-csv", type=Path, default=None,
                   help="E-GMD CSV (default: $EGMD_CSV); its split column is used unless --val-csv is given")
    g.add_argument("--val-csv", type=Path, default=None, help="a second CSV whose rows become the validation split")
    g.add_argument("--train-split", default=None,
                   help="the split value of the CSV whose rows train (default: train; with --val-csv: all rows)")
    g.add_argument("--val-split", default=None,
                   help="the split value whose rows validate (default: validation; with --val-csv: all its rows)")
    g.add_argument("--stratify-clips", action="store_true",
                   help="accepted for upstream's commands; no effect: upstream stratified only a "
                        "--target-train-clips subsample, and this package keeps every window")
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
    _add_predict_parser(eg_sub)

    ev = sub.add_parser("eval", help="token and audio metrics", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ev.add_argument("--system", action="append", default=[], metavar="NAME:CKPT:CACHE[:CODEC]",
                    help="repeatable; CODEC: encodec|dac|xcodec or a registry name (must be the cache's)")
    ev.add_argument("--systems-file", action="append", default=[], type=Path, metavar="FILE",
                    help="repeatable; one --system spec per line (# comments, blank lines skipped)")
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
    ev.add_argument("--save-preds", type=int, default=0, metavar="N",
                    help="write the first N predictions of each system as wavs under OUT_DIR/wavs (-1: all)")
    ev.add_argument("--keep-preds", action="store_true",
                    help="keep the --save-preds wavs (always kept here; upstream deleted them unless given)")
    ev.add_argument("--save-wavs", type=Path, default=None, metavar="DIR",
                    help="write reference / oracle / prediction wavs of every window and DIR/index.html to listen")
    ev.add_argument("--out-dir", type=Path, default=Path("eval_out"))
    ev.add_argument("--seed", type=int, default=0, help="random codes and FAD∞ subsets")
    g = ev.add_argument_group("FAD (Fréchet Audio Distance, and FAD∞, against the real windows)")
    g.add_argument("--fad-fadtk", action="store_true", help="compute FAD / FAD∞ of every variant")
    g.add_argument("--fad", dest="fad_fadtk", action="store_true",
                   help="the same as --fad-fadtk (upstream's older name)")
    g.add_argument("--fadtk-device", default=None, help="device of the fadtk embedding model (default: fadtk's)")
    g.add_argument("--fadtk-model", default="clap-laion-music",
                   help="a fadtk model (needs: pip install fadtk), or logmel-stats (offline, not CLAP)")
    g.add_argument("--fadtk-per-kit", action="store_true", help="also FAD per kit (keys suffixed [kit])")
    g.add_argument("--fadtk-per-kit-out", type=Path, default=None,
                   help="per-kit FAD CSV (default OUT_DIR/fadtk_per_kit.csv; a relative path is inside OUT_DIR)")
    g.add_argument("--fad-stats-dir", type=Path, default=None,
                   help="reference statistics cache (default: OUT_DIR/fad_ref_stats)")
    g.add_argument("--fadtk-ref-stats-out", type=Path, default=None,
                   help="also write the reference statistics used (mu/cov/n per system and kit) to this .npz")
    return p


def _add_predict_parser(eg_sub) -> None:
    pr = eg_sub.add_parser("predict", help="predict codes for a MIDI file, a grid .npz or a cached window; "
                           "decode them to a wav")
    pr.add_argument("--ckpt", type=Path, required=True)
    src = pr.add_mutually_exclusive_group()
    src.add_argument("--midi", type=Path, default=None, help="a drum MIDI file (its grid is built like the cache's)")
    src.add_argument("--npz", type=Path, default=None,
                     help="an .npz with grid [T, F] in the cache's column order (+ optional "
                          "drummer_id / kit_id / style_id)")
    pr.add_argument("--cache", type=Path, default=None,
                    help="without --midi/--npz: a cache folder or a --cache-dir holding one (default: the "
                         "checkpoint's training cache)")
    pr.add_argument("--split", default="test", help="the cached window's split (without --midi/--npz)")
    pr.add_argument("--index", type=int, default=0, help="the cached window's row (without --midi/--npz)")
    pr.add_argument("--bpm", type=float, default=None, help="with --midi: tempo (default: the file's first)")
    for key in ("drummer", "kit", "style"):
        pr.add_argument(f"--{key}", default=None, help=f"with --midi: the {key} name (default: the cache's first)")
    pr.add_argument("--out", type=Path, required=True, help="output wav")
    pr.add_argument("--out-codes", type=Path, default=None, help="also save the codes int16 [K, T] as .npy")
    pr.add_argument("--sample", action="store_true", help="sample the codes instead of taking the most likely")
    pr.add_argument("--temperature", type=float, default=1.0, help="with --sample")
    pr.add_argument("--topk", type=int, default=0, help="with --sample: only the K most likely tokens (0: all)")
    pr.add_argument("--seed", type=int, default=0, help="with --sample")
    pr.add_argument("--device", default="cpu")
    pr.add_argument("--decode-device", default="cpu")


def _rows(args: argparse.Namespace):
    """The E-GMD rows with the splits that train / validate / test, per --train-split / --val-split."""
    from dataclasses import replace

    from workflow.errors import UsageError

    from .egmd import read_egmd_csv

    csv_path = args.train_csv or (Path(os.environ["EGMD_CSV"]) if os.environ.get("EGMD_CSV") else None)
    root = args.dataset_root or (Path(os.environ["EGMD_ROOT"]) if os.environ.get("EGMD_ROOT") else None)
    if csv_path is None:
        raise UsageError("give the E-GMD CSV: --train-csv PATH or set EGMD_CSV (and --dataset-root / EGMD_ROOT)")
    rows = read_egmd_csv(csv_path, root)
    if args.val_csv is not None:  # each CSV filtered by its split value when one is given
        val = read_egmd_csv(args.val_csv, root)
        return [replace(r, split="train") for r in rows if args.train_split in (None, r.split)] + \
               [replace(r, split="validation") for r in val if args.val_split in (None, r.split)]
    names = {args.train_split or "train": "train", args.val_split or "validation": "validation"}
    if len(names) < 2:
        raise UsageError(f"--train-split and --val-split are both {args.train_split!r}; give two splits")
    if set(names) != {"train", "validation"}:  # a displaced standard split is evaluated, not trained on
        rows = [replace(r, split=names.get(r.split, "test" if r.split in ("train", "validation") else r.split))
                for r in rows]
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
                       kit_exclude=split(args.kit_category_exclude), max_rows=args.max_rows,
                       splits=_splits_key(args))


def _splits_key(args: argparse.Namespace) -> str | None:
    """How --train-split / --val-split / --val-csv chose the splits (part of the cache name), or None."""
    if args.val_csv is None and args.train_split in (None, "train") and args.val_split in (None, "validation"):
        return None  # the CSV's own split column
    val_csv = f" val_csv={Path(args.val_csv).resolve()}" if args.val_csv is not None else ""
    return f"train={args.train_split or '*'} validation={args.val_split or '*'}{val_csv}"


def _inputs(args: argparse.Namespace):
    from workflow.errors import UsageError

    from .inputs import InputSpec

    for lane in ("sustain", "hh_cc4"):
        if getattr(args, f"no_{lane}") and getattr(args, f"include_{lane}"):
            flag = lane.replace("_", "-")
            raise UsageError(f"--no-{flag} and --include-{flag} contradict each other; give one")
    return InputSpec(vel=not args.no_vel, sustain=not args.no_sustain, hh_cc4=not args.no_hh_cc4,
                     kit=args.use_kit_name)


def _per_epoch(args: argparse.Namespace, kwargs: dict, cache: Path) -> dict:
    """--epochs / --early-stop-patience in steps: one epoch = ceil(train rows / batch size) steps."""
    from workflow.errors import UsageError

    from .cache import load_cache

    if args.epochs is None:
        if args.early_stop_patience is not None:
            raise UsageError("--early-stop-patience counts epochs: give it with --epochs (or use --early-stop-steps)")
        return kwargs
    if not args.epochs > 0:
        raise UsageError(f"--epochs must be > 0, got {args.epochs}")
    per_epoch = max(1, -(-len(load_cache(cache)[0]["train"]) // args.batch_size))
    kwargs = dict(kwargs, steps=max(1, round(args.epochs * per_epoch)), eval_every=per_epoch)
    if args.early_stop_patience is not None:
        kwargs["early_stop_steps"] = args.early_stop_patience * per_epoch
    return kwargs


def _train_kwargs(args: argparse.Namespace) -> dict:
    return dict(inputs=_inputs(args), eval_max_batches=args.eval_max_batches, metrics_out=args.metrics_out,
                device=args.device, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
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
        return _drumgrid(args)
    if args.group == "expressivegrid" and args.cmd == "train":
        return _train(args)
    if args.group == "expressivegrid" and args.cmd == "predict":
        return _predict(args)
    if args.group == "eval":
        return _eval(args)
    raise UsageError("unknown command")


def _drumgrid(args: argparse.Namespace) -> int:
    from .cache import build_cache
    from .train import train_model

    cfg = _cache_config(args)
    kwargs = _train_kwargs(args)  # checks the flags before the (long) cache build
    path = build_cache(_rows(args), cfg, args.cache_dir, num_workers=args.num_workers,
                       encode_device=args.encode_device, progress=not args.no_progress)
    print(f"cache: {path}")
    if args.precache_only:
        return 0
    summary = train_model(path, args.save, features="drumgrid", **_per_epoch(args, kwargs, path))
    print(f"drumgrid baseline: best val loss {summary.get('best_val_loss')} → {args.save}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from workflow.errors import UsageError

    from .cache import codec_name, load_cache, resolve_cache
    from .train import train_model

    args.cache = resolve_cache(args.cache)
    _, meta = load_cache(args.cache)
    if args.encoder_model and codec_name(args.encoder_model) != meta["codec"]:
        raise UsageError(f"{args.cache} was built with {meta['codec']}, not {args.encoder_model} "
                         f"({codec_name(args.encoder_model)}); drop --encoder-model or pass the matching cache")
    summary = train_model(args.cache, args.save, features="grid", **_per_epoch(args, _train_kwargs(args), args.cache))
    print(f"expressivegrid: best val loss {summary.get('best_val_loss')} → {args.save}")
    if args.metrics_out:
        print(f"metrics: {args.metrics_out}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from workflow.files import atomic_path

    from . import predict as P
    from .cache import resolve_cache
    from .train import load_model

    sampler = P.Sampler(args.temperature, args.topk, args.seed) if args.sample else None
    model, info = load_model(args.ckpt, args.device)
    meta = info.get("cache_meta") or {}
    if args.midi is not None or args.npz is not None:
        if args.midi is not None:
            grid = P.grid_from_midi(args.midi, float(meta["fps"]), info["features"], bpm=args.bpm)
            ids = P.ids_by_name(meta, drummer=args.drummer, kit=args.kit, style=args.style)
        else:
            grid, ids = P.grid_from_npz(args.npz)
        codes = P.predict_grid(model, info, grid, ids, device=args.device, sampler=sampler)
        P.decode_to_wav(meta, codes, args.out, args.decode_device, where=str(args.ckpt))
    else:
        cache = args.cache or info.get("cache_path")
        if not cache:
            from workflow.errors import UsageError
            raise UsageError("this checkpoint does not name its cache; pass --cache, --midi or --npz")
        cache = resolve_cache(cache)
        codes = P.predict_split(model, info, cache, args.split, [args.index], args.device, sampler=sampler)[0]
        P.decode_to_wav(P._read_cache(cache)[1], codes, args.out, args.decode_device, where=str(cache))
    if args.out_codes is not None:
        with atomic_path(args.out_codes) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, codes)
    print(f"wrote {args.out} ({codes.shape[0]} codebooks x {codes.shape[1]} frames"
          f"{', sampled' if sampler else ''})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from . import metrics as M
    from .evaluate import System, evaluate, read_systems_file

    fad = None
    if args.fad_fadtk:
        from .fad import FadCollector, get_embedder

        label, embed = get_embedder(args.fadtk_model, args.fadtk_device)
        fad = FadCollector(label, embed, args.fad_stats_dir or args.out_dir / "fad_ref_stats",
                           per_kit=args.fadtk_per_kit, seed=args.seed)
    specs = list(args.system) + [s for f in args.systems_file for s in read_systems_file(f)]
    res = evaluate([System.parse(s) for s in specs], split=args.split, intersection=args.intersection,
                   max_items=args.max_items, device=args.device, decode_device=args.decode_device,
                   audio_metrics=args.audio_metrics, add_oracle=args.add_oracle, add_random=args.add_random,
                   save_preds=sys.maxsize if args.save_preds < 0 else args.save_preds,
                   pred_include_ref=args.pred_include_ref, out_dir=args.out_dir,
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
    if fad is not None:
        _fad_outputs(args, fad, res["systems"])
    return 0


def _fad_outputs(args: argparse.Namespace, fad, summaries: dict) -> None:
    """--fadtk-per-kit's CSV and --fadtk-ref-stats-out's .npz."""
    from .fad import write_per_kit_csv

    if args.fadtk_per_kit:
        out = args.fadtk_per_kit_out or Path("fadtk_per_kit.csv")
        out = out if out.is_absolute() else args.out_dir / out
        print(f"per-kit FAD: {write_per_kit_csv(out, summaries, fad.label)}")
    if args.fadtk_ref_stats_out is not None:
        print(f"FAD reference statistics: {fad.save_ref_stats(args.fadtk_ref_stats_out)}")


def cli() -> None:
    from workflow.runner import run_cli
    sys.exit(run_cli(main))


if __name__ == "__main__":
    cli()
