"""Authorship and rights, with real c2pa: a named author's CAWG identity assertion, training-and-mining terms,
an upload's terms honoured, model licences, and what a person can claim."""

import datetime
import json

import pytest

from aipic.provenance.manifest import build_manifest
from aipic.provenance.signing import sign_as_author
from aipic.provenance import authorship
from aipic.models.catalog import load_catalog
from aipic.common.errors import BadInput, ConfigError
from aipic.common.settings import Settings
from aipic.generation.requests import GenerationRequest
from aipic.provenance.certificates import create_ca
from aipic.provenance.signing_identity import issue_signer
from aipic.pipeline import AipicPipeline
from aipic.generation.requests import StyleRequest
from aipic.provenance.verify import verify_bytes
from conftest import image_file, with_png_crcs


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    home = tmp_path_factory.mktemp("authorship-home")
    made = AipicPipeline(Settings(models_mode="tiny", device="cpu", home=home))
    yield made
    made.close()


def _make(pipeline, author=None, **fields):
    outcome = pipeline.text_to_image(GenerationRequest(prompt="a lighthouse keeper", seed=3, width=64, height=64, steps=2, **fields), author=author)
    return outcome.items[0].path


def _assertions(path):
    import c2pa

    with c2pa.Reader(str(path)) as reader:
        store = json.loads(reader.json())
    return {a["label"]: a.get("data") for a in store["manifests"][store["active_manifest"]]["assertions"]}


@pytest.mark.slow
def test_a_signed_in_author_gets_a_signed_identity_assertion_and_the_claim_stays_trusted(pipeline):
    path = _make(pipeline, author=pipeline.author_for_account("alice"))
    result = pipeline.verify(path)
    assert result.verdict == "trusted"  # the identity's own trust state never changes the claim's verdict
    [identity] = result.identities
    assert identity["name"] == "alice" and identity["roles"] == ["cawg.creator"]
    assert identity["issuer"] == "aipic identity local CA"  # this instance's identity CA, not the claim signer's
    # the codes as the library reports them with the identity trust list: a well-formed, validated, trusted identity
    assert {"cawg.identity.well-formed", "cawg.x509.signature.validated", "cawg.x509.credential.trusted"} <= set(identity["codes"])
    assert identity["status"] == "trusted"  # c2pa-python checked it against the instance's identity CA (trust.anchors, kind cawg)
    # bound to the hard binding, the actions, the human contribution and the terms
    assert {"c2pa.hash.data", "c2pa.actions.v2", "org.aipic.contributions", "cawg.training-mining"} <= set(identity["referenced"])
    assert "Author: alice (creator) — identity verified: its certificate is on your identity trust list" in result.report()
    assert result.contributions["human"]["author"]["name"] == "alice"
    # without this instance's identity CA, a verifier sees who signed it and that it is not on their list
    elsewhere = verify_bytes(path.read_bytes(), pipeline.identity.trust_anchors)
    assert elsewhere.verdict == "trusted"
    assert elsewhere.identities[0]["status"] == "untrusted"
    assert "signed by aipic identity local CA, not on your identity trust list" in elsewhere.report()


@pytest.mark.slow
def test_anonymous_use_is_recorded_as_anonymous_with_no_identity(pipeline):
    path = _make(pipeline)
    assertions = _assertions(path)
    assert not any(label.startswith("cawg.identity") for label in assertions)
    assert assertions["org.aipic.contributions"]["human"]["author"] == "anonymous"
    result = pipeline.verify(path)
    assert result.identities == [] and result.author_name is None
    assert "Author: anonymous" in result.report()


def test_a_broken_identity_signature_reads_as_tampered(pipeline):
    data = bytearray(_make(pipeline, author=pipeline.author_for_account("mallory")).read_bytes())
    signature = data.find(b"cawg.x509.cose")
    index = data.find(b"signature", signature) + 200  # inside the identity's COSE signature (its certificate)
    data[index] ^= 0xFF
    result = verify_bytes(bytes(data), pipeline.identity.trust_anchors, [pipeline.identity_authority.ca_pem])
    [identity] = result.identities
    assert identity["status"] == "tampered"
    assert any("mismatch" in code for code in identity["codes"])
    assert "altered or its signature does not match" in result.report()
    assert result.author_name is None  # a tampered identity names nobody


@pytest.mark.slow
def test_training_and_mining_terms_round_trip(pipeline):
    path = _make(pipeline, terms={"ai_training": "not allowed", "data_mining": "constrained"}, terms_constraint="only with credit")
    assertions = _assertions(path)
    entries = assertions["cawg.training-mining"]["entries"]
    assert entries["cawg.ai_training"] == {"use": "notAllowed"}
    assert entries["cawg.data_mining"] == {"use": "constrained", "constraint_info": "only with credit"}
    assert entries["cawg.ai_generative_training"] == {"use": "notAllowed"}  # the default
    assert entries["cawg.ai_inference"] == {"use": "allowed"}
    result = pipeline.verify(path)
    assert result.terms["ai_training"]["use"] == "notAllowed"
    assert "data mining: constrained (only with credit)" in result.report()


def test_default_terms_forbid_only_generative_training():
    terms = authorship.resolve_terms()
    assert terms.uses == {"data_mining": "allowed", "ai_inference": "allowed", "ai_training": "allowed", "ai_generative_training": "notAllowed"}


@pytest.mark.parametrize("uses, constraint, message", [
    ({"ai_training": "maybe"}, "", "not a choice"),
    ({"scraping": "allowed"}, "", "Unknown use"),
    ({"ai_training": "constrained"}, "", "Say what the constraint is"),
])
def test_bad_terms_are_clear_errors(uses, constraint, message):
    with pytest.raises(BadInput, match=message):
        authorship.resolve_terms(uses, constraint)


def test_bad_terms_fail_before_any_model_loads(tmp_path):
    fresh = AipicPipeline(Settings(models_mode="tiny", device="cpu", home=tmp_path))
    with pytest.raises(BadInput, match="not a choice"):
        fresh.jobs.text_to_image(GenerationRequest(prompt="x", terms={"ai_training": "perhaps"}))
    assert fresh.models._loaded == {}


@pytest.mark.slow
def test_a_rights_statement_is_recorded_and_shown(pipeline):
    path = _make(pipeline, rights_statement="© 2026 Alice. All rights reserved.")
    result = pipeline.verify(path)
    assert result.contributions["human"]["rights_statement"] == "© 2026 Alice. All rights reserved."
    assert "Rights statement: © 2026 Alice. All rights reserved." in result.report()
    with pytest.raises(BadInput, match="at most 500"):
        authorship.check_rights_statement("x" * 501)


def _no_inference_upload(pipeline, tmp_path, tamper=False):
    path = _make(pipeline, terms={"ai_inference": "notAllowed"})
    data = bytearray(path.read_bytes())
    if tamper:
        index = data.find(b"a lighthouse keeper")
        data[index : index + 7] = b"a light"[::-1]  # the manifest altered after signing: its credentials fail, its terms still hold
        data = bytearray(with_png_crcs(data))  # …in a PNG that still opens (a careless editor rewrites the chunk checksums)
    upload = tmp_path / ("tampered.png" if tamper else "upload.png")
    upload.write_bytes(bytes(data))
    return upload


@pytest.mark.slow
@pytest.mark.parametrize("tamper", [False, True])
def test_an_upload_whose_terms_forbid_ai_inference_is_refused(pipeline, tmp_path, tamper):
    upload = _no_inference_upload(pipeline, tmp_path, tamper)
    with pytest.raises(BadInput, match="AI inference is not allowed, so aipic will not use it") as refused:
        pipeline.jobs.image_to_image(GenerationRequest(prompt="as a painting", width=64, height=64, steps=2), upload)
    assert ("failed verification (tampered); the restriction is honoured anyway" in str(refused.value)) == tamper
    style = tmp_path / "style.png"
    image_file(style, 64, 64)
    with pytest.raises(BadInput, match="style image's Content Credentials say that AI inference is not allowed"):
        pipeline.jobs.style(StyleRequest(content_image=str(style), style_image=str(upload), steps=1, size=64))


@pytest.mark.slow
def test_an_uploads_terms_are_recorded_with_its_ingredient(pipeline, tmp_path):
    source = _make(pipeline, terms={"ai_training": "notAllowed"}, rights_statement="© 2026 Erin")
    upload = tmp_path / "upload.png"
    upload.write_bytes(source.read_bytes())
    outcome = pipeline.image_to_image(GenerationRequest(prompt="as a painting", width=64, height=64, steps=2, strength=0.5), upload)
    [recorded] = _assertions(outcome.items[0].path)["org.aipic.contributions"]["human"]["uploads"]
    assert recorded["terms"]["ai_training"] == {"use": "notAllowed"}
    assert recorded["rights"] == "© 2026 Erin"


@pytest.mark.slow
def test_every_model_licence_is_in_the_catalog_and_the_manifest(pipeline):
    catalog = load_catalog()
    for entries in catalog.entries.values():
        for entry in entries.values():
            assert entry.license["name"] and entry.license["commercial_use"] in ("allowed", "conditional", "not_allowed", "unclear")
    assert catalog.entry("text_to_image", "sd-turbo").license["url"] == "https://huggingface.co/stabilityai/sd-turbo/blob/main/LICENSE.md"
    [model] = _assertions(_make(pipeline))["org.aipic.contributions"]["model"]["models"]
    assert model["license"] == catalog.entry("text_to_image", "tiny-random").license  # the weights that ran: aipic's random ones
    assert "licence: none needed" in pipeline.verify(_make(pipeline)).report()


def test_a_commercial_deployment_refuses_a_model_whose_licence_does_not_allow_it(tmp_path, monkeypatch):
    catalog = load_catalog()
    authorship.check_commercial("SD-Turbo", catalog.entry("text_to_image", "sd-turbo").license, commercial=True)  # conditional: allowed
    with pytest.raises(ConfigError, match="does not clearly allow"):
        authorship.check_commercial("VGG19", catalog.entry("style", "vgg19").license, commercial=True)
    with pytest.raises(ConfigError, match="does not allow commercial use"):
        authorship.check_commercial("X", {"name": "CC BY-NC 4.0", "commercial_use": "not_allowed"}, commercial=True)
    monkeypatch.setenv("AIPIC_COMMERCIAL_USE", "1")
    strict = AipicPipeline(Settings.from_env(models_mode="auto", device="cpu", home=tmp_path))
    content = image_file(tmp_path / "c.png", 64, 64)
    with pytest.raises(ConfigError, match="set for commercial use"):
        strict.jobs.style(StyleRequest(content_image=str(content), style_image=str(content), steps=1, size=64))
    assert strict.models._loaded == {}  # refused before loading anything


def test_the_authorship_statement_follows_the_contributions_and_cites_the_report():
    text = authorship.authorship_statement({"task": "text-to-image", "human": {"prompt": "x", "parameters": {"steps": 1}}}, "alice")
    assert text.startswith("alice contributed a prompt and the settings; the model generated")
    assert "Copyright and Artificial Intelligence, Part 2: Copyrightability" in text and "January 2025" in text
    assert "prompts alone do not make a person the author" in text and "not legal advice" in text
    edited = authorship.authorship_statement({"human": {"prompt": "x", "uploads": [{"role": "init image"}]}})
    assert "an uploaded init image" in edited and "Your own work in an upload stays yours" in edited


def _own_credential(tmp_path, days=30):
    ca_pem, ca_key = create_ca("Example Org")
    chain, key = issue_signer(ca_pem, ca_key, common_name="Dana Example", days=days)
    cert_path, key_path = tmp_path / "me.pem", tmp_path / "me-key.pem"
    cert_path.write_text(chain)
    key_path.write_bytes(key)
    return cert_path, key_path


def test_a_cli_user_can_bring_their_own_x509_credential(tmp_path, capsys):
    from aipic.cli import main

    cert, key = _own_credential(tmp_path)
    home = tmp_path / "home"
    code = main(["generate", "a harbour at dawn", "--seed", "1", "--width", "64", "--height", "64", "--steps", "2", "--models", "tiny",
                 "--home", str(home), "--author-cert", str(cert), "--author-key", str(key), "--terms", "ai_training=notAllowed", "--json"])
    assert code == 0
    path = json.loads(capsys.readouterr().out)["outputs"][0]["path"]
    result = verify_bytes(open(path, "rb").read(), [])
    [identity] = result.identities
    assert identity["name"] == "Dana Example signer" and identity["issuer"] == "Example Org local CA"
    assert identity["status"] == "untrusted"  # their CA is on nobody's list here: said so, not hidden
    assert result.terms["ai_training"]["use"] == "notAllowed"


def test_a_bad_own_credential_is_a_clear_error_before_anything_loads(tmp_path, capsys):
    from aipic.cli import main

    cert, _ = _own_credential(tmp_path)
    other = tmp_path / "other-key.pem"
    other.write_bytes(issue_signer(*create_ca("Other"))[1])
    assert main(["generate", "x", "--models", "tiny", "--home", str(tmp_path / "h"), "--author-cert", str(cert), "--author-key", str(other)]) == 2
    assert "does not belong to the author certificate" in capsys.readouterr().err
    assert main(["generate", "x", "--models", "tiny", "--home", str(tmp_path / "h"), "--author-cert", str(cert)]) == 2
    assert "go together" in capsys.readouterr().err


def test_identity_certificates_are_short_lived_and_issued_by_a_separate_ca(pipeline):
    from cryptography import x509

    author = pipeline.author_for_account("bob")
    cert, ca = x509.load_pem_x509_certificates(author.chain_pem.encode())
    assert cert.subject.rfc4514_string() == "O=aipic,OU=signed-in account,CN=bob"
    assert ca.subject != x509.load_pem_x509_certificate(pipeline.identity.ca_pem.encode()).subject
    assert cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc) <= datetime.timedelta(days=30)
    assert pipeline.author_for_account("bob") is author  # reused until a day before it expires
    with pytest.raises(BadInput):
        pipeline.author_for_account("")
    key = pipeline.key_dir / "identity-ca-key.pem"
    assert key.stat().st_mode & 0o077 == 0 and (pipeline.home / "keys-backup" / "identity-ca-key.pem").is_file()


def test_an_identity_is_never_dropped_silently(pipeline, monkeypatch):
    """If the library signs without the identity, the output is refused rather than published without it."""
    import c2pa

    from aipic.common.errors import StageFailed

    original = c2pa.Builder.sign

    def sign_and_drop(self, *args):
        return original(self, *args)[:0]  # a store without the identity assertion, as a silent drop would give

    monkeypatch.setattr(c2pa.Builder, "sign", sign_and_drop)
    author = pipeline.author_for_account("carol")
    with pytest.raises(StageFailed, match="identity could not be attached"):
        definition = build_manifest(title="t.png", task="text-to-image", description="test", agent={"name": "test"}, human={}, models=[], outputs={}, audit={}, ingredients=[])
        sign_as_author(open(_make(pipeline), "rb").read(), "image/png", definition, [], pipeline.identity, author)


@pytest.mark.slow
def test_aipic_verify_json_gives_the_author_terms_and_statement(pipeline, capsys):
    from aipic.cli import main

    path = _make(pipeline, author=pipeline.author_for_account("frank"), terms={"ai_inference": "notAllowed"})
    assert main(["verify", str(path), "--home", str(pipeline.home), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)[str(path)]
    assert result["verdict"] == "trusted"
    [identity] = result["identities"]
    assert identity["name"] == "frank" and identity["status"] == "trusted" and "cawg.identity.well-formed" in identity["codes"]
    assert result["terms"]["ai_inference"] == {"use": "notAllowed"}
    assert main(["verify", str(path), "--home", str(pipeline.home)]) == 0
    text = capsys.readouterr().out
    assert "Author: frank (creator)" in text and "What the person can claim: frank contributed" in text


@pytest.mark.slow
@pytest.mark.parametrize("output_format", ["jpeg", "webp"])
def test_an_author_identity_is_attached_in_every_output_format(pipeline, output_format):
    path = _make(pipeline, author=pipeline.author_for_account("gina"), output_format=output_format)
    result = pipeline.verify(path)
    assert result.verdict == "trusted" and result.identities[0]["name"] == "gina"


def test_an_authors_output_is_timestamped_when_a_tsa_is_configured(tmp_path):
    from tsa import TimeStampAuthority

    authority = TimeStampAuthority()
    url = authority.start()
    try:
        timestamped = AipicPipeline(Settings(models_mode="tiny", device="cpu", home=tmp_path, tsa_url=url))
        try:
            outcome = timestamped.text_to_image(GenerationRequest(prompt="a harbour", seed=1, width=64, height=64, steps=2), author=timestamped.author_for_account("hana"))
            [item] = outcome.items
            assert item.timestamped
            result = verify_bytes(item.path.read_bytes(), [*timestamped.identity.trust_anchors, authority.ca_pem], [timestamped.identity_authority.ca_pem])
            assert result.verdict == "trusted" and result.timestamp == "trusted"
            assert result.identities[0]["name"] == "hana" and result.identities[0]["status"] == "trusted"
        finally:
            timestamped.close()
    finally:
        authority.stop()
