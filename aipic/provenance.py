"""C2PA provenance: a local signing identity, signed manifests for every output, and verification.

Every output records the human contributions (prompt, parameters, uploads) and
the model contributions (which models, seeds) as custom assertions, plus the
bias audit, next to the standard c2pa.actions assertion.
"""

import hashlib
import io
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import c2pa

from . import __version__
from .identity import SigningIdentity, ensure_signing_identity, local_trust_anchors  # noqa: F401 - re-exported

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
CONTRIBUTIONS_LABEL = "org.aipic.contributions"
AUDIT_LABEL = "org.aipic.bias_audit"
# Builder settings: no thumbnail (it adds ~350 KB and ~60 ms per image and only repeats the image), and the
# AI disclosure attested by the signer: the actions, contributions and audit are *created* assertions (C2PA 2.x
# claim v2 requires the actions among them), not gathered ones.
CREATED_ASSERTION_LABELS = ["c2pa.actions", "c2pa.actions.v2", CONTRIBUTIONS_LABEL, AUDIT_LABEL]
BUILDER_SETTINGS = {"builder": {"thumbnail": {"enabled": False}, "created_assertion_labels": CREATED_ASSERTION_LABELS}}


# ---- signing ---------------------------------------------------------------------------------------

def make_signer(identity: SigningIdentity) -> c2pa.Signer:
    info = c2pa.C2paSignerInfo(alg=b"es256", sign_cert=identity.chain_pem.encode(), private_key=identity.key_path.read_bytes(), ta_url=None)
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

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def label(self) -> str:
        return f"ingredient-{self.role.replace(' ', '-') or self.relationship}-{self.sha256[:12]}"


def software_agent(model: dict) -> dict:
    return {"name": model["name"], "version": model.get("pretrained") or ("random-weights" if model.get("placeholder") else "")}


def build_manifest(*, title: str, task: str, description: str, agent: dict, human: dict, models: list[dict], outputs: dict, audit: dict, ingredients: list[Ingredient], format: str = "image/png") -> dict:
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
    uploads = [{"role": i.role, "title": i.title, "sha256": i.sha256, "relationship": i.relationship} for i in ingredients]
    return {
        "claim_generator_info": [{"name": "aipic", "version": __version__}],
        "title": title,
        "format": format,
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": actions}},
            {
                "label": CONTRIBUTIONS_LABEL,
                "data": {
                    "task": task,
                    "human": {**human, "uploads": uploads},
                    "model": {"models": models, **outputs},
                },
            },
            {"label": AUDIT_LABEL, "data": audit},
        ],
    }


_SIGN_CONTEXT = threading.local()


def sign(data: bytes, mime: str, manifest: dict, ingredients: list[Ingredient], signer: c2pa.Signer) -> bytes:
    """Embed a signed manifest into encoded image bytes (PNG, JPEG, WebP); returns the signed bytes.

    The signer is reused by the caller (one per worker thread): making one parses the key, which costs more
    than signing.
    """
    context = getattr(_SIGN_CONTEXT, "context", None)
    if context is None:
        context = _SIGN_CONTEXT.context = c2pa.Context.from_dict(BUILDER_SETTINGS)
    with c2pa.Builder(manifest, context=context) as builder:
        for ingredient in ingredients:
            builder.add_ingredient(
                {"title": ingredient.title, "relationship": ingredient.relationship, "label": ingredient.label},
                ingredient.format,
                io.BytesIO(ingredient.data),
            )
        destination = io.BytesIO()
        builder.sign(signer, mime, io.BytesIO(data), destination)
    return destination.getvalue()


def sign_png(png: bytes, manifest: dict, ingredients: list[Ingredient], identity: SigningIdentity) -> bytes:
    """Embed a signed manifest into PNG bytes with a signer made for this call."""
    with make_signer(identity) as signer:
        return sign(png, "image/png", manifest, ingredients, signer)


def make_ingredient(source, image, title: str, relationship: str, role: str) -> Ingredient:
    """An ingredient from an upload: its original bytes when it is an image file C2PA reads, else a PNG of it."""
    from .images import png_bytes

    data = None
    if isinstance(source, (str, Path)) and Path(source).is_file():
        data = Path(source).read_bytes()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    mime = sniff_format(data) if data else None
    if mime not in SUPPORTED_INGREDIENT_FORMATS:
        data, mime = png_bytes(image), "image/png"
    return Ingredient(title=title, relationship=relationship, data=data, format=mime, role=role)


def write_atomically(path: Path, data: bytes) -> Path:
    """Write to a .part file, flush it to disk, then rename: a crash or a full disk never leaves a file that looks whole."""
    temporary = path.with_name(path.name + ".part")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


# ---- verification ----------------------------------------------------------------------------------

VERDICT_TEXT = {
    "trusted": "Valid Content Credentials from a trusted signer.",
    "valid": "Content Credentials are intact, but the signer is not on your trust list.",
    "tampered": "The Content Credentials do not match this file: it was changed after signing, or the credentials were altered.",
    "no_credentials": "No Content Credentials found: the file was never signed, or they were stripped (re-encoding, screenshots and many uploads remove them).",
    "unreadable": "This is not an image aipic can check.",
}
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


@dataclass
class Verification:
    verdict: str  # trusted | valid | tampered | no_credentials | unreadable
    message: str
    validation_state: str | None = None
    signer: str | None = None
    issuer: str | None = None
    claim_generator: str | None = None
    actions: list = field(default_factory=list)
    ingredients: list = field(default_factory=list)
    contributions: dict | None = None
    audit: dict | None = None
    problems: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict in ("trusted", "valid")

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def report(self) -> str:
        """A human-readable report."""
        lines = [f"Verdict: {self.verdict.upper()} — {self.message}"]
        if self.validation_state:
            lines.append(f"Validation state: {self.validation_state}")
        if self.signer:
            lines.append(f"Signed by: {self.signer}" + (f" (issuer: {self.issuer})" if self.issuer else ""))
        if self.claim_generator:
            lines.append(f"Made with: {self.claim_generator}")
        for action in self.actions:
            agent = action.get("softwareAgent")
            agent = agent.get("name") if isinstance(agent, dict) else agent
            source = (action.get("digitalSourceType") or "").rsplit("/", 1)[-1]
            lines.append(f"Action: {action.get('action')}" + (f" by {agent}" if agent else "") + (f" [{source}]" if source else ""))
        for ingredient in self.ingredients:
            lines.append(f"Ingredient: {ingredient.get('title')} ({ingredient.get('relationship')})")
        if self.contributions:
            human = self.contributions.get("human", {})
            model = self.contributions.get("model", {})
            if human.get("prompt"):
                lines.append(f"Human contribution — prompt: {human['prompt']!r}")
            if human.get("parameters"):
                lines.append(f"Human contribution — parameters: {json.dumps(human['parameters'], sort_keys=True)}")
            for upload in human.get("uploads", []):
                lines.append(f"Human contribution — upload: {upload.get('role') or upload.get('title')} (sha256 {upload.get('sha256', '')[:16]}…)")
            for entry in model.get("models", []):
                lines.append(f"Model contribution — {entry.get('label') or entry.get('name')}")
        if self.audit:
            lines.append("Bias audit: " + _audit_line(self.audit))
        for problem in self.problems:
            lines.append(f"Problem: {problem}")
        return "\n".join(lines)


def _audit_line(audit: dict) -> str:
    if not audit.get("person_present"):
        text = "no person detected"
    else:
        readings = [f"{name.replace('_', ' ')}: {result.get('label', '?').replace('_', ' ')}" for name, result in (audit.get("attributes") or {}).items()]
        text = "person detected; " + "; ".join(readings) if readings else "person detected"
    if (audit.get("clip_model") or {}).get("placeholder"):
        text += " (tiny random-weight CLIP: meaningless)"
    return text


def _reader_context(trust_anchors: list[str]) -> c2pa.Context:
    settings = {"verify": {"verify_trust": True}}
    anchors = "\n".join(anchor.strip() for anchor in trust_anchors if anchor and anchor.strip())
    if anchors:
        settings["trust"] = {"user_anchors": anchors + "\n"}
    return c2pa.Context.from_dict(settings)


def _failures(results: dict | None) -> list[dict]:
    active = (results or {}).get("activeManifest") or {}
    return list(active.get("failure") or [])


def verify_bytes(data: bytes, trust_anchors: list[str] = ()) -> Verification:
    """Check a file's Content Credentials. Never raises on bad input: the verdict says what is wrong."""
    mime = sniff_format(data)
    if mime is None:
        return Verification("unreadable", "This file is not a supported image (PNG, JPEG, WebP, GIF, TIFF, AVIF/HEIC).")
    try:
        with c2pa.Reader(mime, io.BytesIO(data), context=_reader_context(list(trust_anchors))) as reader:
            manifest = reader.get_active_manifest() or {}
            state = reader.get_validation_state()
            results = reader.get_validation_results()
    except c2pa.C2paError as error:
        text = str(error)
        if "ManifestNotFound" in text or "no JUMBF" in text or "JumbfNotFound" in text:
            return Verification("no_credentials", VERDICT_TEXT["no_credentials"])
        if "could not be parsed" in text or "out of range" in text:
            return Verification("unreadable", "The file is damaged or truncated: it could not be parsed as an image.", problems=[text])
        return Verification("tampered", "The file has Content Credentials that cannot be read: " + text.split("\n")[0], problems=[text])
    except Exception as error:  # noqa: BLE001 - the verifier reports, it does not crash
        return Verification("unreadable", f"This file could not be read as an image ({error}).")
    assertions = {assertion.get("label"): assertion.get("data") for assertion in manifest.get("assertions", [])}
    actions = (assertions.get("c2pa.actions.v2") or assertions.get("c2pa.actions") or {}).get("actions", [])
    signature = manifest.get("signature_info") or {}
    generator = ", ".join(f"{g.get('name')} {g.get('version', '')}".strip() for g in manifest.get("claim_generator_info", []))
    failures = _failures(results)
    if state == "Trusted":
        verdict = "trusted"
    elif state == "Valid":
        verdict = "valid"
    else:
        verdict = "tampered"
    return Verification(
        verdict=verdict,
        message=VERDICT_TEXT[verdict],
        validation_state=state,
        signer=signature.get("common_name"),
        issuer=signature.get("issuer"),
        claim_generator=generator or None,
        actions=actions,
        ingredients=[{"title": i.get("title"), "relationship": i.get("relationship")} for i in manifest.get("ingredients", [])],
        contributions=assertions.get(CONTRIBUTIONS_LABEL),
        audit=assertions.get(AUDIT_LABEL),
        problems=[f"{f.get('code')}: {f.get('explanation')}" for f in failures],
    )


def verify_file(path: str | Path, trust_anchors: list[str] = ()) -> Verification:
    path = Path(path)
    if not path.is_file():
        return Verification("unreadable", f"No such file: {path}")
    try:
        data = path.read_bytes()
    except OSError as error:
        return Verification("unreadable", f"Cannot read {path}: {error}")
    return verify_bytes(data, trust_anchors)
