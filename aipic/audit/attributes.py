"""Attribute sets (audits/attributes.yaml): the perceived attributes an audit reads, their classes and phrases,
the person gate, the prompt templates and the thresholds. Data, not code; a report names the set it used by the
sha256 of its meaning (the parsed classes, phrases, templates and thresholds, not the YAML text: a comment or a
title edit changes nothing), and by ``classes_sha256``, the part that decides the stored class probabilities."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from aipic.common.data import data_dir, load_yaml
from aipic.common.errors import ConfigError

DEFAULT_ATTRIBUTES_PATH = data_dir("audits") / "attributes.yaml"
ABSTAIN = "abstain"


@dataclass(frozen=True)
class AttributeSpec:
    name: str
    title: str
    classes: dict  # label -> list of phrases
    abstain_below: float = 0.5
    min_margin: float = 0.0


@dataclass(frozen=True)
class AttributeSet:
    name: str
    version: int
    sha256: str  # of the meaning: templates, classes, phrases and thresholds
    templates: tuple
    person_gate: AttributeSpec  # classes "person" and "no_person"; abstain_below is the gate threshold
    attributes: tuple  # of AttributeSpec
    classes_sha256: str = ""  # of what decides the class probabilities: templates, classes and phrases

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "classes_sha256": self.classes_sha256}


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _meaning(templates: tuple, gate: AttributeSpec, attributes: tuple) -> tuple[dict, dict]:
    """(everything that decides a reading, the part that decides the probabilities) as plain data."""
    classes = {"templates": list(templates), "person_gate": gate.classes, "attributes": {spec.name: spec.classes for spec in attributes}}
    thresholds = {"person_gate": gate.abstain_below, **{spec.name: [spec.abstain_below, spec.min_margin] for spec in attributes}}
    return {**classes, "thresholds": thresholds}, classes


def _spec(name: str, raw: dict, path: Path) -> AttributeSpec:
    classes = raw.get("classes") or {}
    if len(classes) < 2 or not all(isinstance(phrases, list) and phrases for phrases in classes.values()):
        raise ConfigError(f"Attribute set {path}: {name!r} needs at least two classes, each with a list of phrases.")
    thresholds = {}
    for key, value in (("abstain_below", raw.get("abstain_below", raw.get("threshold", 0.5))), ("min_margin", raw.get("min_margin", 0.0))):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if isinstance(value, bool) or not 0 <= number <= 1:  # NaN fails this too
            raise ConfigError(f"Attribute set {path}: {name!r}'s {key} must be a number from 0 to 1 (got {value!r}).")
        thresholds[key] = number
    return AttributeSpec(
        name=name,
        title=str(raw.get("title", name)),
        classes={str(label): [str(p) for p in phrases] for label, phrases in classes.items()},
        **thresholds,
    )


def load_attribute_set(path: str | Path = DEFAULT_ATTRIBUTES_PATH) -> AttributeSet:
    path = Path(path)
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"Cannot read attribute set {path}: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"Attribute set {path} is not a mapping.")
    templates = tuple(raw.get("templates") or ("a photo of {}.",))
    if not all("{}" in template for template in templates):
        raise ConfigError(f"Attribute set {path}: every template needs a '{{}}' placeholder.")
    gate = _spec("person_gate", raw.get("person_gate") or {}, path)
    if set(gate.classes) != {"person", "no_person"}:
        raise ConfigError(f"Attribute set {path}: person_gate needs exactly the classes 'person' and 'no_person'.")
    attributes = tuple(_spec(name, spec, path) for name, spec in (raw.get("attributes") or {}).items())
    meaning, classes = _meaning(templates, gate, attributes)
    return AttributeSet(
        name=str(raw.get("name", path.stem)),
        version=int(raw.get("version", 1)),
        sha256=_digest(meaning),
        templates=templates,
        person_gate=gate,
        attributes=attributes,
        classes_sha256=_digest(classes),
    )


@dataclass
class AttributeResult:
    name: str
    title: str
    label: str  # a class label, or "abstain"
    confidence: float  # probability of the top class
    probabilities: dict
    reason: str = ""

    @property
    def abstained(self) -> bool:
        return self.label == ABSTAIN


def decide(spec: AttributeSpec, probabilities: dict) -> AttributeResult:
    """Pick the top class, or abstain when it is not clear enough."""
    ranked = sorted(probabilities.items(), key=lambda item: item[1], reverse=True)
    (top, p_top), (_, p_second) = ranked[0], ranked[1]
    reason = ""
    if p_top < spec.abstain_below:
        reason = f"top class {top} at {p_top:.2f} is below {spec.abstain_below:.2f}"
    elif p_top - p_second < spec.min_margin:
        reason = f"top two classes within {p_top - p_second:.2f} (< {spec.min_margin:.2f})"
    return AttributeResult(
        name=spec.name,
        title=spec.title,
        label=ABSTAIN if reason else top,
        confidence=p_top,
        probabilities=dict(probabilities),
        reason=reason,
    )
