"""Configuration: ``configs/autoencoder/base.yaml`` + ``1ch.yaml``/``32ch.yaml`` + ``key=value``.

Composed with OmegaConf (the same merge rules Hydra uses). The merged config is *struct*: an
override naming a key that does not exist is an error listing the close keys, so a typo never
silently trains with the default.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from workflow.errors import UsageError

MODES = ("1ch", "32ch")
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "autoencoder"


def _all_keys(cfg: Any, prefix: str = "") -> list[str]:
    out = []
    if isinstance(cfg, DictConfig):
        for k in cfg.keys():
            full = f"{prefix}{k}"
            out.append(full)
            out += _all_keys(cfg[k], full + ".") if isinstance(cfg[k], DictConfig) else []
    return out


def load_config(mode: str, overrides: Sequence[str] = (), config_dir: Path | str | None = None) -> DictConfig:
    """Compose ``base.yaml`` + ``<mode>.yaml`` + ``overrides`` (``["optim.lr=1e-4", ...]``)."""
    if mode not in MODES:
        raise UsageError(f"mode must be one of {MODES}, got {mode!r}")
    folder = Path(config_dir) if config_dir is not None else DEFAULT_CONFIG_DIR
    files = [folder / "base.yaml", folder / f"{mode}.yaml"]
    for f in files:
        if not f.is_file():
            raise UsageError(f"config file {f} not found; pass --config-dir pointing at a folder with "
                             "base.yaml, 1ch.yaml and 32ch.yaml (see configs/autoencoder/ in the repo)")
    cfg = OmegaConf.merge(*(OmegaConf.load(f) for f in files))
    OmegaConf.set_struct(cfg, True)
    for item in overrides:
        if "=" not in item:
            raise UsageError(f"override {item!r} must look like key=value (e.g. optim.lr=1e-4)")
        key = item.split("=", 1)[0].strip()
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
        except (ConfigKeyError, ConfigAttributeError, KeyError):
            close = difflib.get_close_matches(key, _all_keys(cfg), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UsageError(f"unknown config key {key!r} in override {item!r}{hint}") from None
    if cfg.mode != mode:
        raise UsageError(f"{files[1]} sets mode={cfg.mode!r}, expected {mode!r}")
    if cfg.model.quantizer not in (None, "rvq"):
        raise UsageError(f"model.quantizer must be null or rvq, got {cfg.model.quantizer!r}")
    if cfg.losses.adv_loss not in ("hinge2", "hinge"):
        raise UsageError(f"losses.adv_loss must be hinge2 (the paper's relu(1 - D)) or hinge "
                         f"(AudioCraft's -D), got {cfg.losses.adv_loss!r}")
    mel_settings(cfg)  # a bad losses.mel_loss fails here, before any data is read
    return cfg


def model_config(cfg: DictConfig) -> dict[str, Any]:
    """The mapping :func:`training.autoencoder.model.build_autoencoder` takes."""
    m = OmegaConf.to_container(cfg.model, resolve=True)
    return {"channels": int(cfg.channels), "sample_rate": int(cfg.sample_rate), "seanet": m["seanet"],
            "quantizer": m["quantizer"], "rvq": m["rvq"]}


def mel_settings(cfg: DictConfig) -> dict[str, Any]:
    """:class:`~training.autoencoder.losses.MultiScaleMelLoss` keywords from ``losses.mel_loss``."""
    from .losses import mel_loss_settings

    section = OmegaConf.to_container(cfg.losses.mel_loss, resolve=True)
    preset = section.pop("preset")
    try:
        return mel_loss_settings(str(preset), **section)
    except ValueError as exc:
        raise UsageError(f"losses.mel_loss: {exc}") from None
