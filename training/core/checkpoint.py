"""Checkpoints: ``<name>_best.pt`` / ``<name>_epoch<N>.pt`` / ``<name>_last.pt``, written atomically
(temp file, fsync, ``os.replace``) and loadable with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from workflow.errors import UsageError
from workflow.files import TMP_MARKER, temp_sibling

from ._common import _as_float, _check_mode, _first_line, _is_better
from .errors import CheckpointError
from .seed import get_rng_state, set_rng_state
from .stopping import EarlyStopping

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "enc-hf-workflow.checkpoint"
CHECKPOINT_VERSION = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def _unwrap(model: nn.Module) -> nn.Module:
    """The module whose state dict to save/load: strips DataParallel/DDP and torch.compile."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def _to_safe(obj: Any, where: str) -> Any:
    """Convert user metadata to what ``torch.load(weights_only=True)`` can read, or refuse."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj).copy())
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, torch.dtype):
        return str(obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        return _to_safe(asdict(obj), where)
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise CheckpointError(f"{where} has a key of type {type(key).__name__} ({key!r}); "
                                      "checkpoint metadata keys must be str or int")
            out[key] = _to_safe(value, f"{where}[{key!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        items = [_to_safe(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    raise CheckpointError(
        f"{where} is a {type(obj).__module__}.{type(obj).__name__}, which a weights_only checkpoint "
        "load cannot read; store it as a str, number, list, dict or tensor")


_SAFE_LEAVES = (type(None), bool, int, float, complex, str, bytes, bytearray, torch.Size,
                torch.dtype, torch.device)
_SAFE_MAPPINGS = (dict, OrderedDict, Counter)
_SAFE_SEQUENCES = (list, tuple, set)


def _assert_loadable(obj: Any, where: str) -> None:
    """Refuse, before writing, anything ``torch.load(weights_only=True)`` would refuse later
    (e.g. a LambdaLR whose lambda is a callable object holding a custom class)."""
    if isinstance(obj, torch.Tensor) or type(obj) in _SAFE_LEAVES:
        return
    if type(obj) in _SAFE_MAPPINGS:
        for key, value in obj.items():
            _assert_loadable(key, f"{where} key")
            _assert_loadable(value, f"{where}[{key!r}]")
        for key, value in getattr(obj, "__dict__", {}).items():  # e.g. a state dict's _metadata
            _assert_loadable(value, f"{where}.{key}")
        return
    if type(obj) in _SAFE_SEQUENCES:
        for i, value in enumerate(obj):
            _assert_loadable(value, f"{where}[{i}]")
        return
    raise CheckpointError(
        f"{where} is a {type(obj).__module__}.{type(obj).__name__}, which a weights_only checkpoint "
        "load cannot read; keep only tensors and plain Python values in state dicts (for a "
        "LambdaLR use a plain function, or give the callable object plain attributes)")


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _unique_temp_name(target: Path) -> Path:
    return target.parent / f".{target.stem}{TMP_MARKER}{uuid.uuid4().hex[:12]}{target.suffix}"


def _publish(tmp: Path, targets: Sequence[Path]) -> None:
    """Make each of ``targets`` an atomic copy of the finished file ``tmp`` (hard links where the
    file system allows, copies otherwise); ``tmp`` itself becomes the last target."""
    import shutil

    for target in targets[:-1]:
        extra = _unique_temp_name(target)
        try:
            try:
                os.link(tmp, extra)
            except OSError:
                shutil.copyfile(tmp, extra)
                with open(extra, "rb+") as fh:
                    os.fsync(fh.fileno())
            os.replace(extra, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                extra.unlink()
            raise
    os.replace(tmp, targets[-1])


def _read_checkpoint(path: Path, map_location: Any = "cpu", *, mmap: bool = False) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            found = sorted(p.name for p in path.parent.glob("*.pt"))[:10]
            hint = f"; checkpoints there: {', '.join(found)}" if found else "; that folder has no .pt files"
        raise CheckpointError(f"checkpoint not found: {path}{hint}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises UnpicklingError / RuntimeError / EOFError / ...
        raise CheckpointError(
            f"cannot read checkpoint {path} ({_first_line(exc)}). The file is truncated or corrupt, "
            "or was saved with Python objects a weights_only load refuses; use another checkpoint "
            "(e.g. the _best.pt / _last.pt beside it) or re-save it with tensors and plain types only"
        ) from exc
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(payload).__name__}, not a dict; "
                              "expected a file written by CheckpointManager or a state dict")
    return dict(payload)


@dataclass(frozen=True)
class SavedCheckpoint:
    """What :meth:`CheckpointManager.save_checkpoint` wrote."""

    last: Path
    best: Path | None
    epoch_file: Path | None
    is_best: bool


class CheckpointManager:
    """Save and restore training state in ``checkpoint_dir``.

    Files per ``model_name``: ``<name>_last.pt`` (always, the resume point),
    ``<name>_best.pt`` (whenever the score beats the best so far) and, when
    ``save_best_only=False``, ``<name>_epoch<N>.pt`` every epoch, pruned to the newest
    ``keep_last`` (``None`` keeps all). Each save serialises once to a temp file, fsyncs it and
    ``os.replace``s it into place, so a kill mid-save never corrupts an existing checkpoint.

    The best score of a model is remembered in memory, read back from ``<name>_best.pt`` the first
    time it is needed (so a second manager on the same folder never overwrites a better model),
    and restored by :meth:`load_checkpoint`. Use one manager per process (rank 0 under DDP).
    """

    def __init__(self, checkpoint_dir: Path | str, save_best_only: bool = True,
                 keep_last: int | None = 3, verbose: bool = True) -> None:
        if keep_last is not None and keep_last < 1:
            raise UsageError(f"keep_last must be >= 1 or None (keep all), got {keep_last}")
        self.checkpoint_dir = Path(checkpoint_dir)
        if self.checkpoint_dir.exists() and not self.checkpoint_dir.is_dir():
            raise UsageError(f"checkpoint_dir {self.checkpoint_dir} exists and is not a folder")
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.save_best_only = save_best_only
        self.keep_last = keep_last
        self.verbose = verbose
        self._best: dict[str, float | None] = {}

    # -- paths ---------------------------------------------------------------------------------

    @staticmethod
    def _check_name(model_name: str) -> str:
        if not _NAME_RE.match(model_name or ""):
            raise UsageError(f"model_name {model_name!r} must be a plain file-name stem "
                             "(letters, digits, '.', '_', '+', '-'; no path separators)")
        return model_name

    def best_path(self, model_name: str = "model") -> Path:
        return self.checkpoint_dir / f"{self._check_name(model_name)}_best.pt"

    def last_path(self, model_name: str = "model") -> Path:
        return self.checkpoint_dir / f"{self._check_name(model_name)}_last.pt"

    def epoch_path(self, model_name: str, epoch: int) -> Path:
        return self.checkpoint_dir / f"{self._check_name(model_name)}_epoch{int(epoch)}.pt"

    def epoch_checkpoints(self, model_name: str = "model") -> list[tuple[int, Path]]:
        """``(epoch, path)`` of the per-epoch files of ``model_name``, oldest first."""
        pattern = re.compile(rf"^{re.escape(self._check_name(model_name))}_epoch(\d+)\.pt$")
        found = []
        for path in self.checkpoint_dir.iterdir():
            match = pattern.match(path.name)
            if match and path.is_file():
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest_checkpoint(self, model_name: str = "model") -> Path | None:
        """The file to resume from: ``<name>_last.pt``, else the newest ``<name>_epoch<N>.pt``,
        else ``<name>_best.pt``, else None."""
        last = self.last_path(model_name)
        if last.is_file():
            return last
        epochs = self.epoch_checkpoints(model_name)
        if epochs:
            return epochs[-1][1]
        best = self.best_path(model_name)
        return best if best.is_file() else None

    def existing_files(self, model_name: str = "model") -> list[Path]:
        """Every checkpoint file of ``model_name`` in the folder."""
        files = [p for p in (self.last_path(model_name), self.best_path(model_name)) if p.is_file()]
        return files + [p for _, p in self.epoch_checkpoints(model_name)]

    def cleanup_temp_files(self, model_name: str = "model") -> list[Path]:
        """Delete temp files that a killed save of ``model_name`` left behind (hidden
        ``.<name>_*.tmp-*.pt``). Only call it while no other process saves this model here."""
        prefix = f".{self._check_name(model_name)}_"
        removed = []
        for path in self.checkpoint_dir.iterdir():
            if path.name.startswith(prefix) and TMP_MARKER in path.name and path.suffix == ".pt":
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
        if removed:
            log.info("removed %d temp file(s) left by an interrupted save in %s", len(removed),
                     self.checkpoint_dir)
        return removed

    # -- best score ----------------------------------------------------------------------------

    def best_score(self, model_name: str = "model") -> float | None:
        """Best score saved for ``model_name`` (read from ``<name>_best.pt`` if not yet known)."""
        if model_name not in self._best:
            best = self.best_path(model_name)
            score: float | None = None
            if best.is_file():
                try:
                    payload = _read_checkpoint(best, "cpu", mmap=True)
                    raw = payload.get("score")
                    score = None if raw is None else float(raw)
                except CheckpointError as exc:
                    log.warning("%s; it will be replaced by the next best checkpoint", exc)
            self._best[model_name] = score
        return self._best[model_name]

    def reset(self, model_name: str = "model", *, delete_files: bool = False) -> list[Path]:
        """Forget the best score of ``model_name``; with ``delete_files`` also delete its
        checkpoint files (returns the deleted paths). Used to start a run over."""
        self._best[model_name] = None
        deleted = []
        if delete_files:
            for path in self.existing_files(model_name):
                path.unlink()
                deleted.append(path)
            if deleted:
                log.info("deleted %d old checkpoint file(s) of %r in %s", len(deleted), model_name,
                         self.checkpoint_dir)
        return deleted

    # -- save / load ---------------------------------------------------------------------------

    def save_checkpoint(
        self,
        model: nn.Module,
        epoch: int,
        score: float | None,
        optimizer: torch.optim.Optimizer | None = None,
        metadata: Mapping[str, Any] | None = None,
        model_name: str = "model",
        scheduler: Any = None,
        early_stopping: EarlyStopping | None = None,
        mode: str = "min",
        *,
        scaler: Any = None,
        extra: Mapping[str, Any] | None = None,
        save_rng: bool = True,
    ) -> SavedCheckpoint:
        """Write ``<name>_last.pt``, plus ``<name>_best.pt`` if ``score`` is the best so far
        (strictly better; None / NaN never are) and ``<name>_epoch<N>.pt`` unless best-only.

        ``metadata`` and ``extra`` must be plain data (str / numbers / lists / dicts / tensors;
        Paths and numpy values are converted); anything else raises CheckpointError before any
        file is touched.
        """
        _check_mode(mode)
        self._check_name(model_name)
        score_value = None if score is None else _as_float(score, "checkpoint score")
        previous_best = self.best_score(model_name)
        is_best = score_value is not None and _is_better(score_value, previous_best, mode)
        new_best = score_value if is_best else previous_best
        payload: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "model_name": model_name,
            "epoch": int(epoch),
            "score": score_value,
            "best_score": new_best,
            "mode": mode,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "torch_version": str(torch.__version__),
            "metadata": _to_safe(dict(metadata or {}), "metadata"),
            "extra": _to_safe(dict(extra or {}), "extra"),
            "model_state_dict": _unwrap(model).state_dict(),
        }
        if optimizer is not None:
            payload["optimizer_state_dict"] = optimizer.state_dict()
        if scheduler is not None:
            payload["scheduler_state_dict"] = scheduler.state_dict()
        if scaler is not None:
            payload["scaler_state_dict"] = scaler.state_dict()
        if early_stopping is not None:
            payload["early_stopping"] = early_stopping.state_dict()
        if save_rng:
            payload["rng_state"] = get_rng_state()
        for key, value in payload.items():
            _assert_loadable(value, key)

        last = self.last_path(model_name)
        epoch_file = None if self.save_best_only else self.epoch_path(model_name, epoch)
        best = self.best_path(model_name) if is_best else None
        # last: replaced last, so it never points past the other files
        self._write_payload(payload, [p for p in (epoch_file, best) if p is not None] + [last])
        if is_best:
            self._best[model_name] = score_value

        level = logging.INFO if self.verbose else logging.DEBUG
        if is_best:
            log.log(level, "saved best checkpoint %s (epoch %d, score %.6g)", best, epoch, score_value)
        else:
            log.debug("saved checkpoint %s (epoch %d)", last, epoch)
        if epoch_file is not None:
            self._prune(model_name)
        return SavedCheckpoint(last=last, best=best, epoch_file=epoch_file, is_best=is_best)

    def _write_payload(self, payload: Mapping[str, Any], targets: list[Path]) -> None:
        """Save ``payload`` once (fsynced, beside the last target) and publish it under every
        target name in order; the temp file never outlives a failure."""
        tmp = temp_sibling(targets[-1])
        try:
            with open(tmp, "wb") as fh:
                torch.save(payload, fh)
                fh.flush()
                os.fsync(fh.fileno())
            _publish(tmp, targets)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        _fsync_dir(self.checkpoint_dir)

    def _prune(self, model_name: str) -> None:
        if self.keep_last is None:
            return
        files = self.epoch_checkpoints(model_name)
        for _, path in files[: max(0, len(files) - self.keep_last)]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                log.debug("pruned old checkpoint %s", path)

    def load_checkpoint(
        self,
        model: nn.Module,
        checkpoint_path: Path | str,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
        early_stopping: EarlyStopping | None = None,
        map_location: Any = "cpu",
        restore_rng: bool = True,
        *,
        scaler: Any = None,
        strict: bool = True,
    ) -> dict[str, Any]:
        """Load ``checkpoint_path`` (``weights_only=True``) into ``model`` and whatever of
        optimizer / scheduler / early stopping / scaler is given; restore the RNG states.

        Returns ``{"epoch", "score", "best_score", "metadata", "extra", "model_name", "mode",
        "path"}``. A bare state dict (a file holding only tensors) is accepted too; then epoch and
        score are None. Raises CheckpointError naming the file when it is missing, unreadable or
        does not fit the model / optimizer.
        """
        path = Path(checkpoint_path)
        payload = _read_checkpoint(path, map_location)
        if "model_state_dict" in payload:
            state = payload["model_state_dict"]
        elif payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            state, payload = payload, {}
        else:
            raise CheckpointError(f"checkpoint {path} has no 'model_state_dict' (keys: "
                                  f"{sorted(map(str, payload))[:12]}); it was not written by "
                                  "CheckpointManager and is not a plain state dict")
        try:
            result = _unwrap(model).load_state_dict(state, strict=strict)
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint {path} does not match the model "
                                  f"{type(_unwrap(model)).__name__}: {exc}. Build the model with "
                                  "the same configuration it was trained with") from exc
        if not strict and (result.missing_keys or result.unexpected_keys):
            log.warning("checkpoint %s: missing keys %s, unexpected keys %s", path,
                        result.missing_keys[:8], result.unexpected_keys[:8])

        def _load_part(obj: Any, key: str, what: str) -> None:
            if obj is None:
                return
            if key not in payload:
                log.warning("checkpoint %s has no %s state; %s starts fresh", path, what, what)
                return
            try:
                obj.load_state_dict(payload[key])
            except CheckpointError:
                raise
            except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
                raise CheckpointError(f"checkpoint {path}: the saved {what} state does not fit the "
                                      f"{what} given ({_first_line(exc)}); build it the same way "
                                      "as for the saved run") from exc

        _load_part(optimizer, "optimizer_state_dict", "optimizer")
        _load_part(scheduler, "scheduler_state_dict", "scheduler")
        _load_part(scaler, "scaler_state_dict", "scaler")
        _load_part(early_stopping, "early_stopping", "early-stopping")
        if restore_rng and "rng_state" in payload:
            try:
                set_rng_state(payload["rng_state"])
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise CheckpointError(f"checkpoint {path} has a malformed RNG state "
                                      f"({_first_line(exc)}); load it with restore_rng=False") from exc

        name = payload.get("model_name")
        best_score = payload.get("best_score")
        if name and path.resolve().parent == self.checkpoint_dir.resolve():
            self._best[str(name)] = None if best_score is None else float(best_score)
        level = logging.INFO if self.verbose else logging.DEBUG
        log.log(level, "loaded checkpoint %s (epoch %s)", path, payload.get("epoch"))
        return {"epoch": payload.get("epoch"), "score": payload.get("score"),
                "best_score": best_score, "metadata": payload.get("metadata", {}),
                "extra": payload.get("extra", {}), "model_name": name,
                "mode": payload.get("mode"), "path": path}


