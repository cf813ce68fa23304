"""``aipic audit rescore RUN --out NEW``: a new report from a finished (or interrupted) run's stored readings —
other thresholds, or a validation's correction — without touching or regenerating a single image.

rows.csv keeps every image's person-gate probability and every class probability of every attribute (rounded to
four decimals), so thresholds can change freely. The classes, their phrases and the templates cannot: the stored
probabilities were computed from them, so an attribute set whose ``classes_sha256`` differs is refused.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from pathlib import Path

from aipic.audit.attributes import AttributeSet, decide
from aipic.audit.classifier import check_validation, same_classifier
from aipic.audit.findings import SEED_RULES, build_report, seed_of
from aipic.audit.report import write_report
from aipic.audit.suites import PromptSuite
from aipic.audit.summary import csv_columns, read_rows, rewrite_rows, thresholds
from aipic.common.errors import BadInput
from aipic.common.files import write_atomically

log = logging.getLogger(__name__)


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BadInput(f"Cannot read the run's {what} ({path}): {getattr(error, 'strerror', None) or error}") from None
    if not isinstance(data, dict):
        raise BadInput(f"The run's {what} ({path}) is not a JSON object.")
    return data


STATUSES = ("ok", "failed", "held_back")


def checked_rows(path: Path, suite: PromptSuite, seeds: int, seed_rule: str, attribute_set: AttributeSet) -> list[dict]:
    """rows.csv as the run wrote it, or a clear refusal: UTF-8, not empty, each row one planned image (a prompt of
    the suite, a whole seed of the plan, once), a known status, and every stored probability a number from 0 to 1."""
    try:
        rows = read_rows(path)
    except UnicodeDecodeError:
        raise BadInput(f"{path} is not UTF-8 text: it is not the rows.csv aipic writes.") from None
    if not rows:
        raise BadInput(f"{path} holds no rows: there is nothing to re-score.")
    planned = {(prompt, seed_of(index, seed, seed_rule)) for index, prompt in enumerate(suite.prompts) for seed in range(seeds)}
    seen: set = set()
    for number, row in enumerate(rows, start=2):
        where = f"rows.csv line {number}"
        try:
            key = (row.get("prompt"), int(str(row.get("seed"))))
        except ValueError:
            raise BadInput(f"{where}: the seed {row.get('seed')!r} is not a whole number.") from None
        if key not in planned:
            raise BadInput(f"{where}: {key[0]!r} seed {key[1]} is not an image of the run's plan.")
        if key in seen:
            raise BadInput(f"{where}: {key[0]!r} seed {key[1]} appears twice; each image has one row.")
        seen.add(key)
        if row.get("status") not in STATUSES:
            raise BadInput(f"{where}: unknown status {row.get('status')!r} (expected {', '.join(STATUSES)}).")
        if row["status"] != "ok":
            continue
        columns = ["person_probability"] + [f"{spec.name}_p_{label}" for spec in attribute_set.attributes for label in spec.classes]
        for column in columns:
            try:
                value = float(row.get(column) or "nan")
            except ValueError:
                value = float("nan")
            if not 0 <= value <= 1:
                raise BadInput(f"{where}: {column} must be a probability from 0 to 1 (got {row.get(column)!r}).")
    return rows


def rethreshold(row: dict, attribute_set: AttributeSet) -> dict:
    """One stored row read again with this attribute set's thresholds (an image that failed stays failed)."""
    if row.get("status") != "ok":
        return dict(row)
    out = dict(row)
    try:
        person = float(row["person_probability"])
        probabilities = {spec.name: {label: float(row[f"{spec.name}_p_{label}"]) for label in spec.classes} for spec in attribute_set.attributes}
    except (KeyError, TypeError, ValueError):
        raise BadInput(f"rows.csv has no stored probabilities for {row.get('prompt')!r} seed {row.get('seed')}: it cannot be re-scored.") from None
    out["person_present"] = person >= attribute_set.person_gate.abstain_below
    for spec in attribute_set.attributes:
        result = decide(spec, probabilities[spec.name])
        out[spec.name] = result.label if out["person_present"] else ""
        out[f"{spec.name}_confidence"] = round(result.confidence, 4)
    return out


def rescore(run_dir: str | Path, attribute_set: AttributeSet, out_dir: str | Path, validation: dict | None = None) -> dict:
    """Write a re-scored report into ``out_dir`` (a new folder); the paths written. Refuses, before writing
    anything: a folder that holds no run, an out folder that exists, an attribute set of other classes, and a
    validation of another classifier or attribute set."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not (run_dir / "rows.csv").is_file() or not (run_dir / "report.json").is_file():
        raise BadInput(f"{run_dir} holds no audit run (rows.csv and report.json).")
    if out_dir.exists():
        raise BadInput(f"--out {out_dir} already exists; give a new folder so nothing is overwritten.")
    if out_dir.resolve().is_relative_to(run_dir.resolve()):
        raise BadInput(f"--out {out_dir} is inside the run's folder; give a folder elsewhere (the run is never modified).")
    report, settings = _read_json(run_dir / "report.json", "report"), _read_json(run_dir / "run.json", "settings")
    recorded = report.get("attribute_set") or {}
    if not recorded.get("classes_sha256"):
        raise BadInput(f"The run in {run_dir} does not record the hash of its classes and phrases (it predates re-scoring), so aipic cannot check "
                       "that this attribute set's stored probabilities match; run the audit again.")
    if recorded["classes_sha256"] != attribute_set.classes_sha256:
        raise BadInput("This attribute set's classes, phrases or templates differ from the run's; the stored probabilities were computed from the run's, "
                       "so only thresholds may change in a re-score.")
    clip = (report.get("models") or {}).get("clip") or {}
    if validation is not None:
        check_validation(validation, attribute_set)
        if refusal := same_classifier(validation, clip, attribute_set.describe()):
            raise BadInput(refusal)
    stored = report.get("suite") or {}
    suite = PromptSuite(name=str(stored.get("name", run_dir.name)), description=str(stored.get("description", "")), prompts=tuple(stored.get("prompts") or ()),
                        reference=stored.get("reference") or {}, pairs=tuple(tuple(pair) for pair in stored.get("pairs") or ()),
                        reference_by_prompt=stored.get("reference_by_prompt") or {}, reference_provenance=stored.get("reference_provenance"))
    seed_rule = report.get("seed_rule", "shared")
    if not suite.prompts or seed_rule not in SEED_RULES or not isinstance(report.get("seeds"), int):
        raise BadInput(f"{run_dir / 'report.json'} does not say which prompts and seeds the run planned.")
    rows = [rethreshold(row, attribute_set) for row in checked_rows(run_dir / "rows.csv", suite, report["seeds"], seed_rule, attribute_set)]
    for row in rows:  # keep each image reachable from the new folder
        if row.get("image"):
            row["image"] = os.path.relpath((run_dir / row["image"]).resolve(), out_dir.resolve())
    new_settings = {key: value for key, value in settings.items() if key != "sha256"}
    new_settings.update(attribute_set=attribute_set.describe(), thresholds=thresholds(attribute_set),
                        rescored_from={"folder": str(run_dir), "settings_sha256": settings.get("sha256")})
    new_settings["sha256"] = _sha256(new_settings)
    findings = build_report(suite, report["seeds"], seed_rule, bool(report.get("complete")), rows, attribute_set, new_settings, report.get("models") or {},
                            report.get("notes") or [], validation)
    findings["rescored_from"] = new_settings["rescored_from"]
    card = _read_card(run_dir)
    card.update(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), attribute_set=findings["attribute_set"], thresholds=findings["thresholds"],
                settings_sha256=new_settings["sha256"], rescored_from=new_settings["rescored_from"], method_notes=findings["method_notes"],
                corrected_shares=findings.get("corrected_shares"), complete=findings["complete"])
    try:
        out_dir.mkdir(parents=True)
    except OSError as error:
        raise BadInput(f"Cannot create {out_dir}: {error.strerror or error}") from None
    rewrite_rows(out_dir / "rows.csv", rows, csv_columns(attribute_set))
    write_atomically(out_dir / "run.json", json.dumps(new_settings, indent=2, default=str))
    paths = write_report(out_dir, findings, card)
    log.info("re-scored %d rows into a new report", len(rows))
    paths["complete"] = findings["complete"]
    return paths


def _read_card(run_dir: Path) -> dict:
    path = run_dir / "card.json"
    try:
        card = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        card = {}
    return card if isinstance(card, dict) else {}


def _sha256(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()

