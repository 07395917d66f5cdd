"""Prediction from a trained GridToCodes checkpoint (greedy or sampled): codes for cache rows, a
MIDI file or a grid .npz, and their decoded wav."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from midigroove_poc.cache import cache_codec
from midigroove_poc.inputs import InputSpec
from midigroove_poc.model import (_FEATURE_NAME_KEYS, CacheDataset, CacheFormatError, GridToCodes, Sampler,
                                  _read_cache, load_model)
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
                  batch_size: int = 64, sampler: Sampler | None = None) -> list[np.ndarray]:
    """Greedy (or ``sampler``-drawn) codes for rows of ``split``: one int16 ``[K, T_row]`` array per
    row of ``indices`` (all rows by default), in that order, each as long as its window. The rows
    are shown to the model as in training (its ablations). Moves ``model`` to ``device``."""
    cache_path = Path(cache_path)
    ds = CacheDataset(cache_path, split, info["features"], InputSpec.from_dict(info.get("inputs")))
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
                             batch["mask"], sampler=sampler).cpu().numpy().astype(np.int16)
        out.extend(np.ascontiguousarray(p[:, :t]) for p, t in zip(pred, batch["length"].tolist()))
    return out


def predict_to_wav(ckpt: Path | str, cache_path: Path | str, out_wav: Path | str, *,
                   split: str = "test", index: int = 0, device: str = "cpu",
                   decode_device: str = "cpu", reference_wav: Path | str | None = None,
                   sampler: Sampler | None = None) -> Path:
    """Predict the codes of one cache row and decode them to ``out_wav`` (float wav, atomic).

    The audio is ``T_row * sample_rate / fps`` samples long. ``reference_wav`` also writes the
    decoded true codes of that row (the codec's own reconstruction, for A/B listening).
    """
    model, info = load_model(ckpt, device)
    cache_path = Path(cache_path)
    codes = predict_split(model, info, cache_path, split, [index], device, sampler=sampler)[0]
    _, meta = _read_cache(cache_path)
    if reference_wav is not None:
        true = CacheDataset(cache_path, split, info["features"])[index]["codes"]
        decode_to_wav(meta, true.numpy().astype(np.int16), reference_wav, decode_device, where=str(cache_path))
    return decode_to_wav(meta, codes, out_wav, decode_device, where=str(cache_path))


def decode_to_wav(meta: dict[str, Any], codes: np.ndarray, out_wav: Path | str, decode_device: str = "cpu",
                  where: str = "checkpoint") -> Path:
    """Decode int codes ``[K, T]`` with the codec ``meta`` (a cache meta) names; float wav, atomic."""
    import soundfile as sf

    from workflow.codecs import Encoded

    for key in ("codec", "weights", "bandwidth", "fps"):
        if key not in meta:
            raise CacheFormatError(f"the cache meta of {where} lacks {key!r}; cannot decode")
    codec = cache_codec(meta, device=decode_device)
    if codec.spec.segmented:
        raise UsageError(f"codec {codec.spec.name} stores segmented codes; predict decodes "
                         "single-segment codecs only")
    sample_rate = codec.spec.sample_rate
    n_samples = int(round(codes.shape[1] * sample_rate / float(meta["fps"])))
    audio = codec.decode(Encoded(segments=[np.ascontiguousarray(codes, dtype=np.int16)],
                                 scales=[None], audio_length=n_samples))
    with atomic_path(out_wav) as tmp:
        sf.write(str(tmp), audio.T, sample_rate, format="WAV", subtype="FLOAT")
    return Path(out_wav)


def grid_from_midi(midi_path: Path | str, fps: float, features: str = "grid", *, bpm: float | None = None,
                   tail_s: float = 0.5) -> np.ndarray:
    """The full (un-ablated) grid of a whole drum MIDI file at ``fps``: from 0 s to the last hit +
    ``tail_s``. ``bpm``: the file's first tempo unless given (beat/bar phase and the bpm column)."""
    from training.midi import read_midi

    from .grid import drum_grid, expressive_grid, load_drum_events

    events = load_drum_events(midi_path)
    if bpm is None:
        tempi = read_midi(Path(midi_path), fix="check the file").get_tempo_changes()[1]
        bpm = float(tempi[0]) if len(tempi) else 120.0
    duration = float(events.times.max()) + tail_s
    if features == "drumgrid":
        return drum_grid(events, 0.0, duration, fps, bpm)
    return expressive_grid(events, 0.0, duration, fps, bpm)


def grid_from_npz(npz_path: Path | str) -> tuple[np.ndarray, dict[str, int]]:
    """``(grid [T, F], ids)`` from an .npz holding ``grid`` (the cache's full column layout) and
    optionally ``drummer_id`` / ``kit_id`` / ``style_id`` (0 when absent)."""
    with np.load(npz_path, allow_pickle=False) as z:
        if "grid" not in z:
            raise UsageError(f"{npz_path} has no 'grid' array (has {', '.join(z.files)}); save the "
                             "grid as np.savez(path, grid=float32 [T, F]) in the cache's column order")
        grid = np.asarray(z["grid"], dtype=np.float32)
        ids = {k: int(z[k]) for k in ("drummer_id", "kit_id", "style_id") if k in z}
    if grid.ndim != 2:
        raise UsageError(f"{npz_path}: grid must be [frames, features], got shape {grid.shape}")
    return grid, ids


def ids_by_name(meta: dict[str, Any], **names: str | None) -> dict[str, int]:
    """``drummer_id`` / ``kit_id`` / ``style_id`` of names in the cache vocabulary (0 when not given)."""
    out = {}
    for key, name in names.items():
        vocab = list(meta.get(f"{key}s") or [])
        if name is not None and name not in vocab:
            raise UsageError(f"unknown {key} {name!r}; the model knows: {', '.join(map(str, vocab))}")
        out[f"{key}_id"] = vocab.index(name) if name is not None else 0
    return out


def predict_grid(model: GridToCodes, info: dict[str, Any], grid: np.ndarray, ids: dict[str, int], *,
                 device: str = "cpu", sampler: Sampler | None = None) -> np.ndarray:
    """Codes int16 ``[K, T]`` for a full grid ``[T, F]`` (the cache's columns, before ablations),
    predicted in consecutive chunks as long as the training windows."""
    meta = info.get("cache_meta") or {}
    names = list(meta.get(_FEATURE_NAME_KEYS[info["features"]]) or [])
    if names and grid.shape[1] != len(names):
        raise UsageError(f"the grid has {grid.shape[1]} columns, the model's cache {len(names)} "
                         f"({info['features']} layout); build it the way the cache does")
    spec = InputSpec.from_dict(info.get("inputs"))
    x = spec.select(np.asarray(grid, dtype=np.float32), names)
    if x.shape[1] != model.n_features:
        raise UsageError(f"the grid gives {x.shape[1]} model inputs, the model expects {model.n_features}")
    dev = get_device(device)
    model.to(dev)
    chunk = min(model.max_frames, int(meta.get("frames") or model.max_frames))
    id_t = [torch.tensor([int(ids.get(k, 0))], device=dev) for k in ("drummer_id", "kit_id", "style_id")]
    id_t[1] = spec.kit_ids(id_t[1])
    out = []
    for start in range(0, x.shape[0], chunk):
        g = torch.from_numpy(x[start:start + chunk])[None].to(dev)
        out.append(model.predict(g, *id_t, sampler=sampler)[0].cpu().numpy())
    return np.concatenate(out, axis=1).astype(np.int16)
