"""A small, real RFC 3161 time-stamp authority for the tests, served over HTTP on 127.0.0.1.

It answers TimeStampReq with a granted TimeStampResp: a CMS SignedData over a TSTInfo (the request's message
imprint, the current time, its nonce), signed with an EC key whose certificate has the critical timeStamping
EKU and is issued by the TSA's own CA. Not a mock: c2pa-rs talks to it over HTTP and validates its tokens.
"""

import datetime
import hashlib
import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aipic test TSA")])


class TimeStampAuthority:
    def __init__(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _name("aipic test TSA root")
        self.ca = (
            x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (
            x509.CertificateBuilder().subject_name(_name("aipic test TSA")).issuer_name(ca_name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.serials = itertools.count(1)
        self.requests = 0
        self.server = None

    @property
    def ca_pem(self) -> str:
        return self.ca.public_bytes(serialization.Encoding.PEM).decode()

    def respond(self, request_der: bytes) -> bytes:
        request = tsp.TimeStampReq.load(request_der)
        self.requests += 1
        cert_der = self.cert.public_bytes(serialization.Encoding.DER)
        ca_der = self.ca.public_bytes(serialization.Encoding.DER)
        info = {
            "version": "v1",
            "policy": "1.3.6.1.4.1.99999.1",
            "message_imprint": request["message_imprint"],
            "serial_number": next(self.serials),
            "gen_time": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0),
        }
        if request["nonce"].native is not None:
            info["nonce"] = request["nonce"].native
        tst_info = tsp.TSTInfo(info)
        signed_attrs = cms.CMSAttributes([
            cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
            cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(tst_info.dump()).digest()]}),
            cms.CMSAttribute({"type": "signing_certificate_v2", "values": [tsp.SigningCertificateV2({
                "certs": [tsp.ESSCertIDv2({"hash_algorithm": {"algorithm": "sha256"}, "cert_hash": hashlib.sha256(cert_der).digest()})],
            })]}),
        ])
        signature = self.key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
        certificate = asn1_x509.Certificate.load(cert_der)
        signer_info = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({"issuer": certificate.issuer, "serial_number": certificate.serial_number})}),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": signed_attrs,
            "signature_algorithm": {"algorithm": "sha256_ecdsa"},
            "signature": signature,
        })
        signed_data = cms.SignedData({
            "version": "v3",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {"content_type": "tst_info", "content": tst_info},
            "certificates": [certificate, asn1_x509.Certificate.load(ca_der)] if request["cert_req"].native else [],
            "signer_infos": [signer_info],
        })
        token = cms.ContentInfo({"content_type": "signed_data", "content": signed_data})
        return tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump()

    def start(self) -> str:
        authority = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    answer, status = authority.respond(body), 200
                except Exception:  # noqa: BLE001 - a bad request gets a 400, like a real TSA
                    answer, status = b"", 400
                self.send_response(status)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
