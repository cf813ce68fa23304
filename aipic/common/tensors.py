"""Pixels as torch tensors: the one on-device CLIP preprocessing (the audit's CLIP and the safety checker's both use
it) and the one conversion of generated pixels to host uint8 arrays. Imports torch: only its users import this."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """NCHW floats in [0, 1] → NHWC uint8 numpy on the host, rounded exactly as diffusers' PIL output is."""
    return (pixels.float() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()


def clip_preprocess(batch: torch.Tensor, size: int, crop: tuple[int, int] | None = None, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """torchvision's Resize(size) → CenterCrop(crop) → Normalize(mean, std) on NCHW floats in [0, 1], where they are
    (the GPU, after generation): the shortest side to ``size`` (bicubic with antialiasing, as PIL resizes; the
    two agree within a few grey levels), the centre cut as CenterCrop rounds it, then normalised."""
    crop_h, crop_w = crop or (size, size)
    height, width = batch.shape[-2:]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    resized = F.interpolate(batch, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    top, left = int(round((new_h - crop_h) / 2.0)), int(round((new_w - crop_w) / 2.0))
    cropped = resized[..., top : top + crop_h, left : left + crop_w]
    mean_t = torch.tensor(mean, device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=batch.device, dtype=batch.dtype).view(1, 3, 1, 1)
    return (cropped - mean_t) / std_t
