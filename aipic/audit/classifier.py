"""``aipic audit validate``: how good is the classifier on a labelled image set a reviewer brings?

Per attribute: the confusion matrix (true label × reading, abstentions included), accuracy per true group,
abstain rate per group, and calibration (expected calibration error over 10 confidence bins). The result can
correct a report's shares for the measured misclassification by **confusion-matrix inversion** (solving
observed = Mᵀ · true, with M the row-normalised confusion over every reading, abstentions and person-gate misses
included) — a plain method-of-moments correction, not the CLEAM estimator — with a bootstrap interval over both
the validation set and the audit's images, and flags when the solution is infeasible or ill-conditioned.

With tiny random-weight CLIP this proves the arithmetic only; its tests check numbers computed by hand.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from aipic.audit.attributes import ABSTAIN
from aipic.common.errors import BadInput

CORRECTION_METHOD = ("confusion-matrix inversion (method of moments over every reading: each label, abstained and no person; not CLEAM). "
                     "It assumes every audited image shows a person, so an image read as having none counts as a missed person")


def read_labels(path: str | Path, attribute_set) -> list[dict]:
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: a spreadsheet's byte-order mark is not part of the first column's name
            rows = list(csv.DictReader(handle))
    except UnicodeDecodeError:
        raise BadInput(f"The labels file {path.name} is not UTF-8 text; save it as UTF-8 CSV.") from None
    except OSError as error:
        raise BadInput(f"Cannot read the labels file {path}: {error.strerror or error}") from None
    if not rows or "file" not in rows[0]:
        raise BadInput(f"{path.name} needs a 'file' column and one column per attribute ({', '.join(s.name for s in attribute_set.attributes)}).")
    specs = {spec.name: spec for spec in attribute_set.attributes}
    used = [column for column in rows[0] if column in specs]
    if not used:
        raise BadInput(f"{path.name} has no attribute column; expected one of {', '.join(specs)}.")
    seen: dict = {}
    for number, row in enumerate(rows, start=2):
        name = (row.get("file") or "").strip()
        if not name or Path(name).name != name or name in (".", ".."):
            raise BadInput(f"{path.name} line {number}: 'file' must name a picture inside the images folder, without a path (got {name!r}).")
        if name in seen:
            raise BadInput(f"{path.name} line {number}: {name!r} is listed again (first on line {seen[name]}); each picture once.")
        seen[name] = number
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
            "accuracy": (sum(confusion[t][t] for t in labels) / labelled) if (labelled := sum(confusion[t][r] for t in labels for r in labels)) else None,
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


READINGS_EXTRA = (ABSTAIN, "no_person")  # the readings beside the labels: the audit abstained, or saw no person
ILL_CONDITIONED = 10.0  # above this condition number, noise in the readings is amplified up to that many times
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240601
INTERVAL_METHOD = (f"95% percentile interval of {BOOTSTRAP_RESAMPLES:,} smoothed bootstrap draws (Dirichlet(counts + ½)) of the validation set's "
                   "confusion rows and of the audit's readings together, so it carries both samples' error; each draw's solution projected onto valid shares")


def misclassification_matrix(validation: dict, attribute: str) -> tuple[list, list, np.ndarray, np.ndarray]:
    """(labels, readings, M, n): M[i][j] = P(read as j | truly i) over every reading (the labels, abstained, no
    person), and n the validation images per true group."""
    entry = validation["attributes"][attribute]
    labels = list(entry["labels"])
    readings = labels + list(READINGS_EXTRA)
    counts = np.array([[entry["confusion"][true].get(read, 0) for read in readings] for true in labels], dtype=float)
    sums = counts.sum(axis=1)
    if (sums == 0).any():
        missing = [label for label, n in zip(labels, sums) if n == 0]
        raise BadInput(f"The validation set has no labelled image of {', '.join(missing)} for {attribute}; it cannot correct that attribute.")
    return labels, readings, counts / sums[:, None], sums


def _solve(matrices: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Least squares of Mᵀ·p = q with Σp = 1 (exact when Mᵀ is square and invertible), for a stack of (M, q)."""
    a = np.swapaxes(matrices, -1, -2)  # readings × labels
    size = a.shape[-1]
    kkt = np.zeros((*a.shape[:-2], size + 1, size + 1))
    kkt[..., :size, :size] = a.swapaxes(-1, -2) @ a
    kkt[..., :size, size] = 1
    kkt[..., size, :size] = 1
    rhs = np.concatenate([(a.swapaxes(-1, -2) @ observed[..., None])[..., 0], np.ones((*a.shape[:-2], 1))], axis=-1)
    return (np.linalg.pinv(kkt) @ rhs[..., None])[..., :size, 0]


def _project_to_simplex(p: np.ndarray) -> np.ndarray:
    """The nearest valid shares (each ≥ 0, summing to 1) to each row, in Euclidean distance."""
    ordered = -np.sort(-p, axis=-1)
    cumulative = np.cumsum(ordered, axis=-1) - 1
    index = np.arange(1, p.shape[-1] + 1)
    rho = (ordered - cumulative / index > 0).sum(axis=-1, keepdims=True)
    theta = np.take_along_axis(cumulative, rho - 1, axis=-1) / rho
    return np.maximum(p - theta, 0)


def corrected_shares(observed: dict, validation: dict, attribute: str) -> dict:
    """Shares corrected for misclassification, with their warnings and a bootstrap interval.

    ``observed`` counts the audit's readings: each label, and optionally ``abstain`` and ``no_person``. The
    solution of observed = Mᵀ · true is reported as it is when it is a valid set of shares; when it is not
    (a share below 0 or above 1: the readings are not what any true mix would give under the validation's error
    rates) it is flagged infeasible and the nearest valid shares are reported beside the raw solution — never
    clipped silently. A matrix whose condition number exceeds ILL_CONDITIONED is flagged: the classifier barely
    tells the groups apart and the correction amplifies noise."""
    labels, readings, matrix, group_sizes = misclassification_matrix(validation, attribute)
    counts = np.array([observed.get(reading, 0) for reading in readings], dtype=float)
    total = counts.sum()
    if not total:
        return {"shares": {label: None for label in labels}, "not_corrected": "no image was read for this attribute"}
    q = counts / total
    used = [j for j, reading in enumerate(readings) if j < len(labels) or matrix[:, j].any() or counts[j]]
    matrix, q, counts = matrix[:, used], q[used], counts[used]
    singular = np.linalg.svd(matrix, compute_uv=False)
    condition = float(singular[0] / singular[-1]) if singular[-1] > 1e-12 else float("inf")
    if not np.isfinite(condition) or condition > 1e6:
        raise BadInput(f"The {attribute} confusion matrix cannot be inverted (the classifier cannot tell some groups apart); no correction is possible.")
    raw = _solve(matrix, q)
    feasible = bool((raw >= -1e-9).all() and (raw <= 1 + 1e-9).all())
    point = raw if feasible else _project_to_simplex(raw[None])[0]
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    # Draws from each confusion row and from the readings with half a count added to every cell (Jeffreys'
    # prior): a zero count still carries its uncertainty, where a plain bootstrap would resample it as certain.
    sampled = np.stack([rng.dirichlet(row * n + 0.5, size=BOOTSTRAP_RESAMPLES) for row, n in zip(matrix, group_sizes)], axis=1)
    draws = _solve(sampled, rng.dirichlet(counts + 0.5, size=BOOTSTRAP_RESAMPLES))
    infeasible_draws = float(((draws < -1e-9) | (draws > 1 + 1e-9)).any(axis=1).mean())
    low, high = np.percentile(_project_to_simplex(draws), [2.5, 97.5], axis=0)
    warnings = []
    if not feasible:
        warnings.append("Infeasible: the readings are not what any true mix would give under the validation's error rates "
                        f"(raw solution {', '.join(f'{label} {value:.1%}' for label, value in zip(labels, raw))}); the nearest valid shares are shown.")
    if condition > ILL_CONDITIONED:
        warnings.append(f"Ill-conditioned (condition number {condition:.0f}): the classifier barely tells these groups apart, so the correction "
                        "amplifies noise; treat the corrected shares as unreliable.")
    return {
        "shares": {label: {"share": float(value), "ci_low": float(lo), "ci_high": float(hi)} for label, value, lo, hi in zip(labels, point, low, high)},
        "raw_solution": {label: float(value) for label, value in zip(labels, raw)},
        "feasible": feasible,
        "condition_number": condition,
        "bootstrap_infeasible_share": infeasible_draws,
        "readings": {readings[j]: int(c) for j, c in zip(used, counts)},
        "warnings": warnings,
    }


def same_classifier(validation: dict, clip_model: dict, attribute_set: dict) -> str | None:
    """Why a validation does not apply to a run (another attribute set or another CLIP model), or None."""
    if (validation.get("attribute_set") or {}).get("sha256") != attribute_set.get("sha256"):
        return "The validation result was made with another attribute set; its error rates do not apply to this run."
    theirs = validation.get("clip_model") or {}
    keys = ("catalog_key", "name", "revision", "placeholder")
    if any(theirs.get(key) != clip_model.get(key) for key in keys):
        return (f"The validation result was made with another CLIP model ({theirs.get('name') or '?'} {theirs.get('revision') or ''}) than this run's "
                f"({clip_model.get('name')} {clip_model.get('revision') or ''}); its error rates do not apply.")
    return None


def correct_summary(summary: dict, validation: dict) -> dict:
    """Corrected shares for every validated attribute, overall and per prompt, from the report's counts of each
    reading (labels, abstained, no person)."""
    out: dict = {}
    scopes = {"all prompts": (summary["overall"], summary["denominators"])}
    scopes.update({prompt: (summaries, summary["denominators_per_prompt"][prompt]) for prompt, summaries in summary["per_prompt"].items()})
    for name in validation.get("attributes", {}):
        entry: dict = {}
        for scope, (summaries, denominators) in scopes.items():
            attribute = next((a for a in summaries if a["name"] == name), None)
            if attribute is None:
                continue
            observed = {**attribute["counts"], ABSTAIN: attribute["abstained"], "no_person": denominators.get("no_person", 0)}
            try:
                entry[scope] = corrected_shares(observed, validation, name)
            except BadInput as error:
                entry[scope] = {"shares": {}, "not_corrected": str(error)}
        if entry:
            out[name] = entry
    return out


MAX_COUNT = 10**9


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT


def validation_problem(validation) -> str | None:
    """What is wrong with a validation result's shape, or None: attributes with labels and a confusion matrix of
    whole counts over the labels and the two other readings, no more images than the file says it has."""
    if not isinstance(validation, dict):
        return "it is not a JSON object"
    attributes = validation.get("attributes")
    if not isinstance(attributes, dict) or not attributes:
        return "it has no attributes with labels and a confusion matrix"
    images = validation.get("images")
    if images is not None and not _count(images):
        return f"'images' must be a whole number of 0 or more (got {images!r})"
    for name, entry in attributes.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("labels"), list) or len(entry["labels"]) < 2 or not all(isinstance(x, str) for x in entry["labels"]):
            return f"{name}: 'labels' must be a list of at least two labels"
        labels, confusion = entry["labels"], entry.get("confusion")
        if not isinstance(confusion, dict) or set(confusion) != set(labels):
            return f"{name}: the confusion matrix needs one row per label ({', '.join(labels)})"
        readings = set(labels) | set(READINGS_EXTRA)
        total = 0
        for true, row in confusion.items():
            if not isinstance(row, dict):
                return f"{name} / {true}: a confusion row must map readings to counts"
            unknown = sorted(set(row) - readings)
            if unknown:
                return f"{name} / {true}: unknown reading(s) {', '.join(map(repr, unknown))} (readings: {', '.join(labels)}, {', '.join(READINGS_EXTRA)})"
            for reading, count in row.items():
                if not _count(count):
                    return f"{name} / {true} / {reading}: counts must be whole numbers from 0 to {MAX_COUNT:,} (got {count!r})"
            total += sum(row.values())
        if images is not None and total > images:
            return f"{name}: the confusion matrix counts {total} images, more than the {images} the file says it holds"
    return None


def check_validation(validation: dict, attribute_set) -> None:
    """A validation result that can correct this attribute set's readings, or a clear refusal (before anything runs)."""
    problem = validation_problem(validation)
    if problem:
        raise BadInput(f"The validation result is not one aipic audit validate writes: {problem}.")
    specs = {spec.name: spec for spec in attribute_set.attributes}
    for name, entry in validation["attributes"].items():
        if name not in specs:
            raise BadInput(f"The validation result has an attribute {name!r} that this attribute set does not (its attributes: {', '.join(specs)}).")
        if set(entry["labels"]) != set(specs[name].classes):
            raise BadInput(f"The validation result's labels of {name} ({', '.join(entry['labels'])}) are not this attribute set's ({', '.join(specs[name].classes)}).")


def load_validation(path: str | Path) -> dict:
    try:
        validation = json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (OSError, ValueError) as error:
        raise BadInput(f"Cannot read the validation result {path}: {getattr(error, 'strerror', None) or error}") from None
    problem = validation_problem(validation)
    if problem:
        raise BadInput(f"{path} is not a result of aipic audit validate: {problem}.")
    return validation


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number a validation result can hold")
