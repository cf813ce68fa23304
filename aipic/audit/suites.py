"""Prompt suites: the prompts an audit run makes, their seeds, counterfactual pairs and the reference each prompt
is compared with (stated in the suite, or a cited source such as the BLS table: aipic.audit.references)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from aipic.audit.attributes import AttributeSet
from aipic.audit.references import references_by_prompt
from aipic.audit.statistics import interval_width, seeds_for_width
from aipic.common.data import data_file, load_yaml, suite_names
from aipic.common.errors import BadInput


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
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}")  # a suite's name is the default report folder's name


def as_generated(prompt: str) -> str:
    """A prompt as the generator sees it: CLIP's tokenizer lowercases and collapses whitespace, so "A photo of a
    doctor" and "a photo of a  doctor" are the same prompt and the same images."""
    return " ".join(prompt.lower().split())


def load_suite(path: str | Path, attribute_set: AttributeSet | None = None) -> PromptSuite:
    """Read and check a prompt suite; every problem gets a message that says exactly what is wrong."""
    given, path = path, data_file(path)
    if not path.exists() and len(path.parts) == 1:  # `--suite smoke` names a packaged suite
        path = data_file(f"audits/suites/{path.stem}.yaml")
    if not path.exists():
        raise BadInput(f"No prompt suite at {given}. Give a YAML file's path or a packaged suite's name: {', '.join(suite_names())}.")
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise BadInput(f"Cannot read prompt suite {path}: it is not UTF-8 text.") from None
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
    forms = [as_generated(prompt) for prompt in cleaned]
    duplicates = sorted({prompt for prompt, form in zip(cleaned, forms) if forms.count(form) > 1})
    if duplicates:
        raise BadInput(f"{where}: duplicate prompt(s) {', '.join(map(repr, duplicates))} would count the same images twice "
                       "(the generator ignores case and extra spaces).")
    pairs = raw.get("pairs") or []
    if not isinstance(pairs, list) or not all(isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) and p.strip() for p in pair) for pair in pairs):
        raise BadInput(f"{where}: 'pairs' must be a list of [prompt, counterfactual prompt] pairs.")
    by_form = dict(zip(forms, cleaned))
    for a, b in pairs:  # a pair's prompts are made like the others; listed ones are not made twice
        for prompt in (a.strip(), b.strip()):
            by_form.setdefault(as_generated(prompt), prompt)
            if by_form[as_generated(prompt)] not in cleaned:
                cleaned.append(prompt)
    pairs = tuple((by_form[as_generated(a)], by_form[as_generated(b)]) for a, b in pairs)
    if any(as_generated(a) == as_generated(b) for a, b in pairs):
        raise BadInput(f"{where}: a pair compares a prompt with itself.")
    unordered = [frozenset((as_generated(a), as_generated(b))) for a, b in pairs]
    if len(set(unordered)) != len(unordered):
        raise BadInput(f"{where}: a pair is listed twice (in either order); each comparison once.")
    name = str(raw.get("name", path.stem))
    if not SAFE_NAME.fullmatch(name) or ".." in name:
        raise BadInput(f"{where}: the name {name!r} must be letters, digits, spaces, '.', '_' or '-' (it names the report folder).")
    reference = raw.get("reference") or {}
    check_reference(reference, where, attribute_set)
    by_prompt: dict = {}
    provenance = None
    if raw.get("reference_source"):
        if reference:
            raise BadInput(f"{where}: give either 'reference' or 'reference_source', not both.")
        by_prompt, provenance = references_by_prompt(str(raw["reference_source"]), tuple(cleaned), where)
    elif reference:
        provenance = {"source": "stated in the suite", "kind": "parity" if _is_parity(reference) else "stated", "note": "Parity: equal shares, a normative reference, not an observed one." if _is_parity(reference) else ""}
    return PromptSuite(name=name, description=str(raw.get("description", "")), prompts=tuple(cleaned), reference=reference,
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


def sample_size_notes(suite: PromptSuite, seeds: int, target_width: float = 0.2) -> list[str]:
    """Said before a run: what interval widths the seeds give, and the seeds needed for a target width."""
    pooled, per_prompt = interval_width(seeds * len(suite.prompts)), interval_width(seeds)
    notes = [f"{seeds} seed(s) × {len(suite.prompts)} prompt(s): a share's 95% interval is up to {pooled:.0%} wide pooled, "
             f"{per_prompt:.0%} per prompt (before abstentions and images without a person)."]
    if per_prompt > target_width:
        notes.append(f"For per-prompt intervals at most {target_width:.0%} wide, use --seeds {seeds_for_width(target_width)} or more.")
    return notes
