"""The public app as an anonymous attacker meets it: server files named as inputs, forged forwarded headers,
malformed calls, and a stop under load.

Every request here goes through the queue exactly as the browser sends it (POST /gradio_api/queue/join, then the
event stream), not through gradio_client, which would upload a local file instead of naming a server path.
"""

import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
from PIL import Image

from aipic.engine.metrics import parse_text
from conftest import running_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("attacked-home")) as started:
        yield started


def config(url) -> dict:
    return json.loads(urllib.request.urlopen(url + "/config", timeout=30).read())


def endpoint(url, api_name) -> tuple[int, list[int], list[int]]:
    """(fn_index, the input component ids, the positions of the file-taking inputs) of a named endpoint."""
    conf = config(url)
    kinds = {component["id"]: component["type"] for component in conf["components"]}
    dependency = next(d for d in conf["dependencies"] if d.get("api_name") == api_name)
    inputs = dependency["inputs"]
    return dependency["id"], inputs, [n for n, component in enumerate(inputs) if kinds[component] in ("image", "file")]


def through_the_queue(url, fn_index: int, data: list, headers: dict | None = None) -> dict:
    """Join the queue as the browser does and return the event's completion message."""
    session = uuid.uuid4().hex[:12]
    body = json.dumps({"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}).encode()
    join = urllib.request.Request(url + "/gradio_api/queue/join", data=body, headers={"Content-Type": "application/json", **(headers or {})})
    urllib.request.urlopen(join, timeout=30).read()
    with urllib.request.urlopen(url + f"/gradio_api/queue/data?session_hash={session}", timeout=120) as stream:
        for line in stream:
            text = line.decode().strip()
            if text.startswith("data:"):
                message = json.loads(text[5:])
                if message.get("msg") in ("process_completed", "unexpected_error"):
                    return message
    raise AssertionError("the event stream ended without a result")


def secrets_of(home) -> dict:
    return {
        "CA key": home / "keys" / "ca-key.pem",
        "signer key": home / "keys" / "signer-key.pem",
        "CA key backup": home / "keys-backup" / "ca-key.pem",
        "registry": home / "registry.sqlite3",
        "/etc/passwd": "/etc/passwd",
    }


@pytest.mark.parametrize("api_name", ["image_to_image", "style_transfer", "verify"])
def test_a_server_path_named_as_an_input_is_refused_copied_nowhere_and_served_never(app, api_name):
    url, home = app
    fn_index, inputs, file_positions = endpoint(url, api_name)
    assert file_positions, f"{api_name} takes a file"
    secrets = secrets_of(home)
    contents = {name: open(path, "rb").read() for name, path in secrets.items()}
    for name, path in secrets.items():
        for position in file_positions:
            data = [None] * len(inputs)
            data[position] = {"path": str(path), "meta": {"_type": "gradio.FileData"}, "orig_name": "photo.png"}
            message = through_the_queue(url, fn_index, data)
            assert message.get("success") is False, f"{api_name} accepted {name}"
            shown = json.dumps(message)
            assert str(home) not in shown and str(path) not in shown and "BEGIN" not in shown, f"{api_name} told the client about {name}: {shown[:300]}"
    cache = home / "gradio-cache"
    for copied in (p for p in cache.rglob("*") if p.is_file()) if cache.is_dir() else ():
        assert copied.read_bytes() not in contents.values(), f"{copied} is a copy of a server secret"
    for path in secrets.values():
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + f"/gradio_api/file={path}", timeout=30)
        assert refused.value.code == 403


def test_a_normal_upload_still_works(app, tmp_path):
    from gradio_client import Client, handle_file

    url, _ = app
    picture = tmp_path / "holiday.png"
    Image.new("RGB", (64, 48), (200, 120, 40)).save(picture)
    report, details = Client(url, verbose=False).predict(handle_file(str(picture)), api_name="/verify")
    assert details["verdict"] == "no_credentials" and "Neither signed nor recognised" in report


def test_outputs_are_served_but_staging_and_quarantine_are_not(app, tmp_path):
    url, home = app
    for folder in (home / "outputs" / ".staging", home / "quarantine"):
        folder.mkdir(parents=True, exist_ok=True)
        hidden = folder / "hidden.png"
        Image.new("RGB", (8, 8)).save(hidden)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + f"/gradio_api/file={hidden}", timeout=30)
        assert refused.value.code == 403
    visible = home / "outputs" / "visible.png"
    Image.new("RGB", (8, 8)).save(visible)
    assert urllib.request.urlopen(url + f"/gradio_api/file={visible}", timeout=30).status == 200


def test_too_few_inputs_get_a_plain_error_and_the_prompt_never_reaches_the_log(app):
    url, home = app
    secret = f"a secret prompt {uuid.uuid4().hex}"
    request = urllib.request.Request(url + "/gradio_api/call/text_to_image", data=json.dumps({"data": [secret]}).encode(), headers={"Content-Type": "application/json"})
    event_id = json.loads(urllib.request.urlopen(request, timeout=30).read())["event_id"]
    answer = urllib.request.urlopen(url + f"/gradio_api/call/text_to_image/{event_id}", timeout=60).read().decode()
    assert "event: error" in answer and "takes 18 inputs; the request gave 1" in answer
    time.sleep(0.5)
    assert secret not in (home / "app.log").read_text()


def _upload(url, path) -> dict:
    """Upload a file as the browser does; its FileData for an input."""
    boundary = uuid.uuid4().hex
    data = open(path, "rb").read()
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{os.path.basename(path)}\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "/gradio_api/upload", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    [server_path] = json.loads(urllib.request.urlopen(request, timeout=30).read())
    return {"path": server_path, "meta": {"_type": "gradio.FileData"}, "orig_name": os.path.basename(path)}


@pytest.mark.parametrize("trusted, forwarded, passed", [
    ("", ["203.0.113.1", "203.0.113.2", "203.0.113.3"], 2),  # forged headers from a local client change nothing
    ("127.0.0.1", ["203.0.113.1", "203.0.113.2", "203.0.113.3"], 3),  # a trusted proxy's header names each client
    ("127.0.0.1", ["203.0.113.9", "203.0.113.9", "203.0.113.9"], 2),  # …and the same client is limited
])
def test_forwarded_headers_count_only_from_trusted_proxies(tmp_path_factory, trusted, forwarded, passed):
    env = {"AIPIC_RATE_LIMIT": "2", **({"AIPIC_TRUSTED_PROXIES": trusted} if trusted else {})}
    with running_app(tmp_path_factory.mktemp("proxy-home"), **env) as (url, _):
        picture = tmp_path_factory.mktemp("upload") / "p.png"
        Image.new("RGB", (32, 32), (9, 9, 9)).save(picture)
        fn_index, inputs, _ = endpoint(url, "verify")
        outcomes = [through_the_queue(url, fn_index, [_upload(url, picture)], headers={"X-Forwarded-For": address}) for address in forwarded]
    ok = [message.get("success") for message in outcomes]
    assert ok == [True] * passed + [False] * (len(forwarded) - passed)
    if passed < len(forwarded):
        assert "Too many requests from you" in json.dumps(outcomes[-1])


def test_a_stop_under_load_logs_one_line_and_tells_the_waiting_clients(tmp_path_factory):
    from gradio_client import Client

    home = tmp_path_factory.mktemp("stopping-home")
    results: list = []
    with running_app(home, AIPIC_MAX_GPU_BATCH="4") as (url, _):
        def one(n):
            try:
                Client(url, verbose=False).predict(f"a prompt {n}", "", n, 40, 0, 256, 256, 4, "png", api_name="/text_to_image")
                results.append("done")
            except Exception as error:  # noqa: BLE001 - the stop is what this test makes happen
                results.append(str(error))

        threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in range(6)]
        for thread in threads:
            thread.start()
        deadline = time.time() + 120
        while "stage=generate" not in parse_text(urllib.request.urlopen(url + "/metrics", timeout=30).read().decode()).get("aipic_gpu_batches_total", {}):
            assert time.time() < deadline, "no batch ran"
            time.sleep(0.2)  # wait until the first batch has run; the others are queued or on the GPU
        before = len((home / "app.log").read_text().splitlines())
    for thread in threads:
        thread.join(timeout=60)
    after = (home / "app.log").read_text().splitlines()[before:]
    assert len(after) == 1 and "aipic stopping (signal 15)" in after[0], after
    assert any("The server is stopping" in result for result in results), results


def test_a_file_value_without_gradios_marker_is_refused_before_anything_opens_it(app, tmp_path):
    """Gradio checks only file values that carry its meta marker; a bare {"path": …} would reach the image
    component, which opens whatever it names. aipic checks every shape of value: a picture outside the upload
    cache (in a blocked folder, elsewhere on the server, in staging) and the registry are refused, unopened."""
    url, home = app
    planted = {"outside": tmp_path / "secret.png", "keys": home / "keys" / "picture.png", "staging": home / "outputs" / ".staging" / "x.png"}
    for path in planted.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), (0, 0, 255)).save(path)
    before = sorted(p for p in (home / "outputs").rglob("*.png") if ".staging" not in p.parts)
    for api_name in ("image_to_image", "style_transfer"):
        fn_index, inputs, positions = endpoint(url, api_name)
        for target in [*planted.values(), home / "registry.sqlite3"]:
            for position in positions:
                data = _defaults_for(api_name, len(inputs))
                data[position] = {"path": str(target)}
                message = through_the_queue(url, fn_index, data)
                assert message.get("success") is False and "This file was not uploaded to this app" in json.dumps(message), (api_name, target)
    assert sorted(p for p in (home / "outputs").rglob("*.png") if ".staging" not in p.parts) == before  # nothing was made from them


def _defaults_for(api_name: str, count: int) -> list:
    """Plausible values for every input of an endpoint (the UI's defaults), files left empty."""
    rights = ["allowed", "allowed", "allowed", "notAllowed", "", ""]
    values = {
        "image_to_image": [None, "as a watercolour", "", 0.6, 1, 2, 0, 1, "png", False, *rights, None, []],
        "style_transfer": [None, None, 2, 64, 100000.0, 0, "png", *rights, []],
    }[api_name]
    assert len(values) == count
    return list(values)


def test_inputs_that_cannot_be_read_get_aipics_words_and_their_values_stay_out_of_the_log(app, tmp_path):
    url, home = app
    marker = f"leak{uuid.uuid4().hex[:8]}"
    notes = tmp_path / f"{marker}.png"
    notes.write_text("my shopping list, not a picture")
    fn_index, inputs, _ = endpoint(url, "image_to_image")
    data = _defaults_for("image_to_image", len(inputs))
    data[0] = _upload(url, notes)
    message = through_the_queue(url, fn_index, data)
    assert "This file is not a picture aipic can read" in json.dumps(message) and str(tmp_path) not in json.dumps(message)
    style, style_inputs, _ = endpoint(url, "style_transfer")  # style transfer's two drop zones too
    values = _defaults_for("style_transfer", len(style_inputs))
    values[0], values[1] = _upload(url, notes), _upload(url, _picture(tmp_path / "ok-style.png"))
    message = through_the_queue(url, style, values)
    assert "This file is not a picture aipic can read" in json.dumps(message) and str(tmp_path) not in json.dumps(message)
    t2i, t2i_inputs, _ = endpoint(url, "text_to_image")
    values = ["a lighthouse", "", 1, 2, 0, 64, 64, 1, f"{marker}-format", False, "allowed", "allowed", "allowed", "notAllowed", "", "", f"{marker}-model\nINFO:aipic.app:FORGED", []]
    assert through_the_queue(url, t2i, values).get("success") is False
    data[0] = {"path": f"/nonexistent/{marker}\nINFO:aipic.app:FORGED", "meta": {"_type": "gradio.FileData"}}
    assert through_the_queue(url, fn_index, data).get("success") is False
    time.sleep(0.5)
    log = (home / "app.log").read_text()
    assert marker not in log and "FORGED" not in log


def test_uploads_count_against_the_clients_rate(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("upload-home"), AIPIC_RATE_LIMIT="1") as (url, _):
        picture = tmp_path_factory.mktemp("u") / "p.png"
        Image.new("RGB", (16, 16)).save(picture)
        statuses = []
        for _ in range(7):
            try:
                _upload(url, picture)
                statuses.append(200)
            except urllib.error.HTTPError as error:
                statuses.append(error.code)
                assert b"Too many requests from you" in error.read()
    assert statuses[:4] == [200] * 4 and 429 in statuses  # 4 uploads a minute per request allowed, bursts of 4


def test_embedded_pictures_folders_urls_and_unlisted_formats_are_refused_before_anything_reads_them(app, tmp_path):
    """A data: URL would be decoded (and re-encoded, losing its credentials) before any size or rate check; a
    folder in the upload cache would be kept as a temporary file and break the cache's cleaning; a URL would be
    fetched; an ICO holding a huge PNG is decoded by Pillow as soon as it is opened. All refused up front."""
    import base64
    import io

    url, home = app
    fn_index, inputs, positions = endpoint(url, "image_to_image")
    cache = home / "gradio-cache"
    uploaded = _upload(url, _picture(tmp_path / "ok.png"))
    tiny_png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(tiny_png, "PNG")
    embedded = {"path": uploaded["path"], "url": "data:image/png;base64," + base64.b64encode(tiny_png.getvalue()).decode(), "meta": {"_type": "gradio.FileData"}}
    for value in (embedded, {"path": str(cache), "meta": {"_type": "gradio.FileData"}}, {"path": "https://example.org/a.png", "meta": {"_type": "gradio.FileData"}}):
        data = _defaults_for("image_to_image", len(inputs))
        data[positions[0]] = value
        message = through_the_queue(url, fn_index, data)
        assert message.get("success") is False and "This file was not uploaded to this app" in json.dumps(message), value
    icon = tmp_path / "huge.ico"
    big = io.BytesIO()
    Image.new("L", (8000, 8000)).save(big, "PNG")
    icon.write_bytes(b"\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x01\x00\x20\x00" + len(big.getvalue()).to_bytes(4, "little") + (22).to_bytes(4, "little") + big.getvalue())
    data = _defaults_for("image_to_image", len(inputs))
    data[positions[0]] = _upload(url, icon)
    assert "This file is not a picture aipic can read" in json.dumps(through_the_queue(url, fn_index, data))


def test_a_hostile_selection_event_logs_no_traceback(app):
    """Gallery selection is a private helper event, but a client can still send it any event data."""
    url, home = app
    conf = config(url)
    [select] = [d for d in conf["dependencies"] if d.get("api_name") == "select_credentials"][:1] or [None]
    assert select is not None
    before = len((home / "app.log").read_text().splitlines())
    for event_data in ({}, {"index": "x"}, {"index": [1, 2]}, {"index": -5, "value": None}):
        session = uuid.uuid4().hex[:12]
        body = json.dumps({"data": [[]], "fn_index": select["id"], "session_hash": session, "event_data": event_data, "trigger_id": None}).encode()
        urllib.request.urlopen(urllib.request.Request(url + "/gradio_api/queue/join", data=body, headers={"Content-Type": "application/json"}), timeout=30).read()
        with urllib.request.urlopen(url + f"/gradio_api/queue/data?session_hash={session}", timeout=60) as stream:
            for line in stream:
                if b"process_completed" in line:
                    break
    time.sleep(0.5)
    assert "Traceback" not in "\n".join((home / "app.log").read_text().splitlines()[before:])


def _picture(path):
    Image.new("RGB", (64, 48), (200, 120, 40)).save(path)
    return path
