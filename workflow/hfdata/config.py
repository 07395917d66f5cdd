"""What one s5 build is asked to do (:class:`BuildConfig`) and what it did (:class:`BuildResult`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import sidecar
from ..errors import DatasetError, UsageError
from ..files import check_output_not_inside_input, normalize_extensions
from .schema import _RESERVED_NAMES, MATERIALIZE_MODES
from .splits import check_split_name, parse_split_ratios

if TYPE_CHECKING:  # datasets takes ~1 s to import: only functions that need it import it
    import datasets


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
    license: str | None = None  # None: keep the dataset's (default "other")
    pretty_name: str | None = None  # None: keep the dataset's (default: descriptive, see card)

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

    def rel(self, p: Path | str | None) -> str | None:
        """``p`` relative to OUT_DIR (POSIX): what META_FILE and the card record, never a local
        absolute path (it would be published with the dataset)."""
        return None if p is None else Path(os.path.relpath(_abs(p), _abs(self.out_dir))).as_posix()

    def relativize(self, text: str) -> str:
        """``text`` with the absolute paths of this build's folders made relative to OUT_DIR."""
        for root in (self.tokens_dir, self.cond_root, self.wav_root, self.out_dir):
            if root is not None:
                for form in {_abs(root), str(root)} if Path(root).is_absolute() else {_abs(root)}:
                    text = text.replace(form.rstrip(os.sep) + os.sep, (self.rel(root) or ".") + "/")
        return text

    def source_json(self) -> dict[str, Any]:
        """What this split was built from (recorded per split in META_FILE), relative to OUT_DIR."""
        return {
            "tokens_dir": self.rel(self.tokens_dir), "suffix": self.suffix, "recursive": self.recursive,
            "cond_root": self.rel(self.cond_root), "cond_suffix": self.cond_suffix,
            "wav_root": self.rel(self.wav_root),
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
    notes: list[str] = field(default_factory=list)  # e.g. where the sidecars were found


class VerifyError(DatasetError):
    """``--verify`` found problems; the dataset was not written (an older one is untouched)."""

    def __init__(self, dataset_dir: Path | str, problems: Sequence[str]):
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:20])
        more = f"\n  … and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{dataset_dir}: verification found {len(self.problems)} problem(s); "
                         f"the dataset was not written:\n  {shown}{more}")


def _abs(p: Path | str) -> str:
    return os.path.abspath(p)


def _recorded(out_dir: Path | str, path: str | None) -> str | None:
    """A source folder recorded in META_FILE as an absolute path (relative to OUT_DIR since the
    card stopped publishing local paths; older datasets recorded absolute ones)."""
    if path is None:
        return None
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(_abs(out_dir), path))
