"""Text-to-image and img2img with diffusers: one batched, seeded call for resolved requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from aipic.common.images import fit_cover
from aipic.common.tensors import to_uint8
from aipic.generation.requests import GenerationRequest


@dataclass
class GeneratedImage:
    pixels: torch.Tensor  # CHW float in [0, 1], on the device that made it
    seed: int

    @property
    def image(self) -> Image.Image:
        return Image.fromarray(to_uint8(self.pixels.unsqueeze(0))[0], "RGB")


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
        for seed in request.image_seeds:
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
