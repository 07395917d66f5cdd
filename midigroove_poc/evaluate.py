"""``eval``: token and audio metrics of one or more trained systems on a cache split.

A system is ``name:ckpt:cache[:codec]``. For every evaluated window the model predicts all K
codebooks from the grid; token metrics compare them with the cached codes, audio metrics compare
the decoded prediction with the original audio of that window (and its onsets with the grid's).
``--add-oracle`` decodes the true codes (the codec's ceiling), ``--add-random`` uniform random codes.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workflow.errors import UsageError
from workflow.files import atomic_path, atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class System:
    name: str
    ckpt: Path | None
    cache: Path
    codec: str | None = None

    @classmethod
    def parse(cls, text: str) -> System:
        parts = text.split(":")
        if len(parts) not in (3, 4) or not all(parts[:3]):
            raise UsageError(f"--system must be name:ckpt:cache[:codec], got {text!r}")
        return cls(parts[0], Path(parts[1]), Path(parts[2]), parts[3] if len(parts) == 4 else None)


def _window_audio(path: str, start_s: float, n: int, sr: int, cache: dict) -> np.ndarray:
    from workflow import audio as A

    if path not in cache:
        data, file_sr = A.read_audio(path)
        cache.clear()  # one file at a time: windows of a row are consecutive
        cache[path] = A.resample(A.to_channels(data, "mono"), file_sr, sr)[0]
    data = cache[path]
    s = int(round(start_s * sr))
    seg = data[s:s + n]
    return np.pad(seg, (0, n - seg.shape[0])) if seg.shape[0] < n else seg


def evaluate(systems: list[System], *, split: str = "test", intersection: bool = False, max_items: int | None = None,
             device: str = "cpu", decode_device: str = "cpu", audio_metrics: bool = False, add_oracle: bool = False,
             add_random: bool = False, save_preds: int = 0, pred_include_ref: bool = False,
             out_dir: Path | None = None, pred_dir: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Evaluate; writes ``summary.json`` and ``items.csv`` into ``out_dir`` when given."""
    import soundfile as sf
    import torch

    from workflow.codecs import Encoded

    from . import metrics as M
    from .cache import cache_codec, load_cache
    from .train import load_model

    if not systems:
        raise UsageError("give at least one --system name:ckpt:cache[:codec]")
    loaded = []
    for s in systems:
        dd, meta = load_cache(s.cache)
        if split not in dd:
            raise UsageError(f"{s.cache} has no split {split!r} (has {', '.join(dd)})")
        model, info = load_model(s.ckpt, device=device)
        loaded.append((s, dd[split], meta, model, info))
    keys = [{(r, w) for r, w in zip(d["row_key"], d["window_index"])} for _, d, *_ in loaded]
    common = set.intersection(*keys) if intersection else None
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    summaries: dict[str, dict[str, float]] = {}
    codecs: dict[tuple, Any] = {}
    out_dir = Path(out_dir) if out_dir else None
    wav_dir = (out_dir / "wavs") if out_dir else None

    def codec_for(meta, override):
        key = (override or meta["codec"], meta.get("config", {}).get("weights", meta["weights"]), meta["bandwidth"])
        if key not in codecs:
            m = dict(meta, codec=key[0])
            codecs[key] = cache_codec(m, device=decode_device)
        return codecs[key]

    audio_cache: dict[str, np.ndarray] = {}
    for s, data, meta, model, info in loaded:
        features = info.get("features", "grid")
        idx = [i for i, (r, w) in enumerate(zip(data["row_key"], data["window_index"]))
               if common is None or (r, w) in common]
        if max_items:
            idx = idx[:max_items]
        fmt = data.with_format("numpy", columns=["codes", features, "drummer_id", "kit_id", "style_id",
                                                  "onsets", "start_s", "audio_path", "row_key", "window_index"])
        variants = [(s.name, "model")] + ([(f"{s.name}:oracle", "oracle")] if add_oracle else []) \
            + ([(f"{s.name}:random", "random")] if add_random else [])
        for j, i in enumerate(idx):
            item = fmt[i]
            ref = item["codes"].astype(np.int64)
            grid = torch.from_numpy(item[features].astype(np.float32))[None].to(device)
            ids = [torch.tensor([int(item[k])], device=device) for k in ("drummer_id", "kit_id", "style_id")]
            with torch.no_grad():
                # Teacher-forced logits give the NLL (identical to plain logits for the
                # non-autoregressive model); predictions come from the model's own decoding.
                logits = model(grid, *ids, codes=torch.from_numpy(ref)[None].to(device)).float().cpu()
                model_pred = model.predict(grid, *ids)[0].cpu().numpy()
            for name, kind in variants:
                if kind == "model":
                    pred = model_pred
                elif kind == "oracle":
                    pred = ref.copy()
                else:
                    pred = rng.integers(0, meta["codebook_size"], size=ref.shape)
                row = {"system": name, "row_key": str(item["row_key"]), "window_index": int(item["window_index"])}
                tok = M.token_accuracy(pred, ref)
                row["acc"] = tok["acc"]
                for k, a in enumerate(tok["acc_k"]):
                    row[f"acc_k{k}"] = a
                if kind == "model":
                    row.update(M.token_nll(logits[0].numpy(), ref))
                if audio_metrics or (save_preds and j < save_preds):
                    codec = codec_for(meta, s.codec)
                    n = ref.shape[1] * codec.spec.hop_length
                    audio = codec.decode(Encoded([pred.astype(np.int16)], [None], n))[0]
                    ref_audio = _window_audio(str(item["audio_path"]), float(item["start_s"]), n,
                                              codec.spec.sample_rate, audio_cache)
                    if audio_metrics:
                        row.update(M.audio_metrics(audio, ref_audio, codec.spec.sample_rate,
                                                   ref_onsets=np.asarray(item["onsets"], dtype=np.float64)))
                    if wav_dir is not None and save_preds and j < save_preds:
                        wav_dir.mkdir(parents=True, exist_ok=True)
                        stem = f"{name.replace(':', '_')}_{j:04d}"
                        with atomic_path(wav_dir / f"{stem}.wav") as tmp:
                            sf.write(tmp, audio, codec.spec.sample_rate)
                        if pred_include_ref and kind == "model":
                            with atomic_path(wav_dir / f"ref_{s.name}_{j:04d}.wav") as tmp:
                                sf.write(tmp, ref_audio, codec.spec.sample_rate)
                if pred_dir is not None and kind == "model":
                    pred_dir.mkdir(parents=True, exist_ok=True)
                    np.save(pred_dir / f"{s.name}_{item['row_key'].replace('/', '_')}_{int(item['window_index'])}.npy",
                            pred.astype(np.int16))
                rows.append(row)
    for name in dict.fromkeys(r["system"] for r in rows):
        summaries[name] = M.summarize([r for r in rows if r["system"] == name])
        summaries[name]["items"] = sum(r["system"] == name for r in rows)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "summary.json", json.dumps(
            {"split": split, "systems": summaries}, indent=2, default=_jsonable) + "\n")
        cols = list(dict.fromkeys(k for r in rows for k in r))
        with atomic_path(out_dir / "items.csv") as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=cols)
                w.writeheader()
                w.writerows(rows)
    return {"systems": summaries, "rows": rows}


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return float(x) if isinstance(x, np.floating) else str(x)
