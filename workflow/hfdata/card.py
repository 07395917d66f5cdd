"""The dataset's metadata (:data:`META_FILE`, each split's ``info.description``) and its card.

The card (``README.md``) is regenerated on every build and warns loudly about random codec weights.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .. import sidecar
from .config import BuildConfig
from .schema import COLUMN_DOCS, COLUMN_TYPES, FORMAT_NAME, FORMAT_VERSION, META_FILE, dataset_features

if TYPE_CHECKING:
    from .scan import _Row

#: The card's ``license`` without ``--license``: a Hub value saying "see the card" (the sources'
#: licences are the user's to state).
DEFAULT_LICENSE = "other"


def _weights_summary(values: Iterable[str]) -> str:
    """Dataset-wide provenance: "random" if any file says so, else the one value, else mixed."""
    vals = sorted(set(values))
    if not vals:
        return "unknown"
    if "random" in vals:
        return "random"
    return vals[0] if len(vals) == 1 else "mixed: " + ", ".join(vals)


def _combine(parts: list[tuple[sidecar.FeatureInfo, int]]) -> sidecar.FeatureInfo:
    """:func:`sidecar.combine_stats`, keeping units/doc/range when files carry no stats (v1)."""
    info = sidecar.combine_stats(parts)
    if info.mean is None and parts:
        first = parts[0][0]
        info = dataclasses.replace(first, mean=None, std=None)
    return info


def _split_meta(cfg: BuildConfig, rows: Sequence[_Row], problems: Sequence[tuple[str, str]],
                feature_order: list[str], created: str) -> dict[str, Any]:
    s = [r.scanned for r in rows]
    feats: dict[str, dict[str, Any]] = {}
    frames_with: dict[str, int] = {}
    for name in feature_order:
        parts = [(x.features[name], x.num_frames) for x in s if name in x.features]
        feats[name] = _combine(parts).to_json()
        frames_with[name] = sum(n for _, n in parts)
    return {
        "rows": len(rows),
        "hours": sum(x.duration for x in s) / 3600.0,
        "frames": int(sum(x.num_frames for x in s)),
        "rows_with_cond": sum(x.cond_src is not None for x in s),
        "weights": sorted({x.weights for x in s}),
        "feature_order": list(feature_order),
        "features": feats,
        "feature_frames": frames_with,
        "columns": list(dataset_features(wav=cfg.wav_root is not None, embed=cfg.embed)),
        "embedded": cfg.embed,
        "has_wav": cfg.wav_root is not None,
        "built": created,
        "source": cfg.source_json(),
        "skipped": [{"key": k, "error": cfg.relativize(e)} for k, e in problems],
    }


def _dataset_meta(old: dict[str, Any] | None, splits: dict[str, dict[str, Any]],
                  signature: tuple[str, float, int, int], now: str,
                  order_hint: list[str]) -> dict[str, Any]:
    codec, fps, sr, k = signature
    order: list[str] = list(order_hint)
    for sm in splits.values():
        order += [n for n in sm.get("feature_order", []) if n not in order]
    features = {}
    for name in order:
        parts = [(sidecar.FeatureInfo.from_json(sm["features"][name]), int(sm["feature_frames"][name]))
                 for sm in splits.values() if name in sm.get("features", {})]
        features[name] = _combine(parts).to_json()
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "codec": codec,
        "fps": float(fps),
        "sample_rate": int(sr),
        "num_codebooks": int(k),
        "weights": _weights_summary(w for sm in splits.values() for w in sm.get("weights", [])),
        "features": features,
        "feature_order": order,
        "features_consistent": len({tuple(sm.get("feature_order", [])) for sm in splits.values()}) <= 1,
        "embedded": all(sm.get("embedded") for sm in splits.values()),
        "has_wav": all(sm.get("has_wav") for sm in splits.values()),
        "columns": {c: COLUMN_TYPES[c] for c in next(iter(splits.values()))["columns"]} if splits else {},
        "splits": splits,
        "created": (old or {}).get("created", now),
        "updated": now,
        "tool": {"name": "enc-hf-workflow", "stage": "wf-build-dataset"},
    }


def _split_description(meta: dict[str, Any], split: str) -> str:
    """The JSON text stored in each split's ``info.description``."""
    sm = meta["splits"][split]
    return json.dumps({
        "format": FORMAT_NAME, "split": split, "codec": meta["codec"], "fps": meta["fps"],
        "sample_rate": meta["sample_rate"], "num_codebooks": meta["num_codebooks"],
        "weights": meta["weights"], "rows": sm["rows"], "hours": sm["hours"],
        "feature_order": sm["feature_order"], "features": sm["features"],
        "embedded": sm["embedded"], "columns": {c: COLUMN_TYPES[c] for c in sm["columns"]},
        "meta_file": META_FILE,
    }, indent=1)


def _fmt(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x).replace("|", "\\|").replace("\n", " ")


def _size_category(n: int) -> str:
    """The Hub's ``size_categories`` value for ``n`` rows."""
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < limit:
            return label
    return "n>100M" if n < 1_000_000_000 else "1B<n<10B"


def pretty_name(meta: dict[str, Any], name: str) -> str:
    """The card's title: ``--pretty-name``, else the folder name with what is in it."""
    given = (meta.get("card") or {}).get("pretty_name")
    return given or (f"{name}: {meta['codec']} tokens ({meta['num_codebooks']} codebooks, "
                     f"{meta['fps']:g} fps)")


def _card_header(meta: dict[str, Any], name: str) -> list[str]:
    """The YAML block the Hub reads: name, license, task, size, tags, one config with its splits."""
    splits = meta["splits"]
    lines = [
        "---",
        f"pretty_name: {json.dumps(pretty_name(meta, name))}",
        f"license: {json.dumps((meta.get('card') or {}).get('license') or DEFAULT_LICENSE)}",
        "task_categories:", "- audio-to-audio",
        "size_categories:", f"- {_size_category(sum(s['rows'] for s in splits.values()))}",
        "tags:", "- audio", "- neural-codec-tokens", f"- {json.dumps(meta['codec'])}",
        "configs:", "- config_name: default", "  data_files:",
    ]
    for sname in splits:
        lines += [f"  - split: {json.dumps(sname)}", f"    path: {json.dumps(sname + '/data-*.arrow')}"]
    return lines + ["---", ""]


def _card_intro(meta: dict[str, Any], name: str) -> list[str]:
    """Title, one-line summary, the random-weights warning, the per-split and property tables."""
    splits, weights = meta["splits"], meta["weights"]
    lines = [
        f"# {pretty_name(meta, name)}", "",
        f"Neural-codec token dataset built by `wf-build-dataset` (enc-hf-workflow): "
        f"{sum(s['rows'] for s in splits.values())} files, "
        f"{sum(s['hours'] for s in splits.values()):.3f} hours of audio as `{meta['codec']}` tokens "
        f"({meta['num_codebooks']} codebooks at {meta['fps']:g} frames/s, {meta['sample_rate']} Hz audio).",
        "",
    ]
    if weights == "random":
        lines += [
            "> [!WARNING]",
            "> **RANDOM CODEC WEIGHTS — NOT FOR REAL TRAINING.** At least one token file was made by",
            "> an untrained codec (`weights: random`). Its tokens carry no information about the audio",
            "> and decode to noise; this dataset is only good for smoke tests. Re-encode with real",
            "> weights (`wf-wav2encodec24 --weights <hub id or folder>`) and rebuild.",
            "",
        ]
    elif weights == "unknown" or weights.startswith("mixed"):
        lines += [f"> **Note:** codec weights provenance is `{weights}`; check the token files.", ""]
    lines += ["## Summary", "",
              "| split | rows | hours | token frames | rows with sidecar | skipped files | built |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for sname, s in splits.items():
        lines.append(f"| {sname} | {s['rows']} | {s['hours']:.4f} | {s['frames']} | "
                     f"{s.get('rows_with_cond', 0)} | {len(s.get('skipped', []))} | {s.get('built', '')} |")
    return lines + [
        "", "| property | value |", "|---|---|",
        f"| codec | `{meta['codec']}` |",
        f"| weights (provenance) | `{weights}` |",
        f"| frames per second | {meta['fps']:g} |",
        f"| sample rate | {meta['sample_rate']} Hz |",
        f"| codebooks | {meta['num_codebooks']} |",
        f"| embedded codes / cond values | {'yes' if meta['embedded'] else 'no'} |",
        f"| wav column | {'yes' if meta['has_wav'] else 'no'} |",
    ]


def _card_columns_and_features(meta: dict[str, Any]) -> list[str]:
    lines = ["", "## Columns", "", "| column | type | meaning |", "|---|---|---|"]
    for col, typ in meta["columns"].items():
        lines.append(f"| `{col}` | {typ} | {COLUMN_DOCS.get(col, '')} |")
    lines += ["", "## Conditioning features", ""]
    if not meta["features"]:
        return lines + ["No conditioning sidecars (`.cond.npy`) were found; `cond` is null in every row."]
    lines += [
        "Columns of each `.cond.npy` sidecar (and of `cond_values`), in this order. `min`/`max` "
        "are the normalisation range: given by the producer when *range from* says `producer`, "
        "else the data's extremes. `mean`/`std` are over all frames of all splits.", "",
        "| # | feature | units | min | max | mean | std | range from | producer | description |",
        "|---:|---|---|---:|---:|---:|---:|---|---|---|",
    ]
    for i, (fname, f) in enumerate(meta["features"].items()):
        lines.append(
            f"| {i} | `{fname}` | {_fmt(f.get('units'))} | {_fmt(f.get('min'))} | "
            f"{_fmt(f.get('max'))} | {_fmt(f.get('mean'))} | {_fmt(f.get('std'))} | "
            f"{_fmt(f.get('range_from'))} | {_fmt(f.get('producer'))} | {_fmt(f.get('doc_string'))} |")
    if not meta.get("features_consistent", True):
        lines += ["", "> **Warning:** the splits do not share one feature list:"]
        lines += [f"> - {s}: {', '.join(sm['feature_order']) or '(none)'}" for s, sm in meta["splits"].items()]
    return lines


def _card_loading(meta: dict[str, Any], name: str) -> list[str]:
    """Two snippets: ``datasets`` + numpy only, then this package's readers."""
    split = next(iter(meta["splits"]), "train")
    lines = ["", "## How to load", "", "With `datasets` and numpy only:", "", "```python",
             "import os", "import datasets", "import numpy as np", "",
             f'root = "{name}"                          # this folder',
             "ds = datasets.load_from_disk(root)",
             f'row = ds["{split}"][0]',
             'cond = np.load(os.path.join(root, row["cond"])) if row["cond"] else None  # float [T, D]']
    if meta["embedded"]:
        lines += ['codes = np.asarray(row["codes"], dtype=np.int16)          # [K, T]',
                  'values = np.asarray(row["cond_values"], dtype=np.float32)  # [T, D]']
    if meta["has_wav"]:
        lines += [f'wavs = ds["{split}"].cast_column("wav", datasets.Audio(decode=False))',
                  'wavs[0]["wav"]   # {"bytes": None, "path": "wav/…"}, relative to root']
    lines += ["```", "", "The `.ecdc` token files are Meta's EnCodec container (entropy-coded); "
              "reading their codes needs enc-hf-workflow (or a build with `--embed`):", "",
              "```python", "from workflow import hfdata, ecdc", "",
              f'ds = hfdata.load_dataset_dir("{name}")',
              f'row = ds["{split}"][0]',
              f'tokens = ecdc.read_ecdc(hfdata.resolve_path("{name}", row["audio"])).codes  # int16 [K, T]',
              'meta = hfdata.read_dataset_meta("' + name + '")  # features, units, ranges, splits']
    if meta["embedded"]:
        lines += [f'arrow = ds["{split}"].with_format("arrow")',
                  "r = hfdata.arrow_row_to_numpy(arrow[0])       # codes int16 [K, T], cond_values float32 [T, D]",
                  f'fmt = ds["{split}"].with_format("numpy", columns=["codes"], dtype="int16")',
                  'codes = fmt[0]["codes"]                        # int16 [K, T] (int64 without the dtype)']
    return lines + ["```", "",
                    "Path columns are relative to this folder; `hfdata.resolve_path` makes them absolute. "
                    "`datasets`' numpy format returns integers as int64 unless a dtype is given."]


def _shown(path: str | None) -> str | None:
    """A recorded source folder as the card shows it: relative, or (older datasets) its basename."""
    if path is None:
        return None
    return os.path.basename(path.rstrip("/")) if os.path.isabs(path) else path


def _card_copying(meta: dict[str, Any]) -> list[str]:
    """What can and cannot be copied or moved, for the materialize modes of this dataset's splits."""
    srcs = [s.get("source", {}) for s in meta["splits"].values()]
    modes = {s.get("materialize", "link") for s in srcs}
    where = ", ".join(f"`{_shown(p)}`" for p in dict.fromkeys(
        x for s in srcs for x in (s.get("tokens_dir"), s.get("cond_root"), s.get("wav_root")) if x))
    lines = ["", "## Copying, moving, publishing", ""]
    if modes == {"copy"}:
        return lines + ["Self-contained (`--materialize copy`): copy, move or publish this folder as it is."]
    kind = ("relative symbolic links" if "link" in modes else "paths") + f" to the sources ({where}, " \
        "relative to this folder)"
    return lines + [
        f"The token/sidecar/wav files are {kind}, not copies. So:", "",
        "- **works**: moving or copying this folder *together with* its sources, keeping their relative "
        "position (`mv`, `cp -r` or `rsync -a` of their common parent), or renaming it in place;",
        "- **breaks every row**: `cp -r` of this folder alone to another place (the links then point "
        "at nothing; `wf-inspect --verify` says so);",
        "- **self-contained copy**: `cp -rL` this folder (follows the links), or rebuild with "
        "`wf-build-dataset … --materialize copy`; do that before publishing (`push_to_hub` / "
        "`upload_folder` would upload links or dangling paths), or build with `--embed`.",
    ]


def _card_provenance(meta: dict[str, Any]) -> list[str]:
    lines = ["", "## Provenance", ""]
    for sname, s in meta["splits"].items():
        src = s.get("source", {})
        lines.append(f"- **{sname}**: from `{_shown(src.get('tokens_dir'))}` (materialize "
                     f"`{src.get('materialize')}`"
                     + (f", sidecars from `{_shown(src['cond_root'])}`" if src.get("cond_root") else "")
                     + (f", wavs from `{_shown(src['wav_root'])}`" if src.get("wav_root") else "")
                     + (f", split ratios {src['split_ratios']} seed {src['seed']}"
                        if src.get("split_ratios") else "")
                     + f"), built {s.get('built', '')}.")
        for p in s.get("skipped", [])[:10]:
            lines.append(f"  - skipped `{p['key']}`: {_fmt(p['error'])}")
        if len(s.get("skipped", [])) > 10:
            lines.append(f"  - … and {len(s['skipped']) - 10} more (see {META_FILE})")
    return lines + ["", f"Full metadata: `{META_FILE}`. Source folders are relative to this folder.", ""]


def render_card(meta: dict[str, Any], name: str) -> str:
    """The dataset card (``README.md``): Hub YAML, summary, provenance warning, columns, features,
    loading, what can be copied."""
    return "\n".join(_card_header(meta, name) + _card_intro(meta, name)
                     + _card_columns_and_features(meta) + _card_loading(meta, name)
                     + _card_copying(meta) + _card_provenance(meta))
