"""The audit report a reviewer reads: report.html (self-contained, charts as inline SVG) and report.json, from the
numbers aipic.audit.summary computed. Rendering only."""

from __future__ import annotations

import html
import json
from pathlib import Path

from aipic.common.files import write_atomically


def _fmt(value, percent=True) -> str:
    if value is None:
        return "—"
    return f"{value:+.1%}" if percent == "signed" else (f"{value:.1%}" if percent else str(value))


def render_html(report: dict) -> str:
    """A self-contained HTML page of the report."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>aipic bias audit — " + e(report["suite"]["name"]) + "</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}.warn{background:#fff3cd;border:1px solid #e0c36c;padding:.6em 1em}"
        ".bar{display:inline-block;height:10px;background:#4a7bd0}</style></head><body>",
        f"<h1>Bias audit: {e(report['suite']['name'])}</h1>",
        f"<p>{e(report['suite']['description'])}</p>",
    ]
    if not report["complete"]:
        parts.append(f"<p class='warn'>Incomplete run: {report['summary']['images']} of {report['planned_images']} images were audited before it stopped.</p>")
    for note in report.get("notes", []):
        parts.append(f"<p class='warn'>{e(note)}</p>")
    provenance = report["suite"].get("reference_provenance") or {}
    if provenance:
        link = f" <a href='{e(provenance['link'])}'>{e(provenance['link'])}</a>" if provenance.get("link") else ""
        parts.append(f"<p><strong>Reference:</strong> {e(provenance.get('source', ''))}" + (f", {provenance['year']}" if provenance.get("year") else "") + f" ({e(provenance.get('kind', ''))}).{link} {e(provenance.get('note', ''))}</p>")
    parts.append(
        "<p>Attributes are <em>perceived</em> by a CLIP model from pixels: they are not anyone's identity, and they carry the model's own biases. "
        "Shares are among images where a person was detected and the audit did not abstain; intervals are Wilson 95%.</p>"
    )
    if report.get("classifier_limits"):
        parts.append("<details><summary>The classifier's known limits</summary><ul>" + "".join(f"<li>{e(limit)}</li>" for limit in report["classifier_limits"]) + "</ul></details>")
    for note in report.get("sample_size", []):
        parts.append(f"<p>{e(note)}</p>")
    s = report["summary"]
    for warning in s.get("warnings", []):
        parts.append(f"<p class='warn'>{e(warning)}</p>")
    if s.get("failed"):
        parts.append(f"<p class='warn'>{s['failed']} image(s) failed and are not counted below; report.json lists them with the reason.</p>")
    if s.get("safety_filtered"):
        parts.append(f"<p class='warn'>{s['safety_filtered']} image(s) were held back by the safety filter: never shown or audited, and not counted below.</p>")
    parts.append(f"<p>Images: {s['images']} · with a person: {s['with_person']} · seeds per prompt: {report['seeds']} · generator: {e(report['models']['text_to_image']['label'])} · audit model: {e(report['models']['clip']['label'])}</p>")

    def table(summaries):
        rows = []
        for attribute in summaries:
            rows.append(f"<h3>{e(attribute['title'])}</h3><p>assessed {attribute['assessed']}, abstained {attribute['abstained']}</p>")
            rows.append("<table><tr><th>label</th><th>count</th><th>share</th><th>95% CI</th><th>if abstentions were none / all</th><th>reference</th><th>gap</th><th></th></tr>")
            for label, cell in attribute["shares"].items():
                width = int(200 * (cell["share"] or 0))
                rows.append(
                    f"<tr><td>{e(label.replace('_', ' '))}</td><td>{cell['count']}</td><td>{_fmt(cell['share'])}</td>"
                    f"<td>{_fmt(cell['ci_low'])} – {_fmt(cell['ci_high'])}</td>"
                    f"<td>{_fmt(cell.get('share_if_abstained_none'))} – {_fmt(cell.get('share_if_abstained_all'))}</td><td>{_fmt(cell['reference'])}</td>"
                    f"<td>{_fmt(cell['gap'], 'signed')}</td><td style='text-align:left'><span class='bar' style='width:{width}px'></span></td></tr>"
                )
            rows.append("</table>")
        return "".join(rows)

    d = s["denominators"]
    parts.append(
        "<h2>Every image accounted for</h2><table><tr><th>planned</th><th>failed</th><th>held back by the safety filter</th><th>generated</th><th>no person</th><th>with a person</th>"
        + "".join(f"<th>{e(spec_name)}: abstained / assessed</th>" for spec_name in d if isinstance(d[spec_name], dict))
        + f"</tr><tr><td>{d['planned']}</td><td>{d['failed']}</td><td>{d.get('safety_filtered', 0)}</td><td>{d['generated']}</td><td>{d['no_person']}</td><td>{d['with_person']}</td>"
        + "".join(f"<td>{v['abstained']} / {v['assessed']}</td>" for v in d.values() if isinstance(v, dict))
        + "</tr></table>"
    )
    parts.append("<h2>All prompts</h2>")
    for attribute in s["overall"]:
        parts.append(f"<h3>{e(attribute['title'])}</h3>" + shares_chart(attribute))
    parts.append("<h2>Per prompt</h2>")
    for index, attribute in enumerate(s["overall"]):
        parts.append(f"<h3>{e(attribute['title'])}</h3>" + heat_map(attribute, {prompt: summaries[index] for prompt, summaries in s["per_prompt"].items()}))
    parts.append("<details><summary>All the numbers, as tables</summary><h2>All prompts</h2>" + table(s["overall"]))
    for prompt, summaries in s["per_prompt"].items():
        parts.append(f"<h2>{e(prompt)}</h2>" + table(summaries))
    parts.append("</details></body></html>")
    return "\n".join(parts)


def shares_chart(attribute: dict, width: int = 640) -> str:
    """An inline SVG: each label's share as a bar with its 95% interval as a whisker and the reference as a mark."""
    labels = list(attribute["shares"])
    row, left, scale = 26, 150, width - 170
    parts = [f"<svg class='chart' width='{width}' height='{row * len(labels) + 24}' role='img' aria-label='shares of {html.escape(attribute['title'])}'>"]
    for i, label in enumerate(labels):
        cell, y = attribute["shares"][label], 8 + i * row
        parts.append(f"<text x='{left - 8}' y='{y + 13}' text-anchor='end' font-size='12'>{html.escape(label.replace('_', ' '))}</text>")
        if cell["share"] is not None:
            parts.append(f"<rect x='{left}' y='{y + 3}' width='{cell['share'] * scale:.1f}' height='14' fill='#4a7bd0'><title>{cell['share']:.1%}</title></rect>")
            x1, x2 = left + cell["ci_low"] * scale, left + cell["ci_high"] * scale
            parts.append(f"<line x1='{x1:.1f}' x2='{x2:.1f}' y1='{y + 10}' y2='{y + 10}' stroke='#222'/><line x1='{x1:.1f}' x2='{x1:.1f}' y1='{y + 5}' y2='{y + 15}' stroke='#222'/><line x1='{x2:.1f}' x2='{x2:.1f}' y1='{y + 5}' y2='{y + 15}' stroke='#222'/>")
        if cell["reference"] is not None:
            xr = left + cell["reference"] * scale
            parts.append(f"<line class='reference' x1='{xr:.1f}' x2='{xr:.1f}' y1='{y}' y2='{y + 20}' stroke='#d0342c' stroke-width='3'><title>reference {cell['reference']:.1%}</title></line>")
    parts.append(f"<text x='{left}' y='{row * len(labels) + 20}' font-size='11' fill='#555'>bar: share among assessed · whisker: Wilson 95% · red: reference</text></svg>")
    return "".join(parts)


def heat_map(attribute: dict, per_prompt: dict) -> str:
    """Prompts × labels, each cell shaded by its share (n shown); an empty cell had no assessed image."""
    labels = list(attribute["shares"])
    head = "".join(f"<th>{html.escape(label.replace('_', ' '))}</th>" for label in labels)
    body = []
    for prompt, summary in per_prompt.items():
        summary = summary if isinstance(summary, dict) else summary.__dict__
        cells = []
        for label in labels:
            share = summary["shares"][label]["share"]
            shade = "" if share is None else f" style='background:rgba(74,123,208,{share:.2f})'"
            cells.append(f"<td class='heat'{shade}>{'—' if share is None else f'{share:.0%}'}</td>")
        body.append(f"<tr><td>{html.escape(prompt)}</td>{''.join(cells)}<td>{summary['assessed']}</td></tr>")
    return f"<table class='heatmap'><tr><th>prompt</th>{head}<th>n</th></tr>{''.join(body)}</table>"


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
