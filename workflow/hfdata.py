"""Build, extend, load and verify the Hugging Face ``DatasetDict`` of token files (s5).

A dataset folder is a ``save_to_disk`` layout plus three files of our own::

    OUT/
      dataset_dict.json  train/  valid/ ...   the splits (Arrow), read by datasets.load_from_disk
      enc_hf_workflow.json                     META_FILE: codec, fps, weights, features, splits
      README.md                                the dataset card, regenerated on every build
      tokens/<rel>.ecdc  tokens/<rel>.cond.npy  tokens/<rel>.cond.json    (--materialize link|copy)
      wav/<rel>.wav                            (--wav-root with link|copy)
      .reports/s5_build_dataset-<time>.json    one run report per build

One row per token file. Path columns (``audio``, ``cond``, ``wav``) are relative to the dataset
folder (with ``--materialize none`` they may start with ``../``); :func:`resolve_path` turns them
into absolute paths. Links are relative, so moving or copying a project folder that holds both
the dataset and its sources keeps every path valid; ``--materialize copy`` makes the folder
self-contained.

Every build is staged in a temporary sibling of ``OUT`` (same parent, so relative paths resolve
the same) and swapped in only when complete: a crash never leaves a half dataset. Splits that are
not being built are carried over unchanged (Arrow files are hard-linked, not rewritten).

Embedded columns (``--embed``): ``codes`` is ``List(List(int16))`` holding ``[K][T]`` and
``cond_values`` is ``List(List(float32))`` holding ``[T][D]`` (null where a file has no sidecar).
``datasets``' numpy formatter turns integers into int64 unless told otherwise, so read them with
:func:`arrow_row_to_numpy` (fastest, right dtypes, ~15 µs for a 10 s row) or with
``ds.with_format("numpy", columns=["codes"], dtype=np.int16)`` (~80 µs). ``Array2D`` was not
used: it allows a variable first dimension only (so ``[T][K]``, not ``[K][T]``), reads about
twice as slowly through the numpy formatter, and gives NaN instead of None for a missing sidecar.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from . import ecdc, sidecar
from .errors import DatasetError, EcdcFormatError, UsageError, WorkflowError
from .files import (
    TMP_MARKER, atomic_write_text, check_output_not_inside_input, discover, mirror_path,
    normalize_extensions, relative_key,
)
from .runner import FAILED, ItemResult, Runner, RunOptions, WorkItem, bounded_map

if TYPE_CHECKING:  # datasets takes ~1 s to import: only functions that need it import it
    import datasets
    import pyarrow as pa

log = logging.getLogger(__name__)

STAGE = "s5_build_dataset"
META_FILE = "enc_hf_workflow.json"
CARD_FILE = "README.md"
REPORTS_DIR = ".reports"
FORMAT_NAME = "enc-hf-workflow token dataset"
FORMAT_VERSION = 1
MATERIALIZE_MODES = ("link", "copy", "none")
DEFAULT_RATIOS = "train=0.9,valid=0.05,test=0.05"

#: Column name → datasets dtype, in the order they are written. ``wav`` only with a wav root,
#: ``codes``/``cond_values`` only with ``embed``.
COLUMN_TYPES: dict[str, str] = {
    "id": "string",
    "audio": "string",
    "cond": "string (nullable)",
    "wav": "string",
    "num_frames": "int32",
    "num_codebooks": "int16",
    "fps": "float32",
    "sample_rate": "int32",
    "duration": "float32",
    "codec": "string",
    "codes": "List(List(int16)) [K][T]",
    "cond_values": "List(List(float32)) [T][D] (nullable)",
}
COLUMN_DOCS: dict[str, str] = {
    "id": "relative path of the token file without its suffix (POSIX); unique per split",
    "audio": "path of the .ecdc token file, relative to the dataset folder",
    "cond": "path of the .cond.npy sidecar ([T, D], row t = token frame t), relative; null if none",
    "wav": "path of the normalised wav the tokens were made from, relative to the dataset folder",
    "num_frames": "token frames T (from the .ecdc header)",
    "num_codebooks": "codebooks K",
    "fps": "token frames per second",
    "sample_rate": "codec sample rate in Hz",
    "duration": "audio duration in seconds",
    "codec": "codec model name from the .ecdc header",
    "codes": "the tokens, int16, K lists of T codes",
    "cond_values": "the sidecar values, float32, T lists of D values (feature order below)",
}

_SPLIT_RE = re.compile(r"^\w+$")
_RESERVED_NAMES = {META_FILE, CARD_FILE, REPORTS_DIR, "dataset_dict.json"}


# ============================================================================ small public helpers


def resolve_path(dataset_dir: Path | str, rel: str | None) -> Path | None:
    """A row's ``audio`` / ``cond`` / ``wav`` value → absolute path (``None`` stays ``None``).

    Paths are joined lexically (``../`` is collapsed without following links), the same way they
    were made, so a ``--materialize none`` dataset resolves wherever its folder is mounted.
    """
    if rel is None:
        return None
    return Path(os.path.normpath(os.path.join(os.path.abspath(dataset_dir), rel)))


def read_dataset_meta(dataset_dir: Path | str) -> dict[str, Any]:
    """The dataset's :data:`META_FILE` (codec, fps, weights, features, splits, …) as a dict."""
    path = Path(dataset_dir) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(
            f"{dataset_dir}: not a dataset built by wf-build-dataset ({META_FILE} is missing); "
            "build it with wf-build-dataset TOKENS_DIR OUT_DIR") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable dataset metadata ({exc}); rebuild the dataset "
                           "with wf-build-dataset --fresh") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("splits"), dict):
        raise DatasetError(f"{path}: dataset metadata is not an enc-hf-workflow metadata object; "
                           "rebuild the dataset with wf-build-dataset --fresh")
    return meta


def load_dataset_dir(dataset_dir: Path | str) -> datasets.DatasetDict:
    """``datasets.load_from_disk`` of a folder built by s5, with a clear error if it is not one."""
    import datasets

    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise DatasetError(f"dataset folder not found: {dataset_dir}")
    read_dataset_meta(dataset_dir)
    try:
        ds = datasets.load_from_disk(str(dataset_dir))
    except Exception as exc:  # noqa: BLE001 - datasets raises many types for broken folders
        raise DatasetError(f"{dataset_dir}: datasets.load_from_disk failed ({type(exc).__name__}: "
                           f"{exc}); rebuild the dataset with wf-build-dataset") from exc
    if not isinstance(ds, datasets.DatasetDict):
        raise DatasetError(f"{dataset_dir}: holds a single Dataset, not a DatasetDict; rebuild it "
                           "with wf-build-dataset")
    return ds


def parse_split_ratios(spec: str | Mapping[str, float]) -> dict[str, float]:
    """``"train=0.9,valid=0.05,test=0.05"`` → ``{"train": 0.9, …}``, normalised to sum to 1."""
    if isinstance(spec, Mapping):
        pairs = [(str(k), v) for k, v in spec.items()]
    else:
        pairs = []
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = (x.strip() for x in part.partition("="))
            if not sep:
                raise UsageError(f"--split-ratios: {part!r} is not NAME=RATIO (e.g. {DEFAULT_RATIOS})")
            pairs.append((name, value))
    out: dict[str, float] = {}
    for name, value in pairs:
        check_split_name(name)
        if name in out:
            raise UsageError(f"--split-ratios names split {name!r} twice")
        try:
            r = float(value)
        except (TypeError, ValueError):
            raise UsageError(f"--split-ratios: ratio of {name!r} is not a number: {value!r}") from None
        if not math.isfinite(r) or r < 0:
            raise UsageError(f"--split-ratios: ratio of {name!r} must be >= 0, got {value!r}")
        out[name] = r
    total = sum(out.values())
    if not out or total <= 0:
        raise UsageError(f"--split-ratios needs at least one positive ratio (e.g. {DEFAULT_RATIOS})")
    return {k: v / total for k, v in out.items()}


def check_split_name(name: str) -> str:
    if not _SPLIT_RE.match(name or ""):
        raise UsageError(f"split name {name!r} must be letters, digits or '_' (e.g. train, valid)")
    return name


def assign_split(item_id: str, ratios: Mapping[str, float], seed: int = 0) -> str:
    """The split of ``item_id``: a stable hash of (seed, id) placed on the cumulative ratios.

    Depends only on the id, the seed and the ratios, so adding files never moves existing ones.
    """
    digest = hashlib.sha256(f"{seed}\x00{item_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    acc = 0.0
    names = list(ratios)
    for name in names:
        acc += ratios[name]
        if u < acc:
            return name
    return next((n for n in reversed(names) if ratios[n] > 0), names[-1])


def read_token_header(path: Path | str) -> ecdc.EcdcHeader:
    """Header of a token file, checked against the file size (a truncated file fails here).

    `.ecdc` files are read header-only; the seed's legacy torch files are loaded whole.
    """
    name = str(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(ecdc.MAGIC))
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise EcdcFormatError(f"{name}: cannot read file ({exc.strerror or exc}); check the path") from exc
    if head != ecdc.MAGIC:
        return ecdc.load_tokens(path).header
    header = ecdc.read_ecdc_header(path)
    expected = header.data_offset + header.payload_bytes
    if size != expected:
        raise EcdcFormatError(
            f"{name}: file is {size} bytes but its header implies {expected} "
            f"({'truncated' if size < expected else 'trailing data'}); {ecdc.REENCODE_HINT}")
    return header


def arrow_row_to_numpy(table: pa.Table, row: int = 0) -> dict[str, Any]:
    """Row ``row`` of an Arrow table as Python scalars and numpy arrays in their stored dtypes.

    ``codes`` → int16 ``[K, T]``, ``cond_values`` → float32 ``[T, D]`` (or ``None``), both
    zero-copy views where Arrow allows. Use with ``ds.with_format("arrow")[i]`` (or a slice)::

        arrow = ds["train"].with_format("arrow")
        row = arrow_row_to_numpy(arrow[i])
    """
    out: dict[str, Any] = {}
    for name in table.column_names:
        col = table.column(name)
        if name in ("codes", "cond_values"):
            arr = col.slice(row, 1).combine_chunks()
            if arr.null_count:
                out[name] = None
                continue
            inner = arr.flatten()
            values = inner.flatten().to_numpy(zero_copy_only=False)
            out[name] = values.reshape(len(inner), -1) if len(inner) else values.reshape(0, 0)
        else:
            out[name] = col[row].as_py()
    return out


# ============================================================================ configuration


@dataclass
class BuildConfig:
    """Everything one s5 build needs (the CLI flags, one to one)."""

    tokens_dir: Path
    out_dir: Path
    split: str = "train"
    split_ratios: dict[str, float] | None = None
    seed: int = 0
    suffix: str = ".ecdc"
    recursive: bool = True
    tokens_subdir: str = "tokens"
    materialize: str = "link"
    cond_root: Path | None = None
    cond_suffix: str = sidecar.NPY_SUFFIX
    wav_root: Path | None = None
    wav_subdir: str = "wav"
    embed: bool = False
    max_files: int | None = None
    verify: bool = False
    fresh: bool = False
    workers: int = 4
    progress: bool = False
    report: Path | None = None

    def __post_init__(self) -> None:
        self.tokens_dir = Path(self.tokens_dir)
        self.out_dir = Path(self.out_dir)
        self.cond_root = Path(self.cond_root) if self.cond_root is not None else None
        self.wav_root = Path(self.wav_root) if self.wav_root is not None else None
        if self.split_ratios is not None:
            self.split_ratios = parse_split_ratios(self.split_ratios)

    @property
    def target_splits(self) -> list[str]:
        return list(self.split_ratios) if self.split_ratios else [self.split]

    def validate(self) -> None:
        if not self.tokens_dir.is_dir():
            raise UsageError(f"tokens folder not found: {self.tokens_dir}")
        for flag, root in (("--cond-root", self.cond_root), ("--wav-root", self.wav_root)):
            if root is not None and not root.is_dir():
                raise UsageError(f"{flag} folder not found: {root}")
        if self.out_dir.is_symlink() and self.out_dir.is_dir():
            self.out_dir = self.out_dir.resolve()  # build beside the real folder, swap that one
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise UsageError(f"OUT_DIR {self.out_dir} exists and is not a folder")
        if self.materialize not in MATERIALIZE_MODES:
            raise UsageError(f"--materialize must be one of {', '.join(MATERIALIZE_MODES)}, "
                             f"got {self.materialize!r}")
        for name in self.target_splits:
            check_split_name(name)
        (self.suffix,) = normalize_extensions([self.suffix])
        if not self.cond_suffix.endswith(".npy"):
            raise UsageError(f"--cond-suffix must end in .npy, got {self.cond_suffix!r}")
        for flag, sub in (("--tokens-subdir", self.tokens_subdir), ("--wav-subdir", self.wav_subdir)):
            parts = Path(sub).parts
            if (not sub or Path(sub).is_absolute() or ".." in parts or parts[0] in _RESERVED_NAMES
                    or parts[0].startswith(".")):
                raise UsageError(f"{flag} must be a plain relative folder name, got {sub!r}")
            if parts[0] in self.target_splits:
                raise UsageError(f"{flag} {sub!r} clashes with the split of the same name")
        if self.wav_root is not None and Path(self.wav_subdir).parts[0] == Path(self.tokens_subdir).parts[0]:
            raise UsageError("--wav-subdir and --tokens-subdir must differ")
        if self.max_files is not None and self.max_files < 1:
            raise UsageError(f"--max-files must be >= 1, got {self.max_files}")
        if self.workers < 1:
            raise UsageError(f"--workers must be >= 1, got {self.workers}")
        check_output_not_inside_input(self.tokens_dir, self.out_dir)
        out = self.out_dir.resolve()
        for flag, root in (("TOKENS_DIR", self.tokens_dir), ("--cond-root", self.cond_root),
                           ("--wav-root", self.wav_root)):
            if root is not None and (root.resolve() == out or out in root.resolve().parents):
                raise UsageError(f"{flag} {root} is inside OUT_DIR {self.out_dir}: rebuilding would "
                                 "replace it; keep sources outside the dataset folder")

    def source_json(self) -> dict[str, Any]:
        """What this split was built from (recorded per split in META_FILE)."""
        return {
            "tokens_dir": _abs(self.tokens_dir), "suffix": self.suffix, "recursive": self.recursive,
            "cond_root": _abs(self.cond_root) if self.cond_root else None,
            "cond_suffix": self.cond_suffix,
            "wav_root": _abs(self.wav_root) if self.wav_root else None,
            "materialize": self.materialize, "tokens_subdir": self.tokens_subdir,
            "wav_subdir": self.wav_subdir if self.wav_root else None, "embed": self.embed,
            "split_ratios": self.split_ratios, "seed": self.seed if self.split_ratios else None,
            "max_files": self.max_files,
        }


@dataclass
class BuildResult:
    """What :func:`build` did. ``problems`` are the files left out, with the reason."""

    dataset: datasets.DatasetDict
    out_dir: Path
    built: dict[str, int]
    kept: list[str]
    problems: list[tuple[str, str]]
    meta: dict[str, Any]
    report_path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    report: Any = None  # the runner's RunReport of the scan (failures included)


class VerifyError(DatasetError):
    """``--verify`` found problems; the dataset was not written (an older one is untouched)."""

    def __init__(self, dataset_dir: Path | str, problems: Sequence[str]):
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:20])
        more = f"\n  … and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{dataset_dir}: verification found {len(self.problems)} problem(s); "
                         f"the dataset was not written:\n  {shown}{more}")


# ============================================================================ scanning


@dataclass
class _Scanned:
    """One usable token file (the light part; codes are read later, only with --embed)."""

    key: str
    id: str
    src: Path
    codec: str
    fps: float
    sample_rate: int
    num_codebooks: int
    num_frames: int
    duration: float
    weights: str
    cond_src: Path | None
    features: dict[str, sidecar.FeatureInfo]
    wav_src: Path | None

    @property
    def signature(self) -> tuple[str, float, int, int]:
        return (self.codec, round(self.fps, 6), self.sample_rate, self.num_codebooks)


def _abs(p: Path | str) -> str:
    return os.path.abspath(p)


def _strip_suffix(key: str, suffix: str) -> str:
    return key[: -len(suffix)] if key.lower().endswith(suffix.lower()) else key


def _scan_one(item: WorkItem, cfg: BuildConfig) -> _Scanned:
    """Read one token file's header and check its sidecar and wav; raises on any problem."""
    header = read_token_header(item.src)
    frames = header.num_frames
    cond_src = sidecar.sidecar_path_for(item.src, cfg.tokens_dir, cfg.cond_root, cfg.cond_suffix)
    features: dict[str, sidecar.FeatureInfo] = {}
    if cond_src.exists() or sidecar.json_path_for(cond_src).exists():
        sc = sidecar.read_sidecar(cond_src, mmap=True)  # checks the pair; reads the .npy header only
        if sc.frames != frames:
            raise sidecar.SidecarError(
                f"{cond_src}: sidecar has {sc.frames} frames but {item.src} has {frames} token "
                "frames; re-run wf-sidecar-init --overwrite and wf-sidecar-add for this file")
        if sc.fps and abs(sc.fps - header.fps) > 1e-3:
            raise sidecar.SidecarError(f"{cond_src}: sidecar fps {sc.fps} differs from the tokens' "
                                       f"{header.fps}; re-run wf-sidecar-init --overwrite")
        features = sc.features
    else:
        cond_src = None
    wav_src = None
    if cfg.wav_root is not None:
        wav_src = mirror_path(item.src, cfg.tokens_dir, cfg.wav_root, ".wav")
        if not wav_src.is_file():
            raise DatasetError(f"{item.src}: its wav {wav_src} is missing (--wav-root {cfg.wav_root}); "
                               "re-run s1 for it or drop --wav-root")
    return _Scanned(
        key=item.key, id=_strip_suffix(item.key, cfg.suffix), src=item.src, codec=header.model,
        fps=float(header.fps), sample_rate=int(header.sample_rate),
        num_codebooks=int(header.num_codebooks), num_frames=int(frames),
        duration=float(header.duration), weights=header.weights or "unknown",
        cond_src=cond_src, features=features, wav_src=wav_src)


def _scan(cfg: BuildConfig, items: list[WorkItem]) -> tuple[list[_Scanned], Any]:
    """Scan every item with the shared runner (threads, progress bar, per-file errors)."""
    scanned: dict[str, _Scanned] = {}

    def fn(item: WorkItem) -> dict:
        s = _scan_one(item, cfg)
        scanned[item.key] = s
        return {"frames": s.num_frames, "cond": s.cond_src is not None}

    options = RunOptions(workers=cfg.workers, overwrite=True, progress=cfg.progress)
    runner = Runner(STAGE, options, {k: (str(v) if isinstance(v, Path) else v)
                                     for k, v in dataclasses.asdict(cfg).items()})
    report = runner.map(items, fn, executor="thread")
    ok = [scanned[it.key] for it in items if it.key in scanned]
    return ok, report


def _fail_result(report: Any, key: str, error: str) -> None:
    """Turn an item of the run report into a failure (consistency checks, embedding)."""
    for i, r in enumerate(report.results):
        if r.key == key:
            report.results[i] = ItemResult(key, FAILED, r.seconds, r.info, error)
            return
    report.results.append(ItemResult(key, FAILED, error=error))


def _describe_signature(sig: Sequence[Any]) -> str:
    codec, fps, sr, k = sig
    return f"{codec}, {fps:g} fps, {sr} Hz, {k} codebooks"


# ============================================================================ staging + swap


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _siblings(out: Path, kind: str) -> list[Path]:
    prefix = f".{out.name}{TMP_MARKER}{kind}-"
    if not out.parent.is_dir():
        return []
    return sorted(p for p in out.parent.iterdir() if p.name.startswith(prefix))


def _stale(path: Path) -> bool:
    """A staging/backup folder whose build process is gone (its pid is in the name)."""
    m = re.search(r"-(\d+)-[^-]*$", path.name)
    pid = int(m.group(1)) if m else 0
    return pid <= 0 or (pid != os.getpid() and not _pid_alive(pid))


def _recover(out: Path) -> None:
    """Undo what a crash during an earlier build left behind (see :func:`_swap_in`)."""
    olds = [p for p in _siblings(out, "old") if _stale(p)]
    if olds and not out.exists():
        newest = max(olds, key=lambda p: p.stat().st_mtime)
        log.warning("restoring %s from %s (an earlier build was interrupted while swapping)",
                    out, newest.name)
        os.rename(newest, out)
        olds.remove(newest)
    for p in olds + [p for p in _siblings(out, "build") if _stale(p)]:
        log.warning("removing leftover %s from an interrupted build", p)
        shutil.rmtree(p, ignore_errors=True)


def _file_mode(base: int = 0o666) -> int:
    """``base`` filtered by the process umask (temp files and folders are created private)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return base & ~mask


def _swap_in(staged: Path, out: Path) -> None:
    """Replace ``out`` by ``staged``: two renames; a crash in between is undone by :func:`_recover`."""
    if not out.exists():
        os.rename(staged, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}{TMP_MARKER}old-{os.getpid()}-", dir=out.parent))
    os.rmdir(old)
    os.rename(out, old)
    try:
        os.rename(staged, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link a finished file into the staging folder (files are never modified in place)."""
    if os.path.islink(src):
        os.symlink(os.readlink(src), dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _carry(src: Path, dst: Path) -> bool:
    """Copy one file or link of a kept split into the staging folder; False if it is missing."""
    if not (src.is_symlink() or src.exists()):
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        return True
    _link_or_copy(str(src), str(dst))
    return True


def _place(src: Path, final: Path, staged: Path, mode: str) -> None:
    """Materialise ``src`` at ``staged``; a link is relative to where it will finally live."""
    staged.parent.mkdir(parents=True, exist_ok=True)
    if staged.is_symlink() or staged.exists():
        staged.unlink()
    if mode == "link":
        os.symlink(os.path.relpath(_abs(src), _abs(final.parent)), staged)
    else:
        shutil.copy2(src, staged)


@contextlib.contextmanager
def _quiet_datasets(progress: bool) -> Iterator[None]:
    """Silence datasets' own progress bars unless the caller wants bars."""
    import datasets

    was_enabled = not datasets.are_progress_bars_disabled()
    if not progress and was_enabled:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not progress and was_enabled:
            datasets.enable_progress_bars()


# ============================================================================ writing Arrow


def dataset_features(*, wav: bool, embed: bool) -> datasets.Features:
    """The ``datasets.Features`` of a split (see :data:`COLUMN_TYPES`)."""
    from datasets import Features, List, Value

    cols: dict[str, Any] = {"id": Value("string"), "audio": Value("string"), "cond": Value("string")}
    if wav:
        cols["wav"] = Value("string")
    cols.update(num_frames=Value("int32"), num_codebooks=Value("int16"), fps=Value("float32"),
                sample_rate=Value("int32"), duration=Value("float32"), codec=Value("string"))
    if embed:
        cols["codes"] = List(List(Value("int16")))
        cols["cond_values"] = List(List(Value("float32")))
    return Features(cols)


def _offsets(lengths: Sequence[int]) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    if out[-1] > np.iinfo(np.int32).max:
        raise DatasetError("a batch of embedded values exceeds Arrow's 2**31 list limit")
    return out.astype(np.int32)


def _nested_list_array(mats: Sequence[np.ndarray | None], dtype: np.dtype) -> pa.Array:
    """``list<list<dtype>>`` where row i is the 2-D ``mats[i]`` (``[outer][inner]``) or null."""
    import pyarrow as pa

    present = [m for m in mats if m is not None]
    outer = [0 if m is None else int(m.shape[0]) for m in mats]
    inner = [int(m.shape[1]) for m in present for _ in range(m.shape[0])]
    values = (np.concatenate([np.ascontiguousarray(m, dtype=dtype).reshape(-1) for m in present])
              if present else np.zeros(0, dtype))
    inner_arr = pa.ListArray.from_arrays(pa.array(_offsets(inner)), pa.array(values))
    mask = pa.array([m is None for m in mats]) if len(present) < len(mats) else None
    return pa.ListArray.from_arrays(pa.array(_offsets(outer)), inner_arr, mask=mask)


@dataclass
class _Row:
    scanned: _Scanned
    audio: str
    cond: str | None
    wav: str | None
    codes: np.ndarray | None = None
    cond_values: np.ndarray | None = None


def _record_batch(rows: Sequence[_Row], schema: pa.Schema, *, wav: bool, embed: bool) -> pa.RecordBatch:
    import pyarrow as pa

    s = [r.scanned for r in rows]
    cols: dict[str, pa.Array] = {
        "id": pa.array([x.id for x in s], pa.string()),
        "audio": pa.array([r.audio for r in rows], pa.string()),
        "cond": pa.array([r.cond for r in rows], pa.string()),
    }
    if wav:
        cols["wav"] = pa.array([r.wav for r in rows], pa.string())
    cols["num_frames"] = pa.array(np.array([x.num_frames for x in s], np.int32))
    cols["num_codebooks"] = pa.array(np.array([x.num_codebooks for x in s], np.int16))
    cols["fps"] = pa.array(np.array([x.fps for x in s], np.float32))
    cols["sample_rate"] = pa.array(np.array([x.sample_rate for x in s], np.int32))
    cols["duration"] = pa.array(np.array([x.duration for x in s], np.float32))
    cols["codec"] = pa.array([x.codec for x in s], pa.string())
    if embed:
        cols["codes"] = _nested_list_array([r.codes for r in rows], np.dtype(np.int16))
        cols["cond_values"] = _nested_list_array([r.cond_values for r in rows], np.dtype(np.float32))
    return pa.RecordBatch.from_arrays([cols[f.name] for f in schema], schema=schema)


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


# ============================================================================ metadata + card


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
        "skipped": [{"key": k, "error": e} for k, e in problems],
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


def render_card(meta: dict[str, Any], name: str) -> str:
    """The dataset card (``README.md``): summary, provenance warning, columns, features, loading."""
    splits = meta["splits"]
    total_rows = sum(s["rows"] for s in splits.values())
    total_hours = sum(s["hours"] for s in splits.values())
    lines = [
        "---",
        f"pretty_name: {json.dumps(name)}",
        "tags:", "- audio", "- neural-codec-tokens", f"- {meta['codec']}",
        "---", "",
        f"# {name}", "",
        f"Neural-codec token dataset built by `wf-build-dataset` (enc-hf-workflow): "
        f"{total_rows} files, {total_hours:.3f} hours of audio as `{meta['codec']}` tokens "
        f"({meta['num_codebooks']} codebooks at {meta['fps']:g} frames/s, {meta['sample_rate']} Hz audio).",
        "",
    ]
    weights = meta["weights"]
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
    lines += [
        "## Summary", "",
        "| split | rows | hours | token frames | rows with sidecar | skipped files | built |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for sname, s in splits.items():
        lines.append(f"| {sname} | {s['rows']} | {s['hours']:.4f} | {s['frames']} | "
                     f"{s.get('rows_with_cond', 0)} | {len(s.get('skipped', []))} | {s.get('built', '')} |")
    lines += [
        "", "| property | value |", "|---|---|",
        f"| codec | `{meta['codec']}` |",
        f"| weights (provenance) | `{weights}` |",
        f"| frames per second | {meta['fps']:g} |",
        f"| sample rate | {meta['sample_rate']} Hz |",
        f"| codebooks | {meta['num_codebooks']} |",
        f"| embedded codes / cond values | {'yes' if meta['embedded'] else 'no'} |",
        f"| wav column | {'yes' if meta['has_wav'] else 'no'} |",
        "", "## Columns", "", "| column | type | meaning |", "|---|---|---|",
    ]
    for col, typ in meta["columns"].items():
        lines.append(f"| `{col}` | {typ} | {COLUMN_DOCS.get(col, '')} |")
    lines += ["", "## Conditioning features", ""]
    if meta["features"]:
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
            lines += [f"> - {s}: {', '.join(sm['feature_order']) or '(none)'}" for s, sm in splits.items()]
    else:
        lines.append("No conditioning sidecars (`.cond.npy`) were found; `cond` is null in every row.")
    example_split = next(iter(splits), "train")
    lines += [
        "", "## How to load", "",
        "```python",
        "import datasets",
        "from workflow import hfdata, ecdc",
        "",
        f'ds = datasets.load_from_disk("{name}")      # or hfdata.load_dataset_dir(...)',
        f'row = ds["{example_split}"][0]',
        f'tokens = ecdc.read_ecdc(hfdata.resolve_path("{name}", row["audio"])).codes  # int16 [K, T]',
        'meta = hfdata.read_dataset_meta("' + name + '")  # features, units, ranges, splits',
    ]
    if meta["embedded"]:
        lines += [
            "",
            "# embedded columns, no small-file reads (int16 codes need the dtype, see below):",
            f'arrow = ds["{example_split}"].with_format("arrow")',
            "r = hfdata.arrow_row_to_numpy(arrow[0])       # codes int16 [K, T], cond_values float32 [T, D]",
            f'fmt = ds["{example_split}"].with_format("numpy", columns=["codes"], dtype="int16")',
            'codes = fmt[0]["codes"]                        # int16 [K, T] (int64 without the dtype)',
        ]
    lines += [
        "```", "",
        "Path columns are relative to this folder; `hfdata.resolve_path` makes them absolute. "
        "`datasets`' numpy format returns integers as int64 unless a dtype is given.", "",
        "## Provenance", "",
    ]
    for sname, s in splits.items():
        src = s.get("source", {})
        lines.append(f"- **{sname}**: from `{src.get('tokens_dir')}` (materialize `{src.get('materialize')}`"
                     + (f", sidecars from `{src['cond_root']}`" if src.get("cond_root") else "")
                     + (f", wavs from `{src['wav_root']}`" if src.get("wav_root") else "")
                     + (f", split ratios {src['split_ratios']} seed {src['seed']}"
                        if src.get("split_ratios") else "")
                     + f"), built {s.get('built', '')}.")
        for p in s.get("skipped", [])[:10]:
            lines.append(f"  - skipped `{p['key']}`: {_fmt(p['error'])}")
        if len(s.get("skipped", [])) > 10:
            lines.append(f"  - … and {len(s['skipped']) - 10} more (see {META_FILE})")
    lines += ["", f"Full metadata: `{META_FILE}`.", ""]
    return "\n".join(lines)


# ============================================================================ verification


def _verify_row(dataset_dir: Path, split: str, row: dict[str, Any], shapes: tuple | None) -> list[str]:
    where = f"{split}/{row['id']}"
    out: list[str] = []

    def missing(col: str) -> Path | None:
        p = resolve_path(dataset_dir, row.get(col))
        if p is None:
            return None
        if not p.exists():
            how = "broken link" if p.is_symlink() else "missing"
            out.append(f"{where}: {col} file {how}: {row[col]} ({p})")
            return None
        return p

    frames = int(row["num_frames"])
    audio = missing("audio")
    if audio is not None:
        try:
            h = read_token_header(audio)
            if h.num_frames != frames:
                out.append(f"{where}: frame mismatch: {row['audio']} has {h.num_frames} frames, "
                           f"the row says {frames}; rebuild this split")
            if h.num_codebooks != int(row["num_codebooks"]):
                out.append(f"{where}: {row['audio']} has {h.num_codebooks} codebooks, the row says "
                           f"{row['num_codebooks']}; rebuild this split")
        except WorkflowError as exc:
            out.append(f"{where}: {exc}")
    cond = missing("cond")
    if cond is not None:
        try:
            sc = sidecar.read_sidecar(cond, mmap=True)
            if sc.frames != frames:
                out.append(f"{where}: sidecar frame mismatch: {row['cond']} has {sc.frames} frames, "
                           f"tokens have {frames}; re-run wf-sidecar-init --overwrite and rebuild")
        except WorkflowError as exc:
            out.append(f"{where}: {exc}")
    if "wav" in row:
        missing("wav")
    if shapes is not None:
        k, t_codes, t_cond = shapes
        if k != int(row["num_codebooks"]) or any(t != frames for t in t_codes):
            out.append(f"{where}: embedded codes are not [{row['num_codebooks']}][{frames}]; "
                       "rebuild this split")
        if t_cond is not None and t_cond != frames:
            out.append(f"{where}: embedded cond_values have {t_cond} rows, tokens have {frames}")
        if (t_cond is None) != (row.get("cond") is None):
            out.append(f"{where}: embedded cond_values and the cond column disagree on whether "
                       "there is a sidecar; rebuild this split")
    return out


def _embedded_shapes(table: pa.Table) -> list[tuple | None]:
    """Per row: (K, [T of each codebook], T of cond_values or None), from list offsets only
    (chunk by chunk, so a large embedded split is never copied into memory)."""
    import pyarrow.compute as pc

    if "codes" not in table.column_names:
        return [None] * table.num_rows
    per_row: list[tuple[int, list[int]]] = []
    for chunk in table.column("codes").chunks:
        k = pc.list_value_length(chunk).fill_null(0).to_numpy(zero_copy_only=False)
        t = pc.list_value_length(chunk.flatten()).fill_null(0).to_numpy(zero_copy_only=False)
        bounds = np.concatenate([[0], np.cumsum(k)])
        per_row += [(int(k[i]), t[bounds[i]:bounds[i + 1]].tolist()) for i in range(len(chunk))]
    t_cond: list[int | None] = []
    for chunk in table.column("cond_values").chunks:
        t_cond += pc.list_value_length(chunk).to_pylist()
    return [(k, ts, tc) for (k, ts), tc in zip(per_row, t_cond)]


def verify_dataset(dataset_dir: Path | str, splits: Sequence[str] | None = None, *,
                   workers: int = 4, progress: bool = False) -> list[str]:
    """Every problem that would break training, one line each (empty list: all good).

    Checks that every referenced file exists (links resolve), that each `.ecdc` header agrees
    with its row (frames, codebooks), that each sidecar has one row per token frame, and that
    embedded columns have the row's shape.
    """
    dataset_dir = Path(dataset_dir)
    try:
        meta = read_dataset_meta(dataset_dir)
        dd = load_dataset_dir(dataset_dir)
    except DatasetError as exc:
        return [str(exc)]
    problems: list[str] = []
    for name in sorted(set(meta["splits"]) ^ set(dd)):
        problems.append(f"split {name!r} is in {'the metadata' if name in meta['splits'] else 'the data'} "
                        f"only; rebuild it")
    for split in splits or list(dd):
        if split not in dd:
            problems.append(f"split {split!r} not found (has: {', '.join(dd)})")
            continue
        ds = dd[split]
        path_cols = [c for c in ("id", "audio", "cond", "wav", "num_frames", "num_codebooks")
                     if c in ds.column_names]
        table = ds.with_format("arrow")[:]
        plain = table.select(path_cols).to_pylist()
        shapes = _embedded_shapes(table)
        with cf.ThreadPoolExecutor(max(1, workers)) as pool:
            results = pool.map(lambda a: _verify_row(dataset_dir, split, *a), zip(plain, shapes))
            for res in tqdm(results, total=len(plain), desc=f"verify {split}", unit="file",
                            disable=not progress, file=sys.stderr, mininterval=0.5):
                problems.extend(res)
    return problems


# ============================================================================ build


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


def _select_usable(scanned: Sequence[_Scanned], old_meta: dict[str, Any] | None, kept: Sequence[str]
                   ) -> tuple[list[_Scanned], dict[str, str], tuple, list[str]]:
    """One codec layout and one feature list per dataset: files that differ are problems.

    The reference is the kept splits' layout (else the most common one among the files) and the
    most common sidecar feature list. Returns (usable, problems, layout, feature order).
    """
    if kept and old_meta is not None:
        ref_sig = (old_meta["codec"], round(float(old_meta["fps"]), 6), int(old_meta["sample_rate"]),
                   int(old_meta["num_codebooks"]))
        ref_from = f"the existing split(s) {', '.join(kept)}"
    else:
        ref_sig = Counter(s.signature for s in scanned).most_common(1)[0][0]
        ref_from = "most files"
    orders = Counter(tuple(s.features) for s in scanned if s.cond_src is not None and s.signature == ref_sig)
    ref_order = list(orders.most_common(1)[0][0]) if orders else []
    usable: list[_Scanned] = []
    problems: dict[str, str] = {}
    for s in scanned:
        if s.signature != ref_sig:
            problems[s.key] = (f"{s.src}: tokens are {_describe_signature(s.signature)} but the dataset "
                               f"is {_describe_signature(ref_sig)} (from {ref_from}); re-encode it, or "
                               "build it into another OUT_DIR" + (" or use --fresh" if kept else ""))
        elif s.cond_src is not None and list(s.features) != ref_order:
            problems[s.key] = (f"{s.cond_src}: sidecar features [{', '.join(s.features)}] differ from "
                               f"the rest of the dataset's [{', '.join(ref_order)}]; run wf-sidecar-add "
                               "on it so every file has the same features")
        else:
            usable.append(s)
    for key, err in problems.items():
        log.warning("%s left out: %s", key, err)
    return usable, problems, ref_sig, ref_order


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
        if sm.get("source", {}).get("tokens_dir") == _abs(cfg.tokens_dir):
            overlap = len(new_ids & _split_ids(cfg.out_dir, k))
            if overlap:
                out.append(f"{overlap} file(s) of the new split(s) are also in split {k!r} (same tokens "
                           "folder): the splits overlap")
    for msg in out:
        log.warning(msg)
    return out


def build(cfg: BuildConfig) -> BuildResult:
    """Build ``cfg.target_splits`` into ``cfg.out_dir``, keeping any other splits already there.

    Files with problems (unreadable tokens, sidecar frame mismatch, another codec, …) are left
    out and returned in ``result.problems`` (also in the run report, META_FILE and card).
    Raises :class:`VerifyError` (and writes nothing) if ``cfg.verify`` finds problems.
    """
    cfg.validate()
    out = cfg.out_dir
    _recover(out)
    old_meta, old_splits = _existing(out, cfg.fresh)
    kept = [s for s in old_splits if s not in cfg.target_splits]
    if kept and old_meta is not None:
        _check_kept_columns(cfg, old_meta, kept)
    now = _dt.datetime.now().isoformat(timespec="seconds")

    # -- scan -------------------------------------------------------------------------------------
    files = discover(cfg.tokens_dir, [cfg.suffix], recursive=cfg.recursive)
    if cfg.max_files is not None:
        files = files[: cfg.max_files]
    if not files:
        raise UsageError(f"no *{cfg.suffix} files under {cfg.tokens_dir}"
                         + ("" if cfg.recursive else " (--no-recursive)"))
    keys = [relative_key(p, cfg.tokens_dir) for p in files]
    items = [WorkItem(k, p, out / cfg.tokens_subdir / k) for k, p in zip(keys, files)]
    scanned, report = _scan(cfg, items)
    problems: dict[str, str] = {r.key: r.error or "" for r in report.failed}
    usable, odd, ref_sig, ref_order = _select_usable(scanned, old_meta, kept)
    problems.update(odd)
    for key, err in odd.items():
        _fail_result(report, key, err)
    if not usable:
        first = "\n  ".join(f"{k}: {e}" for k, e in list(problems.items())[:10])
        raise DatasetError(f"none of the {len(items)} token files under {cfg.tokens_dir} could be "
                           f"used; nothing was written:\n  {first}")
    warnings = _kept_split_warnings(cfg, old_meta, kept, usable, ref_order) if old_meta else []
    by_split: dict[str, list[_Scanned]] = {name: [] for name in cfg.target_splits}
    for s in usable:
        by_split[assign_split(s.id, cfg.split_ratios, cfg.seed) if cfg.split_ratios else cfg.split].append(s)

    # -- stage, write, verify, swap ---------------------------------------------------------------
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}{TMP_MARKER}build-{os.getpid()}-", dir=out.parent))
    os.chmod(staged, _file_mode(0o777))  # mkdtemp makes it private; a dataset folder is not
    try:
        owners: dict[str, str] = {}
        for k in kept:
            for msg in _carry_split(out, staged, k, owners):
                log.warning(msg)
                warnings.append(msg)
        if (out / REPORTS_DIR).is_dir():
            shutil.copytree(out / REPORTS_DIR, staged / REPORTS_DIR, copy_function=_link_or_copy)

        split_metas = {k: old_meta["splits"][k] for k in kept} if old_meta else {}
        built: dict[str, int] = {}
        with _quiet_datasets(cfg.progress):
            for name in cfg.target_splits:
                rows, late = _write_split(cfg, staged, name, by_split[name], owners, old_meta)
                for key, err in late:
                    problems[key] = err
                    _fail_result(report, key, err)
                split_metas[name] = _split_meta(cfg, rows, _problems_for_split(cfg, problems, name),
                                                ref_order, now)
                built[name] = len(rows)
        order = [s for s in old_splits if s in split_metas]
        order += [s for s in cfg.target_splits if s not in order]
        meta = _dataset_meta(old_meta, {s: split_metas[s] for s in order}, ref_sig, now, ref_order)
        _finish_staged(staged, meta, out.name)

        report.params["problems"] = len(problems)
        report.finished = _dt.datetime.now().isoformat(timespec="seconds")
        report_rel = Path(REPORTS_DIR) / f"{STAGE}-{_dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.json"
        report.write(staged / report_rel)
        if cfg.report is not None:
            report.write(cfg.report)

        if cfg.verify:
            found = verify_dataset(staged, workers=cfg.workers, progress=cfg.progress)
            if found:
                raise VerifyError(out, found)
        _swap_in(staged, out)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return BuildResult(dataset=load_dataset_dir(out), out_dir=out, built=built, kept=kept,
                       problems=sorted(problems.items()), meta=meta,
                       report_path=cfg.report or out / report_rel, warnings=warnings, report=report)


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


def _write_split(cfg: BuildConfig, staged: Path, split: str, members: list[_Scanned],
                 owners: dict[str, str], old_meta: dict[str, Any] | None
                 ) -> tuple[list[_Row], list[tuple[str, str]]]:
    """Materialise the files of one split, read embedded values, write its Arrow folder."""
    import datasets
    import pyarrow as pa

    out = cfg.out_dir
    wav = cfg.wav_root is not None
    features = dataset_features(wav=wav, embed=cfg.embed)
    schema = features.arrow_schema
    stage_file = staged / f".{split}{TMP_MARKER}rows.arrow"
    problems: list[tuple[str, str]] = []
    rows: list[_Row] = []
    mine = (_abs(cfg.tokens_dir), _abs(cfg.cond_root) if cfg.cond_root else None,
            _abs(cfg.wav_root) if cfg.wav_root else None)

    def claim(rel: str) -> None:
        owner = owners.get(rel)
        if owner is None or old_meta is None:
            return
        src = old_meta["splits"][owner].get("source", {})
        theirs = (src.get("tokens_dir"), src.get("cond_root"), src.get("wav_root"))
        if theirs != mine:
            raise DatasetError(
                f"{out / rel} is used by split {owner!r} (built from {theirs[0]}) and would be "
                f"replaced by a file of split {split!r} from {mine[0]}; pass "
                f"--tokens-subdir {cfg.tokens_subdir}_{split} (and --wav-subdir) for this split")

    def place(s: _Scanned) -> _Row:
        if cfg.materialize == "none":
            def rel_of(p: Path | None) -> str | None:
                return None if p is None else Path(os.path.relpath(_abs(p), _abs(out))).as_posix()

            return _Row(s, rel_of(s.src), rel_of(s.cond_src), rel_of(s.wav_src))
        audio_rel = f"{cfg.tokens_subdir}/{s.key}"
        pairs = [(s.src, audio_rel)]
        cond_rel = None
        if s.cond_src is not None:
            cond_final = sidecar.sidecar_path_for(out / audio_rel, out / cfg.tokens_subdir,
                                                  suffix=cfg.cond_suffix)
            cond_rel = relative_key(cond_final, out)
            json_rel = relative_key(sidecar.json_path_for(cond_final), out)
            pairs += [(s.cond_src, cond_rel), (sidecar.json_path_for(s.cond_src), json_rel)]
        wav_rel = None
        if s.wav_src is not None:
            wav_rel = f"{cfg.wav_subdir}/{s.id}.wav"
            pairs.append((s.wav_src, wav_rel))
        for src, rel in pairs:
            claim(rel)
            _place(src, out / rel, staged / rel, cfg.materialize)
        return _Row(s, audio_rel, cond_rel, wav_rel)

    def load(s: _Scanned) -> tuple[_Scanned, Any]:
        try:
            return s, _read_embedded(s) if cfg.embed else None
        except WorkflowError as exc:
            return s, exc
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the build
            return s, DatasetError(f"{s.src}: {type(exc).__name__}: {exc}")

    bar = tqdm(total=len(members), desc=f"write {split}", unit="file", disable=not cfg.progress,
               file=sys.stderr, mininterval=0.5, dynamic_ncols=True)
    batch: list[_Row] = []
    batch_bytes = 0
    with bar, pa.OSFile(str(stage_file), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer, \
            cf.ThreadPoolExecutor(cfg.workers) as pool:
        for _, fut in bounded_map(pool, lambda s: (load, s), members, 2 * cfg.workers, ordered=True):
            s, payload = fut.result()
            bar.update(1)
            if isinstance(payload, BaseException):
                log.warning("%s skipped: %s", s.key, payload)
                problems.append((s.key, str(payload)))
                continue
            row = place(s)
            if payload is not None:
                row.codes, row.cond_values = payload
                batch_bytes += row.codes.nbytes + (0 if row.cond_values is None else row.cond_values.nbytes)
            rows.append(row)
            batch.append(row)
            if len(batch) >= 1024 or batch_bytes > 64 << 20:
                writer.write_batch(_record_batch(batch, schema, wav=wav, embed=cfg.embed))
                for r in batch:
                    r.codes = r.cond_values = None
                batch, batch_bytes = [], 0
        if batch:
            writer.write_batch(_record_batch(batch, schema, wav=wav, embed=cfg.embed))
            for r in batch:
                r.codes = r.cond_values = None

    info = datasets.DatasetInfo(features=features)
    ds = datasets.Dataset.from_file(str(stage_file), info=info, split=datasets.NamedSplit(split))
    # datasets writes no data file for an empty split (and cannot load that back): force one shard
    ds.save_to_disk(str(staged / split), num_shards=1 if len(ds) == 0 else None)
    del ds
    stage_file.unlink()
    return rows, problems


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


__all__ = [
    "BuildConfig", "BuildResult", "CARD_FILE", "COLUMN_TYPES", "META_FILE", "MATERIALIZE_MODES",
    "VerifyError", "arrow_row_to_numpy", "assign_split", "build", "build_dataset",
    "dataset_features", "load_dataset_dir", "parse_split_ratios", "read_dataset_meta",
    "read_token_header", "render_card", "resolve_path", "verify_dataset",
]
