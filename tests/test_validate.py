"""aipic audit validate: the arithmetic, checked against numbers computed by hand (tiny CLIP proves nothing else)."""

import csv
import json

import pytest

from aipic.audit.attributes import load_attribute_set
from aipic.audit.attributes import AttributeResult
from aipic.audit.auditor import AuditResult
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
    result = corrected_shares({"feminine": 45, "masculine": 55}, validation, GENDER)
    shares = result["shares"]
    assert shares["feminine"]["share"] == pytest.approx(0.5) and shares["masculine"]["share"] == pytest.approx(0.5)
    assert result["feasible"] and not result["warnings"] and shares["feminine"]["ci_low"] < 0.5 < shares["feminine"]["ci_high"]
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
    validation = {"attribute_set": tiny_pipeline.attribute_set.describe(), "clip_model": tiny_pipeline.models.get("clip").describe(), "images": 200,
                  "attributes": {GENDER: {"labels": ["feminine", "masculine"], "confusion": confusion}}}
    suite = load_suite(REPO_ROOT / "audits/suites/smoke.yaml")
    paths = run_suite(tiny_pipeline, suite, seeds=1, out_dir=tmp_path / "corrected", progress=False, validation=validation)
    report = json.loads(paths["json"].read_text())
    corrected = report["corrected_shares"]
    assert corrected["method"].startswith("confusion-matrix inversion") and "bootstrap" in corrected["interval"]
    assert set(corrected["attributes"][GENDER]) == {"all prompts", *suite.prompts}  # overall and per prompt
    assert json.loads(paths["card"].read_text())["corrected_shares"] == corrected
    assert "Corrected for the classifier" in paths["html"].read_text()
    other = {**validation, "attribute_set": {"sha256": "not-this-one"}}
    with pytest.raises(AipicError, match="another attribute set"):
        run_suite(tiny_pipeline, suite, seeds=1, out_dir=tmp_path / "other", progress=False, validation=other)
    another_model = {**validation, "clip_model": {**validation["clip_model"], "name": "ViT-L-14", "revision": "laion2b"}}
    with pytest.raises(AipicError, match="another CLIP model"):
        run_suite(tiny_pipeline, suite, seeds=1, out_dir=tmp_path / "other", progress=False, validation=another_model)
    assert not (tmp_path / "other").exists()  # refused before anything was written


def _validation(confusion: dict) -> dict:
    return {"attributes": {GENDER: {"labels": ["feminine", "masculine"], "confusion": confusion}}}


def test_an_infeasible_correction_is_flagged_not_clipped_quietly():
    # [[.8, .2], [.1, .9]] and 0 of 2 read feminine: Mᵀp = q gives (−1/7, 8/7) = (−0.14, 1.14)
    result = corrected_shares({"feminine": 0, "masculine": 2}, _validation({"feminine": {"feminine": 80, "masculine": 20}, "masculine": {"feminine": 10, "masculine": 90}}), GENDER)
    assert result["raw_solution"]["feminine"] == pytest.approx(-1 / 7) and result["raw_solution"]["masculine"] == pytest.approx(8 / 7)
    assert not result["feasible"] and result["warnings"][0].startswith("Infeasible") and "-14.3%" in result["warnings"][0]
    assert result["shares"]["feminine"]["ci_high"] > 0.2  # two images say little: the interval is wide, not (0, 0)


def test_an_ill_conditioned_correction_is_flagged():
    # a 51%-accurate classifier: 52/48 solves to (1.5, −0.5); condition number (1 + .02)/(.02)… = 50
    result = corrected_shares({"feminine": 52, "masculine": 48}, _validation({"feminine": {"feminine": 51, "masculine": 49}, "masculine": {"feminine": 49, "masculine": 51}}), GENDER)
    assert result["raw_solution"]["feminine"] == pytest.approx(1.5) and result["condition_number"] == pytest.approx(50)
    assert not result["feasible"] and any(w.startswith("Ill-conditioned") for w in result["warnings"])


def test_abstentions_and_person_gate_misses_in_the_validation_are_used():
    # truth 50/50; feminine images abstained half the time: readings 25 feminine, 50 masculine, 25 abstained
    confusion = {"feminine": {"feminine": 50, "masculine": 0, "abstain": 50, "no_person": 0}, "masculine": {"feminine": 0, "masculine": 100, "abstain": 0, "no_person": 0}}
    result = corrected_shares({"feminine": 25, "masculine": 50, "abstain": 25}, _validation(confusion), GENDER)
    assert result["shares"]["feminine"]["share"] == pytest.approx(0.5) and result["feasible"]  # not 33/67
    # the person gate missing masculine images half the time: 50 feminine, 25 masculine, 25 without a person
    confusion = {"feminine": {"feminine": 100, "masculine": 0, "abstain": 0, "no_person": 0}, "masculine": {"feminine": 0, "masculine": 50, "abstain": 0, "no_person": 50}}
    result = corrected_shares({"feminine": 50, "masculine": 25, "no_person": 25}, _validation(confusion), GENDER)
    assert result["shares"]["masculine"]["share"] == pytest.approx(0.5)
    with pytest.raises(AipicError, match="no labelled image of masculine"):
        corrected_shares({"feminine": 1, "masculine": 1}, _validation({"feminine": {"feminine": 5, "masculine": 5}, "masculine": {"feminine": 0, "masculine": 0}}), GENDER)


def test_validate_says_when_a_group_has_no_labelled_image_or_nothing_was_read(tmp_path, capsys):
    from aipic.audit.attributes import AttributeResult, load_attribute_set
    from aipic.audit.classifier import evaluate

    folder = tmp_path / "labelled"
    folder.mkdir()
    make_image(64, 64, seed=1).save(folder / "0.png")
    (tmp_path / "labels.csv").write_text(f"file,{GENDER}\n0.png,feminine\n")
    assert main(["audit", "validate", "--images", str(folder), "--labels", str(tmp_path / "labels.csv"), "--models", "tiny", "--home", str(tmp_path)]) == 0
    assert "masculine: no labelled image" in capsys.readouterr().out  # was a TypeError
    attribute_set = load_attribute_set()
    abstained = AuditResult(True, 0.9, {GENDER: AttributeResult(GENDER, "g", "abstain", 0.5, {})})
    result = evaluate([abstained], [{GENDER: "feminine"}], attribute_set)["attributes"][GENDER]
    assert result["accuracy"] is None  # nothing was read: no accuracy, not 0.0%
