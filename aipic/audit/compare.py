"""``aipic audit compare A B``: two audit reports side by side — each difference in shares with a 95% interval
and a test, corrected for the number of comparisons.

* Difference of two proportions: Newcombe's hybrid score interval (from the two Wilson intervals).
* Test: Fisher's exact test (two-sided) on each label's 2×2 table; a chi-square test across all labels of an
  attribute. Holm's step-down correction is applied across every comparison in the report.
* The two reports must come from the same attribute set (same sha256): otherwise their labels mean different
  things and the comparison is refused.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from aipic.audit.statistics import ALPHA, newcombe, with_holm
from aipic.common.errors import BadInput


def load_report(path: str | Path) -> dict:
    path = Path(path)
    file = path / "report.json" if path.is_dir() else path
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as error:
        raise BadInput(f"Cannot read the audit report {file}: {getattr(error, 'strerror', None) or error}") from None


def compare_summaries(scope: str, left: list, right: list) -> tuple[list, list]:
    """Per label: difference with Newcombe's interval and Fisher's exact p; per attribute: a chi-square test.
    ``left`` and ``right`` are lists of attribute summaries (report.json's "overall" or one prompt's)."""
    from scipy.stats import chi2_contingency, fisher_exact

    rows, attribute_tests = [], []
    by_name = {attribute["name"]: attribute for attribute in right}
    for attribute in left:
        other = by_name.get(attribute["name"])
        n_a, n_b = attribute["assessed"], (other or {}).get("assessed", 0)
        if not other or not n_a or not n_b:
            continue
        table = [[attribute["counts"][label] for label in attribute["counts"]], [other["counts"].get(label, 0) for label in attribute["counts"]]]
        kept = [i for i in range(len(table[0])) if table[0][i] + table[1][i] > 0]
        if len(kept) > 1:
            chi2, p_chi2, dof, _ = chi2_contingency([[row[i] for i in kept] for row in table])
            attribute_tests.append({"scope": scope, "attribute": attribute["name"], "chi2": float(chi2), "dof": int(dof), "p": float(p_chi2)})
        for label, count_a in attribute["counts"].items():
            count_b = other["counts"].get(label, 0)
            difference, low, high = newcombe(count_a, n_a, count_b, n_b)
            _, p = fisher_exact([[count_a, n_a - count_a], [count_b, n_b - count_b]])
            rows.append({"scope": scope, "attribute": attribute["name"], "label": label, "count_a": count_a, "n_a": n_a, "count_b": count_b, "n_b": n_b,
                         "share_a": count_a / n_a, "share_b": count_b / n_b, "difference": difference, "ci_low": low, "ci_high": high, "p": float(p)})
    return rows, attribute_tests


def compare(a: dict, b: dict, name_a: str = "A", name_b: str = "B") -> dict:
    sha_a, sha_b = a.get("attribute_set", {}).get("sha256"), b.get("attribute_set", {}).get("sha256")
    if sha_a != sha_b:
        raise BadInput(f"{name_a} and {name_b} used different attribute sets ({(sha_a or '?')[:12]}… vs {(sha_b or '?')[:12]}…): their labels are not comparable.")
    scopes = [("all prompts", a["summary"]["overall"], b["summary"]["overall"])]
    for prompt, summaries in a["summary"]["per_prompt"].items():
        if prompt in b["summary"]["per_prompt"]:
            scopes.append((prompt, summaries, b["summary"]["per_prompt"][prompt]))
    rows, attribute_tests = [], []
    for scope, left, right in scopes:
        scope_rows, scope_tests = compare_summaries(scope, left, right)
        rows += scope_rows
        attribute_tests += scope_tests
    with_holm(rows, attribute_tests)
    return {
        "a": {"name": name_a, "suite": a["suite"]["name"], "models": a.get("models")},
        "b": {"name": name_b, "suite": b["suite"]["name"], "models": b.get("models")},
        "attribute_set": a.get("attribute_set"),
        "method": "difference of shares among assessed images with Newcombe's hybrid score 95% interval; Fisher's exact test per label, "
                  "chi-square per attribute; Holm correction across all comparisons in this report",
        "alpha": ALPHA,
        "comparisons": rows,
        "attribute_tests": attribute_tests,
    }


def render_html(result: dict) -> str:
    e = html.escape

    def pct(value):
        return f"{value:+.1%}" if value is not None else "—"

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>aipic audit comparison</title><style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}td:first-child,th:first-child{text-align:left}.sig{background:#fff3cd}</style></head><body>",
        f"<h1>Audit comparison: {e(result['a']['name'])} vs {e(result['b']['name'])}</h1><p>{e(result['method'])}.</p>",
        "<table><tr><th>scope</th><th>attribute</th><th>label</th><th>A</th><th>B</th><th>difference</th><th>95% CI</th><th>p</th><th>p (Holm)</th></tr>",
    ]
    for row in result["comparisons"]:
        parts.append(
            f"<tr class='{'sig' if row['significant'] else ''}'><td>{e(row['scope'])}</td><td>{e(row['attribute'])}</td><td>{e(row['label'])}</td>"
            f"<td>{row['count_a']}/{row['n_a']}</td><td>{row['count_b']}/{row['n_b']}</td><td>{pct(row['difference'])}</td>"
            f"<td>{pct(row['ci_low'])} – {pct(row['ci_high'])}</td><td>{row['p']:.4f}</td><td>{row['p_holm']:.4f}</td></tr>"
        )
    parts.append("</table></body></html>")
    return "\n".join(parts)
