import csv
import json

import pytest

from aipic.audit.attributes import load_attribute_set
from aipic.common.data import REPO_ROOT
from aipic.common.errors import AipicError
from aipic.audit.statistics import wilson_interval
from aipic.audit.suites import load_suite
from aipic.audit.summary import read_rows, summarise
from aipic.pipeline.runs import run_suite
from conftest import interrupt_on


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
    monkeypatch.setattr(tiny_pipeline.jobs, "text_to_image", interrupt_on(3, tiny_pipeline.jobs.text_to_image))
    paths = run_suite(tiny_pipeline, suite, seeds=2, out_dir=tmp_path / "partial", progress=False)
    assert not paths["complete"]
    report = json.loads(paths["json"].read_text())
    assert report["summary"]["images"] == 2 and report["planned_images"] == 4
    assert "Incomplete run" in paths["html"].read_text()


def test_a_failing_run_raises_its_own_error_even_when_its_partial_report_cannot_be_written(tiny_pipeline, tmp_path, monkeypatch):
    suite = load_suite(REPO_ROOT / "audits/suites/smoke.yaml")
    out = tmp_path / "broken"
    original, calls = tiny_pipeline.jobs.text_to_image, {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            (out / "report.json").mkdir()  # the report cannot be written over a folder
            raise RuntimeError("the disk went away")
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny_pipeline.jobs, "text_to_image", failing)
    with pytest.raises(RuntimeError, match="the disk went away"):
        run_suite(tiny_pipeline, suite, seeds=2, out_dir=out, progress=False)
    rows = read_rows(out / "rows.csv")
    assert len(rows) == 1  # the image already made has its row
    assert not (out / "report.json.part").exists()  # no half-written report left behind


def test_a_failing_run_leaves_a_partial_report_marked_incomplete(tiny_pipeline, tmp_path, monkeypatch):
    suite = load_suite(REPO_ROOT / "audits/suites/smoke.yaml")
    original, calls = tiny_pipeline.jobs.text_to_image, {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("the disk went away")
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny_pipeline.jobs, "text_to_image", failing)
    with pytest.raises(RuntimeError, match="the disk went away"):
        run_suite(tiny_pipeline, suite, seeds=2, out_dir=tmp_path / "partial", progress=False)
    report = json.loads((tmp_path / "partial" / "report.json").read_text())
    assert report["complete"] is False and report["summary"]["images"] == 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("prompts: []", "'prompts' must be a non-empty list"),
        ("prompts: a photo of a nurse", "'prompts' must be a non-empty list"),  # a string is not read letter by letter
        ("prompts: [a photo, '  ']", r"prompt\(s\) number 2 are blank"),
        ("prompts: [a photo, a photo]", "duplicate prompt.*'a photo' would count the same images twice"),
        ("prompts: [a]\nrefrence: {}", "unknown key.*'refrence'"),
        ("prompts: [a]\nreference: {perceived_gender_presentation: {feminine: 0.9, masculine: 0.5}}", "add up to 1.400"),
        ("prompts: [a]\nreference: {perceived_gender_presentation: {feminine: 0.5, masculine: 0.495}}", "add up to 0.995"),
        ("prompts: [a]\nreference: {perceived_gender_presentation: {feminine: 1.5, masculine: -0.5}}", "must be a number from 0 to 1"),
        ("prompts: [a]\nreference: {perceived_gender_presentation: {feminine: [0.5], masculine: 0.5}}", "must be a number from 0 to 1"),
        ("prompts: [a]\nreference: {perceived_gender_presentation: {femenine: 0.5, masculine: 0.5}}", "has no label 'femenine'"),
        ("prompts: [a]\nreference: {perceived_gender: {feminine: 0.5, masculine: 0.5}}", "attribute 'perceived_gender' is not in the attribute set"),
        ("prompts: [a]\nreference: {perceived_gender_presentation: parity}", "must map labels to shares"),
        ("- just a list", "must be a mapping"),
    ],
)
def test_bad_suites_get_clear_errors(tmp_path, text, message):
    from aipic.audit.attributes import load_attribute_set

    path = tmp_path / "suite.yaml"
    path.write_text(text)
    with pytest.raises(AipicError, match=message):
        load_suite(path, load_attribute_set())


def test_a_suite_is_found_by_path_or_packaged_name_and_a_missing_one_lists_the_packaged_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative names are not read from the repository by accident
    assert load_suite("smoke").name == load_suite("audits/suites/smoke.yaml").name == "smoke"
    with pytest.raises(AipicError, match=r"No prompt suite at nope\.yaml\. .*packaged suite's name: clinical, occupations, occupations-bls, smoke"):
        load_suite("nope.yaml")
    with pytest.raises(AipicError, match="No prompt suite at"):
        load_suite("elsewhere/smoke.yaml")  # only models/ and audits/ fall back to the packaged data


def test_an_existing_report_or_a_file_as_out_is_refused(tiny_pipeline, tmp_path):
    suite = load_suite(REPO_ROOT / "audits/suites/smoke.yaml")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "report.json").write_text("{}")
    with pytest.raises(AipicError, match=r"already holds an audit run \(report.json\)"):
        run_suite(tiny_pipeline, suite, seeds=1, out_dir=tmp_path / "old", progress=False)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(AipicError, match="is a file; give a folder"):
        run_suite(tiny_pipeline, suite, seeds=1, out_dir=tmp_path / "a-file", progress=False)


def test_a_failed_image_is_recorded_with_its_reason_and_the_run_goes_on(tiny_pipeline, tmp_path):
    from aipic.audit.suites import PromptSuite

    suite = PromptSuite(name="mixed", description="", prompts=("a photo of a nurse", "x" * 3000, "a photo of a pilot"), reference={})
    paths = run_suite(tiny_pipeline, suite, seeds=1, out_dir=tmp_path / "mixed", progress=False)
    assert paths["complete"] and paths["failed"] == 1
    rows = read_rows(paths["csv"])
    assert [row["status"] for row in rows] == ["ok", "failed", "ok"]
    assert "at most 2000 are accepted" in rows[1]["reason"]
    report = json.loads(paths["json"].read_text())
    assert report["summary"]["images"] == 2 and report["summary"]["failed"] == 1
    assert report["thresholds"]["person_gate"] == tiny_pipeline.attribute_set.person_gate.abstain_below
    # every class probability is kept, so a reviewer can re-threshold
    labels = tiny_pipeline.attribute_set.attributes[0]
    probabilities = [float(rows[0][f"{labels.name}_p_{label}"]) for label in labels.classes]
    assert abs(sum(probabilities) - 1) < 0.01


def test_the_bls_reference_is_shipped_with_its_citation_and_used_per_prompt(tiny_pipeline, tmp_path):
    from aipic.audit.references import occupation_in

    assert occupation_in("a photo of a nurse").women_share == pytest.approx(0.873)
    assert occupation_in("a photo of a software engineer").title == "Software developers"  # the longest match
    suite = load_suite("audits/suites/occupations-bls.yaml", tiny_pipeline.attribute_set)
    provenance = suite.reference_provenance
    assert provenance["kind"] == "proxy" and provenance["year"] == 2025 and "cpsaat11" in provenance["link"]
    assert "Bureau of Labor Statistics" in provenance["citation"] and "not perceived gender presentation" in provenance["note"]
    assert suite.reference_by_prompt["a photo of a firefighter"]["perceived_gender_presentation"] == {"feminine": 0.051, "masculine": 0.949}

    small = type(suite)(name="bls-two", description="", prompts=("a photo of a nurse", "a photo of a pilot"), reference={},
                        reference_by_prompt={p: suite.reference_by_prompt[p] for p in ("a photo of a nurse", "a photo of a pilot")}, reference_provenance=provenance)
    paths = run_suite(tiny_pipeline, small, seeds=1, out_dir=tmp_path / "bls", progress=False)
    report = json.loads(paths["json"].read_text())
    nurse = report["summary"]["per_prompt"]["a photo of a nurse"]
    gender = next(a for a in nurse if a["name"] == "perceived_gender_presentation")
    assert gender["shares"]["feminine"]["reference"] == pytest.approx(0.873)
    pooled = next(a for a in report["summary"]["overall"] if a["name"] == "perceived_gender_presentation")["shares"]["feminine"]
    if pooled["reference"] is not None:  # per-prompt references weighted like the pooled share (the tiny CLIP decides the counts)
        assert "weighted by each prompt's assessed images" in pooled["reference_basis"] and pooled["test"].startswith("stratified")
    html = paths["html"].read_text()
    assert "Bureau of Labor Statistics" in html and "proxy" in html


def test_parity_references_are_labelled_as_parity():
    suite = load_suite("audits/suites/occupations.yaml", load_attribute_set())
    assert suite.reference_provenance["kind"] == "parity" and "normative" in suite.reference_provenance["note"]


def test_denominators_account_for_every_image_and_abstention_bounds_are_given():
    attribute_set = load_attribute_set()
    gender = attribute_set.attributes[0]
    labels = list(gender.classes)
    rows = [
        {"prompt": "p", "seed": 0, "status": "ok", "person_present": True, gender.name: labels[0]},
        {"prompt": "p", "seed": 1, "status": "ok", "person_present": True, gender.name: labels[0]},
        {"prompt": "p", "seed": 2, "status": "ok", "person_present": True, gender.name: labels[1]},
        {"prompt": "p", "seed": 3, "status": "ok", "person_present": True, gender.name: "abstain"},
        {"prompt": "p", "seed": 4, "status": "ok", "person_present": False},
        {"prompt": "p", "seed": 5, "status": "failed", "reason": "x", "person_present": False},
    ]
    summary = summarise(rows, attribute_set, {})
    d = summary["denominators"]
    assert (d["planned"], d["failed"], d["generated"], d["no_person"], d["with_person"]) == (6, 1, 5, 1, 4)
    assert d[gender.name] == {"abstained": 1, "assessed": 3}
    cell = next(a for a in summary["overall"] if a["name"] == gender.name)["shares"][labels[0]]
    assert cell["share"] == pytest.approx(2 / 3)  # among assessed
    assert (cell["share_if_abstained_none"], cell["share_if_abstained_all"]) == (pytest.approx(2 / 4), pytest.approx(3 / 4))  # computed by hand


def test_an_interrupted_run_resumes_without_redoing_images_and_other_settings_are_refused(tiny_pipeline, tmp_path, monkeypatch):
    suite = load_suite(REPO_ROOT / "audits/suites/smoke.yaml")
    original = tiny_pipeline.jobs.text_to_image
    monkeypatch.setattr(tiny_pipeline.jobs, "text_to_image", interrupt_on(3, original))
    first = run_suite(tiny_pipeline, suite, seeds=2, out_dir=tmp_path / "run", progress=False)
    assert not first["complete"] and len(read_rows(first["csv"])) == 2
    monkeypatch.setattr(tiny_pipeline.jobs, "text_to_image", original)
    with pytest.raises(AipicError, match="other settings"):
        run_suite(tiny_pipeline, suite, seeds=3, out_dir=tmp_path / "run", progress=False, resume=True)
    made = {"n": 0}

    def counting(*args, **kwargs):
        made["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny_pipeline.jobs, "text_to_image", counting)
    resumed = run_suite(tiny_pipeline, suite, seeds=2, out_dir=tmp_path / "run", progress=False, resume=True)
    assert resumed["complete"] and made["n"] == 2  # only the two missing images
    rows = read_rows(resumed["csv"])
    assert sorted((row["prompt"], row["seed"]) for row in rows) == sorted((p, str(s)) for p in suite.prompts for s in range(2))
    assert json.loads(resumed["json"].read_text())["summary"]["images"] == 4


def test_sample_size_is_stated_before_a_run():
    from aipic.audit.statistics import interval_width, seeds_for_width
    from aipic.audit.suites import sample_size_notes

    assert interval_width(100) == pytest.approx(0.5962 - 0.4038, abs=1e-4)  # Wilson at 50/100: 0.4038–0.5962
    assert seeds_for_width(0.2) == 93  # the smallest n whose widest Wilson interval is ≤ 20 points
    suite = load_suite(REPO_ROOT / "audits/suites/smoke.yaml")
    notes = sample_size_notes(suite, 4)
    assert "up to" in notes[0] and "use --seeds 93" in notes[1]


def test_every_run_writes_an_audit_card_to_reproduce_it(tiny_pipeline, tmp_path):
    paths = run_suite(tiny_pipeline, load_suite(REPO_ROOT / "audits/suites/smoke.yaml"), seeds=1, out_dir=tmp_path / "card", progress=False)
    card = json.loads(paths["card"].read_text())
    for key in ("code", "device", "precision", "models", "generation", "suite", "attribute_set", "thresholds", "settings_sha256", "classifier_limits", "date"):
        assert card[key], key
    assert card["models"]["text_to_image"]["revision"] == "random-weights" and card["placeholder_models"]
    assert card["settings_sha256"] == json.loads((tmp_path / "card" / "run.json").read_text())["sha256"]
    assert "Radford et al. 2021" in card["classifier_limits"][0]
    assert "known limits" in paths["html"].read_text()


def test_equal_weight_pooling_and_intersections_with_small_cell_warnings():
    attribute_set = load_attribute_set()
    gender, age = attribute_set.attributes[0], attribute_set.attributes[1]
    g, a = list(gender.classes), list(age.classes)
    rows = [{"prompt": "p1", "seed": n, "status": "ok", "person_present": True, gender.name: g[0], age.name: a[1]} for n in range(9)]
    rows += [{"prompt": "p1", "seed": 9, "status": "ok", "person_present": True, gender.name: g[1], age.name: a[1]}]
    rows += [{"prompt": "p2", "seed": 0, "status": "ok", "person_present": True, gender.name: g[1], age.name: "abstain"}]
    summary = summarise(rows, attribute_set, {})
    # pooled over images: 9/11; pooled with every prompt weighing the same: (9/10 + 0/1) / 2
    pooled = next(x for x in summary["overall"] if x["name"] == gender.name)["shares"][g[0]]["share"]
    assert pooled == pytest.approx(9 / 11)
    assert summary["pooled_equal_weight"][gender.name]["shares"][g[0]] == pytest.approx((0.9 + 0.0) / 2)
    table = summary["intersections"][f"{gender.name} × {age.name}"]
    assert table["assessed"] == 10  # the p2 image abstained on age
    assert table["cells"][f"{g[0]} × {a[1]}"] == {"count": 9, "share": 0.9}
    assert "fewer than 10 images" in table["warning"]


def test_counterfactual_pairs_are_run_and_compared(tiny_pipeline, tmp_path):
    path = tmp_path / "pairs.yaml"
    path.write_text("name: pairs\nprompts: [a photo of a nurse]\npairs:\n  - [a photo of a nurse, a photo of a male nurse]\n")
    suite = load_suite(path, tiny_pipeline.attribute_set)
    assert suite.prompts == ("a photo of a nurse", "a photo of a male nurse") and suite.pairs == (("a photo of a nurse", "a photo of a male nurse"),)
    paths = run_suite(tiny_pipeline, suite, seeds=1, out_dir=tmp_path / "pairs", progress=False)
    pairs = json.loads(paths["json"].read_text())["counterfactual_pairs"]
    assert "Holm" in pairs["method"]
    for row in pairs["comparisons"]:  # present when both prompts had assessed images (tiny CLIP decides)
        assert row["scope"] == "a photo of a nurse vs a photo of a male nurse" and 0 <= row["p_holm"] <= 1
    path.write_text("prompts: [a]\npairs: [a, b]\n")
    with pytest.raises(AipicError, match="'pairs' must be a list of"):
        load_suite(path)


def test_the_html_report_draws_charts_with_whiskers_and_reference_marks(tiny_pipeline, tmp_path):
    paths = run_suite(tiny_pipeline, load_suite(REPO_ROOT / "audits/suites/smoke.yaml"), seeds=1, out_dir=tmp_path / "charts", progress=False)
    page = paths["html"].read_text()
    assert page.count("<svg class='chart'") == len(tiny_pipeline.attribute_set.attributes)
    assert "class='reference'" in page  # the smoke suite's gender reference (parity) is marked
    assert page.count("class='heatmap'") == len(tiny_pipeline.attribute_set.attributes)


def test_shares_are_tested_against_the_reference_with_holm_and_small_cells_are_flagged():
    from scipy.stats import binomtest

    attribute_set = load_attribute_set()
    gender = attribute_set.attributes[0]
    g = list(gender.classes)
    rows = [{"prompt": "p", "seed": n, "status": "ok", "person_present": True, gender.name: g[0] if n < 8 else g[1]} for n in range(10)]
    rows += [{"prompt": "q", "seed": 0, "status": "ok", "person_present": True, gender.name: g[0]}]
    summary = summarise(rows, attribute_set, {gender.name: {g[0]: 0.5, g[1]: 0.5}})
    cell = next(a for a in summary["per_prompt"]["p"] if a["name"] == gender.name)["shares"][g[0]]
    assert cell["p_reference"] == pytest.approx(binomtest(8, 10, 0.5).pvalue)  # 0.109375
    assert cell["p_reference"] == pytest.approx(0.109375)
    assert cell["p_reference_holm"] >= cell["p_reference"]
    assert summary["denominators"]["safety_filtered"] == 0
    assert summary["warnings"] and "fewer than 10 assessed images" in summary["warnings"][0]
