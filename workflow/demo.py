"""The demo: generate a small synthetic audio set, then run the stages on it.

``python -m workflow.demo`` (``make demo``) writes ``demo_data/raw`` — nested tones and drum hits at
mixed rates and channel counts, parameters in the names (``tone_pitch_64.00_amp_0.75.wav``) — then
runs into ``demo_out`` s1, s2, s3, s4 (pitch from the names, a ramp, audio features), s5 (embedded,
train/valid) and the audit, and shows how to load the result. Signals: :mod:`workflow.synth`.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

from workflow.synth import drum, make_demo_set, midi_to_hz, tone  # noqa: F401 - re-exported

log = logging.getLogger(__name__)


def _run(name: str, main, argv: list[str]) -> None:
    print(f"\n$ {name} {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    rc = main(argv)
    print(f"({name} finished in {time.perf_counter() - t0:.1f}s, exit {rc})")
    if rc != 0:
        raise SystemExit(f"demo stopped: {name} exited with {rc}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workflow.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("demo_data"), help="where the raw set is made")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="where the stages write")
    p.add_argument("--weights", default="auto",
                   help="codec weights: 'auto' (pretrained if cached, else random), 'pretrained', "
                        "'random' or a path")
    p.add_argument("--fresh", action="store_true", help="delete previous demo output first")
    args = p.parse_args(argv)

    from workflow import s1_audio_normalize, s2_wav2encodec24
    from workflow.codecs import WeightsNotFoundError, load_codec

    raw = args.data / "raw"
    if args.fresh:
        shutil.rmtree(args.out, ignore_errors=True)
    if not raw.exists():
        files = make_demo_set(raw)
        print(f"generated {len(files)} demo files under {raw}")
    weights = args.weights
    if weights == "auto":
        try:
            load_codec("encodec_24khz", weights="pretrained", device="cpu")
            weights = "pretrained"
        except WeightsNotFoundError:
            weights = "random"
            print("\n" + "!" * 78 + "\n! facebook/encodec_24khz is not cached and cannot be downloaded here:"
                  "\n! the demo uses RANDOM codec weights. Tokens are real .ecdc files but carry no"
                  "\n! meaning; every output records \"weights\": \"random\".\n" + "!" * 78)
    norm, tokens, dataset = args.out / "norm", args.out / "tokens", args.out / "dataset"
    from workflow import (
        s3_sidecar_init, s4_sidecar_add, s5_build_dataset_from_folder, sidecar_audit,
    )
    quiet = ["--no-progress"]
    _run("wf-audio-normalize", s1_audio_normalize.main,
         [str(raw), str(norm), "--target-rms", "0.1", "--sample-rate", "24000", *quiet])
    _run("wf-wav2encodec24", s2_wav2encodec24.main,
         [str(norm), str(tokens), "--bandwidth", "6.0", "--weights", weights, "--device", "cpu",
          "--verify", "--verify-samples", "3", *quiet])
    _run("wf-sidecar-init", s3_sidecar_init.main, ["--audio-root", str(tokens), *quiet])
    # Tones are named tone_pitch_…_amp_…, drums kick_vel_…_pitch_…: `pitch` is the key all share.
    _run("wf-sidecar-add", s4_sidecar_add.main,
         ["--audio-root", str(tokens), "--skip-existing",
          "--producer", "from_filename", "--filename-keys", "pitch",
          "--producer", "lin", "--lin", "progress=0:1",
          "--producer", "from_audio", "--wav-root", str(norm),
          "--features", "rms_db", "spectral_centroid", "onset_strength", *quiet])
    _run("wf-build-dataset", s5_build_dataset_from_folder.main,
         [str(tokens), str(dataset), "--wav-root", str(norm), "--embed", "--verify", "--fresh",
          "--split-ratios", "train=0.75,valid=0.25", "--seed", "0", *quiet])
    _run("wf-sidecar-audit", sidecar_audit.main,
         [str(tokens), "--expect-fps", "75", "--verify-ranges", "--plot", str(args.out / "features.png"),
          "--require", "pitch,progress,rms_db", *quiet])
    print(f"""
demo done. The dataset is in {dataset} (card: {dataset / 'README.md'}); feature histograms in
{args.out / 'features.png'}. Load it with:

    import datasets
    dd = datasets.load_from_disk("{dataset}")
    print(dd)

    from torch.utils.data import DataLoader
    from workflow.torchdata import TokenCondDataset, collate
    ds = TokenCondDataset("{dataset}", "train", window_frames=150)
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate)))
    batch["codes"].shape, batch["cond"].shape   # [B, K, T], [B, T, D] (cond scaled to [0, 1])
""")
    from workflow.torchdata import TokenCondDataset, collate
    ds = TokenCondDataset(dataset, "train", window_frames=150)
    batch = collate([ds[i] for i in range(min(4, len(ds)))])
    print(f"(checked: a batch of {len(batch['codes'])} has codes {tuple(batch['codes'].shape)}, "
          f"cond {tuple(batch['cond'].shape)}, features {ds.feature_names})")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
