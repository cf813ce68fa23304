"""Attribute sets (audits/attributes.yaml): the perceived attributes an audit reads, their classes and phrases,
the person gate, the prompt templates and the thresholds. Data, not code; a report names the set it used by its
sha256."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

from aipic.common.data import data_dir
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
    sha256: str
    templates: tuple
    person_gate: AttributeSpec  # classes "person" and "no_person"; abstain_below is the gate threshold
    attributes: tuple  # of AttributeSpec

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


def _spec(name: str, raw: dict, path: Path) -> AttributeSpec:
    classes = raw.get("classes") or {}
    if len(classes) < 2 or not all(isinstance(phrases, list) and phrases for phrases in classes.values()):
        raise ConfigError(f"Attribute set {path}: {name!r} needs at least two classes, each with a list of phrases.")
    return AttributeSpec(
        name=name,
        title=str(raw.get("title", name)),
        classes={str(label): [str(p) for p in phrases] for label, phrases in classes.items()},
        abstain_below=float(raw.get("abstain_below", raw.get("threshold", 0.5))),
        min_margin=float(raw.get("min_margin", 0.0)),
    )


def load_attribute_set(path: str | Path = DEFAULT_ATTRIBUTES_PATH) -> AttributeSet:
    path = Path(path)
    try:
        text = path.read_text()
        raw = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as error:
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
    return AttributeSet(
        name=str(raw.get("name", path.stem)),
        version=int(raw.get("version", 1)),
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        templates=templates,
        person_gate=gate,
        attributes=attributes,
    )
