"""Content Credentials a conformance reviewer accepts, and the disclosure fields outside C2PA: a complete actions
list, the library's validation state as a floor, IPTC's AI fields in XMP read back by a real reader, the visible
label, and model licences in `aipic models`."""

import json
import shutil
import subprocess

import numpy as np
import pytest

from aipic.cli import main
from aipic.common.settings import Settings
from aipic.generation.requests import GenerationRequest, StyleRequest
from aipic.pipeline import AipicPipeline
from aipic.provenance.manifest import Ingredient, build_manifest
from aipic.provenance.signing import sign_png
from aipic.provenance.signing_identity import ensure_signing_identity
from aipic.provenance.verify import CHAIN_BROKEN, verify_bytes
from conftest import make_image, png_of


def actions_of(result) -> dict:
    [actions] = [a["data"] for a in result.manifest["assertions"] if a["label"] == "c2pa.actions.v2"]
    return actions


def small(prompt="a harbour at dawn", **fields):
    return GenerationRequest(**{"prompt": prompt, "seed": 3, "width": 64, "height": 64, "steps": 2, **fields})


def test_every_kind_of_output_says_its_actions_list_is_complete(tiny_pipeline, fresh_outputs):
    """allActionsIncluded sits beside the actions (inside an action c2pa drops it): read back with c2pa-python."""
    signed_upload = tiny_pipeline.text_to_image(small()).items[0].path.read_bytes()
    plain_upload = png_of(make_image(64, 64, seed=8))
    outcomes = {
        "text to image": tiny_pipeline.text_to_image(small()),
        "image to image, signed upload": tiny_pipeline.image_to_image(small("as ink"), signed_upload),
        "image to image, plain upload": tiny_pipeline.image_to_image(small("as ink"), plain_upload),
        "style transfer": tiny_pipeline.style_transfer(StyleRequest(content_image=plain_upload, style_image=png_of(make_image(64, 64, seed=9)), steps=2, size=64)),
    }
    for kind, outcome in outcomes.items():
        result = tiny_pipeline.credentials(outcome.items[0].path)
        assert result.verdict == "trusted", kind
        assert actions_of(result)["allActionsIncluded"] is True, kind


def test_the_watermark_and_the_visible_label_are_actions_of_their_own(tmp_path, monkeypatch):
    monkeypatch.setenv("AIPIC_VISIBLE_LABEL", "1")
    labelled = AipicPipeline(Settings.from_env(models_mode="tiny", device="cpu", home=tmp_path / "labelled"))
    plain = AipicPipeline(Settings(models_mode="tiny", device="cpu", home=tmp_path / "plain"))
    try:
        assert labelled.settings.visible_label
        request = small(width=256, height=256)
        [marked] = labelled.text_to_image(request).items
        [unmarked] = plain.text_to_image(request).items
        actions = [a["action"] for a in actions_of(labelled.credentials(marked.path))["actions"]]
        assert actions == ["c2pa.created", "c2pa.edited", "c2pa.watermarked"]  # made, labelled, watermarked: all of it
        assert [a["action"] for a in actions_of(plain.credentials(unmarked.path))["actions"]] == ["c2pa.created", "c2pa.watermarked"]
        assert [a["action"] for a in actions_of(plain.credentials(plain.text_to_image(small()).items[0].path))["actions"]] == ["c2pa.created"]  # 64²: not marked
        from PIL import Image

        with Image.open(marked.path) as a, Image.open(unmarked.path) as b:
            difference = np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max(axis=2)
        changed = difference > 40
        assert changed[-24:-8, -90:-10].mean() > 0.5 and changed[:-40].mean() < 0.01  # the label sits in the bottom-right corner
    finally:
        labelled.close()
        plain.close()


def test_an_ingredient_whose_manifest_was_altered_is_never_called_intact(tmp_path):
    """Built as the C2PA test file adobe-20220124-E-uri-CIE-sig-CA.jpg is: the outer manifest is intact, but the
    actions assertion of the ingredient's manifest no longer matches its hashed URI. c2pa-python's
    validation_state is Invalid with an empty activeManifest failure list: the verdict must not be trusted."""
    identity = ensure_signing_identity(tmp_path / "keys")

    def manifest(description, ingredients=()):
        return build_manifest(title="o.png", task="text-to-image", description=description, agent={"name": "m", "version": "1"}, human={"prompt": "p"},
                              models=[], outputs={}, audit={}, ingredients=list(ingredients))

    inner = sign_png(png_of(make_image(64, 64, seed=1)), manifest("INNER-ACTION-DESCRIPTION"), [], identity)
    ingredient = Ingredient(title="upload.png", relationship="parentOf", data=inner, role="init image")
    outer = bytearray(sign_png(png_of(make_image(64, 64, seed=2)), manifest("outer", [ingredient]), [ingredient], identity))
    intact = verify_bytes(bytes(outer), identity.trust_anchors)
    assert intact.verdict == "trusted" and intact.validation_state == "Trusted"
    position = outer.find(b"INNER-ACTION-DESCRIPTION")
    assert position > 0 and outer.count(b"INNER-ACTION-DESCRIPTION") == 1  # only inside the ingredient's manifest
    outer[position] = ord("J")  # the ingredient's actions assertion, changed after it was used
    result = verify_bytes(bytes(outer), identity.trust_anchors)
    assert result.validation_state == "Invalid" and result.codes == []  # the active manifest's own checks pass
    assert result.verdict == "tampered" and result.message == CHAIN_BROKEN
    assert "ingredient “upload.png” were altered" in result.reason
    attributed = {(f["manifest"], f["code"]) for f in result.failures}
    assert {("ingredient “upload.png”", "ingredient.manifest.mismatch"), ("ingredient “upload.png”", "assertion.hashedURI.mismatch")} <= attributed
    assert not result.claims_verified and "Claimed, not verified" in result.report()
    assert result.to_dict()["failures"] == result.failures


def test_aipic_models_lists_each_models_licence(capsys):
    assert main(["models", "--json"]) == 0
    catalog = json.loads(capsys.readouterr().out)["catalog"]
    for section, entries in catalog.items():
        for key, entry in entries.items():
            assert entry["license"]["name"] and entry["license"]["commercial_use"] in ("allowed", "conditional", "not_allowed", "unclear"), (section, key)
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert "licence: Stability AI Community License Agreement" in text and "licence: CreativeML Open RAIL-M" in text


@pytest.mark.slow
@pytest.mark.parametrize("output_format", ["png", "jpeg", "webp"])
def test_iptc_ai_fields_are_read_back_by_exiftool_with_the_same_privacy_as_the_manifest(tiny_pipeline, fresh_outputs, output_format):
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.fail("exiftool is required (make test installs libimage-exiftool-perl)")

    def iptc(path) -> dict:
        done = subprocess.run([exiftool, "-j", "-XMP-iptcExt:all", str(path)], capture_output=True, text=True, timeout=60, check=True)
        return json.loads(done.stdout)[0]

    prompt = 'a fox & a <hound> "in the snow"'
    public = tiny_pipeline.text_to_image(small(prompt, output_format=output_format), author=tiny_pipeline.author_for_account("Zoë Öz")).items[0]
    fields = iptc(public.path)
    assert fields["DigitalSourceType"] == "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    assert fields["AISystemUsed"] == "tiny-random" and fields["AISystemVersionUsed"] == "random-weights"
    assert fields["AIPromptInformation"] == prompt and fields["AIPromptWriterName"] == "Zoë Öz"
    assert tiny_pipeline.verify(public.path).verdict == "trusted"  # written before signing: the hard binding covers it
    private = tiny_pipeline.text_to_image(small(prompt, output_format=output_format, private_prompt=True)).items[0]
    fields = iptc(private.path)
    assert "AIPromptInformation" not in fields and "AIPromptWriterName" not in fields  # private, anonymous: neither
    assert fields["DigitalSourceType"].endswith("/trainedAlgorithmicMedia")
    edited = tiny_pipeline.image_to_image(small("as ink", output_format=output_format), png_of(make_image(64, 64, seed=4))).items[0]
    assert iptc(edited.path)["DigitalSourceType"].endswith("/compositeWithTrainedAlgorithmicMedia")
