"""``eval``: token and audio metrics of one or more trained systems on a cache split.

A system is ``name:ckpt:cache[:codec]``. Token metrics compare the predicted codebooks with the
cached codes; audio metrics compare the decoded prediction with the window's original audio (and
its onsets with the grid's), both at ``eval_sr``, and (``codec_*``) with decode(true codes).
``--add-oracle`` decodes the true codes, ``--add-random`` uniform random codes; ``--fad-fadtk``
adds FAD / FAD∞ (midigroove_poc.fad); ``--save-wavs`` writes wavs + index.html (.listen)."""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
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


def read_systems_file(path: Path | str) -> list[str]:
    """The ``--system`` specs of a systems file: one per line; blank lines and ``#`` comments skipped."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--systems-file {path} does not exist; write one name:ckpt:cache[:codec] per line")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _window_audio(path: str, start_s: float, n: int, sr: int, cache: dict) -> np.ndarray:
    from workflow import audio as A

    if (path, sr) not in cache:
        if not any(key[0] == path for key in cache):
            cache.clear()  # one file at a time: windows of a row are consecutive
        data, file_sr = A.read_audio(path)
        cache[(path, sr)] = A.resample(A.to_channels(data, "mono"), file_sr, sr)[0]
    data = cache[(path, sr)]
    s = int(round(start_s * sr))
    seg = data[s:s + n]
    return np.pad(seg, (0, n - seg.shape[0])) if seg.shape[0] < n else seg


@dataclass
class _EvalRun:
    """Options and shared state of one :func:`evaluate` call."""

    device: str
    decode_device: str
    audio_metrics: bool
    save_preds: int
    pred_include_ref: bool
    add_oracle: bool
    add_random: bool
    wav_dir: Path | None
    pred_dir: Path | None
    rng: np.random.Generator
    eval_sr: int | None = None
    fad: Any = None  # a fad.FadCollector when FAD is asked for
    listen: Any = None  # a listen.Listening when wavs + index.html are asked for
    codecs: dict[tuple, Any] = field(default_factory=dict)
    audio_cache: dict[tuple, np.ndarray] = field(default_factory=dict)

    def codec_for(self, meta: dict[str, Any]) -> Any:
        from .cache import cache_codec

        key = (meta["codec"], meta.get("config", {}).get("weights", meta["weights"]), meta["bandwidth"])
        if key not in self.codecs:
            self.codecs[key] = cache_codec(meta, device=self.decode_device)
        return self.codecs[key]


def _load_systems(systems: list[System], split: str, device: str) -> list[tuple]:
    """(system, split dataset, cache meta, model, checkpoint info) per system."""
    from .cache import codec_name, load_cache, resolve_cache
    from .train import load_model

    if not systems:
        raise UsageError("give at least one --system name:ckpt:cache[:codec]")
    loaded = []
    for s in systems:
        s.cache = resolve_cache(s.cache)
        dd, meta = load_cache(s.cache)
        if s.codec and codec_name(s.codec) != meta["codec"]:
            raise UsageError(f"system {s.name}: {s.cache} was built with {meta['codec']}, not {s.codec} "
                             f"({codec_name(s.codec)}); its codes decode only with {meta['codec']}")
        if split not in dd:
            raise UsageError(f"{s.cache} has no split {split!r} (has {', '.join(dd)})")
        model, info = load_model(s.ckpt, device=device)
        loaded.append((s, dd[split], meta, model, info))
    return loaded


def _model_outputs(model: Any, item: dict[str, Any], features: str, device: str,
                   inputs: tuple[Any, list[str]]) -> tuple[np.ndarray, Any, np.ndarray]:
    """(reference codes, teacher-forced logits, the model's own prediction) for one window, shown
    to the model as in training (``inputs``: its InputSpec ablations and the cache's column names)."""
    import torch

    spec, names = inputs
    ref = item["codes"].astype(np.int64)
    grid = torch.from_numpy(spec.select(item[features].astype(np.float32), names))[None].to(device)
    ids = [torch.tensor([int(item[k])], device=device) for k in ("drummer_id", "kit_id", "style_id")]
    ids[1] = spec.kit_ids(ids[1])
    with torch.no_grad():
        # Teacher-forced logits give the NLL (identical to plain logits for the
        # non-autoregressive model); predictions come from the model's own decoding.
        logits = model(grid, *ids, codes=torch.from_numpy(ref)[None].to(device)).float().cpu()
        model_pred = model.predict(grid, *ids)[0].cpu().numpy()
    return ref, logits, model_pred


def _decode(run: _EvalRun, meta: dict[str, Any], codes: np.ndarray) -> tuple[np.ndarray, int]:
    """(audio, sample rate) of ``codes`` [K, T] decoded by the cache's codec."""
    from workflow.codecs import Encoded

    codec = run.codec_for(meta)
    n = codes.shape[1] * codec.spec.hop_length
    return codec.decode(Encoded([codes.astype(np.int16)], [None], n))[0], codec.spec.sample_rate


@dataclass
class _CodecRef:
    """decode(true codes) of one window: the codec-domain reference, at the codec's rate and at eval_sr."""

    audio: np.ndarray
    sr: int
    at_eval: np.ndarray | None


def _codec_ref(run: _EvalRun, meta: dict[str, Any], codes: np.ndarray) -> _CodecRef:
    from workflow import audio as A

    audio, sr = _decode(run, meta, codes)
    at_eval = A.resample(audio, sr, run.eval_sr or sr) if run.audio_metrics else None
    return _CodecRef(audio, sr, at_eval)


def _audio_row(run: _EvalRun, s: System, meta: dict[str, Any], item: dict[str, Any], j: int, name: str,
               kind: str, pred: np.ndarray, row: dict[str, Any], cref: _CodecRef | None) -> np.ndarray:
    """Decode ``pred``: audio metrics into ``row`` and/or the first ``save_preds`` windows as wav.

    With ``cref`` the same metrics against decode(true codes) join ``row`` as ``codec_*``.
    Returns the decoded audio (at the codec's rate).
    """
    import soundfile as sf

    from . import metrics as M

    from workflow import audio as A

    audio, sr = _decode(run, meta, pred)
    n = audio.shape[-1]
    ref_audio = _window_audio(str(item["audio_path"]), float(item["start_s"]), n, sr, run.audio_cache)
    if run.fad is not None:
        kit = meta["kits"][int(item["kit_id"])] if "kits" in meta else str(int(item["kit_id"]))
        run.fad.add(s.name, name, kit, audio, sr, (str(item["audio_path"]), float(item["start_s"]), n, sr))
    if run.audio_metrics:
        eval_sr = run.eval_sr or sr
        ref_eval = _window_audio(str(item["audio_path"]), float(item["start_s"]), int(round(n * eval_sr / sr)),
                                 eval_sr, run.audio_cache)
        pred_eval = A.resample(audio, sr, eval_sr)
        row.update(M.audio_metrics(pred_eval, ref_eval, eval_sr,
                                   ref_onsets=np.asarray(item["onsets"], dtype=np.float64)))
        if cref is not None and cref.at_eval is not None:  # onsets: detected in decode(true codes)
            row.update({f"codec_{k}": v for k, v in M.audio_metrics(pred_eval, cref.at_eval, eval_sr).items()})
    if run.wav_dir is not None and run.save_preds and j < run.save_preds:
        run.wav_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{name.replace(':', '_')}_{j:04d}"
        with atomic_path(run.wav_dir / f"{stem}.wav") as tmp:
            sf.write(tmp, audio, sr)
        if run.pred_include_ref and kind == "model":
            with atomic_path(run.wav_dir / f"ref_{s.name}_{j:04d}.wav") as tmp:
                sf.write(tmp, ref_audio, sr)
    return audio


def _variant_row(run: _EvalRun, s: System, meta: dict[str, Any], item: dict[str, Any], j: int, name: str,
                 kind: str, outputs: tuple[np.ndarray, Any, np.ndarray],
                 cref: _CodecRef | None) -> tuple[dict[str, Any], np.ndarray | None]:
    """The items.csv row of one window for one variant (model, oracle or random codes), and its audio
    when it was decoded."""
    from . import metrics as M

    ref, logits, model_pred = outputs
    if kind == "model":
        pred = model_pred
    elif kind == "oracle":
        pred = ref.copy()
    else:
        pred = run.rng.integers(0, meta["codebook_size"], size=ref.shape)
    row = {"system": name, "row_key": str(item["row_key"]), "window_index": int(item["window_index"])}
    tok = M.token_accuracy(pred, ref)
    row["acc"] = tok["acc"]
    for k, a in enumerate(tok["acc_k"]):
        row[f"acc_k{k}"] = a
    if kind == "model":
        row.update(M.token_nll(logits[0].numpy(), ref))
    audio = None
    if run.audio_metrics or run.fad is not None or (run.save_preds and j < run.save_preds) \
            or (run.listen is not None and kind != "oracle"):
        audio = _audio_row(run, s, meta, item, j, name, kind, pred, row, cref)
    if run.pred_dir is not None and kind == "model":
        run.pred_dir.mkdir(parents=True, exist_ok=True)
        np.save(run.pred_dir / f"{s.name}_{item['row_key'].replace('/', '_')}_{int(item['window_index'])}.npy",
                pred.astype(np.int16))
    return row, audio


def _listen(run: _EvalRun, s: System, item: dict[str, Any], cref: _CodecRef,
            heard: dict[str, tuple[dict[str, Any], np.ndarray | None]]) -> None:
    """Hand one window's reference, oracle (decode of the true codes) and prediction to ``run.listen``."""
    n = cref.audio.shape[-1]
    ref = _window_audio(str(item["audio_path"]), float(item["start_s"]), n, cref.sr, run.audio_cache)
    audios = {"reference": ref, "oracle": cref.audio, "prediction": heard["model"][1]}
    if "random" in heard:
        audios["random"] = heard["random"][1]
    run.listen.add(s.name, str(item["row_key"]), int(item["window_index"]), cref.sr, audios, heard["model"][0])


def _system_rows(run: _EvalRun, loaded: tuple, common: set | None, max_items: int | None) -> list[dict[str, Any]]:
    """Rows of every evaluated window of one system, for each of its variants."""
    from .inputs import InputSpec
    from .model import _FEATURE_NAME_KEYS

    s, data, meta, model, info = loaded
    features = info.get("features", "grid")
    inputs = (InputSpec.from_dict(info.get("inputs")), list(meta.get(_FEATURE_NAME_KEYS[features]) or []))
    idx = [i for i, (r, w) in enumerate(zip(data["row_key"], data["window_index"]))
           if common is None or (r, w) in common]
    if max_items:
        idx = idx[:max_items]
    fmt = data.with_format("numpy", columns=["codes", features, "drummer_id", "kit_id", "style_id",
                                              "onsets", "start_s", "audio_path", "row_key", "window_index"])
    variants = [(s.name, "model")] + ([(f"{s.name}:oracle", "oracle")] if run.add_oracle else []) \
        + ([(f"{s.name}:random", "random")] if run.add_random else [])
    rows = []
    for j, i in enumerate(idx):
        item = fmt[i]
        outputs = _model_outputs(model, item, features, run.device, inputs)
        # decode(true codes) of this very window: the codec-domain reference of every variant
        cref = _codec_ref(run, meta, outputs[0]) if run.audio_metrics or run.listen is not None else None
        heard = {}
        for name, kind in variants:
            heard[kind] = _variant_row(run, s, meta, item, j, name, kind, outputs, cref)
            rows.append(heard[kind][0])
        if run.listen is not None:
            _listen(run, s, item, cref, heard)
    return rows


def _write_results(out_dir: Path, head: dict[str, Any], summaries: dict[str, dict[str, float]],
                   rows: list[dict[str, Any]]) -> None:
    """``summary.json`` (``head`` fields + systems) and ``items.csv`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "summary.json", json.dumps(
        {**head, "systems": summaries}, indent=2, default=_jsonable) + "\n")
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(out_dir / "items.csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)


def evaluate(systems: list[System], *, split: str = "test", intersection: bool = False, max_items: int | None = None,
             device: str = "cpu", decode_device: str = "cpu", audio_metrics: bool = False, add_oracle: bool = False,
             add_random: bool = False, save_preds: int = 0, pred_include_ref: bool = False,
             out_dir: Path | None = None, pred_dir: Path | None = None, seed: int = 0,
             eval_sr: int | None = 32000, fad: Any = None, save_wavs: Path | None = None) -> dict[str, Any]:
    """Evaluate; writes ``summary.json`` and ``items.csv`` into ``out_dir`` when given.

    Audio metrics compare decoded and original audio both resampled to ``eval_sr`` (None: the
    codec's rate), and (``codec_*`` keys) decoded audio with decode(true codes) of the same window.
    ``fad``: a :class:`fad.FadCollector`; its FAD / FAD∞ keys join each summary. ``save_wavs``: a
    folder for reference / oracle / prediction wavs of every window and ``index.html``.
    """
    from .listen import Listening

    from . import metrics as M

    loaded = _load_systems(systems, split, device)
    keys = [{(r, w) for r, w in zip(d["row_key"], d["window_index"])} for _, d, *_ in loaded]
    common = set.intersection(*keys) if intersection else None
    out_dir = Path(out_dir) if out_dir else None
    run = _EvalRun(device, decode_device, audio_metrics, save_preds, pred_include_ref, add_oracle, add_random,
                   wav_dir=(out_dir / "wavs") if out_dir else None, pred_dir=pred_dir,
                   rng=np.random.default_rng(seed), eval_sr=eval_sr, fad=fad,
                   listen=Listening(Path(save_wavs)) if save_wavs is not None else None)
    rows: list[dict[str, Any]] = []
    for sys_loaded in loaded:
        rows.extend(_system_rows(run, sys_loaded, common, max_items))
    summaries: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r["system"] for r in rows):
        summaries[name] = M.summarize([r for r in rows if r["system"] == name])
        summaries[name]["items"] = sum(r["system"] == name for r in rows)
    if fad is not None:
        ref_audio = lambda i: (_window_audio(*i, run.audio_cache), i[3])  # noqa: E731
        for name, scores in fad.results(ref_audio).items():
            summaries[name].update(scores)
    if out_dir is not None:
        _write_results(out_dir, {"split": split, "eval_sr": eval_sr if audio_metrics else None}, summaries, rows)
    index = run.listen.write_index(f"midigroove_poc eval: split {split}") if run.listen is not None else None
    return {"systems": summaries, "rows": rows, "index_html": index}


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return float(x) if isinstance(x, np.floating) else str(x)
