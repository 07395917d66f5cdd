"""Label files of the music datasets and the emotion embedding their targets use.

``labels.csv`` (emotion; DEAM's 1–9 scale is mapped by :func:`deam_to_unit`), the optional
``emotion_labels.json`` (melody) and ``drum_labels.json`` (groove). A key matches a file by
relative path, file name, relative path without suffix, or stem; malformed files raise
:class:`LabelFileError` naming the line or entry. Formats: README.md, "The music-model suite",
**Label files**.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workflow.errors import UsageError, WorkflowError
from workflow.files import relative_key

log = logging.getLogger(__name__)

#: Valence/arousal embedding: an 8 x 8 grid of Gaussian bumps over [-1, 1]^2.
EMBEDDING_GRID = 8
EMBEDDING_DIM = EMBEDDING_GRID * EMBEDDING_GRID
EMBEDDING_SIGMA = 2.0 / (EMBEDDING_GRID - 1)
_GRID = np.linspace(-1.0, 1.0, EMBEDDING_GRID)
_CENTERS_V = np.repeat(_GRID, EMBEDDING_GRID)  # component i*8 + j ↔ (valence c_i, arousal c_j)
_CENTERS_A = np.tile(_GRID, EMBEDDING_GRID)


class MusicDatasetError(WorkflowError):
    """A music dataset folder is missing, empty, or yields too few usable items."""


class LabelFileError(MusicDatasetError):
    """A label file (labels.csv, emotion_labels.json, drum_labels.json) is malformed."""


# --------------------------------------------------------------------------------------------
# emotion embedding


def deam_to_unit(x: float | np.ndarray) -> float | np.ndarray:
    """Map DEAM's 1–9 rating scale linearly to [-1, 1]: ``(x - 5) / 4`` (1 → -1, 5 → 0, 9 → 1)."""
    if isinstance(x, np.ndarray):
        return (x.astype(np.float64) - 5.0) / 4.0
    return (float(x) - 5.0) / 4.0


def _check_va(v: float, a: float, where: str) -> None:
    for name, x in (("valence", v), ("arousal", a)):
        if not math.isfinite(x) or abs(x) > 1.0 + 1e-6:
            raise UsageError(f"{where}: {name} {x!r} is outside [-1, 1]; rescale it (DEAM 1-9: (x-5)/4)")


def emotion_embeddings(va: np.ndarray) -> np.ndarray:
    """Vectorised :func:`emotion_embedding`: ``[N, 2]`` (valence, arousal) → float32 ``[N, 64]``."""
    arr = np.asarray(va, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise UsageError(f"expected (valence, arousal) pairs shaped [N, 2], got {arr.shape}")
    if arr.size and (not np.isfinite(arr).all() or np.abs(arr).max() > 1.0 + 1e-6):
        raise UsageError("valence/arousal must be finite and in [-1, 1]; rescale them first")
    dv = arr[:, 0:1] - _CENTERS_V[None, :]
    da = arr[:, 1:2] - _CENTERS_A[None, :]
    return np.exp(-(dv * dv + da * da) / (2.0 * EMBEDDING_SIGMA**2)).astype(np.float32)


def emotion_embedding(valence: float, arousal: float) -> np.ndarray:
    """The fixed 64-dim embedding of a valence-arousal point (both in [-1, 1]).

    Component ``8 i + j`` is a Gaussian bump ``exp(-((v - c_i)^2 + (a - c_j)^2) / (2 σ^2))`` with
    centres ``c = linspace(-1, 1, 8)`` and ``σ = 2/7`` (the grid spacing): a smooth, deterministic
    radial-basis code in (0, 1]. Nearby moods get nearby codes, distinct (v, a) get distinct codes
    (the map is injective: :func:`decode_emotion_embedding` inverts it), and there is no random
    projection that could change between runs or machines.
    """
    v, a = float(valence), float(arousal)
    _check_va(v, a, "emotion_embedding")
    return emotion_embeddings(np.array([[v, a]]))[0]


def decode_emotion_embedding(embedding: np.ndarray) -> tuple[float, float]:
    """Invert :func:`emotion_embedding` (exactly for a clean code, least squares for a predicted one).

    ``-2σ² log e_k - c_vk² - c_ak² = -2 c_vk v - 2 c_ak a + (v² + a²)`` is linear in
    ``(v, a, v² + a²)``; it is solved by weighted least squares over the components larger than
    1e-3 × the largest (weights = the components). Returns (valence, arousal) clipped to [-1, 1].
    """
    e = np.asarray(embedding, dtype=np.float64).reshape(-1)
    if e.size != EMBEDDING_DIM:
        raise UsageError(f"an emotion embedding has {EMBEDDING_DIM} values, got {e.size}")
    top = float(e.max()) if np.isfinite(e).all() else 0.0
    if top <= 0.0:
        return 0.0, 0.0
    use = e > 1e-3 * top
    if use.sum() < 3:  # too few usable components for the linear solve: weighted centroid
        w = np.clip(e, 0.0, None)
        return (float(np.clip((w * _CENTERS_V).sum() / w.sum(), -1, 1)),
                float(np.clip((w * _CENTERS_A).sum() / w.sum(), -1, 1)))
    cv, ca, ek = _CENTERS_V[use], _CENTERS_A[use], e[use]
    lhs = np.stack([-2.0 * cv, -2.0 * ca, np.ones_like(cv)], axis=1)
    rhs = -2.0 * EMBEDDING_SIGMA**2 * np.log(ek) - cv * cv - ca * ca
    w = np.sqrt(ek)
    sol, *_ = np.linalg.lstsq(lhs * w[:, None], rhs * w, rcond=None)
    return float(np.clip(sol[0], -1.0, 1.0)), float(np.clip(sol[1], -1.0, 1.0))


def _emotion_names() -> list[str]:
    """The names of the 64 embedding components: ``va_rbf_v<c_i>_a<c_j>``."""
    return [f"va_rbf_v{_GRID[i]:+.2f}_a{_GRID[j]:+.2f}" for i in range(8) for j in range(8)]


# --------------------------------------------------------------------------------------------
# label files


def _norm_key(key: str) -> str:
    """Label keys compare as POSIX relative paths without a leading ``./``."""
    k = str(key).strip().replace("\\", "/")
    while k.startswith("./"):
        k = k[2:]
    return k


def read_emotion_csv(path: Path | str) -> tuple[dict[str, tuple[float, float]], str]:
    """Read ``labels.csv`` → ``({key: (valence, arousal) in [-1, 1]}, scale)``.

    ``scale`` is ``"unit"`` (columns ``valence,arousal``, values must be in [-1, 1]) or ``"deam"``
    (columns ``valence_mean,arousal_mean`` on DEAM's 1–9 scale, mapped with :func:`deam_to_unit`).
    The key column is ``filename`` or ``song_id``. Raises :class:`LabelFileError` naming the line.
    """
    p = Path(path)
    try:
        fh = open(p, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise LabelFileError(f"{p}: cannot open labels file ({exc})") from exc
    with fh:
        reader = csv.reader(fh, skipinitialspace=True)
        header = next(reader, None)
        if not header:
            raise LabelFileError(f"{p}: empty labels file; write a header 'filename,valence,arousal'")
        cols = [h.strip().lower() for h in header]
        key_col = next((c for c in ("filename", "song_id") if c in cols), None)
        if key_col is None:
            raise LabelFileError(
                f"{p}: no 'filename' or 'song_id' column in header {header}; "
                "write a header 'filename,valence,arousal' (or keep DEAM's 'song_id,valence_mean,arousal_mean')"
            )
        if "valence" in cols and "arousal" in cols:
            scale, vcol, acol = "unit", "valence", "arousal"
        elif "valence_mean" in cols and "arousal_mean" in cols:
            scale, vcol, acol = "deam", "valence_mean", "arousal_mean"
        else:
            raise LabelFileError(
                f"{p}: need columns 'valence,arousal' (in [-1, 1]) or DEAM's 'valence_mean,arousal_mean' "
                f"(1-9); header is {header}"
            )
        ki, vi, ai = cols.index(key_col), cols.index(vcol), cols.index(acol)
        labels: dict[str, tuple[float, float]] = {}
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) <= max(ki, vi, ai):
                raise LabelFileError(f"{p}, line {line}: expected {len(cols)} fields, got {len(row)}: {row}")
            key = _norm_key(row[ki])
            try:
                v, a = float(row[vi]), float(row[ai])
            except ValueError as exc:
                raise LabelFileError(
                    f"{p}, line {line}: valence/arousal must be numbers, got {row[vi]!r}, {row[ai]!r}"
                ) from exc
            if scale == "deam":
                for name, x in ((vcol, v), (acol, a)):
                    if not (1.0 <= x <= 9.0):
                        raise LabelFileError(f"{p}, line {line}: {name} {x} is outside DEAM's 1-9 scale")
                v, a = float(deam_to_unit(v)), float(deam_to_unit(a))
            else:
                for name, x in ((vcol, v), (acol, a)):
                    if not (math.isfinite(x) and -1.0 <= x <= 1.0):
                        raise LabelFileError(
                            f"{p}, line {line}: {name} {x} is outside [-1, 1]; rescale it, or name the "
                            "columns valence_mean,arousal_mean if they are on DEAM's 1-9 scale"
                        )
            if not key:
                raise LabelFileError(f"{p}, line {line}: empty {key_col}")
            if key in labels:
                raise LabelFileError(f"{p}, line {line}: {key!r} is labelled twice; keep one row")
            labels[key] = (v, a)
    if not labels:
        raise LabelFileError(f"{p}: header but no label rows")
    return labels, scale


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LabelFileError(f"{path}: cannot read ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise LabelFileError(f"{path}: not valid JSON ({exc}); fix the file or remove it") from exc
    if not isinstance(data, dict) or not data:
        raise LabelFileError(f"{path}: expected a non-empty JSON object {{\"<file>\": {{...}}}}")
    return data


def read_emotion_json(path: Path | str) -> dict[str, tuple[float, float]]:
    """Read ``emotion_labels.json`` (``{file: {"valence": v, "arousal": a}}``, v, a in [-1, 1])."""
    p = Path(path)
    out: dict[str, tuple[float, float]] = {}
    for key, entry in _read_json_object(p).items():
        try:
            v, a = float(entry["valence"]), float(entry["arousal"])
        except (TypeError, KeyError, ValueError) as exc:
            raise LabelFileError(
                f"{p}: entry {key!r} must be {{\"valence\": number, \"arousal\": number}}, got {entry!r}"
            ) from exc
        for name, x in (("valence", v), ("arousal", a)):
            if not (math.isfinite(x) and -1.0 <= x <= 1.0):
                raise LabelFileError(f"{p}: entry {key!r}: {name} {x} is outside [-1, 1]; rescale it")
        out[_norm_key(key)] = (v, a)
    return out


def read_drum_labels(path: Path | str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Read ``drum_labels.json`` → ``({key: float32 [K]}, label names sorted)``.

    Every entry must have the same label names and finite numeric values.
    """
    p = Path(path)
    out: dict[str, np.ndarray] = {}
    names: list[str] | None = None
    for key, entry in _read_json_object(p).items():
        if not isinstance(entry, dict) or not entry:
            raise LabelFileError(f"{p}: entry {key!r} must be an object of numeric labels, got {entry!r}")
        these = sorted(entry)
        if names is None:
            names = these
        elif these != names:
            raise LabelFileError(
                f"{p}: entry {key!r} has labels {these}, the first entry has {names}; "
                "give every file the same label names"
            )
        try:
            vals = np.array([float(entry[n]) for n in names], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise LabelFileError(f"{p}: entry {key!r}: labels must be numbers, got {entry!r}") from exc
        if not np.isfinite(vals).all():
            raise LabelFileError(f"{p}: entry {key!r}: labels must be finite, got {entry!r}")
        out[_norm_key(key)] = vals.astype(np.float32)
    assert names is not None
    return out, names


def _labelled_files(
    root: Path, files: list[Path], labels_path: Path | str | None, default_name: str, use_labels: bool,
    read: Callable[[Path], Mapping[str, Any]],
) -> tuple[bool, Path, list[tuple[Path, Any]], list[str], list[Path]]:
    """Find the optional label file and pair files with labels.

    Returns ``(labelled, label_path, [(file, label or None)], missing keys, unlabelled files)``;
    an explicit ``labels_path`` that does not exist is an error, a missing default file just
    means "no labels" (continuation mode).
    """
    lpath = Path(labels_path) if labels_path is not None else root / default_name
    if labels_path is not None and not lpath.is_file():
        raise MusicDatasetError(f"{lpath}: labels file not found; check the path")
    if not (use_labels and lpath.is_file()):
        return False, lpath, [(p, None) for p in files], [], []
    matched, missing, unlabelled = _match_labels(files, root, read(lpath), lpath)
    if missing:
        log.warning("%s: %d labelled file(s) not found (e.g. %s)", lpath, len(missing), missing[:3])
    return True, lpath, matched, missing, unlabelled


def _match_labels(
    files: Sequence[Path], root: Path, labels: Mapping[str, Any], source: Path
) -> tuple[list[tuple[Path, Any]], list[str], list[Path]]:
    """Pair label keys with files → (matched in discovery order, keys without file, files without key).

    A key matches a file's relative path, that path without its suffix, its name, or its stem.
    """
    index: dict[str, set[Path]] = {}
    for p in files:
        rel = relative_key(p, root)
        for k in (rel, rel.rsplit(".", 1)[0], p.name, p.stem):
            index.setdefault(k, set()).add(p)
    matched: dict[Path, Any] = {}
    missing: list[str] = []
    for key, value in labels.items():
        cands = sorted(index.get(key, ()))
        if not cands:
            missing.append(key)
            continue
        if len(cands) > 1:
            shown = ", ".join(relative_key(c, root) for c in cands[:3])
            raise LabelFileError(
                f"{source}: label key {key!r} matches {len(cands)} files ({shown}); "
                "use the file's relative path (with suffix) as its key"
            )
        p = cands[0]
        if p in matched:
            raise LabelFileError(f"{source}: {relative_key(p, root)} is labelled by two keys; keep one")
        matched[p] = value
    ordered = [(p, matched[p]) for p in files if p in matched]
    unlabelled = [p for p in files if p not in matched]
    return ordered, missing, unlabelled
