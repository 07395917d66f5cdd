"""Where a token tree's sidecars live: the marker s3 leaves when ``--cond-root`` puts them elsewhere.

``record_cond_root`` writes ``MARKER`` into the token folder; ``recorded_cond_root`` reads it back,
so s5 and the audit find the sidecars without ``--cond-root``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from .files import atomic_write_text

log = logging.getLogger(__name__)

MARKER = ".wf-sidecars.json"


def record_cond_root(audio_root: Path, cond_root: Path | None, suffix: str) -> Path | None:
    """Write (or, for sidecars beside the tokens, remove) the marker; returns it or None.

    The folder is stored relative to the token folder (the trees can move together) and absolute
    (the token tree alone can move). A read-only token folder is logged, not an error.
    """
    marker = Path(audio_root) / MARKER
    try:
        if cond_root is None or os.path.realpath(cond_root) == os.path.realpath(audio_root):
            if marker.exists():
                marker.unlink()
            return None
        data = {"cond_root": Path(os.path.relpath(os.path.realpath(cond_root),
                                                  os.path.realpath(audio_root))).as_posix(),
                "cond_root_abs": os.path.abspath(cond_root), "suffix": suffix,
                "written_by": "wf-sidecar-init"}
        atomic_write_text(marker, json.dumps(data, indent=1) + "\n")
    except OSError as exc:
        log.warning("could not record the sidecar folder in %s (%s); pass --cond-root %s to "
                    "wf-build-dataset and wf-sidecar-audit too", marker, exc, cond_root)
        return None
    return marker


def recorded_cond_root(audio_root: Path) -> Path | None:
    """The sidecar folder recorded in ``audio_root``'s marker, if there is one and it exists."""
    marker = Path(audio_root) / MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s (%s); pass --cond-root", marker, exc)
        return None
    if not isinstance(data, dict):
        return None
    candidates = [Path(audio_root) / str(data["cond_root"])] if data.get("cond_root") else []
    candidates += [Path(str(data["cond_root_abs"]))] if data.get("cond_root_abs") else []
    for c in candidates:
        if c.is_dir():
            return Path(os.path.normpath(c))
    log.warning("%s records sidecars under %s, which is not a folder any more; pass --cond-root",
                marker, " or ".join(map(str, candidates)) or "nothing")
    return None


def cond_root_or_recorded(audio_root: Path, cond_root: Path | None) -> tuple[Path | None, str | None]:
    """``cond_root`` if given, else the folder recorded in ``audio_root`` (with a note saying so)."""
    if cond_root is not None:
        return cond_root, None
    found = recorded_cond_root(audio_root)
    if found is None:
        return None, None
    return found, (f"sidecars: under {found} (recorded by wf-sidecar-init in "
                   f"{Path(audio_root) / MARKER}; --cond-root overrides it)")
