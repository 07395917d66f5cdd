"""Param producers: the protocol s4 (``wf-sidecar-add``) uses to add sidecar columns, and its loader.

A producer is a plain Python module, named by a built-in name (:data:`BUILTINS`), a ``.py`` in
``--producers-dir``, a ``.py`` path or a dotted import path. It defines ``produce(ecdc_path, T, *,
args)`` and optionally ``add_cli_args``, ``init``, ``shutdown`` and ``feature_names``; its module
docstring is its help. The protocol in full: paramproducers/README_paramproducers.md.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib
import importlib.util
import logging
import math
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from workflow.errors import ProducerError, UsageError, WorkflowError
from workflow.sidecar import FeatureInfo

log = logging.getLogger(__name__)

BUILTINS: tuple[str, ...] = ("const", "lin", "from_filename", "from_audio", "from_csv")
INFO_KEYS = ("values", "units", "doc_string", "min", "max")


@dataclass(frozen=True)
class ProducerRef:
    """How to find a producer again, in this process or in a freshly spawned worker.

    ``name`` is what s4 records as ``producer`` in each FeatureInfo; ``kind`` is ``builtin``,
    ``file`` or ``module``; ``target`` is the module name, or the file's absolute path.
    """

    name: str
    kind: str
    target: str

    @property
    def origin(self) -> str:
        return {"builtin": "built-in", "file": self.target, "module": f"module {self.target}"}[self.kind]


# -- resolving and importing ---------------------------------------------------------------------------
def _file_ref(path: Path) -> ProducerRef:
    return ProducerRef(path.stem, "file", str(path.resolve()))


def resolve(name: str, producers_dir: Path | str | None = None) -> ProducerRef:
    """Turn a ``--producer`` value into a :class:`ProducerRef` (nothing is imported yet)."""
    name = name.strip()
    if not name:
        raise UsageError("empty --producer name")
    pdir = Path(producers_dir) if producers_dir is not None else None
    if pdir is not None and not pdir.is_dir():
        raise UsageError(f"--producers-dir {pdir} is not a folder")
    if name.endswith(".py") or "/" in name or "\\" in name:
        for cand in ([Path(name)] + ([pdir / name] if pdir is not None else [])):
            if cand.is_file():
                return _file_ref(cand)
        raise UsageError(f"producer file {name} not found")
    if pdir is not None and (pdir / f"{name}.py").is_file():
        if name in BUILTINS:
            log.warning("%s shadows the built-in producer %r", pdir / f"{name}.py", name)
        return _file_ref(pdir / f"{name}.py")
    if name in BUILTINS:
        return ProducerRef(name, "builtin", f"{__name__}.{name}")
    if "." in name:
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            found = None
        if found is not None:
            return ProducerRef(name, "module", name)
        raise UsageError(f"producer module {name!r} cannot be imported (is its package on "
                         "PYTHONPATH / installed?)")
    where = f", a .py file in {pdir}" if pdir is not None else ", a .py file in --producers-dir"
    raise UsageError(f"unknown producer {name!r}: use a built-in ({', '.join(BUILTINS)}){where}, "
                     "a path to a .py file, or a dotted module path; see --list-producers")


def import_module(ref: ProducerRef) -> ModuleType:
    """Import the producer's module (file producers get a private, stable module name)."""
    try:
        if ref.kind != "file":
            return importlib.import_module(ref.target)
        digest = hashlib.sha1(ref.target.encode("utf-8")).hexdigest()[:10]
        mod_name = f"_wf_producer_{ref.name}_{digest}"
        if mod_name in sys.modules:
            return sys.modules[mod_name]
        spec = importlib.util.spec_from_file_location(mod_name, ref.target)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {ref.target}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module  # before exec: dataclasses and pickling look it up
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(mod_name, None)
            raise
        return module
    except WorkflowError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code: report what broke, with the file
        log.debug("importing producer %s:\n%s", ref.target, traceback.format_exc())
        raise ProducerError(f"producer {ref.name!r} ({ref.origin}) failed to import: "
                            f"{type(exc).__name__}: {exc}") from exc


# -- the loaded producer ---------------------------------------------------------------------------------
def _summary(doc: str | None) -> str:
    for line in (doc or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return "(no docstring)"


@dataclass
class Producer:
    """A loaded producer module plus the reference it was loaded from."""

    ref: ProducerRef
    module: ModuleType

    @property
    def name(self) -> str:
        return self.ref.name

    @property
    def doc(self) -> str:
        return (self.module.__doc__ or "").strip()

    @property
    def summary(self) -> str:
        return _summary(self.module.__doc__)

    def add_cli_args(self, parser: argparse._ActionsContainer) -> None:
        fn = getattr(self.module, "add_cli_args", None)
        if fn is not None:
            fn(parser)

    def _call_hook(self, hook: str, args: argparse.Namespace) -> Any:
        fn = getattr(self.module, hook, None)
        if fn is None:
            return None
        try:
            return fn(args)
        except WorkflowError:
            raise
        except Exception as exc:  # noqa: BLE001 - user code
            log.debug("producer %s %s:\n%s", self.name, hook, traceback.format_exc())
            raise ProducerError(f"producer {self.name!r} failed in {hook}(): "
                                f"{type(exc).__name__}: {exc}") from exc

    def init(self, args: argparse.Namespace) -> None:
        self._call_hook("init", args)

    def shutdown(self, args: argparse.Namespace) -> None:
        self._call_hook("shutdown", args)

    def feature_names(self, args: argparse.Namespace) -> list[str] | None:
        names = self._call_hook("feature_names", args)
        return None if names is None else [str(n) for n in names]

    def produce(self, ecdc_path: Path, frames: int, args: argparse.Namespace) -> dict[str, tuple[np.ndarray, FeatureInfo]]:
        """Call the module's ``produce`` and normalise its answer to ``{name: (values, info)}``.

        Any failure becomes a :class:`ProducerError` naming the producer and the file; the
        values' length and finiteness are checked later by ``sidecar.merge_features``.
        """
        where = str(ecdc_path)
        try:
            raw = self.module.produce(Path(ecdc_path), int(frames), args=args)
        except Exception as exc:  # noqa: BLE001 - one file's failure, reported with its name
            if not isinstance(exc, WorkflowError):
                log.debug("producer %s on %s:\n%s", self.name, where, traceback.format_exc())
                detail = f"{type(exc).__name__}: {exc}"
            else:
                detail = str(exc)
            raise ProducerError(f"{where}: producer {self.name!r} failed: {detail}") from exc
        return normalise_output(raw, self.name, where)


def normalise_output(raw: Any, producer: str, where: str) -> dict[str, tuple[np.ndarray, FeatureInfo]]:
    """Check the shape of a ``produce`` answer; build each column's :class:`FeatureInfo`."""
    who = f"{where}: producer {producer!r}"
    if not isinstance(raw, Mapping):
        raise ProducerError(f"{who} returned {type(raw).__name__}, expected a dict "
                            "{feature_name: values or {'values': ..., 'units': ...}}")
    out: dict[str, tuple[np.ndarray, FeatureInfo]] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not name.strip():
            raise ProducerError(f"{who} returned an invalid feature name {name!r} (need a non-empty string)")
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(INFO_KEYS))
            if unknown:
                raise ProducerError(f"{who}: feature {name!r} has unknown key(s) {unknown}; "
                                    f"allowed: {', '.join(INFO_KEYS)}")
            if "values" not in value:
                raise ProducerError(f"{who}: feature {name!r} is a dict without 'values'")
            info = FeatureInfo(producer=producer)
            for key in ("units", "doc_string"):
                if value.get(key) is not None:
                    setattr(info, key, str(value[key]))
            lo, hi = value.get("min"), value.get("max")
            if (lo is None) != (hi is None):
                raise ProducerError(f"{who}: feature {name!r} gives only one of min/max; give both "
                                    "(the normalisation range) or neither")
            if lo is not None:
                try:
                    lo, hi = float(lo), float(hi)
                except (TypeError, ValueError):
                    raise ProducerError(f"{who}: feature {name!r} has non-numeric min/max "
                                        f"({value.get('min')!r}, {value.get('max')!r})") from None
                if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                    raise ProducerError(f"{who}: feature {name!r} has an invalid range [{lo}, {hi}]")
                info.min, info.max, info.range_from = lo, hi, "producer"
            values = value["values"]
        else:
            values, info = value, FeatureInfo(producer=producer)
        try:
            arr = np.asarray(values, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ProducerError(f"{who} gave non-numeric values for {name!r} ({exc})") from exc
        out[name] = (arr, info)
    return out


def load(name: str, producers_dir: Path | str | None = None) -> Producer:
    """Resolve and import one producer; checks that it has a callable ``produce``."""
    return load_ref(resolve(name, producers_dir))


def load_ref(ref: ProducerRef) -> Producer:
    module = import_module(ref)
    if not callable(getattr(module, "produce", None)):
        raise ProducerError(f"producer {ref.name!r} ({ref.origin}) has no produce(ecdc_path, T, *, args) "
                            "function")
    return Producer(ref, module)


def load_all(names: Sequence[str], producers_dir: Path | str | None = None) -> list[Producer]:
    """Load several producers, refusing the same one twice."""
    producers = [load(n, producers_dir) for n in names]
    seen: dict[ProducerRef, str] = {}
    for n, p in zip(names, producers):
        if p.ref in seen:
            raise UsageError(f"producer {n!r} given twice (as {seen[p.ref]!r} and {n!r})")
        seen[p.ref] = n
    return producers


# -- per-process activation (init once, shutdown once) --------------------------------------------------
# Producers keep state in module globals set by init(args). The main process initialises them
# before any work starts; forked worker processes inherit that state (and this registry), while
# spawned workers or a fresh interpreter find the registry empty and initialise on first use.
_ACTIVE: dict[ProducerRef, Producer] = {}


def activate(producers: Sequence[Producer], args: argparse.Namespace) -> None:
    """``init(args)`` each producer in this process and register it for :func:`ensure_active`.

    If one fails, the ones already started are shut down again before the error propagates.
    """
    started: list[Producer] = []
    try:
        for p in producers:
            p.init(args)
            started.append(p)
            _ACTIVE[p.ref] = p
    except BaseException:
        deactivate(args, started)
        raise


def ensure_active(ref: ProducerRef, args: argparse.Namespace) -> Producer:
    """The initialised producer for ``ref`` in this process, importing and initialising it if
    this process has not seen it (a spawned worker)."""
    p = _ACTIVE.get(ref)
    if p is None:
        p = load_ref(ref)
        p.init(args)
        _ACTIVE[ref] = p
    return p


def deactivate(args: argparse.Namespace, producers: Sequence[Producer] | None = None) -> None:
    """``shutdown(args)`` the active producers (last started first) and forget them.

    Every producer gets its shutdown even if another's fails; the first failure is re-raised.
    """
    todo = list(producers) if producers is not None else list(_ACTIVE.values())
    first: BaseException | None = None
    for p in reversed(todo):
        _ACTIVE.pop(p.ref, None)
        try:
            p.shutdown(args)
        except Exception as exc:  # noqa: BLE001 - keep shutting the others down
            log.warning("%s", exc)
            first = first or exc
    if first is not None:
        raise first


# -- listing and help ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Listing:
    name: str
    origin: str
    summary: str


def _doc_without_import(path: Path) -> str:
    """A file's module docstring read with ``ast`` (listing never runs user code)."""
    try:
        return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError) as exc:
        return f"(cannot read: {exc})"


def available(producers_dir: Path | str | None = None) -> list[Listing]:
    """Built-ins and the ``.py`` files of ``producers_dir`` with their one-line summaries."""
    rows = []
    here = Path(__file__).resolve().parent
    for name in BUILTINS:
        rows.append(Listing(name, "built-in", _summary(_doc_without_import(here / f"{name}.py"))))
    if producers_dir is not None:
        pdir = Path(producers_dir)
        if not pdir.is_dir():
            raise UsageError(f"--producers-dir {pdir} is not a folder")
        for path in sorted(pdir.glob("*.py")):
            if path.name.startswith(("_", ".")):
                continue
            rows.append(Listing(path.stem, str(pdir), _summary(_doc_without_import(path))))
    return rows


def format_listing(rows: Sequence[Listing]) -> str:
    width = max((len(r.name) for r in rows), default=4) + 2
    lines = []
    for origin in dict.fromkeys(r.origin for r in rows):
        lines.append("built-in producers:" if origin == "built-in" else f"producers in {origin}:")
        lines += [f"  {r.name:<{width}}{r.summary}" for r in rows if r.origin == origin]
    lines.append("\nshow one with --show-producer NAME, or its flags with --producer NAME --help")
    return "\n".join(lines)


def describe(producer: Producer) -> str:
    """The producer's docstring followed by its own flags (for ``--show-producer``)."""
    parser = argparse.ArgumentParser(prog=f"wf-sidecar-add --producer {producer.name}", add_help=False,
                                     usage=argparse.SUPPRESS, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_argument_group(f"flags of producer {producer.name}")
    producer.add_cli_args(group)
    flags = parser.format_help().strip() if group._group_actions else "(no flags of its own)"
    return f"{producer.name} ({producer.ref.origin})\n\n{producer.doc or '(no docstring)'}\n\n{flags}\n"
