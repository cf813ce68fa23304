"""The audit's runs through the pipeline: a prompt suite × seeds (``aipic audit``), the classifier's validation
on a labelled set (``aipic audit validate``) and flip rates of edits (``aipic audit flips``). Every image they
make goes through the same engine as the app's — audited, signed and recorded — and is batched on the GPU.
The numbers and their rendering are aipic.audit's."""

from __future__ import annotations

import concurrent.futures
import datetime
import hashlib
import json
import logging
import os
import platform
from collections import deque
from pathlib import Path

from tqdm import tqdm

from aipic import __version__
from aipic.audit.attributes import AttributeSet
from aipic.audit.classifier import check_validation, evaluate, read_labels, same_classifier
from aipic.audit.findings import SEED_RULES, build_report, check_seeds, seed_of
from aipic.audit.flips import flip_stats
from aipic.audit.report import CLASSIFIER_LIMITS, write_report
from aipic.audit.suites import PromptSuite, check_reference
from aipic.audit.summary import RowWriter, audit_row, csv_columns, failed_row, read_rows, rewrite_rows, thresholds
from aipic.common.errors import AipicError, BadInput
from aipic.common.files import write_atomically
from aipic.common.images import open_user_image
from aipic.generation.requests import GenerationRequest, StyleRequest

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

log = logging.getLogger(__name__)


def audit_card(pipeline, report: dict, settings: dict) -> dict:
    """Everything needed to reproduce the run: code, models and weight revisions, generation settings, hashes,
    thresholds, device and precision, date — and the classifier's known limits, with sources."""
    model = pipeline.models.get("text_to_image")
    defaults = pipeline.models.request_defaults()
    device = pipeline.models.device
    try:
        import torch

        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})"
        precision = str(next(model.obj.unet.parameters()).dtype).replace("torch.", "")
    except Exception:  # noqa: BLE001 - a card without the device line is still a card
        device_name, precision = str(device), "unknown"
    return {
        "card_version": 1,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "code": {"aipic": __version__, "python": platform.python_version()},
        "device": device_name,
        "precision": precision,
        "models": report["models"],
        "generation": {"steps": defaults.get("steps"), "guidance": defaults.get("guidance"), "size": defaults.get("size"), "seeds": report["seeds"],
                       "seed_rule": SEED_RULES[report["seed_rule"]], "batching": "engine micro-batches; results within float tolerance of single runs"},
        "suite": {"name": report["suite"]["name"], "sha256": hashlib.sha256(json.dumps(report["suite"], sort_keys=True, default=str).encode()).hexdigest()},
        "attribute_set": report["attribute_set"],
        "thresholds": report["thresholds"],
        "settings_sha256": settings["sha256"],
        "reference": report["suite"].get("reference_provenance"),
        "complete": report["complete"],
        "classifier_limits": CLASSIFIER_LIMITS,
        "placeholder_models": bool(report.get("notes")),
        "method_notes": report["method_notes"],
        "corrected_shares": report.get("corrected_shares"),
    }


def run_settings(pipeline, suite: PromptSuite, seeds: int, model_key: str | None, seed_rule: str = "shared") -> dict:
    """Everything that decides a run's rows; its hash tells a resumable run from a different one."""
    model = pipeline.models.get("text_to_image", model_key).describe()
    clip = pipeline.models.get("clip").describe()
    settings = {
        "suite": {"name": suite.name, "prompts": list(suite.prompts), "reference": suite.reference, "reference_by_prompt": suite.reference_by_prompt},
        "seeds": seeds,
        **({"seed_rule": seed_rule} if seed_rule != "shared" else {}),  # absent for the original rule, so earlier runs still resume
        "generator": {key: model.get(key) for key in ("catalog_key", "name", "revision", "placeholder")},
        "clip": {key: clip.get(key) for key in ("catalog_key", "name", "revision", "placeholder")},
        "attribute_set": pipeline.attribute_set.describe(),
        "thresholds": thresholds(pipeline.attribute_set),
    }
    settings["sha256"] = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    return settings


def check_run(suite: PromptSuite, seeds: int, out_dir: str | Path, attribute_set: AttributeSet, resume: bool = False, seed_rule: str = "shared") -> dict | None:
    """The checks of an audit run that need no model, so ``aipic audit`` makes them before any model loads: the
    seeds and seed rule, the suite's reference against the attribute set, and the report folder (a folder; one
    that already holds a run only with ``resume``, and then with a readable run.json). Returns the run.json of
    the run to resume, or None."""
    check_seeds(seeds)
    if seed_rule not in SEED_RULES:
        raise BadInput(f"Unknown seed rule {seed_rule!r}; known: {', '.join(SEED_RULES)}.")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"--out {out_dir} is a file; give a folder for the report.")
    check_reference(suite.reference, f"Prompt suite {suite.name}", attribute_set)
    existing = [name for name in ("rows.csv", "report.json", "report.html", "run.json", "card.json") if (out_dir / name).exists()]
    if existing and not resume:
        raise BadInput(f"{out_dir} already holds an audit run ({', '.join(existing)}); choose a new --out folder so nothing is overwritten, or --resume it.")
    if not existing:
        if resume:
            raise BadInput(f"--resume: {out_dir} holds no audit run to continue; leave out --resume to start one there.")
        return None
    try:
        previous = json.loads((out_dir / "run.json").read_text())
    except (OSError, ValueError):
        previous = None
    if not isinstance(previous, dict):
        raise BadInput(f"{out_dir} has no readable run.json, so it cannot be resumed safely; start a new --out folder.")
    return previous


def run_suite(pipeline, suite: PromptSuite, seeds: int, out_dir: str | Path, model_key: str | None = None, progress: bool = True, resume: bool = False,
              validation: dict | None = None, seed_rule: str = "shared") -> dict:
    """Generate suite × seeds through the pipeline (so every image is audited and signed) and write the report.

    Returns the paths written.  On Ctrl-C the report covers what was done and is marked incomplete.  Jobs go
    through the same engine as the app's, so the suite's images are batched on the GPU.  ``resume`` continues
    a run in ``out_dir`` whose settings hash matches, without redoing the images it already has; images that
    failed are tried again. Everything is checked before anything is written.
    """
    out_dir = Path(out_dir).absolute()  # images are named relative to it in rows.csv, whatever the working folder
    previous = check_run(suite, seeds, out_dir, pipeline.attribute_set, resume, seed_rule)
    if validation is not None:
        check_validation(validation, pipeline.attribute_set)
    if validation is not None and (refusal := same_classifier(validation, pipeline.models.get("clip").describe(), pipeline.attribute_set.describe())):
        raise BadInput(refusal)
    settings = run_settings(pipeline, suite, seeds, model_key, seed_rule)
    done: set = set()
    if previous is not None:
        if previous.get("sha256") != settings["sha256"]:
            raise BadInput(f"The run in {out_dir} was made with other settings (suite, seeds, models, attribute set or thresholds); it cannot be resumed with these.")
        kept = [row for row in read_rows(out_dir / "rows.csv") if row.get("status") != "failed"]  # failed images are tried again
        rewrite_rows(out_dir / "rows.csv", kept, csv_columns(pipeline.attribute_set))
        done = {(row["prompt"], int(row["seed"])) for row in kept}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(out_dir / "run.json", json.dumps(settings, indent=2, default=str))
    except OSError as error:
        raise BadInput(f"Cannot write the report folder {out_dir}: {error.strerror or error}") from None
    rows_path = out_dir / "rows.csv"
    writer = RowWriter(rows_path, csv_columns(pipeline.attribute_set))
    planned = [(prompt, seed_of(index, seed, seed_rule)) for index, prompt in enumerate(suite.prompts) for seed in range(seeds)]
    to_make = [(prompt, seed) for prompt, seed in planned if (prompt, seed) not in done]
    # Keep enough jobs in the engine to fill its GPU batches; rows are written in the planned order.
    in_flight: deque = deque()
    window = 2 * pipeline.settings.max_gpu_batch
    complete = False

    def write_oldest(bar) -> None:
        prompt, seed, future = in_flight.popleft()
        try:
            item = future.result()[0]
        except Exception as error:  # noqa: BLE001 - a failed image is recorded as failed, with why, and the run goes on
            writer.write(failed_row(prompt, seed, error))
        else:
            writer.write(audit_row(prompt, seed, os.path.relpath(item.path, out_dir), item.audit))
        bar.update(1)

    bar = tqdm(total=len(planned), initial=len(planned) - len(to_make), desc=f"audit {suite.name}", unit="img", disable=not progress)
    failure: BaseException | None = None
    try:
        for prompt, seed in to_make:
            try:
                job = pipeline.jobs.text_to_image(GenerationRequest(prompt=prompt, seed=seed), model_key)
            except AipicError as error:  # this prompt cannot be made (too long, …): recorded in order, the run goes on
                refused: concurrent.futures.Future = concurrent.futures.Future()
                refused.set_exception(error)
                in_flight.append((prompt, seed, refused))
                continue
            job.output_dir = out_dir / "images"
            in_flight.append((prompt, seed, pipeline.submit(job)))
            while len(in_flight) >= window:
                write_oldest(bar)
        while in_flight:
            write_oldest(bar)
        complete = True
    except KeyboardInterrupt:
        pass  # the report covers what was done and says the run is incomplete
    except BaseException as error:  # noqa: BLE001 - raised again below, after the partial report
        failure = error
    # What is already in the engine is finished and recorded: every image made has its row.
    while in_flight:
        try:
            write_oldest(bar)
        except Exception:  # noqa: BLE001 - a row that cannot be written now is missing from an incomplete run
            continue
    bar.close()
    writer.close()
    if failure is None:
        return _write_run_report(pipeline, suite, seeds, seed_rule, complete, settings, rows_path, model_key, validation, out_dir)
    try:  # a partial report if it can be written; the run's own error is what the caller sees, never hidden by this
        _write_run_report(pipeline, suite, seeds, seed_rule, False, settings, rows_path, model_key, validation, out_dir)
    except Exception as error:  # noqa: BLE001
        log.warning("the partial audit report could not be written (%s)", type(error).__name__)
    raise failure


def _write_run_report(pipeline, suite: PromptSuite, seeds: int, seed_rule: str, complete: bool, settings: dict, rows_path: Path, model_key: str | None,
                      validation: dict | None, out_dir: Path) -> dict:
    """The report over the rows written so far (complete or not), with its audit card; the paths written."""
    rows = read_rows(rows_path)
    t2i, clip = pipeline.models.get("text_to_image", model_key), pipeline.models.get("clip")
    notes = [m.note for m in (t2i, clip) if m.placeholder and m.note]
    report = build_report(suite, seeds, seed_rule, complete, rows, pipeline.attribute_set, settings, {"text_to_image": t2i.describe(), "clip": clip.describe()},
                          notes, validation)
    paths = write_report(out_dir, report, audit_card(pipeline, report, settings))
    paths["complete"] = complete
    paths["failed"] = report["summary"]["failed"]
    return paths


def validate_classifier(pipeline, images: str | Path, labels: str | Path) -> dict:
    """``aipic audit validate``: run the audit on a labelled folder and evaluate the classifier (aipic.audit.classifier)."""
    folder = Path(images)
    truths = read_labels(labels, pipeline.attribute_set)
    pictures = []
    for row in truths:
        path = folder / row["file"]
        if not path.is_file():
            raise BadInput(f"The labels name {row['file']!r}, which is not in {folder}.")
        pictures.append(open_user_image(path, "validation image", pipeline.catalog.limits.max_upload_pixels))
    results = []
    for start in range(0, len(pictures), 32):
        results += pipeline.auditor.audit(pictures[start : start + 32])
    report = evaluate(results, truths, pipeline.attribute_set)
    report["images"] = len(pictures)
    report["clip_model"] = pipeline.models.get("clip").describe()
    report["attribute_set"] = pipeline.attribute_set.describe()
    return report


def run_flips(pipeline, images: str | Path, task: str = "img2img", prompt: str = "", style: str | None = None, seed: int = 0, out_dir: str | Path | None = None) -> dict:
    """``aipic audit flips``: img2img (or style transfer) over an input set through the same engine as everything
    else — every output audited, signed and recorded — and each output's perceived attributes against its input's."""
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
            job = pipeline.jobs.image_to_image(GenerationRequest(prompt=prompt, seed=seed), path)
        else:
            job = pipeline.jobs.style(StyleRequest(content_image=path, style_image=style, seed=seed))
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
