"""The engine: batching across requests, each request gets exactly its own outputs, failures stay with their request.

CPU and tiny models: these tests check behaviour, not speed (bench/ measures speed on a GPU).
"""

import threading

import numpy as np
import pytest
import torch

from aipic.common.settings import Settings
from aipic.common.errors import AipicError, ConfigError, StageFailed
from aipic.generation.diffusion import run_diffusion, run_diffusion_batch
from aipic.generation.requests import GenerationRequest
from aipic.pipeline.resolve import resolve_generation
from aipic.engine.metrics import parse_text
from aipic.pipeline import AipicPipeline
from aipic.pipeline.outcome import outcome_of
from conftest import make_image

# A long window and a batch limit that the test fills exactly: the batch runs when its last member arrives,
# so batching does not depend on timing.
BATCHING = Settings(max_gpu_batch=4, batch_wait_s=30.0, cpu_workers=2)


@pytest.fixture
def batching_pipeline(tmp_path):
    pipeline = AipicPipeline(BATCHING.replace(models_mode="tiny", device="cpu", home=tmp_path / "home"))
    yield pipeline
    pipeline.close()


def metric(pipeline, name, **labels):
    samples = parse_text(pipeline.engine.metrics.render().decode())
    key = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "all"
    return samples.get(name, {}).get(key, 0.0)


def small(prompt, seed, batch=1, **fields):
    return GenerationRequest(prompt=prompt, seed=seed, batch=batch, width=64, height=64, steps=2, **fields)


@pytest.mark.slow
def test_compatible_requests_share_one_gpu_batch_and_each_gets_its_own_signed_outputs(batching_pipeline):
    pipeline = batching_pipeline
    asked = [("a photo of a nurse", 11, 1), ("a photo of a pilot", 500, 2), ("a photo of a chef", 7, 1)]
    jobs = [pipeline.jobs.text_to_image(small(prompt, seed, batch)) for prompt, seed, batch in asked]
    futures = [pipeline.submit(job) for job in jobs]
    results = [future.result(timeout=120) for future in futures]

    assert metric(pipeline, "aipic_gpu_batches_total", stage="generate") == 1
    assert metric(pipeline, "aipic_batch_size_sum", stage="generate") == 4
    assert metric(pipeline, "aipic_requests_total", task="text-to-image", outcome="ok") == 3
    for (prompt, seed, batch), job, records in zip(asked, jobs, results):
        outcome = outcome_of(job, records)
        assert [item.seed for item in outcome.items] == [seed + i for i in range(batch)]
        for item in outcome.items:
            result = pipeline.verify(item.path)
            assert result.verdict == "trusted"
            assert result.contributions["human"]["prompt"] == prompt
            assert result.contributions["model"]["seed"] == item.seed
            assert result.audit == item.audit.to_dict()


def test_incompatible_requests_are_not_merged(batching_pipeline):
    pipeline = batching_pipeline
    pipeline.settings = pipeline.settings.replace(batch_wait_s=0.0)
    pipeline.close()
    first = pipeline.submit(pipeline.jobs.text_to_image(small("a cat", 1)))
    other_size = pipeline.submit(pipeline.jobs.text_to_image(GenerationRequest(prompt="a cat", seed=1, width=72, height=64, steps=2)))
    first.result(timeout=120), other_size.result(timeout=120)
    assert metric(pipeline, "aipic_gpu_batches_total", stage="generate") == 2


@pytest.mark.slow
def test_a_failure_while_finishing_one_request_fails_that_request_only(batching_pipeline, tmp_path):
    pipeline = batching_pipeline
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the output folder should be")
    good = [pipeline.jobs.text_to_image(small(f"a photo of person {n}", n)) for n in range(3)]
    bad = pipeline.jobs.text_to_image(small("a photo of a doomed request", 99))
    bad.output_dir = blocked
    futures = [pipeline.submit(job) for job in (good[0], bad, good[1], good[2])]

    with pytest.raises(StageFailed, match="Could not save the signed output"):
        futures[1].result(timeout=120)
    for job, future in zip(good, (futures[0], futures[2], futures[3])):
        [record] = future.result(timeout=120)
        assert pipeline.verify(record.path).contributions["human"]["prompt"] == job.human["prompt"]
    assert metric(pipeline, "aipic_gpu_batches_total", stage="generate") == 1  # they shared the GPU batch
    assert metric(pipeline, "aipic_requests_total", task="text-to-image", outcome="error") == 1
    assert metric(pipeline, "aipic_requests_total", task="text-to-image", outcome="ok") == 3
    assert not list(tmp_path.rglob("*.part"))


def test_a_failing_stage_slotted_into_the_chain_fails_only_its_record(tmp_path):
    """A later stage (a watermark, a registry sink) is one more object in the list; its failure stays local."""

    class Refuse:
        name, gpu = "refuse", False

        def process(self, records):
            for record in records:
                if "refuse" in record.job.human["prompt"]:
                    raise RuntimeError("sink unavailable")

    class Pipeline(AipicPipeline):
        def build_stages(self):
            return [*super().build_stages(), Refuse()]

    pipeline = Pipeline(BATCHING.replace(models_mode="tiny", device="cpu", home=tmp_path))
    try:
        ok = pipeline.submit(pipeline.jobs.text_to_image(small("keep me", 1, batch=3)))
        refused = pipeline.submit(pipeline.jobs.text_to_image(small("refuse me", 2)))
        with pytest.raises(StageFailed, match="Nothing was published"):
            refused.result(timeout=120)
        assert len(ok.result(timeout=120)) == 3
        assert metric(pipeline, "aipic_stage_seconds_count", stage="refuse") == 4
    finally:
        pipeline.close()


@pytest.mark.slow
def test_when_some_images_of_a_request_fail_the_others_are_delivered_and_the_failure_is_said(tmp_path, capsys):
    """Image 2 of 3 fails before it is signed: the person gets images 1 and 3 (signed, recorded), a warning
    that says which share failed and why, and the CLI's exit code for a failed stage; nothing of image 2 exists."""
    from aipic import cli

    class FailSecond:
        name, gpu = "fail_second", False

        def process(self, records):
            for record in records:
                if record.index == 1:
                    raise RuntimeError("disk controller on fire")

    class Pipeline(AipicPipeline):
        def build_stages(self):
            stages = super().build_stages()
            at = [stage.name for stage in stages].index("encode_sign")
            return [*stages[:at], FailSecond(), *stages[at:]]

    home = tmp_path / "home"
    pipeline = Pipeline(BATCHING.replace(models_mode="tiny", device="cpu", home=home))
    try:
        job = pipeline.jobs.text_to_image(small("a photo of a baker", 40, batch=3))
        records = pipeline.engine.run(job, timeout=120)
        outcome = outcome_of(job, records)
        assert [item.seed for item in outcome.items] == [40, 42]
        assert outcome.failed == 1
        assert outcome.warnings[-1] == ("1 of 3 images could not be finished: Making this image failed (RuntimeError). "
                                        "Nothing was published; please try again. The 2 shown are signed and recorded.")
        assert isinstance(records[1].error, StageFailed) and records[1].path is None
        for item in outcome.items:
            assert pipeline.verify(item.path).verdict == "trusted"
            assert pipeline.registry.get(item.id) is not None
        assert len(list((home / "outputs").rglob("aipic-*"))) == 2
        assert metric(pipeline, "aipic_requests_total", task="text-to-image", outcome="partial") == 1

        assert cli._outcome_exit(outcome) == StageFailed.exit_code
        cli._print_outcome(outcome, as_json=False)
        printed = capsys.readouterr()
        assert "warning: 1 of 3 images could not be finished" in printed.err
        assert [line.split()[0] for line in printed.out.splitlines() if "signed)" in line] == [str(item.path) for item in outcome.items]
    finally:
        pipeline.close()


def test_a_batch_still_on_the_gpu_when_the_engine_closes_fails_its_job_plainly():
    """close() waits only so long for a running batch; when that batch ends, its job fails with a message
    (the finishing pool is gone) instead of the GPU thread dying and leaving the caller waiting forever."""
    from aipic.engine import Engine, Job

    release = threading.Event()

    class SlowGpu:
        name, gpu = "slow", True

        def process(self, records):
            release.wait(60)

    class Finish:
        name, gpu = "finish", False

        def process(self, records):
            pass

    engine = Engine([SlowGpu(), Finish()], Settings(batch_wait_s=0.0, cpu_workers=1))
    job = Job(task="text-to-image", family="diffusion", request=None, batch_key=("k",), seeds=[1, 2], model=None, human={}, description="")
    future = engine.submit(job)
    while not future.running():
        threading.Event().wait(0.01)
    engine.close(timeout=0.05)
    release.set()
    with pytest.raises(AipicError, match="The service stopped before this image was finished"):
        future.result(timeout=30)
    for thread in engine._threads:  # the GPU threads ended normally
        thread.join(5)
        assert not thread.is_alive()


def test_a_cancelled_queued_request_is_dropped(batching_pipeline):
    pipeline = batching_pipeline
    waiting = pipeline.jobs.text_to_image(small("never made", 5))
    future = pipeline.submit(waiting)  # waits for company (30 s window)
    waiting.cancel()
    assert future.cancelled()
    full = pipeline.submit(pipeline.jobs.text_to_image(small("made", 6, batch=4)))  # fills a batch: runs now
    assert len(full.result(timeout=120)) == 4
    assert metric(pipeline, "aipic_batch_size_sum", stage="generate") == 4
    assert metric(pipeline, "aipic_queue_depth") == 0


def test_progress_is_reported_per_request_from_the_batched_call(batching_pipeline):
    pipeline = batching_pipeline
    seen = {"a": [], "b": []}
    lock = threading.Lock()

    def recorder(key):
        def progress(step, total):
            with lock:
                seen[key].append((step, total))

        return progress

    jobs = [pipeline.jobs.text_to_image(small("a", 1, batch=2), progress=recorder("a")), pipeline.jobs.text_to_image(small("b", 2, batch=2), progress=recorder("b"))]
    for future in [pipeline.submit(job) for job in jobs]:
        future.result(timeout=120)
    assert seen["a"] == seen["b"] == [(1, 2), (2, 2)]


@pytest.mark.slow
@pytest.mark.parametrize("output_format, mime, suffix", [("jpeg", "image/jpeg", ".jpg"), ("webp", "image/webp", ".webp"), ("png", "image/png", ".png")])
def test_every_output_format_is_signed(tiny_pipeline, fresh_outputs, output_format, mime, suffix):
    outcome = tiny_pipeline.text_to_image(small("a lighthouse", 3, output_format=output_format))
    [item] = outcome.items
    assert item.path.suffix == suffix and item.mime == mime
    assert tiny_pipeline.verify(item.path).verdict == "trusted"


def test_unknown_output_format_is_a_clear_error(tiny_pipeline):
    with pytest.raises(AipicError, match="Output format must be one of png, jpeg, webp"):
        tiny_pipeline.text_to_image(small("x", 1, output_format="bmp"))


def test_batched_and_single_generation_agree_within_tolerance(tiny_pipeline):
    sd = tiny_pipeline.models.get("text_to_image").obj
    defaults = {"steps": 3, "guidance": 5.0, "size": 64}
    first = resolve_generation(GenerationRequest(prompt="a red bicycle", negative_prompt="blurry", seed=3, batch=2), defaults, tiny_pipeline.catalog.limits)
    second = resolve_generation(GenerationRequest(prompt="a blue boat", seed=40), defaults, tiny_pipeline.catalog.limits)
    batched = run_diffusion_batch(sd, [first, second])
    alone = run_diffusion(sd, first) + run_diffusion(sd, second)
    together = [image for images in batched for image in images]
    assert [g.seed for g in together] == [g.seed for g in alone] == [3, 4, 40]
    for a, b in zip(together, alone):
        difference = np.abs(np.asarray(a.image, dtype=int) - np.asarray(b.image, dtype=int))
        assert difference.max() <= 2 and difference.mean() < 0.05
    assert not np.array_equal(np.asarray(together[0].image), np.asarray(together[2].image))


def test_padding_to_a_bucket_does_not_change_the_images(tiny_pipeline):
    sd = tiny_pipeline.models.get("text_to_image").obj
    request = resolve_generation(GenerationRequest(prompt="a kite", seed=9), {"steps": 2, "guidance": 0.0, "size": 64}, tiny_pipeline.catalog.limits)
    [plain] = run_diffusion_batch(sd, [request])[0]
    [padded] = run_diffusion_batch(sd, [request], pad_to=4)[0]
    assert np.abs(np.asarray(plain.image, dtype=int) - np.asarray(padded.image, dtype=int)).max() <= 2


def test_audit_on_tensors_agrees_with_the_pil_path(tiny_pipeline):
    auditor = tiny_pipeline.auditor
    images = [make_image(96, 64, seed=s) for s in range(3)]
    pixels = [torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255 for image in images]
    on_tensors = auditor.audit_pixels(pixels)
    on_pil = auditor.audit(images)
    for a, b in zip(on_tensors, on_pil):
        assert abs(a.person_probability - b.person_probability) < 0.02


def test_metrics_are_exposed_in_prometheus_format(batching_pipeline):
    text = batching_pipeline.engine.metrics.render().decode()
    for name in ("aipic_requests_total", "aipic_gpu_batches_total", "aipic_batch_size", "aipic_stage_seconds", "aipic_queue_depth"):
        assert f"# TYPE {name.removesuffix('_total')}" in text


def test_warm_up_runs_the_gpu_stages_without_storing_or_counting_and_does_not_wait(batching_pipeline):
    import time

    pipeline = batching_pipeline
    start = time.monotonic()
    pipeline.warm_up()
    assert time.monotonic() - start < BATCHING.batch_wait_s  # warm-up jobs never wait for company
    assert not pipeline.output_dir.exists()
    assert metric(pipeline, "aipic_gpu_batches_total", stage="generate") == 0
    assert metric(pipeline, "aipic_requests_total", task="text-to-image", outcome="ok") == 0


@pytest.mark.slow
def test_a_small_claim_thumbnail_is_an_option(tmp_path):
    import io

    import c2pa

    pipeline = AipicPipeline(Settings(models_mode="tiny", device="cpu", home=tmp_path, thumbnail=True, cpu_workers=1))
    try:
        [item] = pipeline.text_to_image(small("a kite", 1)).items
    finally:
        pipeline.close()
    with c2pa.Reader("image/png", io.BytesIO(item.path.read_bytes())) as reader:
        thumbnail = reader.get_active_manifest().get("thumbnail")
    assert thumbnail and thumbnail["format"] == "image/jpeg"
    assert pipeline.verify(item.path).verdict == "trusted"


def test_a_request_over_the_cost_budget_is_refused_before_it_runs(tiny_pipeline):
    with pytest.raises(AipicError, match="too large for one go: 419 million pixel-steps.*at most 120"):
        tiny_pipeline.jobs.text_to_image(GenerationRequest(prompt="x", width=1024, height=1024, steps=100, batch=4))


def test_a_request_running_past_the_time_limit_is_stopped_and_the_engine_goes_on(tmp_path):
    import dataclasses

    from aipic.models.catalog import load_catalog
    from aipic.generation.requests import StyleRequest
    from conftest import make_image

    catalog = load_catalog()
    catalog = dataclasses.replace(catalog, limits=dataclasses.replace(catalog.limits, max_seconds=0.5))
    pipeline = AipicPipeline(Settings(models_mode="tiny", device="cpu", home=tmp_path, cpu_workers=1), catalog=catalog)
    try:
        slow = pipeline.jobs.style(StyleRequest(content_image=make_image(96, 96), style_image=make_image(64, 64, seed=2), steps=500, size=96))
        with pytest.raises(AipicError, match="took longer than 0.5 s"):
            pipeline.run(slow)
        assert len(pipeline.text_to_image(small("next", 1)).items) == 1  # the engine is free again
    finally:
        pipeline.close()


def test_stop_aborts_a_running_request_once_all_of_its_batch_has_stopped(tmp_path):
    from aipic.generation.requests import StyleRequest
    from conftest import make_image

    pipeline = AipicPipeline(Settings(models_mode="tiny", device="cpu", home=tmp_path, cpu_workers=1))
    started = threading.Event()
    try:
        job = pipeline.jobs.style(StyleRequest(content_image=make_image(96, 96), style_image=make_image(64, 64, seed=2), steps=500, size=96),
                                 progress=lambda step, total: started.set())
        future = pipeline.submit(job)
        assert started.wait(60)
        job.cancel()  # running: the future cannot be cancelled, the batch is aborted at its next step
        with pytest.raises(AipicError, match="Stopped"):
            future.result(timeout=60)
        assert not list(tmp_path.rglob("outputs/**/*.png"))
    finally:
        pipeline.close()


@pytest.mark.slow
def test_a_long_style_job_does_not_hold_back_a_short_request(tmp_path):
    """Long jobs have their own lane: a running style transfer hands the model lock to waiting batches between
    its steps, so a quick text-to-image request finishes while the style transfer is still running."""
    from aipic.generation.requests import StyleRequest
    from conftest import make_image

    pipeline = AipicPipeline(Settings(models_mode="tiny", device="cpu", home=tmp_path, batch_wait_s=0, cpu_workers=2))
    started = threading.Event()
    steps: list[int] = []

    def progress(step, total):
        steps.append(step)
        started.set()

    try:
        pipeline.models.get("text_to_image")  # loaded before the race, so the quick request is quick
        style = pipeline.submit(pipeline.jobs.style(StyleRequest(content_image=make_image(256, 256), style_image=make_image(64, 64, seed=2), steps=500, size=256), progress=progress))
        assert started.wait(60)
        quick = pipeline.submit(pipeline.jobs.text_to_image(small("a quick one", 1)))
        assert len(quick.result(timeout=120)) == 1
        assert steps[-1] < 500  # the style transfer was still optimising when the quick request was done
        assert len(style.result(timeout=300)) == 1  # …and it still finishes, signed
    finally:
        pipeline.close()


@pytest.mark.slow
def test_inline_mode_runs_each_job_in_the_callers_thread_with_the_same_stages(tmp_path, monkeypatch):
    """ZeroGPU mode (SPACES_ZERO_GPU): no background GPU threads, no warm-up; every output still audited and signed."""
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    settings = Settings.from_env()
    assert settings.inline
    pipeline = AipicPipeline(settings.replace(models_mode="tiny", device="cpu", home=tmp_path))
    try:
        outcome = pipeline.text_to_image(small("inline", 3, batch=2))
        assert pipeline.engine._threads == []  # no GPU threads of its own: the job ran in this thread
        assert [item.seed for item in outcome.items] == [3, 4]
        assert all(pipeline.verify(item.path).verdict == "trusted" for item in outcome.items)
        assert pipeline.warm_up() == 0.0
        together = [pipeline.jobs.text_to_image(small("inline", seed)) for seed in (8, 9)]
        futures = pipeline.engine.submit_many(together)
        assert all(future.done() for future in futures)  # resolved in this thread, before submit_many returned
        assert metric(pipeline, "aipic_gpu_batches_total", stage="generate") == 2  # the first request, then both together
        with pytest.raises(AipicError, match="Please enter a prompt"):
            pipeline.text_to_image(small("", 1))
    finally:
        pipeline.close()


class LatentSampler:
    """A generator family that is not diffusion: decode seeded Gaussian latents with a VAE in one batched call
    (what a VAE family does). It plugs in beside diffusion and style transfer; no other stage changes."""

    family = "vae"

    def __init__(self):
        self.batches: list[int] = []

    def generate(self, jobs, on_step):
        vae = jobs[0].model.obj.vae
        side = jobs[0].request["side"] // 8
        seeds = [seed for job in jobs for seed in job.seeds]
        self.batches.append(len(seeds))
        latents = torch.cat([torch.randn(1, vae.config.latent_channels, side, side, generator=torch.Generator().manual_seed(seed)) for seed in seeds])
        with torch.no_grad():
            pixels = (vae.decode(latents / vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
        on_step(1, 1)
        out, start = [], 0
        for job in jobs:
            out.append([(pixels[start + k], seed, {"latent": "standard normal"}) for k, seed in enumerate(job.seeds)])
            start += job.count
        return out


def latent_job(pipeline, seed, count):
    from aipic.engine import Job

    model = pipeline.models.get("text_to_image")
    return Job(task="vae-sample", family="vae", request={"side": 64}, batch_key=("vae", model.entry.key, 64), seeds=[seed + i for i in range(count)],
               model=model, human={"parameters": {"seed": seed, "images": count}}, description="a sample from a VAE's latent space",
               output_dir=pipeline.output_dir)


@pytest.mark.slow
def test_a_new_generator_family_plugs_in_and_its_outputs_are_batched_audited_signed_and_recorded(tmp_path):
    sampler = LatentSampler()
    pipeline = AipicPipeline(BATCHING.replace(models_mode="tiny", device="cpu", home=tmp_path), generators=[sampler])
    try:
        jobs = [latent_job(pipeline, 40, 1), latent_job(pipeline, 900, 3)]
        results = [future.result(timeout=120) for future in [pipeline.submit(job) for job in jobs]]

        assert sampler.batches == [4]  # two requests, one GPU batch
        assert metric(pipeline, "aipic_requests_total", task="vae-sample", outcome="ok") == 2
        for job, records in zip(jobs, results):
            outcome = outcome_of(job, records)
            assert [item.seed for item in outcome.items] == job.seeds
            for item in outcome.items:
                result = pipeline.verify(item.path)
                assert result.verdict == "trusted"
                assert result.contributions["task"] == "vae-sample"
                assert result.contributions["human"]["parameters"] == {"seed": job.seeds[0], "images": job.count}
                assert result.contributions["model"]["seed"] == item.seed
                assert result.contributions["model"]["models"][0]["latent"] == "standard normal"
                assert result.audit == item.audit.to_dict()
                assert pipeline.registry.get(item.id).file_sha256 == item.sha256
    finally:
        pipeline.close()


def test_two_generators_for_one_family_are_a_configuration_error(tmp_path):
    from aipic.generation.families import DiffusionGenerator
    from aipic.pipeline.stages import GenerateStage

    with pytest.raises(ConfigError, match="Two generators for one family \\(diffusion\\)"):
        GenerateStage([DiffusionGenerator(), DiffusionGenerator()])


def test_an_outside_batcher_hands_run_batch_a_list_and_each_request_gets_its_own_outputs_or_error(batching_pipeline):
    """The executor seam for Ray Serve's @serve.batch or Gradio's batch=True: a list of mixed requests runs in the
    caller's thread as few GPU batches as the batch keys and max_gpu_batch (4) allow, and each future holds
    exactly its own request's signed outputs, or its own error."""
    pipeline = batching_pipeline
    asked = [("a nurse", 11, 1, 2), ("a pilot", 500, 2, 2), ("a chef", 7, 2, 2), ("a judge", 3, 1, 3)]  # prompt, seed, batch, steps
    jobs = [pipeline.jobs.text_to_image(GenerationRequest(prompt=p, seed=s, batch=b, width=64, height=64, steps=n)) for p, s, b, n in asked]
    orphan = latent_job(pipeline, 5, 1)  # a family this deployment has no generator for

    futures = pipeline.engine.run_batch([*jobs[:2], orphan, *jobs[2:]])

    with pytest.raises(AipicError, match="No generator for 'vae'"):
        futures[2].result(timeout=120)
    results = [future.result(timeout=120) for future in futures[:2] + futures[3:]]
    # steps=2: 1 + 2 images, then 2 more (over 4); steps=3: its own batch. The orphan never reached a batch.
    assert metric(pipeline, "aipic_gpu_batches_total", stage="generate") == 3
    assert metric(pipeline, "aipic_requests_total", task="text-to-image", outcome="ok") == 4
    for (prompt, seed, batch, steps), job, records in zip(asked, jobs, results):
        assert [record.seed for record in records] == [seed + i for i in range(batch)]
        for item in outcome_of(job, records).items:
            credentials = pipeline.credentials(item.path)
            assert credentials.verdict == "trusted"
            assert credentials.contributions["human"]["prompt"] == prompt
            assert credentials.contributions["human"]["parameters"]["steps"] == steps
            assert credentials.contributions["model"]["seed"] == item.seed


def test_a_request_may_ask_for_no_more_pictures_than_one_gpu_batch_holds(tmp_path):
    """A request is never split across GPU batches: with max_gpu_batch 2 (a small GPU), the pictures per request
    are limited to 2 wherever the limit is read (validation here, the app's slider), not run as a batch of 3."""
    pipeline = AipicPipeline(Settings(models_mode="tiny", device="cpu", home=tmp_path, max_gpu_batch=2, cpu_workers=2))
    try:
        assert pipeline.catalog.limits.max_batch == 2
        with pytest.raises(AipicError, match="Number of images.*2"):
            pipeline.jobs.text_to_image(small("three", 1, batch=3))
        assert len(pipeline.text_to_image(small("two", 1, batch=2)).items) == 2
    finally:
        pipeline.close()
