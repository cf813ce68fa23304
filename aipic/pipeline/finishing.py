"""The functions the CPU stages hand to the worker pool (aipic.engine.workers): mark, fingerprint, encode and sign
one picture. They run in spawned worker processes, so they import nothing from torch, and their arguments and
results are plain data (numpy arrays, bytes, dicts, dataclasses of strings)."""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid

import numpy as np

from aipic.common.errors import AipicError
from aipic.common.images import encode, in_background
from aipic.common.settings import DEFAULT_NAMESPACE
from aipic.provenance import fingerprint, signing, trustmark, watermark
from aipic.provenance.manifest import build_manifest, digital_source_type, software_agent
from aipic.provenance.xmp import iptc_ai_packet

log = logging.getLogger(__name__)

_signers: dict = {}  # one c2pa Signer per identity and TSA choice, per process (or per thread without workers)
_signers_lock = threading.Lock()


def initialise_worker(identity, trustmark_spec=None) -> None:
    """What each worker process runs when it starts: one thread of torch when TrustMark runs there (the workers
    share the cores), then a warm-up."""
    if trustmark_spec is not None:
        import torch

        torch.set_num_threads(1)
    warm_up(identity, trustmark_spec)


def warm_up(identity=None, trustmark_spec=None) -> bool:
    """Finish a small random picture once (watermark, fingerprints, PNG and JPEG, and a signature when an
    identity is given) so that the first request in this process or thread pays for nothing; True if it did."""
    try:
        picture = embed_mark(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8), watermark.new_id(), trustmark_spec)
        fields = dict(title="warm-up", task="text-to-image", description="warm-up", agent=software_agent({"name": "warm-up"}), human={}, models=[], outputs={}, audit={}, ingredients=[])
        for output_format in ("jpeg", "png"):
            if identity is not None:
                encode_and_sign(picture, output_format, fields, f"urn:c2pa:{uuid.uuid4()}", None, [], identity, None, None, False)
            else:
                fingerprint.fingerprints(picture)
                encode(picture, output_format)
        return True
    except Exception as error:  # noqa: BLE001 - warming is an optimisation: the first request would pay instead
        log.warning("warming up the finishing work failed (%s)", type(error).__name__)
        return False


def _signer(identity, tsa_url):
    key = (threading.get_ident(), str(identity.key_path), identity.chain_pem, tsa_url)
    with _signers_lock:
        signer = _signers.get(key)
    if signer is None:
        signer = signing.make_signer(identity, tsa_url)
        with _signers_lock:
            _signers[key] = signer
    return signer


def embed_mark(array, watermark_id: str, trustmark_spec=None):
    """The picture carrying the id: dwtDctSvd by default, Adobe TrustMark with a TrustMarkSpec (its model
    loaded once per process)."""
    if trustmark_spec is not None:
        return trustmark.embed(trustmark_spec, array, watermark_id)
    return watermark.embed(array, watermark_id)


def mark_binding(watermark_id: str, trustmark_spec=None) -> dict:
    """The c2pa.soft-binding assertion of a watermark id, for the method that embedded it."""
    if trustmark_spec is not None:
        return trustmark.soft_binding(trustmark_spec, watermark_id)
    return watermark.soft_binding(watermark_id)


def iptc_metadata(fields: dict) -> bytes:
    """The IPTC AI fields (XMP) of a picture from its manifest's fields, with the same privacy: the prompt only when
    it is recorded in clear, the writer's name only when the person signed in (else anonymous: no name)."""
    human = fields.get("human") or {}
    author = human.get("author")
    return iptc_ai_packet(
        digital_source_type(fields.get("ingredients") or []),
        system=(fields.get("agent") or {}).get("name", "unknown"),
        version=(fields.get("agent") or {}).get("version"),
        prompt=human.get("prompt") or None,
        writer=author.get("name") if isinstance(author, dict) else None,
    )


def encode_and_sign(array, output_format: str, fields: dict, label: str, watermark_binding: dict | None, ingredients: list, identity, author, tsa_url: str | None, thumbnail: bool, namespace: str = DEFAULT_NAMESPACE) -> dict:
    """Fingerprint, encode and sign one picture: the signed file, its manifest store, fingerprints and hash.

    ``fields`` are ``build_manifest``'s arguments but the format, soft bindings and namespace, which are known
    only here. Signs with a timestamp when a TSA is given; if the TSA cannot be reached, signs without one (the
    output is still signed; only the independent signing time is missing) and says so in the log."""
    pending = in_background(fingerprint.fingerprints, array)  # the fingerprints while this thread encodes
    data, mime = encode(array, output_format, xmp=iptc_metadata(fields))
    prints = pending.result()
    manifest = build_manifest(**fields, format=mime, namespace=namespace, watermarked=watermark_binding is not None,
                              soft_bindings=[fingerprint.soft_binding(prints["full"])] + ([watermark_binding] if watermark_binding else []))
    manifest["label"] = label  # from the output's id, so the registry knows it without reading it back

    def signed_with(tsa):
        if author is not None:  # aipic's claim and the author's CAWG identity assertion
            return signing.sign_as_author(data, mime, manifest, ingredients, identity, author, tsa, thumbnail, namespace)
        return signing.sign_with_store(data, mime, manifest, ingredients, _signer(identity, tsa), thumbnail, namespace)

    timestamped = False
    if tsa_url:
        try:
            signed, store = signed_with(tsa_url)
            timestamped = True
        except AipicError:
            raise
        except Exception as error:  # noqa: BLE001 - c2pa raises its own errors for network failures
            log.warning("time-stamp authority unavailable (%s); signing without a timestamp", type(error).__name__)
    if not timestamped:
        signed, store = signed_with(None)
    return {"data": signed, "store": store, "mime": mime, "fingerprints": prints, "timestamped": timestamped, "sha256": hashlib.sha256(signed).hexdigest()}
