"""Resolving a request, once, at the pipeline's edge (as diffusers' ``check_inputs`` runs first and once): every
field checked against the catalog's limits, every default filled in, the person's terms and rights statement
validated. What comes out flows down as a resolved value; nothing below checks it again.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from dataclasses import dataclass

from aipic.common.errors import BadInput
from aipic.common.images import OUTPUT_FORMATS, size_for_aspect
from aipic.generation.requests import MAX_SEED, SIZE_MULTIPLE, GenerationRequest, StyleRequest
from aipic.models.catalog import Limits
from aipic.provenance.authorship import Terms, check_rights_statement, resolve_terms


@dataclass(frozen=True)
class Rights:
    """The person's training-and-mining terms and rights statement, validated."""

    terms: Terms
    statement: str


def resolve_rights(request) -> Rights:
    """The terms and rights statement a request (of any kind) carries, checked once."""
    _valid_text(request.terms_constraint or "", "constraint")
    _valid_text(request.rights_statement or "", "rights statement")
    return Rights(terms=resolve_terms(request.terms, request.terms_constraint), statement=check_rights_statement(request.rights_statement))


def _valid_text(text: str, name: str) -> str:
    """Text that can be written anywhere (a manifest, XMP): no bytes that are not UTF-8 (a command line can pass
    such bytes as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"The {name} is not valid text: it holds bytes that are not UTF-8.") from None
    return text


def _as_int(value, name: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{name} must be a whole number (got {value!r}).") from None
    if not math.isfinite(number) or number != int(number):
        raise BadInput(f"{name} must be a whole number (got {value!r}).")
    return int(number)


def _as_float(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{name} must be a number (got {value!r}).") from None
    if not math.isfinite(number):
        raise BadInput(f"{name} must be a finite number (got {value!r}).")
    return number


def _check_range(value, low, high, name: str):
    if not low <= value <= high:
        raise BadInput(f"{name} must be between {low} and {high} (got {value}).")
    return value


def _check_side(value, name: str, limits: Limits) -> int:
    value = _check_range(_as_int(value, name), limits.min_side, limits.max_side, name)
    if value % SIZE_MULTIPLE:
        lower = value - value % SIZE_MULTIPLE
        raise BadInput(f"{name} must be a multiple of {SIZE_MULTIPLE} (got {value}); try {lower} or {lower + SIZE_MULTIPLE}.")
    return value


def request_limits(limits: Limits, max_gpu_batch: int) -> Limits:
    """The catalog's limits in a deployment whose GPU batches hold at most ``max_gpu_batch`` pictures: a request is
    never split across GPU batches, so it may ask for no more pictures than one batch holds."""
    if max_gpu_batch >= limits.max_batch:
        return limits
    return dataclasses.replace(limits, max_batch=max_gpu_batch)


def check_cost(pixel_steps: int, limits: Limits) -> None:
    """Refuse a request whose work (pixels × steps × images) is over the per-request budget, saying what fits."""
    cost = pixel_steps / 1e6
    if cost > limits.max_cost_mpx_steps:
        raise BadInput(
            f"This request is too large for one go: {cost:.0f} million pixel-steps (width × height × steps × images); "
            f"at most {limits.max_cost_mpx_steps:g} are accepted. Use fewer steps, fewer images or a smaller size."
        )


def check_output_format(value) -> str | None:
    """None (the deployment's default) or one of images.OUTPUT_FORMATS; 'jpg' means 'jpeg'."""
    if value is None or value == "":
        return None
    name = str(value).strip().lower()
    name = {"jpg": "jpeg"}.get(name, name)
    if name not in OUTPUT_FORMATS:
        raise BadInput(f"Output format must be one of {', '.join(OUTPUT_FORMATS)} (got {value!r}).")
    return name


def resolve_generation(request: GenerationRequest, defaults: dict, limits: Limits) -> GenerationRequest:
    """Fill in the model's defaults and check every field; raises BadInput with a clear message. The one check a
    text-to-image or image-to-image request gets (nothing below re-validates it)."""
    prompt = _valid_text((request.prompt or "").strip(), "prompt")
    if not prompt:
        raise BadInput("Please enter a prompt describing the image.")
    if len(prompt) > limits.max_prompt_chars:
        raise BadInput(f"The prompt is {len(prompt)} characters long; at most {limits.max_prompt_chars} are accepted.")
    negative = _valid_text((request.negative_prompt or "").strip(), "negative prompt")
    if len(negative) > limits.max_prompt_chars:
        raise BadInput(f"The negative prompt is too long ({len(negative)} characters; at most {limits.max_prompt_chars}).")

    seed = request.seed
    seed = -1 if seed is None or seed == "" else _as_int(seed, "Seed")
    if seed == -1:
        seed = secrets.randbelow(MAX_SEED + 1)
    _check_range(seed, 0, MAX_SEED, "Seed")

    default_steps = defaults.get("img2img_steps" if request.is_img2img else "steps", defaults.get("steps", 20))
    steps = _check_range(_as_int(request.steps if request.steps is not None else default_steps, "Steps"), 1, limits.max_steps, "Steps")
    guidance = request.guidance if request.guidance is not None else defaults.get("guidance", 7.5)
    guidance = _check_range(_as_float(guidance, "Guidance"), 0.0, limits.max_guidance, "Guidance")
    batch = _check_range(_as_int(request.batch, "Number of images"), 1, limits.max_batch, "Number of images")

    strength = None
    default_side = int(defaults.get("size", 512))
    if request.is_img2img:
        strength = request.strength if request.strength is not None else defaults.get("strength", 0.6)
        strength = _as_float(strength, "Strength")
        if not 0.0 < strength <= 1.0:
            raise BadInput(f"Strength must be above 0 and at most 1 (got {strength}).")
        if int(steps * strength) < 1:
            raise BadInput(f"With strength {strength}, {steps} steps leave no denoising step; raise the steps to at least {math.ceil(1 / strength)} or the strength.")
        assert request.init_image is not None  # is_img2img
        default_width, default_height = size_for_aspect(request.init_image, default_side, SIZE_MULTIPLE)
    else:
        default_width = default_height = default_side
    width = _check_side(request.width if request.width is not None else default_width, "Width", limits)
    height = _check_side(request.height if request.height is not None else default_height, "Height", limits)

    output_format = check_output_format(request.output_format)
    check_cost(width * height * (int(steps * strength) if strength else steps) * batch, limits)

    return dataclasses.replace(
        request, prompt=prompt, negative_prompt=negative, seed=seed, steps=steps, guidance=guidance,
        width=width, height=height, batch=batch, strength=strength, output_format=output_format,
    )


def resolve_style(request: StyleRequest, limits: Limits) -> StyleRequest:
    """Check every field of a style-transfer request whose images are already opened; raises BadInput."""
    if request.content_image is None:
        raise BadInput("Please provide a content image.")
    if request.style_image is None:
        raise BadInput("Please provide a style image.")
    steps = _check_range(_as_int(request.steps, "Steps"), 1, limits.max_style_steps, "Steps")
    size = _check_range(_as_int(request.size, "Size"), limits.min_side, limits.max_side, "Size")
    style_weight = _check_range(_as_float(request.style_weight, "Style weight"), 0.0, 1e9, "Style weight")
    content_weight = _check_range(_as_float(request.content_weight, "Content weight"), 0.0, 1e9, "Content weight")
    if style_weight == 0 and content_weight == 0:
        raise BadInput("Style weight and content weight cannot both be 0.")
    seed = _check_range(_as_int(request.seed, "Seed"), 0, MAX_SEED, "Seed")
    output_format = check_output_format(request.output_format)
    check_cost(size * size * steps, limits)  # the longest side squared bounds the optimised pixels
    return dataclasses.replace(request, steps=steps, size=size, style_weight=style_weight, content_weight=content_weight, seed=seed, output_format=output_format)


def diffusion_batch_key(request: GenerationRequest, model_key: str) -> tuple:
    """Everything that changes the diffusion computation: requests with equal keys can share one batched call."""
    task = "img2img" if request.is_img2img else "text-to-image"
    return ("diffusion", task, model_key, request.width, request.height, request.steps, request.guidance, request.strength)
