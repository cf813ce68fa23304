"""What an audit run found, as numbers: one row per image (rows.csv), then shares per attribute label with Wilson
intervals and exact tests against the reference (Holm-corrected), equal-weight pooled shares, cross-tables and
counterfactual pairs. Rows are appended as they are made, so an interrupted run loses nothing.
Rendering is aipic.audit.report."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from aipic.audit.attributes import ABSTAIN, AttributeSet
from aipic.audit.compare import compare_summaries
from aipic.audit.statistics import binomial_p, holm_into, wilson_interval, with_holm
from aipic.common.errors import AipicError, Blocked


def csv_columns(attribute_set: AttributeSet) -> list[str]:
    """One row per image: its status, the person-gate score, and every class probability of every attribute."""
    columns = ["prompt", "seed", "status", "reason", "image", "person_present", "person_probability"]
    for spec in attribute_set.attributes:
        columns += [spec.name, f"{spec.name}_confidence"] + [f"{spec.name}_p_{label}" for label in spec.classes]
    return columns


def audit_row(prompt: str, seed: int, image: str, audit) -> dict:
    row = {"prompt": prompt, "seed": seed, "status": "ok", "reason": "", "image": image, "person_present": audit.person_present, "person_probability": round(audit.person_probability, 4)}
    for name, result in audit.attributes.items():
        row[name] = result.label
        row[f"{name}_confidence"] = round(result.confidence, 4)
    for name, probabilities in (audit.scores or {}).items():
        for label, p in probabilities.items():
            row[f"{name}_p_{label}"] = round(p, 4)
    return row


def failed_row(prompt: str, seed: int, error: BaseException) -> dict:
    if isinstance(error, Blocked):  # held back by the safety filter: counted, never shown or audited
        return {"prompt": prompt, "seed": seed, "status": "held_back", "reason": "held back by the safety filter", "person_present": False}
    reason = str(error) if isinstance(error, AipicError) else type(error).__name__
    return {"prompt": prompt, "seed": seed, "status": "failed", "reason": reason, "person_present": False}


def thresholds(attribute_set: AttributeSet) -> dict:
    """The thresholds the audit used, so a reviewer can re-threshold from rows.csv."""
    gate = attribute_set.person_gate
    return {"person_gate": gate.abstain_below, **{spec.name: {"abstain_below": spec.abstain_below, "min_margin": spec.min_margin} for spec in attribute_set.attributes}}


@dataclass
class AttributeSummary:
    name: str
    title: str
    assessed: int  # images with a person where the audit did not abstain
    abstained: int
    counts: dict
    shares: dict = field(default_factory=dict)  # label -> {share, ci_low, ci_high, reference, gap}


def summarise(rows: list[dict], attribute_set: AttributeSet, reference: dict, reference_by_prompt: dict | None = None) -> dict:
    """Shares per attribute label among assessed images (overall and per prompt).

    With per-prompt references, each prompt is compared with its own, and the pooled comparison uses their
    mean (every prompt has the same number of seeds, so each weighs the same)."""
    reference_by_prompt = reference_by_prompt or {}
    if reference_by_prompt and not reference:
        reference = _mean_reference(list(reference_by_prompt.values()))

    def attribute_summaries(subset: list[dict], reference: dict = reference) -> list[AttributeSummary]:
        out = []
        for spec in attribute_set.attributes:
            person_rows = [row for row in subset if _truthy(row.get("person_present"))]
            labels = [row.get(spec.name) for row in person_rows]
            assessed = [label for label in labels if label and label != ABSTAIN]
            summary = AttributeSummary(spec.name, spec.title, assessed=len(assessed), abstained=len(labels) - len(assessed), counts={label: assessed.count(label) for label in spec.classes})
            with_person = len(labels)
            for label, count in summary.counts.items():
                low, high = wilson_interval(count, len(assessed))
                expected = (reference.get(spec.name) or {}).get(label)
                share = count / len(assessed) if assessed else None
                summary.shares[label] = {
                    "count": count,
                    "share": share,
                    "ci_low": low,
                    "ci_high": high,
                    # How far abstention could move the share: none of the abstained images had this label, or all.
                    "share_if_abstained_none": count / with_person if with_person else None,
                    "share_if_abstained_all": (count + summary.abstained) / with_person if with_person else None,
                    "reference": expected,
                    "gap": (share - expected) if (share is not None and expected is not None) else None,
                    # Exact binomial test of the count against the reference share (Holm-corrected across the report below).
                    "p_reference": binomial_p(count, len(assessed), expected),
                    "small": 0 < len(assessed) < MIN_CELL,
                }
            out.append(summary)
        return out

    failed = [row for row in rows if row.get("status") in ("failed", "held_back")]
    all_prompts = list(dict.fromkeys(row["prompt"] for row in rows))
    rows = [row for row in rows if row.get("status") not in ("failed", "held_back")]
    prompts = list(dict.fromkeys(row["prompt"] for row in rows))

    def denominators(subset_all: list[dict]) -> dict:
        """Generated, failed, no person, and per attribute abstained / assessed: every image accounted for."""
        ok = [row for row in subset_all if row.get("status") not in ("failed", "held_back")]
        person = [row for row in ok if _truthy(row.get("person_present"))]
        held_back = sum(1 for row in subset_all if row.get("status") == "held_back")
        counts: dict = {"planned": len(subset_all), "failed": len(subset_all) - len(ok) - held_back, "generated": len(ok),
                  "safety_filtered": held_back,  # held back by the safety filter: made, but never shown, signed or audited
                  "no_person": len(ok) - len(person), "with_person": len(person)}
        for spec in attribute_set.attributes:
            abstained = sum(1 for row in person if row.get(spec.name) in (ABSTAIN, None, ""))
            counts[spec.name] = {"abstained": abstained, "assessed": len(person) - abstained}
        return counts

    per_prompt = {prompt: attribute_summaries([r for r in rows if r["prompt"] == prompt], reference_by_prompt.get(prompt, reference)) for prompt in prompts}
    overall = attribute_summaries(rows)
    _holm_against_reference([overall, *per_prompt.values()])
    small = [f"{prompt}: {summary.title}" for prompt, summaries in per_prompt.items() for summary in summaries if 0 < summary.assessed < MIN_CELL]
    return {
        "warnings": [f"{len(small)} prompt × attribute cell(s) have fewer than {MIN_CELL} assessed images: too few to support a claim (e.g. {small[0]})."] if small else [],
        "denominators": denominators(failed + rows),
        "denominators_per_prompt": {prompt: denominators([r for r in failed + rows if r["prompt"] == prompt]) for prompt in all_prompts},
        "images": len(rows),
        "failed": sum(1 for row in failed if row.get("status") == "failed"),
        "safety_filtered": sum(1 for row in failed if row.get("status") == "held_back"),
        "failures": [{"prompt": row["prompt"], "seed": row["seed"], "reason": row.get("reason", "")} for row in failed],
        "with_person": sum(_truthy(row.get("person_present")) for row in rows),
        "overall": [summary.__dict__ for summary in overall],
        "pooled_equal_weight": equal_weight(per_prompt),
        "intersections": intersections(rows, attribute_set),
        "per_prompt": {prompt: [summary.__dict__ for summary in summaries] for prompt, summaries in per_prompt.items()},
    }


MIN_CELL = 10  # a cell with fewer assessed images supports no claim


def counterfactual_pairs(summary: dict, pairs: tuple) -> dict:
    """Each pair's prompts side by side: differences with intervals and tests, Holm across all the pairs."""
    rows, tests = [], []
    for first, second in pairs:
        left, right = summary["per_prompt"].get(first), summary["per_prompt"].get(second)
        if left and right:
            pair_rows, pair_tests = compare_summaries(f"{first} vs {second}", left, right)
            rows += pair_rows
            tests += pair_tests
    with_holm(rows, tests)
    return {"method": "Newcombe 95% interval, Fisher exact per label, chi-square per attribute, Holm across the pairs", "comparisons": rows, "attribute_tests": tests}


def _holm_against_reference(groups: list) -> None:
    """Holm's correction across every share-vs-reference test in the report (overall and per prompt)."""
    cells = [cell for summaries in groups for summary in summaries for cell in summary.shares.values() if cell["p_reference"] is not None]
    holm_into(cells, "p_reference", "p_reference_holm")


def equal_weight(per_prompt: dict) -> dict:
    """Pooled shares that weigh every prompt the same (the mean of per-prompt shares), whatever its count of
    assessed images; prompts with none are left out and listed."""
    out = {}
    for index, attribute in enumerate(next(iter(per_prompt.values()), [])):
        shares: dict = {}
        left_out: list = []
        for prompt, summaries in per_prompt.items():
            if summaries[index].assessed:
                for label, cell in summaries[index].shares.items():
                    shares.setdefault(label, []).append(cell["share"])
            else:
                left_out.append(prompt)
        out[attribute.name] = {"shares": {label: sum(v) / len(v) for label, v in shares.items()}, "prompts": len(per_prompt) - len(left_out), "left_out": left_out}
    return out


def intersections(rows: list[dict], attribute_set: AttributeSet) -> dict:
    """Cross-tables of every pair of attributes (and all three together) among images assessed on all of them,
    with a warning for each cell under MIN_CELL images."""
    names = [spec.name for spec in attribute_set.attributes]
    person = [row for row in rows if _truthy(row.get("person_present"))]
    tables = {}
    for size in (2, 3):
        for group in combinations(names, size):
            assessed = [row for row in person if all(row.get(name) not in (None, "", ABSTAIN) for name in group)]
            cells: dict = {}
            for row in assessed:
                key = " × ".join(str(row[name]) for name in group)
                cells[key] = cells.get(key, 0) + 1
            small = sorted(key for key, count in cells.items() if count < MIN_CELL)
            tables[" × ".join(group)] = {
                "assessed": len(assessed),
                "cells": {key: {"count": count, "share": count / len(assessed)} for key, count in sorted(cells.items())},
                "warning": f"{len(small)} cell(s) have fewer than {MIN_CELL} images: too few to support a claim" if small else "",
            }
    return tables


def _mean_reference(references: list[dict]) -> dict:
    out: dict = {}
    for attribute in {name for reference in references for name in reference}:
        labels = {label for reference in references for label in reference.get(attribute, {})}
        out[attribute] = {label: round(sum(r.get(attribute, {}).get(label, 0.0) for r in references) / len(references), 4) for label in labels}
    return out


def _truthy(value) -> bool:
    return value is True or str(value).lower() == "true"


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


class RowWriter:
    """Appends audit rows to a CSV file and flushes each one, so nothing is lost on interruption."""

    def __init__(self, path: Path, columns: list[str]):
        self.path = path
        new = not path.exists() or path.stat().st_size == 0
        self.handle = path.open("a", newline="")
        self.writer = csv.DictWriter(self.handle, fieldnames=columns, extrasaction="ignore")
        if new:
            self.writer.writeheader()
            self.handle.flush()

    def write(self, row: dict) -> None:
        self.writer.writerow(row)
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()
