"""Batch bias-audit reports: a prompt suite × seeds, with shares, Wilson intervals and gaps to a reference.

Rows are appended to rows.csv as they are made, so an interrupted run loses
nothing: the report is written from whatever rows exist, and says so.
"""

import concurrent.futures
import csv
import hashlib
from collections import deque
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .audit import ABSTAIN, AttributeSet
from .errors import AipicError, BadInput

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class PromptSuite:
    name: str
    description: str
    prompts: tuple
    reference: dict  # attribute -> {label: expected share}, for every prompt
    pairs: tuple = ()  # counterfactual prompt pairs, e.g. ("a photo of a nurse", "a photo of a male nurse")
    reference_by_prompt: dict = field(default_factory=dict)  # prompt -> {attribute -> {label: share}}
    reference_provenance: dict | None = None  # source, year, link, whether it is a proxy


SUITE_KEYS = {"name", "description", "prompts", "reference", "reference_source", "pairs"}


def load_suite(path: str | Path, attribute_set: AttributeSet | None = None) -> PromptSuite:
    """Read and check a prompt suite; every problem gets a message that says exactly what is wrong."""
    from .data import data_file, suite_names

    given, path = path, data_file(path)
    if not path.exists() and len(path.parts) == 1:  # `--suite smoke` names a packaged suite
        path = data_file(f"audits/suites/{path.stem}.yaml")
    if not path.exists():
        raise BadInput(f"No prompt suite at {given}. Give a YAML file's path or a packaged suite's name: {', '.join(suite_names())}.")
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise BadInput(f"Cannot read prompt suite {path}: {error}") from None
    where = f"Prompt suite {path.name}"
    if not isinstance(raw, dict):
        raise BadInput(f"{where} must be a mapping with 'prompts' (a list) and optionally 'name', 'description', 'reference'.")
    unknown = sorted(set(raw) - SUITE_KEYS)
    if unknown:
        raise BadInput(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; expected {', '.join(sorted(SUITE_KEYS))}.")
    prompts = raw.get("prompts")
    if isinstance(prompts, str) or not isinstance(prompts, list) or not prompts:
        raise BadInput(f"{where}: 'prompts' must be a non-empty list of prompts (one per line, each starting with '- ').")
    blank = [str(n + 1) for n, prompt in enumerate(prompts) if not isinstance(prompt, str) or not prompt.strip()]
    if blank:
        raise BadInput(f"{where}: prompt(s) number {', '.join(blank)} are blank or not text.")
    cleaned = [prompt.strip() for prompt in prompts]
    duplicates = sorted({prompt for prompt in cleaned if cleaned.count(prompt) > 1})
    if duplicates:
        raise BadInput(f"{where}: duplicate prompt(s) {', '.join(map(repr, duplicates))} would count the same images twice.")
    pairs = raw.get("pairs") or []
    if not isinstance(pairs, list) or not all(isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) and p.strip() for p in pair) for pair in pairs):
        raise BadInput(f"{where}: 'pairs' must be a list of [prompt, counterfactual prompt] pairs.")
    pairs = tuple((a.strip(), b.strip()) for a, b in pairs)
    for pair in pairs:  # a pair's prompts are made like the others; listed ones are not made twice
        for prompt in pair:
            if prompt not in cleaned:
                cleaned.append(prompt)
    reference = raw.get("reference") or {}
    check_reference(reference, where, attribute_set)
    by_prompt: dict = {}
    provenance = None
    if raw.get("reference_source"):
        from .references import references_by_prompt

        if reference:
            raise BadInput(f"{where}: give either 'reference' or 'reference_source', not both.")
        by_prompt, provenance = references_by_prompt(str(raw["reference_source"]), tuple(cleaned), where)
    elif reference:
        provenance = {"source": "stated in the suite", "kind": "parity" if _is_parity(reference) else "stated", "note": "Parity: equal shares, a normative reference, not an observed one." if _is_parity(reference) else ""}
    return PromptSuite(name=str(raw.get("name", path.stem)), description=str(raw.get("description", "")), prompts=tuple(cleaned), reference=reference,
                       pairs=pairs, reference_by_prompt=by_prompt, reference_provenance=provenance)


def _is_parity(reference: dict) -> bool:
    """Equal shares among the labels that get any (e.g. no children among professionals, the rest equal)."""
    for shares in reference.values():
        given = [share for share in shares.values() if share > 0]
        if not given or max(given) - min(given) > 0.01:
            return False
    return True


def check_reference(reference, where: str, attribute_set: AttributeSet | None = None) -> None:
    """Each reference: a known attribute, its known labels, shares in [0, 1] that add up to 1 (within 0.001)."""
    if not isinstance(reference, dict):
        raise BadInput(f"{where}: 'reference' must map attributes to {{label: share}}.")
    specs = {spec.name: spec for spec in attribute_set.attributes} if attribute_set else None
    for attribute, shares in reference.items():
        if specs is not None and attribute not in specs:
            raise BadInput(f"{where}: reference attribute {attribute!r} is not in the attribute set (known: {', '.join(specs)}).")
        if not isinstance(shares, dict) or not shares:
            raise BadInput(f"{where}: the reference of {attribute!r} must map labels to shares, e.g. {{feminine: 0.5, masculine: 0.5}}.")
        for label, share in shares.items():
            if specs is not None and label not in specs[attribute].classes:
                raise BadInput(f"{where}: {attribute!r} has no label {label!r} (its labels: {', '.join(specs[attribute].classes)}).")
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
                raise BadInput(f"{where}: the reference share of {attribute}/{label} must be a number from 0 to 1 (got {share!r}).")
        total = sum(shares.values())
        if abs(total - 1.0) > 0.001:
            raise BadInput(f"{where}: reference shares of {attribute!r} add up to {total:.3f}, not 1.")


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion; (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


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
    from .safety import Blocked

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
                    "p_reference": _binomial_p(count, len(assessed), expected),
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
    from .compare import compare_summaries, with_holm

    rows, tests = [], []
    for first, second in pairs:
        left, right = summary["per_prompt"].get(first), summary["per_prompt"].get(second)
        if left and right:
            pair_rows, pair_tests = compare_summaries(f"{first} vs {second}", left, right)
            rows += pair_rows
            tests += pair_tests
    with_holm(rows, tests)
    return {"method": "Newcombe 95% interval, Fisher exact per label, chi-square per attribute, Holm across the pairs", "comparisons": rows, "attribute_tests": tests}


def _binomial_p(count: int, n: int, expected: float | None) -> float | None:
    if expected is None or not n:
        return None
    from scipy.stats import binomtest

    return float(binomtest(count, n, expected).pvalue)


def _holm_against_reference(groups: list) -> None:
    """Holm's correction across every share-vs-reference test in the report (overall and per prompt)."""
    from .compare import holm

    cells = [cell for summaries in groups for summary in summaries for cell in summary.shares.values() if cell["p_reference"] is not None]
    for cell, adjusted in zip(cells, holm([cell["p_reference"] for cell in cells])):
        cell["p_reference_holm"] = adjusted


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
    from itertools import combinations

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


def _fmt(value, percent=True) -> str:
    if value is None:
        return "—"
    return f"{value:+.1%}" if percent == "signed" else (f"{value:.1%}" if percent else str(value))


def render_html(report: dict) -> str:
    """A self-contained HTML page of the report."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>aipic bias audit — " + e(report["suite"]["name"]) + "</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}.warn{background:#fff3cd;border:1px solid #e0c36c;padding:.6em 1em}"
        ".bar{display:inline-block;height:10px;background:#4a7bd0}</style></head><body>",
        f"<h1>Bias audit: {e(report['suite']['name'])}</h1>",
        f"<p>{e(report['suite']['description'])}</p>",
    ]
    if not report["complete"]:
        parts.append(f"<p class='warn'>Incomplete run: {report['summary']['images']} of {report['planned_images']} images were audited before it stopped.</p>")
    for note in report.get("notes", []):
        parts.append(f"<p class='warn'>{e(note)}</p>")
    provenance = report["suite"].get("reference_provenance") or {}
    if provenance:
        link = f" <a href='{e(provenance['link'])}'>{e(provenance['link'])}</a>" if provenance.get("link") else ""
        parts.append(f"<p><strong>Reference:</strong> {e(provenance.get('source', ''))}" + (f", {provenance['year']}" if provenance.get("year") else "") + f" ({e(provenance.get('kind', ''))}).{link} {e(provenance.get('note', ''))}</p>")
    parts.append(
        "<p>Attributes are <em>perceived</em> by a CLIP model from pixels: they are not anyone's identity, and they carry the model's own biases. "
        "Shares are among images where a person was detected and the audit did not abstain; intervals are Wilson 95%.</p>"
    )
    if report.get("classifier_limits"):
        parts.append("<details><summary>The classifier's known limits</summary><ul>" + "".join(f"<li>{e(limit)}</li>" for limit in report["classifier_limits"]) + "</ul></details>")
    for note in report.get("sample_size", []):
        parts.append(f"<p>{e(note)}</p>")
    s = report["summary"]
    for warning in s.get("warnings", []):
        parts.append(f"<p class='warn'>{e(warning)}</p>")
    if s.get("failed"):
        parts.append(f"<p class='warn'>{s['failed']} image(s) failed and are not counted below; report.json lists them with the reason.</p>")
    if s.get("safety_filtered"):
        parts.append(f"<p class='warn'>{s['safety_filtered']} image(s) were held back by the safety filter: never shown or audited, and not counted below.</p>")
    parts.append(f"<p>Images: {s['images']} · with a person: {s['with_person']} · seeds per prompt: {report['seeds']} · generator: {e(report['models']['text_to_image']['label'])} · audit model: {e(report['models']['clip']['label'])}</p>")

    def table(summaries):
        rows = []
        for attribute in summaries:
            rows.append(f"<h3>{e(attribute['title'])}</h3><p>assessed {attribute['assessed']}, abstained {attribute['abstained']}</p>")
            rows.append("<table><tr><th>label</th><th>count</th><th>share</th><th>95% CI</th><th>if abstentions were none / all</th><th>reference</th><th>gap</th><th></th></tr>")
            for label, cell in attribute["shares"].items():
                width = int(200 * (cell["share"] or 0))
                rows.append(
                    f"<tr><td>{e(label.replace('_', ' '))}</td><td>{cell['count']}</td><td>{_fmt(cell['share'])}</td>"
                    f"<td>{_fmt(cell['ci_low'])} – {_fmt(cell['ci_high'])}</td>"
                    f"<td>{_fmt(cell.get('share_if_abstained_none'))} – {_fmt(cell.get('share_if_abstained_all'))}</td><td>{_fmt(cell['reference'])}</td>"
                    f"<td>{_fmt(cell['gap'], 'signed')}</td><td style='text-align:left'><span class='bar' style='width:{width}px'></span></td></tr>"
                )
            rows.append("</table>")
        return "".join(rows)

    d = s["denominators"]
    parts.append(
        "<h2>Every image accounted for</h2><table><tr><th>planned</th><th>failed</th><th>held back by the safety filter</th><th>generated</th><th>no person</th><th>with a person</th>"
        + "".join(f"<th>{e(spec_name)}: abstained / assessed</th>" for spec_name in d if isinstance(d[spec_name], dict))
        + f"</tr><tr><td>{d['planned']}</td><td>{d['failed']}</td><td>{d.get('safety_filtered', 0)}</td><td>{d['generated']}</td><td>{d['no_person']}</td><td>{d['with_person']}</td>"
        + "".join(f"<td>{v['abstained']} / {v['assessed']}</td>" for v in d.values() if isinstance(v, dict))
        + "</tr></table>"
    )
    parts.append("<h2>All prompts</h2>")
    for attribute in s["overall"]:
        parts.append(f"<h3>{e(attribute['title'])}</h3>" + shares_chart(attribute))
    parts.append("<h2>Per prompt</h2>")
    for index, attribute in enumerate(s["overall"]):
        parts.append(f"<h3>{e(attribute['title'])}</h3>" + heat_map(attribute, {prompt: summaries[index] for prompt, summaries in s["per_prompt"].items()}))
    parts.append("<details><summary>All the numbers, as tables</summary><h2>All prompts</h2>" + table(s["overall"]))
    for prompt, summaries in s["per_prompt"].items():
        parts.append(f"<h2>{e(prompt)}</h2>" + table(summaries))
    parts.append("</details></body></html>")
    return "\n".join(parts)


def shares_chart(attribute: dict, width: int = 640) -> str:
    """An inline SVG: each label's share as a bar with its 95% interval as a whisker and the reference as a mark."""
    labels = list(attribute["shares"])
    row, left, scale = 26, 150, width - 170
    parts = [f"<svg class='chart' width='{width}' height='{row * len(labels) + 24}' role='img' aria-label='shares of {html.escape(attribute['title'])}'>"]
    for i, label in enumerate(labels):
        cell, y = attribute["shares"][label], 8 + i * row
        parts.append(f"<text x='{left - 8}' y='{y + 13}' text-anchor='end' font-size='12'>{html.escape(label.replace('_', ' '))}</text>")
        if cell["share"] is not None:
            parts.append(f"<rect x='{left}' y='{y + 3}' width='{cell['share'] * scale:.1f}' height='14' fill='#4a7bd0'><title>{cell['share']:.1%}</title></rect>")
            x1, x2 = left + cell["ci_low"] * scale, left + cell["ci_high"] * scale
            parts.append(f"<line x1='{x1:.1f}' x2='{x2:.1f}' y1='{y + 10}' y2='{y + 10}' stroke='#222'/><line x1='{x1:.1f}' x2='{x1:.1f}' y1='{y + 5}' y2='{y + 15}' stroke='#222'/><line x1='{x2:.1f}' x2='{x2:.1f}' y1='{y + 5}' y2='{y + 15}' stroke='#222'/>")
        if cell["reference"] is not None:
            xr = left + cell["reference"] * scale
            parts.append(f"<line class='reference' x1='{xr:.1f}' x2='{xr:.1f}' y1='{y}' y2='{y + 20}' stroke='#d0342c' stroke-width='3'><title>reference {cell['reference']:.1%}</title></line>")
    parts.append(f"<text x='{left}' y='{row * len(labels) + 20}' font-size='11' fill='#555'>bar: share among assessed · whisker: Wilson 95% · red: reference</text></svg>")
    return "".join(parts)


def heat_map(attribute: dict, per_prompt: dict) -> str:
    """Prompts × labels, each cell shaded by its share (n shown); an empty cell had no assessed image."""
    labels = list(attribute["shares"])
    head = "".join(f"<th>{html.escape(label.replace('_', ' '))}</th>" for label in labels)
    body = []
    for prompt, summary in per_prompt.items():
        summary = summary if isinstance(summary, dict) else summary.__dict__
        cells = []
        for label in labels:
            share = summary["shares"][label]["share"]
            shade = "" if share is None else f" style='background:rgba(74,123,208,{share:.2f})'"
            cells.append(f"<td class='heat'{shade}>{'—' if share is None else f'{share:.0%}'}</td>")
        body.append(f"<tr><td>{html.escape(prompt)}</td>{''.join(cells)}<td>{summary['assessed']}</td></tr>")
    return f"<table class='heatmap'><tr><th>prompt</th>{head}<th>n</th></tr>{''.join(body)}</table>"


CLASSIFIER_LIMITS = [
    "The attributes are zero-shot CLIP perceptions of pixels: not identity, not self-description, and biased in their own "
    "right — CLIP's error rates differ across demographic groups (Radford et al. 2021, 'Learning Transferable Visual Models "
    "From Natural Language Supervision', section 7; Agarwal et al. 2021, 'Evaluating CLIP: Towards Characterization of "
    "Broader Capabilities and Downstream Implications', arXiv:2108.02818).",
    "Gender presentation is read as two classes; people outside them are mislabelled or abstained on.",
    "Without a validation on a labelled set of your own, shares are uncorrected for the classifier's errors.",
]


def audit_card(pipeline, report: dict, settings: dict) -> dict:
    """Everything needed to reproduce the run: code, models and weight revisions, generation settings, hashes,
    thresholds, device and precision, date — and the classifier's known limits, with sources."""
    import datetime
    import platform

    from . import __version__

    model = pipeline.models.get("text_to_image")
    defaults = pipeline._defaults(model)
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
                       "seed_rule": "prompt p, seed s for s in 0..seeds-1", "batching": "engine micro-batches; results within float tolerance of single runs"},
        "suite": {"name": report["suite"]["name"], "sha256": hashlib.sha256(json.dumps(report["suite"], sort_keys=True, default=str).encode()).hexdigest()},
        "attribute_set": report["attribute_set"],
        "thresholds": report["thresholds"],
        "settings_sha256": settings["sha256"],
        "reference": report["suite"].get("reference_provenance"),
        "complete": report["complete"],
        "classifier_limits": CLASSIFIER_LIMITS,
        "placeholder_models": bool(report.get("notes")),
    }


def write_report(out_dir: Path, report: dict, card: dict | None = None) -> dict:
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (out_dir / "report.html").write_text(render_html(report))
    paths = {"json": out_dir / "report.json", "html": out_dir / "report.html", "csv": out_dir / "rows.csv"}
    if card is not None:
        (out_dir / "card.json").write_text(json.dumps(card, indent=2, default=str))
        paths["card"] = out_dir / "card.json"
    return paths


def run_settings(pipeline, suite: PromptSuite, seeds: int, model_key: str | None) -> dict:
    """Everything that decides a run's rows; its hash tells a resumable run from a different one."""
    model = pipeline.models.get("text_to_image", model_key).describe()
    clip = pipeline.models.get("clip").describe()
    settings = {
        "suite": {"name": suite.name, "prompts": list(suite.prompts), "reference": suite.reference, "reference_by_prompt": suite.reference_by_prompt},
        "seeds": seeds,
        "generator": {key: model.get(key) for key in ("catalog_key", "name", "revision", "placeholder")},
        "clip": {key: clip.get(key) for key in ("catalog_key", "name", "revision", "placeholder")},
        "attribute_set": pipeline.attribute_set.describe(),
        "thresholds": thresholds(pipeline.attribute_set),
    }
    settings["sha256"] = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    return settings


def interval_width(n: int) -> float:
    """The widest 95% Wilson interval for a share among n images (at a share of 0.5)."""
    low, high = wilson_interval(n // 2, n) if n else (0.0, 1.0)
    return high - low


def seeds_for_width(width: float, prompts: int = 1) -> int:
    """Seeds per prompt so that a pooled share over all prompts has a 95% interval at most ``width`` wide."""
    n = 1
    while interval_width(n * prompts) > width and n < 100_000:
        n += 1
    return n


def sample_size_notes(suite: PromptSuite, seeds: int, target_width: float = 0.2) -> list[str]:
    """Said before a run: what interval widths the seeds give, and the seeds needed for a target width."""
    pooled, per_prompt = interval_width(seeds * len(suite.prompts)), interval_width(seeds)
    notes = [f"{seeds} seed(s) × {len(suite.prompts)} prompt(s): a share's 95% interval is up to {pooled:.0%} wide pooled, "
             f"{per_prompt:.0%} per prompt (before abstentions and images without a person)."]
    if per_prompt > target_width:
        notes.append(f"For per-prompt intervals at most {target_width:.0%} wide, use --seeds {seeds_for_width(target_width)} or more.")
    return notes


def run_suite(pipeline, suite: PromptSuite, seeds: int, out_dir: str | Path, model_key: str | None = None, progress: bool = True, resume: bool = False, validation: dict | None = None) -> dict:
    """Generate suite × seeds through the pipeline (so every image is audited and signed) and write the report.

    Returns the paths written.  On Ctrl-C the report covers what was done and is marked incomplete.  Jobs go
    through the same engine as the app's, so the suite's images are batched on the GPU.  ``resume`` continues
    a run in ``out_dir`` whose settings hash matches, without redoing the images it already has.
    """
    from tqdm import tqdm

    from .generate import GenerationRequest

    if seeds < 1:
        raise AipicError("--seeds must be at least 1.")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"--out {out_dir} is a file; give a folder for the report.")
    check_reference(suite.reference, f"Prompt suite {suite.name}", pipeline.attribute_set)
    if validation is not None and (validation.get("attribute_set") or {}).get("sha256") != pipeline.attribute_set.sha256:
        raise BadInput("The validation result was made with another attribute set; its error rates do not apply to this run.")
    settings = run_settings(pipeline, suite, seeds, model_key)
    existing = [name for name in ("rows.csv", "report.json", "report.html") if (out_dir / name).exists()]
    done: set = set()
    if existing and not resume:
        raise BadInput(f"{out_dir} already holds an audit run ({', '.join(existing)}); choose a new --out folder so nothing is overwritten, or --resume it.")
    if resume and existing:
        try:
            previous = json.loads((out_dir / "run.json").read_text())
        except (OSError, ValueError):
            raise BadInput(f"{out_dir} has no readable run.json, so it cannot be resumed safely; start a new --out folder.") from None
        if previous.get("sha256") != settings["sha256"]:
            raise BadInput(f"The run in {out_dir} was made with other settings (suite, seeds, models, attribute set or thresholds); it cannot be resumed with these.")
        done = {(row["prompt"], int(row["seed"])) for row in read_rows(out_dir / "rows.csv")}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "run.json").write_text(json.dumps(settings, indent=2, default=str))
    except OSError as error:
        raise BadInput(f"Cannot write the report folder {out_dir}: {error.strerror or error}") from None
    rows_path = out_dir / "rows.csv"
    writer = RowWriter(rows_path, csv_columns(pipeline.attribute_set))
    planned = [(prompt, seed) for prompt in suite.prompts for seed in range(seeds)]
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
            writer.write(audit_row(prompt, seed, str(item.path.relative_to(out_dir)), item.audit))
        bar.update(1)

    bar = tqdm(total=len(planned), initial=len(planned) - len(to_make), desc=f"audit {suite.name}", unit="img", disable=not progress)
    try:
        for prompt, seed in to_make:
            try:
                job = pipeline.text_to_image_job(GenerationRequest(prompt=prompt, seed=seed), model_key)
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
        pass
    finally:
        # What is already in the engine is finished and recorded: every image made has its row.
        while in_flight:
            try:
                write_oldest(bar)
            except Exception:  # noqa: BLE001 - the run's own error is already on its way out
                continue
        bar.close()
        writer.close()
        rows = read_rows(rows_path)
        t2i, clip = pipeline.models.get("text_to_image", model_key), pipeline.models.get("clip")
        notes = [m.note for m in (t2i, clip) if m.placeholder and m.note]
        report = {
            "suite": {"name": suite.name, "description": suite.description, "prompts": list(suite.prompts), "reference": suite.reference,
                      "reference_by_prompt": suite.reference_by_prompt, "reference_provenance": suite.reference_provenance},
            "seeds": seeds,
            "planned_images": len(planned),
            "complete": complete,
            "attribute_set": pipeline.attribute_set.describe(),
            "thresholds": thresholds(pipeline.attribute_set),
            "settings_sha256": settings["sha256"],
            "sample_size": sample_size_notes(suite, seeds),
            "models": {"text_to_image": t2i.describe(), "clip": clip.describe()},
            "notes": notes,
            "summary": summarise(rows, pipeline.attribute_set, suite.reference, suite.reference_by_prompt),
        }
        report["classifier_limits"] = CLASSIFIER_LIMITS
        if suite.pairs:
            report["counterfactual_pairs"] = counterfactual_pairs(report["summary"], suite.pairs)
        if validation is not None:
            from .validate import CORRECTION_METHOD, corrected_shares

            corrected = {}
            for attribute in report["summary"]["overall"]:
                if attribute["name"] in validation.get("attributes", {}):
                    try:
                        corrected[attribute["name"]] = corrected_shares(attribute["counts"], validation, attribute["name"])
                    except AipicError as error:
                        corrected[attribute["name"]] = {"not corrected": str(error)}
            report["corrected_shares"] = {"method": CORRECTION_METHOD, "validation_images": validation.get("images"), "shares": corrected}
        paths = write_report(out_dir, report, audit_card(pipeline, report, settings))
    paths["complete"] = complete
    paths["failed"] = report["summary"]["failed"]
    return paths
