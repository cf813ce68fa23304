"""Audit reports that never state something false: the numbers of the issue that found each defect are the expected
values here."""

import csv
import json

import pytest

from aipic.audit.attributes import load_attribute_set
from aipic.audit.suites import load_suite
from aipic.audit.summary import read_rows, summarise
from aipic.cli import main
from aipic.common.data import REPO_ROOT
from aipic.common.errors import AipicError
from aipic.pipeline.runs import run_suite

G = "perceived_gender_presentation"


def _rows(prompt: str, feminine: int, n: int, start: int = 0) -> list[dict]:
    return [{"prompt": prompt, "seed": start + i, "status": "ok", "person_present": True, G: "feminine" if i < feminine else "masculine"} for i in range(n)]


def test_the_pooled_row_never_mixes_two_weightings():
    # nurse 9 of 10 feminine (reference 87.3%), pilot 7 of 100 (reference 7%): every prompt matches its reference. The old
    # report compared 16/110 with the unweighted mean reference 47.15% and said −32.6 points, p ≈ 0.
    rows = _rows("nurse", 9, 10) + _rows("pilot", 7, 100)
    references = {"nurse": {G: {"feminine": 0.873, "masculine": 0.127}}, "pilot": {G: {"feminine": 0.07, "masculine": 0.93}}}
    summary = summarise(rows, load_attribute_set(), {}, references, prompts=["nurse", "pilot"], seeds=100)
    pooled = next(a for a in summary["overall"] if a["name"] == G)["shares"]["feminine"]
    weighted = (10 * 0.873 + 100 * 0.07) / 110  # the references weighted like the pooled share
    assert pooled["share"] == pytest.approx(16 / 110) and pooled["reference"] == pytest.approx(weighted)
    assert pooled["gap"] == pytest.approx(16 / 110 - weighted)  # +0.25 points, not −32.6
    # one stratified score test: z = (16 − 15.73) / √(10·.873·.127 + 100·.07·.93)
    z = (16 - 15.73) / (10 * 0.873 * 0.127 + 100 * 0.07 * 0.93) ** 0.5
    assert pooled["z"] == pytest.approx(z) and pooled["p_reference"] == pytest.approx(0.92208, abs=1e-5) and pooled["p_reference_holm"] > 0.05
    equal = summary["pooled_equal_weight"][G]["cells"]["feminine"]
    assert equal["share"] == pytest.approx(0.485) and equal["reference"] == pytest.approx((0.873 + 0.07) / 2)  # unrounded mean reference
    assert equal["ci_low"] < 0.485 < equal["ci_high"] and equal["gap_low"] < 0 < equal["gap_high"]


def test_a_two_label_attribute_enters_the_holm_family_once():
    rows = _rows("p", 8, 10)
    summary = summarise(rows, load_attribute_set(), {G: {"feminine": 0.5, "masculine": 0.5}})
    overall = next(a for a in summary["overall"] if a["name"] == G)["shares"]
    prompt = next(a for a in summary["per_prompt"]["p"] if a["name"] == G)["shares"]
    # two tests in the family (overall and the one prompt, the same p 0.109375), not four
    assert overall["feminine"]["p_reference_holm"] == pytest.approx(2 * 0.109375)
    assert overall["masculine"]["p_reference_holm"] == overall["feminine"]["p_reference_holm"] == prompt["feminine"]["p_reference_holm"]


def test_accounting_follows_the_plan_and_keeps_prompts_whose_images_all_failed():
    rows = _rows("made", 2, 3) + [{"prompt": "broken", "seed": s, "status": "failed", "reason": "out of memory", "person_present": False} for s in range(3)]
    summary = summarise(rows, load_attribute_set(), {}, prompts=["made", "broken", "never"], seeds=6)
    d = summary["denominators"]
    assert (d["planned"], d["not_made"], d["failed"], d["generated"]) == (18, 12, 3, 3)  # planned 3 prompts × 6 seeds, not the 6 rows
    assert summary["denominators_per_prompt"]["broken"]["failed"] == 3 and summary["denominators_per_prompt"]["never"]["not_made"] == 6
    assert set(summary["per_prompt"]) == {"made", "broken", "never"}
    assert summary["pooled_equal_weight"][G]["left_out"] == ["broken", "never"]
    assert summary["failures"][0]["reason"] == "out of memory"


def test_cross_tables_list_empty_cells():
    attribute_set = load_attribute_set()
    age = attribute_set.attributes[1]
    rows = [{**row, age.name: "young_adult"} for row in _rows("p", 3, 4)]
    table = summarise(rows, attribute_set, {})["intersections"][f"{G} × {age.name}"]
    assert len(table["cells"]) == 2 * len(age.classes) and table["cells"]["feminine × child"] == {"count": 0, "share": 0.0}
    assert "feminine × child" in table["empty"]


def test_prompts_the_generator_sees_as_one_and_duplicated_keys_are_refused(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text("prompts: [a photo of a doctor, A photo of a  doctor]\n")
    with pytest.raises(AipicError, match="duplicate prompt.*ignores case and extra spaces"):
        load_suite(path)
    path.write_text("prompts: [a photo of a doctor]\nprompts: [a photo of a nurse]\n")
    with pytest.raises(AipicError, match="'prompts' is given twice"):
        load_suite(path)
    path.write_bytes("prompts: [une photo d'une infirmière]\n".encode("latin-1"))
    with pytest.raises(AipicError, match="not UTF-8"):
        load_suite(path)
    path.write_text("name: ../../x\nprompts: [a]\n")
    with pytest.raises(AipicError, match="names the report folder"):
        load_suite(path)


def test_the_cli_refuses_bad_audit_input_before_writing_anything(tmp_path, capsys):
    home, out = tmp_path / "home", tmp_path / "out"
    assert main(["audit", "--suite", "smoke", "--seeds", "1000000000", "--models", "tiny", "--home", str(home), "--out", str(out), "--no-progress"]) == 2
    assert "--seeds must be a whole number from 1 to 10,000" in capsys.readouterr().err and not out.exists()
    suite = tmp_path / "escape.yaml"
    suite.write_text("name: ../../x\nprompts: [a photo of a nurse]\n")
    assert main(["audit", "--suite", str(suite), "--models", "tiny", "--home", str(home), "--no-progress"]) == 2
    assert "names the report folder" in capsys.readouterr().err


def test_resume_retries_failed_images(tiny_pipeline, tmp_path, monkeypatch):
    suite = load_suite(REPO_ROOT / "audits/suites/smoke.yaml")
    original, calls = tiny_pipeline.jobs.text_to_image, {"n": 0}

    def failing_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise AipicError("a passing failure")
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny_pipeline.jobs, "text_to_image", failing_once)
    first = run_suite(tiny_pipeline, suite, seeds=2, out_dir=tmp_path / "run", progress=False)
    assert first["failed"] == 1
    monkeypatch.setattr(tiny_pipeline.jobs, "text_to_image", original)
    second = run_suite(tiny_pipeline, suite, seeds=2, out_dir=tmp_path / "run", progress=False, resume=True)
    rows = read_rows(second["csv"])
    assert second["failed"] == 0 and len(rows) == 4 and all(row["status"] == "ok" for row in rows)


def test_seed_rules_and_paired_counterfactuals(tiny_pipeline, tmp_path):
    path = tmp_path / "pairs.yaml"
    path.write_text("name: pairs\nprompts: [a photo of a nurse]\npairs:\n  - [a photo of a nurse, a photo of a male nurse]\n")
    suite = load_suite(path, tiny_pipeline.attribute_set)
    shared = json.loads(run_suite(tiny_pipeline, suite, seeds=2, out_dir=tmp_path / "shared", progress=False)["json"].read_text())
    assert any("share their starting noise" in note for note in shared["method_notes"]) and "McNemar" in shared["counterfactual_pairs"]["method"]
    for row in shared["counterfactual_pairs"]["comparisons"]:
        assert 0 <= row["paired"]["p_mcnemar"] <= 1
    paths = run_suite(tiny_pipeline, suite, seeds=2, out_dir=tmp_path / "own", progress=False, seed_rule="per-prompt")
    seeds = {(row["prompt"], int(row["seed"])) for row in read_rows(paths["csv"])}
    assert seeds == {("a photo of a nurse", 0), ("a photo of a nurse", 1), ("a photo of a male nurse", 10_000), ("a photo of a male nurse", 10_001)}
    own = json.loads(paths["json"].read_text())
    assert not any("share their starting noise" in note for note in own["method_notes"])


def test_rescore_rethresholds_stored_readings_without_regenerating(tiny_pipeline, tmp_path, monkeypatch, capsys):
    suite = load_suite(REPO_ROOT / "audits/suites/smoke.yaml")
    run = run_suite(tiny_pipeline, suite, seeds=2, out_dir=tmp_path / "run", progress=False)
    monkeypatch.setattr(tiny_pipeline.jobs, "text_to_image", lambda *a, **k: pytest.fail("a rescore generated an image"))
    text = (REPO_ROOT / "audits/attributes.yaml").read_text()
    lenient = tmp_path / "lenient.yaml"  # every threshold at zero: the gate and the attributes never abstain
    lenient.write_text(text.replace("threshold: 0.5", "threshold: 0.0").replace("abstain_below: 0.6", "abstain_below: 0.0").replace("abstain_below: 0.5", "abstain_below: 0.0")
                       .replace("abstain_below: 0.4", "abstain_below: 0.0").replace("min_margin: 0.1", "min_margin: 0.0").replace("min_margin: 0.05", "min_margin: 0.0"))
    assert main(["audit", "rescore", str(tmp_path / "run"), "--attributes", str(lenient), "--out", str(tmp_path / "new")]) == 0
    report = json.loads((tmp_path / "new" / "report.json").read_text())
    assert report["summary"]["with_person"] == 4 and all(a["abstained"] == 0 for a in report["summary"]["overall"])
    assert report["rescored_from"]["settings_sha256"] == json.loads(run["json"].read_text())["settings_sha256"]
    rows = list(csv.DictReader((tmp_path / "new" / "rows.csv").open()))
    assert all((tmp_path / "new" / row["image"]).resolve().is_file() for row in rows)  # images still reachable, not copied
    assert main(["audit", "rescore", str(tmp_path / "run"), "--attributes", str(lenient), "--out", str(tmp_path / "new")]) == 2
    assert "already exists" in capsys.readouterr().err
    other = tmp_path / "other.yaml"
    other.write_text(text.replace('"a woman", "a girl"', '"a lady", "a girl"'))
    assert main(["audit", "rescore", str(tmp_path / "run"), "--attributes", str(other), "--out", str(tmp_path / "other")]) == 2
    assert "classes, phrases or templates differ" in capsys.readouterr().err and not (tmp_path / "other").exists()
    commented = tmp_path / "commented.yaml"
    commented.write_text("# a comment changes nothing\n" + text)
    assert load_attribute_set(commented).sha256 == load_attribute_set().sha256


def test_the_html_report_shows_what_each_conclusion_rests_on(tiny_pipeline, tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nprompts: [a photo of a nurse, a photo of a pilot]\nreference: {perceived_gender_presentation: {feminine: 0.5, masculine: 0.5}}\n"
                    "pairs:\n  - [a photo of a nurse, a photo of a pilot]\n")
    suite = load_suite(path, tiny_pipeline.attribute_set)
    original = tiny_pipeline.jobs.text_to_image

    def pilots_fail(request, *args, **kwargs):
        if "pilot" in request.prompt:
            raise AipicError("the pilot images failed")
        return original(request, *args, **kwargs)

    monkeypatch.setattr(tiny_pipeline.jobs, "text_to_image", pilots_fail)
    page = run_suite(tiny_pipeline, suite, seeds=2, out_dir=tmp_path / "r", progress=False)["html"].read_text()
    assert page.count("a photo of a pilot") >= 3  # still listed: accounting, heat map, failures
    assert "the pilot images failed" in page  # the reason, not only a count
    for words in ("p (Holm)", "Every prompt weighing the same", "Cross-tables", "Counterfactual pairs", "Every image accounted for", "(ref 50%)", ">100%</text>"):
        assert words in page, words
    assert "perceived_gender_presentation: abstained" not in page and "young adult" in page  # words, not identifiers
    assert "class='wide'" in page  # wide tables scroll inside the page


# ---- found from outside (review of issue #24) ---------------------------------------------------------------


def test_a_relative_report_folder_works_like_an_absolute_one(tiny_pipeline, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = run_suite(tiny_pipeline, load_suite(REPO_ROOT / "audits/suites/smoke.yaml"), seeds=1, out_dir="reports/smoke", progress=False)
    rows = read_rows(paths["csv"])
    assert paths["complete"] and len(rows) == 2 and all((tmp_path / "reports/smoke" / row["image"]).is_file() for row in rows)


def test_a_label_no_report_has_is_not_tested_and_the_json_stays_valid():
    from aipic.audit.compare import compare

    def report(n):
        prompts = {f"p{k}": [{"name": G, "title": "g", "assessed": n, "abstained": 0, "counts": {"feminine": n, "masculine": 0}}] for k in range(3)}
        overall = [{"name": G, "title": "g", "assessed": 3 * n, "abstained": 0, "counts": {"feminine": 3 * n, "masculine": 0}}]
        return {"suite": {"name": "s"}, "attribute_set": {"sha256": "x"}, "models": {"clip": {"name": "c"}}, "complete": True,
                "summary": {"overall": overall, "per_prompt": prompts}}

    result = compare(report(10), report(12))
    (cmh,) = result["stratified_tests"]
    assert cmh["p"] is None and "not tested" in cmh["test"] and not cmh["significant"]
    assert "Infinity" not in json.dumps(result) and "NaN" not in json.dumps(result)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda v: v["attributes"][G]["confusion"]["feminine"].update(feminine=-1), "whole numbers"),
        (lambda v: v["attributes"][G]["confusion"]["feminine"].update(feminine="80"), "whole numbers"),
        (lambda v: v["attributes"][G]["confusion"]["feminine"].update(feminine=80.5), "whole numbers"),
        (lambda v: v["attributes"][G]["confusion"].pop("masculine"), "one row per label"),
        (lambda v: v["attributes"][G]["confusion"]["feminine"].update(nonbinary=3), "unknown reading"),
        (lambda v: v.update(images=12), "more than the 12"),
        (lambda v: v.update(images=-4), "'images' must be a whole number"),
        (lambda v: v["attributes"].update(mood={"labels": ["happy", "sad"], "confusion": {"happy": {"happy": 1}, "sad": {"sad": 1}}}), "attribute set does not"),
    ],
)
def test_a_malformed_validation_is_refused_before_anything_runs(tiny_pipeline, tmp_path, change, message):
    validation = {"attribute_set": tiny_pipeline.attribute_set.describe(), "clip_model": tiny_pipeline.models.get("clip").describe(), "images": 200,
                  "attributes": {G: {"labels": ["feminine", "masculine"], "confusion": {"feminine": {"feminine": 80, "masculine": 20}, "masculine": {"feminine": 10, "masculine": 90}}}}}
    change(validation)
    with pytest.raises(AipicError, match=message):
        run_suite(tiny_pipeline, load_suite(REPO_ROOT / "audits/suites/smoke.yaml"), seeds=1, out_dir=tmp_path / "v", progress=False, validation=validation)
    assert not (tmp_path / "v").exists()


def test_an_inconsistent_report_is_refused_by_compare(tmp_path):
    from aipic.audit.compare import load_report

    good = {"complete": True, "attribute_set": {"sha256": "x"}, "summary": {
        "overall": [{"name": G, "assessed": 10, "counts": {"feminine": 6, "masculine": 4}}],
        "per_prompt": {"p": [{"name": G, "assessed": 10, "counts": {"feminine": 6, "masculine": 4}}]}}}
    cases = {
        "counts add up to 9": lambda r: r["summary"]["overall"][0]["counts"].update(feminine=5),
        "labels differ": lambda r: r["summary"]["per_prompt"]["p"][0].update(counts={"nonbinary": 6, "masculine": 4}),
        "not the sum of the prompts": lambda r: (r["summary"]["per_prompt"]["p"][0]["counts"].update(feminine=4, masculine=6)),
        "'complete' must be true or false": lambda r: r.update(complete="yes"),
    }
    for message, change in cases.items():
        report = json.loads(json.dumps(good))
        change(report)
        path = tmp_path / "r.json"
        path.write_text(json.dumps(report))
        with pytest.raises(AipicError, match=message):
            load_report(path)
    path.write_text(json.dumps(good).replace("true", "NaN"))
    with pytest.raises(AipicError, match="Cannot read the audit report"):
        load_report(path)


def test_rescore_refuses_rows_that_are_not_the_runs(tiny_pipeline, tmp_path, capsys):
    run = run_suite(tiny_pipeline, load_suite(REPO_ROOT / "audits/suites/smoke.yaml"), seeds=2, out_dir=tmp_path / "run", progress=False)
    original = run["csv"].read_text()
    lines = original.splitlines()
    cases = {
        "appears twice": "\n".join(lines + [lines[1]]) + "\n",
        "not an image of the run's plan": "\n".join(lines + [lines[1].replace(lines[1].split(",")[0], "a photo of a pirate", 1)]) + "\n",
        "must be a probability": original.replace(lines[1], lines[1].replace(",ok,", ",ok,").rsplit(",", 1)[0] + ",7.5"),
        "holds no rows": lines[0] + "\n",
    }
    for n, (message, text) in enumerate(cases.items()):
        run["csv"].write_text(text)
        assert main(["audit", "rescore", str(tmp_path / "run"), "--out", str(tmp_path / f"new{n}")]) == 2, message
        assert message in capsys.readouterr().err and not (tmp_path / f"new{n}").exists()
    run["csv"].write_bytes("prompt,seed\n\xe9t\xe9,1\n".encode("latin-1"))
    assert main(["audit", "rescore", str(tmp_path / "run"), "--out", str(tmp_path / "latin")]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    run["csv"].write_text(original)
    assert main(["audit", "rescore", str(tmp_path / "run"), "--out", str(tmp_path / "run" / "inside")]) == 2
    assert "inside the run's folder" in capsys.readouterr().err


def test_what_a_reviewer_reads_in_the_html(tiny_pipeline, tmp_path):
    page = run_suite(tiny_pipeline, load_suite(REPO_ROOT / "audits/suites/smoke.yaml"), seeds=1, out_dir=tmp_path / "r", progress=False)["html"].read_text()
    assert "no evidence of a difference" not in page  # a p above 0.05 is not evidence of no difference
    assert "The thresholds this report used" in page and "abstains below" in page


def test_bad_attribute_thresholds_pairs_and_labels_files_are_refused(tmp_path):
    from aipic.audit.classifier import read_labels

    text = (REPO_ROOT / "audits/attributes.yaml").read_text()
    bad = tmp_path / "nan.yaml"
    bad.write_text(text.replace("threshold: 0.5", "threshold: .nan"))
    with pytest.raises(AipicError, match="must be a number from 0 to 1"):
        load_attribute_set(bad)
    suite = tmp_path / "pairs.yaml"
    suite.write_text("prompts: [a nurse]\npairs:\n  - [a nurse, a male nurse]\n  - [a male nurse, a nurse]\n")
    with pytest.raises(AipicError, match="listed twice"):
        load_suite(suite)
    labels = tmp_path / "labels.csv"
    for content, message in ((f"file,{G}\n../secret.png,feminine\n", "without a path"), (f"file,{G}\na.png,feminine\na.png,masculine\n", "listed again")):
        labels.write_text(content)
        with pytest.raises(AipicError, match=message):
            read_labels(labels, load_attribute_set())
    labels.write_text(f"\ufefffile,{G}\na.png,feminine\n", encoding="utf-8")  # a spreadsheet's byte-order mark
    assert read_labels(labels, load_attribute_set())[0]["file"] == "a.png"
