"""Adobe TrustMark as the second watermark backend: the real ``trustmark`` package's code with tiny random-weight
stand-ins of its architecture (Adobe's files download from a CDN this machine cannot reach).

Random weights cannot carry a mark, so the end-to-end recovery test gives the stand-in's decoder a constant
answer (zero weights, a bias spelling one packet): the whole reading path runs — the bounded worker's probe, the
reader process, BCH correction, aipic's CRC, the registry, the fingerprint agreement — and an unrelated image
that "carries" the same id is still never claimed."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from aipic.provenance import trustmark as tm
from aipic.common.settings import Settings
from aipic.common.errors import ModelUnavailable
from aipic.generation.requests import GenerationRequest
from conftest import make_image


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    return tm.write_stand_in(tmp_path_factory.mktemp("trustmark"))


@pytest.fixture(scope="module")
def marking(tmp_path_factory):
    """A pipeline of tiny models that marks with TrustMark stand-ins in its home's models/trustmark folder."""
    from aipic.pipeline import AipicPipeline

    home = tmp_path_factory.mktemp("aipic-home-trustmark")
    tm.write_stand_in(home / "models" / "trustmark")
    pipeline = AipicPipeline(Settings(models_mode="tiny", device="cpu", home=home, watermark_method="trustmark"))
    yield pipeline
    pipeline.close()


def stripped(path) -> bytes:
    """The picture re-saved without its credentials (what a screenshot or an upload does to the metadata)."""
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def rig_decoder(spec, watermark_id: str) -> None:
    """Make the stand-in's decoder answer one packet, whatever it is shown."""
    model = tm._trustmark(spec)
    path = f"{spec.folder}/decoder_{spec.variant}.ckpt"
    state = torch.load(path)["state_dict"]
    state["decoder.decoder.fc.weight"].zero_()
    state["decoder.decoder.fc.bias"].copy_(torch.from_numpy(tm.packet(model, watermark_id)) * 2 - 1)
    torch.save({"state_dict": state}, path)


def test_the_payload_survives_trustmarks_error_correction_and_the_crc(stand_in):
    model = tm._trustmark(stand_in)
    packet = tm.packet(model, "c0ffee42")
    assert packet.shape == (100,)
    assert tm.id_from_packet(model, packet) == "c0ffee42"
    damaged = packet.copy()
    damaged[[0, 9, 30, 47]] = 1 - damaged[[0, 9, 30, 47]]  # four bit errors in the data: BCH_5 corrects them
    assert tm.id_from_packet(model, damaged) == "c0ffee42"
    rng = np.random.default_rng(0)
    noise = [tm.id_from_packet(model, rng.integers(0, 2, 100).astype(np.float32)) for _ in range(200)]
    assert noise.count(None) == 200  # random packets: rejected by BCH, else by the CRC


def test_the_soft_binding_follows_adobes_c2pa_form(stand_in):
    binding = tm.soft_binding(stand_in, "c0ffee42")
    schema, bits = binding["blocks"][0]["value"].split("*")
    assert schema == "1" and len(bits) == tm.DATA_BITS and set(bits) <= {"0", "1"}
    assert binding["alg"] == "org.aipic.trustmark-stand-in.Q"  # never Adobe's name for files that are not Adobe's
    assert tm.TrustMarkSpec("any", "Q").algorithm == "com.adobe.trustmark.Q"
    assert tm.TrustMarkSpec("any", "P").algorithm == "com.adobe.trustmark.P"


@pytest.mark.parametrize("size", [(512, 512), (640, 256), (96, 400)])
def test_the_reader_sees_what_trustmarks_own_decoder_sees(stand_in, size):
    from torchvision import transforms

    model = tm._trustmark(stand_in)
    pixels = np.asarray(make_image(*size, seed=2))
    theirs = model.get_the_image_for_processing(Image.fromarray(pixels)).resize((245, 245), Image.Resampling.BILINEAR)
    assert torch.equal(transforms.ToTensor()(theirs), torch.from_numpy(tm.decoder_input(stand_in, pixels).copy()).permute(2, 0, 1).float() / 255)


def test_embedding_keeps_the_size_and_changes_the_pixels(stand_in):
    pixels = np.asarray(make_image(300, 200, seed=4))
    marked = tm.embed(stand_in, pixels, "c0ffee42")
    assert marked.shape == pixels.shape and marked.dtype == np.uint8
    assert not np.array_equal(marked, pixels)


def test_missing_or_unpublished_files_are_refused_with_what_to_do(stand_in, tmp_path):
    with pytest.raises(ModelUnavailable, match="missing: trustmark_Q.yaml, encoder_Q.ckpt, decoder_Q.ckpt.*aipic download --trustmark"):
        tm.check_files(tm.TrustMarkSpec(str(tmp_path), "Q"))
    with pytest.raises(ModelUnavailable, match="not Adobe's published TrustMark files"):
        tm.check_files(tm.TrustMarkSpec(stand_in.folder, "Q", published=True))
    tm.check_files(stand_in)  # stand-ins are accepted where asked for (tiny models)


def test_a_deployment_without_the_files_fails_at_start_not_with_unmarked_outputs(tmp_path):
    from aipic.pipeline import AipicPipeline

    pipeline = AipicPipeline(Settings(models_mode="tiny", device="cpu", home=tmp_path, watermark_method="trustmark", inline=True))
    with pytest.raises(ModelUnavailable, match="TrustMark Q model files are not in"):
        pipeline.warm_up()  # even in inline mode (ZeroGPU), which warms nothing else up
    with pytest.raises(ModelUnavailable, match="TrustMark Q model files are not in"):
        pipeline.build_stages()
    real = AipicPipeline(Settings(models_mode="auto", device="cpu", home=tmp_path, watermark_method="trustmark", trustmark_models=str(tmp_path)))
    with pytest.raises(ModelUnavailable):
        _ = real.trustmark


@pytest.mark.slow
def test_outputs_of_every_size_carry_the_trustmark_binding(marking, tmp_path):
    marking.output_dir = tmp_path
    assert any("TrustMark watermark uses tiny random-weight stand-ins" in note for note in marking.placeholder_notes())
    items = marking.text_to_image(GenerationRequest(prompt="a lighthouse", seed=3, width=64, height=64, batch=2)).items
    for item in items:
        assert item.watermark_id and marking.registry.by_watermark(item.watermark_id).id == item.id
        result = marking.verify(item.path)
        assert result.verdict == "trusted"
        bindings = {a["data"]["alg"]: a["data"] for a in result.manifest["assertions"] if a["label"] == "c2pa.soft-binding"}
        assert set(bindings) == {"org.aipic.phash64", "org.aipic.trustmark-stand-in.Q"}
        assert bindings["org.aipic.trustmark-stand-in.Q"]["blocks"][0]["value"] == tm.soft_binding(marking.trustmark, item.watermark_id)["blocks"][0]["value"]


@pytest.mark.slow
def test_a_stripped_copy_is_recovered_by_its_trustmark_and_an_unrelated_image_never(marking, tmp_path, capsys, monkeypatch):
    marking.output_dir = tmp_path
    [item] = marking.text_to_image(GenerationRequest(prompt="a harbour", seed=5, width=64, height=64)).items
    copy = tmp_path / "copy.png"
    copy.write_bytes(stripped(item.path))
    assert marking.verify(copy).recovered["matched_by"].startswith("fingerprint")  # the stand-in's decoder reads nothing

    rig_decoder(marking.trustmark, item.watermark_id)  # now it reads this output's id in anything
    result = marking.verify(copy)  # the bounded worker, then the reader process
    assert result.verdict == "no_credentials"
    assert result.recovered["output_id"] == item.id
    assert result.recovered["matched_by"].startswith(f"watermark {item.watermark_id} (org.aipic.trustmark-stand-in.Q; CRC valid; fingerprint agrees")
    assert result.recovered["original_manifest"] == "signature valid, trusted signer"

    from aipic.cli import main

    monkeypatch.setenv("AIPIC_WATERMARK_METHOD", "trustmark")  # the deployment's settings, as `aipic verify` reads them
    monkeypatch.setenv("AIPIC_MODELS", "tiny")
    assert main(["verify", str(copy), "--home", str(marking.home), "--json"]) == 1  # no credentials of its own
    report = json.loads(capsys.readouterr().out)[str(copy)]
    assert report["recovered"]["matched_by"].startswith(f"watermark {item.watermark_id} (org.aipic.trustmark-stand-in.Q;")
    assert "trustmark_probe" not in report

    unrelated = tmp_path / "unrelated.png"
    make_image(64, 64, seed=99).save(unrelated)
    assert marking.verify(unrelated).recovered is None  # the id reads, the fingerprint disagrees: no claim


def test_download_keeps_only_files_that_match_adobes_checksums(stand_in, tmp_path, capsys, monkeypatch):
    """A real HTTP download from a local server that offers the wrong files, then from an address where nothing
    listens: each refused with a clear message, and no file left behind under a real name."""
    import functools
    import http.server
    import threading

    from aipic.cli import main

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=stand_in.folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ModelUnavailable, match="does not match Adobe's published checksum; nothing was kept"):
            tm.download(tmp_path / "mirror", "Q", host=f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
    assert list((tmp_path / "mirror").iterdir()) == []
    with pytest.raises(ModelUnavailable, match="Could not download trustmark_Q.yaml"):
        tm.download(tmp_path / "nowhere", "Q", host="http://127.0.0.1:9/")
    monkeypatch.setenv("AIPIC_TRUSTMARK_MODELS", str(tmp_path / "cli"))
    monkeypatch.setattr("trustmark.trustmark.MODEL_REMOTE_HOST", "http://127.0.0.1:9/")  # no network in the tests
    assert main(["download", "--trustmark"]) == 4
    err = capsys.readouterr().err
    assert err.startswith("aipic: error: Could not download trustmark_Q.yaml") and "Traceback" not in err


@pytest.mark.slow
def test_worker_processes_load_trustmark_once_and_mark_the_same_way(stand_in):
    """A worker process started with the spec warms up with TrustMark, and marks as this process does."""
    import threading
    import time

    from aipic.engine import WorkerPool
    from aipic.pipeline import finishing

    pool = WorkerPool(1)
    pool.start(finishing.initialise_worker, None, stand_in)
    release = threading.Event()
    other = threading.Thread(target=pool.call, args=(release.wait, 60))  # another image being finished: calls go to the worker
    other.start()
    try:
        while pool._in_flight == 0:
            time.sleep(0.01)
        pixels = np.asarray(make_image(256, 256, seed=6))
        marked = pool.call(finishing.embed_mark, pixels, "c0ffee42", stand_in)
        here = finishing.embed_mark(pixels, "c0ffee42", stand_in)  # the same model; thread counts may round differently
        assert marked.shape == here.shape and np.abs(marked.astype(int) - here).max() <= 1
        assert pool.call(torch.get_num_threads) == 1  # the workers share the cores
    finally:
        release.set()
        other.join()
        pool.close()


@pytest.mark.slow
def test_a_reader_that_cannot_load_is_reported_and_the_fingerprint_still_recognises_the_copy(marking, tmp_path):
    import shutil

    from aipic.provenance.verify import verify_file

    marking.output_dir = tmp_path
    [item] = marking.text_to_image(GenerationRequest(prompt="a quay", seed=8, width=64, height=64)).items
    copy = tmp_path / "copy.png"
    copy.write_bytes(stripped(item.path))
    broken = tmp_path / "broken"
    shutil.copytree(marking.trustmark.folder, broken)
    (broken / "decoder_Q.ckpt").write_bytes(b"not a checkpoint")
    spec = tm.TrustMarkSpec(str(broken), "Q", published=False)
    result = verify_file(copy, marking.identity.trust_anchors, registry_url=marking.registry.url, trustmark=spec)
    assert any(problem.startswith("The TrustMark watermark could not be read: Could not load the TrustMark Q model") for problem in result.problems), result.problems
    assert result.recovered["output_id"] == item.id and result.recovered["matched_by"].startswith("fingerprint (0 of 64")
