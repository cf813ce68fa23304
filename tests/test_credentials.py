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
from conftest import make_image, png_of, with_png_crcs


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


def _altered(data: bytes, index: int, value: int) -> bytes:
    """The PNG with one byte changed, its chunk's CRC made right again (conftest.with_png_crcs)."""
    changed = bytearray(data)
    changed[index] = value
    return with_png_crcs(changed)


def _chain(pipeline) -> bytes:
    """text to image → image to image → image to image: the file holds three manifests, the two older ones as
    ingredients (each an "init image"), each carrying its own prompt."""
    first = pipeline.text_to_image(small("LEVEL-ONE-PROMPT")).items[0].path.read_bytes()
    second = pipeline.image_to_image(small("LEVEL-TWO-PROMPT"), first).items[0].path.read_bytes()
    return pipeline.image_to_image(small("LEVEL-THREE-PROMPT"), second).items[0].path.read_bytes()


@pytest.mark.parametrize("altered, name", [
    (b"LEVEL-TWO-PROMPT", "ingredient “init image”"),  # the direct ingredient's manifest
    (b"LEVEL-ONE-PROMPT", "ingredient “init image” of the ingredient “init image”"),  # its own ingredient's
])
def test_an_altered_manifest_anywhere_in_a_chain_is_found_and_named_with_the_trust_list_loaded(tiny_pipeline, fresh_outputs, altered, name):
    """With the instance's trust list, c2pa reports a second delta for the deeper manifest, under the same last path
    segment (c2pa.ingredient.v3) as the first: keyed by that segment, one overwrote the other and the file read
    trusted. Keyed by the whole path, the alteration is found at either level and named for its own manifest."""
    chain = _chain(tiny_pipeline)
    anchors = tiny_pipeline.identity.trust_anchors
    assert verify_bytes(chain, anchors).verdict == "trusted"
    assert chain.count(altered) == 1
    data = _altered(chain, chain.find(altered), ord("X"))
    result = verify_bytes(data, anchors)
    assert result.validation_state == "Invalid" and result.codes == []
    assert result.verdict == "tampered" and result.message == CHAIN_BROKEN
    assert f"the Content Credentials of {name} were altered" in result.reason
    assert any(f["manifest"] == name and f["code"] == "assertion.hashedURI.mismatch" for f in result.failures)
    assert not any(f["manifest"] == "active" for f in result.failures)
    # …and an upload made from it is recorded as failed, not as trusted
    job = tiny_pipeline.jobs.image_to_image(small("LEVEL-FOUR-PROMPT"), data)
    assert job.ingredients[0].credentials == "tampered" and any("failed verification (tampered)" in w for w in job.warnings)


def test_an_ingredients_broken_identity_is_its_own_and_never_discredits_this_files_author(tiny_pipeline, fresh_outputs):
    signed = tiny_pipeline.text_to_image(small("by mallory"), author=tiny_pipeline.author_for_account("mallory")).items[0].path.read_bytes()
    index = signed.find(b"signature", signed.find(b"cawg.x509.cose")) + 200  # inside the upload's identity signature
    upload = _altered(signed, index, signed[index] ^ 0xFF)
    [item] = tiny_pipeline.image_to_image(small("edited by gina"), upload, author=tiny_pipeline.author_for_account("gina")).items
    result = verify_bytes(item.path.read_bytes(), tiny_pipeline.identity.trust_anchors, [tiny_pipeline.identity_authority.ca_pem])
    [identity] = result.identities
    assert identity["name"] == "gina" and identity["status"] == "trusted"  # this file's author, checked on its own
    assert result.verdict == "trusted"  # an identity's failure, in this file or an ingredient, never lowers the claim
    assert any(f["manifest"] == "ingredient “init image”" and f["code"].startswith("cawg.") for f in result.failures)


def test_what_aipic_does_to_an_upload_before_the_model_sees_it_is_listed(tiny_pipeline, fresh_outputs):
    """A complete actions list includes the upload's preparation: turned upright by its EXIF orientation, cropped to
    the output's shape, resized."""
    import io

    from PIL import Image

    photo = io.BytesIO()
    picture = make_image(120, 80, seed=6)
    exif = picture.getexif()
    exif[0x0112] = 6  # "rotate 90° to view": stored sideways, shown upright
    picture.save(photo, "JPEG", exif=exif)
    [item] = tiny_pipeline.image_to_image(small("as ink", width=64, height=64), photo.getvalue()).items
    actions = actions_of(tiny_pipeline.credentials(item.path))
    names = [action["action"] for action in actions["actions"]]
    assert names == ["c2pa.opened", "c2pa.orientation", "c2pa.cropped", "c2pa.resized", "c2pa.edited"], names
    resized = actions["actions"][3]
    assert resized["description"] == "resized from 80×120 to 64×64"
    assert resized["parameters"]["ingredients"] == actions["actions"][0]["parameters"]["ingredients"]  # c2pa links both to the upload
    assert tiny_pipeline.credentials(item.path).verdict == "trusted"
    same_size = tiny_pipeline.image_to_image(small("as ink", width=64, height=64), png_of(Image.new("RGB", (64, 64)))).items[0]
    assert [a["action"] for a in actions_of(tiny_pipeline.credentials(same_size.path))["actions"]] == ["c2pa.opened", "c2pa.edited"]
