"""A run's findings: report.json assembled from its rows and its plan, the same way for a run that just made its
images (aipic.pipeline.runs) and for a rescore of stored rows (aipic.audit.rescore). Numbers only; rendering is
aipic.audit.report."""

from __future__ import annotations

from aipic.audit.attributes import AttributeSet
from aipic.audit.classifier import CORRECTION_METHOD, INTERVAL_METHOD, correct_summary
from aipic.audit.report import CLASSIFIER_LIMITS
from aipic.audit.suites import PromptSuite, sample_size_notes
from aipic.audit.summary import counterfactual_pairs, summarise, thresholds
from aipic.common.errors import BadInput

MAX_SEEDS = 10_000  # per prompt; also the distance between two prompts' seeds with per-prompt seeds
SEED_RULES = {
    "shared": "prompt p, seed s for s in 0..seeds-1: every prompt uses the same seeds, so images of different prompts share their starting noise",
    "per-prompt": f"prompt number k (from 0), seed k·{MAX_SEEDS} + s for s in 0..seeds-1: no two prompts share a seed",
}


def check_seeds(seeds) -> None:
    """Seeds per prompt: a whole number from 1 to MAX_SEEDS, checked before anything is written."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise BadInput(f"--seeds must be a whole number from 1 to {MAX_SEEDS:,} (got {seeds!r}).")


def seed_of(prompt_index: int, seed: int, rule: str) -> int:
    return seed + (prompt_index * MAX_SEEDS if rule == "per-prompt" else 0)


def notes_on_method(suite: PromptSuite, seed_rule: str) -> list[str]:
    """What a reviewer must know to read the tests right: shared starting noise, and a reference taken as exact."""
    notes = []
    if seed_rule == "shared" and len(suite.prompts) > 1:
        paired = " Counterfactual pairs are also tested as pairs (exact McNemar over seed-matched images)." if suite.pairs else ""
        notes.append("Every prompt used the same seeds, so images of different prompts share their starting noise: they are not independent "
                     f"samples across prompts.{paired} Use --seed-rule per-prompt for independent prompts.")
    provenance = suite.reference_provenance or {}
    kind = provenance.get("kind")
    if kind == "proxy" and "Labor Statistics" in str(provenance.get("source")):
        notes.append("The reference is treated as exact: the Current Population Survey publishes standard errors for its estimates, and they are not "
                     "carried into the tests, so a gap of a few points may be within the survey's own uncertainty.")
    elif kind and kind not in ("parity", "stated"):
        notes.append("The reference is treated as exact: it is a count over one named corpus, and how that corpus was assembled is its own "
                     "uncertainty, which the tests do not carry.")
    return notes


def build_report(suite: PromptSuite, seeds: int, seed_rule: str, complete: bool, rows: list[dict], attribute_set: AttributeSet, settings: dict,
                 models: dict, model_notes: list[str], validation: dict | None) -> dict:
    """report.json's content over the rows written so far (complete or not)."""
    summary = summarise(rows, attribute_set, suite.reference, suite.reference_by_prompt, prompts=suite.prompts, seeds=seeds)
    report = {
        "suite": {"name": suite.name, "description": suite.description, "prompts": list(suite.prompts), "pairs": [list(pair) for pair in suite.pairs],
                  "reference": suite.reference, "reference_by_prompt": suite.reference_by_prompt, "reference_provenance": suite.reference_provenance},
        "seeds": seeds,
        "seed_rule": seed_rule,
        "planned_images": seeds * len(suite.prompts),
        "complete": complete,
        "attribute_set": attribute_set.describe(),
        "thresholds": thresholds(attribute_set),
        "settings_sha256": settings["sha256"],
        "sample_size": sample_size_notes(suite, seeds),
        "method_notes": notes_on_method(suite, seed_rule),
        "models": models,
        "notes": model_notes,
        "summary": summary,
        "classifier_limits": CLASSIFIER_LIMITS,
    }
    if suite.pairs:
        report["counterfactual_pairs"] = counterfactual_pairs(summary, suite.pairs, rows, shared_seeds=seed_rule == "shared")
    if validation is not None:
        report["corrected_shares"] = {"method": CORRECTION_METHOD, "interval": INTERVAL_METHOD, "validation_images": validation.get("images"),
                                      "validation_clip_model": validation.get("clip_model"), "attributes": correct_summary(summary, validation)}
    return report
