"""The signing CA is kept for good: signer renewal, backup, restore, refusal, and the one-time legacy upgrade."""

import datetime
import os
import stat

import pytest
from cryptography import x509

from aipic.provenance import signing_identity as ident
from aipic.provenance.manifest import build_manifest
from aipic.provenance.signing import sign_png
from aipic.provenance.verify import verify_bytes
from aipic.common.errors import ConfigError
from conftest import make_image, png_of


def sign_with(identity) -> bytes:
    manifest = build_manifest(
        title="o.png", task="text-to-image", description="t", agent={"name": "tiny-random", "version": ""},
        human={"prompt": "p", "parameters": {}}, models=[{"name": "tiny-random"}], outputs={"seed": 1}, audit={}, ingredients=[],
    )
    return sign_png(png_of(make_image()), manifest, [], identity)


def test_first_run_keeps_the_ca_key_private_backs_it_up_and_marks_the_home(tmp_path):
    identity = ident.ensure_signing_identity(tmp_path / "keys")
    for secret in (tmp_path / "keys" / "ca-key.pem", tmp_path / "keys" / "signer-key.pem", tmp_path / "keys-backup" / "ca-key.pem"):
        assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert (tmp_path / "keys-backup" / "ca.pem").read_text() == identity.ca_pem
    assert identity.ca_sha256 in (tmp_path / "signing-ca.json").read_text()
    assert not list(tmp_path.rglob("*.part"))


def test_a_deleted_signer_is_renewed_from_the_same_ca_and_old_outputs_stay_trusted(tmp_path):
    first = ident.ensure_signing_identity(tmp_path / "keys")
    old_output = sign_with(first)
    (tmp_path / "keys" / "signer-key.pem").unlink()
    second = ident.ensure_signing_identity(tmp_path / "keys")
    assert second.ca_pem == first.ca_pem and second.chain_pem != first.chain_pem
    for data in (old_output, sign_with(second)):
        assert verify_bytes(data, second.trust_anchors).verdict == "trusted"


def test_a_signer_close_to_expiry_is_renewed(tmp_path):
    first = ident.ensure_signing_identity(tmp_path / "keys")
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=ident.SIGNER_DAYS - 10)
    chain, key = ident.issue_signer(first.ca_pem, (tmp_path / "keys" / "ca-key.pem").read_bytes(), not_before=start)
    (tmp_path / "keys" / "signer-chain.pem").write_text(chain)
    ident.write_private(tmp_path / "keys" / "signer-key.pem", key)
    renewed = ident.ensure_signing_identity(tmp_path / "keys")
    cert = x509.load_pem_x509_certificate(renewed.chain_pem.encode())
    assert cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc) > datetime.timedelta(days=700)
    assert renewed.ca_pem == first.ca_pem


def test_a_deleted_keys_folder_is_restored_from_the_backup(tmp_path):
    import shutil

    first = ident.ensure_signing_identity(tmp_path / "keys")
    old_output = sign_with(first)
    shutil.rmtree(tmp_path / "keys")
    second = ident.ensure_signing_identity(tmp_path / "keys")
    assert second.ca_pem == first.ca_pem
    assert verify_bytes(old_output, second.trust_anchors).verdict == "trusted"


def test_a_lost_ca_without_backup_is_refused_never_replaced_silently(tmp_path):
    import shutil

    first = ident.ensure_signing_identity(tmp_path / "keys")
    shutil.rmtree(tmp_path / "keys")
    shutil.rmtree(tmp_path / "keys-backup")
    with pytest.raises(ConfigError, match=f"fingerprint {first.ca_sha256[:16]}.*will not make a new CA silently"):
        ident.ensure_signing_identity(tmp_path / "keys")
    assert not (tmp_path / "keys" / "ca.pem").exists()


def test_a_home_from_before_the_ca_key_was_kept_gets_a_new_ca_once_and_keeps_trusting_the_old(tmp_path, caplog):
    # What the first slice left: ca.pem, signer chain and key, but no CA key and no marker.
    keys = tmp_path / "keys"
    keys.mkdir()
    old_ca, old_ca_key = ident.create_ca()
    chain, key = ident.issue_signer(old_ca, old_ca_key)
    (keys / "ca.pem").write_text(old_ca)
    (keys / "signer-chain.pem").write_text(chain)
    ident.write_private(keys / "signer-key.pem", key)
    legacy = ident.SigningIdentity(directory=keys, ca_pem=old_ca, chain_pem=chain, key_path=keys / "signer-key.pem")
    old_output = sign_with(legacy)

    with caplog.at_level("WARNING", logger="aipic.provenance.signing_identity"):
        upgraded = ident.ensure_signing_identity(keys)
    assert "creating a new CA once" in caplog.text
    assert upgraded.ca_pem != old_ca and upgraded.earlier_ca_pems == (old_ca,)
    assert (keys / "ca-key.pem").is_file()
    assert verify_bytes(old_output, upgraded.trust_anchors).verdict == "trusted"
    assert verify_bytes(old_output, ident.local_trust_anchors(keys)).verdict == "trusted"
    assert verify_bytes(sign_with(upgraded), upgraded.trust_anchors).verdict == "trusted"
    again = ident.ensure_signing_identity(keys)
    assert again.ca_pem == upgraded.ca_pem  # once, not at every start
