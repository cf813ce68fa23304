"""CLIP zero-shot bias audit: is there a person, and how does the model read them.

The attribute set (audits/attributes.yaml) is data.  For each class the text
embeddings of all its phrases in all templates are averaged (a prompt
ensemble).  An image's class probabilities are a softmax over CLIP's scaled
cosine similarities; the audit abstains when the model is unsure.
"""

from dataclasses import asdict, dataclass, field

import torch
from PIL import Image

from aipic.audit.attributes import AttributeSet, AttributeSpec, decide
from aipic.common.tensors import clip_preprocess, to_uint8

@dataclass
class AuditResult:
    person_present: bool
    person_probability: float
    attributes: dict = field(default_factory=dict)  # name -> AttributeResult (empty when no person)
    clip_model: dict = field(default_factory=dict)
    attribute_set: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)  # every attribute's class probabilities, person or not (for re-thresholding)

    def to_dict(self) -> dict:
        return {
            "person_present": self.person_present,
            "person_probability": round(self.person_probability, 4),
            "attributes": {name: _rounded(asdict(result)) for name, result in self.attributes.items()},
            "clip_model": self.clip_model,
            "attribute_set": self.attribute_set,
        }

    def summary(self) -> str:
        """A few lines for people: what the audit saw, including when it abstained."""
        lines = []
        if self.clip_model.get("placeholder"):
            lines.append("⚠ Audit ran on tiny random-weight CLIP: the numbers below are meaningless.")
        if not self.person_present:
            lines.append(f"No person detected (the audit model put the chance of one at {self.person_probability:.0%}); attributes not assessed.")
            return "\n".join(lines)
        lines.append(f"Person detected ({self.person_probability:.0%} sure). Perceived by the model, not identity:")
        for result in self.attributes.values():
            if result.abstained:
                lines.append(f"• {result.title}: abstained ({result.reason})")
            else:
                lines.append(f"• {result.title}: {result.label.replace('_', ' ')} ({result.confidence:.0%})")
        return "\n".join(lines)


def _rounded(data: dict) -> dict:
    out = dict(data)
    out["confidence"] = round(out["confidence"], 4)
    out["probabilities"] = {label: round(p, 4) for label, p in out["probabilities"].items()}
    return out


class BiasAuditor:
    """Holds a CLIP model and the class embeddings of an attribute set; audits images."""

    def __init__(self, model, preprocess, tokenizer, attribute_set: AttributeSet, model_info: dict | None = None):
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.attribute_set = attribute_set
        self.model_info = model_info or {}
        self.device = next(model.parameters()).device
        with torch.no_grad():
            self.logit_scale = float(model.logit_scale.exp()) if hasattr(model, "logit_scale") else 100.0
        self.class_embeddings = {
            spec.name: self._class_embeddings(spec) for spec in (attribute_set.person_gate, *attribute_set.attributes)
        }  # float32, on the model's device

    @torch.no_grad()
    def _class_embeddings(self, spec: AttributeSpec) -> torch.Tensor:
        """One embedding per class (its phrases averaged over the templates). The person gate instead keeps one
        embedding per *concept* (phrase): averaging "a landscape", "an animal" and "a page of text" into one
        "no person" vector gives a point that resembles none of them."""
        rows = []
        groups = [[phrase] for phrases in spec.classes.values() for phrase in phrases] if spec is self.attribute_set.person_gate else list(spec.classes.values())
        for phrases in groups:
            texts = [template.format(phrase) for phrase in phrases for template in self.attribute_set.templates]
            embeddings = self.model.encode_text(self.tokenizer(texts).to(self.device)).float()
            embeddings = embeddings / embeddings.norm(dim=-1, keepdim=True)
            mean = embeddings.mean(dim=0)
            rows.append(mean / mean.norm())
        return torch.stack(rows)

    def _gate_columns(self) -> list[str]:
        """The class of each person-gate concept, in the order of its embeddings."""
        return [label for label, phrases in self.attribute_set.person_gate.classes.items() for _ in phrases]

    @torch.no_grad()
    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        batch = torch.stack([self.preprocess(image.convert("RGB")) for image in images]).to(self.device)
        embeddings = self.model.encode_image(batch.to(self.input_dtype)).float()
        return embeddings / embeddings.norm(dim=-1, keepdim=True)

    def probabilities(self, spec: AttributeSpec, image_embedding: torch.Tensor) -> dict:
        logits = self.logit_scale * image_embedding @ self.class_embeddings[spec.name].T
        probs = logits.softmax(dim=-1).tolist()
        return dict(zip(spec.classes, probs))

    def audit_embedding(self, image_embedding: torch.Tensor) -> AuditResult:
        return self.audit_embeddings(image_embedding.unsqueeze(0))[0]

    @torch.no_grad()
    def audit_embeddings(self, embeddings: torch.Tensor) -> list[AuditResult]:
        """Audit a batch of normalised image embeddings: every class probability in one GPU pass and one copy."""
        specs = (self.attribute_set.person_gate, *self.attribute_set.attributes)
        table = torch.cat([(self.logit_scale * embeddings @ self.class_embeddings[spec.name].T).softmax(dim=-1) for spec in specs], dim=1)
        rows = table.float().cpu().tolist()
        gate = self.attribute_set.person_gate
        results = []
        gate_columns = self._gate_columns()
        for row in rows:
            probabilities, start = {}, 0
            for spec in specs:
                if spec is gate:  # the softmax runs over every concept; a class's probability is its concepts' sum
                    concepts = row[start : start + len(gate_columns)]
                    probabilities[spec.name] = {label: sum(p for p, column in zip(concepts, gate_columns) if column == label) for label in spec.classes}
                    start += len(gate_columns)
                    continue
                probabilities[spec.name] = dict(zip(spec.classes, row[start : start + len(spec.classes)]))
                start += len(spec.classes)
            p_person = probabilities[gate.name]["person"]
            result = AuditResult(
                person_present=p_person >= gate.abstain_below,
                person_probability=p_person,
                clip_model=self.model_info,
                attribute_set=self.attribute_set.describe(),
                scores={name: probs for name, probs in probabilities.items() if name != gate.name},
            )
            if result.person_present:
                for spec in self.attribute_set.attributes:
                    result.attributes[spec.name] = decide(spec, probabilities[spec.name])
            results.append(result)
        return results

    def audit(self, images: list[Image.Image]) -> list[AuditResult]:
        if not images:
            return []
        return self.audit_embeddings(self.embed_images(images))

    @torch.no_grad()
    def audit_pixels(self, pixels: list[torch.Tensor]) -> list[AuditResult]:
        """Audit CHW float images in [0, 1] where they are (the GPU, after generation), preprocessing them there.

        Falls back to the PIL preprocessing when the model's transform is not the standard resize → crop →
        normalise (e.g. a stand-in model in tests).
        """
        if not pixels:
            return []
        if self.tensor_transform is None:
            arrays = to_uint8(torch.stack([p.float() for p in pixels])) if len({tuple(p.shape) for p in pixels}) == 1 else [to_uint8(p.unsqueeze(0))[0] for p in pixels]
            return self.audit([Image.fromarray(array, "RGB") for array in arrays])
        groups: dict[tuple, list[int]] = {}  # one resize per image size, not per image
        for index, p in enumerate(pixels):
            groups.setdefault(tuple(p.shape), []).append(index)
        batch: list = [None] * len(pixels)
        for indices in groups.values():
            prepared = self.tensor_transform(torch.stack([pixels[i] for i in indices]).to(self.device, torch.float32))
            for i, row in zip(indices, prepared):
                batch[i] = row
        embeddings = self.model.encode_image(torch.stack(batch).to(self.input_dtype)).float()
        return self.audit_embeddings(embeddings / embeddings.norm(dim=-1, keepdim=True))

    @property
    def input_dtype(self) -> torch.dtype:
        """The dtype of the image tower's weights (open_clip's fp16 models keep a few parameters in float32)."""
        tower = getattr(self.model, "visual", self.model)
        for module in tower.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                return module.weight.dtype
        return next(self.model.parameters()).dtype

    @property
    def tensor_transform(self):
        if not hasattr(self, "_tensor_transform"):
            self._tensor_transform = tensor_transform_for(self.preprocess)
        return self._tensor_transform


def tensor_transform_for(preprocess):
    """The torch equivalent of a torchvision Resize → CenterCrop → ToTensor → Normalize pipeline (open_clip's), or None.

    The work is aipic.common.tensors.clip_preprocess, shared with the safety checker.
    """
    from torchvision import transforms as T

    steps = getattr(preprocess, "transforms", None)
    if not steps:
        return None
    resize = next((t for t in steps if isinstance(t, T.Resize)), None)
    crop = next((t for t in steps if isinstance(t, T.CenterCrop)), None)
    normalize = next((t for t in steps if isinstance(t, T.Normalize)), None)
    known = (T.Resize, T.CenterCrop, T.Normalize, T.ToTensor)
    if resize is None or crop is None or normalize is None or any(isinstance(t, T.Compose) or (isinstance(t, torch.nn.Module) and not isinstance(t, known)) for t in steps):
        return None
    size = resize.size if isinstance(resize.size, int) else (resize.size[0] if len(resize.size) == 1 else None)
    if size is None:
        return None
    crop_h, crop_w = crop.size

    def transform(batch: torch.Tensor) -> torch.Tensor:
        return clip_preprocess(batch, size, (crop_h, crop_w), tuple(normalize.mean), tuple(normalize.std))

    return transform
