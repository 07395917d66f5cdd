"""Per-file cost and storage of every stage, for the README's 10⁶-file plan.

Runs s1 → s2 (CPU, random weights) → s3 → s4 → s5 (link and --embed) on F and 2F generated 10 s
files (44.1 kHz stereo input; s3-s5, which cost little per file, on R copies of s2's output);
per-file cost = (time at 2F − time at F) / files added, so start-up and model loading drop out.
Prints ms and bytes per file, bits per code and the 10⁶-file totals. Usage: README, "Performance".
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import print_table, save  # noqa: E402

STAGES = ("s1", "s2", "s3", "s4", "s5 link", "s5 embed")


def make_data(root: Path, files: int, seconds: float) -> None:
    from workflow.synth import drum, tone
    sr = 44100
    for i in range(files):
        x = tone(48 + i % 24, 0.3, seconds, sr, 2) + 0.3 * drum("snare", 90, seconds, sr, i, 2)
        p = root / f"d{i % 4}" / f"tone_pitch_{48 + i % 24}_n_{i:04d}.wav"
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, x.T, sr, subtype="PCM_16")


def _size(root: Path, suffixes: tuple[str, ...] = ()) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()
               and ".reports" not in p.parts and (not suffixes or p.name.endswith(suffixes)))


def _timed(fn, argv: list[str]) -> float:
    t0 = time.perf_counter()
    rc = fn(argv)
    if rc != 0:
        raise SystemExit(f"{fn.__module__} {argv} exited {rc}")
    return time.perf_counter() - t0


def replicate(tok: Path, norm: Path, copies: int) -> None:
    """``copies`` − 1 more copies of every token file and its wav, under new names."""
    for src_root, suffix in ((tok, ".ecdc"), (norm, ".wav")):
        for p in sorted(src_root.rglob(f"*{suffix}")):
            for j in range(1, copies):
                shutil.copyfile(p, p.with_name(f"{p.stem}_r{j:03d}{suffix}"))


def run_pipeline(root: Path, files: int, seconds: float, copies: int) -> dict[str, dict[str, float]]:
    """Every stage once on ``files`` fresh files (s3-s5 on ``copies`` × as many): seconds and
    output bytes per stage."""
    from workflow import (
        s1_audio_normalize, s2_wav2encodec24, s3_sidecar_init, s4_sidecar_add, s5_build_dataset_from_folder,
    )
    from workflow.ecdc import read_ecdc
    raw, norm, tok = root / "raw", root / "norm", root / "tokens"
    make_data(raw, files, seconds)
    q = ["--no-progress"]
    t = {"s1": _timed(s1_audio_normalize.main, [str(raw), str(norm), "--workers", "2", *q])}
    # s2's model loading is a fixed cost: it cancels in the difference of the two runs
    t["s2"] = _timed(s2_wav2encodec24.main, [str(norm), str(tok), "--weights", "random", "--device", "cpu",
                                             "--workers", "2", *q])
    codes = bits = 0
    for p in tok.rglob("*.ecdc"):
        codes += read_ecdc(p).codes.size
        bits += 8 * p.stat().st_size
    replicate(tok, norm, copies)
    t["s3"] = _timed(s3_sidecar_init.main, [str(tok), *q])
    empty_sidecars = _size(tok, (".cond.npy", ".cond.json"))
    t["s4"] = _timed(s4_sidecar_add.main, [str(tok), "--producer", "from_filename", "--filename-keys", "pitch",
                                           "--producer", "from_audio", "--wav-root", str(norm),
                                           "--features", "rms_db", *q])
    t["s5 link"] = _timed(s5_build_dataset_from_folder.main, [str(tok), str(root / "ds_link"), *q])
    t["s5 embed"] = _timed(s5_build_dataset_from_folder.main, [str(tok), str(root / "ds_embed"), "--embed", *q])
    size = {"s1": _size(norm, (".wav",)) / copies, "s2": _size(tok, (".ecdc",)) / copies,
            "s3": empty_sidecars, "s4": _size(tok, (".cond.npy", ".cond.json")),
            "s5 link": _size(root / "ds_link"), "s5 embed": _size(root / "ds_embed")}
    return {"seconds": t, "bytes": size, "bits_per_code": {"s2": bits / codes}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=6, help="F: the small run has F files, the big one 2F")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--replicate", type=int, default=20, help="R: copies of s2's output for s3-s5")
    ap.add_argument("--total", type=float, default=1e6, help="files in the plan (default 10⁶)")
    args = ap.parse_args(argv)
    runs, load0 = {}, os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:  # warm-up: first imports (librosa, datasets) are not per file
        run_pipeline(Path(tmp), 1, 1.0, 1)
    for n in (args.files, 2 * args.files):
        with tempfile.TemporaryDirectory() as tmp:
            runs[n] = run_pipeline(Path(tmp), n, args.seconds, args.replicate)
    small, big = runs[args.files], runs[2 * args.files]
    rows = []
    for s in STAGES:
        n = args.files * (1 if s in ("s1", "s2") else args.replicate)  # files added by the big run
        per = max(0.0, (big["seconds"][s] - small["seconds"][s]) / n)
        fixed = max(0.0, small["seconds"][s] - per * n)
        bpf = big["bytes"][s] / (2 * n)
        rows.append({"stage": s, "ms_per_file": f"{1000 * per:.2f}", "fixed_s": f"{fixed:.1f}",
                     "bytes_per_file": f"{bpf:.0f}", "total_h": f"{per * args.total / 3600:.1f}",
                     "total_gb": f"{bpf * args.total / 1e9:.2f}"})
    print_table(
        f"per-file costs ({args.seconds:g} s files, load {load0:.1f} → {os.getloadavg()[0]:.1f}); "
        f"totals for {args.total:g} files on this machine",
        rows, [("stage", "stage"), ("ms_per_file", "ms / file"), ("fixed_s", "fixed s"),
               ("bytes_per_file", "bytes / file"), ("total_h", "hours for all"), ("total_gb", "GB for all")])
    print(f"tokens: {big['bits_per_code']['s2']:.2f} bits/code on disk (.ecdc, header included)")
    save("plan", {"args": vars(args), "rows": rows, "runs": {str(k): v for k, v in runs.items()},
                  "load": os.getloadavg()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
