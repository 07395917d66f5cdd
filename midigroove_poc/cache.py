"""The training cache: E-GMD windows → codec codes + expressive grid, as a ``datasets`` DatasetDict.

One cache per (codec, weights, bandwidth, windowing, filters) configuration in
``<cache_dir>/<codec>-<hash>/``. Building is resumable (one atomic part per E-GMD row, assembled
when all are done); grids and audio are prepared in ``num_workers`` threads through the shared
runner while the codec runs in the main process, in batches. Columns: README.md,
"midigroove_poc", **Cache**.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workflow.errors import UsageError, WorkflowError
from workflow.files import atomic_write_text
from workflow.runner import RunOptions, Runner, WorkItem

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
META_FILE = "cache_meta.json"
SPLITS = ("train", "validation", "test")
#: ``--encoder-model`` → (codec registry name, bandwidth in kbps; None = the codec's default), as
#: in the upstream study: EnCodec 32 kHz (4 x 50 fps), DAC 44 kHz (9 x 86.13 fps), X-Codec 2 kbps (4 x 50).
ENCODER_MODELS: dict[str, tuple[str, float | None]] = {
    "encodec": ("encodec_32khz", None), "dac": ("dac_44khz", None), "xcodec": ("xcodec", 2.0)}


class CacheError(WorkflowError):
    """A cache folder is missing, incomplete or from another configuration."""


@dataclass(frozen=True)
class CacheConfig:
    """Everything that decides a cache's content (all of it goes into the cache name's hash)."""

    codec: str = "encodec_24khz"
    weights: str = "pretrained"
    bandwidth: float | None = None
    beats_per_chunk: float = 4.0
    hop_beats: float | None = None
    beat_type_only: str | None = None
    kit_include: tuple[str, ...] = ()
    kit_exclude: tuple[str, ...] = ()
    max_rows: int | None = None
    splits: str | None = None  # which CSV rows train / validate, when not the CSV's own split column

    def config_hash(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if not (k == "splits" and v is None)}  # older names stay
        blob = json.dumps({"v": FORMAT_VERSION, **fields}, sort_keys=True, default=list)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        return f"{self.codec}-{self.config_hash()}"


@dataclass
class _Loaded:
    """One row's windows, ready for the codec: audio at the codec rate + grids."""

    windows: list[dict[str, Any]] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)


def resolve_codec(encoder_model: str | None = None, codec: str | None = None,
                  bandwidth: float | None = None) -> tuple[str, float | None]:
    """``(registry name, bandwidth)`` for ``--encoder-model`` / ``--codec`` / ``--bandwidth``.

    ``codec`` wins over ``encoder_model``: a ``workflow.codecs`` registry name means that codec
    at its registry default bandwidth, a short name (``encodec``/``dac``) what ``--encoder-model``
    means. An explicit ``bandwidth`` wins; it is checked against the registry before any audio is read.
    """
    from workflow.codecs import get_spec

    if codec:
        name, default_bw = _lookup(codec, prefer_registry=True)
    else:
        name, default_bw = _lookup(encoder_model or "encodec", prefer_registry=False)
    bw = bandwidth if bandwidth is not None else default_bw
    return name, get_spec(name).check_bandwidth(bw) if bw is not None else None


def codec_name(name: str) -> str:
    """The registry name for a short encoder-model name (``dac`` → ``dac_44khz``) or a registry name."""
    return _lookup(name, prefer_registry=False)[0]


def _lookup(name: str, *, prefer_registry: bool) -> tuple[str, float | None]:
    from workflow.codecs import CODECS, codec_names

    key = str(name).strip().lower().replace("-", "_")
    if key in CODECS and (prefer_registry or key not in ENCODER_MODELS):
        return key, None
    if key in ENCODER_MODELS:
        return ENCODER_MODELS[key]
    raise UsageError(f"unknown codec {name!r}; use an encoder model ({', '.join(ENCODER_MODELS)}: "
                     f"the upstream study's codecs) or a codec registry name ({', '.join(codec_names())})")


def _features():
    import datasets as ds

    mat = lambda t: ds.List(ds.List(ds.Value(t)))  # noqa: E731
    return ds.Features({
        "codes": mat("int16"), "grid": mat("float16"), "drumgrid": mat("float16"),
        "onsets": ds.List(ds.Value("float32")), "drummer_id": ds.Value("int32"), "kit_id": ds.Value("int32"),
        "style_id": ds.Value("int32"), "bpm": ds.Value("float32"), "beat_type": ds.Value("string"),
        "split": ds.Value("string"), "row_key": ds.Value("string"), "window_index": ds.Value("int32"),
        "start_s": ds.Value("float32"), "audio_path": ds.Value("string"),
    })


def _safe(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def select_rows(rows: Sequence[Any], cfg: CacheConfig) -> list[Any]:
    """Apply the configuration's filters (beat type, kit include/exclude, max rows)."""
    from .egmd import filter_rows

    out = filter_rows(list(rows), beat_type_only=cfg.beat_type_only,
                      kit_include=list(cfg.kit_include) or None, kit_exclude=list(cfg.kit_exclude) or None)
    out = [r for r in out if r.split in SPLITS]
    return out[: cfg.max_rows] if cfg.max_rows else out


class _Sink:
    """Encodes each loaded row's windows with the codec and writes its part atomically."""

    def __init__(self, codec, parts: Path, vocab: dict[str, list[str]]):
        self.codec, self.parts, self.vocab = codec, parts, vocab

    def add(self, item: WorkItem, loaded: _Loaded):
        import datasets as ds

        try:
            encoded = self.codec.encode_batch(loaded.audio) if loaded.audio else []
            rows = []
            for w, enc in zip(loaded.windows, encoded):
                codes = enc.segments[0]
                t = w["grid"].shape[0]
                if codes.shape[1] < t:
                    raise CacheError(f"{item.key}: codec gave {codes.shape[1]} frames for a {t}-frame window")
                rows.append({**{k: v for k, v in w.items() if k not in ("grid", "drumgrid")},
                             "codes": codes[:, :t].astype(np.int16),
                             "grid": w["grid"].astype(np.float16), "drumgrid": w["drumgrid"].astype(np.float16)})
            table = ds.Dataset.from_list(rows, features=_features()) if rows else \
                ds.Dataset.from_dict({k: [] for k in _features()}, features=_features())
            tmp = Path(tempfile.mkdtemp(prefix=".part-", dir=self.parts))
            table.save_to_disk(str(tmp / "d"), num_shards=1)
            os.replace(tmp / "d", item.dst)
            shutil.rmtree(tmp, ignore_errors=True)
            return [(item, {"windows": len(rows)})]
        except Exception as exc:  # noqa: BLE001 - reported per row by the runner
            return [(item, exc)]

    def flush(self):
        return []


def _loader(cfg: CacheConfig, fps: float, sample_rate: int, hop: int, vocab: dict[str, list[str]]):
    from workflow import audio as A

    from .egmd import make_windows
    from .grid import drum_grid, expressive_grid, load_drum_events, window_onsets

    def load(item: WorkItem) -> _Loaded:
        row = item.src
        events = load_drum_events(row.midi_path)
        data, sr = A.read_audio(row.audio_path)
        data = A.resample(A.to_channels(data, "mono"), sr, sample_rate)[0]
        out = _Loaded()
        for w in make_windows(row, cfg.beats_per_chunk, cfg.hop_beats):
            grid = expressive_grid(events, w.start_s, w.duration_s, fps, row.bpm,
                                   beats_per_bar=row.beats_per_bar)
            t = grid.shape[0]
            start = int(round(w.start_s * sample_rate))
            seg = data[start:start + t * hop]
            if seg.shape[0] < t * hop:
                seg = np.pad(seg, (0, t * hop - seg.shape[0]))
            out.audio.append(np.ascontiguousarray(seg[None], dtype=np.float32))
            out.windows.append({
                "grid": grid, "drumgrid": drum_grid(events, w.start_s, w.duration_s, fps, row.bpm),
                "onsets": window_onsets(events, w.start_s, w.duration_s).astype(np.float32).tolist(),
                "drummer_id": vocab["drummers"].index(row.drummer), "kit_id": vocab["kits"].index(row.kit_name),
                "style_id": vocab["styles"].index(row.style), "bpm": float(row.bpm),
                "beat_type": row.beat_type, "split": row.split, "row_key": row.key,
                "window_index": w.index, "start_s": float(w.start_s), "audio_path": str(row.audio_path),
            })
        return out

    return load


def build_cache(rows: Sequence[Any], cfg: CacheConfig, cache_dir: Path | str, *, num_workers: int = 2,
                encode_device: str = "auto", progress: bool = True) -> Path:
    """Build (or finish, or reuse) the cache for ``rows`` under ``cache_dir``; returns its folder."""
    import datasets as ds

    from workflow.codecs import load_codec

    cache_dir = Path(cache_dir)
    final = cache_dir / cfg.name
    if (final / META_FILE).is_file():
        log.info("cache %s is complete; reusing it", final)
        return final
    selected = select_rows(rows, cfg)
    if not selected:
        raise UsageError("no E-GMD rows left after the filters (split/beat type/kit); loosen them")
    vocab = {"drummers": sorted({r.drummer for r in selected}), "kits": sorted({r.kit_name for r in selected}),
             "styles": sorted({r.style for r in selected})}
    codec = load_codec(cfg.codec, weights=cfg.weights, bandwidth=cfg.bandwidth, device=encode_device)
    spec = codec.spec
    if spec.segmented:
        raise UsageError(f"{spec.name} encodes in scaled 1 s segments; use encodec, dac or xcodec")
    parts = cache_dir / f"{cfg.name}.parts"
    parts.mkdir(parents=True, exist_ok=True)
    items = [WorkItem(r.key, r, parts / _safe(r.key)) for r in selected]
    runner = Runner("midigroove_cache", RunOptions(workers=max(1, num_workers), progress=progress,
                                                   report=parts / "report.json"),
                    {"config": asdict(cfg), "name": cfg.name})
    report = runner.pipeline(items, _loader(cfg, spec.fps, spec.sample_rate, spec.hop_length, vocab),
                             _Sink(codec, parts, vocab))
    if report.failed:
        lines = "; ".join(f"{r.key}: {r.error}" for r in report.failed[:5])
        raise CacheError(f"{len(report.failed)} E-GMD row(s) failed ({lines}); fix or remove them, then re-run: "
                         f"finished rows in {parts} are kept")
    by_split: dict[str, list] = {s: [] for s in SPLITS}
    for it in items:
        by_split[it.src.split].append(ds.load_from_disk(str(it.dst)))
    dd = ds.DatasetDict({s: (ds.concatenate_datasets(p) if p else
                             ds.Dataset.from_dict({k: [] for k in _features()}, features=_features()))
                         for s, p in by_split.items()})
    tmp = Path(tempfile.mkdtemp(prefix=f".{cfg.name}.tmp-", dir=cache_dir))
    dd.save_to_disk(str(tmp), num_shards={s: 1 for s in dd})
    frames = {len(g) for split in dd.values() for g in split["grid"][:1]}
    meta = {"codec": spec.name, "weights": codec.weights_id, "bandwidth": codec.bandwidth, "fps": spec.fps,
            "sample_rate": spec.sample_rate, "hop_length": spec.hop_length, "num_codebooks": codec.num_codebooks,
            "codebook_size": spec.codebook_size, "frames": max(frames) if frames else 0,
            "expressive_features": _grid_names("EXPRESSIVE_FEATURES"),
            "drum_grid_features": _grid_names("DRUM_GRID_FEATURES"), **vocab,
            "rows": {s: len(dd[s]) for s in dd}, "config": asdict(cfg), "config_hash": cfg.config_hash(),
            "format_version": FORMAT_VERSION}
    atomic_write_text(tmp / META_FILE, json.dumps(meta, indent=1, default=list) + "\n")
    os.replace(tmp, final)
    shutil.rmtree(parts, ignore_errors=True)
    log.info("cache written to %s (%s)", final, meta["rows"])
    return final


def _grid_names(attr: str) -> list[str]:
    from . import grid
    return list(getattr(grid, attr))


def resolve_cache(path: Path | str) -> Path:
    """The finished cache ``path`` names: the cache folder itself, or the ``--cache-dir`` folder
    holding exactly one finished cache. CacheError listing the choices when it holds several,
    saying what was expected when it holds none."""
    p = Path(path)
    if (p / META_FILE).is_file():
        return p
    if not p.is_dir():
        raise CacheError(f"cache {p} does not exist; pass the folder `drumgrid train` printed as "
                         "`cache: ...` (or the --cache-dir folder holding it)")
    found = find_caches(p)
    if len(found) == 1:
        log.info("using the only cache in %s: %s", p, found[0].name)
        return found[0]
    if found:
        listing = "; ".join(f"{c} ({_describe(c)})" for c in found)
        raise CacheError(f"{p} holds {len(found)} finished caches; pass one of them: {listing}")
    unfinished = sorted(c.name for c in p.glob("*.parts"))
    hint = (f" (unfinished: {', '.join(unfinished)}; re-run `drumgrid train --precache-only` to finish it)"
            if unfinished else "")
    raise CacheError(f"{p} is not a finished midigroove cache: expected {META_FILE} in it, or one "
                     f"<codec>-<hash>/ cache folder holding {META_FILE} below it{hint}; build one with "
                     "`python -m midigroove_poc drumgrid train --precache-only --cache-dir DIR ...`")


def _describe(cache: Path) -> str:
    try:
        meta = json.loads((cache / META_FILE).read_text())
        cfg = meta.get("config", {})
        return f"{meta.get('codec')}, {meta.get('num_codebooks')} codebooks, weights {cfg.get('weights')}"
    except (OSError, ValueError) as exc:
        return f"unreadable {META_FILE}: {exc}"


def load_cache(cache_path: Path | str):
    """``(DatasetDict, meta)`` of a finished cache (or of the one cache in a ``--cache-dir`` folder)."""
    import datasets as ds

    p = resolve_cache(cache_path)
    meta = json.loads((p / META_FILE).read_text())
    return ds.load_from_disk(str(p)), meta


def cache_codec(meta: dict[str, Any], device: str = "cpu"):
    """The codec a cache was built with (for decoding predictions); reuses ``workflow.codecs``."""
    from workflow.codecs import load_codec

    # meta["weights"] is provenance (hub@commit, sha256:…, random); the config keeps what was passed.
    weights = meta.get("config", {}).get("weights", meta["weights"])
    return load_codec(meta["codec"], weights=weights, bandwidth=meta["bandwidth"], device=device)


def find_caches(cache_dir: Path | str) -> list[Path]:
    """Finished caches under ``cache_dir``, newest first."""
    found = [p for p in Path(cache_dir).glob("*") if (p / META_FILE).is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def iter_items(dd, split: str, columns: Iterable[str]):
    """Rows of one split as numpy arrays with their stored dtypes."""
    fmt = dd[split].with_format("numpy", columns=list(columns))
    for i in range(len(fmt)):
        yield fmt[i]
