"""Authorship and rights: who made an output, on what terms it may be used, and what the person can claim.

- **A named human author** (CAWG identity assertion v1.2, X.509 credential, role ``cawg.creator``). A signed-in
  person gets a short-lived identity certificate for their verified account name from this instance's own
  *identity* CA (``keys/identity-ca.pem``), which is separate from the claim signer's CA; a CLI user may bring
  their own X.509 credential. Anonymous use is recorded as anonymous: no identity assertion, never a name.
- **Training and mining terms** (``cawg.training-mining``): allowed, not allowed or constrained, for data
  mining, AI inference, AI training and AI generative training. Default: generative training not allowed.
- **What the person can claim**: a plain-language statement from the recorded contributions, under the US
  Copyright Office's report *Copyright and Artificial Intelligence, Part 2: Copyrightability* (January 2025).

Imports only the standard library and ``cryptography``: ``aipic verify`` uses the reading half.
"""

from __future__ import annotations

import datetime
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aipic.common.errors import BadInput, ConfigError
from aipic.common.files import write_atomically
from aipic.provenance import labels
from aipic.provenance.certificates import certificate_sha256, create_ca, issue, load_pem_certificates, subject
from aipic.provenance.signing_identity import BACKUP_DIR

log = logging.getLogger(__name__)

USES = ("data_mining", "ai_inference", "ai_training", "ai_generative_training")
USE_TITLES = {"data_mining": "data mining", "ai_inference": "AI inference", "ai_training": "AI training", "ai_generative_training": "AI generative training"}
USE_VALUES = ("allowed", "notAllowed", "constrained")
USE_WORDS = {"allowed": "allowed", "notAllowed": "not allowed", "constrained": "constrained"}
DEFAULT_TERMS = {"data_mining": "allowed", "ai_inference": "allowed", "ai_training": "allowed", "ai_generative_training": "notAllowed"}
MAX_RIGHTS_CHARS = 500
MAX_CONSTRAINT_CHARS = 300

USCO_REPORT = "the US Copyright Office's report “Copyright and Artificial Intelligence, Part 2: Copyrightability” (January 2025)"
USCO_URL = "https://www.copyright.gov/ai/Copyright-and-Artificial-Intelligence-Part-2-Copyrightability-Report.pdf"


# ---- training and mining terms --------------------------------------------------------------------------------


def _use_value(value, use: str) -> str:
    text = str(value or "").strip()
    normal = {"allowed": "allowed", "notallowed": "notAllowed", "not allowed": "notAllowed", "not_allowed": "notAllowed", "constrained": "constrained"}.get(text.lower().replace("-", " ") if text else "")
    if normal is None:
        raise BadInput(f"{USE_TITLES[use].capitalize()}: {text!r} is not a choice; use allowed, not allowed or constrained.")
    return normal


@dataclass(frozen=True)
class Terms:
    """The person's choices for one output: each use allowed, notAllowed or constrained (with what the constraint is)."""

    uses: dict = field(default_factory=lambda: dict(DEFAULT_TERMS))
    constraint: str = ""  # for the constrained uses: in the person's words

    def assertion(self) -> dict:
        """The ``cawg.training-mining`` assertion's data."""
        entries = {}
        for use in USES:
            entry = {"use": self.uses[use]}
            if self.uses[use] == "constrained":
                entry["constraint_info"] = self.constraint
            entries[f"cawg.{use}"] = entry
        return {"entries": entries}

    def lines(self) -> list[str]:
        return terms_lines(self.assertion()["entries"])


def resolve_terms(uses: dict | None = None, constraint: str | None = None) -> Terms:
    """Validate the person's choices; uses not given take the defaults (generative training not allowed)."""
    chosen = dict(DEFAULT_TERMS)
    for use, value in (uses or {}).items():
        if use not in USES:
            raise BadInput(f"Unknown use {use!r}; the terms cover {', '.join(USE_TITLES[u] for u in USES)}.")
        if value is not None and value != "":
            chosen[use] = _use_value(value, use)
    constraint = (constraint or "").strip()
    if len(constraint) > MAX_CONSTRAINT_CHARS:
        raise BadInput(f"The constraint is {len(constraint)} characters long; at most {MAX_CONSTRAINT_CHARS} are allowed.")
    if "constrained" in chosen.values() and not constraint:
        raise BadInput("Say what the constraint is (for example “only with credit to the author”) when a use is constrained.")
    return Terms(uses=chosen, constraint=constraint if "constrained" in chosen.values() else "")


def read_terms(assertions: dict) -> dict | None:
    """The training-and-mining entries a manifest states ({use: {"use": …, "constraint_info": …}}), or None.

    Reads ``cawg.training-mining`` and the C2PA 1.x ``c2pa.training-mining``; entry names become the short
    use names (``ai_inference`` …)."""
    data = assertions.get(labels.TRAINING_MINING) or assertions.get(labels.LEGACY_TRAINING_MINING)
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        return None
    out = {}
    for name, entry in data["entries"].items():
        short = str(name).split(".", 1)[-1]
        if isinstance(entry, dict):
            out[short] = {key: entry[key] for key in ("use", "constraint_info") if key in entry}
    return out or None


def read_rights(assertions: dict) -> str | None:
    """A rights statement a manifest makes: aipic's own (the human contribution's ``rights_statement``), else a
    schema.org CreativeWork's ``copyrightNotice`` / ``license`` (older C2PA files)."""
    human = (labels.find_assertion(assertions, labels.CONTRIBUTIONS, "human") or {}).get("human") or {}
    if human.get("rights_statement"):
        return str(human["rights_statement"])
    work = assertions.get(labels.SCHEMA_ORG_CREATIVE_WORK)
    if isinstance(work, dict):
        parts = [str(work[key]) for key in ("copyrightNotice", "license") if work.get(key)]
        return "; ".join(parts) or None
    return None


def terms_lines(entries: dict) -> list[str]:
    """One line per use, in plain words, from assertion entries (full or short names)."""
    lines = []
    order = {use: index for index, use in enumerate(USES)}  # the four uses in a fixed order, others after them
    for name, entry in sorted(entries.items(), key=lambda item: order.get(str(item[0]).split(".", 1)[-1], len(USES))):
        short = str(name).split(".", 1)[-1]
        value = (entry or {}).get("use", "?")
        line = f"{USE_TITLES.get(short, short)}: {USE_WORDS.get(value, value)}"
        if value == "constrained" and entry.get("constraint_info"):
            line += f" ({entry['constraint_info']})"
        lines.append(line)
    return lines


def forbids_inference(terms: dict | None) -> bool:
    """Whether an upload's terms say AI inference (using it as a model's input) is not allowed."""
    return terms is not None and (terms.get("ai_inference") or {}).get("use") == "notAllowed"


def check_rights_statement(text: str | None) -> str:
    text = (text or "").strip()
    if len(text) > MAX_RIGHTS_CHARS:
        raise BadInput(f"The rights statement is {len(text)} characters long; at most {MAX_RIGHTS_CHARS} are allowed.")
    return text


# ---- the author's identity ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Author:
    """A named human author and the X.509 credential that signs their identity assertion. Never logged."""

    name: str
    chain_pem: str  # end-entity certificate first, then its issuers
    key_pem: str = field(repr=False)
    alg: str = "es256"
    source: str = "account"  # "account" (signed in, issued here) | "own credential" (brought by the person)
    not_after: datetime.datetime | None = None

    @property
    def serial(self) -> int:
        return x509.load_pem_x509_certificate(self.chain_pem.encode()).serial_number


def _check_account(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 64 or any(ord(ch) < 32 for ch in name):
        raise BadInput("The account name must be 1 to 64 printable characters.")
    return name


class IdentityAuthority:
    """This instance's identity CA: issues short-lived identity certificates for verified account names.

    Its key is kept 0600 beside the claim signer's (never served) and backed up to ``keys-backup/``; it is a
    different CA from the claim signer's, so an identity certificate can never sign a claim as aipic.
    """

    CA_FILE, CA_KEY_FILE = "identity-ca.pem", "identity-ca-key.pem"
    # Short-lived, but not shorter than a verifier's patience: c2pa-rs 0.91 checks an identity certificate's
    # validity at the time of reading (even with a timestamp), so an expired one reads as "expired" (README).
    LIFETIME = datetime.timedelta(days=30)
    RENEW_BEFORE = datetime.timedelta(days=1)
    CACHE_SIZE = 4096  # issued certificates kept in memory (keys never touch the disk)

    def __init__(self, key_dir: str | Path):
        self.key_dir = Path(key_dir)
        ca_path, key_path = self.key_dir / self.CA_FILE, self.key_dir / self.CA_KEY_FILE
        backup = self.key_dir.parent / BACKUP_DIR
        try:
            self.key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not (ca_path.is_file() and key_path.is_file()) and (backup / self.CA_FILE).is_file() and (backup / self.CA_KEY_FILE).is_file():
                write_atomically(ca_path, (backup / self.CA_FILE).read_text())
                write_atomically(key_path, (backup / self.CA_KEY_FILE).read_bytes(), private=True)
                log.warning("identity CA restored from %s", backup)
            if not (ca_path.is_file() and key_path.is_file()):
                ca_pem, ca_key = create_ca("aipic identity")
                write_atomically(key_path, ca_key, private=True)
                write_atomically(ca_path, ca_pem)
                log.info("created this instance's identity CA")
            backup.mkdir(exist_ok=True, mode=0o700)
            write_atomically(backup / self.CA_FILE, ca_path.read_text())
            write_atomically(backup / self.CA_KEY_FILE, key_path.read_bytes(), private=True)
            self.ca_pem = ca_path.read_text()
            self._ca_key = key_path.read_bytes()
            log.info("identity CA sha256 %s", certificate_sha256(self.ca_pem))
        except OSError as error:
            raise ConfigError(f"Cannot read or write the identity CA in {self.key_dir}: {error.strerror or error}") from None
        self._issued: dict[tuple[str, str], Author] = {}
        self._lock = threading.Lock()

    def issue(self, account: str, provider: str = "signed-in account") -> Author:
        """The identity certificate of a verified account name (cached until a day before it expires)."""
        account = _check_account(account)
        now = datetime.datetime.now(datetime.timezone.utc)
        with self._lock:
            author = self._issued.get((account, provider))
            if author is None or author.not_after is None or author.not_after - now < self.RENEW_BEFORE:
                author = self._issue(account, provider, now)
                self._issued.pop((account, provider), None)
                if len(self._issued) >= self.CACHE_SIZE:  # a public demo meets many accounts: keep the most recent
                    self._issued.pop(next(iter(self._issued)))
                self._issued[(account, provider)] = author
        return author

    def _issue(self, account: str, provider: str, now) -> Author:
        not_after = now + self.LIFETIME
        chain, key = issue(self.ca_pem, self._ca_key, subject(account, provider), [ExtendedKeyUsageOID.EMAIL_PROTECTION], now - datetime.timedelta(minutes=5), not_after)
        return Author(name=account, chain_pem=chain, key_pem=key.decode(), source="account", not_after=not_after)


def _alg_for(key) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        algs = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name not in algs:
            raise BadInput(f"The credential's key uses the curve {key.curve.name}; C2PA signs with P-256, P-384 or P-521.")
        return algs[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise BadInput("The credential's key type is not one C2PA signs with (EC P-256/384/521, Ed25519 or RSA).")


def load_own_credential(cert_path: str | Path, key_path: str | Path) -> Author:
    """A person's own X.509 credential (certificate chain PEM and private key PEM) as an Author, checked first:
    readable, the key matches the certificate, currently valid, and allowed to sign (digitalSignature)."""
    try:
        chain_text = Path(cert_path).read_text()
        key_bytes = Path(key_path).read_bytes()
    except (OSError, UnicodeDecodeError) as error:
        raise BadInput(f"Cannot read the author credential: {getattr(error, 'strerror', None) or error}") from None
    chain = load_pem_certificates(chain_text, Path(cert_path).name)
    try:
        key = serialization.load_pem_private_key(key_bytes, password=None)
    except (ValueError, TypeError):
        raise BadInput(f"{Path(key_path).name} is not an unencrypted PEM private key.") from None
    cert = chain[0]
    if cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise BadInput("The author key does not belong to the author certificate (the first certificate in the chain).")
    now = datetime.datetime.now(datetime.timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise BadInput(f"The author certificate is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}).")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            raise BadInput("The author certificate's key usage does not allow digital signatures.")
    except x509.ExtensionNotFound:
        pass
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(names[0].value) if names else cert.subject.rfc4514_string()
    return Author(name=name, chain_pem=chain_text, key_pem=key_bytes.decode(), alg=_alg_for(key), source="own credential", not_after=cert.not_valid_after_utc)


# ---- model licences -------------------------------------------------------------------------------------------

COMMERCIAL_WORDS = {
    "allowed": "commercial use allowed",
    "conditional": "commercial use allowed with conditions",
    "not_allowed": "commercial use not allowed",
    "unclear": "commercial use unclear",
}


def licence_line(licence: dict | None) -> str:
    """A model's licence in one line: name (SPDX id), commercial use, conditions."""
    if not licence:
        return "licence not recorded"
    name = licence.get("name", "?")
    spdx = licence.get("spdx")
    text = name + (f" ({spdx})" if spdx and spdx != name else "")
    text += " — " + COMMERCIAL_WORDS.get(licence.get("commercial_use", "unclear"), str(licence.get("commercial_use")))
    conditions = licence.get("conditions") or []
    if conditions:
        text += ": " + "; ".join(conditions)
    return text


def licence_markdown(licence: dict | None) -> str:
    line = licence_line(licence)
    url = (licence or {}).get("url")
    return f"{line} · [licence]({url})" if url else line


def check_commercial(model_label: str, licence: dict | None, commercial: bool) -> None:
    """With commercial use on (AIPIC_COMMERCIAL_USE), refuse a model whose licence forbids or does not settle it."""
    if not commercial:
        return
    use = (licence or {}).get("commercial_use", "unclear")
    if use == "not_allowed":
        raise ConfigError(f"This deployment is set for commercial use, and the licence of {model_label} ({(licence or {}).get('name', 'unknown')}) does not allow commercial use. Choose another model.")
    if use == "unclear":
        raise ConfigError(f"This deployment is set for commercial use, and the licence of {model_label} does not clearly allow it ({(licence or {}).get('name', 'licence not recorded')}). Choose another model.")


# ---- what the person can claim ---------------------------------------------------------------------------------


def authorship_statement(contributions: dict | None, author: str | None = None, rights: str | None = None) -> str:
    """What the person contributed, what the model generated, and what that means under the US Copyright
    Office's Part 2 report. Plain language; not legal advice."""
    contributions = contributions or {}
    human = contributions.get("human") or {}
    who = author or "The person"
    gave = []
    if human.get("prompt") or human.get("prompt_sha256"):
        gave.append("a prompt" + (" (kept private)" if human.get("prompt_sha256") else ""))
    if human.get("parameters"):
        gave.append("the settings")
    uploads = human.get("uploads") or []
    if uploads:
        gave.append(", ".join(f"an uploaded {u.get('role') or 'image'}" for u in uploads))
    made = "transformed the upload into the pictured result" if uploads else "generated the picture's visual content"
    listed = " and ".join([", ".join(gave[:-1]), gave[-1]] if len(gave) > 1 else gave) or "the request"
    text = f"{who} contributed {listed}; the model {made}. "
    text += ("According to " + USCO_REPORT + f" ({USCO_URL}), prompts alone do not make a person the author of what a model generates from them, "
             "because the prompt does not determine the expressive elements. ")
    if uploads:
        text += ("Your own work in an upload stays yours, and where it remains perceptible in the output that part can be protected; "
                 "the parts the model generated cannot. ")
    text += ("Creative selection or arrangement of outputs, and changes you make by hand afterwards, can be protected. "
             "This is general information, not legal advice; the law differs between countries.")
    if rights:
        text += f" The author's own rights statement: “{rights}”."
    return text
