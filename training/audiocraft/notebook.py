"""Steps only the RunPod notebooks need: switchable installs, the AudioCraft clone, xformers
handling and the "did Notebook A run?" check. Every step is safe to re-run: it skips work that is
already done and says so.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from workflow.errors import WorkflowError

from .launch import probe_python

NOTEBOOK_A = "notebooks/01_fma_small_mini_setup.ipynb"


class MissingArtifactError(WorkflowError):
    """Notebook B needs something Notebook A makes."""


class StepError(WorkflowError):
    """A shell step (apt, pip, git) failed."""


def run_step(cmd: Sequence[str], *, enabled: bool = True, what: str = "", cwd: Path | None = None) -> bool:
    """Run ``cmd`` streaming its output, or say it is switched off. Returns whether it ran."""
    line = shlex.join(cmd)
    if not enabled:
        print(f"skipped ({what or 'switched off'}): {line}")
        return False
    print(f"$ {line}", flush=True)
    proc = subprocess.run(list(cmd), cwd=cwd)
    if proc.returncode != 0:
        raise StepError(f"`{line}` failed with exit code {proc.returncode}")
    return True


def install_system_packages(packages: Sequence[str] = ("ffmpeg",), *, enabled: bool = True) -> bool:
    """``apt-get install`` the packages whose command is missing (ffmpeg: AudioCraft's generate stage)."""
    missing = [p for p in packages if shutil.which(p) is None]
    if not missing:
        print(f"system packages present: {', '.join(packages)}")
        return False
    ran = run_step(["apt-get", "update", "-qq"], enabled=enabled, what="INSTALL_SYSTEM_PACKAGES=False")
    return run_step(["apt-get", "install", "-y", "-qq", *missing], enabled=enabled,
                    what="INSTALL_SYSTEM_PACKAGES=False") and ran


def pip_install(args: Sequence[str], *, python: str = sys.executable, enabled: bool = True) -> bool:
    return run_step([python, "-m", "pip", "install", *args], enabled=enabled, what="PIP_INSTALL=False")


def clone_audiocraft(dest: Path, repo: str = "https://github.com/facebookresearch/audiocraft.git",
                     ref: str = "v1.3.0", *, enabled: bool = True) -> Path:
    """Clone AudioCraft at ``ref`` into ``dest`` unless a checkout is already there."""
    dest = Path(dest)
    if (dest / ".git").exists() or (dest / "audiocraft" / "train.py").is_file():
        print(f"AudioCraft checkout present: {dest}")
        return dest
    if dest.exists() and any(dest.iterdir()):
        raise StepError(f"{dest} exists but is not an AudioCraft checkout; move it or set AUDIOCRAFT_DIR")
    run_step(["git", "clone", "--depth", "1", "--branch", ref, repo, str(dest)], enabled=enabled,
             what="CLONE_AUDIOCRAFT=False")
    if not (dest / "config" / "dset").is_dir():
        raise MissingArtifactError(f"no AudioCraft checkout at {dest} (cloning is switched off): set "
                                   "CLONE_AUDIOCRAFT=True or point AUDIOCRAFT_DIR at a checkout")
    return dest


def install_audiocraft(checkout: Path, *, python: str = sys.executable, enabled: bool = True) -> bool:
    """``pip install -e <checkout>`` unless ``python`` already imports audiocraft from there."""
    origin = probe_python(python, xformers=False).get("audiocraft")
    if origin and Path(origin).resolve().is_relative_to(Path(checkout).resolve()):
        print(f"AudioCraft already installed from {checkout}")
        return False
    return pip_install(["-q", "-e", str(checkout)], python=python, enabled=enabled)


def ensure_xformers(python: str = sys.executable, *, allow_install: bool = True) -> str:
    """Make ``import xformers.ops`` work for ``python``; never raises (xformers must not stop a run).

    AudioCraft 1.3 imports xformers at start-up but uses torch attention by default, so a build
    that only warns is fine. If the import fails, ``pip install --no-deps xformers`` is tried.
    Returns a one-line status.
    """
    probe = probe_python(python)
    status = probe.get("xformers") or probe.get("error") or "audiocraft not installed (not probed)"
    if status != "ok" and probe.get("audiocraft") and allow_install:
        try:
            pip_install(["--no-deps", "xformers"], python=python)
        except StepError as exc:
            return f"xformers not importable ({status}); reinstall failed: {exc}"
        probe = probe_python(python)
        status = probe.get("xformers") or status
    if status == "ok":
        warning = probe.get("xformers_warning")
        return "xformers ok" + (f" (warning ignored: {warning[:120]})" if warning else "")
    return f"xformers: {status} — the launch pre-flight check will say what to do"


def require_artifacts(artifacts: Mapping[str, Path]) -> None:
    """Fail early, naming Notebook A, if any of Notebook B's inputs is missing."""
    missing = [f"{name} ({path})" for name, path in artifacts.items() if not Path(path).exists()]
    if missing:
        raise MissingArtifactError("missing: " + "; ".join(missing)
                                   + f" — run Notebook A ({NOTEBOOK_A}) first, with the same paths")
