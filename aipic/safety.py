"""The safety filter: every generation is checked before anything is shown, signed or stored.

Two checkers, each a stage of the engine:

* ``SafetyCheckerStage`` (GPU, batched, under the model lock): diffusers' Stable Diffusion safety checker —
  the ecosystem's convention — on the pixels where they are, with its real weights when they are on this
  machine (``aipic download``); offline, a tiny random stand-in that flags nothing, and the app says so.
* ``NudeNetStage`` (CPU pool): NudeNet's detector, which ships its ONNX model and so works offline. NudeNet's
  files disagree on its licence (LICENSE: MIT, pyproject: AGPL-3.0); aipic treats it as AGPL, so it is an
  optional extra (``pip install aipic[nudenet]``) that an operator turns on knowingly (AIPIC_NUDENET=1).

A held-back image is never encoded, signed, stored or shown: its record is marked ``blocked`` and skips the
later stages; the person gets a plain message; audits count it as "held back by the safety filter".
"""

from __future__ import annotations

import logging
import threading

import torch
import torch.nn.functional as F

from .errors import BadInput

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# NudeNet classes that hold an image back (its "covered" and face classes do not).
NUDENET_BLOCKED = frozenset({"FEMALE_BREAST_EXPOSED", "FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "BUTTOCKS_EXPOSED", "ANUS_EXPOSED"})
NUDENET_THRESHOLD = 0.45
HELD_BACK = "held back by the safety filter"


class Blocked(BadInput):
    """Every image of a request was held back by the safety filter."""

    def __init__(self, count: int = 1):
        images = "this image" if count == 1 else f"all {count} images"
        super().__init__(f"The safety filter held back {images}: nothing was shown, signed or kept. Please try a different prompt.")


def clip_input(pixels: torch.Tensor, size: int = 224) -> torch.Tensor:
    """CLIP's preprocessing on the device: shortest side to ``size`` (bicubic), centre crop, normalise."""
    height, width = pixels.shape[-2:]
    scale = size / min(height, width)
    resized = F.interpolate(pixels, size=(max(size, round(height * scale)), max(size, round(width * scale))), mode="bicubic", align_corners=False, antialias=True)
    top, left = (resized.shape[-2] - size) // 2, (resized.shape[-1] - size) // 2
    cropped = resized[..., top : top + size, left : left + size].clamp(0, 1)
    mean = torch.tensor(CLIP_MEAN, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=pixels.device).view(1, 3, 1, 1)
    return (cropped - mean) / std


class SafetyCheckerStage:
    """The Stable Diffusion safety checker over the whole batch, on the GPU."""

    name, gpu = "safety", True

    def __init__(self, checker, buckets: tuple | None = None):
        self._checker = checker  # a callable returning the LoadedModel (loaded on first use)
        self.buckets = buckets  # compiled: the vision tower with CUDA graphs for these padded batch sizes

    def process(self, records) -> None:
        model = self._checker()
        checker = model.obj
        if self.buckets and hasattr(checker, "vision_model"):
            from .models import compile_tower

            compile_tower(checker, "vision_model", self.buckets)
        dtype = next(checker.parameters()).dtype
        device = next(checker.parameters()).device
        groups: dict[tuple, list] = {}
        for record in records:
            groups.setdefault(tuple(record.pixels.shape), []).append(record)
        with torch.no_grad():
            for group in groups.values():
                batch = clip_input(torch.stack([record.pixels for record in group]).to(device, torch.float32)).to(dtype)
                _, flagged = checker.forward_onnx(batch, torch.zeros(len(group), 1, device=device))
                for record, hit in zip(group, flagged.tolist()):
                    if hit:
                        record.blocked = "Stable Diffusion safety checker"


def nudenet_blocks(detections: list[dict], threshold: float = NUDENET_THRESHOLD) -> list[str]:
    """The exposed-nudity classes NudeNet found at or above the threshold (empty: the image passes)."""
    return sorted({d.get("class", "") for d in detections if d.get("class") in NUDENET_BLOCKED and float(d.get("score", 0)) >= threshold})


class NudeNetStage:
    """NudeNet's detector on each image in the CPU pool (optional extra; AGPL — see the module docstring)."""

    name, gpu = "nudenet", False

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
                        from .errors import ConfigError

                        raise ConfigError("AIPIC_NUDENET=1 needs the optional NudeNet extra: pip install 'aipic[nudenet]' (AGPL-3.0; see README).") from None
                    self._detector = NudeDetector()
        return self._detector

    def process(self, records) -> None:
        for record in records:
            found = nudenet_blocks(self.detector.detect(record.array[:, :, ::-1].copy()), self.threshold)  # NudeNet reads BGR, like OpenCV
            if found:
                record.blocked = "NudeNet (" + ", ".join(name.lower().replace("_", " ") for name in found) + ")"
