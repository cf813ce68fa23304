"""The engine: one record per image flows through ordered stages.

    generate → audit → readback (GPU, batched) → [watermark] → encode + sign → store → registry (CPU pool)

A *job* is one validated request (a person's click, one CLI call, one row of an audit suite); it makes one
*record* per image.  The engine keeps a queue of jobs.  Its GPU loop (one thread, the only one that touches the
models, under the model lock) takes the oldest job and every queued job with the same ``batch_key`` (all the
settings that change the computation) up to ``max_gpu_batch`` images, waiting at most ``batch_wait_s`` for
company — Triton's dynamic batcher, Ray Serve's ``@serve.batch``.  The batch runs through the GPU stages as one
batch; then each record goes to a CPU worker pool for the finishing stages (encode, sign, store), so the GPU
never waits for a PNG encoder and a request never waits for another request's CPU work.  Each job's future
resolves with exactly its own records, or with its own error: a failure while finishing one job never touches
another.

Stages are small objects with a ``name``, a ``gpu`` flag and ``process(records)``; they set fields on the
records, or ``record.error`` for a record they cannot handle.  GPU stages come first (they share the batch and
the lock); the CPU stages run per record.  ``run_batch(jobs)`` runs a list of jobs in the caller's thread, each
resolving its own future: the whole contract an outside batcher needs (Ray Serve's ``@serve.batch`` or Gradio's
``batch=True`` hand it a list, and each caller awaits its own).
"""

from __future__ import annotations

import concurrent.futures
import logging
import sys
import threading
import time
from typing import Callable

from aipic.common.errors import AipicError, Blocked, ConfigError, StageFailed
from aipic.common.settings import Settings
from aipic.engine.jobs import Job, Record, Stage
from aipic.engine.lock import ModelLock
from aipic.engine.metrics import EngineMetrics

log = logging.getLogger(__name__)


def _torch_threads() -> int:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else 0


def _synchronize() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


# ---- the engine --------------------------------------------------------------------------------------------


class Engine:
    """A micro-batching GPU loop and a CPU pool over an ordered list of stages."""

    def __init__(self, stages: list[Stage], settings: Settings | None = None, metrics: EngineMetrics | None = None, lock: ModelLock | None = None):
        self.settings = settings or Settings()
        self.metrics = metrics or EngineMetrics()
        self.lock = lock or ModelLock()  # the model lock: only GPU stages take it
        gpu_flags = [stage.gpu for stage in stages]
        if gpu_flags != sorted(gpu_flags, reverse=True):
            raise ConfigError("GPU stages must come before CPU stages: " + " → ".join(s.name for s in stages))
        self.gpu_stages = [stage for stage in stages if stage.gpu]
        self.cpu_stages = [stage for stage in stages if not stage.gpu]
        self._queue: list[Job] = []
        self._cond = threading.Condition()
        self._closed = False
        self._pool = concurrent.futures.ThreadPoolExecutor(self.settings.finishing_threads, thread_name_prefix="aipic-finish")
        self._torch_threads = _torch_threads()
        # Two lanes, each with its own GPU thread over the one model lock: batched requests, and long jobs
        # (style transfer) that hand the lock over between their steps. A long job never holds the others back.
        self._threads = [] if self.settings.inline else [
            threading.Thread(target=self._gpu_loop, args=(lane,), name=f"aipic-gpu-{lane}", daemon=True) for lane in ("batch", "long")
        ]
        for thread in self._threads:
            thread.start()

    # ---- callers --------------------------------------------------------------------------------------

    def submit(self, job: Job) -> concurrent.futures.Future:
        """Queue a job; its future resolves with its records (in order), or with its own error."""
        return self.submit_many([job])[0]

    def submit_many(self, jobs: list[Job]) -> list[concurrent.futures.Future]:
        """Queue several jobs at once: the batcher sees them together, whatever the wait window."""
        if self.settings.inline:  # no GPU threads: the jobs run now, in this thread; their futures hold the results
            return self.run_batch(jobs)
        for job in jobs:
            self._prepare(job)
        with self._cond:
            if self._closed:
                raise AipicError("The engine is shutting down; please try again.")
            self._queue.extend(jobs)
            self.metrics.queue_depth.set(len(self._queue))
            self._cond.notify_all()
        return [job.future for job in jobs]

    def run(self, job: Job, timeout: float | None = None, on_wait: Callable[[], None] | None = None, every: float = 0.1) -> list[Record]:
        """Submit a job and wait for its records; raises its error. ``on_wait`` is called on the caller's thread
        every ``every`` seconds while it waits (to show progress where only that thread can)."""
        if self.settings.inline:
            return self.run_inline(job)
        future = self.submit(job)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                try:
                    return future.result(every if on_wait is not None else timeout)
                except concurrent.futures.TimeoutError:
                    if future.done() or on_wait is None or (deadline is not None and time.monotonic() > deadline):
                        raise
                    on_wait()
        except BaseException:
            if not future.done():
                job.cancel()
            raise

    def run_inline(self, job: Job) -> list[Record]:
        """The same stages in the caller's thread, one job, no batching across requests (ZeroGPU, where CUDA
        exists only inside the decorated call that runs this)."""
        self.run_batch([job])
        return job.future.result()

    def run_batch(self, jobs: list[Job]) -> list[concurrent.futures.Future]:
        """Run these jobs now, in the caller's thread: the GPU stages in as few batches as their batch keys and
        ``max_gpu_batch`` allow, then the finishing stages (in the CPU pool; in this thread in inline mode, so
        that every future is resolved when this returns).

        This is the executor seam. A batcher from the ecosystem (Ray Serve's ``@serve.batch``, Gradio's
        ``batch=True``) hands over a list of requests; each gets its own future, holding its own records or
        its own error, exactly as through the engine's own micro-batcher. A job of several images of which only
        some failed resolves with all its records; the failed ones carry ``record.error``."""
        if self._closed:
            raise AipicError("The engine is shutting down; please try again.")
        for job in jobs:
            self._prepare(job)
        running = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        finish = self._finish_here if self.settings.inline else self._finish
        for group in self._compatible_groups(running):
            self._run_gpu_batch(group, finish)
        return [job.future for job in jobs]

    def _compatible_groups(self, jobs: list[Job]) -> list[list[Job]]:
        """Jobs with equal batch keys, in order, cut at ``max_gpu_batch`` images (a job is never split)."""
        by_key: dict[tuple, list[list[Job]]] = {}
        for job in jobs:
            groups = by_key.setdefault(job.batch_key, [[]])
            if groups[-1] and sum(other.count for other in groups[-1]) + job.count > self.settings.max_gpu_batch:
                groups.append([])
            groups[-1].append(job)
        return [group for groups in by_key.values() for group in groups]

    @staticmethod
    def _prepare(job: Job) -> None:
        job.records = [Record(job=job, index=index, seed=seed) for index, seed in enumerate(job.seeds)]

    def warm_up(self, jobs: list[Job]) -> None:
        """Run the GPU stages once on these jobs as one batch, on the GPU thread (where compiled CUDA graphs
        must be recorded to be replayed); nothing is signed, stored or counted."""
        for job in jobs:
            job.warm_up = True
        for future in self.submit_many(jobs):
            future.result()

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking jobs, drop the queued ones, wait up to ``timeout`` for the GPU threads' running batches,
        then for the finishing work. A batch still on the GPU after that fails its jobs plainly when it ends."""
        with self._cond:
            self._closed = True
            for job in self._queue:
                job.future.cancel()
            self._queue.clear()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=timeout)
        self._pool.shutdown(wait=True)

    # ---- the GPU loop ----------------------------------------------------------------------------------

    def lane(self, job: Job) -> str:
        return "long" if job.family in self.settings.long_families and not job.warm_up else "batch"

    def _take_batch(self, lane: str = "batch") -> list[Job] | None:
        """Wait for work in this lane; return the oldest job and its compatible company (None when closing)."""
        with self._cond:
            while True:
                self._queue = [job for job in self._queue if not job.future.cancelled()]
                self.metrics.queue_depth.set(len(self._queue))
                if self._closed:
                    return None
                mine = [job for job in self._queue if self.lane(job) == lane]
                if not mine:
                    self._cond.wait()
                    continue
                head = mine[0]
                groups = self._compatible_groups([job for job in mine if job.batch_key == head.batch_key])
                chosen = groups[0]
                full = len(groups) > 1 or sum(job.count for job in chosen) >= self.settings.max_gpu_batch
                left = head.submitted + self.settings.batch_wait_s - time.monotonic()
                if full or left <= 0 or head.warm_up:  # warm-up jobs come together and wait for nobody
                    taken = {id(job) for job in chosen}
                    self._queue = [job for job in self._queue if id(job) not in taken]
                    self.metrics.queue_depth.set(len(self._queue))
                    # A job cancelled after this point still runs with its batch, unless all of them cancel.
                    return [job for job in chosen if job.future.set_running_or_notify_cancel()]
                self._cond.wait(left)

    def _gpu_loop(self, lane: str = "batch") -> None:
        # A new thread starts with OpenMP's default thread count, not the process's torch setting: on a CPU
        # device that halves the speed of the model. Carry the caller's setting over.
        if self._torch_threads:
            import torch

            torch.set_num_threads(self._torch_threads)
        while True:
            jobs = self._take_batch(lane)
            if jobs is None:
                return
            if not jobs:
                continue
            if lane == "long":
                for job in jobs:
                    job.yield_gpu = self.lock.yield_to_waiters
            if all(job.warm_up for job in jobs):
                self._warm(jobs)
                continue
            self._run_gpu_batch(jobs, self._finish)

    def _run_gpu_batch(self, jobs: list[Job], finish: Callable[[Job], None]) -> None:
        """The GPU stages on these jobs as one batch, then ``finish`` for each; a batch-wide failure is retried
        job by job, so it stays with the job that caused it."""
        try:
            self.process_batch(jobs)
        except BaseException as error:  # noqa: BLE001 - a batch-wide failure: retry each job alone
            if len(jobs) == 1:
                self._fail_job(jobs[0], error)
                return
            log.warning("a GPU batch of %d jobs failed (%s); retrying each job alone", len(jobs), type(error).__name__)
            for job in jobs:
                for record in job.records:
                    record.error = None
                try:
                    self.process_batch([job])
                except BaseException as single:  # noqa: BLE001
                    self._fail_job(job, single)
                    continue
                finish(job)
            return
        for job in jobs:
            finish(job)

    def _warm(self, jobs: list[Job]) -> None:
        try:
            records = self.process_batch(jobs, observe=False)
        except BaseException as error:  # noqa: BLE001
            for job in jobs:
                job.future.set_exception(error)
            return
        errors = [record.error for record in records if record.error is not None]
        for job in jobs:
            if errors:
                job.future.set_exception(errors[0])
            else:
                job.future.set_result(job.records)

    def process_batch(self, jobs: list[Job], observe: bool = True) -> list[Record]:
        """Run the GPU stages on the records of these jobs, as one batch under the model lock."""
        records = [record for job in jobs for record in job.records]
        with self.lock:
            for stage in self.gpu_stages:
                live = [record for record in records if record.error is None and record.blocked is None]
                if not live:
                    break
                start = time.perf_counter()
                stage.process(live)
                _synchronize()  # so each GPU stage's time is its own, not the asynchronous tail of the one before
                seconds = time.perf_counter() - start
                if observe:
                    self.metrics.observe_batch(stage.name, len(live), seconds)
                for record in live:
                    record.timings[stage.name] = seconds
        return records

    # ---- the CPU side ----------------------------------------------------------------------------------

    def _finish_record(self, record: Record) -> None:
        """The CPU stages on one record; a failing stage fails this record, nothing else."""
        for stage in self.cpu_stages:
            if record.error is not None or record.blocked is not None:
                break
            start = time.perf_counter()
            try:
                stage.process([record])
            except Exception as error:  # noqa: BLE001 - this record fails, nothing else
                record.error = error
            seconds = time.perf_counter() - start
            self.metrics.observe_stage(stage.name, seconds)
            record.timings[stage.name] = seconds

    def _finish_here(self, job: Job) -> None:
        """A job's CPU stages in the caller's thread (inline mode: no other thread may be needed to finish)."""
        for record in job.records:
            self._finish_record(record)
        self._resolve(job)

    def _finish(self, job: Job) -> None:
        """Hand a job's records to the CPU pool; the job resolves when the last of them is done."""
        remaining = [len(job.records)]
        guard = threading.Lock()

        def done() -> None:
            with guard:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                self._resolve(job)

        def one(record: Record) -> None:
            try:
                self._finish_record(record)
            finally:
                done()

        for record in job.records:
            try:
                self._pool.submit(one, record)
            except RuntimeError:  # the pool is shut: the engine closed while this batch was on the GPU
                record.error = AipicError("The service stopped before this image was finished; nothing was published. Please try again.")
                done()

    def _resolve(self, job: Job) -> None:
        """Resolve a job once all its records are done. It fails with its first error when none of its images
        was made; when some were, it resolves with all its records (the failed ones carry ``record.error``, a
        message for the person), so the images that are signed and recorded are not withheld from them."""
        failed = [record for record in job.records if record.error is not None]
        held_back = [record for record in job.records if record.blocked is not None]
        for record in held_back:
            self.metrics.held_back.labels(checker=record.blocked).inc()
        made = len(job.records) - len(failed) - len(held_back)
        if failed and not made:
            self._fail_job(job, failed[0].error)
            return
        if held_back and len(held_back) == len(job.records):
            self._fail_job(job, Blocked(len(held_back)))
            return
        for record in failed:
            record.error = self._public_error(job, record.error)
        self.metrics.requests.labels(task=job.task, outcome="partial" if failed else "ok").inc()
        job.future.set_result(job.records)

    def _fail_job(self, job: Job, error: BaseException) -> None:
        outcome = "bad_input" if isinstance(error, AipicError) and error.exit_code == 2 else "error"
        self.metrics.requests.labels(task=job.task, outcome=outcome).inc()
        if not job.future.done():
            job.future.set_exception(self._public_error(job, error))

    @staticmethod
    def _public_error(job: Job, error: BaseException | None) -> AipicError:
        """The error as the person sees it: an AipicError's own message; anything else is logged (by type, with
        its traceback; never the request's text) and becomes a plain StageFailed."""
        if isinstance(error, AipicError):
            return error
        log.error("a %s job failed in the engine: %s", job.task, type(error).__name__, exc_info=error)
        return StageFailed(f"Making this image failed ({type(error).__name__}). Nothing was published; please try again.")
