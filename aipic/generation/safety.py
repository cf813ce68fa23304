"""The safety filter's two checkers (each runs as a stage of the engine: aipic.pipeline.stages):

* diffusers' Stable Diffusion safety checker — the ecosystem's convention — on the pixels where they are (the
  GPU, batched), with its real weights when they are on this machine (``aipic download``); offline, a tiny random
  stand-in that flags nothing, and the app says so.
* NudeNet's detector (CPU), which ships its ONNX model and so works offline. NudeNet's files disagree on its
  licence (LICENSE: MIT, pyproject: AGPL-3.0); aipic treats it as AGPL, so it is an optional extra
  (``pip install aipic[nudenet]``) that an operator turns on knowingly (AIPIC_NUDENET=1).

A held-back image is never encoded, signed, stored or shown; the person gets a plain message; audits count it
as "held back by the safety filter".
"""

from __future__ import annotations

import logging
import threading

import torch

from aipic.common.errors import ConfigError
from aipic.common.tensors import clip_preprocess

log = logging.getLogger(__name__)
# NudeNet classes that hold an image back (its "covered" and face classes do not).
NUDENET_BLOCKED = frozenset({"FEMALE_BREAST_EXPOSED", "FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "BUTTOCKS_EXPOSED", "ANUS_EXPOSED"})
NUDENET_THRESHOLD = 0.45


def checker_flags(checker, pixels: list[torch.Tensor]) -> list[bool]:
    """The Stable Diffusion safety checker's verdict on each picture (CHW floats in [0, 1], where they are): one
    pass per picture size, CLIP's preprocessing on the device."""
    dtype = next(checker.parameters()).dtype
    device = next(checker.parameters()).device
    flags: list = [False] * len(pixels)
    groups: dict[tuple, list[int]] = {}
    for index, picture in enumerate(pixels):
        groups.setdefault(tuple(picture.shape), []).append(index)
    with torch.no_grad():
        for indices in groups.values():
            batch = clip_preprocess(torch.stack([pixels[i] for i in indices]).to(device, torch.float32), 224).to(dtype)
            _, flagged = checker.forward_onnx(batch, torch.zeros(len(indices), 1, device=device))
            for index, hit in zip(indices, flagged.tolist()):
                flags[index] = bool(hit)
    return flags


def nudenet_blocks(detections: list[dict], threshold: float = NUDENET_THRESHOLD) -> list[str]:
    """The exposed-nudity classes NudeNet found at or above the threshold (empty: the image passes)."""
    return sorted({d.get("class", "") for d in detections if d.get("class") in NUDENET_BLOCKED and float(d.get("score", 0)) >= threshold})


class NudeNet:
    """NudeNet's detector, loaded on first use (optional extra; AGPL — see the module docstring)."""

    def __init__(self, threshold: float = NUDENET_THRESHOLD):
        self.threshold = threshold
        self._detector = None
        self._lock = threading.Lock()

    @property
    def detector(self):
        if self._detector is None:
            with self._lock:
                if self._detector is None:
                    try:
                        from nudenet import NudeDetector
                    except ImportError:
                        raise ConfigError("AIPIC_NUDENET=1 needs the optional NudeNet extra: pip install 'aipic[nudenet]' (AGPL-3.0; see README).") from None
                    self._detector = NudeDetector()
        return self._detector

    def exposed(self, array) -> list[str]:
        """The exposed-nudity classes found in an HWC uint8 RGB picture (empty: it passes)."""
        return nudenet_blocks(self.detector.detect(array[:, :, ::-1].copy()), self.threshold)  # NudeNet reads BGR, like OpenCV
