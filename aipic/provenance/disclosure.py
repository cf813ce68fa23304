"""A visible disclosure on the picture itself: an optional "AI-generated" label (Settings.visible_label,
AIPIC_VISIBLE_LABEL), drawn before the watermark and the signature, and recorded as an action in the manifest.
What a deployer must still do under the EU AI Act is in the README."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from aipic.provenance.manifest import VISIBLE_LABEL_TEXT


def draw_label(array: np.ndarray, text: str = VISIBLE_LABEL_TEXT) -> np.ndarray:
    """The picture (HWC uint8 RGB) with the label in its bottom-right corner: white on a dark, half-opaque box,
    its size a twentieth of the shorter side (at least 8 px; smaller only when the picture is narrower)."""
    image = Image.fromarray(array, "RGB")
    draw = ImageDraw.Draw(image, "RGBA")
    size = max(8, min(image.size) // 20)
    while True:
        font = ImageFont.load_default(size=size)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        pad = max(2, size // 4)
        width, height = right - left + 2 * pad, bottom - top + 2 * pad
        if width + 2 * pad <= image.width or size <= 4:
            break
        size -= 1
    x, y = max(0, image.width - width - pad), max(0, image.height - height - pad)
    draw.rectangle([x, y, x + width, y + height], fill=(0, 0, 0, 160))
    draw.text((x + pad - left, y + pad - top), text, fill=(255, 255, 255, 255), font=font)
    return np.asarray(image)
