"""Flip rates: how often an edit changes how a person is perceived (``aipic audit flips``; the run is
aipic.pipeline.runs.run_flips). A flip is counted only when both readings are real labels (no abstention, a
person in both); abstentions are counted separately, so the denominators are explicit. Rates come with Wilson
95% intervals.
"""

from __future__ import annotations

from aipic.audit.attributes import ABSTAIN
from aipic.audit.statistics import wilson_interval


def flip_stats(pairs: list, attribute_set) -> dict:
    """From (input audit, output audit) pairs: per attribute, flips among pairs read on both sides, with the
    transitions and how many pairs could not be compared."""
    out = {}
    for spec in attribute_set.attributes:
        compared, flips, not_compared = 0, 0, 0
        transitions: dict = {}
        for before, after in pairs:
            a = before.attributes.get(spec.name) if before.person_present else None
            b = after.attributes.get(spec.name) if after.person_present else None
            if a is None or b is None or a.label == ABSTAIN or b.label == ABSTAIN:
                not_compared += 1
                continue
            compared += 1
            if a.label != b.label:
                flips += 1
                key = f"{a.label} → {b.label}"
                transitions[key] = transitions.get(key, 0) + 1
        low, high = wilson_interval(flips, compared)
        out[spec.name] = {"compared": compared, "not_compared": not_compared, "flips": flips,
                          "flip_rate": flips / compared if compared else None, "ci_low": low, "ci_high": high, "transitions": transitions}
    return out
