"""Text-to-image and img2img with diffusers: requests, validation, and the seeded run."""

import dataclasses
import math
import secrets
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from .catalog import Limits
from .errors import BadInput
from .images import OUTPUT_FORMATS, fit_cover, size_for_aspect

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

    def parameters(self) -> dict:
        """The parameters as recorded in results and manifests (no image data)."""
        fields = dataclasses.asdict(dataclasses.replace(self, init_image=None))
        for name in ("init_image", "prompt", "negative_prompt", "output_format", "private_prompt", "record_upload_names", "terms", "terms_constraint", "rights_statement"):
            fields.pop(name)
        if not self.is_img2img:
            fields.pop("strength")
        return fields


@dataclass
class GeneratedImage:
    pixels: torch.Tensor  # CHW float in [0, 1], on the device that made it
    seed: int

    @property
    def image(self) -> Image.Image:
        return Image.fromarray(to_uint8(self.pixels.unsqueeze(0))[0], "RGB")


def to_uint8(pixels: torch.Tensor):
    """NCHW floats in [0, 1] → NHWC uint8 numpy on the host, rounded exactly as diffusers' PIL output is."""
    return (pixels.float() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()


def _as_int(value, name: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{name} must be a whole number (got {value!r}).") from None
    if number != int(number):
        raise BadInput(f"{name} must be a whole number (got {value!r}).")
    return int(number)


def _as_float(value, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{name} must be a number (got {value!r}).") from None
    if number != number or number in (float("inf"), float("-inf")):
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


def resolve_request(request: GenerationRequest, defaults: dict, limits: Limits) -> GenerationRequest:
    """Fill in model defaults and check every field; raises BadInput with a clear message."""
    prompt = (request.prompt or "").strip()
    if not prompt:
        raise BadInput("Please enter a prompt describing the image.")
    if len(prompt) > limits.max_prompt_chars:
        raise BadInput(f"The prompt is {len(prompt)} characters long; at most {limits.max_prompt_chars} are accepted.")
    negative = (request.negative_prompt or "").strip()
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


def batch_key(request: GenerationRequest, model_key: str) -> tuple:
    """Everything that changes the diffusion computation: requests with equal keys can share one batched call."""
    task = "img2img" if request.is_img2img else "text-to-image"
    return ("diffusion", task, model_key, request.width, request.height, request.steps, request.guidance, request.strength)


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


def run_diffusion_batch(pipe, requests: list[GenerationRequest], on_step=None, pad_to: int | None = None) -> list[list[GeneratedImage]]:
    """One diffusers call for several resolved requests with the same batch key.

    Every image gets its own torch.Generator (image i of a request uses seed + i), as diffusers does for a list
    of generators, so an image does not depend on what it was batched with (within float tolerance on GPU).
    ``pad_to`` fills the batch up with throw-away images so compiled graphs see a few fixed batch sizes.
    ``on_step(step, total)`` is called after each denoising step.
    """
    first = requests[0]
    device = pipe.device
    prompts: list[str] = []
    negatives: list[str] = []
    generators: list[torch.Generator] = []
    images: list[Image.Image | None] = []
    owners: list[tuple[int, int]] = []
    for number, request in enumerate(requests):
        assert request.seed is not None and request.width is not None and request.height is not None  # resolved requests
        init = fit_cover(request.init_image, request.width, request.height) if request.init_image is not None else None
        for index in range(request.batch):
            seed = (request.seed + index) % (MAX_SEED + 1)
            prompts.append(request.prompt)
            negatives.append(request.negative_prompt or "")
            generators.append(torch.Generator(device=device).manual_seed(seed))
            images.append(init)
            owners.append((number, seed))
    for _ in range(max(0, (pad_to or 0) - len(prompts))):
        prompts.append(prompts[0])
        negatives.append(negatives[0])
        generators.append(torch.Generator(device=device).manual_seed(0))
        images.append(images[0])
    kwargs: dict[str, Any] = dict(
        prompt=prompts,
        negative_prompt=negatives if any(negatives) else None,
        num_inference_steps=first.steps,
        guidance_scale=first.guidance,
        generator=generators,
        output_type="pt",
    )
    if first.is_img2img:
        kwargs.update(image=images, strength=first.strength)
    else:
        kwargs.update(width=first.width, height=first.height)
    if on_step is not None:
        def callback(pipeline, step, timestep, tensors):
            on_step(step + 1, pipeline.num_timesteps)
            return tensors

        kwargs["callback_on_step_end"] = callback
    with torch.inference_mode():
        pixels = pipe(**kwargs).images
    results: list[list[GeneratedImage]] = [[] for _ in requests]
    for position, (number, seed) in enumerate(owners):
        results[number].append(GeneratedImage(pixels=pixels[position], seed=seed))
    return results


def run_diffusion(pipe, request: GenerationRequest) -> list[GeneratedImage]:
    """Run one resolved request as one batched call. Image i uses seed + i, so every image can be reproduced alone."""
    return run_diffusion_batch(pipe, [request])[0]
