"""Generator families: each turns a batch of compatible jobs (aipic.engine.Job: ``request`` resolved, ``model``
loaded) into pixels. Diffusion runs them as one diffusers call; style transfer is an optimisation per image, so
each style job is its own batch. A new family (a GAN, a VAE with a trained prior) is one more class with
``family`` and ``generate(jobs, on_step)``, handed to the pipeline: AipicPipeline(generators=[...]).
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch

from aipic.generation.diffusion import run_diffusion_batch
from aipic.generation.style import style_transfer_pixels
from aipic.models.loading import image_to_image_pipeline


class Generator(Protocol):
    family: str

    def generate(self, jobs: list, on_step: Callable[[int, int], None]) -> list[list[tuple[torch.Tensor, int, dict]]]:
        """For each job, for each of its images: (CHW float pixels in [0, 1], seed, what the model reports)."""


class DiffusionGenerator:
    """Text-to-image and img2img with diffusers: a batch of compatible jobs is one pipeline call."""

    family = "diffusion"

    def __init__(self, buckets: tuple | None = None):
        self.buckets = tuple(sorted(buckets)) if buckets else None  # pad to these batch sizes (compiled graphs)

    def _pad_to(self, images: int) -> int | None:
        if not self.buckets:
            return None
        return next((bucket for bucket in self.buckets if bucket >= images), None)

    def generate(self, jobs, on_step):
        model = jobs[0].model
        pipe = model.obj
        if jobs[0].request.is_img2img:
            if "img2img" not in model.extra:
                model.extra["img2img"] = image_to_image_pipeline(model.obj)
            pipe = model.extra["img2img"]
        requests = [job.request for job in jobs]
        pad_to = self._pad_to(sum(request.batch for request in requests))
        results = run_diffusion_batch(pipe, requests, on_step=on_step, pad_to=pad_to)
        return [[(generated.pixels, generated.seed, {}) for generated in images] for images in results]


class StyleGenerator:
    """Gatys style transfer: each job is an optimisation of its own."""

    family = "style"

    def generate(self, jobs, on_step):
        out = []
        for job in jobs:
            model = job.model
            pixels, losses = style_transfer_pixels(model.obj, model.extra["layers"], job.request, progress=on_step)
            out.append([(pixels, job.request.seed, {"losses": {key: round(value, 6) for key, value in losses.items()}})])
        return out
