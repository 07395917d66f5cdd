"""``dset``: the Hydra config that points AudioCraft at the ``egs/`` manifests.

AudioCraft composes ``dset=audio/<name>`` from ``<config dir>/dset/audio/<name>.yaml``; the file must
start with ``# @package __global__`` so its ``datasource`` block lands at the top level. The
config dir is the ``config/`` folder next to the ``audiocraft`` package (a git checkout's
``config/``; wheels do not ship it). The text comes from ``configs/audiocraft/dset_audio.yaml``.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

import yaml

from workflow.errors import WorkflowError
from workflow.files import write_text_if_changed

TEMPLATE = Path(__file__).resolve().parents[2] / "configs" / "audiocraft" / "dset_audio.yaml"
GENERATED_MARK = "# Written by enc-hf-workflow"
DATASOURCE_KEYS = ("max_sample_rate", "max_channels", "train", "valid", "evaluate", "generate")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_BARE_YAML_RE = re.compile(r"[A-Za-z0-9_./-]+")


class DsetError(WorkflowError):
    """A dset config is missing, malformed, or would overwrite a file this tool did not write."""


def _yaml_scalar(value: str) -> str:
    # A path with spaces, colons or '#' must be quoted; JSON strings are valid YAML scalars.
    return value if _BARE_YAML_RE.fullmatch(value) else json.dumps(value)


def render_dset(egs_dir: Path, *, sample_rate: int, channels: int,
                evaluate: str = "valid", generate: str = "valid") -> str:
    """The YAML text for splits ``egs_dir/{train,valid}`` (evaluate/generate reuse a split)."""
    egs = Path(egs_dir).absolute()
    splits = {"train": "train", "valid": "valid", "evaluate": evaluate, "generate": generate}
    values = {k: _yaml_scalar(str(egs / v)) for k, v in splits.items()}
    template = string.Template(TEMPLATE.read_text(encoding="utf-8"))
    return template.substitute(max_sample_rate=int(sample_rate), max_channels=int(channels), **values)


def check_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise DsetError(f"dset name {name!r} must be a plain file stem like 'fma_small_mini' "
                        "(letters, digits, _ . -)")
    return name


def dset_path(config_dir: Path, name: str) -> Path:
    """``<config_dir>/dset/audio/<name>.yaml``."""
    return Path(config_dir) / "dset" / "audio" / f"{check_name(name)}.yaml"


def write_dset(config_dir: Path, name: str, egs_dir: Path, *, sample_rate: int = 32000,
               channels: int = 1, force: bool = False) -> tuple[Path, bool]:
    """Write the dset YAML; returns (path, changed). A file we did not write is kept unless ``force``."""
    config_dir = Path(config_dir)
    if not (config_dir / "dset").is_dir():
        raise DsetError(f"{config_dir} is not AudioCraft's config folder (no dset/ inside); pass the "
                        "checkout's config/ (e.g. /workspace/audiocraft/config)")
    path = dset_path(config_dir, name)
    if path.exists() and not force and GENERATED_MARK not in path.read_text(encoding="utf-8"):
        raise DsetError(f"{path} exists and was not written by this tool; pick another --name or "
                        "pass --force to replace it")
    text = render_dset(egs_dir, sample_rate=sample_rate, channels=channels)
    return path, write_text_if_changed(path, text)


def parse_dset_name(dset: str) -> str:
    """``audio/foo`` → ``audio/foo``; a path (``…/foo.yaml``, ``/abs``, ``./x``) is refused.

    Hydra takes a config *name* relative to the ``dset`` group; a file path makes AudioCraft fail
    with a long "Could not find 'dset/…'" trace.
    """
    d = dset.strip()
    if d.startswith("dset="):
        d = d[len("dset="):]
    looks_like_path = (d.endswith((".yaml", ".yml")) or d.startswith(("/", "./", "../", "~"))
                       or "/dset/" in d or d.startswith("config/") or "\\" in d)
    if looks_like_path:
        stem = Path(d).stem if d.endswith((".yaml", ".yml")) else Path(d).name
        raise DsetError(f"dset={dset} is a file path; Hydra needs a config name: use dset=audio/{stem} "
                        "(the YAML must live in <audiocraft config>/dset/audio/)")
    if not d.startswith("audio/") and "/" not in d:
        raise DsetError(f"dset={dset} has no group folder; did you mean dset=audio/{d}?")
    return d


def load_datasource(config_dir: Path, dset: str) -> tuple[Path, dict]:
    """Read ``<config_dir>/dset/<dset>.yaml`` and return (path, its ``datasource`` mapping)."""
    name = parse_dset_name(dset)
    path = Path(config_dir) / "dset" / f"{name}.yaml"
    if not path.is_file():
        have = sorted(p.stem for p in (Path(config_dir) / "dset" / "audio").glob("*.yaml"))
        raise DsetError(f"dset={name}: {path} not found (audio dsets there: {', '.join(have) or 'none'}); "
                        "run `python -m training.audiocraft dset` (Notebook A) to write it")
    text = path.read_text(encoding="utf-8")
    if not text.lstrip().startswith("# @package __global__"):
        raise DsetError(f"{path} must begin with '# @package __global__' or Hydra nests its keys under "
                        "dset.* and AudioCraft never sees them; re-run the dset command")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise DsetError(f"{path} is not valid YAML ({exc}); re-run the dset command") from exc
    ds = data.get("datasource") if isinstance(data, dict) else None
    if not isinstance(ds, dict):
        raise DsetError(f"{path} has no 'datasource:' mapping; re-run the dset command")
    return path, ds


def missing_keys(datasource: dict) -> list[str]:
    """Datasource keys that are absent, empty or Hydra's mandatory marker ``???``."""
    return [k for k in DATASOURCE_KEYS if datasource.get(k) in (None, "", "???")]
