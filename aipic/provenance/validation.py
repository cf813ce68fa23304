"""What the c2pa library's validation results mean: the verdict decided from the failure codes, in the decided
priority order, and the reader settings that carry the trust anchors. Shared by verification (verify) and by
recovery, which checks a manifest kept without its file.

Verdicts, in priority order when several apply (ARCHITECTURE.md, decisions): **tampered** (a hash or signature
does not match) > **expired** (the signer's certificate expired and no valid timestamp proves it signed in time)
> **untrusted** (intact, signer not on the trust list) > **trusted**. Besides those: **invalid** (other failures),
**unreadable_manifest** (credentials present but not parseable), **no_credentials**, **unreadable** (not an
image, damaged, took too long) and **too_large**.
"""

from __future__ import annotations

from collections.abc import Sequence

import c2pa

VERDICT_TEXT = {
    "trusted": "Valid Content Credentials from a trusted signer.",
    "untrusted": "The Content Credentials are intact, but the signer is not on your trust list.",
    "expired": "The Content Credentials are intact, but the signer's certificate has expired and no trusted timestamp shows the file was signed while it was valid.",
    "tampered": "The Content Credentials do not match this file: it was changed after signing, or the credentials were altered.",
    "invalid": "The Content Credentials are not valid.",
    "unreadable_manifest": "The file carries Content Credentials, but they are damaged and cannot be read.",
    "no_credentials": "No Content Credentials found: the file was never signed, or they were stripped (re-encoding, screenshots and many uploads remove them).",
    "unreadable": "This is not an image aipic can check.",
    "too_large": "The file is too large to check here.",
}
# The failure codes that mean the content or the manifest changed after signing.
CONTENT_CHANGED = ("assertion.dataHash.mismatch", "assertion.boxesHash.mismatch", "assertion.bmffHash.mismatch", "assertion.collectionHash.mismatch")
MANIFEST_ALTERED = ("claimSignature.mismatch", "assertion.hashedURI.mismatch", "assertion.missing", "assertion.dataHash.missing", "assertion.hashedURI.missing")
SUPPORTED_INGREDIENT_FORMATS = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/tiff")
IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"), (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"))


def sniff_format(data: bytes) -> str | None:
    for magic, mime in IMAGE_MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:12] in (b"ftypavif", b"ftypheic", b"ftypmif1"):
        return "image/avif" if data[8:12] == b"avif" else "image/heic"
    return None


def classify(failure_codes: list[str]) -> tuple[str, str]:
    """(verdict, reason) from a manifest's failure codes, in the decided priority order. Identity (CAWG) codes are
    the identity's own result and never change the claim's verdict (ARCHITECTURE.md, decisions)."""
    codes = {code for code in failure_codes if not code.startswith("cawg.")}
    if codes & set(CONTENT_CHANGED):
        return "tampered", "the file's bytes changed after it was signed (its pixels or its embedded metadata)"
    if codes & set(MANIFEST_ALTERED):
        return "tampered", "the signed manifest was altered (signature or assertion hash mismatch)"
    if "signingCredential.expired" in codes:
        return "expired", "the signer's certificate had expired"
    if codes and codes <= {"signingCredential.untrusted", "signingCredential.ocsp.skipped"}:
        return "untrusted", "the signer is not on your trust list"
    if codes:
        return "invalid", "failed checks: " + ", ".join(sorted(codes))
    return "trusted", ""


def reader_context(trust_anchors: Sequence[str], identity_anchors: Sequence[str] = ()) -> c2pa.Context:
    """The claim's trust anchors; with ``identity_anchors``, also the identity (CAWG) trust list, as c2pa-python
    0.38.1 applies it: ``trust.anchors`` entries of kind "manifest" and "cawg" (its ``cawg_trust`` setting is
    ignored). Anchors of every kind then also vouch for claim signers, so a verdict is never read from a context
    that holds identity anchors (verify.verify_bytes reads twice)."""
    claim = "\n".join(anchor.strip() for anchor in trust_anchors if anchor and anchor.strip())
    identities = "\n".join(anchor.strip() for anchor in identity_anchors if anchor and anchor.strip())
    settings: dict = {"verify": {"verify_trust": True}}
    if identities:
        settings["trust"] = {"anchors": [*([{"trust_anchors": claim + "\n", "trust_kind": "manifest"}] if claim else []),
                                         {"trust_anchors": identities + "\n", "trust_kind": "cawg"}]}
    elif claim:
        settings["trust"] = {"user_anchors": claim + "\n"}
    return c2pa.Context.from_dict(settings)


def made_with(manifest: dict) -> str | None:
    """What made a manifest: its claim_generator_info (C2PA 1.3+), else the legacy claim_generator string."""
    generator = ", ".join(f"{g.get('name')} {g.get('version', '')}".strip() for g in manifest.get("claim_generator_info", []) or [] if isinstance(g, dict))
    return generator or manifest.get("claim_generator") or None
