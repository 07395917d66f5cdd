"""Checks the two RunPod notebooks print: durations by ffprobe, link targets, the split manifests,
Notebook B's "did Notebook A run?" check and the XP id in a Dora log. Shell work (apt, pip, git,
ffmpeg, dora) stays visible in the notebooks' %%bash cells.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import soundfile as sf

from workflow.errors import WorkflowError
from workflow.files import write_text_if_changed

from .egs import SPLITS, read_manifest

NOTEBOOK_A = "notebooks/01_fma_small_mini_setup.ipynb"
_XP_RE = re.compile(r"for XP ([0-9a-f]{6,})|xps/([0-9a-f]{6,})")


class MissingArtifactError(WorkflowError):
    """Notebook B needs something Notebook A makes."""


class ProbeError(WorkflowError):
    """ffprobe (or soundfile) could not read a file's duration."""


def probe_audio(path: Path, *, ffprobe: str | None = None) -> tuple[float, int]:
    """``(duration_s, sample_rate)`` of ``path`` by ffprobe, or by soundfile where ffprobe is absent."""
    ffprobe = ffprobe or shutil.which("ffprobe")
    if ffprobe is None:
        try:
            info = sf.info(str(path))
        except (RuntimeError, sf.LibsndfileError) as exc:  # type: ignore[attr-defined]
            raise ProbeError(f"{path}: unreadable ({exc}); delete it and re-run the cell that made it") from exc
        return info.frames / info.samplerate, int(info.samplerate)
    proc = subprocess.run([ffprobe, "-v", "error", "-select_streams", "a:0", "-show_entries",
                           "stream=sample_rate:format=duration", "-of", "json", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise ProbeError(f"ffprobe failed on {path}: {proc.stderr.strip()[:300]}")
    data = json.loads(proc.stdout)
    return float(data["format"]["duration"]), int(data["streams"][0]["sample_rate"])


def check_random_durations(paths: Sequence[Path], expected: float, *, k: int = 5, seed: int = 42,
                           tolerance: float = 0.05, min_seconds: float | None = None) -> list[tuple[str, float]]:
    """Probe ``k`` seeded-random files; each must last about ``expected`` seconds.

    The last segment of a track may be shorter (down to ``min_seconds``, default half a segment);
    nothing may be longer than ``expected + tolerance``. Returns ``(name, seconds)`` pairs.
    """
    if not paths:
        raise ProbeError("no files to check: the previous cell produced nothing")
    low = expected / 2 if min_seconds is None else min_seconds
    picked = random.Random(seed).sample(sorted(paths), min(k, len(paths)))
    out = []
    for p in picked:
        seconds, _ = probe_audio(Path(p))
        if not low - tolerance <= seconds <= expected + tolerance:
            raise ProbeError(f"{p} lasts {seconds:.3f} s, expected about {expected} s; delete the folder "
                             "and re-run the segmentation cell")
        out.append((Path(p).name, round(seconds, 3)))
    return out


def broken_links(split_dir: Path) -> tuple[int, list[Path]]:
    """``(number of .wav links, links whose target is missing)`` in ``split_dir``."""
    links = [p for p in Path(split_dir).rglob("*.wav") if p.is_symlink()]
    return len(links), [p for p in links if not p.exists()]


def write_split_manifests(egs_dir: Path, manifests_dir: Path) -> dict[str, int]:
    """``manifests/{train,valid}.jsonl``: one ``{"path": <segment>}`` per egs entry (link target).

    Written only if changed; returns the line count per split.
    """
    counts = {}
    for split in SPLITS:
        entries = read_manifest(Path(egs_dir) / split)
        text = "".join(json.dumps({"path": os.path.realpath(e["path"])}) + "\n" for e in entries)
        write_text_if_changed(Path(manifests_dir) / f"{split}.jsonl", text)
        counts[split] = len(entries)
    return counts


def require_artifacts(artifacts: Mapping[str, Path]) -> None:
    """Fail early, naming Notebook A, if any of Notebook B's inputs is missing."""
    missing = [f"{name} ({path})" for name, path in artifacts.items() if not Path(path).exists()]
    if missing:
        raise MissingArtifactError("missing: " + "; ".join(missing)
                                   + f" — run Notebook A ({NOTEBOOK_A}) first, with the same BASE_DIR")


def parse_xp_id(log_text: str) -> str | None:
    """The XP signature Dora printed (``... for XP <sig>`` or ``.../xps/<sig>``); the last one wins."""
    found = [m.group(1) or m.group(2) for m in _XP_RE.finditer(log_text)]
    return found[-1] if found else None


def python_report(python: str, cwd: Path) -> dict:
    """torch version, CUDA and ``audiocraft`` import as seen by ``python`` started in ``cwd``."""
    code = ("import json, torch\nr = {'torch': torch.__version__, 'cuda': torch.cuda.is_available()}\n"
            "try:\n    import audiocraft; r['audiocraft'] = audiocraft.__version__\n"
            "except Exception as e:\n    r['audiocraft_error'] = f'{type(e).__name__}: {e}'\nprint(json.dumps(r))")
    if not Path(python).exists():
        raise MissingArtifactError(f"no interpreter at {python}: run Notebook A (sections 2 and 4)")
    proc = subprocess.run([python, "-c", code], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise MissingArtifactError(f"{python} cannot import torch: {proc.stderr.strip()[-400:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
