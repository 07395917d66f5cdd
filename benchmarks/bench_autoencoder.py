"""Training steps/s and peak memory of the paper-size SEANet autoencoder + MS-STFT GAN.

One step = discriminator hinge step + generator step with the four balanced losses, on random 1 s
segments already in memory (real training loads data in DataLoader workers); one process per mode.

    python benchmarks/bench_autoencoder.py                  # CPU, small batches (2 mono, 1 x 32ch)
    python benchmarks/bench_autoencoder.py --device cuda    # GPU: the paper batches, 32 x 1 s mono, 4 x 1 s 32ch
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import peak_rss_mb, print_table, run_variant_in_subprocess, save  # noqa: E402


def child(mode: str, device: str, batch: int, steps: int, warmup: int, overrides: list[str]) -> dict:
    import torch

    from training.autoencoder.config import load_config
    from training.autoencoder.train import Trainer
    from training.core import get_device

    cfg = load_config(mode, [f"optim.batch_size={batch}", "train.logger=none", *overrides])
    dev = get_device(device)
    torch.manual_seed(0)
    t = Trainer(cfg, Path(tempfile.mkdtemp(prefix="bench_ae_")), dev)
    n = int(cfg.sample_rate * cfg.data.segment_seconds)
    x = (0.1 * torch.randn(batch, int(cfg.channels), n)).clamp(-1, 1)
    for _ in range(warmup):
        t.train_step(x)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        t.train_step(x)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    gen = sum(p.numel() for p in t.state.model.parameters())
    disc = sum(p.numel() for p in t.state.disc.parameters())
    return {"mode": mode, "batch": batch, "steps_s": steps / dt, "audio_s_per_s": steps * batch / dt,
            "gen_mparams": gen / 1e6, "disc_mparams": disc / 1e6, "amp": t.amp_dtype is not None,
            "peak_mb": (torch.cuda.max_memory_allocated() / 2**20) if dev.type == "cuda" else peak_rss_mb()}


# Batches per device kind when --batch-1ch / --batch-32ch are not given: the paper's on a GPU.
DEFAULT_BATCHES = {"cpu": (2, 1), "cuda": (32, 4)}


def check_device(device: str) -> str | None:
    """Why ``device`` cannot run the benchmark (None when it can): a CUDA device needs a GPU."""
    if not device.startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        return (f"--device {device}: no CUDA GPU is visible to torch (torch {torch.__version__}, "
                f"built for CUDA {torch.version.cuda}); run it on a GPU machine, or use --device cpu")
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        return f"--device {device}: only {torch.cuda.device_count()} GPU(s) visible"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    ap.add_argument("--batch-1ch", type=int, default=None, help="default: 32 on cuda (paper), 2 on cpu")
    ap.add_argument("--batch-32ch", type=int, default=None, help="default: 4 on cuda (paper), 1 on cpu")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. model.quantizer=rvq")
    args = ap.parse_args(argv)
    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    args.batch_1ch = args.batch_1ch or DEFAULT_BATCHES[kind][0]
    args.batch_32ch = args.batch_32ch or DEFAULT_BATCHES[kind][1]
    if args.variant:
        batch = args.batch_1ch if args.variant == "1ch" else args.batch_32ch
        print(json.dumps(child(args.variant, args.device, batch, args.steps, args.warmup, args.overrides)))
        return 0
    problem = check_device(args.device)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    rows = []
    for mode in ("1ch", "32ch"):
        rows.append(run_variant_in_subprocess(Path(__file__), [
            "--variant", mode, "--device", args.device, "--batch-1ch", str(args.batch_1ch),
            "--batch-32ch", str(args.batch_32ch), "--steps", str(args.steps), "--warmup", str(args.warmup),
            *args.overrides]))
    table = print_table(
        f"SEANet autoencoder + MS-STFT GAN training steps, paper-size model, 1 s segments at 24 kHz, "
        f"device {args.device}", rows,
        [("mode", "mode"), ("batch", "batch"), ("steps_s", "steps/s"), ("audio_s_per_s", "audio s/s"),
         ("gen_mparams", "generator M params"), ("disc_mparams", "discriminator M params"), ("amp", "bf16 AMP"),
         ("peak_mb", "peak MiB")])
    save(f"bench_autoencoder_{args.device.replace(':', '')}", {"rows": rows, "table": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
