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


def report(counts: dict, sha="abc") -> dict:
    summary = [{"name": "perceived_gender_presentation", "title": "g", "assessed": sum(counts.values()), "abstained": 0, "counts": counts, "shares": {}}]
    return {"suite": {"name": "s"}, "attribute_set": {"sha256": sha}, "models": {}, "summary": {"overall": summary, "per_prompt": {"a nurse": summary}}}


def test_each_label_gets_fisher_exact_and_holm_across_the_report():
    result = compare(report({"feminine": 8, "masculine": 2}), report({"feminine": 1, "masculine": 5}))
    feminine = next(r for r in result["comparisons"] if r["label"] == "feminine" and r["scope"] == "all prompts")
    assert feminine["p"] == pytest.approx(0.034965, abs=1e-6)  # Fisher's exact test, two-sided (R: fisher.test)
    assert len(result["comparisons"]) == 4  # 2 labels × (all prompts + one prompt)
    assert feminine["p_holm"] == pytest.approx(min(1, 4 * 0.034965), abs=1e-5) and not feminine["significant"]
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
    assert (tmp_path / "cmp" / "compare.html").read_text().count("<tr") == 5
