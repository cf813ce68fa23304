"""Signing: a manifest definition (aipic.provenance.manifest) embedded into encoded image bytes, signed as this
aipic instance, optionally timestamped and, for a named author, with their CAWG identity assertion. Imports
nothing from verification.
"""

from __future__ import annotations

import io
import threading

import c2pa

from aipic.common.errors import StageFailed
from aipic.common.settings import DEFAULT_NAMESPACE
from aipic.provenance import labels
from aipic.provenance.authorship import Author
from aipic.provenance.manifest import Ingredient, created_assertion_labels, identity_referenced
from aipic.provenance.signing_identity import SigningIdentity


def builder_settings(thumbnail: bool = False, namespace: str = DEFAULT_NAMESPACE) -> dict:
    """No thumbnail by default (c2pa's adds ~350 KB and ~60 ms per image and only repeats the image); the AI
    disclosure attested by the signer (created assertions)."""
    return {"thumbnail": THUMBNAIL_SETTINGS if thumbnail else {"enabled": False}, "created_assertion_labels": created_assertion_labels(namespace)}


def make_signer(identity: SigningIdentity, tsa_url: str | None = None) -> c2pa.Signer:
    """A signer for the identity; with ``tsa_url``, each signature gets an RFC 3161 timestamp from that authority,
    so the output stays valid after the signer certificate expires."""
    info = c2pa.C2paSignerInfo(alg=b"es256", sign_cert=identity.chain_pem.encode(), private_key=identity.key_path.read_bytes(), ta_url=tsa_url.encode() if tsa_url else None)
    return c2pa.Signer.from_info(info)


_SIGN_CONTEXT = threading.local()
# The optional claim thumbnail: small (128 px long edge, low-quality JPEG: ~3 KB) so that verifiers can show
# what was signed without the ~350 KB of c2pa's default thumbnail.
THUMBNAIL_SETTINGS = {"enabled": True, "long_edge": 128, "quality": "low", "prefer_smallest_format": True}


def _sign_context(thumbnail: bool, namespace: str) -> c2pa.Context:
    contexts = getattr(_SIGN_CONTEXT, "contexts", None)
    if contexts is None:
        contexts = _SIGN_CONTEXT.contexts = {}
    key = (thumbnail, namespace)
    if key not in contexts:
        contexts[key] = c2pa.Context.from_dict({"builder": builder_settings(thumbnail, namespace)})
    return contexts[key]


def sign(data: bytes, mime: str, manifest: dict, ingredients: list[Ingredient], signer: c2pa.Signer, thumbnail: bool = False, namespace: str = DEFAULT_NAMESPACE) -> bytes:
    """Embed a signed manifest into encoded image bytes (PNG, JPEG, WebP); returns the signed bytes.

    The signer is reused by the caller (one per worker thread): making one parses the key, which costs more
    than signing. ``thumbnail`` embeds a small claim thumbnail.
    """
    return sign_with_store(data, mime, manifest, ingredients, signer, thumbnail, namespace)[0]


def _add_ingredients(builder: c2pa.Builder, ingredients: list[Ingredient]) -> None:
    """Each upload as an ingredient, its own bytes (and so its own credentials) included."""
    for ingredient in ingredients:
        builder.add_ingredient(
            {"title": ingredient.title, "relationship": ingredient.relationship, "label": ingredient.label},
            ingredient.format,
            io.BytesIO(ingredient.data),
        )


def sign_with_store(data: bytes, mime: str, manifest: dict, ingredients: list[Ingredient], signer: c2pa.Signer, thumbnail: bool = False, namespace: str = DEFAULT_NAMESPACE) -> tuple[bytes, bytes]:
    """As ``sign``, and also the manifest store itself (JUMBF), which the registry keeps."""
    with c2pa.Builder(manifest, context=_sign_context(thumbnail, namespace)) as builder:
        _add_ingredients(builder, ingredients)
        destination = io.BytesIO()
        store = builder.sign(signer, mime, io.BytesIO(data), destination)
    return destination.getvalue(), bytes(store or b"")


def sign_as_author(data: bytes, mime: str, manifest: dict, ingredients: list[Ingredient], identity: SigningIdentity, author: Author, tsa_url: str | None = None, thumbnail: bool = False, namespace: str = DEFAULT_NAMESPACE) -> tuple[bytes, bytes]:
    """Sign as aipic *and* attach the author's CAWG identity assertion (role cawg.creator), signed with their
    X.509 credential over the hard binding, the actions, the human contribution and the terms.

    The bridge (c2pa-python 0.38.1, c2pa-rs 0.91.3): c2pa-rs makes such a "dual signer" from the ``signer`` and
    ``cawg_x509_signer`` settings of the Context, but c2pa-python's ``Builder.sign(format, …)`` refuses unless
    a Python ``Signer`` object was given to the Context, and a ``Signer`` object replaces the dual signer, so the
    identity would be dropped without an error. We build the Context from settings and mark the Builder as
    having a context signer, which makes c2pa-python call ``c2pa_builder_sign_context`` (the settings' signer).
    Then we check that the identity is in the signed store: an identity is never dropped silently.
    """
    signer = {"alg": "es256", "sign_cert": identity.chain_pem, "private_key": identity.key_path.read_text(), **({"tsa_url": tsa_url} if tsa_url else {})}
    present = {assertion["label"] for assertion in manifest["assertions"]}
    referenced = [label for label in identity_referenced(namespace) if label in present]
    cawg = {"alg": author.alg, "sign_cert": author.chain_pem, "private_key": author.key_pem, "referenced_assertions": referenced, "roles": [labels.CREATOR_ROLE], **({"tsa_url": tsa_url} if tsa_url else {})}
    context = c2pa.Context.from_dict({"builder": builder_settings(thumbnail, namespace), "signer": {"local": signer}, "cawg_x509_signer": {"local": cawg}})
    with c2pa.Builder(manifest, context=context) as builder:
        if not hasattr(builder, "_has_context_signer"):
            raise StageFailed("This c2pa-python cannot attach an author identity (no context signer); the output was not signed.")
        builder._has_context_signer = True  # the Context's settings hold the signer (see above)
        _add_ingredients(builder, ingredients)
        destination = io.BytesIO()
        store = bytes(builder.sign(mime, io.BytesIO(data), destination) or b"")
    if labels.IDENTITY.encode() not in store:
        raise StageFailed("The author's identity could not be attached, so the output was not published.")
    return destination.getvalue(), store


def sign_png(png: bytes, manifest: dict, ingredients: list[Ingredient], identity: SigningIdentity) -> bytes:
    """Embed a signed manifest into PNG bytes with a signer made for this call."""
    with make_signer(identity) as signer:
        return sign(png, "image/png", manifest, ingredients, signer)
