"""Throughput of s2 against the bare model and a naive per-file baseline; token storage and reads.

CPU: bare ``Codec.encode_batch``, s2 (decoding in threads, in processes) and a naive script, each
in its own process, A/B alternated; the input pipeline alone (no-op model); `.ecdc` vs ``torch.load``.
``--device cuda`` (refused without a GPU): EnCodec 24 kHz / DAC 44 kHz × real time per batch size.

    python benchmarks/bench_encode.py [--files 24 --device cpu|cuda --batch-seconds 10]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import peak_rss_mb, print_table, run_variant_in_subprocess, save  # noqa: E402

BANDWIDTH = 6.0


def make_data(root: Path, files: int, seed: int = 0) -> float:
    """24 kHz mono files of 4–16 s (varied, so batching has to pad)."""
    from workflow.synth import drum, tone
    rng = np.random.default_rng(seed)
    total = 0.0
    for i in range(files):
        secs = float(rng.uniform(4, 16))
        x = tone(45 + i % 30, 0.3, secs, 24000) + 0.2 * drum("kick", 100, secs, 24000, i)
        p = root / f"d{i % 3}" / f"f{i:03d}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, (0.1 * x / np.sqrt(np.mean(x ** 2) + 1e-9)).T, 24000, subtype="PCM_16")
        total += x.shape[1] / 24000
    return total


def _codec(device: str):
    from workflow.codecs import load_codec
    return load_codec("encodec_24khz", weights="random", device=device, bandwidth=BANDWIDTH)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch
        torch.cuda.synchronize()


def bare(src: Path, device: str, batch_seconds: float) -> dict:
    from workflow.audio import read_audio
    codec = _codec(device)
    audios = sorted((read_audio(p)[0] for p in sorted(src.rglob("*.wav"))), key=lambda a: a.shape[1])
    budget = int(batch_seconds * 24000)
    batches, cur, n = [], [], 0
    for a in audios:  # the same batching rule as s2's EncodeSink
        if cur and n + a.shape[1] > budget:
            batches.append(cur)
            cur, n = [], 0
        cur.append(a)
        n += a.shape[1]
    batches.append(cur)
    codec.encode_batch(batches[0][:1])  # warm-up (allocator, kernels)
    _sync(device)
    t0 = time.perf_counter()
    for b in batches:
        codec.encode_batch(b)
    _sync(device)
    return {"wall_s": time.perf_counter() - t0}


def s2(src: Path, dst: Path, device: str, batch_seconds: float, workers: int, decode: str = "threads") -> dict:
    from workflow.s2_wav2encodec24 import main
    rc = main([str(src), str(dst), "--weights", "random", "--device", device, "--bandwidth", str(BANDWIDTH),
               "--batch-seconds", str(batch_seconds), "--workers", str(workers), "--no-progress",
               "--decode", decode])
    assert rc == 0
    report = json.loads(next((dst / ".reports").glob("*.json")).read_text())
    codes = sum(p.stat().st_size for p in dst.rglob("*.ecdc"))
    return {"wall_s": report["seconds"], "disk_bytes": codes}


def naive(src: Path, dst: Path, device: str) -> dict:
    import librosa
    import torch
    codec = _codec(device)
    model = codec.model
    t0 = time.perf_counter()
    for p in sorted(src.rglob("*.wav")):
        y, _ = librosa.load(p, sr=24000, mono=True)
        with torch.no_grad():
            out = model.encode(torch.from_numpy(y)[None, None].to(device), bandwidth=BANDWIDTH)
        q = dst / p.relative_to(src).with_suffix(".pt")
        q.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"audio_codes": out.audio_codes.cpu().long(), "audio_scales": out.audio_scales,
                    "audio_length": y.shape[0]}, q)
    return {"wall_s": time.perf_counter() - t0, "disk_bytes": sum(f.stat().st_size for f in dst.rglob("*.pt"))}


def read_speed(folder: Path, kind: str) -> dict:
    """Codes per second reading every token file in ``folder`` (best of 3 passes)."""
    from workflow.ecdc import read_ecdc, read_legacy_tokens
    files = sorted(folder.rglob("*.ecdc" if kind == "ecdc" else "*.pt"))
    reader = read_ecdc if kind == "ecdc" else read_legacy_tokens
    best, codes = math.inf, 0
    for _ in range(3):
        t0 = time.perf_counter()
        codes = sum(reader(f).codes.size for f in files)
        best = min(best, time.perf_counter() - t0)
    return {"codes": codes, "codes_per_s": codes / best, "files": len(files)}


def bulk_read(tmp: Path, hours: float = 1.0, k: int = 8, pairs: int = 7) -> list[dict]:
    """Read speed on one long file (per-file overhead excluded): .ecdc vs ``torch.load`` of a bare
    int64 tensor (the baseline) and of the legacy pickle; reads alternate, best of ``pairs`` each."""
    import torch
    from workflow.ecdc import read_ecdc, read_legacy_tokens, write_ecdc
    t = int(hours * 3600 * 75)
    codes = np.random.default_rng(0).integers(0, 1024, (k, t)).astype(np.int16)
    write_ecdc(tmp / "long.ecdc", [codes], model="encodec_24khz", audio_length=t * 320, bits=10)
    torch.save({"audio_codes": torch.from_numpy(codes.astype(np.int64))[None, None], "audio_scales": [None],
                "audio_length": t * 320}, tmp / "long.pt")
    torch.save(torch.from_numpy(codes.astype(np.int64)), tmp / "tensor.pt")
    readers = {"ecdc": (tmp / "long.ecdc", read_ecdc),
               "legacy .pt (pickle of a dict)": (tmp / "long.pt", read_legacy_tokens),
               "torch.load int64 tensor": (tmp / "tensor.pt", lambda f: torch.load(f))}
    best = {name: math.inf for name in readers}
    for _ in range(pairs):  # A/B alternated: a load spike hits both
        for name, (path, reader) in readers.items():
            best[name] = min(best[name], _time(lambda: reader(path)))
    assert np.array_equal(read_ecdc(tmp / "long.ecdc").codes, codes)
    base = best["torch.load int64 tensor"]
    return [{"format": name, "mcodes_s": codes.size / best[name] / 1e6, "vs_torch": base / best[name],
             "mb": path.stat().st_size / 2**20, "bits_per_code": 8 * path.stat().st_size / codes.size}
            for name, (path, _) in readers.items()]


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class NoopCodec:
    """A codec whose model is a no-op: all-zero codes of the right shape, instantly. s2 with it
    measures the input pipeline alone (decode, resample, batching, bit-packing, writes)."""

    def __init__(self, codec):
        self.spec, self.device, self.num_codebooks = codec.spec, codec.device, codec.num_codebooks
        self.weights_id = codec.weights_id
        self._meta = codec.ecdc_meta()

    def ecdc_meta(self) -> dict:
        return dict(self._meta)

    def encode_batch(self, audios) -> list:
        from workflow.codecs import Encoded
        return [Encoded([np.zeros((self.num_codebooks, self.spec.num_frames(a.shape[-1])), np.int16)], [None],
                        int(a.shape[-1])) for a in audios]


def pipeline_ceiling(src: Path, dst: Path, codec_name: str, decode: str, workers: int) -> dict:
    """Files/s and audio s/s of s2's input pipeline with the model replaced by :class:`NoopCodec`."""
    from workflow.codecs import load_codec
    from workflow.encode import STAGE, build_items, encode_items
    from workflow.runner import Runner, RunOptions
    codec = NoopCodec(load_codec(codec_name, weights="random", device="cpu"))
    items = build_items(src, dst, [".wav"], ".ecdc", True)
    runner = Runner(STAGE, RunOptions(workers=workers, progress=False), {})
    t0 = time.perf_counter()
    report = encode_items(runner, items, codec, decode=decode)
    wall = time.perf_counter() - t0
    assert report.ok == len(items), report.summary()
    return {"wall_s": wall, "files_s": len(items) / wall}


def model_speed(codec_name: str, device: str, batches: list[int], item_s: float = 10.0) -> list[dict]:
    """× real time of the bare model on ``item_s``-second items in memory, per batch size."""
    from workflow.codecs import load_codec
    codec = load_codec(codec_name, weights="random", device=device)
    sr = codec.spec.sample_rate
    x = (0.1 * np.random.default_rng(0).standard_normal((codec.spec.channels, int(item_s * sr)))).astype(np.float32)
    rows = []
    for b in batches:
        codec.encode_batch([x] * b)  # warm-up: allocator, kernels
        _sync(device)
        best = min(_time(lambda: (codec.encode_batch([x] * b), _sync(device))) for _ in range(3))
        rows.append({"codec": codec_name, "batch": b, "x_real_time": b * item_s / best})
    return rows


def child(args: argparse.Namespace) -> dict:
    if args.variant == "bare":
        r = bare(args.src, args.device, args.batch_seconds)
    elif args.variant.startswith("s2-"):
        r = s2(args.src, args.dst, args.device, args.batch_seconds, args.workers, args.variant[3:])
    elif args.variant.startswith("ceiling-"):
        r = pipeline_ceiling(args.src, args.dst, "encodec_24khz", args.variant[8:], args.workers)
    elif args.variant == "naive":
        r = naive(args.src, args.dst, args.device)
    else:
        r = read_speed(args.dst, args.variant.split("-")[1])
    r["peak_mb"] = peak_rss_mb()
    return r


def check_device(device: str) -> str | None:
    """Why ``device`` cannot be benchmarked here (``None`` when it can): ``--device cuda`` on a
    machine without a GPU is refused, so nothing is measured on the wrong device."""
    if not device.startswith("cuda"):
        return None
    import torch
    if torch.cuda.is_available():
        return None
    return (f"bench_encode: --device {device} needs a GPU, but torch sees no CUDA GPU (torch {torch.__version__}); "
            "run it on a GPU machine, or use --device cpu for the CPU benchmark")


def alternate(run, variants: dict[str, Path], repeats: int) -> dict[str, list[dict]]:
    """Every variant once per round, ``repeats`` rounds (A/B alternated): per-round ratios pair
    runs that saw the same machine load."""
    out: dict[str, list[dict]] = {v: [] for v in variants}
    for _ in range(repeats):
        for v, dst in variants.items():
            shutil.rmtree(dst, ignore_errors=True)
            out[v].append(run(v, dst))
    return out


def ratios(rounds: dict[str, list[dict]], a: str, b: str, key: str = "wall_s") -> list[float]:
    """Per-round speed of ``a`` relative to ``b`` (> 1: ``a`` is faster)."""
    return [rb[key] / ra[key] for ra, rb in zip(rounds[a], rounds[b])]


def cpu_main(args: argparse.Namespace, tmp: Path, runner) -> str:
    audio_s = make_data(tmp / "norm", args.files)
    os.sync()
    variants = {"bare": tmp / "unused", "s2-threads": tmp / "ecdc", "s2-processes": tmp / "ecdc_p",
                "naive": tmp / "pt"}
    rounds = alternate(runner, variants, args.repeats)
    rows = {v: min(rs, key=lambda r: r["wall_s"]) for v, rs in rounds.items()}  # best of N
    for v, r in rows.items():
        r["audio_s"], r["throughput"] = audio_s, audio_s / r["wall_s"]
        if v != "bare":
            per = ratios(rounds, v, "bare")
            r["vs_bare"], r["vs_bare_pairs"] = r["throughput"] / rows["bare"]["throughput"], \
                f"{min(per):.2f}–{max(per):.2f}"
    rows["naive"]["vs_naive"] = 1.0
    for v in ("s2-threads", "s2-processes"):
        rows[v]["vs_naive"] = rows[v]["throughput"] / rows["naive"]["throughput"]
    reads = {k: runner(f"read-{k}", tmp / ("ecdc" if k == "ecdc" else "pt")) for k in ("ecdc", "pt")}
    for v, k in (("s2-threads", "ecdc"), ("naive", "pt")):
        rows[v]["bits_per_code"] = 8 * rows[v]["disk_bytes"] / reads["ecdc"]["codes"]
        rows[v]["read_mcodes_s"] = reads[k]["codes_per_s"] / 1e6
    label = {"bare": "bare model (in memory)", "s2-threads": "s2, decoding in threads (CPU default)",
             "s2-processes": "s2, decoding in processes (GPU default)",
             "naive": "naive (librosa + 1-by-1 + torch.save)"}
    table = print_table(
        f"s2 encode: EnCodec 24 kHz @ {BANDWIDTH:g} kbps, {args.files} files, {audio_s:.0f} s of audio, device "
        f"cpu, batch {args.batch_seconds:g} s, {args.workers} loaders, {args.repeats} rounds A/B alternated, "
        f"load {_load()}", [{"variant": label[k], **v} for k, v in rows.items()],
        [("variant", "variant"), ("wall_s", "wall s"), ("throughput", "audio s / s"),
         ("vs_bare", "× bare (best)"), ("vs_bare_pairs", "× bare, per round"), ("vs_naive", "× naive"),
         ("bits_per_code", "bits/code on disk"), ("read_mcodes_s", "read M codes/s"), ("peak_mb", "peak MiB")])
    return table + "\n\n" + ceiling_table(args, tmp, runner)


def make_short_files(root: Path, files: int, secs: float = 2.0) -> None:
    """Many short 24 kHz mono files: the input pipeline's worst case per second of audio."""
    x = 0.1 * np.sin(2 * np.pi * 220 * np.arange(int(secs * 24000)) / 24000).astype(np.float32)
    for i in range(files):
        p = root / f"d{i % 4}" / f"s{i:04d}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, np.roll(x, i), 24000, subtype="PCM_16")


def ceiling_table(args: argparse.Namespace, tmp: Path, runner) -> str:
    make_short_files(tmp / "short", args.ceiling_files)
    variants = {"ceiling-threads": tmp / "c_t", "ceiling-processes": tmp / "c_p"}
    rounds = alternate(lambda v, dst: runner(v, dst, tmp / "short"), variants, args.repeats)
    rows = [{"decode": v[8:], **min(rs, key=lambda r: r["wall_s"])} for v, rs in rounds.items()]
    for r in rows:
        r["x_real_time"] = 2.0 * r["files_s"]
    per = ratios(rounds, "ceiling-processes", "ceiling-threads")
    rows[1]["vs_threads"] = f"{min(per):.2f}–{max(per):.2f}"
    return print_table(f"s2 input pipeline alone (model = no-op), {args.ceiling_files} files × 2 s, "
                       f"{args.workers} loaders (process start-up included), "
                       f"load {_load()}", rows,
                       [("decode", "decoding in"), ("files_s", "files/s"), ("x_real_time", "× real time"),
                        ("vs_threads", "× threads, per round"),
                        ("peak_mb", "peak MiB (main)")])


def gpu_main(args: argparse.Namespace, tmp: Path, runner) -> str:
    batches = [int(b) for b in args.gpu_batches.split(",")]
    rows = model_speed("encodec_24khz", args.device, batches) + model_speed("dac_44khz", args.device, batches)
    table = print_table(f"bare model on {args.device} ({_gpu_name()}), 10 s items, random weights", rows,
                        [("codec", "codec"), ("batch", "batch"), ("x_real_time", "× real time")])
    audio_s = make_data(tmp / "norm", args.files)
    rounds = alternate(runner, {"bare": tmp / "unused", "s2-processes": tmp / "ecdc"}, args.repeats)
    per = ratios(rounds, "s2-processes", "bare")
    rows = [{"variant": v, "x_real_time": audio_s / min(r["wall_s"] for r in rs)} for v, rs in rounds.items()]
    rows[1]["vs_bare"] = f"{min(per):.2f}–{max(per):.2f}"
    table += "\n\n" + print_table(
        f"s2 end to end on {args.device}: EnCodec 24 kHz, {args.files} files, batch {args.batch_seconds:g} s, "
        f"{args.workers} decoding processes", rows,
        [("variant", "variant"), ("x_real_time", "× real time"), ("vs_bare", "× bare, per round")])
    return table + "\n\n" + ceiling_table(args, tmp, runner)


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _gpu_name() -> str:
    import torch
    return torch.cuda.get_device_name(0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=2, help="loader threads / decoding processes")
    ap.add_argument("--repeats", type=int, default=2, help="rounds, variants A/B alternated; the best is kept")
    ap.add_argument("--ceiling-files", type=int, default=96, help="2 s files for the input-pipeline row")
    ap.add_argument("--gpu-batches", default="1,8,32,64", help="batch sizes for --device cuda")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--dst", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.variant:
        print(json.dumps(child(args)))
        return 0
    if (why := check_device(args.device)) is not None:
        print(why, file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench_s2_"))
    common = ["--device", args.device, "--batch-seconds", str(args.batch_seconds), "--workers", str(args.workers)]

    def runner(variant: str, dst: Path, src: Path | None = None) -> dict:
        return run_variant_in_subprocess(Path(__file__), ["--variant", variant, *common, "--dst", str(dst),
                                                          "--src", str(src or tmp / "norm")])

    try:
        table = (gpu_main if args.device.startswith("cuda") else cpu_main)(args, tmp, runner)
        bulk = bulk_read(tmp)
        table += "\n\n" + print_table(
            "token reads, one 1-hour file (8 codebooks × 270k frames), A/B alternated", bulk,
            [("format", "format"), ("mcodes_s", "read M codes/s"), ("vs_torch", "× torch.load int64"),
             ("mb", "MiB on disk"), ("bits_per_code", "bits/code")])
        save(f"bench_encode_{args.device.replace(':', '')}", {"table": table, "bulk_read": bulk,
                                                              "args": {k: str(v) for k, v in vars(args).items()}})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
