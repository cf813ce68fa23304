"""Every label aipic writes or reads in a manifest, in one place (as c2pa-rs keeps its labels), and how aipic's
own assertions are found in whatever namespace the signing deployment used.

aipic's own assertions (``<namespace>.contributions``, ``<namespace>.bias_audit``, ``<namespace>.intended_use``)
use a reverse-domain namespace: the default, ``org.aipic``, is a placeholder this project does not own; a
deployment sets the domain it controls (Settings.assertion_namespace, checked there).
"""

from __future__ import annotations

import re

from aipic.common.settings import DEFAULT_NAMESPACE, NAMESPACE_PATTERN

ACTIONS = "c2pa.actions"
ACTIONS_V2 = "c2pa.actions.v2"
SOFT_BINDING = "c2pa.soft-binding"
TRAINING_MINING = "cawg.training-mining"
LEGACY_TRAINING_MINING = "c2pa.training-mining"  # C2PA 1.x; still found on older files
IDENTITY = "cawg.identity"
CREATOR_ROLE = "cawg.creator"
SCHEMA_ORG_CREATIVE_WORK = "stds.schema-org.CreativeWork"
CONTRIBUTIONS = "contributions"  # aipic's assertion names, under the deployment's namespace
BIAS_AUDIT = "bias_audit"
INTENDED_USE = "intended_use"  # e.g. not for diagnosis (an output of a clinical prompt)

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"


def contributions_label(namespace: str = DEFAULT_NAMESPACE) -> str:
    return f"{namespace}.{CONTRIBUTIONS}"


def audit_label(namespace: str = DEFAULT_NAMESPACE) -> str:
    return f"{namespace}.{BIAS_AUDIT}"


def intended_use_label(namespace: str = DEFAULT_NAMESPACE) -> str:
    return f"{namespace}.{INTENDED_USE}"


def find_assertion(assertions: dict, name: str, required_key: str | None = None, namespace: str = DEFAULT_NAMESPACE):
    """aipic's assertion ``name`` ("contributions", "bias_audit") in whatever namespace the signing deployment
    used: this deployment's, the default, else any reverse-domain label ending in ``.name`` whose data has the
    shape aipic writes (``required_key``)."""
    for label in (f"{namespace}.{name}", f"{DEFAULT_NAMESPACE}.{name}"):
        if isinstance(assertions.get(label), dict):
            return assertions[label]
    for label, data in assertions.items():
        if isinstance(label, str) and re.fullmatch(NAMESPACE_PATTERN + re.escape("." + name), label) and isinstance(data, dict) and (required_key is None or required_key in data):
            return data
    return None
