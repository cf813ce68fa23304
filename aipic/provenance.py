"""C2PA provenance: a local signing identity, signed manifests for every output, and verification.

Every output records the human contributions (prompt, parameters, uploads) and
the model contributions (which models, seeds) as custom assertions, plus the
bias audit, next to the standard c2pa.actions assertion.
"""

import hashlib
import secrets
import io
import threading
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path

import c2pa

from . import __version__
from .identity import SigningIdentity, ensure_signing_identity, local_trust_anchors  # noqa: F401 - re-exported

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
from .verify import AUDIT_LABEL, CONTRIBUTIONS_LABEL, assertion_namespace, audit_label, contributions_label, salted_sha256  # noqa: E402,F401
from .authorship import CREATOR_ROLE, IDENTITY_LABEL, TRAINING_MINING_LABEL, Author  # noqa: E402
from .errors import StageFailed  # noqa: E402
# Builder settings: no thumbnail (it adds ~350 KB and ~60 ms per image and only repeats the image), and the
# AI disclosure attested by the signer: the actions, contributions and audit are *created* assertions (C2PA 2.x
# claim v2 requires the actions among them), not gathered ones.
SOFT_BINDING_LABEL = "c2pa.soft-binding"
def created_assertion_labels() -> list[str]:
    return ["c2pa.actions", "c2pa.actions.v2", contributions_label(), audit_label(), SOFT_BINDING_LABEL, TRAINING_MINING_LABEL]


def identity_referenced() -> list[str]:
    """What a named author's identity assertion signs over (besides the hard binding, which c2pa adds itself): the
    actions, aipic's record of the human contribution, and the person's training-and-mining terms."""
    return ["c2pa.actions.v2", contributions_label(), TRAINING_MINING_LABEL]


def builder_settings(thumbnail: bool = False) -> dict:
    return {"thumbnail": THUMBNAIL_SETTINGS if thumbnail else {"enabled": False}, "created_assertion_labels": created_assertion_labels()}


# ---- signing ---------------------------------------------------------------------------------------

def make_signer(identity: SigningIdentity, tsa_url: str | None = None) -> c2pa.Signer:
    """A signer for the identity; with ``tsa_url``, each signature gets an RFC 3161 timestamp from that authority,
    so the output stays valid after the signer certificate expires."""
    info = c2pa.C2paSignerInfo(alg=b"es256", sign_cert=identity.chain_pem.encode(), private_key=identity.key_path.read_bytes(), ta_url=tsa_url.encode() if tsa_url else None)
    return c2pa.Signer.from_info(info)


# ---- manifests -------------------------------------------------------------------------------------


@dataclass
class Ingredient:
    """A person's upload that an output was made from."""

    title: str
    relationship: str  # "parentOf" (the image edited) or "componentOf" (e.g. a style image)
    data: bytes  # the file as uploaded, so any Content Credentials it has stay in the chain
    format: str = "image/png"
    role: str = ""  # e.g. "init image", "content image", "style image"
    credentials: str = "no_credentials"  # the upload's own verdict when it arrived (aipic.verify)
    codes: list = field(default_factory=list)
    upload_sha256: str = ""  # of the file as uploaded (differs from sha256 when damaged credentials were dropped)
    terms: dict | None = None  # the training-and-mining terms its own credentials state (honoured even when they failed)
    rights: str | None = None  # the rights statement its own credentials make

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def failed(self) -> bool:
        """The upload carried Content Credentials that did not verify."""
        return self.credentials in ("tampered", "invalid", "expired", "unreadable_manifest")

    def notice(self) -> str:
        """What to tell the person about this upload's own credentials, or ''."""
        if self.credentials == "unchecked":
            return (f"The {self.role or 'upload'} could not be read by the Content Credentials reader (the file is damaged); "
                    "its pixels were used without any credentials it may carry, and this output's credentials say so.")
        if self.credentials == "unreadable_manifest":
            return (f"The {self.role or 'upload'}'s Content Credentials are damaged and cannot be read; it was used without them, "
                    "and this output's credentials say so.")
        if self.failed:
            return (f"The {self.role or 'upload'}'s Content Credentials failed verification ({self.credentials.replace('_', ' ')}); "
                    "this output records that failure with it.")
        return ""

    @property
    def label(self) -> str:
        return f"ingredient-{self.role.replace(' ', '-') or self.relationship}-{self.sha256[:12]}"


def private_prompts(prompt: str, negative_prompt: str = "") -> tuple[dict, str]:
    """The human record of a private prompt: salted SHA-256 hashes instead of the text, and the salt (hex) that
    the person keeps to prove later that they wrote it (``aipic verify FILE --prompt … --salt …``)."""
    salt = secrets.token_hex(16)
    record = {"prompt_privacy": "salted-sha256", "prompt_sha256": salted_sha256(salt, prompt)}
    if negative_prompt:
        record["negative_prompt_sha256"] = salted_sha256(salt, negative_prompt)
    return record, salt


def public_audit(audit: dict, from_upload: bool) -> dict:
    """What of the bias audit goes into the public manifest.

    Outputs made from an upload (img2img, style transfer) may show a real person: their perceived gender
    presentation, age and skin tone are not published; the manifest says an audit ran, whether a person was
    detected, and with which model and attribute set. Text-to-image outputs show no real person: their full
    audit is published (README: Privacy).
    """
    if not from_upload:
        return audit
    return {
        "person_present": audit.get("person_present"),
        "attributes_withheld": "perceived attributes are not published for outputs made from an upload, which may show a real person",
        "clip_model": audit.get("clip_model"),
        "attribute_set": audit.get("attribute_set"),
    }


def software_agent(model: dict) -> dict:
    """The model as C2PA's softwareAgent: its name and the exact weights (Hub commit, else the pretrained tag)."""
    version = model.get("revision") or model.get("pretrained") or ("random-weights" if model.get("placeholder") else "unknown")
    return {"name": model["name"], "version": version}


def build_manifest(*, title: str, task: str, description: str, agent: dict, human: dict, models: list[dict], outputs: dict, audit: dict, ingredients: list[Ingredient], format: str = "image/png", soft_bindings: Sequence[dict] = (), terms: dict | None = None) -> dict:
    """The manifest definition: actions plus aipic's contribution and audit assertions."""
    parents = [ingredient for ingredient in ingredients if ingredient.relationship == "parentOf"]
    if parents:
        actions = [
            {"action": "c2pa.opened", "parameters": {"ingredientIds": [parents[0].label]}},
            {"action": "c2pa.edited", "digitalSourceType": COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA, "softwareAgent": agent, "description": description},
        ]
    else:
        actions = [{"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA, "softwareAgent": agent, "description": description}]
    components = [ingredient for ingredient in ingredients if ingredient.relationship == "componentOf"]
    if components:
        actions.append({"action": "c2pa.placed", "parameters": {"ingredientIds": [c.label for c in components]}, "description": "used as a style reference"})
    uploads = [
        {"role": i.role, "title": i.title, "sha256": i.upload_sha256 or i.sha256, "relationship": i.relationship, "credentials": i.credentials,
         **({"terms": i.terms} if i.terms else {}), **({"rights": i.rights} if i.rights else {})}
        for i in ingredients
    ]
    return {
        "claim_generator_info": [{"name": "aipic", "version": __version__}],
        "title": title,
        "format": format,
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": actions}},
            {
                "label": contributions_label(),
                "data": {
                    "task": task,
                    "human": {**human, "uploads": uploads},
                    "model": {"models": models, **outputs},
                },
            },
            {"label": audit_label(), "data": audit},
            *({"label": SOFT_BINDING_LABEL, "data": binding} for binding in soft_bindings),
            *([{"label": TRAINING_MINING_LABEL, "data": terms}] if terms else []),
        ],
    }


_SIGN_CONTEXT = threading.local()
# The optional claim thumbnail: small (128 px long edge, low-quality JPEG: ~3 KB) so that verifiers can show
# what was signed without the ~350 KB of c2pa's default thumbnail.
THUMBNAIL_SETTINGS = {"enabled": True, "long_edge": 128, "quality": "low", "prefer_smallest_format": True}


def _sign_context(thumbnail: bool) -> c2pa.Context:
    contexts = getattr(_SIGN_CONTEXT, "contexts", None)
    if contexts is None:
        contexts = _SIGN_CONTEXT.contexts = {}
    key = (thumbnail, assertion_namespace())
    if key not in contexts:
        contexts[key] = c2pa.Context.from_dict({"builder": builder_settings(thumbnail)})
    return contexts[key]


def sign(data: bytes, mime: str, manifest: dict, ingredients: list[Ingredient], signer: c2pa.Signer, thumbnail: bool = False) -> bytes:
    """Embed a signed manifest into encoded image bytes (PNG, JPEG, WebP); returns the signed bytes.

    The signer is reused by the caller (one per worker thread): making one parses the key, which costs more
    than signing. ``thumbnail`` embeds a small claim thumbnail.
    """
    return sign_with_store(data, mime, manifest, ingredients, signer, thumbnail)[0]


def _add_ingredients(builder: c2pa.Builder, ingredients: list[Ingredient]) -> None:
    """Each upload as an ingredient, its own bytes (and so its own credentials) included."""
    for ingredient in ingredients:
        builder.add_ingredient(
            {"title": ingredient.title, "relationship": ingredient.relationship, "label": ingredient.label},
            ingredient.format,
            io.BytesIO(ingredient.data),
        )


def sign_with_store(data: bytes, mime: str, manifest: dict, ingredients: list[Ingredient], signer: c2pa.Signer, thumbnail: bool = False) -> tuple[bytes, bytes]:
    """As ``sign``, and also the manifest store itself (JUMBF), which the registry keeps."""
    with c2pa.Builder(manifest, context=_sign_context(thumbnail)) as builder:
        _add_ingredients(builder, ingredients)
        destination = io.BytesIO()
        store = builder.sign(signer, mime, io.BytesIO(data), destination)
    return destination.getvalue(), bytes(store or b"")


def sign_as_author(data: bytes, mime: str, manifest: dict, ingredients: list[Ingredient], identity: SigningIdentity, author: Author, tsa_url: str | None = None, thumbnail: bool = False) -> tuple[bytes, bytes]:
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
    referenced = [label for label in identity_referenced() if label in present]
    cawg = {"alg": author.alg, "sign_cert": author.chain_pem, "private_key": author.key_pem, "referenced_assertions": referenced, "roles": [CREATOR_ROLE], **({"tsa_url": tsa_url} if tsa_url else {})}
    context = c2pa.Context.from_dict({"builder": builder_settings(thumbnail), "signer": {"local": signer}, "cawg_x509_signer": {"local": cawg}})
    with c2pa.Builder(manifest, context=context) as builder:
        if not hasattr(builder, "_has_context_signer"):
            raise StageFailed("This c2pa-python cannot attach an author identity (no context signer); the output was not signed.")
        builder._has_context_signer = True  # the Context's settings hold the signer (see above)
        _add_ingredients(builder, ingredients)
        destination = io.BytesIO()
        store = bytes(builder.sign(mime, io.BytesIO(data), destination) or b"")
    if IDENTITY_LABEL.encode() not in store:
        raise StageFailed("The author's identity could not be attached, so the output was not published.")
    return destination.getvalue(), store


def sign_png(png: bytes, manifest: dict, ingredients: list[Ingredient], identity: SigningIdentity) -> bytes:
    """Embed a signed manifest into PNG bytes with a signer made for this call."""
    with make_signer(identity) as signer:
        return sign(png, "image/png", manifest, ingredients, signer)


def make_ingredient(source, image, title: str, relationship: str, role: str, trust_anchors: Sequence[str] = ()) -> Ingredient:
    """An ingredient from an upload: its original bytes when it is an image file C2PA reads, else a PNG of it.

    The upload's own credentials are checked first (in the bounded verifier). Failed ones stay in the chain with
    their status recorded; damaged ones (C2PA cannot even parse them) are dropped, because no manifest can
    reference them, and the upload is recorded as such.
    """
    from .images import png_bytes

    data = None
    if isinstance(source, (str, Path)) and Path(source).is_file():
        data = Path(source).read_bytes()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    mime = sniff_format(data) if data else None
    if data is None or mime not in SUPPORTED_INGREDIENT_FORMATS:
        return Ingredient(title=title, relationship=relationship, data=png_bytes(image), format="image/png", role=role)
    if isinstance(source, (str, Path)):
        check = verify_file(source, list(trust_anchors))
    else:
        check = verify_bytes(data, list(trust_anchors))
    upload_sha256 = hashlib.sha256(data).hexdigest()
    if check.verdict in ("unreadable_manifest", "unreadable", "too_large"):
        # C2PA cannot parse the file (damaged credentials, or a damaged file that an image decoder still reads):
        # no manifest can reference it, so its pixels go in as a PNG and the upload is recorded as such.
        data, mime = png_bytes(image), "image/png"
    verdict = check.verdict if check.verdict not in ("unreadable", "too_large") else "unchecked"
    return Ingredient(title=title, relationship=relationship, data=data, format=mime, role=role, credentials=verdict, codes=list(check.codes), upload_sha256=upload_sha256, terms=check.terms, rights=check.rights)


# ---- verification (aipic.verify; re-exported here) ---------------------------------------------------------

from .verify import (  # noqa: E402,F401
    SUPPORTED_INGREDIENT_FORMATS,
    VERDICT_TEXT,
    Verification,
    reader_context as _reader_context,
    sniff_format,
    verify_bytes,
    verify_file,
)
