"""The s5 build: scan, select, stage, write Arrow splits, metadata and card, verify, swap in.

:func:`build` builds some splits into a dataset folder and keeps the others already there;
:func:`build_dataset` is its short form.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import datetime as _dt
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from .. import ecdc, sidecar
from ..errors import DatasetError, EcdcFormatError, UsageError, WorkflowError
from ..files import TMP_MARKER, atomic_write_text, discover, relative_key
from ..runner import WorkItem, bounded_map
from ..sidecar_root import cond_root_or_recorded
from .card import DEFAULT_LICENSE, _dataset_meta, _split_description, _split_meta, render_card
from .config import BuildConfig, BuildResult, VerifyError, _abs, _recorded
from .flat import FlatWriter, flat_writer
from .read import load_dataset_dir, read_dataset_meta
from .scan import (
    _fail_result, _Row, _scan, _Scanned, _select_usable, _strip_suffix, check_feature_sets,
    conditioning_warnings,
)
from .schema import CARD_FILE, META_FILE, REPORTS_DIR, STAGE, _record_batch, dataset_features
from .splits import assign_split
from .staging import (
    _carry, _DirCache, _file_mode, _link_or_copy, _place, _quiet_datasets, _recover, _swap_in,
)
from .verify import verify_dataset

if TYPE_CHECKING:  # datasets takes ~1 s to import: only functions that need it import it
    import datasets
    import pyarrow as pa

log = logging.getLogger(__package__)  # "workflow.hfdata", the logger name from before the split

#: An Arrow record batch is written (and its rows' arrays released) at this many rows or bytes:
#: with --embed, memory holds at most one batch of arrays plus the per-row index.
BATCH_ROWS = 1024
BATCH_BYTES = 64 << 20


def _read_embedded(s: _Scanned) -> tuple[np.ndarray, np.ndarray | None]:
    """Codes ``[K, T]`` int16 and sidecar values ``[T, D]`` float32 of one file, checked."""
    codes = ecdc.load_tokens(s.src).codes
    if codes.shape != (s.num_codebooks, s.num_frames):
        raise EcdcFormatError(f"{s.src}: decoded codes have shape {tuple(codes.shape)} but the header "
                              f"says [{s.num_codebooks}, {s.num_frames}]; {ecdc.REENCODE_HINT}")
    values = None
    if s.cond_src is not None:
        sc = sidecar.read_sidecar(s.cond_src)
        if sc.frames != s.num_frames or sc.names != list(s.features):
            raise sidecar.SidecarError(f"{s.cond_src}: sidecar changed while the dataset was being "
                                       "built; re-run the build")
        values = np.ascontiguousarray(sc.values, dtype=np.float32)
    return np.ascontiguousarray(codes, dtype=np.int16), values


def _existing(out: Path, fresh: bool) -> tuple[dict[str, Any] | None, list[str]]:
    """(metadata, split names) of the dataset already in ``out``; refuses folders not ours."""
    if not out.exists() or not any(out.iterdir()):
        return None, []
    if not (out / META_FILE).exists():
        raise UsageError(f"OUT_DIR {out} exists and is not a dataset built by wf-build-dataset "
                         f"(no {META_FILE}); choose a new or empty folder")
    if fresh:
        return None, []
    meta = read_dataset_meta(out)
    try:
        listed = json.loads((out / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{out}: dataset_dict.json is missing or broken ({exc}); rebuild with "
                           "--fresh") from exc
    return meta, [s for s in listed if s in meta["splits"]]


def _carry_split(out: Path, staged: Path, split: str, owners: dict[str, str]) -> list[str]:
    """Hard-link a kept split (Arrow folder + the files its rows reference) into ``staged``."""
    import datasets

    shutil.copytree(out / split, staged / split, copy_function=_link_or_copy)
    ds = datasets.load_from_disk(str(out / split))
    cols = [c for c in ("audio", "cond", "wav") if c in ds.column_names]
    table = ds.select_columns(cols).with_format("arrow")[:]
    missing: list[str] = []
    for col in cols:
        for rel in table.column(col).to_pylist():
            if rel is None or os.path.normpath(rel).startswith(".."):
                continue  # --materialize none: points outside, nothing to carry
            rels = [rel] + ([sidecar.json_path_for(Path(rel)).as_posix()] if col == "cond" else [])
            for r in rels:
                owners.setdefault(Path(r).as_posix(), split)
                if not _carry(out / r, staged / r):
                    missing.append(f"{split}: {r} is missing in {out}")
    return missing


def _check_kept_columns(cfg: BuildConfig, old_meta: dict[str, Any], kept: Sequence[str]) -> None:
    """Every split of a dataset has the same columns: refuse a build that would mix them."""
    for s in kept:
        sm = old_meta["splits"][s]
        if bool(sm.get("embedded")) != cfg.embed or bool(sm.get("has_wav")) != (cfg.wav_root is not None):
            raise DatasetError(
                f"{cfg.out_dir}: existing split {s!r} was built "
                f"{'with' if sm.get('embedded') else 'without'} --embed and "
                f"{'with' if sm.get('has_wav') else 'without'} --wav-root; build this split the same "
                "way, or rebuild all splits with --fresh")


def _kept_split_warnings(cfg: BuildConfig, old_meta: dict[str, Any], kept: Sequence[str],
                         usable: Sequence[_Scanned], ref_order: list[str]) -> list[str]:
    """Feature lists that disagree with a kept split, and files that are in two splits."""
    out: list[str] = []
    new_ids = {s.id for s in usable}
    for k in kept:
        sm = old_meta["splits"][k]
        if sm.get("feature_order", []) != ref_order:
            out.append(f"split {k!r} has features [{', '.join(sm.get('feature_order', []))}] but the new "
                       f"split(s) have [{', '.join(ref_order)}]; rebuild {k!r} too so they match")
        if _recorded(cfg.out_dir, sm.get("source", {}).get("tokens_dir")) == _abs(cfg.tokens_dir):
            overlap = len(new_ids & _split_ids(cfg.out_dir, k))
            if overlap:
                out.append(f"{overlap} file(s) of the new split(s) are also in split {k!r} (same tokens "
                           "folder): the splits overlap")
    for msg in out:
        log.warning(msg)
    return out


@dataclass
class _Plan:
    """What a build found before writing anything: the usable files per split, and the problems."""

    report: Any
    problems: dict[str, str]
    ref_sig: tuple
    ref_order: list[str]
    by_split: dict[str, list[_Scanned]]
    warnings: list[str]


def _use_recorded_cond_root(cfg: BuildConfig) -> list[str]:
    """Without --cond-root, the sidecar folder wf-sidecar-init recorded in the token folder."""
    cfg.cond_root, note = cond_root_or_recorded(cfg.tokens_dir, cfg.cond_root)
    if note is None:
        return []
    log.info("%s", note)
    return [note]


def _plan(cfg: BuildConfig, old_meta: dict[str, Any] | None, kept: list[str]) -> _Plan:
    """Scan the token files, check one layout and one feature list, assign splits."""
    files = discover(cfg.tokens_dir, [cfg.suffix], recursive=cfg.recursive, exclude=[cfg.out_dir])
    if cfg.max_files is not None:
        files = files[: cfg.max_files]
    if not files:
        raise UsageError(f"no *{cfg.suffix} files under {cfg.tokens_dir}"
                         + ("" if cfg.recursive else " (--no-recursive)"))
    keys = [relative_key(p, cfg.tokens_dir) for p in files]
    items = [WorkItem(k, p, cfg.out_dir / cfg.tokens_subdir / k) for k, p in zip(keys, files)]
    scanned, report = _scan(cfg, items)
    problems: dict[str, str] = {r.key: r.error or "" for r in report.failed}
    usable, odd, ref_sig, ref_order = _select_usable(scanned, old_meta, kept) if scanned else ([], {}, (), [])
    problems.update(odd)
    for key, err in odd.items():
        _fail_result(report, key, err)
    if not usable:
        first = "\n  ".join(f"{k}: {e}" for k, e in list(problems.items())[:10])
        raise DatasetError(f"none of the {len(items)} token files under {cfg.tokens_dir} could be "
                           f"used; nothing was written:\n  {first}")
    check_feature_sets(cfg, usable)
    warnings = conditioning_warnings(cfg, usable, ref_order)
    for msg in warnings:
        log.warning("%s", msg)
    if old_meta:
        warnings += _kept_split_warnings(cfg, old_meta, kept, usable, ref_order)
    by_split: dict[str, list[_Scanned]] = {name: [] for name in cfg.target_splits}
    for s in usable:
        by_split[assign_split(s.id, cfg.split_ratios, cfg.seed) if cfg.split_ratios else cfg.split].append(s)
    return _Plan(report, problems, ref_sig, ref_order, by_split, warnings)


def _stage(cfg: BuildConfig, staged: Path, plan: _Plan, old_meta: dict[str, Any] | None,
           old_splits: list[str], kept: list[str], now: str) -> tuple[dict[str, Any], dict[str, int], Path]:
    """Write the whole new dataset into ``staged``; returns (metadata, rows built, report path)."""
    out, report, problems = cfg.out_dir, plan.report, plan.problems
    owners: dict[str, str] = {}
    for k in kept:
        for msg in _carry_split(out, staged, k, owners):
            log.warning(msg)
            plan.warnings.append(msg)
    if (out / REPORTS_DIR).is_dir():
        shutil.copytree(out / REPORTS_DIR, staged / REPORTS_DIR, copy_function=_link_or_copy)
    split_metas = {k: old_meta["splits"][k] for k in kept} if old_meta else {}
    built: dict[str, int] = {}
    with _quiet_datasets(cfg.progress):
        for name in cfg.target_splits:
            rows, late = _write_split(cfg, staged, name, plan.by_split[name], owners, old_meta)
            for key, err in late:
                problems[key] = err
                _fail_result(report, key, err)
            split_metas[name] = _split_meta(cfg, rows, _problems_for_split(cfg, problems, name),
                                            plan.ref_order, now)
            built[name] = len(rows)
    order = [s for s in old_splits if s in split_metas]
    order += [s for s in cfg.target_splits if s not in order]
    meta = _dataset_meta(old_meta, {s: split_metas[s] for s in order}, plan.ref_sig, now, plan.ref_order)
    meta["card"] = _card_settings(cfg, old_meta)
    _finish_staged(staged, meta, out.name)
    report.params["problems"] = len(problems)
    report.finished = _dt.datetime.now().isoformat(timespec="seconds")
    report_rel = Path(REPORTS_DIR) / f"{STAGE}-{_dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.json"
    report.write(staged / report_rel)
    if cfg.report is not None:
        report.write(cfg.report)
    return meta, built, report_rel


def build(cfg: BuildConfig) -> BuildResult:
    """Build ``cfg.target_splits`` into ``cfg.out_dir``, keeping any other splits already there.

    Files with problems (unreadable tokens, sidecar frame mismatch, another codec, …) are left
    out and returned in ``result.problems`` (also in the run report, META_FILE and card).
    Sidecars with different feature lists stop the build (:func:`check_feature_sets`).
    Raises :class:`VerifyError` (and writes nothing) if ``cfg.verify`` finds problems.
    """
    cfg.validate()
    notes = _use_recorded_cond_root(cfg)
    out = cfg.out_dir
    _recover(out)
    old_meta, old_splits = _existing(out, cfg.fresh)
    kept = [s for s in old_splits if s not in cfg.target_splits]
    if kept and old_meta is not None:
        _check_kept_columns(cfg, old_meta, kept)
    now = _dt.datetime.now().isoformat(timespec="seconds")
    plan = _plan(cfg, old_meta, kept)

    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}{TMP_MARKER}build-{os.getpid()}-", dir=out.parent))
    os.chmod(staged, _file_mode(0o777))  # mkdtemp makes it private; a dataset folder is not
    try:
        meta, built, report_rel = _stage(cfg, staged, plan, old_meta, old_splits, kept, now)
        if cfg.verify:
            found = verify_dataset(staged, workers=cfg.workers, progress=cfg.progress)
            if found:
                raise VerifyError(out, found)
        _swap_in(staged, out)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return BuildResult(dataset=load_dataset_dir(out), out_dir=out, built=built, kept=kept,
                       problems=sorted(plan.problems.items()), meta=meta,
                       report_path=cfg.report or out / report_rel, warnings=plan.warnings,
                       report=plan.report, notes=notes)


def _split_ids(out: Path, split: str) -> set[str]:
    import datasets

    ds = datasets.load_from_disk(str(out / split)).select_columns(["id"])
    return set(ds.with_format("arrow")[:].column("id").to_pylist())


def _problems_for_split(cfg: BuildConfig, problems: Mapping[str, str], split: str) -> list[tuple[str, str]]:
    """Problem files attributed to ``split`` (by the same hash as the rows, for split ratios)."""
    out = []
    for key, err in sorted(problems.items()):
        name = (assign_split(_strip_suffix(key, cfg.suffix), cfg.split_ratios, cfg.seed)
                if cfg.split_ratios else cfg.split)
        if name == split:
            out.append((key, err))
    return out


class _Placer:
    """Materialises the files of one split's rows in the staging folder (or records their paths)."""

    def __init__(self, cfg: BuildConfig, staged: Path, split: str, owners: dict[str, str],
                 old_meta: dict[str, Any] | None):
        self.cfg, self.staged, self.split, self.owners, self.old_meta = cfg, staged, split, owners, old_meta
        self.dirs = _DirCache()
        self.mine = (_abs(cfg.tokens_dir), _abs(cfg.cond_root) if cfg.cond_root else None,
                     _abs(cfg.wav_root) if cfg.wav_root else None)

    def claim(self, rel: str) -> None:
        """Refuse to replace a file that a kept split built from other sources uses."""
        owner = self.owners.get(rel)
        if owner is None or self.old_meta is None:
            return
        out = self.cfg.out_dir
        src = self.old_meta["splits"][owner].get("source", {})
        theirs = tuple(_recorded(out, src.get(k)) for k in ("tokens_dir", "cond_root", "wav_root"))
        if theirs != self.mine:
            raise DatasetError(
                f"{out / rel} is used by split {owner!r} (built from {src.get('tokens_dir')}) and would "
                f"be replaced by a file of split {self.split!r} from {self.cfg.tokens_dir}; pass "
                f"--tokens-subdir {self.cfg.tokens_subdir}_{self.split} (and --wav-subdir) for this split")

    def __call__(self, s: _Scanned) -> _Row:
        cfg, out = self.cfg, self.cfg.out_dir
        if cfg.materialize == "none":
            return _Row(s, cfg.rel(s.src), cfg.rel(s.cond_src), cfg.rel(s.wav_src))
        audio_rel = f"{cfg.tokens_subdir}/{s.key}"
        pairs = [(s.src, audio_rel)]
        cond_rel = None
        if s.cond_src is not None:
            folder, _, name = audio_rel.rpartition("/")
            cond_rel = f"{folder}/{sidecar.sidecar_name(name, cfg.cond_suffix)}"
            json_rel = sidecar.json_path_for(cond_rel).as_posix()
            pairs += [(s.cond_src, cond_rel), (sidecar.json_path_for(s.cond_src), json_rel)]
        wav_rel = None
        if s.wav_src is not None:
            wav_rel = f"{cfg.wav_subdir}/{s.id}.wav"
            pairs.append((s.wav_src, wav_rel))
        out_s, staged_s = os.fspath(out), os.fspath(self.staged)
        for src, rel in pairs:
            self.claim(rel)
            _place(src, os.path.join(out_s, rel), os.path.join(staged_s, rel), cfg.materialize, self.dirs)
        return _Row(s, audio_rel, cond_rel, wav_rel)


def _load(s: _Scanned, embed: bool) -> tuple[_Scanned, Any]:
    """(file, embedded arrays or None) — or (file, the error), never raising for one bad file."""
    try:
        return s, _read_embedded(s) if embed else None
    except WorkflowError as exc:
        return s, exc
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the build
        return s, DatasetError(f"{s.src}: {type(exc).__name__}: {exc}")


def _write_rows(cfg: BuildConfig, stage_file: Path, split: str, members: list[_Scanned],
                place: _Placer, schema: pa.Schema, flat: FlatWriter | None = None
                ) -> tuple[list[_Row], list[tuple[str, str]]]:
    """Read (with --embed) and place every member, writing Arrow record batches to ``stage_file``
    (and, with --embed, the same arrays to the split's flat buffers)."""
    import pyarrow as pa

    wav = cfg.wav_root is not None
    problems: list[tuple[str, str]] = []
    rows: list[_Row] = []
    bar = tqdm(total=len(members), desc=f"write {split}", unit="file", disable=not cfg.progress,
               file=sys.stderr, mininterval=0.5, dynamic_ncols=True)
    batch: list[_Row] = []
    batch_bytes = 0

    def flush() -> None:
        writer.write_batch(_record_batch(batch, schema, wav=wav, embed=cfg.embed))
        for r in batch:
            r.codes = r.cond_values = None
        batch.clear()

    with bar, pa.OSFile(str(stage_file), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer, \
            cf.ThreadPoolExecutor(cfg.workers) as pool:
        # only --embed reads files here; without it a pool would add ~0.2 ms per row for nothing
        loaded = ((s, None) for s in members) if not cfg.embed else (
            fut.result() for _, fut in bounded_map(pool, lambda s: (_load, s, True), members,
                                                   2 * cfg.workers, ordered=True))
        for s, payload in loaded:
            bar.update(1)
            if isinstance(payload, BaseException):
                log.warning("%s skipped: %s", s.key, payload)
                problems.append((s.key, str(payload)))
                continue
            row = place(s)
            if payload is not None:
                row.codes, row.cond_values = payload
                if flat is not None:
                    flat.add(row.codes, row.cond_values)
                batch_bytes += row.codes.nbytes + (0 if row.cond_values is None else row.cond_values.nbytes)
            rows.append(row)
            batch.append(row)
            if len(batch) >= BATCH_ROWS or batch_bytes > BATCH_BYTES:
                flush()
                batch_bytes = 0
        if batch:
            flush()
    return rows, problems


def _write_split(cfg: BuildConfig, staged: Path, split: str, members: list[_Scanned],
                 owners: dict[str, str], old_meta: dict[str, Any] | None
                 ) -> tuple[list[_Row], list[tuple[str, str]]]:
    """Materialise the files of one split, read embedded values, write its Arrow folder."""
    import datasets

    features = dataset_features(wav=cfg.wav_root is not None, embed=cfg.embed)
    stage_file = staged / f".{split}{TMP_MARKER}rows.arrow"
    place = _Placer(cfg, staged, split, owners, old_meta)
    with flat_writer(staged / split) if cfg.embed else contextlib.nullcontext() as flat:
        rows, problems = _write_rows(cfg, stage_file, split, members, place, features.arrow_schema, flat)
    info = datasets.DatasetInfo(features=features)
    ds = datasets.Dataset.from_file(str(stage_file), info=info, split=datasets.NamedSplit(split))
    # datasets writes no data file for an empty split (and cannot load that back): force one shard
    ds.save_to_disk(str(staged / split), num_shards=1 if len(ds) == 0 else None)
    del ds
    stage_file.unlink()
    return rows, problems


def _card_settings(cfg: BuildConfig, old_meta: dict[str, Any] | None) -> dict[str, str | None]:
    """License and pretty name of the card: the flags, else what the dataset had, else defaults."""
    old = (old_meta or {}).get("card", {})
    return {"license": cfg.license or old.get("license") or DEFAULT_LICENSE,
            "pretty_name": cfg.pretty_name or old.get("pretty_name")}


def _finish_staged(staged: Path, meta: dict[str, Any], name: str) -> None:
    """dataset_dict.json, META_FILE, card, and each built split's ``info.description``."""
    import datasets

    with open(staged / datasets.config.DATASETDICT_JSON_FILENAME, "w", encoding="utf-8") as fh:
        json.dump({"splits": list(meta["splits"])}, fh)
    for split in meta["splits"]:
        info_path = staged / split / datasets.config.DATASET_INFO_FILENAME
        info = json.loads(info_path.read_text(encoding="utf-8"))
        info["description"] = _split_description(meta, split)
        # carried splits are hard links: replace the file, never write through the link
        atomic_write_text(info_path, json.dumps(info, indent=2))
        os.chmod(info_path, _file_mode())
    atomic_write_text(staged / META_FILE, json.dumps(meta, indent=1) + "\n")
    atomic_write_text(staged / CARD_FILE, render_card(meta, name))
    for p in (staged / META_FILE, staged / CARD_FILE):
        os.chmod(p, _file_mode())


def build_dataset(tokens_dir: Path | str, out_dir: Path | str, **options: Any) -> datasets.DatasetDict:
    """Build (or extend) the dataset in ``out_dir`` from the token files under ``tokens_dir``.

    ``options`` are the fields of :class:`BuildConfig` (``split``, ``split_ratios``, ``seed``,
    ``materialize``, ``cond_root``, ``wav_root``, ``embed``, ``max_files``, ``verify``, …).
    Files with problems are left out and logged; they are listed per split under ``skipped`` in
    :func:`read_dataset_meta`. Use :func:`build` for the full :class:`BuildResult`.
    """
    return build(BuildConfig(Path(tokens_dir), Path(out_dir), **options)).dataset
