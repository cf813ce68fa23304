"""What a person asks for, as plain values: a text-to-image or image-to-image request, a style-transfer request.
``None`` means "the model's default"; the pipeline resolves a request once (aipic.pipeline.resolve), and what
flows down to the generators is the resolved request."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from PIL import Image

from aipic.common.images import size_for_aspect

SIZE_MULTIPLE = 8
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class GenerationRequest:
    """What the person asked for. None means "the model's default"; seed None or -1 means "pick one"."""

    prompt: str
    negative_prompt: str = ""
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    batch: int = 1
    strength: float | None = None  # img2img only
    init_image: Image.Image | None = None  # img2img only
    output_format: str | None = None  # png, jpeg or webp; None: the deployment's default
    private_prompt: bool = False  # record only a salted hash of the prompts in the public manifest
    record_upload_names: bool = False  # record the upload's file name (off: only its role, e.g. "init image")
    terms: dict | None = None  # training-and-mining choices {use: allowed|notAllowed|constrained}; None: the defaults
    terms_constraint: str = ""  # what "constrained" means, in the person's words
    rights_statement: str = ""  # the person's own rights statement, recorded in the manifest

    @property
    def is_img2img(self) -> bool:
        return self.init_image is not None

    @property
    def image_seeds(self) -> list[int]:
        """Each image's seed (a resolved request): image i uses seed + i, so every image can be made again alone."""
        assert self.seed is not None
        return [(self.seed + index) % (MAX_SEED + 1) for index in range(self.batch)]

    def parameters(self) -> dict:
        """The parameters as recorded in results and manifests (no image data)."""
        fields = dataclasses.asdict(dataclasses.replace(self, init_image=None))
        for name in ("init_image", "prompt", "negative_prompt", "output_format", "private_prompt", "record_upload_names", "terms", "terms_constraint", "rights_statement"):
            fields.pop(name)
        if not self.is_img2img:
            fields.pop("strength")
        return fields


@dataclass(frozen=True)
class StyleRequest:
    content_image: Any  # an upload: a path, bytes or a PIL image (a PIL image once resolved)
    style_image: Any
    steps: int = 100
    style_weight: float = 1e5
    content_weight: float = 1.0
    size: int = 256  # longest side of the output
    seed: int = 0
    output_format: str | None = None  # png, jpeg or webp; None: the deployment's default
    record_upload_names: bool = False  # record the uploads' file names (off: only their roles)
    terms: dict | None = None  # training-and-mining choices {use: allowed|notAllowed|constrained}; None: the defaults
    terms_constraint: str = ""  # what "constrained" means, in the person's words
    rights_statement: str = ""  # the person's own rights statement, recorded in the manifest

    @property
    def output_size(self) -> tuple[int, int]:
        """(width, height) of the output, which both pictures are resized to: the content image's aspect, its
        longest side ``size`` (a resolved request, whose content image is opened)."""
        return size_for_aspect(self.content_image, self.size, SIZE_MULTIPLE)

    def parameters(self) -> dict:
        return {
            "steps": self.steps,
            "style_weight": self.style_weight,
            "content_weight": self.content_weight,
            "size": self.size,
            "seed": self.seed,
        }
