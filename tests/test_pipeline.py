import pytest

from aipic.common.settings import Settings
from aipic.common.errors import AipicError
from aipic.generation.requests import GenerationRequest
from aipic.pipeline import AipicPipeline
from aipic.provenance.labels import COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA, TRAINED_ALGORITHMIC_MEDIA
from aipic.generation.requests import StyleRequest
from conftest import image_file, make_image, png_of


@pytest.mark.slow
def test_text_to_image_outputs_are_audited_signed_files(tiny_pipeline, fresh_outputs):
    outcome = tiny_pipeline.text_to_image(GenerationRequest(prompt="a portrait of a chef", negative_prompt="blurry", seed=11, batch=2, width=64, height=64))
    assert [item.seed for item in outcome.items] == [11, 12]
    assert any("random weights" in warning for warning in outcome.warnings)
    for item in outcome.items:
        assert item.path.is_file() and item.path.parent.parent == fresh_outputs
        result = tiny_pipeline.verify(item.path)
        assert result.verdict == "trusted"
        assert result.actions[0]["action"] == "c2pa.created"
        assert result.actions[0]["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
        human = result.contributions["human"]
        assert human["prompt"] == "a portrait of a chef" and human["negative_prompt"] == "blurry"
        assert human["parameters"]["seed"] == 11 and human["parameters"]["batch"] == 2
        assert result.contributions["model"]["seed"] == item.seed
        assert result.audit == item.audit.to_dict()


@pytest.mark.slow
def test_image_to_image_records_the_upload_as_parent(tiny_pipeline, fresh_outputs, tmp_path):
    upload = image_file(tmp_path / "holiday.jpg", 120, 80, fmt="JPEG")
    outcome = tiny_pipeline.image_to_image(GenerationRequest(prompt="as a watercolour", seed=3), upload)
    [item] = outcome.items
    assert (item.width, item.height) == (256, 168)  # tiny model's default size, upload's aspect
    result = tiny_pipeline.verify(item.path)
    assert result.verdict == "trusted"
    # 120×80 fitted to 256×168: a sliver cropped for the aspect, then resized, before the model edits it
    assert [a["action"] for a in result.actions] == ["c2pa.opened", "c2pa.cropped", "c2pa.resized", "c2pa.edited"]
    assert result.actions[3]["digitalSourceType"] == COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA
    assert [(i["title"], i["relationship"]) for i in result.ingredients] == [("init image", "parentOf")]  # no file name by default
    assert result.contributions["human"]["parameters"]["strength"] == 0.6


@pytest.mark.slow
def test_style_transfer_is_audited_and_signed(tiny_pipeline, fresh_outputs, tmp_path):
    content = image_file(tmp_path / "content.png", 80, 64, seed=1)
    style = image_file(tmp_path / "style.png", 64, 64, seed=2)
    outcome = tiny_pipeline.style_transfer(StyleRequest(content_image=content, style_image=style, steps=5, size=80))
    [item] = outcome.items
    result = tiny_pipeline.verify(item.path)
    assert result.verdict == "trusted"
    assert [i["relationship"] for i in result.ingredients] == ["parentOf", "componentOf"]
    assert result.contributions["task"] == "style-transfer"
    assert "losses" in result.contributions["model"]["models"][0]


@pytest.mark.parametrize("upload_bytes, message", [(b"not an image", "is not an image format aipic can read"), (png_of(make_image(64, 64))[:300], "could not be read as an image"), (None, "Please provide")])
def test_bad_uploads_get_clear_errors_and_write_nothing(tiny_pipeline, fresh_outputs, tmp_path, upload_bytes, message):
    source = None
    if upload_bytes is not None:
        source = tmp_path / "upload.png"
        source.write_bytes(upload_bytes)
    with pytest.raises(AipicError, match=message) as refused:
        tiny_pipeline.image_to_image(GenerationRequest(prompt="x"), source)
    assert str(tmp_path) not in str(refused.value)  # no server paths in messages
    assert not fresh_outputs.exists() or not any(fresh_outputs.rglob("*.png"))


def test_invalid_request_writes_nothing(tiny_pipeline, fresh_outputs):
    with pytest.raises(AipicError, match="multiple of 8"):
        tiny_pipeline.text_to_image(GenerationRequest(prompt="x", width=100))
    assert not fresh_outputs.exists()


def _signed_upload(tiny_pipeline, tmp_path, name="upload.png"):
    """An aipic output to use as an upload (it carries real Content Credentials)."""
    [item] = tiny_pipeline.text_to_image(GenerationRequest(prompt="the original", seed=5, width=64, height=64)).items
    path = tmp_path / name
    path.write_bytes(item.path.read_bytes())
    return path


def _add_text_chunk(data: bytes) -> bytes:
    import struct
    import zlib

    chunk = b"tEXt" + b"Comment\x00edited after signing"
    end = data.rfind(b"IEND") - 4
    return data[:end] + struct.pack(">I", len(chunk) - 4) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[end:]


def _damage_jumbf(data: bytes) -> bytes:
    """Junk inside the C2PA manifest store (caBX chunk), with a valid PNG chunk CRC: C2PA cannot parse it."""
    import struct
    import zlib

    start = data.find(b"caBX")
    length = struct.unpack(">I", data[start - 4 : start])[0]
    body = bytearray(data[start + 4 : start + 4 + length])
    body[40:120] = b"\xff" * 80
    chunk = b"caBX" + bytes(body)
    return data[: start - 4] + struct.pack(">I", len(body)) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[start + 4 + length + 4 :]


@pytest.mark.slow
def test_an_upload_whose_credentials_fail_is_used_recorded_and_the_person_told(tiny_pipeline, fresh_outputs, tmp_path):
    upload = _signed_upload(tiny_pipeline, tmp_path)
    upload.write_bytes(_add_text_chunk(upload.read_bytes()))  # still a good image, but not what was signed
    outcome = tiny_pipeline.image_to_image(GenerationRequest(prompt="as a watercolour", seed=3), upload)
    assert any("failed verification (tampered)" in warning for warning in outcome.warnings)
    result = tiny_pipeline.verify(outcome.items[0].path)
    assert result.verdict == "trusted"
    assert result.ingredients[0]["status"] == "FAILED (tampered)"
    assert result.contributions["human"]["uploads"][0]["credentials"] == "tampered"


@pytest.mark.slow
def test_an_upload_with_damaged_credentials_is_used_without_them(tiny_pipeline, fresh_outputs, tmp_path):
    import hashlib

    upload = _signed_upload(tiny_pipeline, tmp_path, "damaged.png")
    upload.write_bytes(_damage_jumbf(upload.read_bytes()))
    outcome = tiny_pipeline.image_to_image(GenerationRequest(prompt="as a watercolour", seed=3), upload)
    assert any("damaged and cannot be read" in warning for warning in outcome.warnings)
    result = tiny_pipeline.verify(outcome.items[0].path)
    assert result.verdict == "trusted"
    [recorded] = result.contributions["human"]["uploads"]
    assert recorded["credentials"] == "unreadable_manifest"
    assert recorded["sha256"] == hashlib.sha256(upload.read_bytes()).hexdigest()  # the file as uploaded


@pytest.mark.slow
def test_an_aipic_output_used_as_an_upload_reads_trusted(tiny_pipeline, fresh_outputs, tmp_path):
    upload = _signed_upload(tiny_pipeline, tmp_path)
    outcome = tiny_pipeline.image_to_image(GenerationRequest(prompt="again", seed=4), upload)
    assert not any("Content Credentials" in warning for warning in outcome.warnings)
    result = tiny_pipeline.verify(outcome.items[0].path)
    assert result.contributions["human"]["uploads"][0]["credentials"] == "trusted"
    assert result.ingredients[0]["status"] == "valid"


@pytest.mark.slow
def test_upload_names_are_recorded_only_when_the_person_chooses(tiny_pipeline, fresh_outputs, tmp_path):
    upload = image_file(tmp_path / "my-holiday-in-rome.jpg", 96, 64, fmt="JPEG")
    outcome = tiny_pipeline.image_to_image(GenerationRequest(prompt="as a watercolour", seed=3, record_upload_names=True), upload)
    assert tiny_pipeline.verify(outcome.items[0].path).ingredients[0]["title"] == "my-holiday-in-rome.jpg"


@pytest.mark.slow
def test_a_private_prompt_is_recorded_as_a_salted_hash_that_proves_authorship(tiny_pipeline, fresh_outputs):
    from aipic.provenance.verify import prompt_matches

    outcome = tiny_pipeline.text_to_image(GenerationRequest(prompt="my secret recipe for a picture", negative_prompt="blur", seed=2, private_prompt=True, width=64, height=64))
    [item] = outcome.items
    assert outcome.prompt_salt and len(outcome.prompt_salt) == 32
    assert b"secret recipe" not in item.path.read_bytes()
    result = tiny_pipeline.verify(item.path)
    human = result.contributions["human"]
    assert "prompt" not in human and human["prompt_privacy"] == "salted-sha256" and "negative_prompt_sha256" in human
    assert prompt_matches(result.contributions, "my secret recipe for a picture", outcome.prompt_salt)
    assert not prompt_matches(result.contributions, "someone else's prompt", outcome.prompt_salt)
    assert "prompt kept private" in result.report()


@pytest.mark.slow
def test_perceived_attributes_of_an_upload_derived_output_are_not_published(tiny_pipeline, fresh_outputs, tmp_path):
    upload = image_file(tmp_path / "portrait.png", 96, 64)
    outcome = tiny_pipeline.image_to_image(GenerationRequest(prompt="as a watercolour", seed=3), upload)
    published = tiny_pipeline.verify(outcome.items[0].path).audit
    assert "attributes" not in published and "attributes_withheld" in published
    assert published["person_present"] == outcome.items[0].audit.person_present  # the person still sees the whole audit


@pytest.mark.slow
def test_prompts_never_reach_the_logs(tmp_path):
    """diffusers logs the cut-off part of a long prompt; that record is dropped (the person is told instead)."""
    long_prompt = " ".join(f"privateword{i}" for i in range(100))
    code = (
        "import logging, sys; logging.basicConfig(level=logging.DEBUG);"
        "from aipic.pipeline import AipicPipeline; from aipic.generation.requests import GenerationRequest;"
        f"from aipic.common.settings import Settings; p = AipicPipeline(Settings(models_mode='tiny', device='cpu', home={str(tmp_path)!r}));"
        "o = p.text_to_image(GenerationRequest(prompt=sys.argv[1], width=64, height=64, steps=1)); p.close();"
        "print('warned' if any('the model reads only 77' in w for w in o.warnings) else 'silent')"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code, long_prompt], capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "warned"
    assert "privateword" not in out.stderr and "privateword" not in out.stdout


def test_bad_input_fails_before_any_model_loads(tmp_path):
    from aipic.common.errors import BadInput

    pipeline = AipicPipeline(Settings(models_mode="tiny", device="cpu", home=tmp_path))
    with pytest.raises(BadInput, match="Please enter a prompt"):
        pipeline.jobs.text_to_image(GenerationRequest(prompt="  "))
    with pytest.raises(BadInput, match="Width must be between"):
        pipeline.jobs.text_to_image(GenerationRequest(prompt="x", width=4000))
    assert pipeline.models.status() == {}  # nothing was loaded


def test_an_unwritable_home_is_a_clear_error_at_start(tmp_path):
    import os

    from aipic.common.errors import ConfigError

    if os.geteuid() == 0:
        blocked = tmp_path / "file-not-folder"
        blocked.write_text("x")
        home = blocked / "home"  # cannot be created under a file, even as root
    else:
        home = tmp_path / "ro"
        home.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="aipic cannot write to .*Choose a writable folder"):
        AipicPipeline(Settings(models_mode="tiny", device="cpu", home=home)).check_home()


@pytest.mark.slow
def test_a_damaged_png_upload_is_used_as_its_pixels_and_the_person_told(tiny_pipeline, fresh_outputs, tmp_path, capsys):
    """A PNG without its end chunk: image decoders read it, C2PA cannot parse it. It is used without any
    credentials it may carry (said plainly), never a failed request; the CLI prints one warning, no traceback."""
    from aipic.cli import main

    upload = tmp_path / "cut.png"
    png = png_of(make_image(96, 64, seed=5))
    upload.write_bytes(png[: png.rindex(b"IEND") - 4])
    outcome = tiny_pipeline.image_to_image(GenerationRequest(prompt="as a watercolour", seed=3, steps=2), upload)
    assert any("could not be read by the Content Credentials reader" in warning for warning in outcome.warnings)
    result = tiny_pipeline.verify(outcome.items[0].path)
    assert result.verdict == "trusted" and result.contributions["human"]["uploads"][0]["credentials"] == "unchecked"
    assert main(["img2img", str(upload), "as a watercolour", "--steps", "2", "--models", "tiny", "--device", "cpu", "--home", str(tmp_path / "cli-home")]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "could not be read by the Content Credentials reader" in err
