"""Greedy prediction from a trained GridToCodes checkpoint: codes for cache rows, and a wav."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from midigroove_poc.cache import cache_codec
from midigroove_poc.model import CacheDataset, CacheFormatError, GridToCodes, _read_cache, load_model
from training.core import get_device
from workflow.errors import UsageError
from workflow.files import atomic_path


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}


def _check_compatible(info: dict[str, Any], meta: dict[str, Any], cache_path: Path) -> None:
    """Refuse a cache whose codec geometry differs from the one the model was trained on."""
    trained = info.get("cache_meta") or {}
    diffs = [f"{key}: model {trained.get(key)!r}, cache {meta.get(key)!r}"
             for key in ("codec", "num_codebooks", "codebook_size", "fps")
             if key in trained and key in meta and trained[key] != meta[key]]
    if diffs:
        raise UsageError(f"cache {cache_path} does not match the model's training cache ("
                         + "; ".join(diffs) + "); predict on a cache built with the same codec")


def predict_split(model: GridToCodes, info: dict[str, Any], cache_path: Path | str, split: str,
                  indices: Sequence[int] | None = None, device: str | torch.device = "cpu",
                  batch_size: int = 64) -> list[np.ndarray]:
    """Greedy codes for rows of ``split``: one int16 ``[K, T_row]`` array per row of ``indices``
    (all rows by default), in that order, each as long as its window. Moves ``model`` to ``device``."""
    cache_path = Path(cache_path)
    ds = CacheDataset(cache_path, split, info["features"])
    _check_compatible(info, ds.meta, cache_path)
    rows = list(range(len(ds))) if indices is None else [int(i) for i in indices]
    if not rows:
        return []
    if ds.n_features != model.n_features:
        raise UsageError(f"cache {cache_path} has {ds.n_features} {info['features']} features, the "
                         f"model expects {model.n_features}; use the cache it was trained on")
    dev = get_device(device) if isinstance(device, str) else device
    model.to(dev)
    out: list[np.ndarray] = []
    for start in range(0, len(rows), batch_size):
        batch = _to_device(ds.batch(rows[start:start + batch_size]), dev)
        pred = model.predict(batch["grid"], batch["drummer_id"], batch["kit_id"], batch["style_id"],
                             batch["mask"]).cpu().numpy().astype(np.int16)
        out.extend(np.ascontiguousarray(p[:, :t]) for p, t in zip(pred, batch["length"].tolist()))
    return out


def predict_to_wav(ckpt: Path | str, cache_path: Path | str, out_wav: Path | str, *,
                   split: str = "test", index: int = 0, device: str = "cpu",
                   decode_device: str = "cpu", reference_wav: Path | str | None = None) -> Path:
    """Predict the codes of one cache row and decode them to ``out_wav`` (float wav, atomic).

    The audio is ``T_row * sample_rate / fps`` samples long. ``reference_wav`` also writes the
    decoded true codes of that row (the codec's own reconstruction, for A/B listening).
    """
    import soundfile as sf

    from workflow.codecs import Encoded

    model, info = load_model(ckpt, device)
    cache_path = Path(cache_path)
    codes = predict_split(model, info, cache_path, split, [index], device)[0]
    _, meta = _read_cache(cache_path)
    for key in ("codec", "weights", "bandwidth", "fps"):
        if key not in meta:
            raise CacheFormatError(f"{cache_path}/cache_meta.json lacks {key!r}; cannot decode")
    codec = cache_codec(meta, device=decode_device)
    if codec.spec.segmented:
        raise UsageError(f"codec {codec.spec.name} stores segmented codes; predict_to_wav decodes "
                         "single-segment codecs only")
    sample_rate = codec.spec.sample_rate
    n_samples = int(round(codes.shape[1] * sample_rate / float(meta["fps"])))

    def write(path: Path | str, k_t: np.ndarray) -> Path:
        audio = codec.decode(Encoded(segments=[np.ascontiguousarray(k_t, dtype=np.int16)],
                                     scales=[None], audio_length=n_samples))
        with atomic_path(path) as tmp:
            sf.write(str(tmp), audio.T, sample_rate, format="WAV", subtype="FLOAT")
        return Path(path)

    if reference_wav is not None:
        true = CacheDataset(cache_path, split, info["features"])[index]["codes"]
        write(reference_wav, true.numpy().astype(np.int16))
    return write(out_wav, codes)
