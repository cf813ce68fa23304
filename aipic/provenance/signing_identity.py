"""aipic's signing identity: a local CA that is kept for good, and an end-entity signer renewed from it.

Layout under the aipic home::

    keys/ca.pem, keys/ca-key.pem          the CA (its key 0600, never served)
    keys/signer-chain.pem, signer-key.pem the claim signer (CA-issued end-entity, renewed before it expires)
    keys/trusted-cas/*.pem                earlier CAs of this home: trust anchors for good
    keys-backup/                          a copy of the CA and of trusted-cas/, beside keys/
    signing-ca.json                       marker: which CA this home signs with (tells a first run from a lost key)

Rules (ARCHITECTURE.md, decisions): the CA is never replaced silently.  A lost signer is renewed from the CA; a lost
CA is restored from the backup; with neither, aipic refuses to start and says how to recover.  A home made
before the CA key was kept has a CA without a key: a new CA is created once, loudly, and the old ``ca.pem``
stays a trust anchor so earlier outputs stay trusted.
"""

import datetime
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from aipic.common.errors import ConfigError
from aipic.common.files import write_atomically
from aipic.provenance.certificates import certificate_sha256, create_ca, issue, subject

log = logging.getLogger(__name__)

CA_FILE, CA_KEY_FILE, CHAIN_FILE, KEY_FILE = "ca.pem", "ca-key.pem", "signer-chain.pem", "signer-key.pem"
TRUSTED_CAS_DIR, BACKUP_DIR, MARKER_FILE = "trusted-cas", "keys-backup", "signing-ca.json"
SIGNER_DAYS, RENEW_BEFORE_DAYS = 730, 30
# C2PA's own claim-signing purpose, beside emailProtection (which current c2pa-rs requires; claimSigning alone
# is refused at signing): verifiers that look for either find it.
C2PA_CLAIM_SIGNING = x509.ObjectIdentifier("1.3.6.1.4.1.62558.2.1")


@dataclass(frozen=True)
class SigningIdentity:
    directory: Path
    ca_pem: str
    chain_pem: str  # signer certificate followed by the CA certificate
    key_path: Path  # never served: read only when signing
    earlier_ca_pems: tuple = field(default_factory=tuple)  # CAs this home signed with before: still trusted

    @property
    def signer_name(self) -> str:
        return x509.load_pem_x509_certificate(self.chain_pem.encode()).subject.rfc4514_string()

    @property
    def ca_sha256(self) -> str:
        return certificate_sha256(self.ca_pem)

    @property
    def trust_anchors(self) -> list[str]:
        return [self.ca_pem, *self.earlier_ca_pems]


def issue_signer(ca_pem: str, ca_key_pem: bytes, common_name: str = "aipic", days: float = SIGNER_DAYS, not_before=None, not_after=None) -> tuple[str, bytes]:
    """(chain PEM: signer then CA, private key PEM) of an end-entity claim signer issued by the CA
    (EKU emailProtection and c2pa-kp-claimSigning)."""
    start = not_before or datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    return issue(ca_pem, ca_key_pem, subject(f"{common_name} signer"), [ExtendedKeyUsageOID.EMAIL_PROTECTION, C2PA_CLAIM_SIGNING],
                 start, not_after or start + datetime.timedelta(days=days))


def write_private(path: Path, data: bytes) -> None:
    """A secret, 0600 and atomically (a crash never leaves half a key that looks whole)."""
    write_atomically(path, data, private=True)


def _signer_needs_renewal(directory: Path, ca_pem: str) -> str:
    """Why the signer must be (re)issued, or '' when it is fine."""
    chain, key = directory / CHAIN_FILE, directory / KEY_FILE
    if not chain.is_file() or not key.is_file():
        return "the signer certificate or key is missing"
    try:
        signer, *rest = x509.load_pem_x509_certificates(chain.read_bytes())
    except ValueError:
        return "the signer certificate cannot be read"
    if not rest or rest[0].public_bytes(serialization.Encoding.DER) != x509.load_pem_x509_certificate(ca_pem.encode()).public_bytes(serialization.Encoding.DER):
        return "the signer was not issued by this home's CA"
    left = signer.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    if left < datetime.timedelta(days=RENEW_BEFORE_DAYS):
        return f"the signer certificate expires in {max(left.days, 0)} days"
    return ""


def _earlier_cas(directory: Path) -> tuple:
    folder = directory / TRUSTED_CAS_DIR
    return tuple(path.read_text() for path in sorted(folder.glob("*.pem"))) if folder.is_dir() else ()


def _retire_ca(directory: Path, ca_pem: str) -> None:
    folder = directory / TRUSTED_CAS_DIR
    folder.mkdir(exist_ok=True, mode=0o700)
    write_atomically(folder / f"ca-{certificate_sha256(ca_pem)[:16]}.pem", ca_pem)


def _backup(directory: Path) -> None:
    """Copy the CA (and earlier CAs) beside keys/, so losing keys/ does not lose the CA."""
    backup = directory.parent / BACKUP_DIR
    backup.mkdir(exist_ok=True, mode=0o700)
    write_atomically(backup / CA_FILE, (directory / CA_FILE).read_text())
    write_private(backup / CA_KEY_FILE, (directory / CA_KEY_FILE).read_bytes())
    for pem in (directory / TRUSTED_CAS_DIR).glob("*.pem") if (directory / TRUSTED_CAS_DIR).is_dir() else ():
        (backup / TRUSTED_CAS_DIR).mkdir(exist_ok=True, mode=0o700)
        write_atomically(backup / TRUSTED_CAS_DIR / pem.name, pem.read_text())


def _restore(directory: Path) -> bool:
    backup = directory.parent / BACKUP_DIR
    if not ((backup / CA_FILE).is_file() and (backup / CA_KEY_FILE).is_file()):
        return False
    write_atomically(directory / CA_FILE, (backup / CA_FILE).read_text())
    write_private(directory / CA_KEY_FILE, (backup / CA_KEY_FILE).read_bytes())
    for pem in (backup / TRUSTED_CAS_DIR).glob("*.pem") if (backup / TRUSTED_CAS_DIR).is_dir() else ():
        (directory / TRUSTED_CAS_DIR).mkdir(exist_ok=True, mode=0o700)
        write_atomically(directory / TRUSTED_CAS_DIR / pem.name, pem.read_text())
    return True


def ensure_signing_identity(directory: str | Path, common_name: str = "aipic") -> SigningIdentity:
    """Load this home's signing identity; create it on a first run, renew the signer, restore the CA from backup.

    Raises ConfigError (never silently makes a new CA) when the CA is lost and no backup exists.
    """
    directory = Path(directory)
    marker = directory.parent / MARKER_FILE
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        ca_path, ca_key_path = directory / CA_FILE, directory / CA_KEY_FILE
        known = json.loads(marker.read_text()) if marker.is_file() else None

        if not ca_path.is_file() or (known and not ca_key_path.is_file()):
            if _restore(directory):
                log.warning("signing CA restored from %s", directory.parent / BACKUP_DIR)
            elif known:
                raise ConfigError(
                    f"The signing CA of this aipic home (fingerprint {known.get('ca_sha256', '?')[:16]}…) is missing from {directory} "
                    f"and there is no backup in {directory.parent / BACKUP_DIR}. Restore {CA_FILE} and {CA_KEY_FILE} into {directory}; "
                    f"aipic will not make a new CA silently, because every earlier output would stop being trusted. "
                    f"To start over with a new CA anyway, delete {marker} (keep the old ca.pem to trust earlier outputs)."
                )
        if ca_path.is_file() and not ca_key_path.is_file():
            # A home made before aipic kept its CA key: no signer can ever be renewed from that CA.
            old_ca = ca_path.read_text()
            _retire_ca(directory, old_ca)
            log.warning(
                "this aipic home's CA (sha256 %s) has no private key (made before aipic kept it): creating a new CA once; "
                "the old CA stays a trust anchor in %s, so earlier outputs stay trusted", certificate_sha256(old_ca)[:16], directory / TRUSTED_CAS_DIR,
            )
            ca_path.unlink()
        if not ca_path.is_file():
            ca_pem, ca_key = create_ca(common_name)
            write_private(ca_key_path, ca_key)
            write_atomically(ca_path, ca_pem)
            log.info("created a new local signing CA")
        ca_pem = ca_path.read_text()
        reason = _signer_needs_renewal(directory, ca_pem)
        if reason:
            chain_pem, key_pem = issue_signer(ca_pem, ca_key_path.read_bytes(), common_name)
            write_private(directory / KEY_FILE, key_pem)
            write_atomically(directory / CHAIN_FILE, chain_pem)
            log.info("issued a new signer certificate from the local CA (%s)", reason)
        _backup(directory)
        ca_sha = certificate_sha256(ca_pem)
        if not known or known.get("ca_sha256") != ca_sha:
            write_atomically(marker, json.dumps({"ca_sha256": ca_sha, "since": datetime.datetime.now(datetime.timezone.utc).isoformat()}))
        for path in (directory / KEY_FILE, ca_key_path):
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
    except OSError as error:
        raise ConfigError(f"Cannot read or write the signing keys in {directory}: {error.strerror or error}") from None
    log.info("signing CA sha256 %s", ca_sha)
    return SigningIdentity(
        directory=directory, ca_pem=ca_pem, chain_pem=(directory / CHAIN_FILE).read_text(), key_path=directory / KEY_FILE,
        earlier_ca_pems=_earlier_cas(directory),
    )


def local_trust_anchors(directory: str | Path) -> list[str]:
    """This home's CA and its earlier CAs, if any; verifying never creates keys."""
    directory = Path(directory)
    ca = directory / CA_FILE
    return ([ca.read_text()] if ca.is_file() else []) + list(_earlier_cas(directory))
