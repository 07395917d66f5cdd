"""s5 build at scale: wall time and peak memory of ``wf-build-dataset`` against a naive baseline.

Baseline: token headers + ``Dataset.from_dict`` + ``save_to_disk``; then s5 with ``--materialize
none``, the default links, and ``--embed``, each in its own process, alternated, at several file
counts (the slope cancels start-up). Method and results: README.md, "Performance".

    python benchmarks/bench_build.py [--counts 200 1000 --seconds 0.5 --repeats 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import peak_rss_mb, print_table, run_variant_in_subprocess, save  # noqa: E402

K, BITS, FPS, HOP = 8, 10, 75, 320
VARIANTS = ("naive", "none", "link", "embed")
FLAGS = {"none": ["--materialize", "none"], "link": [], "embed": ["--embed"]}


def make_tokens(root: Path, files: int, seconds: float, seed: int = 0) -> Path:
    """``files`` short random token files with a two-feature sidecar each, in 100-file folders."""
    from workflow.ecdc import write_ecdc
    from workflow.sidecar import FeatureInfo, empty_sidecar, merge_features, sidecar_path_for, write_sidecar

    rng = np.random.default_rng(seed)
    tokens = root / "tokens"
    t = max(1, int(round(seconds * FPS)))
    info = FeatureInfo(units="midi", min=0.0, max=127.0, range_from="producer", producer="bench")
    for i in range(files):
        path = tokens / f"d{i // 100:04d}" / f"f{i:06d}.ecdc"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_ecdc(path, rng.integers(0, 1 << BITS, (K, t), dtype=np.int16), model="encodec_24khz",
                   audio_length=t * HOP, bits=BITS,
                   extra={"sr": 24000, "fps": FPS, "hop": HOP, "bw": 6.0, "weights": "random"})
        sc = merge_features(empty_sidecar(t, FPS, path.relative_to(tokens).as_posix()), {
            "pitch": (rng.integers(30, 90, t).astype(np.float32), info),
            "loudness": (rng.normal(-20, 5, t).astype(np.float32), FeatureInfo(units="dB"))})
        write_sidecar(sidecar_path_for(path, tokens), sc)
    return tokens


def naive(tokens: Path, out: Path) -> None:
    """The baseline: headers + ``Dataset.from_dict`` + ``save_to_disk``."""
    import datasets

    from workflow.hfdata import read_token_header

    datasets.disable_progress_bars()
    cols: dict[str, list] = {k: [] for k in ("id", "audio", "num_frames", "num_codebooks", "fps", "codec")}
    for p in sorted(tokens.rglob("*.ecdc")):
        h = read_token_header(p)
        rel = p.relative_to(tokens).as_posix()
        for k, v in (("id", rel[:-5]), ("audio", rel), ("num_frames", h.num_frames),
                     ("num_codebooks", h.num_codebooks), ("fps", h.fps), ("codec", h.model)):
            cols[k].append(v)
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(cols)}).save_to_disk(str(out))


def variant(name: str, tokens: Path, out: Path) -> dict:
    from workflow import s5_build_dataset_from_folder as s5

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    if name == "naive":
        naive(tokens, out)
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            rc = s5.main([str(tokens), str(out), "--no-progress", *FLAGS[name]])
        assert rc == 0, f"s5 failed ({name})"
    secs = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    return {"variant": name, "wall_s": secs, "peak_mb": peak_rss_mb()}


def symlink_us(folder: Path, n: int = 500) -> float:
    """What one ``os.symlink`` costs on this file system now (link mode makes three per file)."""
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i in range(n):
        os.symlink(f"../../src/f{i}.ecdc", folder / f"l{i}")
    secs = time.perf_counter() - t0
    shutil.rmtree(folder)
    return 1e6 * secs / n


def _run(args: argparse.Namespace, tmp: Path) -> tuple[list[dict], dict]:
    runs: dict[str, list[dict]] = {}
    for n in args.counts:
        tokens = make_tokens(tmp / f"n{n}", n, args.seconds)
        os.sync()
        for _ in range(args.repeats):  # alternated, so drift in machine load hits every variant
            for v in args.variants:
                r = run_variant_in_subprocess(Path(__file__), [
                    "--variant", v, "--tokens", str(tokens), "--out", str(tmp / f"out{n}")])
                runs.setdefault(f"{v}@{n}", []).append(r | {"files": n})
        shutil.rmtree(tmp / f"n{n}", ignore_errors=True)
    rows = []
    for key, rs in runs.items():
        v, n = key.split("@")
        best = min(rs, key=lambda r: r["wall_s"])
        row = {"variant": v, "files": int(n), "wall_s": best["wall_s"], "ms_per_file": 1e3 * best["wall_s"] / int(n),
               "peak_mb": max(r["peak_mb"] for r in rs)}
        if v != "naive" and f"naive@{n}" in runs:
            row["vs_naive"] = float(np.median([a["wall_s"] / b["wall_s"] for a, b in zip(rs, runs[f"naive@{n}"])]))
            row["added_ms_per_file"] = 1e3 * float(np.median(
                [a["wall_s"] - b["wall_s"] for a, b in zip(rs, runs[f"naive@{n}"])])) / int(n)
        rows.append(row)
    return rows, runs


def _slopes(rows: list[dict]) -> dict[str, float]:
    """Added ms per file between the smallest and largest count (the fixed start-up cancels)."""
    out = {}
    counts = sorted({r["files"] for r in rows})
    if len(counts) < 2:
        return out
    by = {(r["variant"], r["files"]): r["wall_s"] for r in rows}
    mem = {(r["variant"], r["files"]): r["peak_mb"] for r in rows}
    lo, hi = counts[0], counts[-1]
    for v in sorted({r["variant"] for r in rows}):
        if (v, lo) in by and (v, hi) in by:
            out[f"{v}_ms_per_file"] = 1e3 * (by[(v, hi)] - by[(v, lo)]) / (hi - lo)
            out[f"{v}_peak_kib_per_file"] = 1024 * (mem[(v, hi)] - mem[(v, lo)]) / (hi - lo)
    if "naive_ms_per_file" in out:
        for v in ("none", "link", "embed"):
            if f"{v}_ms_per_file" in out:
                out[f"{v}_added_ms_per_file"] = out[f"{v}_ms_per_file"] - out["naive_ms_per_file"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", type=int, nargs="+", default=[200, 1000], help="file counts (default 200 1000)")
    ap.add_argument("--seconds", type=float, default=0.5, help="length of each file (default 0.5 s)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--tokens", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:  # child process
        print(json.dumps(variant(args.variant, args.tokens, args.out)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench_build_"))
    try:
        rows, runs = _run(args, tmp)
        slopes = _slopes(rows)
        slopes["symlink_us"] = symlink_us(tmp / "links")
        table = print_table(
            f"s5 build: files of {args.seconds:g} s ({K} codebooks, 2 features), best of {args.repeats}; "
            f"load average {os.getloadavg()[0]:.1f}", rows,
            [("variant", "variant"), ("files", "files"), ("wall_s", "wall s"), ("ms_per_file", "ms / file"),
             ("vs_naive", "× naive (per-repeat median)"), ("added_ms_per_file", "added ms / file"),
             ("peak_mb", "peak MiB")])
        for k, v in slopes.items():
            print(f"{k}: {v:.3f}" + ("" if k == "symlink_us" else
                                     f" (slope between {min(args.counts)} and {max(args.counts)} files)"))
        save("bench_build", {"params": {k: v for k, v in vars(args).items() if k not in ("variant", "tokens", "out")},
                             "rows": rows, "runs": runs, "slopes": slopes, "table": table})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
