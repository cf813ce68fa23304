import os

# Before anything imports huggingface_hub: never try the network (lookups otherwise hang for 20-45 s).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import io  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """One pipeline with the tiny random-weight models, shared by the tests (models load once)."""
    from aipic.pipeline import AipicPipeline

    home = tmp_path_factory.mktemp("aipic-home")
    return AipicPipeline(models_mode="tiny", device="cpu", home=home)


@pytest.fixture
def fresh_outputs(tiny_pipeline, tmp_path):
    """Point the shared pipeline's outputs at a test-local folder."""
    previous = tiny_pipeline.output_dir
    tiny_pipeline.output_dir = tmp_path / "outputs"
    yield tiny_pipeline.output_dir
    tiny_pipeline.output_dir = previous


def make_image(width=96, height=64, seed=0) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    data = (torch.rand(height, width, 3, generator=generator) * 255).to(torch.uint8).numpy()
    return Image.fromarray(data, "RGB")


def image_file(path, width=96, height=64, seed=0, fmt="PNG"):
    make_image(width, height, seed).save(path, format=fmt)
    return path


def png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
