"""aipic audit compare: numbers checked against published and hand-computed values."""

import json

import pytest

from aipic.cli import main
from aipic.audit.compare import compare
from aipic.audit.statistics import holm, newcombe
from aipic.common.errors import AipicError


def test_newcombe_interval_matches_the_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873, method 10: 56/70 vs 48/80 -> +0.2000 (0.0524, 0.3339)
    difference, low, high = newcombe(56, 70, 48, 80)
    assert difference == pytest.approx(0.2)
    assert low == pytest.approx(0.0524, abs=1e-4) and high == pytest.approx(0.3339, abs=1e-4)


def test_holm_by_hand():
    # sorted: 0.01*4 = 0.04; 0.03*3 = 0.09; 0.04*2 = 0.08 -> 0.09 (monotone); 0.2*1 = 0.2
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])


CLIP = {"catalog_key": "clip", "name": "ViT-B-32", "revision": "laion2b_s34b_b79k", "placeholder": False}


def report(counts: dict, sha="abc", per_prompt: dict | None = None, complete: bool = True, clip: dict = CLIP) -> dict:
    def attribute(c: dict) -> dict:
        return {"name": "perceived_gender_presentation", "title": "g", "assessed": sum(c.values()), "abstained": 0, "counts": c, "shares": {}}

    prompts = {prompt: [attribute(c)] for prompt, c in (per_prompt or {"a nurse": counts}).items()}
    return {"suite": {"name": "s"}, "attribute_set": {"sha256": sha}, "models": {"clip": clip}, "complete": complete,
            "summary": {"overall": [attribute(counts)], "per_prompt": prompts}}


def test_each_label_gets_fisher_exact_and_holm_across_the_report():
    result = compare(report({"feminine": 8, "masculine": 2}), report({"feminine": 1, "masculine": 5}))
    feminine = next(r for r in result["comparisons"] if r["label"] == "feminine" and r["scope"] == "all prompts")
    assert feminine["p"] == pytest.approx(0.034965, abs=1e-6)  # Fisher's exact test, two-sided (R: fisher.test)
    assert len(result["comparisons"]) == 4  # 2 labels × (all prompts + one prompt), shown
    # a two-label attribute is one test per scope: a Holm family of 2, not 4
    assert feminine["p_holm"] == pytest.approx(min(1, 2 * 0.034965), abs=1e-5) and not feminine["significant"]
    masculine = next(r for r in result["comparisons"] if r["label"] == "masculine" and r["scope"] == "all prompts")
    assert masculine["same_test_as"] == "feminine" and masculine["p_holm"] == feminine["p_holm"]
    assert result["attribute_tests"] and 0 < result["attribute_tests"][0]["p"] < 1


def test_reports_from_different_attribute_sets_are_refused():
    with pytest.raises(AipicError, match="different attribute sets"):
        compare(report({"feminine": 1, "masculine": 1}, sha="one"), report({"feminine": 1, "masculine": 1}, sha="two"))


def test_the_cli_reads_two_report_folders(tmp_path, capsys):
    for name, counts in (("a", {"feminine": 40, "masculine": 10}), ("b", {"feminine": 10, "masculine": 40})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(report(counts)))
    assert main(["audit", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "significant at 0.05 after Holm" in out and "feminine: 80.0% vs 20.0%" in out
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert "Pearson chi-square" in page and "Cochran–Mantel–Haenszel" in page  # the attribute tests are shown, named
    assert main(["audit", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp")]) == 2  # never overwritten
    assert "already holds a comparison" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["audit", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_a_tilt_shared_by_every_prompt_is_found_by_the_stratified_test():
    # 12 prompts, each 6 of 12 feminine in A and 3 of 12 in B (−25 points everywhere): no prompt alone is significant,
    # Cochran–Mantel–Haenszel over the prompts is (statsmodels StratifiedTable.test_null_odds(correction=True))
    prompts = {f"prompt {k}": None for k in range(12)}
    a = report({"feminine": 72, "masculine": 72}, per_prompt={p: {"feminine": 6, "masculine": 6} for p in prompts})
    b = report({"feminine": 36, "masculine": 108}, per_prompt={p: {"feminine": 3, "masculine": 9} for p in prompts})
    result = compare(a, b)
    per_prompt = [r for r in result["comparisons"] if r["scope"] != "all prompts" and "same_test_as" not in r]
    assert len(per_prompt) == 12 and not any(r["significant"] for r in per_prompt)
    (cmh,) = result["stratified_tests"]
    assert cmh["test"].startswith("Cochran–Mantel–Haenszel") and cmh["prompts"] == 12
    assert cmh["statistic"] == pytest.approx(306.25 / (12 * 19440 / 13248))  # by hand: (|Σ(a − E)| − ½)² / Σ var = (18 − ½)² / 17.609 and cmh["p"] == pytest.approx(3.04e-5, rel=0.01) and cmh["significant"]


def test_generalised_cmh_matches_agrestis_job_satisfaction_example():
    from aipic.audit.statistics import cmh_binary, generalized_cmh

    # Agresti (2002), Categorical Data Analysis, Table 7.8 (income × job satisfaction by gender): general association
    # statistic 10.2001, df 9, p 0.3345 (Table 7.12; R: mantelhaen.test(Satisfaction))
    female = [[1, 3, 11, 2], [2, 3, 17, 3], [0, 1, 8, 5], [0, 2, 4, 2]]
    male = [[1, 1, 2, 1], [0, 3, 5, 1], [0, 0, 7, 3], [0, 1, 9, 6]]
    result = generalized_cmh([female, male])
    assert result["statistic"] == pytest.approx(10.2001, abs=1e-4) and result["dof"] == 9 and result["p"] == pytest.approx(0.3345, abs=1e-4)
    # Agresti (1990), penicillin and rabbits, 2×2×5: Mantel–Haenszel X² = 3.9286, p = 0.04747 (R: mantelhaen.test(Rabbits))
    rabbits = [[[0, 6], [0, 5]], [[3, 3], [0, 6]], [[6, 0], [2, 4]], [[5, 1], [6, 0]], [[2, 0], [5, 0]]]
    cmh = cmh_binary(rabbits)
    assert cmh["statistic"] == pytest.approx(3.9286, abs=1e-4) and cmh["p"] == pytest.approx(0.04747, abs=1e-5)


def test_small_expected_counts_get_an_exact_test_named_in_the_result():
    from aipic.audit.statistics import association_test

    result = association_test([[3, 0, 0], [0, 2, 1]])  # chi-square would say 0.0498; the exact test says 0.100
    assert result["p"] == pytest.approx(0.1, abs=1e-9) and result["test"].startswith("Fisher–Freeman–Halton")
    large = association_test([[40, 10], [10, 40]])
    assert large["test"] == "Pearson chi-square" and large["chi2"] == pytest.approx(36.0) and large["p"] == pytest.approx(1.9732e-9, rel=1e-4)  # by hand: χ² = 36 on 1 df


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda b: b.update(complete=False), "incomplete run"),
        (lambda b: b["models"].update(clip={**CLIP, "name": "ViT-L-14"}), "different CLIP classifiers"),
        (lambda b: b.pop("attribute_set"), "does not say which attribute set"),
        (lambda b: b["summary"]["per_prompt"].update({"a pilot": b["summary"]["per_prompt"]["a nurse"]}), "ran different prompts"),
    ],
)
def test_what_is_not_comparable_is_refused(change, message):
    b = report({"feminine": 1, "masculine": 1})
    change(b)
    with pytest.raises(AipicError, match=message):
        compare(report({"feminine": 1, "masculine": 1}), b)


def test_shared_prompts_restricts_the_comparison_and_says_so():
    a = report({"feminine": 9, "masculine": 11}, per_prompt={"a nurse": {"feminine": 8, "masculine": 2}, "a pilot": {"feminine": 1, "masculine": 9}})
    b = report({"feminine": 3, "masculine": 7}, per_prompt={"a nurse": {"feminine": 3, "masculine": 7}})
    result = compare(a, b, shared_prompts=True)
    assert result["prompts"] == ["a nurse"] and "Restricted to the 1 prompt(s)" in result["restrictions"][0] and "a pilot" in result["restrictions"][0]
    pooled = next(r for r in result["comparisons"] if r["scope"] == "all prompts" and r["label"] == "feminine")
    assert (pooled["count_a"], pooled["n_a"]) == (8, 10)  # "all prompts" recomputed over the shared prompt only


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2]", "not a JSON object"),
        ('{"suite": {}}', "no summary"),
        (json.dumps(report({"feminine": 5, "masculine": 1})).replace('"feminine": 5', '"feminine": 50'), "from 0 to 6"),
        (json.dumps(report({"feminine": 5, "masculine": 1})).replace('"feminine": 5', '"feminine": -1'), "from 0 to 6"),
        (json.dumps(report({"feminine": 5, "masculine": 1})).replace('"feminine": 5', '"feminine": "5"'), "whole number"),
    ],
)
def test_a_malformed_report_is_one_clear_error(tmp_path, capsys, content, message):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "report.json").write_text(json.dumps(report({"feminine": 5, "masculine": 1})))
    (tmp_path / "bad.json").write_text(content)
    assert main(["audit", "compare", str(tmp_path / "a"), str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert message in err and "unexpected" not in err.lower()
