"""The model catalog (models/catalog.yaml) and the request limits it sets."""

from dataclasses import dataclass
from pathlib import Path

import yaml

from aipic.common.data import data_dir, load_yaml
from aipic.common.errors import BadInput, ConfigError

DEFAULT_CATALOG_PATH = data_dir("models") / "catalog.yaml"
SECTIONS = ("text_to_image", "clip", "style", "safety")
TINY_RANDOM = "tiny-random"


@dataclass(frozen=True)
class ModelEntry:
    section: str
    key: str
    source: str
    label: str
    pretrained: str | None = None
    defaults: dict | None = None
    tiny_decoder: str | None = None  # an AutoencoderTiny (TAESD) to decode with: much faster, slightly softer images
    license: dict | None = None  # as the model card publishes it: name, spdx, url, commercial_use, conditions
    placeholder_license: dict | None = None  # the licence of this section's tiny random stand-in

    @property
    def is_tiny_random(self) -> bool:
        return self.source == TINY_RANDOM


@dataclass(frozen=True)
class Limits:
    max_side: int = 1024
    min_side: int = 64
    max_steps: int = 100
    max_batch: int = 4
    max_guidance: float = 30.0
    max_prompt_chars: int = 2000
    max_upload_pixels: int = 4096 * 4096
    max_style_steps: int = 500
    # A cost budget per request, in million pixel-steps (width × height × steps × images; style transfer:
    # its pixels × optimisation steps): one request may not hold the GPU for everyone else.
    max_cost_mpx_steps: float = 120.0
    max_seconds: float = 300.0  # a request still running after this is stopped and told so


@dataclass(frozen=True)
class Catalog:
    entries: dict  # section -> {key: ModelEntry}
    defaults: dict  # section -> key
    limits: Limits

    def entry(self, section: str, key: str | None = None) -> ModelEntry:
        if section not in self.entries:
            raise ConfigError(f"Unknown model section {section!r}; expected one of {', '.join(SECTIONS)}.")
        key = key or self.defaults[section]
        models = self.entries[section]
        if key not in models:
            raise BadInput(f"Unknown {section} model {key!r}. Known: {', '.join(models)}.")
        return models[key]


COMMERCIAL_USE_VALUES = ("allowed", "conditional", "not_allowed", "unclear")


def _licence(path, section: str, key: str, licence) -> dict:
    """Every model states its licence: a catalog without one is a configuration error, not a silent gap."""
    if not isinstance(licence, dict) or not licence.get("name"):
        raise ConfigError(f"Model catalog {path}: {section} model {key!r} needs a license (name, commercial_use, and url/spdx where there is one).")
    use = licence.get("commercial_use", "unclear")
    if use not in COMMERCIAL_USE_VALUES:
        raise ConfigError(f"Model catalog {path}: {section} model {key!r}: commercial_use must be one of {', '.join(COMMERCIAL_USE_VALUES)}.")
    return {"name": str(licence["name"]), **{k: licence[k] for k in ("spdx", "url") if licence.get(k)}, "commercial_use": use, "conditions": [str(c) for c in licence.get("conditions") or []]}


def load_catalog(path: str | Path = DEFAULT_CATALOG_PATH) -> Catalog:
    path = Path(path)
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"Cannot read model catalog {path}: {error}") from None
    entries, defaults = {}, {}
    for section in SECTIONS:
        block = raw.get(section) or {}
        models = block.get("models") or {}
        if TINY_RANDOM not in models:
            raise ConfigError(f"Model catalog {path}: section {section!r} needs a {TINY_RANDOM!r} entry.")
        entries[section] = {
            key: ModelEntry(
                section=section,
                key=key,
                source=str(spec["source"]),
                label=str(spec.get("label", key)),
                pretrained=spec.get("pretrained"),
                defaults=dict(spec.get("defaults") or {}),
                tiny_decoder=spec.get("tiny_decoder"),
                license=_licence(path, section, key, spec.get("license")),
                placeholder_license=_licence(path, section, TINY_RANDOM, models[TINY_RANDOM].get("license")),
            )
            for key, spec in models.items()
        }
        defaults[section] = block.get("default", TINY_RANDOM)
        if defaults[section] not in entries[section]:
            raise ConfigError(f"Model catalog {path}: default {defaults[section]!r} of {section!r} is not listed.")
    limits = Limits(**(raw.get("limits") or {}))
    return Catalog(entries=entries, defaults=defaults, limits=limits)
