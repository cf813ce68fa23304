"""Verifying Content Credentials: verdicts keyed to the failure class, ingredients' own status, and a verifier
that a hostile file can neither stall nor exhaust.

Imports only c2pa and the standard library (never torch): ``aipic verify`` starts fast, and the bounded worker
process that reads untrusted files stays small.

The verdicts and what decides them: aipic.provenance.validation. The bounded worker is this module run as
``python -m aipic.provenance.verify``.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path

import c2pa
import numpy as np

from aipic.common.errors import AipicError, TooManyPixels
from aipic.common.settings import DEFAULT_NAMESPACE
from aipic.provenance import labels
from aipic.provenance.authorship import authorship_statement, licence_line, read_rights, read_terms, terms_lines
from aipic.provenance.certificates import embedded_certificate, issued_by, issuer_name
from aipic.provenance.manifest import salted_sha256
from aipic.provenance.recovery import MAX_LOOKUP_PIXELS, after_trustmark, search
from aipic.provenance.trustmark import TrustMarkSpec, read_prepared
from aipic.provenance.validation import VERDICT_TEXT, classify, made_with, reader_context, sniff_format

log = logging.getLogger(__name__)

MAX_VERIFY_BYTES = 50 * 1024 * 1024  # larger files get "too_large" at once, without being read
VERIFY_SECONDS = 20.0  # wall-clock limit of one verification
VERIFY_MEMORY_BYTES = 1536 * 1024 * 1024  # address-space limit of the worker process (virtual: libraries map more than they touch)
VERIFY_WORKING_SET = 300 * 1024 * 1024  # what one verification may hold in memory (bench/bench_verify.py measures it)


def automatic_verify_slots() -> int:
    """How many verifications may run at once when none is configured: one per core, and no more than a
    quarter of the machine's memory allows at VERIFY_WORKING_SET each."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        memory = 4 * 1024**3
    return max(1, min(os.cpu_count() or 1, memory // 4 // VERIFY_WORKING_SET))


class VerifySlots:
    """A process-wide cap on concurrent verification workers (each may hold up to VERIFY_WORKING_SET)."""

    def __init__(self, slots: int):
        self.resize(slots)

    def resize(self, slots: int) -> None:
        self.slots = max(1, int(slots))
        self._semaphore = threading.BoundedSemaphore(self.slots)

    def __enter__(self):
        self._semaphore.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self._semaphore.release()


VERIFY_SLOTS = VerifySlots(automatic_verify_slots())

@dataclass
class Verification:
    verdict: str
    message: str
    reason: str = ""  # the specific failure, in plain words
    codes: list = field(default_factory=list)  # the c2pa failure codes behind the verdict
    validation_state: str | None = None
    signer: str | None = None
    issuer: str | None = None
    signed_at: str | None = None  # from a trusted timestamp, when there is one
    timestamp: str = "none"  # none | trusted | valid, time-stamp authority not on your trust list | invalid
    claim_generator: str | None = None
    actions: list = field(default_factory=list)
    ingredients: list = field(default_factory=list)  # title, relationship, status, codes
    contributions: dict | None = None
    audit: dict | None = None
    problems: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # every failure code the library gives, each with its manifest ("active" or an ingredient)
    manifest: dict | None = None  # the active manifest as the reader gives it (the raw view)
    recovered: dict | None = None  # when the file's own credentials are missing or broken: the registry's match
    identities: list = field(default_factory=list)  # CAWG identity assertions: name, role, issuer, status, codes
    terms: dict | None = None  # training-and-mining terms ({use: {"use": …}}), read even from failed credentials
    rights: str | None = None  # the rights statement the manifest makes, if any
    intended_use: dict | None = None  # what the output must not be used for (aipic: not for diagnosis), if the manifest says
    trustmark_probe: dict | None = field(default=None, repr=False)  # between the bounded worker and its parent only

    @property
    def author_name(self) -> str | None:
        """The named author, when an identity assertion names one and its signature holds."""
        for identity in self.identities:
            if identity.get("status") not in ("tampered", "invalid") and identity.get("name"):
                return identity["name"]
        return None

    @property
    def ok(self) -> bool:
        return self.verdict in ("trusted", "untrusted")

    @property
    def claims_verified(self) -> bool:
        """Whether what the manifest says can be taken as what the signer said (intact and signed)."""
        return self.verdict in ("trusted", "untrusted", "expired")

    def to_dict(self) -> dict:
        fields = {key: value for key, value in self.__dict__.items() if key != "trustmark_probe"}
        return {**fields, "ok": self.ok, "claims_verified": self.claims_verified}

    def report(self) -> str:
        """A human-readable report: the verdict in plain words first, then what the credentials say."""
        if self.recovered:
            lines = [f"Verdict: RECOGNISED — an aipic picture whose credentials were removed or altered (its own: {self.verdict.replace('_', ' ')})"]
        else:
            lines = [f"Verdict: {self.verdict.replace('_', ' ').upper()} — {self.message}"]
        if self.reason:
            lines.append(f"Why: {self.reason}")
        claimed = "" if self.claims_verified else "Claimed, not verified — "
        if self.signer:
            lines.append(f"{claimed}Signed by: {self.signer}" + (f" (issuer: {self.issuer})" if self.issuer else ""))
        if self.signed_at:
            lines.append(f"Signed at: {self.signed_at} (RFC 3161 timestamp: {self.timestamp})")
        elif self.signer:
            lines.append("Signing time: not attested (no timestamp)" if self.timestamp == "none" else f"Timestamp: {self.timestamp}")
        if self.claim_generator:
            lines.append(f"{claimed}Made with: {self.claim_generator}")
        for action in self.actions:
            agent = action.get("softwareAgent")
            agent = agent.get("name") if isinstance(agent, dict) else agent
            source = (action.get("digitalSourceType") or "").rsplit("/", 1)[-1]
            lines.append(f"{claimed}Action: {action.get('action')}" + (f" by {agent}" if agent else "") + (f" [{source}]" if source else ""))
        for identity in self.identities:
            lines.append(f"{claimed}Author: {identity_line(identity)}" + (f" [{', '.join(identity['codes'])}]" if identity.get("codes") else ""))
        if self.contributions and not self.identities:
            author = (self.contributions.get("human") or {}).get("author")
            if author == "anonymous":
                lines.append(f"{claimed}Author: anonymous (no identity attached)")
        if self.terms:
            lines.append(f"{claimed}Training and mining: " + "; ".join(terms_lines(self.terms)))
        if self.intended_use and self.intended_use.get("statement"):
            lines.append(f"{claimed}{self.intended_use['statement']}")
        for ingredient in self.ingredients:
            status = ingredient.get("status", "")
            codes = ", ".join(ingredient.get("codes") or [])
            lines.append(f"Ingredient: {ingredient.get('title')} ({ingredient.get('relationship')}) — its credentials: {status}" + (f" [{codes}]" if codes else ""))
        if self.contributions:
            human = self.contributions.get("human", {})
            model = self.contributions.get("model", {})
            if human.get("prompt"):
                lines.append(f"{claimed}Human contribution — prompt: {human['prompt']!r}")
            if human.get("prompt_sha256"):
                lines.append(f"{claimed}Human contribution — prompt kept private (salted sha256 {human['prompt_sha256'][:16]}…)")
            if human.get("parameters"):
                lines.append(f"{claimed}Human contribution — parameters: {json.dumps(human['parameters'], sort_keys=True)}")
            for upload in human.get("uploads", []):
                extra = ""
                if upload.get("terms"):
                    extra += "; its terms: " + "; ".join(terms_lines(upload["terms"]))
                if upload.get("rights"):
                    extra += f"; its rights: {upload['rights']}"
                lines.append(f"{claimed}Human contribution — upload: {upload.get('role') or upload.get('title')} (sha256 {upload.get('sha256', '')[:16]}…){extra}")
            for entry in model.get("models", []):
                lines.append(f"{claimed}Model contribution — {entry.get('label') or entry.get('name')}" + (f"; licence: {licence_line(entry['license'])}" if entry.get("license") else ""))
            if human.get("rights_statement"):
                lines.append(f"{claimed}Rights statement: {human['rights_statement']}")
            lines.append(f"{claimed}What the person can claim: " + authorship_statement(self.contributions, self.author_name))
        if self.audit:
            lines.append(f"{claimed}Bias audit: " + audit_line(self.audit))
        for problem in self.problems:
            lines.append(f"Problem: {problem}")
        if self.recovered:
            found = self.recovered
            said = found.get("original_says") or {}
            human = (said.get("contributions") or {}).get("human") or {}
            lines.append(f"RECOGNISED: an aipic picture whose credentials were removed or altered — output {found['output_id']}, matched by {found['matched_by']}.")
            lines.append(f"  The original's credentials said: {'made with AI' if said.get('made_with_ai', True) else 'made'} by {found['model']} ({found['task']}), "
                         f"signed on {found['signed_on']}.")
            if human.get("prompt"):
                lines.append(f"  Prompt: {human['prompt']!r}")
            elif human.get("prompt_sha256"):
                lines.append("  Prompt: kept private by its author")
            if said.get("audit"):
                lines.append("  Bias audit: " + audit_line(said["audit"]))
            lines.append(f"  Its original manifest {found['manifest_label']}: {found['original_manifest']}.")
        return "\n".join(lines)


def prompt_matches(contributions: dict | None, prompt: str, salt_hex: str) -> bool:
    """Whether a private prompt's salted hash in the manifest is this prompt with this salt (proof of authorship)."""
    recorded = ((contributions or {}).get("human") or {}).get("prompt_sha256")
    try:
        return bool(recorded) and salted_sha256(salt_hex, prompt) == recorded
    except ValueError:  # not a hex salt
        return False


def audit_line(audit: dict) -> str:
    if not audit.get("person_present"):
        text = "no person detected"
    else:
        readings = [f"{name.replace('_', ' ')}: {result.get('label', '?').replace('_', ' ')}" for name, result in (audit.get("attributes") or {}).items()]
        text = "person detected; " + "; ".join(readings) if readings else "person detected"
    if (audit.get("clip_model") or {}).get("placeholder"):
        text += " (tiny random-weight CLIP: meaningless)"
    return text


IDENTITY_TEXT = {
    "trusted": "identity verified: its certificate is on your identity trust list",
    "aipic": "identity verified by aipic: issued by this aipic instance's identity CA",
    "untrusted": "identity signature valid; signed by {issuer}, not on your identity trust list",
    "expired": "identity signature valid, but its certificate has expired since; the name was verified when the certificate was issued",
    "tampered": "the identity assertion was altered or its signature does not match: the name cannot be trusted",
    "invalid": "the identity assertion is not valid",
}


def identity_line(identity: dict) -> str:
    status = str(identity.get("status") or "")
    text = IDENTITY_TEXT.get(status, status).format(issuer=identity.get("issuer") or "an unknown issuer")
    role = ", ".join(r.replace("cawg.", "") for r in identity.get("roles") or [])
    return f"{identity.get('name') or 'unnamed'}" + (f" ({role})" if role else "") + f" — {text}"


def identity_results(manifest: dict, active: dict, data: bytes, identity_anchors: list[str], active_label: str = "") -> list[dict]:
    """Each CAWG identity assertion of this file's manifest: who (name, roles), which credential (issuer), and its own
    status, kept apart from the claim's verdict (an identity result never changes it). Only entries whose URL is in
    this manifest count: an ingredient's identity has the same label in its own manifest."""
    out = []
    for assertion in manifest.get("assertions", []):
        label = assertion.get("label") or ""
        if not label.startswith("cawg.identity"):
            continue
        body = assertion.get("data") if isinstance(assertion.get("data"), dict) else {}
        payload = body.get("signer_payload") or {}
        info = body.get("signature_info") or {}
        suffix = f"/c2pa/{active_label}/c2pa.assertions/{label}" if active_label else "/" + label
        failures = [entry.get("code") for entry in active.get("failure") or [] if (entry.get("url") or "").endswith(suffix) and entry.get("code")]
        successes = [entry.get("code") for entry in active.get("success") or [] if (entry.get("url") or "").endswith(suffix) and entry.get("code")]
        certificate = embedded_certificate(data, label.encode(), info.get("cert_serial_number"))
        issuer = issuer_name(certificate) if certificate is not None else None
        cawg_failures = [code for code in failures if code.startswith("cawg.")]
        if any("mismatch" in code for code in failures):
            status = "tampered"
        elif "cawg.x509.signature.outside_validity" in cawg_failures:
            status = "expired"
        elif not cawg_failures and "cawg.identity.well-formed" in successes:
            status = "trusted"
        elif set(cawg_failures) <= {"cawg.x509.credential.untrusted"} and "cawg.identity.well-formed" in successes:
            status = "aipic" if certificate is not None and issued_by(certificate, identity_anchors) else "untrusted"
        else:
            status = "invalid"
        out.append({
            "label": label, "name": info.get("common_name"), "roles": list(payload.get("role") or []), "issuer": issuer or info.get("issuer"),
            "status": status, "codes": failures + [code for code in successes if code.startswith("cawg.")],
            "referenced": [ref.get("url", "").rsplit("/", 1)[-1] for ref in payload.get("referenced_assertions") or []],
        })
    return out


def _identity_view(data: bytes, mime: str, trust_anchors: Sequence[str], identity_anchors: Sequence[str], manifest: dict) -> dict | None:
    """The active manifest's results read again with the identity trust list added, for the identity assertions'
    own status only (never the claim's verdict: identity anchors would vouch for claim signers too). None when
    there is no identity to check or no identity anchor."""
    if not identity_anchors or not any(str(a.get("label", "")).startswith(labels.IDENTITY) for a in manifest.get("assertions", [])):
        return None
    try:
        with c2pa.Reader(mime, io.BytesIO(data), context=reader_context(list(trust_anchors), list(identity_anchors))) as reader:
            return (json.loads(reader.json()).get("validation_results") or {}).get("activeManifest") or {}
    except Exception:  # noqa: BLE001 - the first reading succeeded; without this one the identities keep its status
        return None


CHAIN_BROKEN = "This file's own Content Credentials are intact, but an ingredient's credentials were altered after it was used: the chain of provenance is broken."


class _Chain:
    """The manifests of a file and how to name each in plain words: this file's own, or an ingredient's (and whose
    ingredient it is, a level down)."""

    def __init__(self, active: str, manifests: dict):
        self.active, self.manifests = active, manifests
        self.used_in: dict = {}  # an ingredient's manifest label → (the manifest that used it, the ingredient)
        for label, entry in manifests.items():
            for ingredient in entry.get("ingredients") or []:
                if ingredient.get("active_manifest"):
                    self.used_in[ingredient["active_manifest"]] = (label, ingredient)

    def owner(self, url) -> str:
        """The manifest a validation entry's URL names (self#jumbf=/c2pa/<label>/…); this file's when it names none."""
        match = re.search(r"/c2pa/([^/]+)", url or "")
        return match.group(1) if match else self.active

    @staticmethod
    def uri(manifest: str, assertion: str | None) -> str:
        return f"self#jumbf=/c2pa/{manifest}/c2pa.assertions/{assertion}"

    def name(self, label: str) -> str:
        if label == self.active:
            return "this file's manifest"
        if label in self.used_in:
            parent, ingredient = self.used_in[label]
            return self._ingredient(parent, ingredient.get("title") or ingredient.get("label") or "?")
        return f"manifest {label}"

    def ingredient_name(self, assertion_uri: str) -> str:
        """The ingredient an ingredient assertion's URI (in some manifest of the chain) stands for."""
        parent = self.owner(assertion_uri)
        label = assertion_uri.rsplit("/", 1)[-1]
        ingredient: dict = next((i for i in (self.manifests.get(parent) or {}).get("ingredients") or [] if i.get("label") == label), {})
        return self._ingredient(parent, ingredient.get("title") or label)

    def _ingredient(self, parent: str, title: str) -> str:
        return f"ingredient “{title}”" if parent == self.active else f"ingredient “{title}” of the {self.name(parent)}"


def _ingredient_status(ingredient: dict, delta: dict, reported: list[str]) -> tuple[str, list]:
    """A direct ingredient's own status: what was recorded when it was used, what changed since (its delta), and
    the failures c2pa reports today under its manifest."""
    if not ingredient.get("active_manifest"):
        return "none (no Content Credentials)", []
    recorded = [f.get("code") for f in ((ingredient.get("validation_results") or {}).get("activeManifest") or {}).get("failure", [])]
    recorded += [s.get("code") for s in ingredient.get("validation_status") or [] if s.get("code")]
    now_trusted = any(s.get("code") == "signingCredential.trusted" for s in delta.get("success", []))
    codes = [code for code in recorded if code and not (now_trusted and code == "signingCredential.untrusted")]
    codes += [code for code in [f.get("code") for f in delta.get("failure", [])] + reported if code and code not in codes]
    verdict, _ = classify(codes)
    return {"trusted": "valid", "untrusted": "valid, signer not on your trust list"}.get(verdict, f"FAILED ({verdict})"), codes


def signer_issuer(data: bytes, serial: str | None) -> str | None:
    """The issuer (common name, else the full name) of the signing certificate, read from the x5chain that the
    COSE signature embeds: the certificate whose serial number c2pa reports is found among the DER
    certificates after the signature box label. c2pa's own ``issuer`` is the signer's O= field instead."""
    certificate = embedded_certificate(data, b"c2pa.signature", serial)
    return issuer_name(certificate) if certificate is not None else None


def verify_bytes(data: bytes, trust_anchors: Sequence[str] = (), identity_anchors: Sequence[str] = (), namespace: str = DEFAULT_NAMESPACE) -> Verification:
    """Check a file's Content Credentials in this process. Never raises on bad input: the verdict says what is wrong.
    ``namespace``: the deployment's own assertion namespace, looked at first (others are read too)."""
    mime = sniff_format(data)
    if mime is None:
        return Verification("unreadable", "This file is not a supported image (PNG, JPEG, WebP, GIF, TIFF, AVIF/HEIC).")
    try:
        with c2pa.Reader(mime, io.BytesIO(data), context=reader_context(list(trust_anchors))) as reader:  # the claim's anchors only
            store = json.loads(reader.json())
            state = reader.get_validation_state()
    except c2pa.C2paError as error:
        text = str(error)
        if "ManifestNotFound" in text or "no JUMBF" in text or "JumbfNotFound" in text:
            return Verification("no_credentials", VERDICT_TEXT["no_credentials"])
        if "could not be parsed" in text or "out of range" in text:
            return Verification("unreadable", "The file is damaged or truncated: it could not be parsed as an image.", problems=[text.split("\n")[0]])
        return Verification("unreadable_manifest", VERDICT_TEXT["unreadable_manifest"], reason=text.split("\n")[0], problems=[text.split("\n")[0]])
    except Exception as error:  # noqa: BLE001 - the verifier reports, it does not crash
        return Verification("unreadable", f"This file could not be read as an image ({type(error).__name__}).")
    active_label = store.get("active_manifest") or ""
    manifests = store.get("manifests") or {}
    manifest = manifests.get(active_label, {})
    results = store.get("validation_results") or {}
    active = results.get("activeManifest") or {}
    chain = _Chain(active_label, manifests)
    # c2pa reports an ingredient's own failures under the active manifest too: each code belongs to the manifest its
    # URL names (its owner), and only this file's own codes decide the claim's verdict.
    reported = [(chain.owner(f.get("url")), f) for f in active.get("failure") or [] if f.get("code")]
    codes = [f["code"] for owner, f in reported if owner == active_label and not f["code"].startswith("cawg.")]
    verdict, reason = classify(codes)
    claim_trusted = any(entry.get("code") == "signingCredential.trusted" for entry in active.get("success") or [])
    # validation_state also counts an identity assertion's own result; the claim's trust is its signer's.
    if verdict == "trusted" and state != "Trusted" and not claim_trusted:
        verdict, reason = "untrusted", "the signer is not on your trust list"
    deltas = {delta.get("ingredientAssertionURI") or "": delta.get("validationDeltas") or {} for delta in results.get("ingredientDeltas") or []}
    failures = [{"manifest": "active" if owner == active_label else chain.name(owner), "code": f["code"], "explanation": f.get("explanation")}
                for owner, f in reported if not (f["code"].startswith("cawg.") and owner == active_label)]  # this file's identity codes: under identities
    for uri, delta in deltas.items():
        for entry in delta.get("failure") or []:
            if entry.get("code"):
                failures.append({"manifest": chain.ingredient_name(uri), "code": entry["code"], "explanation": entry.get("explanation")})
    ingredients = []
    for ingredient in manifest.get("ingredients", []):
        status, ingredient_codes = _ingredient_status(ingredient, deltas.get(chain.uri(active_label, ingredient.get("label")), {}),
                                                      [f["code"] for owner, f in reported if ingredient.get("active_manifest") and owner == ingredient.get("active_manifest")])
        ingredients.append({"title": ingredient.get("title"), "relationship": ingredient.get("relationship"), "status": status, "codes": ingredient_codes})
    # The library's validation_state is a floor: when it says Invalid for anything but an identity assertion's own
    # result (which never changes the claim's verdict), the file is never called intact — not trusted, untrusted or
    # expired ("intact, but expired") — and the words say whose credentials failed.
    message = VERDICT_TEXT[verdict]
    broken = [f for f in failures if f["manifest"] != "active" and not str(f["code"]).startswith("cawg.")]
    identity_only = bool(reported) and all(f["code"].startswith("cawg.") for _, f in reported) and not broken
    if state == "Invalid" and verdict in ("trusted", "untrusted", "expired") and not identity_only and (broken or not codes):
        altered = sorted({f["manifest"] for f in broken if classify([f["code"]])[0] == "tampered"})
        found = ", ".join(sorted({f["code"] for f in broken})) or "no failure code given"
        if altered:
            verdict, message = "tampered", CHAIN_BROKEN
            reason = f"the Content Credentials of {', '.join(altered)} were altered after it was used ({found}); this file's own manifest is intact"
        else:
            verdict, message = "invalid", VERDICT_TEXT["invalid"]
            reason = f"c2pa-python finds the chain of credentials invalid ({found})"
    assertions = {assertion.get("label"): assertion.get("data") for assertion in manifest.get("assertions", [])}
    actions = (assertions.get("c2pa.actions.v2") or assertions.get("c2pa.actions") or {}).get("actions", [])
    signature = manifest.get("signature_info") or {}
    generator = made_with(manifest)
    seen = {entry.get("code") for kind in ("success", "informational") for entry in active.get(kind) or []}
    timestamp = "none"
    if any(code.startswith("timeStamp.") for code in codes):
        timestamp = "invalid"
    elif "timeStamp.trusted" in seen:
        timestamp = "trusted"
    elif signature.get("time") or "timeStamp.validated" in seen:
        timestamp = "valid, time-stamp authority not on your trust list"
    return Verification(
        verdict=verdict,
        message=message,
        reason=reason,
        codes=codes,
        validation_state=state,
        signer=signature.get("common_name"),
        issuer=signer_issuer(data, signature.get("cert_serial_number")) or signature.get("issuer"),
        signed_at=signature.get("time") if timestamp not in ("none", "invalid") else None,
        timestamp=timestamp,
        claim_generator=generator or None,
        actions=actions,
        ingredients=ingredients,
        contributions=labels.find_assertion(assertions, labels.CONTRIBUTIONS, "human", namespace),
        audit=labels.find_assertion(assertions, labels.BIAS_AUDIT, "person_present", namespace),
        intended_use=labels.find_assertion(assertions, labels.INTENDED_USE, "statement", namespace),
        problems=[(f"{f['code']}: " if f["manifest"] == "active" else f"{f['manifest']}: {f['code']}: ") + str(f["explanation"]) for f in failures if not str(f["code"]).startswith("cawg.")],
        failures=failures,
        manifest=manifest or None,
        identities=identity_results(manifest, _identity_view(data, mime, trust_anchors, identity_anchors, manifest) or active, data, list(identity_anchors), active_label),
        terms=read_terms(assertions),
        rights=read_rights(assertions),
    )


# ---- the bounded worker ------------------------------------------------------------------------------------


RECOVER_WHEN = ("no_credentials", "unreadable_manifest", "tampered", "invalid")


def check(data: bytes, trust_anchors: list[str], registry_url: str | None, identity_anchors: Sequence[str] = (), trustmark=None, max_pixels: int = MAX_LOOKUP_PIXELS, namespace: str = DEFAULT_NAMESPACE) -> Verification:
    """verify_bytes, then, when the file's own credentials are missing or broken, recovery from the registry.
    With a TrustMarkSpec and nothing recovered otherwise, ``trustmark_probe`` carries what its reader needs.
    A picture over ``max_pixels`` is not decoded for the lookup; the result says so."""
    result = verify_bytes(data, trust_anchors, identity_anchors, namespace)
    if registry_url and result.verdict in RECOVER_WHEN:
        try:
            result.recovered, result.trustmark_probe = search(data, registry_url, trust_anchors, trustmark, max_pixels)
        except TooManyPixels as refused:
            result.problems.append(str(refused))
        except Exception as error:  # noqa: BLE001 - recovery is extra; the verdict stands, and says the lookup failed
            _lookup_failed(result, error)
    return result


def _lookup_failed(result: Verification, error: Exception) -> None:
    log.warning("registry lookup failed: %s", type(error).__name__)
    result.problems.append(f"The provenance registry could not be searched ({type(error).__name__}).")


TRUSTMARK_READ_SECONDS = 120.0  # loading torch and the model, then one small decode


def _read_trustmark(result: Verification, trustmark, registry_url: str, trust_anchors: Sequence[str], isolate: bool) -> None:
    """Read a TrustMark id from the worker's probe and look it up. The reader runs in its own process (it needs
    torch, which neither this process nor the memory-bounded worker loads) on a small picture the worker made;
    then, if it found nothing, the fingerprint: watermarks first."""
    probe, result.trustmark_probe = result.trustmark_probe, None
    if not probe:
        return
    try:
        _trustmark_then_fingerprint(result, probe, trustmark, registry_url, trust_anchors, isolate)
    except Exception as error:  # noqa: BLE001 - recovery is extra; the verdict stands, and says the lookup failed
        _lookup_failed(result, error)


def _trustmark_then_fingerprint(result: Verification, probe: dict, trustmark, registry_url: str, trust_anchors: Sequence[str], isolate: bool) -> None:
    pixels = base64.b64decode(probe["pixels"])
    try:
        if isolate:
            command = [sys.executable, "-m", "aipic.provenance.trustmark", trustmark.folder, trustmark.variant, "1" if trustmark.published else "0"]
            done = subprocess.run(command, input=json.dumps(probe["shape"]).encode() + b"\n" + pixels, capture_output=True, timeout=TRUSTMARK_READ_SECONDS, env=_child_env())
            answer = json.loads(done.stdout or b"{}")
            if done.returncode != 0 and not answer:
                answer = {"error": f"the reader process ended with exit status {done.returncode}"}
        else:
            answer = {"id": read_prepared(trustmark, np.frombuffer(pixels, dtype=np.uint8).reshape(probe["shape"]))}
    except (subprocess.TimeoutExpired, ValueError, AipicError) as error:
        log.warning("TrustMark reading failed: %s", type(error).__name__)
        result.problems.append(f"The TrustMark watermark could not be read ({type(error).__name__}).")
        answer = {}
    if answer.get("error"):
        result.problems.append(f"The TrustMark watermark could not be read: {answer['error']}")
    result.recovered = after_trustmark(answer.get("id"), probe["fingerprint"], trustmark.algorithm, registry_url, trust_anchors)


def _child_env() -> dict:
    """The environment of aipic's helper processes: this aipic first on the path, even when not installed."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH")]))}


def _worker_main() -> None:
    """``python -m aipic.provenance.verify PATH MAX_BYTES MEMORY``; the trust anchors and the registry URL as JSON on stdin
    (never on the command line, which every user of the machine can read: the URL may hold a password), the
    result as JSON on stdout. A fresh interpreter that imports only what checking needs: no torch, no app."""
    path, max_bytes, memory = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    trustmark = None
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    except (ImportError, ValueError, OSError):
        pass
    anchors = json.loads(sys.stdin.read() or "{}")
    registry_url = anchors.get("registry_url")
    if anchors.get("trustmark"):
        trustmark = TrustMarkSpec(**anchors["trustmark"])
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
        result = check(data, anchors.get("claim", []), registry_url, anchors.get("identity", []), trustmark, anchors.get("max_pixels") or MAX_LOOKUP_PIXELS, anchors.get("namespace") or DEFAULT_NAMESPACE)
    except MemoryError:
        result = Verification("unreadable", "Checking this file needed more memory than allowed: it is not a well-formed image.")
    except OSError as error:
        result = Verification("unreadable", f"Cannot read the file ({error.strerror or error}).")
    sys.stdout.write(json.dumps({**result.to_dict(), "trustmark_probe": result.trustmark_probe}))


def verify_file(path: str | Path, trust_anchors: Sequence[str] = (), *, registry_url: str | None = None, max_bytes: int = MAX_VERIFY_BYTES, seconds: float = VERIFY_SECONDS, memory: int = VERIFY_MEMORY_BYTES, isolate: bool = True, identity_anchors: Sequence[str] = (), trustmark=None, max_pixels: int = MAX_LOOKUP_PIXELS, namespace: str = DEFAULT_NAMESPACE) -> Verification:
    """Verify a file with bounded size, time and memory: hostile files get a quick verdict, never a stall.

    The check runs in a separate process with an address-space limit and is killed after ``seconds``; at most
    VERIFY_SLOTS such processes run at once (the others wait for a slot before their time starts).
    ``identity_anchors``: the identity CAs whose certificates aipic checks itself for CAWG identities.
    ``trustmark``: a TrustMarkSpec, to read a TrustMark watermark when nothing else recognises a copy.
    """
    path = Path(path)
    if not path.is_file():
        return Verification("unreadable", f"No such file: {path.name}")
    try:
        size = path.stat().st_size
    except OSError as error:
        return Verification("unreadable", f"Cannot read {path.name}: {error.strerror or error}")
    if size > max_bytes:
        return Verification("too_large", f"{VERDICT_TEXT['too_large']} It is {size / 2**20:.0f} MB; at most {max_bytes / 2**20:.0f} MB are checked.")
    if not isolate:
        result = check(path.read_bytes(), list(trust_anchors), registry_url, list(identity_anchors), trustmark, max_pixels, namespace)
        if result.trustmark_probe and registry_url:
            _read_trustmark(result, trustmark, registry_url, trust_anchors, isolate=False)
        return result
    command = [sys.executable, "-m", "aipic.provenance.verify", str(path), str(max_bytes), str(memory)]
    request = {"claim": list(trust_anchors), "identity": list(identity_anchors), "trustmark": trustmark.__dict__ if trustmark else None,
               "registry_url": registry_url, "max_pixels": max_pixels, "namespace": namespace}
    try:
        with VERIFY_SLOTS:
            done = subprocess.run(command, input=json.dumps(request), capture_output=True, text=True, timeout=seconds, env=_child_env())
    except subprocess.TimeoutExpired:
        log.warning("verification stopped after %.0f s", seconds)
        return Verification("unreadable", f"Checking this file took longer than {seconds:.0f} s, so it was stopped: it is not a well-formed image.")
    try:
        fields = json.loads(done.stdout)
    except ValueError:
        log.warning("verification worker ended without a result (exit %s)", done.returncode)
        return Verification("unreadable", "Checking this file failed: it is not a well-formed image.")
    result = Verification(**{key: value for key, value in fields.items() if key not in ("ok", "claims_verified")})
    if result.trustmark_probe and registry_url:
        _read_trustmark(result, trustmark, registry_url, trust_anchors, isolate=True)
    return result


if __name__ == "__main__":
    _worker_main()
