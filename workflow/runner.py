"""The one executor every bulk stage uses: shards, skip-done, ``--dry-run``, workers, progress,
per-item errors, the JSON run report and the exit code, so that every stage behaves the same.

:meth:`Runner.map` runs independent items (s1) in processes or threads, at most 2 × workers in
flight; :meth:`Runner.pipeline` loads items in parallel and feeds them in order to one stateful
:class:`BatchSink` in the calling process (s2: decode in threads while the model encodes).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as _dt
import json
import logging
import multiprocessing
import os
import platform
import sys
import threading
import time
import traceback
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tqdm import tqdm

from .errors import UsageError, WorkflowError, describe_os_error
from .files import atomic_path, remove_stale_temps, select_shard

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Most items a thread-pool task takes at once (see _pool_round).
THREAD_CHUNK = 32

OK, SKIPPED, FAILED = "ok", "skipped", "failed"


class _Bar(tqdm):
    """tqdm without its monitor thread: a live thread would stop the pool from using ``fork``."""

    monitor_interval = 0


@dataclass(frozen=True)
class WorkItem:
    """One unit of work: ``key`` is the input's relative POSIX path (identity and shard key)."""

    key: str
    src: Path
    dst: Path


@dataclass
class ItemResult:
    key: str
    status: str
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class RunOptions:
    """The flags every bulk stage shares (see :func:`add_runner_args`)."""

    workers: int = 1
    overwrite: bool = False
    dry_run: bool = False
    skip_errors: bool = False
    shard_index: int = 0
    shard_count: int = 1
    report: Path | None = None
    progress: bool = True


@dataclass
class RunReport:
    """What a run did, item by item; written as JSON and summarised by the CLI."""

    stage: str
    params: dict[str, Any]
    started: str
    finished: str = ""
    seconds: float = 0.0
    shard_index: int = 0
    shard_count: int = 1
    dry_run: bool = False
    planned: int = 0
    results: list[ItemResult] = field(default_factory=list)
    host: str = field(default_factory=platform.node)
    report_error: str | None = None  # why the JSON report could not be written, if it could not

    def _count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def ok(self) -> int:
        return self._count(OK)

    @property
    def skipped(self) -> int:
        return self._count(SKIPPED)

    @property
    def failed(self) -> list[ItemResult]:
        return [r for r in self.results if r.status == FAILED]

    def with_flag(self, flag: str) -> list[ItemResult]:
        """Results whose ``info["flags"]`` contains ``flag`` (e.g. ``"silent"``)."""
        return [r for r in self.results if flag in r.info.get("flags", ())]

    def exit_code(self, skip_errors: bool = False) -> int:
        return 1 if (self.failed and not skip_errors) or self.report_error else 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["counts"] = self._counts()
        return d

    def _counts(self) -> dict[str, int]:
        return {"ok": self.ok, "skipped": self.skipped, "failed": len(self.failed), "total": len(self.results)}

    def write(self, path: Path) -> None:
        """The report as JSON (:meth:`to_dict`), written atomically and one result at a time: a
        million-file run never holds the whole report as dicts and text in memory."""
        head = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "results"}
        text = json.dumps({**head, "counts": self._counts()}, indent=2, default=str)
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text[:-2] + ',\n  "results": [')
            for i, r in enumerate(self.results):
                fh.write((",\n    " if i else "\n    ") + json.dumps(asdict(r), default=str))
            fh.write("\n  ]\n}\n")

    def summary(self) -> str:
        """A few human lines: counts, throughput, and the first failures with their reasons."""
        lines = [
            f"{self.stage}: {self.ok} done, {self.skipped} already done, "
            f"{len(self.failed)} failed in {self.seconds:.1f}s"
            + (f" (shard {self.shard_index}/{self.shard_count})" if self.shard_count > 1 else "")
        ]
        for r in self.failed[:10]:
            lines.append(f"  FAILED {r.key}: {r.error}")
        if len(self.failed) > 10:
            lines.append(f"  … and {len(self.failed) - 10} more (see the run report)")
        return "\n".join(lines)


class BatchSink(Protocol[T]):
    """Consumes loaded items in the main process; returns the items it has finished."""

    def add(self, item: WorkItem, payload: T) -> Iterable[tuple[WorkItem, dict | BaseException]]: ...

    def flush(self) -> Iterable[tuple[WorkItem, dict | BaseException]]: ...


def describe_error(exc: BaseException) -> str:
    """A one-line reason: our own errors speak for themselves, others get their type name."""
    if isinstance(exc, WorkflowError):
        return str(exc)
    if isinstance(exc, OSError) and describe_os_error(exc):
        return describe_os_error(exc)  # a full disk, an unwritable folder: no traceback needed
    return f"{type(exc).__name__}: {exc} (unexpected error; rerun with -v for the traceback)"


def _run_one(fn: Callable[[WorkItem], dict | None], item: WorkItem) -> ItemResult:
    """Call ``fn`` and turn any exception into a failed result (picklable across processes)."""
    t0 = time.perf_counter()
    try:
        info = fn(item) or {}
        return ItemResult(item.key, OK, time.perf_counter() - t0, info)
    except Exception as exc:  # noqa: BLE001 - one bad file must never stop the others
        if not isinstance(exc, WorkflowError):
            log.debug("unexpected error on %s:\n%s", item.key, traceback.format_exc())
        return ItemResult(item.key, FAILED, time.perf_counter() - t0, error=describe_error(exc))


def _run_chunk(fn: Callable[[WorkItem], dict | None], items: Sequence[WorkItem]) -> list[ItemResult]:
    return [_run_one(fn, it) for it in items]


def _chunks(items: Sequence[WorkItem], workers: int, executor: str) -> list[Sequence[WorkItem]]:
    """Tasks for a pool. Threads take items in chunks, since a future and a wake-up of the main
    thread per item cost ~0.2 ms, as much as a light item (a header read); chunks shrink as the
    queue drains (at most 1/8 of what is left per worker), so heavy items do not leave threads
    idle at the end. Processes take one item per task, so a crash points at one file."""
    out: list[Sequence[WorkItem]] = []
    i = 0
    while i < len(items):
        size = 1 if executor == "process" else max(1, min(THREAD_CHUNK, (len(items) - i) // (8 * workers)))
        out.append(items[i:i + size])
        i += size
    return out


def _pool_round(
    items: Sequence[WorkItem], fn: Callable, workers: int, executor: str, in_flight: int
) -> Generator[ItemResult, None, tuple[BaseException | None, set[str], set[str]]]:
    """Run ``items`` in one fresh pool, yielding results; stops early if the pool breaks.

    Returns (the pool's breaking error or None, keys started, keys finished).
    """
    pool: cf.Executor = (cf.ProcessPoolExecutor(workers, mp_context=_process_context())
                         if executor == "process" else cf.ThreadPoolExecutor(workers))
    started: set[str] = set()
    finished: set[str] = set()
    chunks = _chunks(items, workers, executor)

    def call(chunk: Sequence[WorkItem]) -> tuple:
        started.update(it.key for it in chunk)
        return (_run_chunk, fn, chunk)

    broken: BaseException | None = None
    with pool:
        try:
            # Back-pressure: at most ``in_flight`` items queued, so memory stays flat on a
            # million-file run and a Ctrl-C does not wait for a huge backlog.
            for chunk, fut in bounded_map(pool, call, chunks, in_flight):
                try:
                    res = fut.result()
                except cf.BrokenExecutor as exc:
                    broken = exc
                    continue
                for r in res:
                    finished.add(r.key)
                    yield r
        except cf.BrokenExecutor as exc:  # raised by submit() once the pool is broken
            broken = exc
    return broken, started, finished


def _process_context() -> multiprocessing.context.BaseContext:
    """``fork`` where it is safe (Linux, no other Python threads): workers inherit the loaded
    modules and start in milliseconds. Otherwise ``spawn``, which is always safe."""
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def default_is_done(item: WorkItem) -> bool:
    return item.dst.exists()


class Runner:
    """Runs one stage over a list of items with the shared flags in ``options``."""

    def __init__(self, stage: str, options: RunOptions, params: dict[str, Any] | None = None):
        self.stage = stage
        self.options = options
        self.params = dict(params or {})

    # -- planning -----------------------------------------------------------------------------
    def plan(
        self, items: Sequence[WorkItem], is_done: Callable[[WorkItem], bool] | None = None
    ) -> tuple[list[WorkItem], list[WorkItem]]:
        """Split this shard's items into (to do, already done)."""
        o = self.options
        mine = [items[i] for i in select_shard([it.key for it in items], o.shard_index, o.shard_count)]
        if o.overwrite:
            return mine, []
        check = is_done or default_is_done
        todo, done = [], []
        for it in mine:
            (done if check(it) else todo).append(it)
        return todo, done

    def _new_report(self) -> RunReport:
        o = self.options
        return RunReport(
            stage=self.stage, params=self.params,
            started=_dt.datetime.now().isoformat(timespec="seconds"),
            shard_index=o.shard_index, shard_count=o.shard_count, dry_run=o.dry_run,
        )

    def _finish(self, report: RunReport, t0: float) -> RunReport:
        report.seconds = time.perf_counter() - t0
        report.finished = _dt.datetime.now().isoformat(timespec="seconds")
        if self.options.report is not None and not self.options.dry_run:
            try:
                self.options.report.parent.mkdir(parents=True, exist_ok=True)
                report.write(self.options.report)
                log.info("run report written to %s", self.options.report)
            except OSError as exc:  # a read-only or full output folder must not lose the summary
                report.report_error = (
                    f"the run report {self.options.report} was not written: "
                    f"{describe_os_error(exc) or exc}; pass --report PATH to write it elsewhere")
        return report

    def _progress(self, total: int) -> tqdm:
        return _Bar(total=total, desc=self.stage, unit="file", dynamic_ncols=True,
                    disable=not self.options.progress, mininterval=0.5, file=sys.stderr)

    def _start(
        self, items: Sequence[WorkItem], is_done: Callable[[WorkItem], bool] | None
    ) -> tuple[RunReport, list[WorkItem], float]:
        t0 = time.perf_counter()
        report = self._new_report()
        todo, done = self.plan(items, is_done)
        report.planned = len(todo)
        report.results.extend(ItemResult(it.key, SKIPPED) for it in done)
        if self.options.dry_run:
            report.params["would_process"] = [it.key for it in todo]
        else:  # the hidden temp files of an earlier, killed run (a live writer's are kept)
            remove_stale_temps(sorted({it.dst.parent for it in items}))
        return report, todo, t0

    # -- independent items ----------------------------------------------------------------------
    def map(
        self,
        items: Sequence[WorkItem],
        fn: Callable[[WorkItem], dict | None],
        *,
        is_done: Callable[[WorkItem], bool] | None = None,
        executor: str = "process",
    ) -> RunReport:
        """Run ``fn`` on every item not yet done; ``fn`` must be picklable for processes."""
        report, todo, t0 = self._start(items, is_done)
        if self.options.dry_run or not todo:
            return self._finish(report, t0)
        workers = max(1, min(self.options.workers, len(todo)))
        with self._progress(len(todo)) as bar:
            for res in self._iter_map(todo, fn, workers, executor):
                report.results.append(res)
                if res.status == FAILED:
                    log.warning("%s failed: %s", res.key, res.error)
                    bar.set_postfix(failed=len(report.failed), refresh=False)
                bar.update(1)
        return self._finish(report, t0)

    @staticmethod
    def _iter_map(
        todo: Sequence[WorkItem], fn: Callable, workers: int, executor: str
    ) -> Iterator[ItemResult]:
        if workers == 1:
            for it in todo:
                yield _run_one(fn, it)
            return
        if executor not in ("process", "thread"):
            raise ValueError(f"unknown executor {executor!r}")
        queue = list(todo)
        while queue:
            broken, started, finished = yield from _pool_round(queue, fn, workers, executor, 2 * workers)
            if broken is None:
                return
            # A worker died (out-of-memory kill, a decoder segfault) and took the pool with it.
            # The items that were in flight are suspects: each is retried alone, so only the one
            # that really kills its worker is reported; items never started carry on as before.
            suspects = [it for it in queue if it.key in started and it.key not in finished]
            log.warning("a worker process died (%s); retrying %d in-flight item(s) one at a time",
                        broken, len(suspects))
            for it in suspects:
                died, _, _ = yield from _pool_round([it], fn, 1, executor, 1)
                if died is not None:
                    yield ItemResult(it.key, FAILED, error=(
                        "the worker process died while processing this file; it may need more "
                        "memory than is available, or crash its decoder"))
            queue = [it for it in queue if it.key not in started]

    # -- load in parallel, consume in order -------------------------------------------------------
    def pipeline(
        self,
        items: Sequence[WorkItem],
        load: Callable[[WorkItem], T],
        sink: BatchSink[T],
        *,
        is_done: Callable[[WorkItem], bool] | None = None,
        order: Callable[[list[WorkItem]], list[WorkItem]] | None = None,
        prefetch: int | None = None,
    ) -> RunReport:
        """Load items in ``options.workers`` threads and feed them, in order, to ``sink``.

        ``order`` may reorder the to-do list (e.g. by duration, so batches hold similar lengths).
        At most ``prefetch`` loaded items wait in memory.
        """
        report, todo, t0 = self._start(items, is_done)
        if self.options.dry_run or not todo:
            return self._finish(report, t0)
        if order is not None:
            todo = order(todo)
        workers = max(1, self.options.workers)
        prefetch = prefetch or 4 * workers
        started: dict[str, float] = {}

        def record(done: Iterable[tuple[WorkItem, dict | BaseException]], bar: tqdm) -> None:
            for it, outcome in done:
                dt = time.perf_counter() - started.pop(it.key, time.perf_counter())
                if isinstance(outcome, BaseException):
                    res = ItemResult(it.key, FAILED, dt, error=describe_error(outcome))
                    log.warning("%s failed: %s", it.key, res.error)
                else:
                    res = ItemResult(it.key, OK, dt, outcome or {})
                report.results.append(res)
                bar.update(1)
                if res.status == FAILED:
                    bar.set_postfix(failed=len(report.failed), refresh=False)

        def guarded_load(it: WorkItem) -> tuple[WorkItem, T | BaseException]:
            started[it.key] = time.perf_counter()
            try:
                return it, load(it)
            except Exception as exc:  # noqa: BLE001 - reported per item
                if not isinstance(exc, WorkflowError):
                    log.debug("unexpected error loading %s:\n%s", it.key, traceback.format_exc())
                return it, exc

        with self._progress(len(todo)) as bar, cf.ThreadPoolExecutor(workers) as pool:
            for _, fut in bounded_map(pool, lambda i: (guarded_load, i), todo, prefetch, ordered=True):
                it, payload = fut.result()  # guarded_load never raises
                if isinstance(payload, BaseException):
                    record([(it, payload)], bar)
                    continue
                try:
                    record(sink.add(it, payload), bar)
                except Exception as exc:  # noqa: BLE001 - a sink bug must not lose the report
                    record([(it, exc)], bar)
            record(sink.flush(), bar)
            # A sink that dropped an item must not make it vanish from the report.
            seen = {r.key for r in report.results}
            lost = [(it, RuntimeError("item was never completed by the stage (internal error)"))
                    for it in todo if it.key not in seen]
            record(lost, bar)
        return self._finish(report, t0)


def bounded_map(
    pool: cf.Executor,
    call: Callable[[Any], tuple],
    inputs: Iterable[Any],
    max_in_flight: int,
    *,
    ordered: bool = False,
) -> Iterator[tuple[Any, cf.Future]]:
    """Submit ``call(x) = (fn, *args)`` for each input, keeping at most ``max_in_flight`` pending.

    Yields ``(input, finished future)`` as they complete, or in input order when ``ordered``;
    the caller decides what a future's exception means.
    """
    it = iter(inputs)
    pending: dict[cf.Future, tuple[int, Any]] = {}
    ready: dict[int, tuple[Any, cf.Future]] = {}
    next_out = 0
    n = 0
    exhausted = False
    while True:
        while not exhausted and len(pending) + len(ready) < max_in_flight:
            try:
                x = next(it)
            except StopIteration:
                exhausted = True
                break
            fn, *args = call(x)
            pending[pool.submit(fn, *args)] = (n, x)
            n += 1
        if not pending and not ready:
            return
        if pending:
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                idx, x = pending.pop(fut)
                if ordered:
                    ready[idx] = (x, fut)
                else:
                    yield x, fut
        while ordered and next_out in ready:
            yield ready.pop(next_out)
            next_out += 1


# -- CLI helpers shared by the stage scripts ------------------------------------------------------
def add_runner_args(parser: argparse.ArgumentParser, *, workers_default: int = 1,
                    only: Sequence[str] | None = None, group: argparse._ArgumentGroup | None = None,
                    helps: Mapping[str, str] | None = None) -> None:
    """Add the flags every bulk stage shares.

    A stage that needs only some of them passes ``only`` (their dests, e.g. ``("workers",
    "verbose")``); ``group`` puts them in one of its own argument groups instead of the shared
    one, and ``helps`` rewords a flag's help for that stage (by dest).
    """
    flags: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [
        ("recursive", ("--recursive",), dict(
            action=argparse.BooleanOptionalAction, default=True,
            help="descend into sub-folders, mirroring the tree in the output (default: on)")),
        ("workers", ("--workers",), dict(
            type=int, default=workers_default, help=f"parallel workers (default: {workers_default})")),
        ("shard_index", ("--shard-index",), dict(
            type=int, default=0, help="this job's shard, 0-based (e.g. $SLURM_ARRAY_TASK_ID)")),
        ("shard_count", ("--shard-count",), dict(
            type=int, default=1,
            help="total shards; files are assigned by a stable hash of their relative path")),
        ("overwrite", ("--overwrite",), dict(
            action="store_true",
            help="redo items whose outputs already exist (default: skip them, i.e. resume)")),
        ("dry_run", ("--dry-run",), dict(action="store_true", help="list what would be done; write nothing")),
        ("skip_errors", ("--skip-errors",), dict(
            action="store_true", help="exit 0 even if some files failed (they are still reported)")),
        ("report", ("--report",), dict(
            type=Path, default=None,
            help="where to write the JSON run report (default: OUTPUT/.reports/<stage>-<time>.json)")),
        ("no_progress", ("--no-progress",), dict(action="store_true", help="no progress bar")),
        ("verbose", ("-v", "--verbose"), dict(
            action="count", default=0, help="more logging (-vv for debug)")),
    ]
    known = {dest for dest, _, _ in flags}
    unknown = sorted(set(only or ()) - known) + sorted(set(helps or {}) - known)
    if unknown:
        raise ValueError(f"add_runner_args: no shared flag(s) {', '.join(unknown)}")
    g = group if group is not None else parser.add_argument_group("run control (shared by all stages)")
    for dest, names, kwargs in flags:
        if only is not None and dest not in only:
            continue
        if helps and dest in helps:
            kwargs = {**kwargs, "help": helps[dest]}
        g.add_argument(*names, **kwargs)


@dataclass(frozen=True)
class FolderArg:
    """A folder a CLI takes either positionally (in declaration order) or with a named flag."""

    dest: str
    flags: tuple[str, ...]
    help: str
    metavar: str | None = None
    required: bool = True


#: The same names in every CLI: the folder read (the seed's ``--audio-root``) and the one written.
INPUT_FLAGS: tuple[str, ...] = ("--input", "--audio-root")
OUTPUT_FLAGS: tuple[str, ...] = ("--output",)
_POSITIONAL = "folder_arg_"


def add_folder_args(parser: argparse.ArgumentParser, folders: Sequence[FolderArg]) -> None:
    """Add each folder as an optional positional and as its flags; read them with
    :func:`parse_args`, which fills each from its flag, else from the positionals in order."""
    for f in folders:
        name = f.metavar or f.dest.upper()
        parser.add_argument(_POSITIONAL + f.dest, nargs="?", type=Path, default=None, metavar=name,
                            help=f"{f.help} (or {' / '.join(f.flags)} {name})")
        parser.add_argument(*f.flags, dest=f.dest, type=Path, default=None, metavar=name,
                            help=f"the {name} argument given by name")
    parser.set_defaults(**{_POSITIONAL: tuple(folders)})


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_intermixed_args`` (folders may come after options) + the folder rules of
    :func:`add_folder_args`: a missing or doubly given folder is a UsageError naming both forms."""
    args = parser.parse_intermixed_args(argv)
    folders: tuple[FolderArg, ...] = getattr(args, _POSITIONAL, ())
    loose = [getattr(args, _POSITIONAL + f.dest) for f in folders]
    loose = [x for x in loose if x is not None]
    for f in folders:
        delattr(args, _POSITIONAL + f.dest)
        if getattr(args, f.dest) is None and loose:
            setattr(args, f.dest, loose.pop(0))
    for extra in loose:
        same = [f for f in folders if getattr(args, f.dest) == extra]
        if not same:
            given = ", ".join(f"{f.flags[0]} {getattr(args, f.dest)}" for f in folders)
            raise UsageError(f"one folder too many: {extra} (already given: {given}); give each "
                             "folder once, by position or by name")
    for f in folders:
        if f.required and getattr(args, f.dest) is None:
            name = f.metavar or f.dest.upper()
            raise UsageError(f"no {name} given ({f.help}); pass it as an argument or with {f.flags[0]}")
    if folders:
        delattr(args, _POSITIONAL)
    return args


def options_from_args(args: argparse.Namespace, stage: str, out_root: Path | None) -> RunOptions:
    """Build :class:`RunOptions` from parsed shared flags; fills the default report path."""
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    report = args.report
    if report is None and out_root is not None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        suffix = f"-shard{args.shard_index}of{args.shard_count}" if args.shard_count > 1 else ""
        report = Path(out_root) / ".reports" / f"{stage}-{stamp}{suffix}-{os.getpid()}.json"
    return RunOptions(
        workers=args.workers, overwrite=args.overwrite, dry_run=args.dry_run,
        skip_errors=args.skip_errors, shard_index=args.shard_index, shard_count=args.shard_count,
        report=report, progress=not args.no_progress,
    )


def setup_logging(verbose: int = 0) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None, *,
            expected: tuple[type[Exception], ...] = ()) -> int:
    """Call a CLI's ``main``: usage errors print one line and exit 2; a WorkflowError (or one of
    the ``expected`` classes, e.g. training's TrainingError) or a full disk / unwritable folder
    (:func:`errors.describe_os_error`) one line and exit 1; Ctrl-C exits 130."""
    try:
        return main(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (WorkflowError, *expected) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk or an unwritable folder (errors.describe_os_error)
        message = describe_os_error(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished outputs are kept; re-run the same command to resume",
              file=sys.stderr)
        return 130


def print_report(report: RunReport, options: RunOptions) -> None:
    """The CLI's closing lines: summary, dry-run plan, and where the report is."""
    if report.dry_run:
        todo = report.params.get("would_process", [])
        print(f"{report.stage} (dry run): {len(todo)} to process, {report.skipped} already done")
        for key in todo[:20]:
            print(f"  would process {key}")
        if len(todo) > 20:
            print(f"  … and {len(todo) - 20} more")
        return
    print(report.summary())
    if report.report_error:
        print(f"error: {report.report_error}", file=sys.stderr)
    elif options.report is not None:
        print(f"report: {options.report}")
