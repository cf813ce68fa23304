"""The audit report a reviewer reads: report.html (self-contained, charts as inline SVG) and report.json, from the
numbers aipic.audit.summary computed. Rendering only."""

from __future__ import annotations

import html
import json
from pathlib import Path

from aipic.common.files import write_atomically


ALPHA = 0.05
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#1f1f1f;line-height:1.45}"
    ".wide{overflow-x:auto;max-width:100%}table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "td,th{border:1px solid #bbb;padding:4px 8px;text-align:right;vertical-align:top}th:first-child,td:first-child{text-align:left}"
    ".warn{background:#fff3cd;border:1px solid #b38f00;padding:.6em 1em}.finding{font-weight:600}caption{text-align:left;font-weight:600;padding:.3em 0}"
    "td.heat{min-width:6em}small{color:#444}"
)


def pct(value, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.1%}" if signed else f"{value:.1%}"


def points(value) -> str:
    return "—" if value is None else f"{value * 100:+.1f} points"


def p_text(value) -> str:
    if value is None:
        return "—"
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def words(identifier: str) -> str:
    """A label or attribute name as words: ``young_adult`` → "young adult"."""
    return identifier.replace("_", " ")


def verdict(p_holm) -> str:
    """What a test lets a reviewer say, and no more: a p above the threshold is not evidence of no difference."""
    if p_holm is None:
        return "not tested"
    return "differs from the reference (significant after Holm's correction)" if p_holm < ALPHA else "not significant after Holm's correction"


def p_is(value) -> str:
    """A p-value inside a sentence: "p = 0.0123" or "p < 0.0001"."""
    return "p = —" if value is None else ("p < 0.0001" if value < 1e-4 else f"p = {value:.4f}")


def interval(low, high, share) -> str:
    return "—" if share is None else f"{pct(low)} – {pct(high)}"


def _table(caption: str, head: list[str], rows: list[list], first_header: bool = True) -> str:
    e = html.escape
    out = [f"<div class='wide'><table><caption>{e(caption)}</caption><tr>" + "".join(f"<th scope='col'>{e(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        cells = [f"<th scope='row'>{cell}</th>" if i == 0 and first_header else f"<td>{cell}</td>" for i, cell in enumerate(row)]
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "".join(out) + "</table></div>"


def render_html(report: dict) -> str:
    """A self-contained HTML page of the report: every number a conclusion rests on, in words a reviewer can quote."""
    e = html.escape
    s = report["summary"]
    titles = {attribute["name"]: attribute["title"] for attribute in s["overall"]}
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>aipic bias audit — {e(report['suite']['name'])}</title><style>{STYLE}</style></head><body><main>",
        f"<h1>Bias audit: {e(report['suite']['name'])}</h1>",
        f"<p>{e(report['suite']['description'])}</p>",
    ]
    if not report["complete"]:
        parts.append(f"<p class='warn'>Incomplete run: {s['images']} of {report['planned_images']} planned images were made and audited before it stopped.</p>")
    for note in report.get("notes", []) + report.get("method_notes", []):
        parts.append(f"<p class='warn'>{e(note)}</p>")
    provenance = report["suite"].get("reference_provenance") or {}
    if provenance:
        link = f" <a href='{e(provenance['link'])}'>{e(provenance['link'])}</a>" if provenance.get("link") else ""
        parts.append(f"<p><strong>Reference:</strong> {e(provenance.get('source', ''))}" + (f", {provenance['year']}" if provenance.get("year") else "")
                     + f" (kind: {e(provenance.get('kind', ''))}).{link} {e(provenance.get('note', ''))}</p>")
    parts.append(
        "<h2>How to read this report</h2><p>Attributes are <em>perceived</em> by a CLIP model from pixels: they are not anyone's identity, and they carry "
        "the model's own biases. A share is among the images where a person was detected and the audit did not abstain; its interval is the Wilson 95% "
        "interval. Each share is tested against its reference with the exact binomial test; the pooled share over prompts with per-prompt references is "
        "tested with one stratified test of every prompt's count against its own reference. p-values are Holm-corrected across "
        f"{e(s.get('holm_family', 'every test in the report'))}. A difference is reported only when the Holm-corrected p is below {ALPHA}.</p>"
    )
    if report.get("rescored_from"):
        parts.append(f"<p class='warn'>A re-score of the run in {e(str(report['rescored_from'].get('folder')))} (its settings "
                     f"{e(str(report['rescored_from'].get('settings_sha256') or '')[:12])}…): the same images and readings, with the thresholds below.</p>")
    parts.append(_thresholds(report.get("thresholds") or {}, titles))
    parts.append(_mapping(provenance))
    if report.get("classifier_limits"):
        parts.append("<details><summary>The classifier's known limits</summary><ul>" + "".join(f"<li>{e(limit)}</li>" for limit in report["classifier_limits"]) + "</ul></details>")
    for note in report.get("sample_size", []):
        parts.append(f"<p>{e(note)}</p>")
    for warning in s.get("warnings", []):
        parts.append(f"<p class='warn'>{e(warning)}</p>")
    parts.append(f"<p>Images made: {s['images']} · with a person: {s['with_person']} · seeds per prompt: {report['seeds']} · generator: "
                 f"{e(report['models']['text_to_image']['label'])} · audit model: {e(report['models']['clip']['label'])}</p>")
    parts.append(_accounting(s, titles))
    observed = provenance.get("kind") not in (None, "parity", "stated")
    parts.append("<h2>All prompts</h2>")
    for attribute in s["overall"]:
        parts.append(f"<h3>{e(attribute['title'])}</h3>" + shares_chart(attribute) + _shares_table(attribute, "All prompts") + _sentences(attribute, "all prompts", observed))
    parts.append(_equal_weight(s, titles))
    parts.append("<h2>Per prompt</h2>")
    for index, attribute in enumerate(s["overall"]):
        parts.append(f"<h3>{e(attribute['title'])}</h3>" + heat_map(attribute, {prompt: summaries[index] for prompt, summaries in s["per_prompt"].items()}))
    for prompt, summaries in s["per_prompt"].items():
        parts.append(f"<details><summary>{e(prompt)}: every number</summary>" + "".join(_shares_table(a, f"{prompt} — {a['title']}") for a in summaries)
                     + "".join(_sentences(a, prompt, observed) for a in summaries) + "</details>")
    parts.append(_intersections(s))
    if report.get("counterfactual_pairs"):
        parts.append(_pairs(report["counterfactual_pairs"], titles))
    if report.get("corrected_shares"):
        parts.append(_corrected(report["corrected_shares"], titles))
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _thresholds(thresholds: dict, titles: dict) -> str:
    if not thresholds:
        return ""
    rows = [["person gate", f"a person is assessed when the audit model gives one at least {pct(thresholds.get('person_gate'))}", ""]]
    for name, entry in thresholds.items():
        if isinstance(entry, dict):
            rows.append([html.escape(titles.get(name, words(name))), f"abstains below {pct(entry.get('abstain_below'))}", f"or when the top two are within {pct(entry.get('min_margin'))}"])
    return _table("The thresholds this report used (rows.csv keeps every probability: aipic audit rescore re-reads them)", ["reading", "threshold", "margin"], rows)


def _mapping(provenance: dict) -> str:
    """Which reference each prompt was compared with: the occupation (BLS) or the condition (Fitzpatrick 17k), and
    the prompts compared only in pairs."""
    e = html.escape
    found = provenance.get("occupations") or provenance.get("conditions") or {}
    parts = []
    if found:
        rows = [[e(prompt), e(str(what))] for prompt, what in found.items()]
        parts.append("<details><summary>Which reference entry each prompt was compared with</summary>" + _table("Prompt → reference entry", ["prompt", "entry"], rows) + "</details>")
    stated = provenance.get("stated_by_prompt") or {}
    if stated:
        parts.append("<p>Compared in pairs only, not with a reference (they name the skin they ask for): " + e("; ".join(stated)) + ".</p>")
    if provenance.get("citation"):
        parts.append(f"<p><small>Source and licence: {e(str(provenance['citation']))}</small></p>")
    return "".join(parts)


def _accounting(s: dict, titles: dict) -> str:
    """Every planned image, per prompt and in total, a prompt whose images all failed included; then the failures."""
    e = html.escape
    head = ["prompt", "planned", "not made", "failed", "held back by the safety filter", "made", "no person", "with a person"]
    head += [f"{title}: assessed / abstained" for title in titles.values()]

    def row(label: str, d: dict) -> list:
        return [e(label), d["planned"], d.get("not_made", 0), d["failed"], d.get("safety_filtered", 0), d["generated"], d["no_person"], d["with_person"],
                *(f"{d[name]['assessed']} / {d[name]['abstained']}" for name in titles)]

    rows = [row(prompt, d) for prompt, d in s["denominators_per_prompt"].items()] + [row("All prompts", s["denominators"])]
    out = "<h2>Every image accounted for</h2>" + _table("Planned images and what became of each", head, rows)
    if s.get("failures"):
        failures = [[e(f["prompt"]), f["seed"], e("held back by the safety filter" if f.get("status") == "held_back" else "failed"), e(f.get("reason") or "")] for f in s["failures"]]
        out += f"<details open><summary>{len(failures)} image(s) not audited, and why</summary>" + _table("Images not audited", ["prompt", "seed", "what happened", "reason"], failures) + "</details>"
    return out


def _shares_table(attribute: dict, scope: str) -> str:
    rows = []
    for label, cell in attribute["shares"].items():
        rows.append([html.escape(words(label)), cell["count"], pct(cell["share"]), interval(cell["ci_low"], cell["ci_high"], cell["share"]),
                     interval(cell.get("share_if_abstained_none"), cell.get("share_if_abstained_all"), cell.get("share_if_abstained_none")), pct(cell["reference"]), points(cell["gap"]),
                     p_text(cell.get("p_reference")), p_text(cell.get("p_reference_holm")), verdict(cell.get("p_reference_holm"))])
    head = ["label", "count", "share", "95% interval", "if every abstention were none / all of it", "reference", "gap", "p", "p (Holm)", "finding"]
    return _table(f"{scope}: {attribute['title']} — {attribute['assessed']} assessed, {attribute['abstained']} abstained", head, rows)


def _sentences(attribute: dict, scope: str, exact_note: bool = False) -> str:
    """Each tested share as one sentence a reviewer can quote."""
    out = []
    for label, cell in attribute["shares"].items():
        if cell.get("p_reference") is None:
            continue
        basis = f" ({cell['reference_basis']})" if cell.get("reference_basis") else ""
        if exact_note:
            basis += " (the reference taken as exact)"
        out.append(f"<li>{html.escape(scope)} — {html.escape(words(label))}: {cell['count']} of {attribute['assessed']} assessed images ({pct(cell['share'])}, "
                   f"95% interval {pct(cell['ci_low'])}–{pct(cell['ci_high'])}); reference {pct(cell['reference'])}{html.escape(basis)}; gap {points(cell['gap'])}; "
                   f"{html.escape(cell.get('test') or '')}: {p_is(cell['p_reference'])}, Holm-corrected {p_is(cell.get('p_reference_holm'))}: "
                   f"<span class='finding'>{verdict(cell.get('p_reference_holm'))}</span>.</li>")
    return f"<ul>{''.join(out)}</ul>" if out else ""


def _equal_weight(s: dict, titles: dict) -> str:
    e = html.escape
    out = ["<h2>Every prompt weighing the same</h2><p>The mean of the per-prompt shares, so a prompt with many assessed images does not outweigh one "
           "with few, against the mean reference of the same prompts. Its interval combines the per-prompt intervals; the prompts left out had no "
           "assessed image.</p>"]
    for name, pooled in s.get("pooled_equal_weight", {}).items():
        rows = [[e(words(label)), pct(cell["share"]), f"{pct(cell['ci_low'])} – {pct(cell['ci_high'])}", pct(cell["reference"]), points(cell["gap"]),
                 "—" if cell["gap_low"] is None else f"{points(cell['gap_low'])} to {points(cell['gap_high'])}"] for label, cell in pooled.get("cells", {}).items()]
        left_out = f" Left out: {e(', '.join(pooled['left_out']))}." if pooled["left_out"] else ""
        out.append(_table(f"{titles.get(name, name)}: equal-weight shares over {pooled['prompts']} prompt(s)", ["label", "share", "95% interval", "mean reference", "gap", "gap's 95% interval"], rows)
                   + f"<p><small>{e(pooled.get('interval', ''))}.{left_out}</small></p>")
    return "".join(out)


def _intersections(s: dict) -> str:
    e = html.escape
    titles_of = {attribute["name"]: attribute["title"] for attribute in s["overall"]}
    out = ["<h2>Cross-tables</h2><p>Images assessed on every attribute of a table, each combination of labels listed, empty ones too: an empty "
           "combination is often the finding.</p>"]
    for name, table in s.get("intersections", {}).items():
        rows = [[e(words(key)), cell["count"], pct(cell["share"])] for key, cell in table["cells"].items()]
        caption = " × ".join(titles_of.get(part, words(part)) for part in name.split(" × "))
        out.append("<details><summary>" + e(caption) + f" ({table['assessed']} images"
                   + (f"; {len(table.get('empty', []))} empty combination(s)" if table.get("empty") else "") + ")</summary>"
                   + (f"<p class='warn'>{e(table['warning'])}</p>" if table.get("warning") else "") + _table(caption, ["combination", "images", "share"], rows) + "</details>")
    return "".join(out)


def _pairs(pairs: dict, titles: dict) -> str:
    e = html.escape
    rows = []
    for row in pairs["comparisons"]:
        paired = row.get("paired")
        rows.append([e(row["scope"]), e(titles.get(row["attribute"], row["attribute"])), e(words(row["label"])), f"{row['count_a']}/{row['n_a']}", f"{row['count_b']}/{row['n_b']}",
                     points(row["difference"]), f"{points(row['ci_low'])} to {points(row['ci_high'])}", p_text(row["p"]), p_text(row["p_holm"]),
                     "—" if not paired else f"{paired['only_first']} vs {paired['only_second']} of {paired['pairs']} pairs, p = {p_text(paired['p_mcnemar'])}",
                     "differs (significant after Holm's correction)" if row["significant"] else "not significant after Holm's correction"])
    tests = [[e(t["scope"]), e(titles.get(t["attribute"], t["attribute"])), e(t.get("test", "chi-square")), p_text(t["p"]), p_text(t["p_holm"])] for t in pairs["attribute_tests"]]
    return ("<h2>Counterfactual pairs</h2>" + f"<p>{e(pairs['method'])}.</p>"
            + _table("Each label, first prompt vs second", ["pair", "attribute", "label", "first", "second", "difference", "95% interval", "Fisher p", "p (Holm)", "paired (McNemar)", "finding"], rows)
            + _table("Each attribute as a whole", ["pair", "attribute", "test", "p", "p (Holm)"], tests))


def _corrected(corrected: dict, titles: dict) -> str:
    e = html.escape
    out = [f"<h2>Corrected for the classifier's measured errors</h2><p>Method: {e(corrected['method'])}. Interval: {e(corrected['interval'])}. "
           f"Validation set: {corrected.get('validation_images') or '?'} labelled images.</p>"]
    for name, scopes in corrected["attributes"].items():
        rows, warnings = [], []
        for scope, result in scopes.items():
            if result.get("not_corrected"):
                rows.append([e(scope), e(result["not_corrected"]), "", "", "", "", "", "", ""])
                continue
            flags = ("infeasible" if not result.get("feasible", True) else "") + (" ill-conditioned" if (result.get("condition_number") or 0) > 10 else "")
            readings = ", ".join(f"{words(k)} {v}" for k, v in (result.get("readings") or {}).items())
            for label, cell in result["shares"].items():
                rows.append([e(scope), e(words(label)), pct(cell["share"]), f"{pct(cell['ci_low'])} – {pct(cell['ci_high'])}", pct((result.get("raw_solution") or {}).get(label)),
                             e(flags.strip() or "—"), f"{result.get('condition_number', 0):.1f}", pct(result.get("bootstrap_infeasible_share")), e(readings)])
            warnings += [f"{scope}: {warning}" for warning in result.get("warnings", [])]
        out.append(_table(f"{titles.get(name, words(name))}: corrected shares",
                          ["scope", "label", "corrected share", "95% interval", "raw solution", "flag", "condition number", "draws infeasible", "readings"], rows)
                   + "".join(f"<p class='warn'>{e(w)}</p>" for w in warnings))
    return "".join(out)


AXIS_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)


def shares_chart(attribute: dict, width: int = 640) -> str:
    """An inline SVG: each label's share as a bar, its 95% interval as a whisker, the reference as a red mark, the
    value written beside the bar, and an axis from 0% to 100%."""
    e = html.escape
    labels = list(attribute["shares"])
    row, left, scale = 26, 150, width - 230
    height = row * len(labels) + 40
    parts = [f"<svg class='chart' width='{width}' height='{height}' role='img' aria-label='shares of {e(attribute['title'])}; the table below has every value'>"]
    axis_y = row * len(labels) + 10
    for tick in AXIS_TICKS:
        x = left + tick * scale
        parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='4' y2='{axis_y}' stroke='#ddd'/><text x='{x:.1f}' y='{axis_y + 14}' text-anchor='middle' font-size='11'>{tick:.0%}</text>")
    for i, label in enumerate(labels):
        cell, y = attribute["shares"][label], 8 + i * row
        parts.append(f"<text x='{left - 8}' y='{y + 13}' text-anchor='end' font-size='12'>{e(words(label))}</text>")
        if cell["share"] is not None:
            parts.append(f"<rect x='{left}' y='{y + 3}' width='{cell['share'] * scale:.1f}' height='14' fill='#3b6bc4'><title>{cell['share']:.1%}</title></rect>")
            x1, x2 = left + cell["ci_low"] * scale, left + cell["ci_high"] * scale
            parts.append(f"<line x1='{x1:.1f}' x2='{x2:.1f}' y1='{y + 10}' y2='{y + 10}' stroke='#111'/><line x1='{x1:.1f}' x2='{x1:.1f}' y1='{y + 5}' y2='{y + 15}' stroke='#111'/><line x1='{x2:.1f}' x2='{x2:.1f}' y1='{y + 5}' y2='{y + 15}' stroke='#111'/>")
            reference = f" (ref {cell['reference']:.0%})" if cell["reference"] is not None else ""
            parts.append(f"<text x='{left + scale + 8}' y='{y + 13}' font-size='12'>{cell['share']:.0%}{reference}</text>")
        if cell["reference"] is not None:
            xr = left + cell["reference"] * scale
            parts.append(f"<line class='reference' x1='{xr:.1f}' x2='{xr:.1f}' y1='{y}' y2='{y + 20}' stroke='#c0261d' stroke-width='3'><title>reference {cell['reference']:.1%}</title></line>")
    parts.append(f"<text x='{left}' y='{height - 2}' font-size='11' fill='#333'>bar: share among assessed · whisker: Wilson 95% · red: reference</text></svg>")
    return "".join(parts)


def heat_map(attribute: dict, per_prompt: dict) -> str:
    """Prompts × labels, each cell shaded by its share and written out with its reference; n assessed per prompt.
    A prompt with no assessed image (all failed, abstained or without a person) shows — and stays listed."""
    e = html.escape
    labels = list(attribute["shares"])
    head = "".join(f"<th scope='col'>{e(words(label))}</th>" for label in labels)
    body = []
    for prompt, summary in per_prompt.items():
        summary = summary if isinstance(summary, dict) else summary.__dict__
        cells = []
        for label in labels:
            cell = summary["shares"][label]
            share, reference = cell["share"], cell["reference"]
            shade = "" if share is None else f" style='background:rgba(59,107,196,{share * 0.55:.2f})'"
            text = "—" if share is None else f"{share:.0%}"
            if reference is not None:
                text += f" <small>(ref {reference:.0%})</small>"
            cells.append(f"<td class='heat'{shade}>{text}</td>")
        body.append(f"<tr><th scope='row'>{e(prompt)}</th>{''.join(cells)}<td>{summary['assessed']}</td></tr>")
    return f"<div class='wide'><table class='heatmap'><caption>{e(attribute['title'])} per prompt (share, and the reference)</caption><tr><th scope='col'>prompt</th>{head}<th scope='col'>n assessed</th></tr>{''.join(body)}</table></div>"


CLASSIFIER_LIMITS = [
    "The attributes are zero-shot CLIP perceptions of pixels: not identity, not self-description, and biased in their own "
    "right — CLIP's error rates differ across demographic groups (Radford et al. 2021, 'Learning Transferable Visual Models "
    "From Natural Language Supervision', section 7; Agarwal et al. 2021, 'Evaluating CLIP: Towards Characterization of "
    "Broader Capabilities and Downstream Implications', arXiv:2108.02818).",
    "Gender presentation is read as two classes; people outside them are mislabelled or abstained on.",
    "Without a validation on a labelled set of your own, shares are uncorrected for the classifier's errors.",
]


def write_report(out_dir: Path, report: dict, card: dict | None = None) -> dict:
    write_atomically(out_dir / "report.json", json.dumps(report, indent=2, default=str))
    write_atomically(out_dir / "report.html", render_html(report))
    paths = {"json": out_dir / "report.json", "html": out_dir / "report.html", "csv": out_dir / "rows.csv"}
    if card is not None:
        write_atomically(out_dir / "card.json", json.dumps(card, indent=2, default=str))
        paths["card"] = out_dir / "card.json"
    return paths
