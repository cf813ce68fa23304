"""Recognising stripped or altered copies of aipic outputs: the file's hash, else its perceptual fingerprint,
looked up in the provenance registry; the registry's original manifest is then verified on its own.

A fingerprint match needs at most MATCH_BITS differing bits of 64 (unrelated images differ in about 32), so an
unrelated image is never claimed. Imports no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
import hashlib
import io

from .fingerprint import MATCH_BITS, distance, fingerprint

WATERMARK_FINGERPRINT_AGREES = 16  # a watermarked copy's fingerprint within 16 bits (unrelated images: ~32)


def recover(data: bytes, registry_url: str, trust_anchors: Sequence[str] = (), by_fingerprint: bool = True) -> dict | None:
    """The registry's match for a copy: its file hash, else the dwtDctSvd watermark, else (``by_fingerprint``)
    the nearest fingerprint. A verifier that also reads TrustMark asks without the fingerprint, reads TrustMark
    next, and only then looks the fingerprint up (recover_by_fingerprint): watermarks first, as the issue asks."""
    from .registry import Registry

    registry = Registry(registry_url, migrate=False)  # reading only: verifying never changes the database
    try:
        entry, how, bits = registry.by_sha256(hashlib.sha256(data).hexdigest()), "file hash (exact copy)", 0
        if entry is None:
            try:
                import numpy as np
                from PIL import Image

                with Image.open(io.BytesIO(data)) as image:
                    if image.width * image.height > 64 * 1024 * 1024:
                        return None
                    pixels = np.asarray(image.convert("RGB"))
                probe = fingerprint(pixels)
            except Exception:  # noqa: BLE001 - not an image we can look at: nothing to recover
                return None
            entry, how, bits = _by_watermark(registry, pixels, probe)
            if entry is None:
                if not by_fingerprint:
                    return None
                found = registry.nearest_fingerprint(probe, MATCH_BITS)
                if found is None:
                    return None
                entry, bits = found
                how = f"fingerprint ({bits} of 64 bits differ)"
    finally:
        registry.close()
    return _found(entry, how, bits, trust_anchors)


def _by_watermark(registry, pixels, probe: str):
    """The watermark's match, only when its CRC checks out *and* the fingerprint agrees (a decoder always
    yields bits; a CRC passes by chance once in 65 536 images)."""
    from .watermark import read

    watermark_id = read(pixels)
    if watermark_id is None:
        return None, "", 0
    entry = registry.by_watermark(watermark_id)
    if entry is None:
        return None, "", 0
    bits = distance(probe, entry.fingerprint)
    if bits > WATERMARK_FINGERPRINT_AGREES:
        return None, "", 0
    return entry, f"watermark {watermark_id} (dwtDctSvd; CRC valid; fingerprint agrees, {bits} of 64 bits differ)", bits


def trustmark_probe(data: bytes, spec) -> dict | None:
    """What the TrustMark reader needs from an image the registry did not otherwise recognise: the decoder's
    input (a small fixed-size picture) and the whole picture's fingerprint. Made in the bounded worker, which
    parses the untrusted file; the reader itself runs in its own process (it needs torch)."""
    import base64

    import numpy as np
    from PIL import Image

    from .trustmark_marks import decoder_input

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > 64 * 1024 * 1024:
                return None
            pixels = np.asarray(image.convert("RGB"))
        prepared = decoder_input(spec, pixels)
        return {"shape": list(prepared.shape), "pixels": base64.b64encode(prepared.tobytes()).decode(), "fingerprint": fingerprint(pixels)}
    except Exception:  # noqa: BLE001 - not an image we can look at: nothing to recover
        return None


def recover_by_watermark(watermark_id: str, probe: str, algorithm: str, registry_url: str, trust_anchors: Sequence[str] = ()) -> dict | None:
    """The registry's entry for a watermark id read by another method (TrustMark), on the same terms as
    dwtDctSvd's: the id's CRC checked by the reader, and the copy's fingerprint agreeing with the original's."""
    from .registry import Registry

    registry = Registry(registry_url, migrate=False)
    try:
        entry = registry.by_watermark(watermark_id)
    finally:
        registry.close()
    if entry is None:
        return None
    bits = distance(probe, entry.fingerprint)
    if bits > WATERMARK_FINGERPRINT_AGREES:
        return None
    return _found(entry, f"watermark {watermark_id} ({algorithm}; CRC valid; fingerprint agrees, {bits} of 64 bits differ)", bits, trust_anchors)


def recover_by_fingerprint(probe: str, registry_url: str, trust_anchors: Sequence[str] = ()) -> dict | None:
    from .registry import Registry

    registry = Registry(registry_url, migrate=False)
    try:
        found = registry.nearest_fingerprint(probe, MATCH_BITS)
    finally:
        registry.close()
    if found is None:
        return None
    entry, bits = found
    return _found(entry, f"fingerprint ({bits} of 64 bits differ)", bits, trust_anchors)


def _found(entry, how: str, bits: int, trust_anchors: Sequence[str]) -> dict:
    return {
        "output_id": entry.id,
        "signed_on": entry.created_at.isoformat() if entry.created_at else None,
        "task": entry.task,
        "model": entry.model,
        "matched_by": how,
        "distance_bits": bits,
        "manifest_label": entry.manifest_label,
        "original_manifest": _store_verdict(entry.manifest_store, trust_anchors),
        "original_file": "deleted (retention)" if entry.file_deleted_at else "kept",
    }


def _store_verdict(store: bytes, trust_anchors: Sequence[str]) -> str:
    """Verify a manifest store kept without its file: its signature and assertions (the hard binding to the
    original pixels cannot be checked, since the copy is not the original)."""
    import json

    import c2pa

    from .verify import classify, reader_context

    try:
        with c2pa.Reader("application/c2pa", io.BytesIO(store), context=reader_context(list(trust_anchors))) as reader:
            results = json.loads(reader.json()).get("validation_results") or {}
    except Exception as error:  # noqa: BLE001
        return f"unreadable ({type(error).__name__})"
    codes = [f.get("code") for f in (results.get("activeManifest") or {}).get("failure") or [] if not str(f.get("code", "")).startswith("assertion.dataHash")]
    verdict, _ = classify(codes)
    return {"trusted": "signature valid, trusted signer", "untrusted": "signature valid, signer not on your trust list"}.get(verdict, verdict)
