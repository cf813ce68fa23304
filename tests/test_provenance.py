import io
import json
import os
import stat

import c2pa
import pytest
from PIL import Image

from aipic.provenance import labels
from aipic.provenance.ingredients import make_ingredient
from aipic.provenance.manifest import build_manifest
from aipic.provenance.signing import sign_png
from aipic.provenance.signing_identity import ensure_signing_identity
from aipic.provenance.validation import reader_context
from aipic.provenance.verify import verify_bytes
from aipic.provenance.verify import verify_file
from conftest import make_image, png_of


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    return ensure_signing_identity(tmp_path_factory.mktemp("keys"))


def signed_png(identity, ingredients=(), prompt="a lighthouse at dusk"):
    manifest = build_manifest(
        title="out.png", task="text-to-image", description="test", agent={"name": "tiny-random", "version": "random-weights"},
        human={"prompt": prompt, "negative_prompt": "", "parameters": {"seed": 1}}, models=[{"name": "tiny-random", "placeholder": True}],
        outputs={"seed": 1}, audit={"person_present": False, "person_probability": 0.1}, ingredients=list(ingredients),
    )
    return sign_png(png_of(make_image()), manifest, list(ingredients), identity)


def test_identity_is_ca_issued_with_private_key_0600_and_reused(identity):
    from cryptography import x509

    mode = stat.S_IMODE(os.stat(identity.key_path).st_mode)
    assert mode == 0o600
    signer, ca = x509.load_pem_x509_certificates(identity.chain_pem.encode())
    assert signer.issuer == ca.subject != signer.subject
    assert signer.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION in eku
    assert x509.ObjectIdentifier("1.3.6.1.4.1.62558.2.1") in eku  # c2pa-kp-claimSigning
    again = ensure_signing_identity(identity.directory)
    assert again.chain_pem == identity.chain_pem


def test_signed_output_verifies_as_trusted_with_contributions(identity):
    data = signed_png(identity)
    result = verify_bytes(data, [identity.ca_pem])
    assert result.verdict == "trusted" and result.ok
    assert result.signer == "aipic signer"
    assert result.issuer == "aipic local CA"  # the CA that issued the signer's certificate, not the signer's own O=
    [action] = result.actions
    assert action["action"] == "c2pa.created"
    assert action["digitalSourceType"] == labels.TRAINED_ALGORITHMIC_MEDIA
    assert action["softwareAgent"]["name"] == "tiny-random"
    assert result.contributions["human"]["prompt"] == "a lighthouse at dusk"
    assert result.contributions["model"]["models"][0]["placeholder"] is True
    assert result.audit["person_present"] is False
    report = result.report()
    assert "TRUSTED" in report and "Bias audit: no person detected" in report


def test_no_thumbnail_is_embedded(identity):
    data = signed_png(identity)
    with c2pa.Reader("image/png", io.BytesIO(data)) as reader:
        manifest = reader.get_active_manifest()
    assert "thumbnail" not in manifest
    assert len(data) - len(png_of(make_image())) < 50_000


def test_without_the_trust_anchor_it_is_valid_but_not_trusted(identity):
    result = verify_bytes(signed_png(identity))
    assert result.verdict == "untrusted" and result.ok


def test_changed_pixels_are_detected(identity):
    data = bytearray(signed_png(identity))
    index = data.find(b"IDAT")
    data[index + 20] ^= 0xFF
    result = verify_bytes(bytes(data), [identity.ca_pem])
    assert result.verdict == "tampered" and not result.ok
    assert any("mismatch" in problem for problem in result.problems)


def test_re_encoding_strips_the_credentials(identity):
    reencoded = png_of(Image.open(io.BytesIO(signed_png(identity))))
    result = verify_bytes(reencoded, [identity.ca_pem])
    assert result.verdict == "no_credentials"
    assert "stripped" in result.message


@pytest.mark.parametrize(
    "data, verdict",
    [
        (b"", "unreadable"),
        (b"hello, this is not an image", "unreadable"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "unreadable"),
    ],
)
def test_garbage_gets_a_clear_verdict(data, verdict):
    result = verify_bytes(data)
    assert result.verdict == verdict
    assert result.message


def test_truncated_and_unsigned_files(identity, tmp_path):
    data = signed_png(identity)
    assert verify_bytes(data[: len(data) // 2]).verdict == "unreadable"
    jpeg = io.BytesIO()
    make_image().save(jpeg, format="JPEG")
    assert verify_bytes(jpeg.getvalue()).verdict == "no_credentials"
    assert verify_file(tmp_path / "missing.png").verdict == "unreadable"


@pytest.mark.slow
def test_ingredients_keep_their_own_credentials(identity, tmp_path):
    upload = tmp_path / "upload.png"
    upload.write_bytes(signed_png(identity, prompt="the original"))
    parent = make_ingredient(upload, Image.open(upload), "upload.png", "parentOf", "init image")
    assert parent.data == upload.read_bytes()
    style = make_ingredient(None, make_image(), "style image", "componentOf", "style image")
    data = signed_png(identity, [parent, style])
    result = verify_bytes(data, [identity.ca_pem])
    assert result.verdict == "trusted"
    assert [a["action"] for a in result.actions] == ["c2pa.opened", "c2pa.edited", "c2pa.placed"]
    assert result.actions[1]["digitalSourceType"] == labels.COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA
    assert [(i["title"], i["relationship"], i["status"]) for i in result.ingredients] == [("upload.png", "parentOf", "valid"), ("style image", "componentOf", "none (no Content Credentials)")]
    with c2pa.Reader("image/png", io.BytesIO(data)) as reader:
        store = json.loads(reader.json())
    assert len(store["manifests"]) == 2  # the upload's own manifest travels along
    uploads = result.contributions["human"]["uploads"]
    assert uploads[0]["role"] == "init image" and len(uploads[0]["sha256"]) == 64


def test_the_ai_disclosure_is_attested_by_the_signer(identity):
    """Actions, contributions and audit are created assertions (signed by the claim generator), none gathered."""
    data = signed_png(identity)
    with c2pa.Reader("image/png", io.BytesIO(data), context=reader_context([identity.ca_pem])) as reader:
        detailed = json.loads(reader.detailed_json())
        assert reader.get_validation_state() == "Trusted"
    claim = detailed["manifests"][detailed["active_manifest"]]["claim"]
    created = {entry["url"].rsplit("/", 1)[-1] for entry in claim["created_assertions"]}
    assert {"c2pa.actions.v2", labels.contributions_label(), labels.audit_label(), "c2pa.hash.data"} <= created
    assert not claim.get("gathered_assertions")
