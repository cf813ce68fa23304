"""``aipic audit compare A B``: two audit reports side by side — each difference in shares with a 95% interval
and a test, corrected for the number of comparisons — only when the two are comparable.

* Comparable: the same attribute set (the hash of its meaning), the same CLIP classifier, both runs complete,
  and the same prompts. Otherwise the comparison is refused; ``shared_prompts`` restricts it to the prompts both
  ran (said in the result), with "all prompts" recomputed from those.
* Difference of two proportions: Newcombe's hybrid score interval (from the two Wilson intervals).
* Per label: Fisher's exact test on its 2×2 table. A two-label attribute is one test, not two (the labels'
  tables are the same table), so it enters the Holm family once.
* Per attribute and scope: Pearson's chi-square, or an exact test when expected counts are small (the test that
  ran is named).
* Across prompts, per attribute: Cochran–Mantel–Haenszel for a two-label attribute, the generalised CMH test for
  more labels — the power to see a tilt that every prompt shares.
* Holm's step-down correction within each family: per-label rows, per-attribute tests, stratified tests.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from scipy.stats import fisher_exact

from aipic.audit.statistics import ALPHA, association_test, cmh_binary, generalized_cmh, holm_into, newcombe
from aipic.common.errors import BadInput

CLASSIFIER_KEYS = ("catalog_key", "name", "revision", "placeholder")


def load_report(path: str | Path) -> dict:
    """A report.json (or its folder), checked enough to compare: every count a whole number from 0 to its n."""
    path = Path(path)
    file = path / "report.json" if path.is_dir() else path
    try:
        report = json.loads(file.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (OSError, ValueError) as error:
        raise BadInput(f"Cannot read the audit report {file}: {getattr(error, 'strerror', None) or error}") from None
    problem = _malformed(report)
    if problem:
        raise BadInput(f"{file} is not an aipic audit report: {problem}.")
    return report


def _malformed(report) -> str | None:
    if not isinstance(report, dict):
        return "it is not a JSON object"
    summary = report.get("summary")
    if not isinstance(summary, dict) or not isinstance(summary.get("overall"), list) or not isinstance(summary.get("per_prompt"), dict):
        return "it has no summary with 'overall' and 'per_prompt'"
    for scope, attributes in [("all prompts", summary["overall"]), *summary["per_prompt"].items()]:
        if not isinstance(attributes, list):
            return f"the summary of {scope!r} is not a list of attributes"
        for attribute in attributes:
            if not isinstance(attribute, dict) or not isinstance(attribute.get("name"), str) or not isinstance(attribute.get("counts"), dict):
                return f"an attribute of {scope!r} has no name or counts"
            n = attribute.get("assessed")
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                return f"{scope!r} / {attribute['name']}: 'assessed' must be a whole number ≥ 0 (got {n!r})"
            for label, count in attribute["counts"].items():
                if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= n:
                    return f"{scope!r} / {attribute['name']} / {label}: the count must be a whole number from 0 to {n} (got {count!r})"
            if sum(attribute["counts"].values()) != n:
                return f"{scope!r} / {attribute['name']}: the counts add up to {sum(attribute['counts'].values())}, not the {n} assessed images"
    labels = {attribute["name"]: list(attribute["counts"]) for attribute in summary["overall"]}
    for prompt, attributes in summary["per_prompt"].items():
        for attribute in attributes:
            if labels.get(attribute["name"]) != list(attribute["counts"]):
                return f"{prompt!r} / {attribute['name']}: its labels differ from the report's 'all prompts' labels"
    if summary["per_prompt"]:
        for attribute in summary["overall"]:
            for label in attribute["counts"]:
                total = sum(a["counts"][label] for attributes in summary["per_prompt"].values() for a in attributes if a["name"] == attribute["name"])
                if total != attribute["counts"][label]:
                    return f"'all prompts' / {attribute['name']} / {label}: {attribute['counts'][label]} is not the sum of the prompts' counts ({total})"
    if not isinstance(report.get("complete"), bool):
        return "'complete' must be true or false"
    return None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number a report can hold")


def _label_test(count_a: int, n_a: int, count_b: int, n_b: int) -> float:
    return float(fisher_exact([[count_a, n_a - count_a], [count_b, n_b - count_b]])[1])


def compare_summaries(scope: str, left: list, right: list) -> tuple[list, list]:
    """Per label: difference with Newcombe's interval and Fisher's exact p; per attribute: a chi-square or exact
    test. ``left`` and ``right`` are lists of attribute summaries (report.json's "overall" or one prompt's). The
    second label of a two-label attribute is marked ``same_test_as`` the first: it is not a second test."""
    rows, attribute_tests = [], []
    by_name = {attribute["name"]: attribute for attribute in right}
    for attribute in left:
        other = by_name.get(attribute["name"])
        n_a, n_b = attribute["assessed"], (other or {}).get("assessed", 0)
        if not other or not n_a or not n_b:
            continue
        labels = list(attribute["counts"])
        table = [[attribute["counts"][label] for label in labels], [other["counts"].get(label, 0) for label in labels]]
        test = association_test(table)
        attribute_tests.append({"scope": scope, "attribute": attribute["name"], **test})  # untested ones too, with why
        for index, label in enumerate(labels):
            count_a, count_b = attribute["counts"][label], other["counts"].get(label, 0)
            difference, low, high = newcombe(count_a, n_a, count_b, n_b)
            row = {"scope": scope, "attribute": attribute["name"], "label": label, "count_a": count_a, "n_a": n_a, "count_b": count_b, "n_b": n_b,
                   "share_a": count_a / n_a, "share_b": count_b / n_b, "difference": difference, "ci_low": low, "ci_high": high,
                   "p": _label_test(count_a, n_a, count_b, n_b), "test": "Fisher's exact test"}
            if len(labels) == 2 and index == 1:
                row["same_test_as"] = labels[0]
            rows.append(row)
    return rows, attribute_tests


def holm_rows(rows: list, tests: list) -> None:
    """Holm's correction, in place, across per-label rows (a two-label attribute counted once) and, separately,
    across per-attribute tests."""
    family = [row for row in rows if "same_test_as" not in row]
    holm_into(family, "p", "p_holm")
    first = {(row["scope"], row["attribute"]): row for row in family}
    for row in rows:
        if "same_test_as" in row:
            row["p_holm"] = first[(row["scope"], row["attribute"])]["p_holm"]
    for row in rows:
        row["significant"] = row["p_holm"] < ALPHA
    tested = [test for test in tests if test["p"] is not None]
    holm_into(tested, "p", "p_holm")
    for test in tests:
        test.setdefault("p_holm", None)
        test["significant"] = test["p_holm"] is not None and test["p_holm"] < ALPHA


def stratified_tests(a: dict, b: dict, prompts: list[str]) -> list[dict]:
    """Per attribute, one test across the prompts of A against B: CMH for two labels, generalised CMH beyond."""
    out = []
    for attribute in a["summary"]["overall"]:
        name, labels = attribute["name"], list(attribute["counts"])
        tables = []
        for prompt in prompts:
            left = _attribute(a["summary"]["per_prompt"][prompt], name)
            right = _attribute(b["summary"]["per_prompt"][prompt], name)
            if left and right and left["assessed"] + right["assessed"] > 0:
                tables.append([[left["counts"].get(label, 0) for label in labels], [right["counts"].get(label, 0) for label in labels]])
        if not tables:
            continue
        if len(labels) == 2:
            test = cmh_binary([[[t[0][0], t[0][1]], [t[1][0], t[1][1]]] for t in tables])
        else:
            test = generalized_cmh(tables)
        out.append({"attribute": name, "prompts": len(tables), **test})
    tested = [test for test in out if test["p"] is not None]
    holm_into(tested, "p", "p_holm")
    for test in out:
        test.setdefault("p_holm", None)
        test["significant"] = test["p_holm"] is not None and test["p_holm"] < ALPHA
    return out


def _attribute(summaries: list, name: str) -> dict | None:
    return next((attribute for attribute in summaries if attribute["name"] == name), None)


def _pooled(per_prompt: dict, prompts: list[str], template: list) -> list:
    """"All prompts" over a subset of prompts: the per-prompt counts summed."""
    out = []
    for attribute in template:
        entries = [entry for prompt in prompts if (entry := _attribute(per_prompt[prompt], attribute["name"]))]
        out.append({"name": attribute["name"], "title": attribute.get("title", attribute["name"]), "assessed": sum(entry["assessed"] for entry in entries),
                    "counts": {label: sum(entry["counts"].get(label, 0) for entry in entries) for label in attribute["counts"]}})
    return out


def comparability(a: dict, b: dict, name_a: str, name_b: str, shared_prompts: bool) -> list[str]:
    """Why A and B cannot be compared (refused), or what restricting them changed (said in the result)."""
    said = []
    set_a, set_b = (a.get("attribute_set") or {}).get("sha256"), (b.get("attribute_set") or {}).get("sha256")
    if not set_a or not set_b:
        raise BadInput(f"{name_a if not set_a else name_b} does not say which attribute set it used; its labels cannot be matched.")
    if set_a != set_b:
        raise BadInput(f"{name_a} and {name_b} used different attribute sets ({set_a[:12]}… vs {set_b[:12]}…): their labels are not comparable.")
    clip_a, clip_b = ((report.get("models") or {}).get("clip") or {} for report in (a, b))
    if any(clip_a.get(key) != clip_b.get(key) for key in CLASSIFIER_KEYS):
        raise BadInput(f"{name_a} and {name_b} were read by different CLIP classifiers ({clip_a.get('name') or '?'} {clip_a.get('revision') or ''} vs "
                       f"{clip_b.get('name') or '?'} {clip_b.get('revision') or ''}): a difference could be the classifier's, not the generator's.")
    for name, report in ((name_a, a), (name_b, b)):
        if report.get("complete") is not True:
            raise BadInput(f"{name} is an incomplete run; finish it with aipic audit --resume before comparing.")
    prompts_a, prompts_b = list(a["summary"]["per_prompt"]), list(b["summary"]["per_prompt"])
    if set(prompts_a) != set(prompts_b):
        shared = [prompt for prompt in prompts_a if prompt in prompts_b]
        if not shared_prompts:
            raise BadInput(f"{name_a} and {name_b} ran different prompts ({len(prompts_a)} and {len(prompts_b)}, {len(shared)} shared): "
                           "their 'all prompts' shares are not comparable. Use --shared-prompts to compare only the prompts both ran.")
        if not shared:
            raise BadInput(f"{name_a} and {name_b} have no prompt in common.")
        said.append(f"Restricted to the {len(shared)} prompt(s) both reports ran; 'all prompts' means those. Left out: "
                    + ", ".join(sorted(set(prompts_a) ^ set(prompts_b))) + ".")
    return said


def compare(a: dict, b: dict, name_a: str = "A", name_b: str = "B", shared_prompts: bool = False) -> dict:
    restrictions = comparability(a, b, name_a, name_b, shared_prompts)
    prompts = [prompt for prompt in a["summary"]["per_prompt"] if prompt in b["summary"]["per_prompt"]]
    if restrictions:
        overall_a = _pooled(a["summary"]["per_prompt"], prompts, a["summary"]["overall"])
        overall_b = _pooled(b["summary"]["per_prompt"], prompts, b["summary"]["overall"])
    else:
        overall_a, overall_b = a["summary"]["overall"], b["summary"]["overall"]
    scopes = [("all prompts", overall_a, overall_b)] + [(prompt, a["summary"]["per_prompt"][prompt], b["summary"]["per_prompt"][prompt]) for prompt in prompts]
    rows, attribute_tests = [], []
    for scope, left, right in scopes:
        scope_rows, scope_tests = compare_summaries(scope, left, right)
        rows += scope_rows
        attribute_tests += scope_tests
    holm_rows(rows, attribute_tests)
    return {
        "a": {"name": name_a, "suite": (a.get("suite") or {}).get("name"), "models": a.get("models")},
        "b": {"name": name_b, "suite": (b.get("suite") or {}).get("name"), "models": b.get("models")},
        "attribute_set": a.get("attribute_set"),
        "prompts": prompts,
        "restrictions": restrictions,
        "method": "difference of shares among assessed images with Newcombe's hybrid score 95% interval; Fisher's exact test per label (a two-label "
                  "attribute counts once); per attribute, Pearson's chi-square or, when expected counts are small, an exact or Monte Carlo test (named "
                  "in each result); across prompts, Cochran–Mantel–Haenszel (two labels) or its generalisation (more); Holm's correction within each family",
        "alpha": ALPHA,
        "comparisons": rows,
        "attribute_tests": attribute_tests,
        "stratified_tests": stratified_tests(a, b, prompts),
    }


def _words(identifier) -> str:
    return str(identifier).replace("_", " ")


def render_html(result: dict) -> str:
    e = html.escape

    def points(value):
        return f"{value * 100:+.1f} points" if value is not None else "—"

    def p_text(value):
        return "—" if value is None else ("< 0.0001" if value < 1e-4 else f"{value:.4f}")

    def finding(row):
        if row.get("p_holm") is None:
            return "not tested"
        return "differs (significant after Holm's correction)" if row["significant"] else "not significant after Holm's correction"

    def models(side):
        clip = ((side.get("models") or {}).get("clip") or {})
        generator = ((side.get("models") or {}).get("text_to_image") or {})
        placeholder = " — tiny random-weight placeholders: the numbers are meaningless" if clip.get("placeholder") or generator.get("placeholder") else ""
        return f"{e(str(side['name']))}: generator {e(str(generator.get('label') or '?'))}, audit model {e(str(clip.get('label') or clip.get('name') or '?'))}{placeholder}"

    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' content='width=device-width, initial-scale=1'><title>aipic audit comparison</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1f1f1f}.wide{overflow-x:auto}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;padding:3px 7px;text-align:right}td:first-child,th:first-child{text-align:left}"
        ".sig{background:#fff3cd}caption{text-align:left;font-weight:600}.warn{background:#fff3cd;border:1px solid #b38f00;padding:.5em 1em}</style></head><body><main>",
        f"<h1>Audit comparison: {e(str(result['a']['name']))} vs {e(str(result['b']['name']))}</h1><p>{e(result['method'])}.</p>",
        f"<ul><li>{models(result['a'])}</li><li>{models(result['b'])}</li></ul>",
        *(f"<p class='warn'>{e(note)}</p>" for note in result.get("restrictions", [])),
        "<h2>Across prompts</h2><div class='wide'><table><caption>One test per attribute over every prompt</caption><tr><th>attribute</th><th>test</th><th>statistic</th><th>df</th><th>prompts</th><th>p</th><th>p (Holm)</th><th>finding</th></tr>",
    ]
    for test in result.get("stratified_tests", []):
        statistic = "—" if test.get("statistic") is None else f"{test['statistic']:.3f}"
        parts.append(f"<tr class='{'sig' if test['significant'] else ''}'><td>{e(_words(test['attribute']))}</td><td>{e(test['test'])}</td><td>{statistic}</td><td>{test['dof']}</td>"
                     f"<td>{test['prompts']}</td><td>{p_text(test['p'])}</td><td>{p_text(test['p_holm'])}</td><td>{finding(test)}</td></tr>")
    parts.append("</table></div><h2>Each attribute, per scope</h2><div class='wide'><table><caption>Association of report and label</caption><tr><th>scope</th><th>attribute</th><th>test</th><th>chi-square</th><th>df</th><th>p</th><th>p (Holm)</th><th>finding</th></tr>")
    for test in result["attribute_tests"]:
        statistic = "—" if test.get("chi2") is None else f"{test['chi2']:.3f}"
        parts.append(f"<tr class='{'sig' if test['significant'] else ''}'><td>{e(test['scope'])}</td><td>{e(_words(test['attribute']))}</td><td>{e(test['test'])}</td><td>{statistic}</td><td>{test['dof']}</td>"
                     f"<td>{p_text(test['p'])}</td><td>{p_text(test['p_holm'])}</td><td>{finding(test)}</td></tr>")
    parts.append("</table></div><h2>Each label</h2><div class='wide'><table><caption>Differences of shares (A − B)</caption><tr><th>scope</th><th>attribute</th><th>label</th><th>A</th><th>B</th><th>difference</th><th>95% CI</th><th>p</th><th>p (Holm)</th><th>finding</th></tr>")
    for row in result["comparisons"]:
        same = f" (the same test as {e(_words(row['same_test_as']))})" if row.get("same_test_as") else ""
        parts.append(
            f"<tr class='{'sig' if row['significant'] else ''}'><td>{e(row['scope'])}</td><td>{e(_words(row['attribute']))}</td><td>{e(_words(row['label']))}</td>"
            f"<td>{row['count_a']}/{row['n_a']}</td><td>{row['count_b']}/{row['n_b']}</td><td>{points(row['difference'])}</td>"
            f"<td>{points(row['ci_low'])} to {points(row['ci_high'])}</td><td>{p_text(row['p'])}{same}</td><td>{p_text(row['p_holm'])}</td><td>{finding(row)}</td></tr>"
        )
    parts.append("</table></div></main></body></html>")
    return "\n".join(parts)
