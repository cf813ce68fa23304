"""X.509 certificates: the small CAs aipic makes (the claim signer's, the identity CA), the end-entity
certificates they issue, and reading certificates back (a trust file, the chain a signature embeds).

Shared by signing (signing_identity, authorship) and verification (verify): neither imports the other for these.
"""

from __future__ import annotations

import datetime
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from aipic.common.errors import BadInput

CA_DAYS = 3650


def certificate_sha256(pem: str) -> str:
    """SHA-256 of a certificate's DER, as hex: what operators compare (not a picture's fingerprint)."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def subject(common_name: str, unit: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if unit:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit[:64]))
    return x509.Name([*attributes, x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aipic")])


def key_usage(**enabled) -> x509.KeyUsage:
    flags = dict.fromkeys(
        ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"),
        False,
    )
    flags.update(enabled)
    return x509.KeyUsage(**flags)


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def create_ca(common_name: str = "aipic", days: int = CA_DAYS) -> tuple[str, bytes]:
    """(certificate PEM, private key PEM) of a new local CA (EC P-256)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    name = subject(f"{common_name} local CA")
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert_pem(cert), key_pem(key)


def issue(ca_pem: str, ca_key_pem: bytes, name: x509.Name, purposes: list, not_before: datetime.datetime, not_after: datetime.datetime) -> tuple[str, bytes]:
    """(chain PEM: the new certificate then the CA, private key PEM) of an end-entity signing certificate
    (digitalSignature, the extended key usages ``purposes``) issued by a CA of aipic's."""
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey), "aipic's CAs are EC P-256"
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert_pem(cert) + ca_pem, key_pem(key)


# ---- reading ---------------------------------------------------------------------------------------------------


def load_pem_certificates(text: str, source: str) -> list:
    """The PEM certificates in a file someone gave (trust anchors, an author's chain); a clear error if none."""
    try:
        certificates = x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        certificates = []
    if not certificates:
        raise BadInput(f"{source} holds no PEM certificate (expected '-----BEGIN CERTIFICATE-----' blocks).")
    return certificates


def check_pem_anchors(text: str, source: str) -> str:
    """A trust-anchor file must hold PEM certificates; a clear error otherwise."""
    load_pem_certificates(text, source)
    return text


def embedded_certificate(data: bytes, label: bytes, serial):
    """The X.509 certificate with this serial number among the DER certificates that follow a box label in the
    file (a COSE signature's x5chain: ``c2pa.signature`` for the claim, ``cawg.identity`` for an author)."""
    start = data.find(label)
    while start != -1 and serial:
        window = data[start : start + 65536]
        position = window.find(b"\x30\x82")
        while position != -1:
            length = int.from_bytes(window[position + 2 : position + 4], "big") + 4
            try:
                certificate = x509.load_der_x509_certificate(window[position : position + length])
            except ValueError:
                certificate = None
            if certificate is not None and str(certificate.serial_number) == str(serial):
                return certificate
            position = window.find(b"\x30\x82", position + 1)
        start = data.find(label, start + 1)
    return None


def issuer_name(certificate) -> str:
    """A certificate's issuer: its common name, else the full name."""
    names = certificate.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else certificate.issuer.rfc4514_string()


def issued_by(certificate, anchors: list[str]) -> bool:
    """Whether one of these PEM CAs issued the certificate directly."""
    for pem in anchors:
        try:
            for ca in x509.load_pem_x509_certificates(pem.encode()):
                try:
                    certificate.verify_directly_issued_by(ca)
                    return True
                except Exception:  # noqa: BLE001 - InvalidSignature, a wrong key type and friends: not this CA
                    continue
        except ValueError:
            continue
    return False
