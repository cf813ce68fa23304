import csv
import json

import pytest

from aipic.audit import load_attribute_set
from aipic.catalog import REPO_ROOT
from aipic.errors import AipicError
from aipic.report import load_suite, run_suite, summarise, wilson_interval


def test_wilson_interval_known_values():
    low, high = wilson_interval(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and round(high, 4) == 0.1611
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_summary_counts_only_assessed_images():
    attribute_set = load_attribute_set()
    rows = [
        {"prompt": "p", "person_present": "True", "perceived_gender_presentation": "feminine"},
        {"prompt": "p", "person_present": "True", "perceived_gender_presentation": "masculine"},
        {"prompt": "p", "person_present": "True", "perceived_gender_presentation": "masculine"},
        {"prompt": "p", "person_present": "True", "perceived_gender_presentation": "abstain"},
        {"prompt": "p", "person_present": "False", "perceived_gender_presentation": ""},
    ]
    summary = summarise(rows, attribute_set, {"perceived_gender_presentation": {"feminine": 0.5, "masculine": 0.5}})
    gender = next(a for a in summary["overall"] if a["name"] == "perceived_gender_presentation")
    assert (summary["images"], summary["with_person"]) == (5, 4)
    assert (gender["assessed"], gender["abstained"]) == (3, 1)
    masculine = gender["shares"]["masculine"]
    assert masculine["count"] == 2 and masculine["share"] == pytest.approx(2 / 3)
    assert masculine["gap"] == pytest.approx(2 / 3 - 0.5)
    assert masculine["ci_low"] < 2 / 3 < masculine["ci_high"]


def test_suite_run_writes_html_json_csv(tiny_pipeline, tmp_path):
    suite = load_suite(REPO_ROOT / "audits/suites/smoke.yaml")
    paths = run_suite(tiny_pipeline, suite, seeds=2, out_dir=tmp_path / "report", progress=False)
    assert paths["complete"]
    report = json.loads(paths["json"].read_text())
    assert report["summary"]["images"] == 4 and report["complete"]
    assert report["models"]["clip"]["placeholder"] is True and report["notes"]
    with paths["csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["prompt"], r["seed"]) for r in rows] == [(p, str(s)) for p in suite.prompts for s in range(2)]
    assert all((tmp_path / "report" / r["image"]).is_file() for r in rows)
    html = paths["html"].read_text()
    assert "Bias audit: smoke" in html and "Wilson 95%" in html and "a photo of a nurse" in html
    with pytest.raises(AipicError, match="already holds an audit run"):
        run_suite(tiny_pipeline, suite, seeds=1, out_dir=tmp_path / "report", progress=False)


def test_interrupted_run_keeps_what_was_done(tiny_pipeline, tmp_path, monkeypatch):
    suite = load_suite(REPO_ROOT / "audits/suites/smoke.yaml")
    calls = {"n": 0}
    original = tiny_pipeline.text_to_image_job

    def interrupt_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny_pipeline, "text_to_image_job", interrupt_on_third)
    paths = run_suite(tiny_pipeline, suite, seeds=2, out_dir=tmp_path / "partial", progress=False)
    assert not paths["complete"]
    report = json.loads(paths["json"].read_text())
    assert report["summary"]["images"] == 2 and report["planned_images"] == 4
    assert "Incomplete run" in paths["html"].read_text()


def test_bad_suites_get_clear_errors(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text("prompts: []")
    with pytest.raises(AipicError, match="non-empty 'prompts'"):
        load_suite(path)
    path.write_text("prompts: [a]\nreference: {perceived_gender_presentation: {feminine: 0.9, masculine: 0.5}}")
    with pytest.raises(AipicError, match="add up to 1.400"):
        load_suite(path)
