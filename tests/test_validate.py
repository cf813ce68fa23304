"""aipic audit validate: the arithmetic, checked against numbers computed by hand (tiny CLIP proves nothing else)."""

import csv
import json

import pytest

from aipic.audit.attributes import load_attribute_set
from aipic.audit.auditor import AttributeResult, AuditResult
from aipic.cli import main
from aipic.common.errors import AipicError
from aipic.audit.classifier import corrected_shares, evaluate, expected_calibration_error
from conftest import make_image

GENDER = "perceived_gender_presentation"


def reading(label, confidence, person=True):
    attributes = {GENDER: AttributeResult(GENDER, "g", label, confidence, {})} if person else {}
    return AuditResult(person_present=person, person_probability=0.9 if person else 0.1, attributes=attributes)


def test_confusion_accuracy_abstention_and_calibration_by_hand():
    attribute_set = load_attribute_set()
    truths = [{GENDER: t} for t in ["feminine", "feminine", "feminine", "feminine", "masculine", "masculine", "masculine"]]
    results = [reading("feminine", 0.9), reading("feminine", 0.7), reading("masculine", 0.6), reading("abstain", 0.4),
               reading("masculine", 0.8), reading("masculine", 0.9), reading("x", 0, person=False)]
    entry = evaluate(results, truths, attribute_set)["attributes"][GENDER]
    assert entry["confusion"]["feminine"] == {"feminine": 2, "masculine": 1, "abstain": 1, "no_person": 0}
    assert entry["confusion"]["masculine"] == {"feminine": 0, "masculine": 2, "abstain": 0, "no_person": 1}
    assert entry["per_group"]["feminine"] == {"n": 4, "accuracy": pytest.approx(2 / 3), "abstain_rate": 0.25}
    assert entry["per_group"]["masculine"] == {"n": 3, "accuracy": 1.0, "abstain_rate": pytest.approx(1 / 3)}
    assert entry["accuracy"] == pytest.approx(4 / 5)
    # bins: 0.6 -> wrong (acc 0, conf .6); 0.7 -> right; 0.8 -> right; 0.9 -> two right. ECE = (1/5)(.6) + (1/5)(.3) + (1/5)(.2) + (2/5)(.1)
    assert entry["ece"] == pytest.approx(0.6 / 5 + 0.3 / 5 + 0.2 / 5 + 0.2 / 5)
    assert expected_calibration_error([]) is None


def test_confusion_matrix_inversion_by_hand():
    validation = {"attributes": {GENDER: {"labels": ["feminine", "masculine"], "confusion": {
        "feminine": {"feminine": 80, "masculine": 20}, "masculine": {"feminine": 10, "masculine": 90}}}}}
    # observed 45% feminine: solve [[.8, .1], [.2, .9]] p = [.45, .55] -> p = (0.5, 0.5)
    shares = corrected_shares({"feminine": 45, "masculine": 55}, validation, GENDER)
    assert shares["feminine"] == pytest.approx(0.5) and shares["masculine"] == pytest.approx(0.5)
    singular = {"attributes": {GENDER: {"labels": ["feminine", "masculine"], "confusion": {
        "feminine": {"feminine": 50, "masculine": 50}, "masculine": {"feminine": 50, "masculine": 50}}}}}
    with pytest.raises(AipicError, match="cannot be inverted"):
        corrected_shares({"feminine": 1, "masculine": 1}, singular, GENDER)


def test_the_cli_validates_a_labelled_folder_and_its_result_corrects_an_audit(tmp_path, capsys):
    folder = tmp_path / "labelled"
    folder.mkdir()
    with (tmp_path / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", GENDER])
        for n in range(6):
            make_image(64, 64, seed=n).save(folder / f"{n}.png")
            writer.writerow([f"{n}.png", "feminine" if n % 2 else "masculine"])
    assert main(["audit", "validate", "--images", str(folder), "--labels", str(tmp_path / "labels.csv"), "--models", "tiny", "--home", str(tmp_path), "--out", str(tmp_path / "v.json")]) == 0
    out = capsys.readouterr().out
    assert "correction method: confusion-matrix inversion" in out and "not CLEAM" in out
    result = json.loads((tmp_path / "v.json").read_text())
    assert sum(result["attributes"][GENDER]["per_group"][g]["n"] for g in ("feminine", "masculine")) == 6
    bad = tmp_path / "bad.csv"
    bad.write_text(f"file,{GENDER}\n0.png,femenine\n")
    assert main(["audit", "validate", "--images", str(folder), "--labels", str(bad), "--models", "tiny", "--home", str(tmp_path)]) == 2
    assert "'femenine' is not a label" in capsys.readouterr().err


def test_an_audit_reports_corrected_shares_and_refuses_a_validation_of_another_attribute_set(tiny_pipeline, tmp_path):
    from aipic.common.data import REPO_ROOT
    from aipic.audit.suites import load_suite
    from aipic.pipeline.runs import run_suite

    confusion = {"feminine": {"feminine": 80, "masculine": 20}, "masculine": {"feminine": 10, "masculine": 90}}
    validation = {"attribute_set": tiny_pipeline.attribute_set.describe(), "images": 200, "attributes": {GENDER: {"labels": ["feminine", "masculine"], "confusion": confusion}}}
    suite = load_suite(REPO_ROOT / "audits/suites/smoke.yaml")
    paths = run_suite(tiny_pipeline, suite, seeds=1, out_dir=tmp_path / "corrected", progress=False, validation=validation)
    corrected = json.loads(paths["json"].read_text())["corrected_shares"]
    assert corrected["method"].startswith("confusion-matrix inversion") and GENDER in corrected["shares"]
    other = {**validation, "attribute_set": {"sha256": "not-this-one"}}
    with pytest.raises(AipicError, match="another attribute set"):
        run_suite(tiny_pipeline, suite, seeds=1, out_dir=tmp_path / "other", progress=False, validation=other)
