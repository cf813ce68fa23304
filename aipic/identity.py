"""aipic's signing identity: a local CA that is kept for good, and an end-entity signer renewed from it.

Layout under the aipic home::

    keys/ca.pem, keys/ca-key.pem          the CA (its key 0600, never served)
    keys/signer-chain.pem, signer-key.pem the claim signer (CA-issued end-entity, renewed before it expires)
    keys/trusted-cas/*.pem                earlier CAs of this home: trust anchors for good
    keys-backup/                          a copy of the CA and of trusted-cas/, beside keys/
    signing-ca.json                       marker: which CA this home signs with (tells a first run from a lost key)

Rules (shared/DECISIONS.md): the CA is never replaced silently.  A lost signer is renewed from the CA; a lost
CA is restored from the backup; with neither, aipic refuses to start and says how to recover.  A home made
before the CA key was kept has a CA without a key: a new CA is created once, loudly, and the old ``ca.pem``
stays a trust anchor so earlier outputs stay trusted.
"""

import datetime
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import ConfigError

log = logging.getLogger(__name__)

CA_FILE, CA_KEY_FILE, CHAIN_FILE, KEY_FILE = "ca.pem", "ca-key.pem", "signer-chain.pem", "signer-key.pem"
TRUSTED_CAS_DIR, BACKUP_DIR, MARKER_FILE = "trusted-cas", "keys-backup", "signing-ca.json"
CA_DAYS, SIGNER_DAYS, RENEW_BEFORE_DAYS = 3650, 730, 30
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
    def ca_fingerprint(self) -> str:
        return fingerprint(self.ca_pem)

    @property
    def trust_anchors(self) -> list[str]:
        return [self.ca_pem, *self.earlier_ca_pems]


def fingerprint(pem: str) -> str:
    """SHA-256 of the certificate's DER, as hex: what operators compare."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aipic")])


def _key_usage(**enabled) -> x509.KeyUsage:
    flags = dict.fromkeys(
        ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"),
        False,
    )
    flags.update(enabled)
    return x509.KeyUsage(**flags)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def create_ca(common_name: str = "aipic", days: int = CA_DAYS) -> tuple[str, bytes]:
    """(certificate PEM, private key PEM) of a new local CA."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"{common_name} local CA")
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _pem(cert), _key_pem(key)


def issue_signer(ca_pem: str, ca_key_pem: bytes, common_name: str = "aipic", days: float = SIGNER_DAYS, not_before=None, not_after=None) -> tuple[str, bytes]:
    """(chain PEM: signer then CA, private key PEM) of an end-entity claim signer issued by the CA
    (EKU emailProtection and c2pa-kp-claimSigning)."""
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey), "aipic's CAs are EC P-256"
    start = not_before or datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name(f"{common_name} signer")).issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(not_after or start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, C2PA_CLAIM_SIGNING]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return _pem(cert) + ca_pem, _key_pem(key)


def write_private(path: Path, data: bytes) -> None:
    """Write a secret 0600, atomically (a crash never leaves half a key that looks whole)."""
    temporary = path.with_name(path.name + ".part")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    os.chmod(path, 0o600)


def _write_public(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".part")
    temporary.write_text(text)
    os.replace(temporary, path)


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
    _write_public(folder / f"ca-{fingerprint(ca_pem)[:16]}.pem", ca_pem)


def _backup(directory: Path) -> None:
    """Copy the CA (and earlier CAs) beside keys/, so losing keys/ does not lose the CA."""
    backup = directory.parent / BACKUP_DIR
    backup.mkdir(exist_ok=True, mode=0o700)
    _write_public(backup / CA_FILE, (directory / CA_FILE).read_text())
    write_private(backup / CA_KEY_FILE, (directory / CA_KEY_FILE).read_bytes())
    for pem in (directory / TRUSTED_CAS_DIR).glob("*.pem") if (directory / TRUSTED_CAS_DIR).is_dir() else ():
        (backup / TRUSTED_CAS_DIR).mkdir(exist_ok=True, mode=0o700)
        _write_public(backup / TRUSTED_CAS_DIR / pem.name, pem.read_text())


def _restore(directory: Path) -> bool:
    backup = directory.parent / BACKUP_DIR
    if not ((backup / CA_FILE).is_file() and (backup / CA_KEY_FILE).is_file()):
        return False
    _write_public(directory / CA_FILE, (backup / CA_FILE).read_text())
    write_private(directory / CA_KEY_FILE, (backup / CA_KEY_FILE).read_bytes())
    for pem in (backup / TRUSTED_CAS_DIR).glob("*.pem") if (backup / TRUSTED_CAS_DIR).is_dir() else ():
        (directory / TRUSTED_CAS_DIR).mkdir(exist_ok=True, mode=0o700)
        _write_public(directory / TRUSTED_CAS_DIR / pem.name, pem.read_text())
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
                "the old CA stays a trust anchor in %s, so earlier outputs stay trusted", fingerprint(old_ca)[:16], directory / TRUSTED_CAS_DIR,
            )
            ca_path.unlink()
        if not ca_path.is_file():
            ca_pem, ca_key = create_ca(common_name)
            write_private(ca_key_path, ca_key)
            _write_public(ca_path, ca_pem)
            log.info("created a new local signing CA")
        ca_pem = ca_path.read_text()
        reason = _signer_needs_renewal(directory, ca_pem)
        if reason:
            chain_pem, key_pem = issue_signer(ca_pem, ca_key_path.read_bytes(), common_name)
            write_private(directory / KEY_FILE, key_pem)
            _write_public(directory / CHAIN_FILE, chain_pem)
            log.info("issued a new signer certificate from the local CA (%s)", reason)
        _backup(directory)
        ca_sha = fingerprint(ca_pem)
        if not known or known.get("ca_sha256") != ca_sha:
            _write_public(marker, json.dumps({"ca_sha256": ca_sha, "since": datetime.datetime.now(datetime.timezone.utc).isoformat()}))
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
