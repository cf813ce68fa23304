"""Finishing in worker processes: the same signed, recorded outputs as in threads, and failures stay local."""

import contextlib
import io
import os
import threading
import time

import pytest
from PIL import Image

from aipic.provenance import authorship
from aipic.common.settings import Settings
from aipic.common.errors import BadInput, StageFailed
from aipic.generation.requests import GenerationRequest
from aipic.common.images import open_user_image
from aipic.pipeline import AipicPipeline
from aipic.pipeline.outcome import outcome_of
from aipic.provenance.recovery import recover
from aipic.common.errors import WorkerFailed
from aipic.engine import WorkerPool, automatic_processes
from aipic.pipeline.finishing import initialise_worker, warm_up as warm_up_finishing

pytestmark = pytest.mark.slow  # starts worker processes


@pytest.fixture(scope="module")
def pool():
    pool = WorkerPool(1)
    yield pool
    pool.close()


@contextlib.contextmanager
def busy(pool):
    """Another image being finished meanwhile (in this process: it came alone), so calls go to the workers."""
    release = threading.Event()
    thread = threading.Thread(target=pool.call, args=(release.wait, 60))
    thread.start()
    while pool._in_flight == 0:
        time.sleep(0.01)
    try:
        yield
    finally:
        release.set()
        thread.join()


def test_a_call_that_comes_alone_runs_here_and_others_go_to_the_workers(pool):
    assert pool.call(os.getpid) == os.getpid()  # nothing else finishing: no hand-over
    with busy(pool):
        assert pool.call(os.getpid) != os.getpid()


def test_errors_come_back_typed_and_a_dead_worker_is_replaced(pool):
    with busy(pool):
        assert pool.call(max, 3, 4) == 4
        with pytest.raises(BadInput, match="Please provide the image"):  # aipic's own errors keep their type and message
            pool.call(open_user_image, None)
        with pytest.raises(WorkerFailed, match="ValueError"):  # anything else by its type's name only
            pool.call(int, "not a number")
        with pytest.raises(StageFailed, match="a worker process stopped"):
            pool.call(os._exit, 3)
        assert pool.call(max, 5, 6) == 6  # a fresh worker took over
    with pytest.raises(WorkerFailed, match="ValueError"):  # the same errors when it runs here
        pool.call(int, "not a number")


def test_finishing_warms_up_with_a_real_signature(tmp_path):
    from aipic.provenance.signing_identity import ensure_signing_identity

    assert warm_up_finishing(ensure_signing_identity(tmp_path / "keys")) and warm_up_finishing(None)


def test_processes_are_automatic_only_on_machines_with_cores_to_spare():
    assert automatic_processes(2) == 0 and automatic_processes(3) == 0
    assert automatic_processes(4) == 2 and automatic_processes(16) == 14 and automatic_processes(64) == 16
    with pytest.raises(Exception, match="cpu_processes must be 0"):
        Settings(cpu_processes=-1).check()


def test_outputs_finished_in_worker_processes_are_signed_watermarked_and_recorded(tmp_path):
    settings = Settings(max_gpu_batch=3, batch_wait_s=30.0, cpu_workers=3, cpu_processes=2)
    pipeline = AipicPipeline(settings.replace(models_mode="tiny", device="cpu", home=tmp_path / "home"))
    try:
        assert pipeline.workers.processes == 2
        pipeline.workers.start(initialise_worker, pipeline.identity)
        bad_author = authorship.Author(name="Mallory", chain_pem="not a certificate", key_pem="not a key")
        asked = [("a lighthouse", 11, None), ("a harbour", 40, bad_author), ("a ferry", 7, None)]
        jobs = [pipeline.jobs.text_to_image(GenerationRequest(prompt=p, seed=s, width=256, height=256, steps=2), author=a) for p, s, a in asked]
        futures = [pipeline.submit(job) for job in jobs]
        with pytest.raises(StageFailed, match="Nothing was published"):  # its signing failed in a worker: that request only
            futures[1].result(timeout=300)
        for (prompt, seed, _), job, future in zip(asked, jobs, futures):
            if job is jobs[1]:
                continue
            [item] = outcome_of(job, future.result(timeout=300)).items
            result = pipeline.verify(item.path)
            assert result.verdict == "trusted"
            assert result.contributions["human"]["prompt"] == prompt and result.contributions["model"]["seed"] == seed
            entry = pipeline.registry.get(item.id)
            assert entry is not None and entry.path == str(item.path) and entry.fingerprint == item.fingerprint
            assert item.watermark_id and entry.watermark_id == item.watermark_id  # marked in a worker, recorded here
            with Image.open(item.path) as image:  # a copy without credentials (the same pixels) is recognised by its watermark
                copy = io.BytesIO()
                image.convert("RGB").save(copy, "PNG")
            found = recover(copy.getvalue(), pipeline.registry.url)
            assert found is not None and found["output_id"] == item.id and found["matched_by"].startswith("watermark")
    finally:
        pipeline.close()


def test_without_worker_processes_errors_keep_their_type():
    """WorkerPool(0) (CPU machines, ZeroGPU) raises a failing call's own error, not an AttributeError."""
    def fails():
        raise StageFailed("this image could not be finished")

    with pytest.raises(StageFailed, match="could not be finished"):
        WorkerPool(0).call(fails)
    with pytest.raises(WorkerFailed, match="ValueError"):
        WorkerPool(0).call(int, "not a number")


def test_what_workers_run_imports_without_torch():
    """The functions pickled into worker processes (aipic.pipeline.finishing) import without torch or the models."""
    import subprocess
    import sys

    code = "import sys, aipic.pipeline.finishing; print('torch' in sys.modules, 'aipic.pipeline.service' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr
