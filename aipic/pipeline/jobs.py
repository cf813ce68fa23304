"""Requests become jobs: each request is resolved once (aipic.pipeline.resolve), its uploads become ingredients,
the deployment's licence policy is applied, and what the person contributed is written down for the manifest.
Bad input fails here, in milliseconds, before any model loads."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from aipic.common.errors import BadInput
from aipic.common.images import MIN_INPUT_SIDE, open_user_image
from aipic.engine import Job
from aipic.generation.clinical import NOT_FOR_DIAGNOSIS, intended_use
from aipic.generation.diffusion import truncation_warnings
from aipic.generation.requests import GenerationRequest, StyleRequest
from aipic.models import Catalog, Models
from aipic.pipeline.resolve import Rights, diffusion_batch_key, resolve_generation, resolve_rights, resolve_style
from aipic.provenance.authorship import check_commercial, forbids_inference
from aipic.provenance.ingredients import make_ingredient
from aipic.provenance.manifest import Ingredient, private_prompts


class JobBuilder:
    """Turns the request kinds (text to image, image to image, style transfer) into engine jobs."""

    def __init__(self, catalog: Catalog, models: Models, commercial: bool, trust_anchors: Callable[[], Sequence[str]], output_dir: Callable[[], Path]):
        self.catalog = catalog
        self.models = models
        self.commercial = commercial  # refuse models whose licence forbids or leaves unclear commercial use
        self._trust_anchors = trust_anchors  # what an upload's own credentials are checked against
        self._output_dir = output_dir

    def text_to_image(self, request: GenerationRequest, model_key: str | None = None, progress=None, author=None) -> Job:
        if request.init_image is not None:
            raise BadInput("Text-to-image takes no init image; use image-to-image.")
        return self._diffusion(request, model_key, uploads=[], progress=progress, author=author)

    def image_to_image(self, request: GenerationRequest, init_image, model_key: str | None = None, init_title: str = "init image", progress=None, author=None) -> Job:
        image = open_user_image(init_image, "init image", self.catalog.limits.max_upload_pixels, MIN_INPUT_SIDE)
        opened = dataclasses.replace(request, init_image=image)
        return self._diffusion(opened, model_key, uploads=[(init_image, image, init_title, "parentOf", "init image")], progress=progress, author=author)

    def style(self, request: StyleRequest, content_title: str = "content image", style_title: str = "style image", progress=None, author=None) -> Job:
        limits = self.catalog.limits
        entry = self.models.entry("style")
        content = open_user_image(request.content_image, "content image", limits.max_upload_pixels, MIN_INPUT_SIDE)
        style = open_user_image(request.style_image, "style image", limits.max_upload_pixels, MIN_INPUT_SIDE)
        resolved = resolve_style(dataclasses.replace(request, content_image=content, style_image=style), limits)
        rights = resolve_rights(resolved)
        check_commercial(entry.label, entry.license, self.commercial)
        ingredients = self._ingredients([
            (request.content_image, content, content_title, "parentOf", "content image"),
            (request.style_image, style, style_title, "componentOf", "style image"),
        ], request.record_upload_names)
        ingredients[0].prepared = preparation(content, resolved.output_size, crops=False)
        ingredients[1].prepared = preparation(style, resolved.output_size, crops=False)
        model = self.models.get("style")
        job = Job(
            task="style-transfer",
            family="style",
            request=resolved,
            batch_key=(),
            seeds=[resolved.seed],
            model=model,
            human=_human({"parameters": resolved.parameters()}, rights, author),
            author=author,
            terms=rights.terms.assertion(),
            description=f"neural style transfer (Gatys) on {model.name} features",
            ingredients=ingredients,
            output_format=resolved.output_format,
            output_dir=self._output_dir(),
            warnings=_notices(model, ingredients),
            progress=progress,
        )
        job.batch_key = ("style", job.id)  # an optimisation per image: never merged with another job
        return job

    def _diffusion(self, request: GenerationRequest, model_key: str | None, uploads: list, progress=None, author=None) -> Job:
        entry = self.models.entry("text_to_image", model_key)
        resolved = resolve_generation(request, self.models.request_defaults(model_key), self.catalog.limits)
        rights = resolve_rights(resolved)
        check_commercial(entry.label, entry.license, self.commercial)
        ingredients = self._ingredients(uploads, request.record_upload_names)
        if ingredients and resolved.init_image is not None:  # img2img fits the upload to the output's size
            ingredients[0].prepared = preparation(resolved.init_image, (resolved.width, resolved.height), crops=True)
        model = self.models.get("text_to_image", model_key)
        assert resolved.seed is not None and resolved.guidance is not None  # resolved
        use = intended_use(resolved.prompt)  # a clinical prompt: not for diagnosis, said to the person and in the manifest
        warnings = ([NOT_FOR_DIAGNOSIS] if use else []) + _notices(model, ingredients) + truncation_warnings(model.obj.tokenizer, resolved)
        if resolved.negative_prompt and resolved.guidance <= 1.0:
            warnings.append("The negative prompt has no effect at guidance 1 or below.")
        task = "img2img" if resolved.is_img2img else "text-to-image"
        human, secret = {"prompt": resolved.prompt, "negative_prompt": resolved.negative_prompt}, None
        if resolved.private_prompt:
            human, secret = private_prompts(resolved.prompt, resolved.negative_prompt)
        return Job(
            task=task,
            family="diffusion",
            request=resolved,
            batch_key=diffusion_batch_key(resolved, model.entry.key),
            seeds=resolved.image_seeds,
            model=model,
            human=_human({**human, "parameters": resolved.parameters()}, rights, author),
            secret=secret,
            author=author,
            terms=rights.terms.assertion(),
            intended_use=use,
            description=f"{task} with {model.name}",
            ingredients=ingredients,
            output_format=resolved.output_format,
            output_dir=self._output_dir(),
            warnings=warnings,
            progress=progress,
        )

    def _ingredients(self, uploads: list, record_names: bool) -> list[Ingredient]:
        """Each upload as an ingredient (its own credentials checked in the bounded verifier); an upload whose
        credentials forbid AI inference is refused, even when those credentials failed (said in the message)."""
        ingredients = [make_ingredient(source, image, _title(source, title, record_names), relationship, role, self._trust_anchors())
                       for source, image, title, relationship, role in uploads]
        for ingredient in ingredients:
            if forbids_inference(ingredient.terms):
                failed = f" Its credentials failed verification ({ingredient.credentials.replace('_', ' ')}); the restriction is honoured anyway." if ingredient.failed else ""
                raise BadInput(f"The {ingredient.role or 'upload'}'s Content Credentials say that AI inference is not allowed, so aipic will not use it.{failed}")
        return ingredients


def preparation(image, size: tuple, crops: bool) -> tuple:
    """The (action, description) pairs of what is done to an opened upload before the model sees it: turned upright
    by its EXIF orientation, cropped at its centre to the output's shape (``crops``: img2img fits it that way; style
    transfer stretches), resized."""
    width, height = size
    steps = []
    if image.info.get("oriented"):
        steps.append(("c2pa.orientation", "turned upright as its EXIF orientation says"))
    if crops and _cropped_pixels(image.width, image.height, width, height) >= 1:
        steps.append(("c2pa.cropped", f"cropped at its centre to the output's shape ({width}:{height})"))
    if (image.width, image.height) != (width, height):
        steps.append(("c2pa.resized", f"resized from {image.width}×{image.height} to {width}×{height}"))
    return tuple(steps)


def _cropped_pixels(width: int, height: int, to_width: int, to_height: int) -> float:
    """How many columns or rows of the picture fitting it to ``to_width``×``to_height`` cuts off, as
    ImageOps.fit (common.images.fit_cover) cuts: the centre box of the target's shape, in the picture's pixels."""
    if width / height > to_width / to_height:
        return width - to_width / to_height * height
    return height - to_height / to_width * width


def _notices(model, ingredients: list[Ingredient]) -> list[str]:
    """What the person is told about any job: a placeholder model, and uploads whose credentials failed or were
    left out."""
    notices = [model.note] if model.placeholder and model.note else []
    return notices + [notice for notice in (ingredient.notice() for ingredient in ingredients) if notice]


def _human(human: dict, rights: Rights, author) -> dict:
    """The human record: what the person gave, who made it (or anonymous) and their rights statement."""
    human = {**human, "author": {"name": author.name, "credential": "X.509 (cawg.identity)", "source": author.source} if author else "anonymous"}
    if rights.statement:
        human["rights_statement"] = rights.statement
    return human


def _title(source, fallback: str, record_name: bool = False) -> str:
    """An upload's title in the public manifest: its role, or its file name when the person chose to record it."""
    if record_name and isinstance(source, (str, Path)):
        return Path(source).name
    return fallback
