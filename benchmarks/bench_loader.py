"""Training-loader throughput: windows per second through a ``DataLoader``, by where tokens live.

The same generated tokens and sidecars read as an embedded s5 dataset, as ``.ecdc`` files, as the
seed's torch pickles and, as the bound, as two plain numpy memmaps (identical collated items);
each variant in its own process, alternated. Method and results: README.md, "Performance".

    python benchmarks/bench_loader.py [--files 256 --seconds 10 --epochs 8 --workers 0 2]
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
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import peak_rss_mb, print_table, run_variant_in_subprocess, save  # noqa: E402

K, BITS, FPS, HOP = 8, 10, 75, 320
FEATURES = {"pitch": (0.0, 127.0), "loudness": (None, None)}  # producer range / data range


def make_data(root: Path, files: int, seconds: float, seed: int = 0) -> dict[str, float]:
    """``tokens/`` (.ecdc + sidecars), ``legacy/`` (.pt), and the two s5 datasets."""
    import torch

    from workflow import s5_build_dataset_from_folder as s5
    from workflow.ecdc import write_ecdc
    from workflow.sidecar import FeatureInfo, empty_sidecar, merge_features, sidecar_path_for, write_sidecar

    rng = np.random.default_rng(seed)
    tokens, legacy = root / "tokens", root / "legacy"
    t = int(round(seconds * FPS))
    for i in range(files):
        rel = Path(f"d{i % 8}") / f"f{i:05d}"
        codes = rng.integers(0, 1 << BITS, size=(K, t), dtype=np.int16)
        path = tokens / rel.with_suffix(".ecdc")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_ecdc(path, codes, model="encodec_24khz", audio_length=t * HOP, bits=BITS,
                   extra={"sr": 24000, "fps": FPS, "hop": HOP, "bw": 6.0, "weights": "random"})
        sc = empty_sidecar(t, FPS, rel.with_suffix(".ecdc").as_posix())
        pitch = FeatureInfo(units="midi", min=0.0, max=127.0, range_from="producer", producer="bench")
        sc = merge_features(sc, {
            "pitch": (rng.integers(30, 90, t).astype(np.float32), pitch),
            "loudness": (rng.normal(-20, 5, t).astype(np.float32), FeatureInfo(units="dB")),
        })
        write_sidecar(sidecar_path_for(path, tokens), sc)
        lp = legacy / rel.with_suffix(".pt")
        lp.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"audio_codes": torch.from_numpy(codes.astype(np.int64))[None, None],
                    "audio_scales": [None], "audio_length": t * HOP}, lp)
    _write_memmap_baseline(root, tokens, files, t)
    for name, extra in (("ds_files", []), ("ds_embedded", ["--embed"])):
        with contextlib.redirect_stdout(io.StringIO()):
            rc = s5.main([str(tokens), str(root / name), "--no-progress", *extra])
        assert rc == 0, f"s5 failed for {name}"

    def mib(p: Path, pattern: str) -> float:
        return sum(f.stat().st_size for f in p.rglob(pattern)) / 2**20

    return {"ecdc_mib": mib(tokens, "*.ecdc"), "pt_mib": mib(legacy, "*.pt"),
            "arrow_mib": mib(root / "ds_embedded", "*.arrow"), "cond_mib": mib(tokens, "*.cond.npy"),
            "flat_mib": mib(root / "ds_embedded", "*.int16"), "memmap_mib": mib(root / "memmap", "codes.npy")}


def _write_memmap_baseline(root: Path, tokens: Path, files: int, t: int) -> None:
    """``memmap/``: the same codes ``[N, K, T]`` and cond ``[N, T, D]`` as two plain .npy arrays."""
    from numpy.lib.format import open_memmap

    from workflow.ecdc import read_ecdc
    from workflow.sidecar import read_sidecar, sidecar_path_for

    out = root / "memmap"
    out.mkdir()
    paths = sorted(tokens.rglob("*.ecdc"))
    codes = open_memmap(out / "codes.npy", "w+", np.int16, (files, K, t))
    cond = open_memmap(out / "cond.npy", "w+", np.float32, (files, t, len(FEATURES)))
    for i, path in enumerate(paths):
        codes[i] = read_ecdc(path).codes
        cond[i] = read_sidecar(sidecar_path_for(path, tokens)).values
    codes.flush()
    cond.flush()
    (out / "ids.json").write_text(json.dumps([p.relative_to(tokens).with_suffix("").as_posix() for p in paths]))


class MemmapBaseline(Dataset):
    """The bound: fixed-size windows cut from two memory-mapped arrays, same normalisation and items."""

    def __init__(self, root: Path, window: int, meta: dict):
        self.codes = np.load(root / "memmap" / "codes.npy", mmap_mode="r")
        self.cond = np.load(root / "memmap" / "cond.npy", mmap_mode="r")
        self.ids = json.loads((root / "memmap" / "ids.json").read_text())
        self.window = window
        order = meta["feature_order"]
        self.lo = np.array([meta["features"][n]["min"] for n in order], np.float32)
        span = np.array([meta["features"][n]["max"] - meta["features"][n]["min"] for n in order], np.float32)
        self.dead = span <= 0
        self.span = np.where(self.dead, 1.0, span).astype(np.float32)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        import torch

        t = self.codes.shape[2]
        n = min(self.window, t)
        s = int(torch.randint(0, t - n + 1, ()).item())
        c = (self.cond[i, s:s + n] - self.lo) / self.span
        c[:, self.dead] = 0.0
        np.clip(c, 0, 1, out=c)
        return {"id": self.ids[i], "start": s, "length": n,
                "codes": torch.from_numpy(self.codes[i, :, s:s + n].astype(np.int64)), "cond": torch.from_numpy(c)}


class LegacyPickleDataset(Dataset):
    """The seed's loader, reduced to what matters here: one ``.pt`` + one sidecar per item."""

    def __init__(self, root: Path, window: int, meta: dict):
        self.files = sorted((root / "legacy").rglob("*.pt"))
        self.tokens = root / "tokens"
        self.legacy = root / "legacy"
        self.window = window
        order = meta["feature_order"]
        self.lo = np.array([meta["features"][n]["min"] for n in order], np.float32)
        self.span = np.array([meta["features"][n]["max"] - meta["features"][n]["min"] for n in order], np.float32)
        self.dead = self.span <= 0
        self.span[self.dead] = 1.0

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        import torch

        from workflow.ecdc import read_legacy_tokens
        from workflow.sidecar import read_sidecar

        path = self.files[i]
        codes = read_legacy_tokens(path).codes
        rel = path.relative_to(self.legacy).with_suffix("")
        cond = read_sidecar(self.tokens / rel.with_name(rel.name + ".cond.npy")).values
        t = codes.shape[1]
        n = min(self.window, t)
        s = int(torch.randint(0, t - n + 1, ()).item())
        c = (cond[s:s + n] - self.lo) / self.span
        c[:, self.dead] = 0.0
        c = np.clip(c, 0, 1).astype(np.float32)
        return {"id": str(rel), "start": s, "length": n,
                "codes": torch.from_numpy(codes[:, s:s + n].astype(np.int64)), "cond": torch.from_numpy(c)}


def variant(name: str, root: Path, epochs: int, batch: int, window: int) -> dict:
    import torch
    from torch.utils.data import DataLoader

    from workflow.hfdata import read_dataset_meta
    from workflow.torchdata import TokenCondDataset, collate

    kind, workers = name.rsplit("-w", 1)
    workers = int(workers)
    torch.manual_seed(0)
    if kind == "embedded":
        ds = TokenCondDataset(root / "ds_embedded", "train", window_frames=window)
    elif kind == "ecdc":
        ds = TokenCondDataset(root / "ds_files", "train", window_frames=window)
    elif kind == "memmap":
        ds = MemmapBaseline(root, window, read_dataset_meta(root / "ds_files"))
    else:
        ds = LegacyPickleDataset(root, window, read_dataset_meta(root / "ds_files"))
    dl = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=collate,
                    persistent_workers=workers > 0)
    for _ in dl:  # warm-up epoch: worker start, imports, first mmap of every file
        pass
    n = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        for b in dl:
            n += int(b["codes"].shape[0])
    secs = time.perf_counter() - t0
    return {"variant": name, "windows": n, "wall_s": secs, "windows_per_s": n / secs, "peak_mb": peak_rss_mb()}


LABELS = {"embedded": "`--embed` (flat buffers)", "ecdc": ".ecdc files + sidecars",
          "legacy": "legacy torch pickles + sidecars", "memmap": "baseline: numpy memmap"}
KINDS = ("memmap", "embedded", "ecdc", "legacy")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each file (default 10 s)")
    ap.add_argument("--epochs", type=int, default=8, help="timed epochs per run (default 8)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--window", type=int, default=150, help="window in frames (default 150 = 2 s)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per variant; the best is kept")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="num_workers values (default 0 2)")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:  # child process
        print(json.dumps(variant(args.variant, args.root, args.epochs, args.batch, args.window)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench_loader_"))
    try:
        sizes = make_data(tmp, args.files, args.seconds)
        os.sync()
        names = [f"{k}-w{w}" for k in KINDS for w in args.workers]
        runs: dict[str, list[dict]] = {n: [] for n in names}
        for _ in range(args.repeats):  # interleaved, so drift in machine load hits all variants
            for name in names:
                runs[name].append(run_variant_in_subprocess(Path(__file__), [
                    "--variant", name, "--root", str(tmp), "--epochs", str(args.epochs),
                    "--batch", str(args.batch), "--window", str(args.window)]))
        rows = _rows(runs, names, sizes)
        table = print_table(
            f"DataLoader windows/s: {args.files} files × {args.seconds:g} s ({K} codebooks, {FPS} fps, "
            f"2 cond features), batch {args.batch}, window {args.window} frames; load average "
            f"{os.getloadavg()[0]:.1f}", rows,
            [("source", "token source"), ("workers", "num_workers"), ("windows_per_s", "windows / s"),
             ("vs_memmap", "× memmap (same workers, per-repeat median)"), ("vs_legacy", "× legacy (same workers)"),
             ("token_mib", "tokens on disk MiB"), ("peak_mb", "peak MiB")])
        save("bench_loader", {"params": vars(args) | {"root": None, "variant": None}, "sizes_mib": sizes,
                              "rows": rows, "runs": runs, "table": table})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _rows(runs: dict[str, list[dict]], names: list[str], sizes: dict[str, float]) -> list[dict]:
    """Best run per variant, with ratios against the baselines of the same repeat (then the median)."""
    disk = {"legacy": sizes["pt_mib"], "ecdc": sizes["ecdc_mib"], "embedded": sizes["arrow_mib"] + sizes["flat_mib"],
            "memmap": sizes["memmap_mib"]}
    rows = []
    for n in names:
        kind, w = n.rsplit("-w", 1)
        r = dict(max(runs[n], key=lambda r: r["windows_per_s"]))
        for base in ("memmap", "legacy"):
            pairs = zip(runs[n], runs[f"{base}-w{w}"])
            r[f"vs_{base}"] = float(np.median([a["windows_per_s"] / b["windows_per_s"] for a, b in pairs]))
        r.update(source=LABELS[kind], workers=int(w), token_mib=disk[kind])
        rows.append(r)
    return rows

if __name__ == "__main__":
    main()
