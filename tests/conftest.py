import os

# Before anything imports huggingface_hub: never try the network (lookups otherwise hang for 20-45 s).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import contextlib  # noqa: E402
import io  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
import zlib  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

if (os.cpu_count() or 1) > 2:
    # At most two threads, like CI. Only when it changes something: on this 2-core machine an explicit
    # set_num_threads in the main thread halves the speed of torch in the engine's own thread (measured).
    torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def fast_tier_starts_no_process(request, monkeypatch):
    """The fast tier (make test-fast: -m "not slow") starts no app server, browser or other process: a test that
    does must be marked slow, or it fails here."""
    if request.node.get_closest_marker("slow") is None:
        def refuse(*args, **kwargs):
            raise AssertionError("this test starts a subprocess: mark it @pytest.mark.slow (the fast tier starts none)")

        monkeypatch.setattr(subprocess, "Popen", refuse)


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """One pipeline with the tiny random-weight models, shared by the tests (models load once)."""
    from aipic.common.settings import Settings
    from aipic.pipeline import AipicPipeline

    home = tmp_path_factory.mktemp("aipic-home")
    return AipicPipeline(Settings(models_mode="tiny", device="cpu", home=home))


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


def with_png_crcs(data: bytes | bytearray) -> bytes:
    """The PNG with every chunk's CRC made right again (as a careless editor rewrites them): after a byte of a
    chunk was changed the file still decodes, and only what the byte belongs to (a manifest in the caBX chunk)
    no longer matches its hash."""
    fixed = bytearray(data)
    position = 8
    while position < len(fixed):
        length = struct.unpack(">I", fixed[position : position + 4])[0]
        body = fixed[position + 4 : position + 8 + length]
        fixed[position + 8 + length : position + 12 + length] = struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
        position += 12 + length
    return bytes(fixed)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_app(home, **env_overrides):
    """Start the real app (python app.py, tiny models) on a free port; yields (url, home)."""
    from aipic.common.data import REPO_ROOT

    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "AIPIC_HOME": str(home), "AIPIC_MODELS": "tiny", "AIPIC_RATE_LIMIT": "0", "GRADIO_TEMP_DIR": str(home / "gradio-cache"), **env_overrides}
    log_path = home / "app.log"
    with log_path.open("w") as log:
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 180
            while True:
                if process.poll() is not None:
                    raise RuntimeError("app exited early:\n" + log_path.read_text())
                try:
                    urllib.request.urlopen(url, timeout=2)
                    break
                except OSError:
                    if time.time() > deadline:
                        raise RuntimeError("app did not start:\n" + log_path.read_text()) from None
                    time.sleep(0.5)
            yield url, home
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def interrupt_on(call_number: int, original):
    """A stand-in for a method that raises KeyboardInterrupt (Ctrl-C) on its call_number-th call."""
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call_number:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    return wrapper


def small_request(prompt: str = "a harbour at dawn", **fields):
    """A quick text-to-image request for the tiny models: 64×64, 2 steps, seed 3 unless given."""
    from aipic.generation.requests import GenerationRequest

    return GenerationRequest(**{"prompt": prompt, "seed": 3, "width": 64, "height": 64, "steps": 2, **fields})
