"""``aipic audit validate``: how good is the classifier on a labelled image set a reviewer brings?

Per attribute: the confusion matrix (true label × reading, abstentions included), accuracy per true group,
abstain rate per group, and calibration (expected calibration error over 10 confidence bins). The result can
correct a report's shares for the measured misclassification by **confusion-matrix inversion** (solving
observed = Mᵀ · true, with M the row-normalised confusion among non-abstained readings) — a plain
method-of-moments correction, not the CLEAM estimator.

With tiny random-weight CLIP this proves the arithmetic only; its tests check numbers computed by hand.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from aipic.audit.attributes import ABSTAIN
from aipic.common.errors import BadInput

CORRECTION_METHOD = "confusion-matrix inversion (method of moments; not CLEAM)"


def read_labels(path: str | Path, attribute_set) -> list[dict]:
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise BadInput(f"Cannot read the labels file {path}: {error.strerror or error}") from None
    if not rows or "file" not in rows[0]:
        raise BadInput(f"{path.name} needs a 'file' column and one column per attribute ({', '.join(s.name for s in attribute_set.attributes)}).")
    specs = {spec.name: spec for spec in attribute_set.attributes}
    used = [column for column in rows[0] if column in specs]
    if not used:
        raise BadInput(f"{path.name} has no attribute column; expected one of {', '.join(specs)}.")
    for number, row in enumerate(rows, start=2):
        for column in used:
            value = (row.get(column) or "").strip()
            if value and value not in specs[column].classes:
                raise BadInput(f"{path.name} line {number}: {value!r} is not a label of {column} ({', '.join(specs[column].classes)}).")
    return rows


def evaluate(results: list, truths: list[dict], attribute_set) -> dict:
    """The validation numbers from audit results and the true labels (same order)."""
    out = {}
    for spec in attribute_set.attributes:
        labels = list(spec.classes)
        pairs = [(truth.get(spec.name, "").strip(), result) for truth, result in zip(truths, results) if truth.get(spec.name, "").strip()]
        if not pairs:
            continue
        readings = [result.attributes[spec.name].label if result.person_present and spec.name in result.attributes else "no_person" for _, result in pairs]
        columns = labels + [ABSTAIN, "no_person"]
        confusion = {true: {reading: 0 for reading in columns} for true in labels}
        for (true, _), reading in zip(pairs, readings):
            confusion[true][reading] += 1
        per_group = {}
        for true in labels:
            row = confusion[true]
            total = sum(row.values())
            read = sum(row[label] for label in labels)
            per_group[true] = {
                "n": total,
                "accuracy": row[true] / read if read else None,  # among images it gave a label to
                "abstain_rate": (row[ABSTAIN] + row["no_person"]) / total if total else None,
            }
        confidences = [(result.attributes[spec.name].confidence, reading == true) for (true, result), reading in zip(pairs, readings) if reading in labels]
        out[spec.name] = {
            "labels": labels,
            "confusion": confusion,
            "per_group": per_group,
            "accuracy": sum(confusion[t][t] for t in labels) / max(1, sum(confusion[t][r] for t in labels for r in labels)),
            "ece": expected_calibration_error(confidences),
            "n": len(pairs),
        }
    return {"attributes": out, "correction_method": CORRECTION_METHOD}


def expected_calibration_error(pairs: list[tuple[float, bool]], bins: int = 10) -> float | None:
    """Σ_b (n_b / n) · |accuracy_b − mean confidence_b| over equal-width confidence bins."""
    if not pairs:
        return None
    total, error = len(pairs), 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        members = [(c, ok) for c, ok in pairs if (low < c <= high) or (b == 0 and c == 0)]
        if members:
            error += len(members) / total * abs(sum(ok for _, ok in members) / len(members) - sum(c for c, _ in members) / len(members))
    return error


def misclassification_matrix(validation: dict, attribute: str) -> tuple[list, np.ndarray]:
    """M[i][j] = P(read as j | truly i), among images given a label."""
    entry = validation["attributes"][attribute]
    labels = entry["labels"]
    matrix = np.array([[entry["confusion"][true][read] for read in labels] for true in labels], dtype=float)
    sums = matrix.sum(axis=1, keepdims=True)
    if (sums == 0).any():
        raise BadInput(f"The validation set has no labelled reading for some {attribute} group; it cannot correct that attribute.")
    return labels, matrix / sums


def corrected_shares(observed: dict, validation: dict, attribute: str) -> dict:
    """Shares corrected for misclassification: solve observed = Mᵀ · true, clip to [0, 1], renormalise."""
    labels, matrix = misclassification_matrix(validation, attribute)
    total = sum(observed.get(label, 0) for label in labels)
    if not total:
        return {label: None for label in labels}
    q = np.array([observed.get(label, 0) / total for label in labels])
    try:
        p = np.linalg.solve(matrix.T, q)
    except np.linalg.LinAlgError:
        raise BadInput(f"The {attribute} confusion matrix cannot be inverted (the classifier cannot tell some groups apart); no correction is possible.") from None
    p = np.clip(p, 0, 1)
    p = p / p.sum() if p.sum() else p
    return {label: float(value) for label, value in zip(labels, p)}


def load_validation(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise BadInput(f"Cannot read the validation result {path}: {getattr(error, 'strerror', None) or error}") from None
