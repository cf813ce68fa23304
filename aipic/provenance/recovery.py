"""Recognising stripped or altered copies of aipic outputs: the file's hash, else its watermark, else its
perceptual fingerprint, looked up in the provenance registry; the registry's original manifest is then verified on its own.

A fingerprint match needs at most MATCH_BITS differing bits of 64 (unrelated images differ in about 32), so an
unrelated image is never claimed. Imports no torch.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import math
from collections.abc import Sequence

import c2pa
from PIL import Image

from aipic.common.errors import TooManyPixels
from aipic.provenance import labels
from aipic.provenance.fingerprint import MATCH_BITS, distance, fingerprint
from aipic.provenance.registry import Registry
from aipic.provenance.trustmark import decoder_input
from aipic.provenance.validation import classify, reader_context
from aipic.provenance.watermark import read

WATERMARK_FINGERPRINT_AGREES = 16  # a watermarked copy's fingerprint within 16 bits (unrelated images: ~32)
MAX_LOOKUP_PIXELS = 4096 * 4096  # the app's upload limit: a picture with more pixels is not decoded at all
FINGERPRINT_SIDE = 2048  # larger pictures are fingerprinted from a box-reduced copy (outputs are far smaller)


def recover(data: bytes, registry_url: str, trust_anchors: Sequence[str] = ()) -> dict | None:
    """The registry's match for a copy: its file hash, else the dwtDctSvd watermark, else the nearest fingerprint."""
    return search(data, registry_url, trust_anchors)[0]


def search(data: bytes, registry_url: str, trust_anchors: Sequence[str] = (), trustmark=None, max_pixels: int = MAX_LOOKUP_PIXELS) -> tuple[dict | None, dict | None]:
    """(the registry's match or None, a TrustMark probe or None).

    With a TrustMarkSpec, a copy that neither its hash nor the dwtDctSvd mark recognises gets no fingerprint
    lookup yet: the probe carries what the TrustMark reader needs (the decoder's small fixed-size input and the
    copy's fingerprint), and after_trustmark finishes the search, watermarks first. The probe is made here, in
    the bounded worker that parses the untrusted file; the reader runs in its own process (it needs torch).

    Memory stays bounded whatever the file: a picture over ``max_pixels`` is refused from its header
    (TooManyPixels), before any pixel is decoded; the decoded picture is the only full-size copy (the watermark
    is read strip by strip in float32, the fingerprint taken from a reduced copy of a large picture)."""
    with _opened(registry_url) as registry:
        entry = registry.by_sha256(hashlib.sha256(data).hexdigest())
        if entry is not None:
            return _found((entry, "file hash (exact copy)", 0), trust_anchors), None
        picture = _decoded(data, max_pixels)
        if picture is None:
            return None, None
        try:
            probe = fingerprint(_reduced(picture))
            match = _by_watermark(registry, read(picture), probe, "dwtDctSvd")
            if match is None and trustmark is not None:
                return None, _trustmark_probe(picture, probe, trustmark)
        finally:
            picture.close()
        match = match or _by_fingerprint(registry, probe)
    return (_found(match, trust_anchors) if match else None), None


def _decoded(data: bytes, max_pixels: int):
    """The picture as an RGB PIL image, or None when it is not an image that can be looked at; TooManyPixels
    (from the header, nothing decoded) when it is larger than ``max_pixels`` — half that where the decoder holds far
    more than the pixels: WebP and AVIF (decoded whole through an RGBA buffer: a 4096² WebP took 257 MB) and
    progressive or CMYK JPEG (every DCT coefficient kept until the last scan; bench/bench_verify.py)."""
    try:
        image = Image.open(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - not an image we can look at: nothing to recover
        return None
    costly = image.format in ("WEBP", "AVIF") or (image.format == "JPEG" and (image.mode == "CMYK" or bool(image.info.get("progressive") or image.info.get("progression"))))
    limit = max_pixels // 2 if costly else max_pixels
    if image.width * image.height > limit:
        image.close()
        raise TooManyPixels(image.width, image.height, limit, _kind(image) if costly else "")
    try:
        if image.mode == "RGB":
            image.load()
            return image
        with image:
            return image.convert("RGB")
    except Exception:  # noqa: BLE001 - damaged pixel data: nothing to recover
        image.close()
        return None


def _kind(image) -> str:
    if image.format == "JPEG":
        return "CMYK JPEG" if image.mode == "CMYK" else "progressive JPEG"
    return str(image.format)


def _reduced(picture):
    """The picture itself, or a box-reduced copy when a side exceeds FINGERPRINT_SIDE (the fingerprint reads a
    32×32 summary: averaging blocks first moves it by a bit or two at most, and saves decoding work)."""
    factor = math.ceil(max(picture.size) / FINGERPRINT_SIDE)
    return picture if factor <= 1 else picture.reduce(factor)


def after_trustmark(watermark_id: str | None, probe: str, algorithm: str, registry_url: str, trust_anchors: Sequence[str] = ()) -> dict | None:
    """The rest of a search once the TrustMark reader has answered: its id, else the fingerprint."""
    with _opened(registry_url) as registry:
        match = _by_watermark(registry, watermark_id, probe, algorithm) or _by_fingerprint(registry, probe)
    return _found(match, trust_anchors) if match else None


@contextlib.contextmanager
def _opened(registry_url: str):
    registry = Registry(registry_url, migrate=False)  # reading only: verifying never changes the database
    try:
        yield registry
    finally:
        registry.close()


def _by_watermark(registry, watermark_id: str | None, probe: str, algorithm: str):
    """A watermark's match, only when its CRC checked out (the reader returns None otherwise) *and* the copy's
    fingerprint agrees (a decoder always yields bits; a CRC passes by chance once in 65 536 images)."""
    if watermark_id is None:
        return None
    entry = registry.by_watermark(watermark_id)
    if entry is None:
        return None
    bits = distance(probe, entry.fingerprint)
    if bits > WATERMARK_FINGERPRINT_AGREES:
        return None
    return entry, f"watermark {watermark_id} ({algorithm}; CRC valid; fingerprint agrees, {bits} of 64 bits differ)", bits


def _by_fingerprint(registry, probe: str):
    found = registry.nearest_fingerprint(probe, MATCH_BITS)
    if found is None:
        return None
    entry, bits = found
    return entry, f"fingerprint ({bits} of 64 bits differ)", bits


def _trustmark_probe(pixels, probe: str, spec) -> dict:
    prepared = decoder_input(spec, pixels)
    return {"shape": list(prepared.shape), "pixels": base64.b64encode(prepared.tobytes()).decode(), "fingerprint": probe}


def _found(match: tuple, trust_anchors: Sequence[str]) -> dict:
    entry, how, bits = match
    verdict, said = _read_store(entry.manifest_store, trust_anchors)
    return {
        "output_id": entry.id,
        "signed_on": entry.created_at.isoformat() if entry.created_at else None,
        "task": entry.task,
        "model": entry.model,
        "matched_by": how,
        "distance_bits": bits,
        "manifest_label": entry.manifest_label,
        "original_manifest": verdict,
        "original_says": said,  # what the original credentials said, for a person to read (empty when unreadable)
        "original_file": "deleted (retention)" if entry.file_deleted_at else "kept",
    }


def _read_store(store: bytes, trust_anchors: Sequence[str]) -> tuple[str, dict]:
    """Verify a manifest store kept without its file — its signature and assertions (the hard binding to the
    original pixels cannot be checked, since the copy is not the original) — and what its active manifest said."""
    try:
        with c2pa.Reader("application/c2pa", io.BytesIO(store), context=reader_context(list(trust_anchors))) as reader:
            data = json.loads(reader.json())
    except Exception as error:  # noqa: BLE001
        return f"unreadable ({type(error).__name__})", {}
    results = data.get("validation_results") or {}
    codes = [f.get("code") for f in (results.get("activeManifest") or {}).get("failure") or [] if not str(f.get("code", "")).startswith("assertion.dataHash")]
    verdict, _ = classify(codes)
    text = {"trusted": "signature valid, trusted signer", "untrusted": "signature valid, signer not on your trust list"}.get(verdict, verdict)
    manifest = (data.get("manifests") or {}).get(data.get("active_manifest") or "", {})
    assertions = {assertion.get("label"): assertion.get("data") for assertion in manifest.get("assertions", [])}
    actions = (assertions.get("c2pa.actions.v2") or assertions.get("c2pa.actions") or {}).get("actions", [])
    return text, {
        "made_with_ai": any("trainedAlgorithmicMedia" in str(action.get("digitalSourceType") or "") for action in actions),
        "signer": (manifest.get("signature_info") or {}).get("common_name"),
        "contributions": labels.find_assertion(assertions, labels.CONTRIBUTIONS, "human"),
        "audit": labels.find_assertion(assertions, labels.BIAS_AUDIT, "person_present"),
    }
