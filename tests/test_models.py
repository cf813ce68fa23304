import pytest
import torch

from aipic.models import tiny
from aipic.models.catalog import load_catalog
from aipic.common.errors import AipicError
from aipic.models.loading import Models, load_text_to_image


def test_tokenizer_built_from_open_clip_bpe_matches_open_clip():
    import open_clip

    hf = tiny.build_clip_tokenizer()
    reference = open_clip.get_tokenizer("ViT-B-32")
    assert hf.model_max_length == 77
    for text in ["a photo of a cat", "An astronaut riding a horse, oil painting!", "naïve café"]:
        ids = hf(text).input_ids
        expected = reference([text])[0]
        assert ids == expected[: len(ids)].tolist()
        assert expected[len(ids):].eq(0).all()


def test_tiny_stable_diffusion_is_deterministic_and_tiny():
    first, second = tiny.build_tiny_stable_diffusion(), tiny.build_tiny_stable_diffusion()
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(first, name).state_dict(), getattr(second, name).state_dict()
        assert all(torch.equal(a[key], b[key]) for key in a)
    assert sum(p.numel() for p in first.unet.parameters()) < 1_500_000
    assert first.vae_scale_factor == 8  # like the real Stable Diffusion VAE


def test_tiny_clip_encodes_text_and_images():
    model, preprocess, tokenizer = tiny.build_tiny_clip()
    from conftest import make_image

    with torch.no_grad():
        text = model.encode_text(tokenizer(["a photo of a dog"]))
        image = model.encode_image(preprocess(make_image()).unsqueeze(0))
    assert text.shape == image.shape == (1, 32)


def test_catalog_defaults_and_limits():
    catalog = load_catalog()
    assert catalog.entry("text_to_image").source == "stabilityai/sd-turbo"
    clip = catalog.entry("clip")
    assert (clip.source, clip.pretrained) == ("ViT-B-32", "laion2b_s34b_b79k")
    assert catalog.limits.max_batch >= 1
    with pytest.raises(AipicError, match="Unknown text_to_image model 'nope'"):
        catalog.entry("text_to_image", "nope")


def test_auto_mode_falls_back_to_placeholders_and_says_why():
    registry = Models(load_catalog(), mode="auto", device="cpu")
    model = registry.get("text_to_image")
    assert model.placeholder
    assert "in place of SD-Turbo" in model.note and "not on this machine" in model.note and "noise" in model.note
    assert model.describe()["placeholder"] is True
    clip = registry.get("clip")
    assert clip.placeholder and "ViT-B-32" in clip.note


def test_real_mode_reports_unloadable_model_clearly(tmp_path):
    entry = load_catalog().entry("text_to_image")
    missing = type(entry)(section=entry.section, key="x", source=str(tmp_path / "no-such-model"), label="Missing model")
    with pytest.raises(AipicError, match="Could not load Missing model"):
        load_text_to_image(missing, "real", torch.device("cpu"))


def test_model_mode_is_validated(monkeypatch):
    from aipic.common.settings import Settings

    monkeypatch.setenv("AIPIC_MODELS", "tiny")
    assert Settings.from_env().models_mode == "tiny"
    with pytest.raises(AipicError, match="Unknown model mode"):
        Settings.from_env(models_mode="huge")


def test_the_weights_revision_is_recorded_as_the_software_agent_version(tiny_pipeline):
    from aipic.models.loading import _hub_revision
    from aipic.provenance.manifest import software_agent

    assert _hub_revision("/cache/hub/models--stabilityai--sd-turbo/snapshots/1681ed09e0cff58eeb41e878a49893228b78b94c/model_index.json") == "1681ed09e0cff58eeb41e878a49893228b78b94c"
    assert _hub_revision("/some/local/dir/model_index.json") is None
    assert software_agent({"name": "stabilityai/sd-turbo", "revision": "1681ed0", "pretrained": None}) == {"name": "stabilityai/sd-turbo", "version": "1681ed0"}
    assert software_agent(tiny_pipeline.models.get("text_to_image").describe())["version"] == "random-weights"


def test_a_bucket_compiled_tower_pads_cuts_and_stays_on_its_own_thread():
    import threading

    from transformers.modeling_outputs import BaseModelOutputWithPooling

    from aipic.models.loading import BucketCompiled

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3, 2)

        def forward(self, x):
            return BaseModelOutputWithPooling(last_hidden_state=x * 2, pooler_output=self.linear(x))

    tower = Tower()
    wrapped = BucketCompiled(tower, (1, 4))
    seen = []

    def fake_compiled(x):  # stands in for the CUDA-graph version (CPU here): records the padded batch
        seen.append(x.shape[0])
        return tower(x)

    wrapped.compiled = fake_compiled
    x = torch.randn(3, 3)
    out = wrapped(x)
    assert seen == [4] and out.pooler_output.shape == (3, 2)
    assert torch.allclose(out.pooler_output, tower(x).pooler_output) and torch.allclose(out[0], x * 2)
    assert wrapped(torch.randn(5, 3)).pooler_output.shape == (5, 2) and seen == [4]  # above the largest bucket: eager
    other = []
    thread = threading.Thread(target=lambda: other.append(wrapped(torch.randn(1, 3)).pooler_output.shape))
    thread.start()
    thread.join()
    assert other == [(1, 2)] and seen == [4]  # another thread (the long-job lane) runs the eager tower

    def broken(x):
        raise RuntimeError("compiler failed")

    wrapped.compiled = broken
    assert wrapped(torch.randn(2, 3)).pooler_output.shape == (2, 2)  # falls back to the eager tower for good
    wrapped.compiled = fake_compiled
    wrapped(torch.randn(1, 3))
    assert seen == [4]
