"""One front for experiment trackers: Weights & Biases, TensorBoard or nothing."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import netrc
import os
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from workflow.errors import UsageError

from ._common import _as_float, _first_line
from .errors import MetricsError

log = logging.getLogger(__name__)

_BACKENDS = ("none", "wandb", "tensorboard", "auto")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _wandb_api_key_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = re.sub(r"^https?://", "", os.environ.get("WANDB_BASE_URL", "api.wandb.ai")).split("/")[0]
    with contextlib.suppress(OSError, netrc.NetrcParseError, TypeError):
        return netrc.netrc().authenticators(host) is not None
    return False


def _plain_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    if not config:
        return {}
    if is_dataclass(config) and not isinstance(config, type):
        config = asdict(config)
    return json.loads(json.dumps(dict(config), default=str))


class ExperimentLogger:
    """One front for experiment trackers: ``"wandb"``, ``"tensorboard"``, ``"none"`` or ``"auto"``.

    * ``"wandb"`` runs online when an API key is configured (``WANDB_API_KEY`` or a netrc login),
      otherwise offline (sync later with ``wandb sync``); ``WANDB_MODE`` always wins. Its files go
      under ``log_dir/wandb``. If an online start fails it retries offline.
    * ``"tensorboard"`` writes event files to ``log_dir/<run_name>``.
    * ``"auto"``: wandb if installed and configured (``WANDB_API_KEY``, or ``WANDB_MODE`` set to
      anything but ``disabled``), else tensorboard if installed, else none.

    A missing package or a tracker that fails to start (or later fails to log) falls back to
    ``"none"`` with a logged warning: a tracker never crashes a training run. An unknown backend
    name is a configuration mistake and raises UsageError at once. ``.backend`` is the backend
    actually in use. Metrics are also kept by :class:`MetricsTracker` JSON regardless.
    """

    def __init__(self, backend: str = "none", log_dir: Path | str = "runs",
                 project: str = "enc-hf-workflow", run_name: str | None = None,
                 config: Mapping[str, Any] | None = None) -> None:
        requested = str(backend).strip().lower()
        if requested not in _BACKENDS:
            raise UsageError(f"unknown logging backend {backend!r}; use one of {', '.join(_BACKENDS)}")
        self.requested_backend = requested
        self.log_dir = Path(log_dir)
        self.project = project
        self.run_name = run_name or time.strftime("run-%Y%m%d-%H%M%S")
        self.config = _plain_config(config)
        self.run: Any = None
        self.writer: Any = None
        self.run_dir: Path | None = None
        self._finished = False
        if requested == "auto":
            requested = self._pick_auto()
        self.backend = "none"
        if requested == "wandb":
            self._start_wandb()
        elif requested == "tensorboard":
            self._start_tensorboard()
        log.info("experiment logging: %s", self.backend if self.run_dir is None
                 else f"{self.backend} ({self.run_dir})")

    @staticmethod
    def _pick_auto() -> str:
        mode = os.environ.get("WANDB_MODE", "").strip().lower()
        if _installed("wandb") and (os.environ.get("WANDB_API_KEY") or (mode and mode != "disabled")):
            return "wandb"
        if _installed("tensorboard"):
            return "tensorboard"
        return "none"

    def _fallback(self, what: str, exc: BaseException | None = None) -> None:
        reason = f": {_first_line(exc)}" if exc is not None else ""
        log.warning("%s%s; experiment logging falls back to 'none' (metrics are still saved by "
                    "MetricsTracker)", what, reason)
        self.backend = "none"
        self.run = None
        self.writer = None
        self.run_dir = None

    def _start_wandb(self) -> None:
        try:
            import wandb
        except Exception as exc:  # ImportError, or a broken install raising anything
            self._fallback("wandb is not installed or cannot be imported (pip install wandb)", exc)
            return
        env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
        mode = env_mode or ("online" if _wandb_api_key_present() else "offline")
        if not env_mode and mode == "offline":
            log.info("wandb: no API key configured; logging offline under %s (upload later with "
                     "`wandb sync`)", self.log_dir / "wandb")
        attempts = [mode] + (["offline"] if mode == "online" else [])
        for attempt in attempts:
            try:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                self.run = self._wandb_init(wandb, attempt)
                self.backend = "wandb"
                run_dir = getattr(self.run, "dir", None)
                self.run_dir = Path(run_dir).parent if run_dir else self.log_dir / "wandb"
                return
            except Exception as exc:
                if attempt != attempts[-1]:
                    log.warning("wandb could not start online (%s); retrying offline",
                                _first_line(exc))
                    continue
                self._fallback(f"wandb could not start (mode={attempt})", exc)

    def _wandb_init(self, wandb: Any, mode: str) -> Any:
        kwargs = dict(project=self.project, name=self.run_name, dir=str(self.log_dir),
                      config=self.config, mode=mode)
        try:  # wandb >= 0.19.10: several loggers in one process each get their own run
            return wandb.init(reinit="finish_previous", **kwargs)
        except Exception as exc:
            if "reinit" not in str(exc):
                raise
            return wandb.init(reinit=True, **kwargs)  # older wandb

    def _start_tensorboard(self) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception as exc:
            self._fallback("tensorboard is not installed or cannot be imported "
                           "(pip install tensorboard)", exc)
            return
        try:
            run_dir = self.log_dir / self.run_name
            self.writer = SummaryWriter(log_dir=str(run_dir), flush_secs=30)
            if self.config:
                self.writer.add_text("config", "```\n" + json.dumps(self.config, indent=2) + "\n```", 0)
            self.backend = "tensorboard"
            self.run_dir = run_dir
        except Exception as exc:
            self._fallback(f"tensorboard could not write to {self.log_dir / self.run_name}", exc)

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log numeric ``metrics`` at ``step`` (e.g. the epoch); non-numbers are skipped."""
        if self.backend == "none" or self._finished:
            return
        values: dict[str, float] = {}
        for name, value in metrics.items():
            try:
                values[name] = _as_float(value, name)
            except MetricsError:
                log.debug("not logging non-numeric %r", name)
        try:
            if self.backend == "wandb":
                self.run.log(values, step=int(step))
            else:
                for name, value in values.items():
                    self.writer.add_scalar(name, value, int(step))
        except Exception as exc:
            backend = self.backend
            with contextlib.suppress(Exception):
                self._close(exit_code=1)
            self._fallback(f"{backend} failed to log at step {step}", exc)

    def _close(self, exit_code: int = 0) -> None:
        if self.backend == "wandb" and self.run is not None:
            self.run.finish(exit_code=exit_code)
        elif self.backend == "tensorboard" and self.writer is not None:
            self.writer.flush()
            self.writer.close()

    def finish(self, exit_code: int = 0) -> None:
        """Flush and close the tracker (safe to call twice)."""
        if self._finished:
            return
        self._finished = True
        try:
            self._close(exit_code)
        except Exception as exc:
            log.warning("closing %s failed: %s", self.backend, _first_line(exc))

    def __enter__(self) -> ExperimentLogger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)

