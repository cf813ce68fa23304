"""The app's API under concurrent use: requests are merged into GPU batches (read from /metrics), each gets its own output."""

import urllib.request

import pytest

from aipic.engine.metrics import parse_text
from aipic.provenance.signing_identity import local_trust_anchors
from aipic.provenance.verify import verify_bytes
from conftest import running_app

pytestmark = pytest.mark.slow  # starts the app server

PROMPTS = ["a photo of a nurse", "a photo of a pilot", "a photo of a chef", "a photo of a teacher"]


@pytest.fixture(scope="module")
def batching_app(tmp_path_factory):
    # Four one-image requests fill a batch of four exactly; the long window makes that independent of timing.
    with running_app(tmp_path_factory.mktemp("api-home"), AIPIC_MAX_GPU_BATCH="4", AIPIC_BATCH_WAIT_MS="60000") as started:
        yield started


def metrics(url) -> dict:
    return parse_text(urllib.request.urlopen(url + "/metrics", timeout=30).read().decode())


def test_concurrent_api_requests_share_gpu_batches_and_each_gets_its_own_signed_file(batching_app):
    from gradio_client import Client

    url, home = batching_app
    client = Client(url, verbose=False)
    jobs = [client.submit(prompt, "", 100 + n, 2, 0, 64, 64, 1, "png", api_name="/text_to_image") for n, prompt in enumerate(PROMPTS)]
    results = [job.result(timeout=300) for job in jobs]

    samples = metrics(url)
    assert samples["aipic_requests_total"]["outcome=ok,task=text-to-image"] == len(PROMPTS)
    assert samples["aipic_gpu_batches_total"]["stage=generate"] < len(PROMPTS)
    assert samples["aipic_gpu_batches_total"]["stage=generate"] == 1
    anchors = local_trust_anchors(home / "keys")
    for n, (prompt, (_gallery, audit, files, panel, raw, _kept, _history, links, announced)) in enumerate(zip(PROMPTS, results)):
        [path] = files
        with open(path, "rb") as handle:
            result = verify_bytes(handle.read(), anchors)
        assert result.verdict == "trusted"
        assert result.contributions["human"]["prompt"] == prompt
        assert result.contributions["model"]["seed"] == 100 + n
        assert f"seed {100 + n}" in audit
        assert f"the prompt “{prompt}”" in panel and "Trusted" in panel
        assert any(a["label"] == "org.aipic.contributions" for a in raw["assertions"])
        assert "Download image 1 of 1 (PNG" in links and announced == "1 signed picture ready."


def test_bad_api_input_gets_a_clear_message(batching_app):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    url, _ = batching_app
    client = Client(url, verbose=False)
    with pytest.raises(AppError, match="Please enter a prompt"):
        client.predict("   ", "", 1, 2, 0, 64, 64, 1, "png", api_name="/text_to_image")
    assert metrics(url)["aipic_requests_total"].get("outcome=ok,task=text-to-image", 0) == len(PROMPTS)


def test_a_client_over_its_rate_limit_gets_a_clear_message(tmp_path_factory):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    with running_app(tmp_path_factory.mktemp("limited-home"), AIPIC_RATE_LIMIT="2") as (url, _):
        client = Client(url, verbose=False)
        junk = tmp_path_factory.mktemp("junk") / "junk.txt"
        junk.write_text("not an image")
        from gradio_client import handle_file

        messages = []
        for _ in range(3):
            try:
                client.predict(handle_file(str(junk)), api_name="/verify")
                messages.append("ok")
            except AppError as error:
                messages.append(str(error))
        assert messages[:2] == ["ok", "ok"]
        assert "Too many requests from you" in messages[2]


def test_direct_posts_cannot_bypass_the_queue(batching_app):
    import json

    url, _ = batching_app
    request = urllib.request.Request(url + "/gradio_api/run/text_to_image", data=json.dumps({"data": ["a cat", "", 1, 1, 0, 64, 64, 1, "png", False]}).encode(), headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 404 and b"join the queue" in refused.value.read()


def test_a_port_in_use_is_one_clear_line(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from aipic.common.data import REPO_ROOT

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "app.py", "--port", str(port), "--home", str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "AIPIC_MODELS": "tiny"})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(f"aipic: error: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("position, value, message", [(2, "abc", "Seed must be a whole number"), (3, "many", "Steps must be a whole number"), (4, "high", "Guidance must be a number")])
def test_non_numeric_api_values_get_a_clear_message(batching_app, position, value, message):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    url, _ = batching_app
    arguments = ["a lighthouse", "", 1, 2, 0, 64, 64, 1, "png"]
    arguments[position] = value
    with pytest.raises(AppError, match=message):
        Client(url, verbose=False).predict(*arguments, api_name="/text_to_image")


def test_the_public_api_lists_only_the_four_tasks(batching_app):
    """Helper events (previews, gallery selection, reuse seed, send to img2img, licence notes) are not in the API."""
    from gradio_client import Client

    url, _ = batching_app
    endpoints = Client(url, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert sorted(endpoints) == ["/image_to_image", "/style_transfer", "/text_to_image", "/verify"]


def test_the_api_enforces_the_cost_budget_and_the_pixel_limit_with_clear_messages(batching_app, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    from PIL import Image

    url, _ = batching_app
    client = Client(url, verbose=False)
    with pytest.raises(AppError, match="too large for one go"):
        client.predict("a cat", "", 1, 100, 0, 1024, 1024, 4, "png", api_name="/text_to_image")
    huge = tmp_path / "huge.png"
    Image.new("L", (11000, 11000)).save(huge, optimize=False, compress_level=9)  # a small file that decodes to 121 MP
    with pytest.raises(AppError, match="11000×11000; at most 16,777,216 pixels"):
        client.predict(handle_file(str(huge)), "as a painting", "", 0.5, 1, 2, 0, 1, "png", api_name="/image_to_image")
