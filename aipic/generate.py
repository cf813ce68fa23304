"""Text-to-image and img2img with diffusers: requests, validation, and the seeded run."""

import dataclasses
import math
import secrets
from dataclasses import dataclass

import torch
from PIL import Image

from .catalog import Limits
from .errors import AipicError
from .images import fit_cover, size_for_aspect

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

    @property
    def is_img2img(self) -> bool:
        return self.init_image is not None

    def parameters(self) -> dict:
        """The parameters as recorded in results and manifests (no image data)."""
        fields = dataclasses.asdict(dataclasses.replace(self, init_image=None))
        for name in ("init_image", "prompt", "negative_prompt"):
            fields.pop(name)
        if not self.is_img2img:
            fields.pop("strength")
        return fields


@dataclass
class GeneratedImage:
    image: Image.Image
    seed: int


def _as_int(value, name: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AipicError(f"{name} must be a whole number (got {value!r}).") from None
    if number != int(number):
        raise AipicError(f"{name} must be a whole number (got {value!r}).")
    return int(number)


def _as_float(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AipicError(f"{name} must be a number (got {value!r}).") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise AipicError(f"{name} must be a finite number (got {value!r}).")
    return number


def _check_range(value, low, high, name: str):
    if not low <= value <= high:
        raise AipicError(f"{name} must be between {low} and {high} (got {value}).")
    return value


def _check_side(value, name: str, limits: Limits) -> int:
    value = _check_range(_as_int(value, name), limits.min_side, limits.max_side, name)
    if value % SIZE_MULTIPLE:
        lower = value - value % SIZE_MULTIPLE
        raise AipicError(f"{name} must be a multiple of {SIZE_MULTIPLE} (got {value}); try {lower} or {lower + SIZE_MULTIPLE}.")
    return value


def resolve_request(request: GenerationRequest, defaults: dict, limits: Limits) -> GenerationRequest:
    """Fill in model defaults and check every field; raises AipicError with a clear message."""
    prompt = (request.prompt or "").strip()
    if not prompt:
        raise AipicError("Please enter a prompt describing the image.")
    if len(prompt) > limits.max_prompt_chars:
        raise AipicError(f"The prompt is {len(prompt)} characters long; at most {limits.max_prompt_chars} are accepted.")
    negative = (request.negative_prompt or "").strip()
    if len(negative) > limits.max_prompt_chars:
        raise AipicError(f"The negative prompt is too long ({len(negative)} characters; at most {limits.max_prompt_chars}).")

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
            raise AipicError(f"Strength must be above 0 and at most 1 (got {strength}).")
        if int(steps * strength) < 1:
            raise AipicError(f"With strength {strength}, {steps} steps leave no denoising step; raise the steps to at least {math.ceil(1 / strength)} or the strength.")
        default_width, default_height = size_for_aspect(request.init_image, default_side, SIZE_MULTIPLE)
    else:
        default_width = default_height = default_side
    width = _check_side(request.width if request.width is not None else default_width, "Width", limits)
    height = _check_side(request.height if request.height is not None else default_height, "Height", limits)

    return dataclasses.replace(
        request, prompt=prompt, negative_prompt=negative, seed=seed, steps=steps, guidance=guidance,
        width=width, height=height, batch=batch, strength=strength,
    )


def truncation_warnings(tokenizer, request: GenerationRequest) -> list[str]:
    """Tell the person when CLIP's 77-token limit cuts a prompt: those words are ignored by the model."""
    warnings = []
    for name, text in (("prompt", request.prompt), ("negative prompt", request.negative_prompt)):
        if not text:
            continue
        ids = tokenizer(text, truncation=False).input_ids
        limit = tokenizer.model_max_length
        if len(ids) > limit:
            kept = tokenizer.decode(ids[1 : limit - 1]).strip()
            warnings.append(
                f"The {name} is {len(ids)} tokens; the model reads only {limit}, so everything after "
                f"\u201c…{kept[-40:]}\u201d was ignored."
            )
    return warnings


def run_diffusion(pipe, request: GenerationRequest) -> list[GeneratedImage]:
    """Run a resolved request. Image i uses seed + i, so every image can be reproduced alone."""
    device = pipe.device
    outputs = []
    for index in range(request.batch):
        seed = (request.seed + index) % (MAX_SEED + 1)
        generator = torch.Generator(device=device).manual_seed(seed)
        kwargs = dict(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            generator=generator,
        )
        if request.is_img2img:
            kwargs.update(image=fit_cover(request.init_image, request.width, request.height), strength=request.strength)
        else:
            kwargs.update(width=request.width, height=request.height)
        with torch.inference_mode():
            image = pipe(**kwargs).images[0]
        outputs.append(GeneratedImage(image=image, seed=seed))
    return outputs
