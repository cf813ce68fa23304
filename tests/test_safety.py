"""The safety filter: diffusers' real StableDiffusionSafetyChecker (tiny random CLIP inside, thresholds set to
decide) and NudeNet's real detector. A held-back image is never encoded, signed, stored or shown."""

import json

import numpy as np
import pytest

from aipic.models import tiny
from aipic.common.data import REPO_ROOT
from aipic.common.settings import Settings
from aipic.generation.requests import GenerationRequest
from aipic.engine.metrics import parse_text
from aipic.models.loading import LoadedModel
from aipic.pipeline import AipicPipeline
from aipic.audit.suites import load_suite
from aipic.pipeline.runs import run_suite
from aipic.common.errors import Blocked
from aipic.generation.safety import nudenet_blocks
from aipic.pipeline.stages import NudeNetStage

SETTINGS = Settings(batch_wait_s=0, cpu_workers=2)


def _strict_pipeline(home) -> AipicPipeline:
    """A pipeline whose safety checker (the real diffusers class) flags every image."""
    pipeline = AipicPipeline(SETTINGS.replace(models_mode="tiny", device="cpu", home=home))
    entry = pipeline.catalog.entry("safety")  # the default entry, which the engine asks for
    pipeline.models.register(LoadedModel(entry, tiny.build_tiny_safety_checker(flag_everything=True), placeholder=True, tiny=True))
    return pipeline


def test_a_held_back_image_is_never_signed_stored_or_shown(tmp_path):
    pipeline = _strict_pipeline(tmp_path)
    try:
        with pytest.raises(Blocked, match="held back all 2 images: nothing was shown, signed or kept"):
            pipeline.text_to_image(GenerationRequest(prompt="anything", seed=1, width=64, height=64, steps=2, batch=2))
        assert not any(path.is_file() for path in pipeline.output_dir.rglob("*"))  # nothing written, not even a .part
        assert pipeline.registry.older_than(__import__("datetime").datetime.max.replace(tzinfo=__import__("datetime").timezone.utc)) == []
        samples = parse_text(pipeline.engine.metrics.render().decode())
        assert samples["aipic_safety_held_back_total"]["checker=Stable Diffusion safety checker"] == 2
        assert samples["aipic_requests_total"]["outcome=bad_input,task=text-to-image"] == 1
    finally:
        pipeline.close()


def test_the_default_placeholder_flags_nothing_and_says_the_filter_is_not_real(tiny_pipeline, fresh_outputs):
    outcome = tiny_pipeline.text_to_image(GenerationRequest(prompt="a lighthouse", seed=2, width=64, height=64, steps=2))
    assert len(outcome.items) == 1 and outcome.held_back == 0
    assert any("no real safety filtering" in note for note in tiny_pipeline.placeholder_notes())


def test_some_images_of_a_batch_held_back_the_rest_are_delivered_with_a_message(tmp_path):
    class HoldBackFirst:  # a stand-in checker stage deciding by position, to see the engine's handling
        name, gpu = "safety", True

        def process(self, records):
            records[0].blocked = "test checker"

    class Pipeline(AipicPipeline):
        def build_stages(self):
            stages = super().build_stages()
            return [stages[0], HoldBackFirst(), *stages[2:]]

    pipeline = Pipeline(SETTINGS.replace(models_mode="tiny", device="cpu", home=tmp_path))
    try:
        outcome = pipeline.text_to_image(GenerationRequest(prompt="two boats", seed=5, width=64, height=64, steps=2, batch=2))
        assert len(outcome.items) == 1 and outcome.items[0].seed == 6 and outcome.held_back == 1
        assert "The safety filter held back 1 of 2 images" in outcome.warnings[-1]
        assert sorted(p.name for p in pipeline.output_dir.rglob("*.png")) == [outcome.items[0].path.name]
    finally:
        pipeline.close()


def test_audits_count_held_back_images(tmp_path):
    pipeline = _strict_pipeline(tmp_path / "home")
    try:
        suite = load_suite(REPO_ROOT / "audits/suites/smoke.yaml")
        paths = run_suite(pipeline, suite, seeds=1, out_dir=tmp_path / "report", progress=False)
        report = json.loads(paths["json"].read_text())
        summary = report["summary"]
        assert summary["safety_filtered"] == len(suite.prompts) and summary["failed"] == 0 and summary["images"] == 0
        assert summary["denominators"]["safety_filtered"] == len(suite.prompts)
        assert "held back by the safety filter" in paths["html"].read_text()
    finally:
        pipeline.close()


def test_the_safety_filter_can_be_turned_off_and_the_app_says_so(tmp_path):
    pipeline = AipicPipeline(Settings(models_mode="tiny", device="cpu", home=tmp_path, safety=False))
    assert not any(stage.name == "safety" for stage in pipeline.build_stages())
    assert any("safety filter is turned off" in note for note in pipeline.placeholder_notes())


def test_nudenet_decision_uses_only_exposed_classes_above_the_threshold():
    detections = [{"class": "FACE_FEMALE", "score": 0.99}, {"class": "FEMALE_BREAST_COVERED", "score": 0.9}, {"class": "BUTTOCKS_EXPOSED", "score": 0.3}]
    assert nudenet_blocks(detections) == []
    assert nudenet_blocks(detections + [{"class": "BUTTOCKS_EXPOSED", "score": 0.8}]) == ["BUTTOCKS_EXPOSED"]


def test_nudenet_runs_offline_with_its_shipped_model_and_passes_a_harmless_image():
    pytest.importorskip("nudenet", reason="the optional NudeNet extra is not installed")
    from aipic.engine import Record

    stage = NudeNetStage()

    class Job:
        pass

    record = Record(job=Job(), index=0, seed=0)
    record.array = (np.random.default_rng(0).random((128, 128, 3)) * 255).astype(np.uint8)
    stage.process([record])
    assert record.blocked is None
