"""``aipic audit flips``: how often an edit changes how a person is perceived.

Runs img2img (or style transfer) over an input set through the same engine as everything else — every output
audited, signed and recorded — and compares each output's perceived attributes with its input's. A flip is
counted only when both readings are real labels (no abstention, a person in both); abstentions are counted
separately, so the denominators are explicit. Rates come with Wilson 95% intervals.
"""

from __future__ import annotations

from pathlib import Path

from .audit import ABSTAIN
from .errors import BadInput
from .report import wilson_interval

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def flip_stats(pairs: list, attribute_set) -> dict:
    """From (input audit, output audit) pairs: per attribute, flips among pairs read on both sides, with the
    transitions and how many pairs could not be compared."""
    out = {}
    for spec in attribute_set.attributes:
        compared, flips, not_compared = 0, 0, 0
        transitions: dict = {}
        for before, after in pairs:
            a = before.attributes.get(spec.name) if before.person_present else None
            b = after.attributes.get(spec.name) if after.person_present else None
            if a is None or b is None or a.label == ABSTAIN or b.label == ABSTAIN:
                not_compared += 1
                continue
            compared += 1
            if a.label != b.label:
                flips += 1
                key = f"{a.label} → {b.label}"
                transitions[key] = transitions.get(key, 0) + 1
        low, high = wilson_interval(flips, compared)
        out[spec.name] = {"compared": compared, "not_compared": not_compared, "flips": flips,
                          "flip_rate": flips / compared if compared else None, "ci_low": low, "ci_high": high, "transitions": transitions}
    return out


def run_flips(pipeline, images: str | Path, task: str = "img2img", prompt: str = "", style: str | None = None, seed: int = 0, out_dir: str | Path | None = None) -> dict:
    from .generate import GenerationRequest
    from .images import open_user_image
    from .style import StyleRequest

    folder = Path(images)
    inputs = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not inputs:
        raise BadInput(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
    if task == "img2img" and not prompt.strip():
        raise BadInput("img2img flips need --prompt (the edit to apply to every input).")
    if task == "style" and not style:
        raise BadInput("style flips need --style (the style image).")
    limit = pipeline.catalog.limits.max_upload_pixels
    pairs, futures = [], []
    for path in inputs:
        before = pipeline.auditor.audit([open_user_image(path, "input image", limit)])[0]
        if task == "img2img":
            job = pipeline.image_to_image_job(GenerationRequest(prompt=prompt, seed=seed), path)
        else:
            job = pipeline.style_job(StyleRequest(content_image=path, style_image=style, seed=seed))
        if out_dir:
            job.output_dir = Path(out_dir) / "images"
        futures.append((path, before, pipeline.submit(job)))
    failures = []
    for path, before, future in futures:
        try:
            after = future.result()[0].audit
        except Exception as error:  # noqa: BLE001 - recorded, the others go on
            failures.append({"input": path.name, "reason": str(error)})
            continue
        pairs.append((before, after))
    return {"task": task, "inputs": len(inputs), "failed": failures, "attributes": flip_stats(pairs, pipeline.attribute_set),
            "attribute_set": pipeline.attribute_set.describe(), "clip_model": pipeline.models.get("clip").describe()}
