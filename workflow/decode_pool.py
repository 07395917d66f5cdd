"""Decode and resample s2's inputs in worker processes, so the encoding process only encodes.

:class:`ProcessLoader` wraps a picklable loader; the runner's pipeline calls it from as many
threads as there are processes, so at most that many files are being decoded and at most its
``prefetch`` loaded arrays wait (back-pressure). A process that dies on one file fails that file.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from workflow.errors import AudioReadError

log = logging.getLogger("workflow.s2_wav2encodec24")
# Libraries a decoding process may load; one thread each, so N processes use N cores.
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


class DecoderCrashError(AudioReadError):
    """The process decoding one input died without a Python error (a crash inside an audio
    library, or the out-of-memory killer)."""


def _one_thread_each() -> None:
    """Process initializer: decoding libraries run single-threaded in each worker."""
    for name in _THREAD_ENV:
        os.environ[name] = "1"
    if "torch" in sys.modules:  # inherited through fork: don't let it spawn a core's worth of threads
        sys.modules["torch"].set_num_threads(1)


def process_context() -> multiprocessing.context.BaseContext:
    """``forkserver`` on Linux (children fork from a clean single-threaded server that has imported
    the decoding code once, never from the encoding process with its torch and writer threads),
    ``spawn`` elsewhere."""
    if sys.platform.startswith("linux"):
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["workflow.encode"])  # imported once in the server, not per worker
        return ctx
    return multiprocessing.get_context("spawn")


class ProcessLoader:
    """Calls ``load(item)`` in one of ``processes`` worker processes and returns its result.

    Thread-safe. Exceptions raised by ``load`` come back as they are; if a worker dies, the pool
    is replaced and the item is retried alone in a fresh process, so only the file that kills
    its decoder fails (with :class:`DecoderCrashError`); the others are decoded again.
    """

    def __init__(self, load: Callable[[Any], Any], processes: int):
        self.load = load
        self.processes = max(1, int(processes))
        self._ctx = process_context()
        self._lock = threading.Lock()
        self._pool = self._new_pool(self.processes)
        self.completed = 0  # items whose result came back (for the back-pressure test and logs)

    def _new_pool(self, n: int) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(n, mp_context=self._ctx, initializer=_one_thread_each)

    def __call__(self, item: Any) -> Any:
        pool = self._pool
        try:
            result = pool.submit(self.load, item).result()
        except BrokenProcessPool:
            self._replace(pool)
            result = self._alone(item)
        with self._lock:
            self.completed += 1
        return result

    def _replace(self, broken: cf.ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:  # the first thread to notice replaces it
                log.warning("a decoding process died; restarting the pool and retrying its files one by one")
                self._pool = self._new_pool(self.processes)
        broken.shutdown(wait=False, cancel_futures=True)

    def _alone(self, item: Any) -> Any:
        with self._new_pool(1) as one:
            try:
                return one.submit(self.load, item).result()
            except BrokenProcessPool as exc:
                key = getattr(item, "key", item)
                raise DecoderCrashError(
                    f"{key}: the process decoding this file died (a crash in the audio library on a "
                    "corrupt file, or out of memory); check the file, e.g. re-encode it with ffmpeg, "
                    "or drop it") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ProcessLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
