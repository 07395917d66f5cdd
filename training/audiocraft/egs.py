"""``prepare``: a folder of audio → fixed-length segments → AudioCraft's ``egs/`` manifests.

s1 cuts the segments; ``WORK/egs/{train,valid}/`` get symlinks to them and ``data.jsonl``. The
split is by *source track* (segments of one song never straddle train and valid), ordered by a
seeded hash of the track's relative path, so it is deterministic and adding tracks moves only a
few. Re-running changes nothing that is already right. Layout and manifest fields: README.md,
"AudioCraft training through Dora", **prepare**.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import soundfile as sf
from tqdm.auto import tqdm

from workflow.errors import UsageError, WorkflowError
from workflow.files import (
    AUDIO_EXTENSIONS,
    check_output_not_inside_input,
    temp_sibling,
    write_text_if_changed,
)
from workflow.runner import RunOptions, RunReport
from workflow.normalize import NormalizeConfig, build_items, normalize_items, segment_path

log = logging.getLogger(__name__)

SPLITS = ("train", "valid")
MANIFEST_NAMES = ("data.jsonl", "data.jsonl.gz")
REQUIRED_KEYS = ("path", "duration", "sample_rate")


class ManifestError(WorkflowError):
    """An ``egs/`` split folder or its ``data.jsonl`` is missing or malformed."""


@dataclass(frozen=True)
class PrepareConfig:
    """What ``prepare`` makes; the defaults are the RunPod notebooks' settings."""

    sample_rate: int = 32000
    channels: str = "mono"
    segment_seconds: float = 10.0
    min_segment_seconds: float = 5.0
    target_rms: float = 0.1
    train_ratio: float = 0.9
    seed: int = 42

    def __post_init__(self) -> None:
        if not 0.0 < self.train_ratio < 1.0:
            raise UsageError(f"--train-ratio must be between 0 and 1 (exclusive), got {self.train_ratio}")
        if self.segment_seconds <= 0 or self.sample_rate <= 0:
            raise UsageError("--segment-seconds and --sample-rate must be positive")
        if not 0 <= self.min_segment_seconds <= self.segment_seconds:
            raise UsageError("--min-segment-seconds must be between 0 and --segment-seconds")

    def normalize_config(self) -> NormalizeConfig:
        return NormalizeConfig(sample_rate=self.sample_rate, channels=self.channels,
                               target_rms=self.target_rms, segment_seconds=self.segment_seconds,
                               min_segment_seconds=self.min_segment_seconds)


@dataclass
class SplitSummary:
    folder: Path
    files: int = 0
    seconds: float = 0.0
    tracks: int = 0
    manifest_changed: bool = False
    links_added: int = 0
    links_removed: int = 0


@dataclass
class PrepareResult:
    segments_dir: Path
    egs_dir: Path
    splits: dict[str, SplitSummary]
    report: RunReport | None = None
    failed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(s.manifest_changed or s.links_added or s.links_removed for s in self.splits.values())

    def summary(self) -> str:
        lines = []
        for name, s in self.splits.items():
            state = "updated" if (s.manifest_changed or s.links_added or s.links_removed) else "unchanged"
            lines.append(f"  {name:5s}: {s.files:5d} segments from {s.tracks} tracks, "
                         f"{s.seconds / 3600:.2f} h  ({s.folder / 'data.jsonl'}, {state})")
        if self.failed:
            lines.append(f"  {len(self.failed)} input file(s) failed and were left out: "
                         + ", ".join(self.failed[:5]) + (" …" if len(self.failed) > 5 else ""))
        return "\n".join(lines)


# ─── split ───────────────────────────────────────────────────────────────────────────────────────


def _rank(key: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{key}".encode()).hexdigest()


def split_keys(keys: Iterable[str], train_ratio: float, seed: int) -> dict[str, str]:
    """Assign each key to ``train`` or ``valid``: seeded-hash order, first ``round(n·ratio)`` train.

    With two or more keys both splits get at least one.
    """
    ordered = sorted(set(keys), key=lambda k: (_rank(k, seed), k))
    n = len(ordered)
    if n == 0:
        return {}
    n_train = n if n == 1 else min(max(round(n * train_ratio), 1), n - 1)
    return {k: ("train" if i < n_train else "valid") for i, k in enumerate(ordered)}


# ─── manifests ──────────────────────────────────────────────────────────────────────────────────


def manifest_entry(path: Path) -> dict:
    """One ``data.jsonl`` line for ``path`` (absolute, not resolved: links stay links)."""
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as exc:  # type: ignore[attr-defined]
        raise ManifestError(f"{path}: cannot read audio header ({exc}); delete it and re-run prepare") from exc
    return {"path": os.path.abspath(path), "duration": round(info.frames / info.samplerate, 6),
            "sample_rate": int(info.samplerate), "channels": int(info.channels)}


def build_manifest(paths: Sequence[Path], *, workers: int = 8, progress: bool = True) -> list[dict]:
    """Manifest entries for ``paths`` (headers read in parallel threads), sorted by path."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        it = pool.map(manifest_entry, paths)
        entries = list(tqdm(it, total=len(paths), desc="manifest", unit="file", disable=not progress,
                            leave=False))
    return sorted(entries, key=lambda e: e["path"])


def manifest_text(entries: Iterable[dict]) -> str:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)


def find_manifest(split_dir: Path) -> Path:
    """``split_dir/data.jsonl`` (or ``.gz``), as AudioCraft looks for it."""
    for name in MANIFEST_NAMES:
        if (split_dir / name).is_file():
            return split_dir / name
    if not split_dir.is_dir():
        raise ManifestError(f"split folder {split_dir} does not exist; run "
                            "`python -m training.audiocraft prepare` (Notebook A) to create it")
    raise ManifestError(f"{split_dir} has no data.jsonl; AudioCraft needs one per split folder — run "
                        "`python -m training.audiocraft prepare` (Notebook A) to write it")


def read_manifest(split_dir_or_file: Path, *, check_files: bool = True) -> list[dict]:
    """Read and check a split's manifest: every line JSON with path, duration and sample_rate."""
    p = Path(split_dir_or_file)
    path = p if p.is_file() else find_manifest(p)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    entries = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            e = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{path}:{i}: not JSON ({exc.msg}); re-run prepare to rewrite it") from exc
        missing = [k for k in REQUIRED_KEYS if not isinstance(e, dict) or e.get(k) in (None, "")]
        if missing:
            raise ManifestError(
                f"{path}:{i}: manifest line lacks {', '.join(missing)} — AudioCraft's AudioMeta needs "
                "path, duration and sample_rate on every line; re-run prepare to rewrite it")
        entries.append(e)
    if not entries:
        raise ManifestError(f"{path} is empty: the split has no audio; check prepare's input folder")
    if check_files:
        gone = [e["path"] for e in entries if not os.path.exists(e["path"])]
        if gone:
            raise ManifestError(f"{path}: {len(gone)} listed file(s) do not exist (first: {gone[0]}); "
                                "re-run prepare")
    return entries


# ─── links ──────────────────────────────────────────────────────────────────────────────────────


def _sync_links(split_dir: Path, wanted: dict[Path, Path]) -> tuple[int, int]:
    """Make ``split_dir`` hold exactly the symlinks ``wanted`` (link → absolute target).

    Returns (added or fixed, removed). Only symlinks are ever removed: a regular file where a link
    should go is an error, never overwritten.
    """
    added = removed = 0
    split_dir.mkdir(parents=True, exist_ok=True)
    for root, dirs, files in os.walk(split_dir):
        for name in files + dirs:
            p = Path(root) / name
            if p.is_symlink() and p not in wanted:
                p.unlink()
                removed += 1
    for link, target in wanted.items():
        if link.is_symlink():
            if os.readlink(link) == str(target):
                continue
        elif link.exists():
            raise ManifestError(f"{link} is a regular file where prepare keeps a link; move it out "
                                "of the egs folder (prepare never deletes real files)")
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(link)
        tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, link)
        added += 1
    # Folders emptied by removed links are pruned, deepest first.
    for root, dirs, files in sorted(os.walk(split_dir), key=lambda t: -len(t[0])):
        if Path(root) != split_dir and not os.listdir(root):
            with contextlib.suppress(OSError):
                os.rmdir(root)
    return added, removed


def write_manifest(split_dir: Path, entries: Sequence[dict]) -> bool:
    """Write ``data.jsonl`` atomically if its content would change; returns whether it did."""
    return write_text_if_changed(split_dir / "data.jsonl", manifest_text(entries))


#: Idempotent write (an unchanged file keeps its bytes and its mtime); the old name of
#: :func:`workflow.files.write_text_if_changed`.
atomic_write_if_changed = write_text_if_changed


# ─── prepare ────────────────────────────────────────────────────────────────────────────────────


def segments_of(dst: Path) -> list[Path]:
    """The segment files s1 wrote for the output ``dst`` (``stem_0000.wav`` …), in order."""
    out: list[Path] = []
    while (p := segment_path(dst, len(out))).exists():
        out.append(p)
    return out


def prepare(
    input_dir: Path,
    segments_dir: Path,
    egs_dir: Path,
    cfg: PrepareConfig = PrepareConfig(),
    *,
    workers: int = 1,
    progress: bool = True,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    report_path: Path | None = None,
) -> PrepareResult:
    """Segment ``input_dir`` with s1 into ``segments_dir``, split by track, write ``egs_dir``."""
    input_dir, segments_dir, egs_dir = (Path(os.path.abspath(p)) for p in (input_dir, segments_dir, egs_dir))
    if not input_dir.is_dir():
        raise UsageError(f"input folder {input_dir} does not exist")
    check_output_not_inside_input(input_dir, segments_dir)
    check_output_not_inside_input(input_dir, egs_dir)
    items = build_items(input_dir, segments_dir, extensions, recursive=True)
    if not items:
        raise UsageError(f"no audio files ({' '.join(extensions)}) under {input_dir}")

    options = RunOptions(workers=workers, progress=progress, skip_errors=True, report=report_path)
    report = normalize_items(items, cfg.normalize_config(), options,
                             {"input": str(input_dir), "output": str(segments_dir), "tool": "audiocraft.prepare"})
    failed = [r.key for r in report.failed]

    segments: dict[str, list[Path]] = {}
    for it in items:
        segs = segments_of(it.dst)
        if segs:
            segments[it.key] = segs
    if not segments:
        raise UsageError(f"no segments were produced from {input_dir} (all files failed or were shorter "
                         f"than --min-segment-seconds {cfg.min_segment_seconds}); see {report_path or 'the log'}")

    if len(segments) >= 2:
        unit_split = split_keys(segments, cfg.train_ratio, cfg.seed)
        assign = {seg: unit_split[key] for key, segs in segments.items() for seg in segs}
    else:
        log.warning("only one source track: splitting its segments instead of tracks")
        only = next(iter(segments.values()))
        seg_split = split_keys([str(s) for s in only], cfg.train_ratio, cfg.seed)
        assign = {s: seg_split[str(s)] for s in only}
    track_count = {name: len({key for key, segs in segments.items() if any(assign[s] == name for s in segs)})
                   for name in SPLITS}

    result = PrepareResult(segments_dir, egs_dir, {}, report, failed)
    for name in SPLITS:
        split_dir = egs_dir / name
        wanted = {split_dir / seg.relative_to(segments_dir): seg for seg, sp in assign.items() if sp == name}
        added, removed = _sync_links(split_dir, wanted)
        entries = build_manifest(sorted(wanted), workers=min(16, 4 * workers), progress=progress)
        changed = write_manifest(split_dir, entries)
        result.splits[name] = SplitSummary(
            folder=split_dir, files=len(entries), seconds=float(sum(e["duration"] for e in entries)),
            tracks=track_count[name], manifest_changed=changed, links_added=added, links_removed=removed)
    write_text_if_changed(egs_dir / "prepare.json", json.dumps(
        {"input": str(input_dir), "segments": str(segments_dir), "config": asdict(cfg),
         "splits": {k: {"files": s.files, "seconds": round(s.seconds, 3), "tracks": s.tracks}
                    for k, s in result.splits.items()}}, indent=2) + "\n")
    return result


def split_stats(entries: Sequence[dict]) -> dict:
    """Counts, hours and the distinct rates/channels/durations of a manifest (for sanity checks)."""
    durs = [float(e["duration"]) for e in entries]
    return {"files": len(entries), "hours": sum(durs) / 3600,
            "min_s": min(durs) if durs else math.nan, "max_s": max(durs) if durs else math.nan,
            "sample_rates": sorted({int(e["sample_rate"]) for e in entries}),
            "channels": sorted({int(e.get("channels", 0)) for e in entries})}


def check_egs(egs_dir: Path, *, sample_rate: int = 32000, channels: int = 1,
              segment_seconds: float = 10.0, probe_files: int = 3) -> dict[str, dict]:
    """The notebooks' sanity checks: both splits readable, non-empty, one rate and channel count,
    no segment longer than asked, no track in both splits, and a few files decode to finite,
    non-silent audio. Returns per-split :func:`split_stats`; raises :class:`ManifestError`."""
    import numpy as np

    stats: dict[str, dict] = {}
    tracks: dict[str, set[str]] = {}
    for name in SPLITS:
        entries = read_manifest(Path(egs_dir) / name)
        st = stats[name] = split_stats(entries)
        where = Path(egs_dir) / name / "data.jsonl"
        if st["sample_rates"] != [sample_rate]:
            raise ManifestError(f"{where}: sample rates {st['sample_rates']}, expected [{sample_rate}]; "
                                "re-run prepare with --sample-rate")
        if st["channels"] != [channels]:
            raise ManifestError(f"{where}: channel counts {st['channels']}, expected [{channels}]")
        if st["max_s"] > segment_seconds + 1e-3:
            raise ManifestError(f"{where}: a {st['max_s']:.2f} s file is longer than {segment_seconds} s "
                                "segments; re-run prepare with --segment-seconds")
        tracks[name] = {os.readlink(e["path"]).rsplit("_", 1)[0] if os.path.islink(e["path"]) else e["path"]
                        for e in entries}
        for e in entries[:probe_files]:
            data, _ = sf.read(e["path"], dtype="float32")
            if not np.isfinite(data).all() or float(np.abs(data).max(initial=0.0)) == 0.0:
                raise ManifestError(f"{e['path']}: silent or non-finite audio; check the source track")
    both = tracks["train"] & tracks["valid"]
    if both:
        raise ManifestError(f"{len(both)} track(s) are in both train and valid (e.g. {sorted(both)[0]}); "
                            "re-run prepare")
    return stats
