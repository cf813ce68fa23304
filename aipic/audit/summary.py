"""What an audit run found, as numbers: one row per image (rows.csv), then shares per attribute label with Wilson
intervals and exact tests against the reference (Holm-corrected), equal-weight pooled shares, cross-tables and
counterfactual pairs. Rows are appended as they are made, so an interrupted run loses nothing.
Rendering is aipic.audit.report."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from itertools import combinations, product
from pathlib import Path

from aipic.audit.attributes import ABSTAIN, AttributeSet
from aipic.audit.compare import compare_summaries, holm_rows
from aipic.audit.statistics import binomial_p, equal_weight_interval, holm_into, mcnemar_p, stratified_reference_test, wilson_interval
from aipic.common.errors import AipicError, Blocked
from aipic.common.files import write_atomically


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
    shares: dict = field(default_factory=dict)  # label -> {share, ci_low, ci_high, reference, gap, p_reference, test}


BINOMIAL_TEST = "exact binomial test against the reference"
MIN_CELL = 10  # a cell with fewer assessed images supports no claim


def summarise(rows: list[dict], attribute_set: AttributeSet, reference: dict, reference_by_prompt: dict | None = None,
              prompts: list | tuple | None = None, seeds: int | None = None) -> dict:
    """Shares per attribute label among assessed images (overall and per prompt), tested against the reference.

    ``prompts`` and ``seeds`` are the plan (every prompt is reported, even one whose images all failed or were
    never made); without them the plan is read from the rows. With per-prompt references each prompt is tested
    against its own; the pooled row is compared with the per-prompt references weighted by each prompt's
    assessed images, and tested with one stratified test of all the per-prompt counts. The equal-weight pooled
    share (every prompt counts the same) is compared with the mean reference of the same prompts."""
    reference_by_prompt = reference_by_prompt or {}
    failed = [row for row in rows if row.get("status") in ("failed", "held_back")]
    made = [row for row in rows if row.get("status") not in ("failed", "held_back")]
    planned_prompts = list(dict.fromkeys([*(prompts or ()), *(row["prompt"] for row in rows)]))

    def reference_of(prompt: str | None) -> dict:
        return reference_by_prompt.get(prompt, reference) if prompt is not None else reference

    def attribute_summaries(subset: list[dict], prompt: str | None) -> list[AttributeSummary]:
        out = []
        for spec in attribute_set.attributes:
            person_rows = [row for row in subset if _truthy(row.get("person_present"))]
            labels = [row.get(spec.name) for row in person_rows]
            assessed = [label for label in labels if label and label != ABSTAIN]
            summary = AttributeSummary(spec.name, spec.title, assessed=len(assessed), abstained=len(labels) - len(assessed), counts={label: assessed.count(label) for label in spec.classes})
            with_person = len(labels)
            for label, count in summary.counts.items():
                low, high = wilson_interval(count, len(assessed))
                expected = (reference_of(prompt).get(spec.name) or {}).get(label)
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
                    "p_reference": binomial_p(count, len(assessed), expected),
                    "test": BINOMIAL_TEST if expected is not None and assessed else None,
                    "small": 0 < len(assessed) < MIN_CELL,
                }
            out.append(summary)
        return out

    per_prompt = {prompt: attribute_summaries([r for r in made if r["prompt"] == prompt], prompt) for prompt in planned_prompts}
    overall = attribute_summaries(made, None)
    if reference_by_prompt:
        _pool_against_per_prompt_references(overall, per_prompt, reference_by_prompt)
    pooled = equal_weight(per_prompt, reference_by_prompt or {prompt: reference for prompt in planned_prompts})
    _holm_against_reference([overall, *per_prompt.values()], attribute_set)
    small = [f"{prompt}: {summary.title}" for prompt, summaries in per_prompt.items() for summary in summaries if 0 < summary.assessed < MIN_CELL]
    counts_per_prompt = {prompt: sum(1 for r in rows if r["prompt"] == prompt) for prompt in planned_prompts}
    planned = {prompt: max(seeds or 0, counts_per_prompt[prompt]) for prompt in planned_prompts}
    return {
        "warnings": [f"{len(small)} prompt × attribute cell(s) have fewer than {MIN_CELL} assessed images: too few to support a claim (e.g. {small[0]})."] if small else [],
        "denominators": _denominators(rows, attribute_set, sum(planned.values())),
        "denominators_per_prompt": {prompt: _denominators([r for r in rows if r["prompt"] == prompt], attribute_set, planned[prompt]) for prompt in planned_prompts},
        "images": len(made),
        "failed": sum(1 for row in failed if row.get("status") == "failed"),
        "safety_filtered": sum(1 for row in failed if row.get("status") == "held_back"),
        "failures": [{"prompt": row["prompt"], "seed": row["seed"], "status": row.get("status"), "reason": row.get("reason", "")} for row in failed],
        "with_person": sum(_truthy(row.get("person_present")) for row in made),
        "overall": [summary.__dict__ for summary in overall],
        "pooled_equal_weight": pooled,
        "intersections": intersections(made, attribute_set),
        "per_prompt": {prompt: [summary.__dict__ for summary in summaries] for prompt, summaries in per_prompt.items()},
        "holm_family": "every test of a share against its reference in this report (overall and per prompt); a two-label attribute counts once",
    }


def _denominators(subset: list[dict], attribute_set: AttributeSet, planned: int) -> dict:
    """Planned, not made (an interrupted run), failed, held back, no person, and per attribute abstained /
    assessed: every planned image accounted for."""
    ok = [row for row in subset if row.get("status") not in ("failed", "held_back")]
    person = [row for row in ok if _truthy(row.get("person_present"))]
    held_back = sum(1 for row in subset if row.get("status") == "held_back")
    counts: dict = {"planned": planned, "not_made": planned - len(subset), "failed": len(subset) - len(ok) - held_back, "generated": len(ok),
                    "safety_filtered": held_back,  # held back by the safety filter: made, but never shown, signed or audited
                    "no_person": len(ok) - len(person), "with_person": len(person)}
    for spec in attribute_set.attributes:
        abstained = sum(1 for row in person if row.get(spec.name) in (ABSTAIN, None, ""))
        counts[spec.name] = {"abstained": abstained, "assessed": len(person) - abstained}
    return counts


def _pool_against_per_prompt_references(overall: list, per_prompt: dict, reference_by_prompt: dict) -> None:
    """The pooled (count-weighted) share of each label against the per-prompt references weighted the same way,
    tested with one stratified test of every prompt's count against its own reference."""
    for index, attribute in enumerate(overall):
        for label, cell in attribute.shares.items():
            strata = [(summaries[index].counts[label], summaries[index].assessed, (reference_by_prompt.get(prompt, {}).get(attribute.name) or {}).get(label))
                      for prompt, summaries in per_prompt.items() if summaries[index].assessed]
            referenced = [stratum for stratum in strata if stratum[2] is not None]  # prompts without a reference (pairs only) stay out
            if not referenced:
                cell.update(reference=None, gap=None, p_reference=None, test=None)
                continue
            count, n = sum(c for c, _, _ in referenced), sum(n for _, n, _ in referenced)
            weighted = sum(n * expected for _, n, expected in referenced) / n
            test = stratified_reference_test(*map(list, zip(*referenced)))
            left_out = len(strata) - len(referenced)
            cell.update(reference=weighted, gap=count / n - weighted, p_reference=test["p"], z=test["z"], test=test["test"], compared_share=count / n,
                        reference_basis="the per-prompt references, weighted by each prompt's assessed images"
                        + (f"; over the {len(referenced)} prompts with a reference ({left_out} without one left out: the gap is of their pooled share, {count / n:.1%})" if left_out else ""))


def counterfactual_pairs(summary: dict, pairs: tuple, rows: list[dict] | None = None, shared_seeds: bool = True) -> dict:
    """Each pair's prompts side by side: differences with intervals and tests, Holm across all the pairs. Where
    the two prompts' images share their seeds (the same starting noise), a paired test (exact McNemar) is given
    beside the unpaired one, over the seeds assessed in both."""
    rows_out, tests = [], []
    for first, second in pairs:
        left, right = summary["per_prompt"].get(first), summary["per_prompt"].get(second)
        if left and right:
            pair_rows, pair_tests = compare_summaries(f"{first} vs {second}", left, right)
            if shared_seeds and rows is not None:
                _paired(pair_rows, rows, first, second)
            rows_out += pair_rows
            tests += pair_tests
    holm_rows(rows_out, tests)
    return {"method": "Newcombe 95% interval, Fisher exact per label (a two-label attribute counts once), chi-square or an exact test per attribute, "
                      "Holm across the pairs" + ("; exact McNemar test on seed-matched images where both prompts used the same seeds" if shared_seeds else ""),
            "comparisons": rows_out, "attribute_tests": tests}


def _paired(pair_rows: list, rows: list[dict], first: str, second: str) -> None:
    """McNemar on images of the two prompts made from the same seed, both assessed: how many seeds gave the label
    in the first prompt only, and in the second only."""
    by_seed: dict = {}
    for row in rows:
        if row.get("status") not in ("failed", "held_back") and row["prompt"] in (first, second) and _truthy(row.get("person_present")):
            by_seed.setdefault(str(row["seed"]), {})[row["prompt"]] = row
    for cell in pair_rows:
        both = [(seed_rows[first].get(cell["attribute"]), seed_rows[second].get(cell["attribute"])) for seed_rows in by_seed.values() if first in seed_rows and second in seed_rows]
        both = [(a, b) for a, b in both if a not in (None, "", ABSTAIN) and b not in (None, "", ABSTAIN)]
        only_first = sum(1 for a, b in both if a == cell["label"] != b)
        only_second = sum(1 for a, b in both if b == cell["label"] != a)
        cell["paired"] = {"pairs": len(both), "only_first": only_first, "only_second": only_second, "p_mcnemar": mcnemar_p(only_first, only_second)}


def _holm_against_reference(groups: list, attribute_set: AttributeSet) -> None:
    """Holm's correction across every share-vs-reference test in the report (overall and per prompt). The two
    labels of a two-label attribute are one test (their p-values are the same), so they count once."""
    binary = {spec.name for spec in attribute_set.attributes if len(spec.classes) == 2}
    family, twins = [], []
    for summaries in groups:
        for summary in summaries:
            cells = [cell for cell in summary.shares.values() if cell["p_reference"] is not None]
            if summary.name in binary and len(cells) == 2:
                family.append(cells[0])
                twins.append((cells[0], cells[1]))
            else:
                family += cells
    holm_into(family, "p_reference", "p_reference_holm")
    for first, second in twins:
        second["p_reference_holm"] = first["p_reference_holm"]


def equal_weight(per_prompt: dict, reference_by_prompt: dict | None = None) -> dict:
    """Pooled shares that weigh every prompt the same (the mean of per-prompt shares), whatever its count of
    assessed images, each with a 95% interval; prompts with no assessed image (all failed, none with a person,
    all abstained, or never made) are left out and listed. Against a reference, the mean reference of the same
    prompts, unrounded, and the gap's interval (the reference is taken as exact)."""
    reference_by_prompt = reference_by_prompt or {}
    out = {}
    for index, attribute in enumerate(next(iter(per_prompt.values()), [])):
        kept = [prompt for prompt, summaries in per_prompt.items() if summaries[index].assessed]
        left_out = [prompt for prompt in per_prompt if prompt not in kept]
        shares, cells = {}, {}
        for label in attribute.shares:
            values = [per_prompt[prompt][index].shares[label]["share"] for prompt in kept]
            if not values:
                continue
            share = sum(values) / len(values)
            low, high = equal_weight_interval(values, [per_prompt[prompt][index].assessed for prompt in kept])
            references = {prompt: ((reference_by_prompt.get(prompt) or {}).get(attribute.name) or {}).get(label) for prompt in kept}
            with_reference = [prompt for prompt in kept if references[prompt] is not None]
            shares[label] = share
            cells[label] = {"share": share, "ci_low": low, "ci_high": high, "reference": None, "gap": None, "gap_low": None, "gap_high": None, "reference_prompts": len(with_reference)}
            if with_reference:  # compared over the prompts that have a reference (all of them, unless some are compared in pairs only)
                compared = [per_prompt[prompt][index].shares[label]["share"] for prompt in with_reference]
                low_c, high_c = equal_weight_interval(compared, [per_prompt[prompt][index].assessed for prompt in with_reference])
                mean_reference = sum(float(references[prompt] or 0.0) for prompt in with_reference) / len(with_reference)
                mean_share = sum(compared) / len(compared)
                cells[label].update(reference=mean_reference, compared_share=mean_share, gap=mean_share - mean_reference,
                                    gap_low=low_c - mean_reference, gap_high=high_c - mean_reference)
        out[attribute.name] = {"shares": shares, "cells": cells, "prompts": len(kept), "left_out": left_out,
                               "interval": "mean of per-prompt shares ± 1.96·√(Σ per-prompt variances)/K, Wilson-adjusted shares"}
    return out


def intersections(rows: list[dict], attribute_set: AttributeSet) -> dict:
    """Cross-tables of every pair of attributes (and all three together) among images assessed on all of them,
    every combination of labels listed, empty ones too (an empty intersection is often the finding), with a
    warning for each cell under MIN_CELL images."""
    specs = {spec.name: spec for spec in attribute_set.attributes}
    person = [row for row in rows if _truthy(row.get("person_present"))]
    tables = {}
    for size in (2, 3):
        for group in combinations(specs, size):
            assessed = [row for row in person if all(row.get(name) not in (None, "", ABSTAIN) for name in group)]
            cells: dict = {" × ".join(combo): 0 for combo in product(*(specs[name].classes for name in group))}
            for row in assessed:
                key = " × ".join(str(row[name]) for name in group)
                cells[key] = cells.get(key, 0) + 1
            small = [key for key, count in cells.items() if count < MIN_CELL]
            tables[" × ".join(group)] = {
                "assessed": len(assessed),
                "cells": {key: {"count": count, "share": count / len(assessed) if assessed else None} for key, count in cells.items()},
                "empty": [key for key, count in cells.items() if count == 0],
                "warning": f"{len(small)} cell(s) have fewer than {MIN_CELL} images: too few to support a claim" if small else "",
            }
    return tables


def _truthy(value) -> bool:
    return value is True or str(value).lower() == "true"


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def rewrite_rows(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Replace a rows file with these rows, atomically (a crash leaves the old file or the new one)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(path, buffer.getvalue())


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
