"""Param producers: the protocol s4 (``wf-sidecar-add``) uses to add sidecar columns, and its loader.

A producer is a Python module with ``produce(ecdc_path, T, *, args) -> {name: values}`` and the
optional hooks ``add_cli_args``, ``init``, ``shutdown``, ``feature_names`` and
``feature_names_for``; it is named as a built-in (:data:`BUILTINS`), a ``.py`` in
``--producers-dir`` (a folder with ``__init__.py`` is imported as a package, so relative imports
work), a ``.py`` path or a dotted module. The protocol: ``paramproducers/README_paramproducers.md``.
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
HERE = Path(__file__).resolve().parent


def _dotted_in_builtin_package(folder: Path) -> str | None:
    """``paramproducers[.sub…]`` if ``folder`` is this package or a sub-package of it, else None."""
    try:
        rel = folder.resolve().relative_to(HERE)
    except ValueError:
        return None
    parts, cur = [], HERE
    for part in rel.parts:
        cur = cur / part
        if not (cur / "__init__.py").is_file():
            return None
        parts.append(part)
    return ".".join([__name__, *parts])


def _file_ref(path: Path) -> ProducerRef:
    """A ``.py`` file: in this package (the repository's own ``./paramproducers``), its module."""
    dotted = _dotted_in_builtin_package(path.parent)
    if dotted is not None:
        kind = "builtin" if dotted == __name__ and path.stem in BUILTINS else "module"
        return ProducerRef(path.stem, kind, f"{dotted}.{path.stem}")
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
        ref = _file_ref(pdir / f"{name}.py")
        if name in BUILTINS and ref.kind != "builtin":
            log.warning("%s shadows the built-in producer %r", pdir / f"{name}.py", name)
        return ref
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


def _private_package(folder: Path) -> str:
    """Import ``folder`` (which has ``__init__.py``) as a package under a private, stable name,
    so that its modules' relative imports (``from .const import X``) work."""
    digest = hashlib.sha1(str(folder).encode("utf-8")).hexdigest()[:10]
    pkg = f"_wf_producers_{digest}"
    if pkg not in sys.modules:
        spec = importlib.util.spec_from_file_location(pkg, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        _exec_new_module(pkg, spec, folder)
    return pkg


def _exec_new_module(name: str, spec: Any, origin: Path | str) -> ModuleType:
    """Create and run a module from ``spec``, registered as ``name`` before it runs (dataclasses
    and pickling look it up); a module that fails to import is not left behind."""
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {origin}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _import_file(ref: ProducerRef) -> ModuleType:
    path = Path(ref.target)
    if (path.parent / "__init__.py").is_file():
        return importlib.import_module(f"{_private_package(path.parent)}.{path.stem}")
    digest = hashlib.sha1(ref.target.encode("utf-8")).hexdigest()[:10]
    mod_name = f"_wf_producer_{ref.name}_{digest}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    return _exec_new_module(mod_name, importlib.util.spec_from_file_location(mod_name, ref.target), ref.target)


def import_module(ref: ProducerRef) -> ModuleType:
    """Import the producer's module: a file in a package folder as part of that package (under a
    private name), a loose file under a private module name, anything else by its dotted name."""
    try:
        return _import_file(ref) if ref.kind == "file" else importlib.import_module(ref.target)
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

    @property
    def can_name_per_file(self) -> bool:
        return callable(getattr(self.module, "feature_names_for", None))

    def feature_names_for(self, ecdc_path: Path, args: argparse.Namespace) -> list[str]:
        """The columns ``produce`` will return for this file, named cheaply (s4's pre-pass)."""
        try:
            return [str(n) for n in self.module.feature_names_for(Path(ecdc_path), args)]
        except Exception as exc:  # noqa: BLE001 - user code; the run reports this file
            raise ProducerError(f"{ecdc_path}: producer {self.name!r} failed in feature_names_for(): "
                                f"{type(exc).__name__}: {exc}") from exc

    def suggest_args(self, groups: Mapping[tuple[str, ...], list[str]], args: argparse.Namespace) -> list[str]:
        """Flags that would give every file the same columns (optional hook ``suggest_args``)."""
        fn = getattr(self.module, "suggest_args", None)
        return [str(a) for a in fn(dict(groups), args)] if callable(fn) else []

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
    error: str | None = None  # why the producer cannot be loaded (it is then not usable)


def _doc_without_import(path: Path) -> str:
    """A built-in's module docstring read with ``ast`` (listing built-ins imports nothing)."""
    try:
        return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError) as exc:
        return f"(cannot read: {exc})"


def _listing_of(path: Path, origin: str) -> Listing:
    """Load one ``--producers-dir`` file: only a producer that imports and has ``produce`` is usable."""
    try:
        producer = load_ref(_file_ref(path))
    except WorkflowError as exc:
        error = str(exc)
    except SystemExit as exc:  # user code that exits when imported is not usable either
        error = f"producer {path.stem!r} ({path}) exits when imported (SystemExit: {exc})"
    else:
        return Listing(path.stem, origin, producer.summary)
    return Listing(path.stem, origin, _summary(_doc_without_import(path)), error)


def available(producers_dir: Path | str | None = None) -> list[Listing]:
    """Built-ins, and the ``.py`` files of ``producers_dir`` (imported, to know that they load)."""
    rows = [Listing(name, "built-in", _summary(_doc_without_import(HERE / f"{name}.py"))) for name in BUILTINS]
    if producers_dir is not None:
        pdir = Path(producers_dir)
        if not pdir.is_dir():
            raise UsageError(f"--producers-dir {pdir} is not a folder")
        for path in sorted(pdir.glob("*.py")):
            if path.name.startswith(("_", ".")) or _file_ref(path).kind == "builtin":
                continue  # the repository's own folder: its built-ins are listed above
            rows.append(_listing_of(path, str(pdir)))
    return rows


def format_listing(rows: Sequence[Listing]) -> str:
    width = max((len(r.name) for r in rows), default=4) + 2
    lines = []
    usable = [r for r in rows if r.error is None]
    for origin in dict.fromkeys(r.origin for r in usable):
        lines.append("built-in producers:" if origin == "built-in" else f"producers in {origin}:")
        lines += [f"  {r.name:<{width}}{r.summary}" for r in usable if r.origin == origin]
    broken = [r for r in rows if r.error is not None]
    if broken:
        lines.append("\nnot usable (they fail to load):")
        lines += [f"  {r.name:<{width}}{r.error}" for r in broken]
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
