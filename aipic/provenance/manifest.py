"""What an output's C2PA manifest says: the actions, what the person contributed (prompt, parameters, uploads as
ingredients), what the models contributed (which models and weights, seeds), the bias audit, the soft bindings
and the person's training-and-mining terms. Building the definition only: signing is aipic.provenance.signing.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from aipic import __version__
from aipic.common.settings import DEFAULT_NAMESPACE
from aipic.provenance import labels

AIPIC_AGENT = {"name": "aipic", "version": __version__}  # aipic itself, as claim generator and as the agent of its own actions
VISIBLE_LABEL_TEXT = "AI-generated"
VISIBLE_LABEL_ACTION = f"a visible “{VISIBLE_LABEL_TEXT}” label drawn on the picture (EU AI Act, Article 50)"


def created_assertion_labels(namespace: str = DEFAULT_NAMESPACE) -> list[str]:
    """The assertions the signer attests (C2PA 2.x created assertions; claim v2 requires the actions among
    them): the AI disclosure, aipic's contribution and audit records, what an output must not be used for, soft
    bindings and terms."""
    return [labels.ACTIONS, labels.ACTIONS_V2, labels.contributions_label(namespace), labels.audit_label(namespace), labels.intended_use_label(namespace),
            labels.SOFT_BINDING, labels.TRAINING_MINING]


def identity_referenced(namespace: str = DEFAULT_NAMESPACE) -> list[str]:
    """What a named author's identity assertion signs over (besides the hard binding, which c2pa adds itself): the
    actions, aipic's record of the human contribution, and the person's training-and-mining terms."""
    return [labels.ACTIONS_V2, labels.contributions_label(namespace), labels.TRAINING_MINING]


@dataclass
class Ingredient:
    """A person's upload that an output was made from."""

    title: str
    relationship: str  # "parentOf" (the image edited) or "componentOf" (e.g. a style image)
    data: bytes  # the file as uploaded, so any Content Credentials it has stay in the chain
    format: str = "image/png"
    role: str = ""  # e.g. "init image", "content image", "style image"
    credentials: str = "no_credentials"  # the upload's own verdict when it arrived (aipic.provenance.verify)
    codes: list = field(default_factory=list)
    upload_sha256: str = ""  # of the file as uploaded (differs from sha256 when damaged credentials were dropped)
    terms: dict | None = None  # the training-and-mining terms its own credentials state (honoured even when they failed)
    rights: str | None = None  # the rights statement its own credentials make
    prepared: tuple = ()  # what aipic did to it before the model saw it: (C2PA action, description) pairs

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


def salted_sha256(salt_hex: str, text: str) -> str:
    """sha256(salt ‖ text): how a private prompt is recorded (private_prompts) and checked (verify.prompt_matches)."""
    return hashlib.sha256(bytes.fromhex(salt_hex) + text.encode("utf-8")).hexdigest()


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


def digital_source_type(ingredients: Sequence[Ingredient]) -> str:
    """IPTC's term for what made the picture: a model alone, or a model with a person's upload."""
    if any(ingredient.relationship == "parentOf" for ingredient in ingredients):
        return labels.COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA
    return labels.TRAINED_ALGORITHMIC_MEDIA


def _preparation(ingredient: Ingredient) -> list[dict]:
    """The actions aipic took on an upload before the model used it (turned upright, cropped, resized)."""
    return [{"action": action, "parameters": {"ingredientIds": [ingredient.label]}, "softwareAgent": AIPIC_AGENT, "description": text}
            for action, text in ingredient.prepared]


def build_manifest(*, title: str, task: str, description: str, agent: dict, human: dict, models: list[dict], outputs: dict, audit: dict, ingredients: list[Ingredient],
                   format: str = "image/png", soft_bindings: Sequence[dict] = (), terms: dict | None = None, namespace: str = DEFAULT_NAMESPACE,
                   labelled: bool = False, watermarked: bool = False, intended_use: dict | None = None) -> dict:
    """The manifest definition: actions plus aipic's contribution and audit assertions (under ``namespace``).
    The actions are all the actions aipic took (``allActionsIncluded``): opening an upload and what it did to it
    before the model used it (turned upright, cropped, resized), making or editing the picture, placing a style
    reference, drawing a visible "AI-generated" label (``labelled``), inserting the invisible watermark.
    ``intended_use`` is what the output must not be used for (an output of a clinical prompt: not for diagnosis)."""
    parents = [ingredient for ingredient in ingredients if ingredient.relationship == "parentOf"]
    source = digital_source_type(ingredients)
    if parents:
        actions = [
            {"action": "c2pa.opened", "parameters": {"ingredientIds": [parents[0].label]}},
            *_preparation(parents[0]),
            {"action": "c2pa.edited", "digitalSourceType": source, "softwareAgent": agent, "description": description},
        ]
    else:
        actions = [{"action": "c2pa.created", "digitalSourceType": source, "softwareAgent": agent, "description": description}]
    components = [ingredient for ingredient in ingredients if ingredient.relationship == "componentOf"]
    if components:
        actions.append({"action": "c2pa.placed", "parameters": {"ingredientIds": [c.label for c in components]}, "description": "used as a style reference"})
        actions += [action for component in components for action in _preparation(component)]
    if labelled:
        actions.append({"action": "c2pa.edited", "softwareAgent": AIPIC_AGENT, "description": VISIBLE_LABEL_ACTION})
    if watermarked:
        actions.append({"action": "c2pa.watermarked", "softwareAgent": AIPIC_AGENT, "description": "an invisible watermark carrying this output's id (its soft binding)"})
    uploads = [
        {"role": i.role, "title": i.title, "sha256": i.upload_sha256 or i.sha256, "relationship": i.relationship, "credentials": i.credentials,
         **({"terms": i.terms} if i.terms else {}), **({"rights": i.rights} if i.rights else {})}
        for i in ingredients
    ]
    return {
        "claim_generator_info": [AIPIC_AGENT],
        "title": title,
        "format": format,
        "assertions": [
            {"label": labels.ACTIONS_V2, "data": {"actions": actions, "allActionsIncluded": True}},  # every action aipic took is listed (C2PA 2.x)
            {
                "label": labels.contributions_label(namespace),
                "data": {
                    "task": task,
                    "human": {**human, "uploads": uploads},
                    "model": {"models": models, **outputs},
                },
            },
            {"label": labels.audit_label(namespace), "data": audit},
            *([{"label": labels.intended_use_label(namespace), "data": intended_use}] if intended_use else []),
            *({"label": labels.SOFT_BINDING, "data": binding} for binding in soft_bindings),
            *([{"label": labels.TRAINING_MINING, "data": terms}] if terms else []),
        ],
    }
