"""The s3 engine: write the empty ``[T, 0]`` conditioning sidecar of every token file.

``init_items`` runs ``init_sidecar`` over the work items (one per ``.ecdc``, from
``build_items``, which s4 uses too) and returns the run report with the manifest rows;
existing sidecars count as done when their frame count still matches the tokens. Token
files may be `.ecdc` or the seed's legacy ``torch.save`` files.
"""

from __future__ import annotations

import csv
import functools
import io
from pathlib import Path

from workflow import sidecar
from workflow.ecdc_legacy import read_token_header
from workflow.errors import SidecarError, WorkflowError
from workflow.files import atomic_write_text, discover, locked, relative_key
from workflow.runner import OK, SKIPPED, Runner, RunOptions, RunReport, WorkItem

STAGE = "s3_sidecar_init"
MANIFEST_COLUMNS = ("rel_ecdc", "rel_cond", "frames", "D", "fps", "codebooks")


def build_items(audio_root: Path, cond_root: Path | None, suffix: str, token_suffix: str = ".ecdc",
                recursive: bool = True) -> list[WorkItem]:
    """One item per token file: ``src`` the ``.ecdc``, ``dst`` its ``.cond.npy``."""
    exclude = [cond_root] if cond_root is not None and cond_root.resolve() != audio_root.resolve() else []
    return [WorkItem(relative_key(p, audio_root), p, sidecar.sidecar_path_for(p, audio_root, cond_root, suffix))
            for p in discover(audio_root, [token_suffix], recursive=recursive, exclude=exclude)]


def manifest_row(item: WorkItem, cond_base: Path, frames: int, n_features: int, fps: float,
                 codebooks: int) -> dict:
    return {"rel_ecdc": item.key, "rel_cond": item.dst.relative_to(cond_base).as_posix(),
            "frames": int(frames), "D": int(n_features), "fps": float(fps), "codebooks": int(codebooks)}


def existing_state(item: WorkItem) -> tuple[dict, object] | None:
    """(sidecar metadata, token header) if a finished sidecar pair exists, else None."""
    if not (item.dst.exists() and sidecar.json_path_for(item.dst).exists()):
        return None
    return sidecar.read_sidecar_meta(item.dst), read_token_header(item.src)


def init_sidecar(item: WorkItem, *, dtype: str, overwrite: bool, cond_base: Path) -> dict:
    """Write the ``[T, 0]`` skeleton for one token file; refuses to drop s4's features unasked.

    Holds the sidecar's lock (as s4 does), so a concurrent s4 run's columns are never wiped.
    """
    header = read_token_header(item.src)
    with locked(item.dst):
        return _init_locked(item, header, dtype=dtype, overwrite=overwrite, cond_base=cond_base)


def _init_locked(item: WorkItem, header, *, dtype: str, overwrite: bool, cond_base: Path) -> dict:
    frames = header.num_frames
    if not overwrite and sidecar.json_path_for(item.dst).exists():
        try:
            meta = sidecar.read_sidecar_meta(item.dst)
        except SidecarError as exc:
            raise SidecarError(f"{exc} (or re-run wf-sidecar-init with --overwrite to replace it "
                               "with an empty sidecar)") from exc
        feats = meta.get("features", {})
        if feats and int(meta.get("frames", -1)) != frames:
            raise SidecarError(
                f"{item.dst}: sidecar has {meta.get('frames')} frames but {item.src} has {frames} "
                f"(tokens re-encoded?); its features ({', '.join(feats)}) no longer line up. "
                "Re-run wf-sidecar-init with --overwrite to reset it, then wf-sidecar-add again")
        if feats:
            raise SidecarError(f"{item.dst}: the array is missing but the metadata lists features "
                               f"({', '.join(feats)}); re-run wf-sidecar-init with --overwrite to reset "
                               "it to empty, then wf-sidecar-add again")
    sc = sidecar.empty_sidecar(frames, header.fps, item.key, dtype)
    sidecar.write_sidecar(item.dst, sc)
    return manifest_row(item, cond_base, frames, 0, header.fps, header.num_codebooks)


class _DoneCheck:
    """``is_done`` for the runner: a finished pair whose frame count matches its tokens.

    It remembers the manifest row of each done item, so the manifest needs no second pass.
    """

    def __init__(self, cond_base: Path):
        self.cond_base = cond_base
        self.rows: dict[str, dict] = {}

    def __call__(self, item: WorkItem) -> bool:
        try:
            state = existing_state(item)
        except WorkflowError:
            return False  # unreadable: let the item run and report it
        if state is None:
            return False
        meta, header = state
        if int(meta.get("frames", -1)) != header.num_frames:
            return False
        self.rows[item.key] = manifest_row(item, self.cond_base, header.num_frames,
                                           len(meta.get("features", {})), header.fps, header.num_codebooks)
        return True


def manifest_path(path: Path, shard_index: int, shard_count: int) -> Path:
    if shard_count <= 1:
        return path
    return path.with_name(f"{path.stem}-shard{shard_index}of{shard_count}{path.suffix or '.csv'}")


def write_manifest(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in sorted(rows, key=lambda r: r["rel_ecdc"]):
        w.writerow(row)
    atomic_write_text(path, buf.getvalue())


def init_items(items: list[WorkItem], options: RunOptions, params: dict, *, dtype: str,
               overwrite: bool, cond_base: Path) -> tuple[RunReport, list[dict]]:
    """Create the sidecars of ``items``; returns the report and one manifest row per sidecar
    of this shard (written now or already there)."""
    done = _DoneCheck(cond_base)
    report = Runner(STAGE, options, params).map(
        items, functools.partial(init_sidecar, dtype=dtype, overwrite=overwrite, cond_base=cond_base),
        is_done=done)
    rows = [r.info for r in report.results if r.status == OK and r.info]
    rows += [done.rows[r.key] for r in report.results if r.status == SKIPPED and r.key in done.rows]
    return report, rows
