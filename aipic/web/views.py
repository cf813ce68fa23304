"""What the app shows, as Markdown and HTML: the generation info beside the outputs, the Content Credentials panel
in plain words, and the verdict badges."""

from __future__ import annotations

from aipic.provenance.authorship import authorship_statement, licence_line, terms_lines
from aipic.provenance.verify import Verification, audit_line, identity_line

VERDICT_BADGE = {  # colour and short label for the UI
    "trusted": ("#1a7f37", "Trusted"),
    "untrusted": ("#9a6700", "Valid · unknown signer"),
    "expired": ("#9a6700", "Signer expired"),
    "tampered": ("#cf222e", "Tampered"),
    "invalid": ("#cf222e", "Invalid"),
    "unreadable_manifest": ("#cf222e", "Damaged credentials"),
    "no_credentials": ("#57606a", "No credentials"),
    "unreadable": ("#57606a", "Unreadable"),
    "too_large": ("#57606a", "Too large"),
}


def badge_html(verdict: str) -> str:
    colour, label = VERDICT_BADGE.get(verdict, ("#57606a", verdict))
    return (f"<span class='aipic-badge aipic-verdict-{verdict}' style='background:{colour};color:#fff;border-radius:1em;"
            f"padding:0.15em 0.8em;font-weight:600'>{label}</span>")


def panel_markdown(result: Verification) -> str:
    """The Content Credentials of one output in plain language, for the panel beside it."""
    lines = [f"{badge_html(result.verdict)} {result.message}"]
    if not result.claims_verified:
        return "\n\n".join(lines + ["What the file claims cannot be verified."])
    when = f"signed {result.signed_at} (independent timestamp)" if result.signed_at else "signing time not independently attested"
    lines.append(f"**Signed by** {result.signer or 'unknown'}" + (f", issued by {result.issuer}" if result.issuer else "") + f" · {when}")
    human = (result.contributions or {}).get("human") or {}
    mine = []
    if human.get("prompt"):
        mine.append(f"the prompt “{human['prompt']}”")
    elif human.get("prompt_sha256"):
        mine.append("a prompt (kept private: only a salted hash is recorded)")
    if human.get("negative_prompt"):
        mine.append(f"the negative prompt “{human['negative_prompt']}”")
    parameters = human.get("parameters") or {}
    if parameters:
        mine.append("the settings " + ", ".join(f"{key} {value}" for key, value in parameters.items() if value is not None))
    for upload in human.get("uploads") or []:
        mine.append(f"an upload ({upload.get('role') or 'image'})")
    lines.append("**You contributed** " + ("; ".join(mine) if mine else "nothing recorded"))
    models = ((result.contributions or {}).get("model") or {}).get("models") or []
    made = [action for action in result.actions if action.get("digitalSourceType")]
    kind = "generated the image" if any(a.get("action") == "c2pa.created" for a in made) else "edited your upload"
    lines.append("**The model contributed** " + (", ".join(m.get("label") or m.get("name", "?") for m in models) or "a model") + f" {kind}")
    for model in models:
        if model.get("license"):
            lines.append(f"**Licence** of {model.get('label') or model.get('name')}: {licence_line(model['license'])}")
    if result.identities:
        for identity in result.identities:
            lines.append(f"**Author** {identity_line(identity)}")
    elif human.get("author") == "anonymous":
        lines.append("**Author** anonymous (not signed in: no name is recorded)")
    if result.terms:
        lines.append("**Training and mining** " + "; ".join(terms_lines(result.terms)))
    if statement := (result.intended_use or {}).get("statement"):
        lines.append(f"**Intended use** {statement}")
    if human.get("rights_statement"):
        lines.append(f"**Rights statement** {human['rights_statement']}")
    lines.append("**What you can claim** " + authorship_statement(result.contributions, result.author_name))
    if result.audit:
        lines.append("**Bias audit** " + audit_line(result.audit))
    for ingredient in result.ingredients:
        lines.append(f"**Ingredient** {ingredient.get('title')}: its own credentials {ingredient.get('status')}")
    return "\n\n".join(lines)




def audit_markdown(outcome) -> str:
    """The full generation info beside the outputs: model, settings, seed and audit of each image."""
    blocks = []
    for model in outcome.models:
        blocks.append(f"**Model** {model.get('label') or model.get('name')} · licence: {licence_line(model.get('license'))}")
    settings = {key: value for key, value in outcome.parameters.items() if key not in ("seed", "batch") and value is not None}
    if settings:
        blocks.append("**Settings** " + ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in settings.items()))
    for index, item in enumerate(outcome.items, start=1):
        text = item.audit.summary().replace("\n", "  \n")
        blocks.append(f"**Image {index}** — seed {item.seed}, {item.width}×{item.height}, {item.mime.split('/')[-1].upper()}, signed  \n{text}")
    for warning in outcome.warnings:
        blocks.append(f"⚠ {warning}")
    if outcome.prompt_salt:
        blocks.append(f"🔒 Your prompt is recorded only as a salted hash. Keep this salt to prove later that you wrote it: `{outcome.prompt_salt}`")
    return "\n\n".join(blocks)


def credentials_view(pipeline, paths, index=0):
    """The Content Credentials panel (plain language) and the raw manifest of one output."""
    if not paths:
        return "", None
    result = pipeline.credentials(paths[min(index, len(paths) - 1)])
    return panel_markdown(result), result.manifest


def outcome_outputs(pipeline, outcome, history):
    """Gallery, generation info, files, credentials panel + raw manifest, the outputs' paths and seeds, the
    session history (state and gallery) — one tuple for every generating tab."""
    seeds = [item.seed for item in outcome.items]
    history = (list(history or []) + outcome.paths)[-48:]
    return (outcome.paths, audit_markdown(outcome), outcome.paths, *credentials_view(pipeline, outcome.paths), outcome.paths, seeds, 0, history, list(reversed(history)))
