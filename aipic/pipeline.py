"""The one pipeline every output goes through: generate (or stylise) → bias audit → C2PA sign → file.

No output leaves this module unaudited or unsigned: the only way to get an
image out is an OutputItem, which points at the signed file on disk.
"""

import datetime
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from . import provenance
from .audit import AttributeSet, AuditResult, BiasAuditor, load_attribute_set
from .catalog import Catalog, load_catalog
from .errors import AipicError
from .generate import GenerationRequest, resolve_request, run_diffusion, truncation_warnings
from .images import open_user_image, png_bytes
from .models import ModelRegistry, image_to_image_pipeline
from .style import StyleRequest, resolve_style_request, style_transfer


def default_home() -> Path:
    return Path(os.environ.get("AIPIC_HOME") or Path.home() / ".aipic")


@dataclass
class OutputItem:
    path: Path  # the signed PNG; serve these bytes as they are
    seed: int
    audit: AuditResult
    width: int
    height: int


@dataclass
class Outcome:
    items: list[OutputItem]
    warnings: list[str] = field(default_factory=list)
    models: list[dict] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        return [str(item.path) for item in self.items]


class AipicPipeline:
    """Loads models on first use and chains generation, audit and signing."""

    def __init__(
        self,
        catalog: Catalog | None = None,
        attribute_set: AttributeSet | None = None,
        models_mode: str | None = None,
        device: str | None = None,
        home: str | Path | None = None,
        output_dir: str | Path | None = None,
    ):
        self.catalog = catalog or load_catalog()
        self.attribute_set = attribute_set or load_attribute_set()
        self.models = ModelRegistry(self.catalog, models_mode, device)
        self.home = Path(home) if home else default_home()
        self.key_dir = self.home / "keys"
        self.output_dir = Path(output_dir) if output_dir else self.home / "outputs"
        self._identity = None
        self._auditor = None
        self._lock = threading.Lock()  # one model run at a time; the models are shared

    # ---- shared pieces -------------------------------------------------------------------------------

    @property
    def identity(self) -> provenance.SigningIdentity:
        if self._identity is None:
            self._identity = provenance.ensure_signing_identity(self.key_dir)
        return self._identity

    @property
    def auditor(self) -> BiasAuditor:
        if self._auditor is None:
            clip = self.models.get("clip")
            self._auditor = BiasAuditor(clip.obj, clip.extra["preprocess"], clip.extra["tokenizer"], self.attribute_set, clip.describe())
        return self._auditor

    def placeholder_notes(self) -> list[str]:
        """Plain-language notes about any tiny random-weight models in use (loads the default models)."""
        notes = []
        for section in ("text_to_image", "clip", "style"):
            model = self.models.get(section)
            if model.placeholder:
                notes.append(model.note)
        return notes

    def _defaults(self, model) -> dict:
        """Request defaults of a text-to-image model; a placeholder uses the tiny model's own."""
        entry = self.catalog.entry("text_to_image", "tiny-random") if model.placeholder else model.entry
        return dict(entry.defaults or {})

    def _output_path(self, task: str, seed: int) -> Path:
        day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        directory = self.output_dir / day
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%H%M%S")
        return directory / f"aipic-{task}-{stamp}-{seed}-{uuid.uuid4().hex[:8]}.png"

    def _audit_sign_save(self, images: list[tuple[Image.Image, int]], *, task: str, description: str, model_info: dict, human: dict, ingredients: list) -> list[OutputItem]:
        """Audit every image, embed a signed manifest, write the signed bytes; returns what was written."""
        audits = self.auditor.audit([image for image, _ in images])
        items = []
        for index, ((image, seed), audit) in enumerate(zip(images, audits)):
            path = self._output_path(task, seed)
            manifest = provenance.build_manifest(
                title=path.name,
                task=task,
                description=description,
                agent=provenance.software_agent(model_info),
                human=human,
                models=[model_info],
                outputs={"seed": seed, "index_in_batch": index, "width": image.width, "height": image.height},
                audit=audit.to_dict(),
                ingredients=ingredients,
            )
            signed = provenance.sign_png(png_bytes(image), manifest, ingredients, self.identity)
            provenance.write_atomically(path, signed)
            items.append(OutputItem(path=path, seed=seed, audit=audit, width=image.width, height=image.height))
        return items

    # ---- tasks -----------------------------------------------------------------------------------------

    def text_to_image(self, request: GenerationRequest, model_key: str | None = None) -> Outcome:
        if request.init_image is not None:
            raise AipicError("Text-to-image takes no init image; use image-to-image.")
        return self._diffuse(request, model_key, ingredients=[])

    def image_to_image(self, request: GenerationRequest, init_image, model_key: str | None = None, init_title: str = "init image") -> Outcome:
        image = open_user_image(init_image, "init image", self.catalog.limits.max_upload_pixels)
        request = GenerationRequest(**{**request.__dict__, "init_image": image})
        ingredient = provenance.make_ingredient(init_image, image, _title(init_image, init_title), "parentOf", "init image")
        return self._diffuse(request, model_key, ingredients=[ingredient])

    def _diffuse(self, request: GenerationRequest, model_key: str | None, ingredients: list) -> Outcome:
        model = self.models.get("text_to_image", model_key)
        request = resolve_request(request, self._defaults(model), self.catalog.limits)
        warnings = [model.note] if model.placeholder and model.note else []
        with self._lock:
            pipe = model.obj
            if request.is_img2img:
                if "img2img" not in model.extra:
                    model.extra["img2img"] = image_to_image_pipeline(model.obj)
                pipe = model.extra["img2img"]
            warnings += truncation_warnings(pipe.tokenizer, request)
            if request.negative_prompt and request.guidance <= 1.0:
                warnings.append("The negative prompt has no effect at guidance 1 or below.")
            generated = run_diffusion(pipe, request)
            task = "img2img" if request.is_img2img else "text-to-image"
            items = self._audit_sign_save(
                [(g.image, g.seed) for g in generated],
                task=task,
                description=f"{task} with {model.name}",
                model_info=model.describe(),
                human={"prompt": request.prompt, "negative_prompt": request.negative_prompt, "parameters": request.parameters()},
                ingredients=ingredients,
            )
        return Outcome(items=items, warnings=warnings, models=[model.describe()])

    def style_transfer(self, request: StyleRequest, content_title: str = "content image", style_title: str = "style image", progress=None) -> Outcome:
        limits = self.catalog.limits
        titles = (_title(request.content_image, content_title), _title(request.style_image, style_title))
        content = open_user_image(request.content_image, "content image", limits.max_upload_pixels)
        style = open_user_image(request.style_image, "style image", limits.max_upload_pixels)
        sources = request
        request = resolve_style_request(StyleRequest(**{**request.__dict__, "content_image": content, "style_image": style}), limits)
        model = self.models.get("style")
        ingredients = [
            provenance.make_ingredient(sources.content_image, content, titles[0], "parentOf", "content image"),
            provenance.make_ingredient(sources.style_image, style, titles[1], "componentOf", "style image"),
        ]
        warnings = [model.note] if model.placeholder and model.note else []
        with self._lock:
            image, losses = style_transfer(model.obj, model.extra["layers"], request, progress=progress)
            items = self._audit_sign_save(
                [(image, request.seed)],
                task="style-transfer",
                description=f"neural style transfer (Gatys) on {model.name} features",
                model_info={**model.describe(), "losses": {k: round(v, 6) for k, v in losses.items()}},
                human={"parameters": request.parameters()},
                ingredients=ingredients,
            )
        return Outcome(items=items, warnings=warnings, models=[model.describe()])

    def verify(self, path, extra_trust_anchors: list[str] = ()) -> provenance.Verification:
        anchors = [*self.identity.trust_anchors, *extra_trust_anchors]
        return provenance.verify_file(path, anchors)


def _title(source, fallback: str) -> str:
    if isinstance(source, (str, Path)):
        return Path(source).name
    return fallback
