"""Worker processes for the CPU stages' heavy calls, out of the GPU loop's way.

Finishing an image (watermark, fingerprints, encoding, signing) is mostly C code, but enough of it holds
Python's GIL that 16 threads doing it slow the GPU loop's own Python down: on an H200 the same compiled batch of
16 took 134 ms to generate while the pool's threads encoded JPEGs and 183 ms while they encoded PNGs and hashed
(bench/results). With worker processes the CPU pool's threads only hand an image over and wait.

``WorkerPool(0)`` runs everything in the calling thread (the CPU default, the tests' and ZeroGPU's). The pool
knows nothing of what it runs: the functions it is handed (aipic.pipeline.finishing) import nothing from torch,
and their arguments and results are plain data (numpy arrays, bytes, dicts, dataclasses of strings).
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import threading
from concurrent.futures.process import BrokenProcessPool
from typing import Callable

from aipic.common.errors import AipicError, StageFailed, WorkerFailed

log = logging.getLogger(__name__)


class WorkerPool:
    """A lazily started pool of ``processes`` spawned worker processes (0: run in the calling thread)."""

    def __init__(self, processes: int = 0):
        self.processes = max(0, int(processes))
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._in_flight = 0  # calls being made now, here or in workers
        self._initializer: Callable | None = None  # what each worker runs when it starts (set by start)
        self._initargs: tuple = ()

    def _pool(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                # spawn, not fork: the parent holds CUDA and many threads, which a forked child must not inherit
                self._executor = concurrent.futures.ProcessPoolExecutor(
                    self.processes, mp_context=multiprocessing.get_context("spawn"), initializer=self._initializer, initargs=self._initargs)
                log.info("started %d finishing worker processes", self.processes)
            return self._executor

    def call(self, function, *args):
        """``function(*args)`` in a worker process, or here when nothing else is being finished (then there is
        no GIL to share with other finishing work, and the hand-over would only add latency: measured on an
        H200, one request's encode + sign took 9.8 ms in a thread and 14.5 ms through a worker); its errors
        are raised here."""
        with self._lock:
            alone = self._in_flight == 0
            self._in_flight += 1
        try:
            if not self.processes or alone:
                return _guarded(function, *args)
            return self._pool().submit(_guarded, function, *args).result()
        except BrokenProcessPool:
            with self._lock:  # a worker died (killed, out of memory): the next call starts a fresh pool
                broken, self._executor = self._executor, None
            if broken is not None:
                broken.shutdown(wait=False, cancel_futures=True)
            log.error("a finishing worker process died; starting new ones")
            raise StageFailed("Finishing this image failed (a worker process stopped). Nothing was published; please try again.") from None
        finally:
            with self._lock:
                self._in_flight -= 1

    def start(self, initializer: Callable | None = None, *initargs) -> None:
        """Start every worker now, each running ``initializer(*initargs)`` first (a warm-up, so that no request
        pays for a cold worker: on an H200, 20 requests one after another through 14 cold workers took 274 ms
        each to encode and sign). A worker started later, after one died, runs it too."""
        self._initializer, self._initargs = initializer, initargs
        if self.processes:
            pool = self._pool()
            for future in [pool.submit(os.getpid) for _ in range(self.processes)]:  # one per worker: each starts
                future.result()

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


def automatic_processes(cores: int | None = None) -> int:
    """Worker processes when none are configured on a GPU machine: all cores but two (the GPU loop and the
    app), at most 16; none on machines with fewer than 4 cores, where threads do as well."""
    cores = cores or os.cpu_count() or 1
    return min(16, cores - 2) if cores >= 4 else 0


def _guarded(function, *args):
    try:
        return function(*args)
    except AipicError:
        raise
    except Exception as error:  # noqa: BLE001 - library errors may not pickle: send their type name
        raise WorkerFailed(type(error).__name__) from None


