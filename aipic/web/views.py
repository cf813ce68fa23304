"""What the app shows, as Markdown and HTML: the generation info beside the outputs, the Content Credentials panel
in plain words (three lines first, the rest folded), the verdicts of the Verify tab, captions that are the
pictures' alt text, labelled download links, and the session's history."""

from __future__ import annotations

import datetime
import hashlib
import html
import os
import re
from urllib.parse import quote

from aipic.provenance.authorship import authorship_statement, licence_line, terms_lines
from aipic.provenance.verify import Verification, audit_line, identity_line

VERDICT_BADGE = {  # colour and short label for the UI (white text on each: contrast at least 4.5:1)
    "trusted": ("#1a7f37", "Trusted"),
    "untrusted": ("#7d4e00", "Valid · unknown signer"),
    "expired": ("#7d4e00", "Signer expired"),
    "tampered": ("#b3261e", "Tampered"),
    "invalid": ("#b3261e", "Invalid"),
    "unreadable_manifest": ("#b3261e", "Damaged credentials"),
    "no_credentials": ("#4d5560", "No credentials"),
    "recognised": ("#1d4ed8", "Recognised"),
    "unreadable": ("#4d5560", "Unreadable"),
    "too_large": ("#4d5560", "Too large"),
}
HISTORY_SIZE = 48


MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~:])")


def esc(text) -> str:
    """Text from a manifest or a person, shown as plain text in Markdown: tags and ampersands escaped, every
    Markdown mark backslash-escaped and line breaks joined, so nothing typed into a prompt or a field can format
    itself, link, load an image, or pass for one of the panel's own lines."""
    plain = " ".join(str(text).split())
    return MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(plain, quote=False))


def words(identifier) -> str:
    return str(identifier).replace("_", " ")


def badge_html(verdict: str) -> str:
    colour, label = VERDICT_BADGE.get(verdict, ("#4d5560", words(verdict)))
    return (f"<span class='aipic-badge aipic-verdict-{esc(verdict)}' style='background:{colour};color:#fff;border-radius:1em;"
            f"padding:0.15em 0.8em;font-weight:600'>{esc(label)}</span>")


def _models(contributions: dict | None) -> str:
    models = ((contributions or {}).get("model") or {}).get("models") or []
    return ", ".join(str(m.get("label") or m.get("name") or "?") for m in models) or "an AI model"


def _when(result: Verification) -> str:
    if result.signed_at:
        return f"on {result.signed_at} (an independent timestamp vouches for the time)"
    return "at a time no independent timestamp vouches for"


def _trust(result: Verification) -> str:
    """Who signed it, and how a stranger can come to trust that signer."""
    signer = esc(result.signer or "an unknown signer") + (f", whose certificate {esc(result.issuer)} issued" if result.issuer else "")
    if result.verdict == "trusted":
        return (f"**Signed by** {signer}. Trusted here: this site trusts its own certificate authority. Elsewhere it shows as an unknown signer "
                "unless that authority is added: download it from this site (<a href='ca.pem' target='_self'>ca.pem</a>) and use `aipic verify --trust ca.pem`, "
                "or a C2PA verifier's trust list.")
    if result.verdict == "untrusted":
        return (f"**Signed by** {signer}. The signature is valid, but this signer is not on your trust list: add its certificate authority "
                "(`aipic verify --trust ca.pem`, with the ca.pem the signing site offers) if you know and trust it.")
    if result.verdict == "expired":
        return f"**Signed by** {signer}, whose certificate has since expired and no trusted timestamp shows it was valid then."
    return f"**Signed by** {signer}: claimed, not verified."


def _contributed(contributions: dict | None) -> str:
    human = (contributions or {}).get("human") or {}
    mine = []
    if human.get("prompt"):
        mine.append(f"the prompt “{esc(str(human['prompt']))}”")
    elif human.get("prompt_sha256"):
        mine.append("a prompt, kept private (only a salted hash is recorded)")
    if human.get("negative_prompt"):
        mine.append(f"the negative prompt “{esc(str(human['negative_prompt']))}”")
    for upload in human.get("uploads") or []:
        mine.append(f"an uploaded picture ({esc(words(upload.get('role') or 'upload'))})")
    return "; ".join(mine) if mine else "nothing recorded"


def _settings(contributions: dict | None) -> str:
    """The person's settings in words, without the request's seed and picture count: each picture has its own seed."""
    parameters = ((contributions or {}).get("human") or {}).get("parameters") or {}
    return ", ".join(f"{words(key)} {value}" for key, value in parameters.items() if value is not None and key not in ("seed", "batch"))


def when_text(value) -> str:
    """A recorded time as people read it: "2026-12-02 16:28 UTC"."""
    try:
        moment = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def panel_markdown(result: Verification, position: tuple[int, int] | None = None, own: bool = True, made_at=None) -> str:
    """One output's Content Credentials for a member of the public: three lines first (what made it and when; who
    signed it and how to trust that signer; what the person contributed), the rest folded; the raw manifest is
    one click away beside it. ``position``: (this image, of how many); ``own``: the person reading made it (the
    app's own panel) or not (Verify); ``made_at``: when this site recorded it, if it did."""
    contributions = result.contributions or {}
    model = contributions.get("model") or {}
    head = []
    if position:
        seed = model.get("seed")
        head.append(f"**Image {position[0]} of {position[1]}**" + (f" · seed {seed}" if seed is not None else ""))
    head.append(f"{badge_html(result.verdict)} {esc(result.message)}")
    if not result.claims_verified:
        return "\n\n".join(head + ["What the file claims cannot be verified."])
    made = [action for action in result.actions if action.get("digitalSourceType")]
    kind = ("edited your picture" if own else "edited a picture the person supplied") if made and not any(a.get("action") == "c2pa.created" for a in made) else "made this picture"
    recorded = f" This site recorded it on {when_text(made_at)}." if made_at and not result.signed_at else ""
    lead = [
        f"**Made with AI:** {esc(_models(contributions))} {kind}, signed {_when(result)}.{recorded}",
        _trust(result),
        f"**{'You' if own else 'The person'} contributed** {_contributed(contributions)}.",
    ]
    if statement := (result.intended_use or {}).get("statement"):
        lead.append(f"**{esc(statement)}**")
    more = []
    if settings := _settings(contributions):
        more.append(f"**{'Your' if own else 'Their'} settings** {esc(settings)}")
    for entry in model.get("models") or []:
        if entry.get("license"):
            more.append(f"**Licence** of {esc(str(entry.get('label') or entry.get('name')))}: {esc(licence_line(entry['license']))}")
    if result.identities:
        more += [f"**Author** {esc(identity_line(identity))}" for identity in result.identities]
    elif (contributions.get("human") or {}).get("author") == "anonymous":
        more.append("**Author** anonymous (not signed in: no name is recorded)")
    if result.terms:
        more.append("**Training and mining** " + esc("; ".join(terms_lines(result.terms))))
    if rights := (contributions.get("human") or {}).get("rights_statement"):
        more.append(f"**Rights statement** {esc(str(rights))}")
    more.append("**What you can claim** " + esc(authorship_statement(contributions, result.author_name)))
    if result.audit:
        more.append("**Bias audit** " + esc(audit_line(result.audit)))
    for ingredient in result.ingredients:
        more.append(f"**Ingredient** {esc(str(ingredient.get('title')))}: its own credentials {esc(words(ingredient.get('status')))}")
    folded = "<details><summary>More: settings, licence, author, terms, bias audit</summary>\n\n" + "\n\n".join(more) + "\n\n</details>"
    return "\n\n".join(head + lead + [folded])


def recognised_markdown(result: Verification) -> str:
    """A stripped or altered copy the registry recognises: its own verdict, and what the original credentials said."""
    found = result.recovered or {}
    said = found.get("original_says") or {}
    contributions = said.get("contributions") or {}
    human = contributions.get("human") or {}
    how = str(found.get("matched_by") or "")
    plain = "its invisible watermark" if how.startswith("watermark") else "its file's exact hash" if how.startswith("file hash") else "its visual fingerprint"
    lines = [f"### {badge_html('recognised')} Recognised: an aipic picture whose credentials were removed or altered",
             f"This file carries no intact credentials of its own, but {plain} matches a picture this site made and recorded. "
             "What the original's signed credentials said:"]
    facts = [f"**Made with AI** by {esc(_models(contributions) if contributions else found.get('model'))}" if said.get("made_with_ai", True) else "**Made** by aipic",
             f"**When** {esc(when_text(found.get('signed_on') or 'unknown'))}"]
    if human.get("prompt"):
        facts.append(f"**Prompt** “{esc(str(human['prompt']))}”")
    elif human.get("prompt_sha256"):
        facts.append("**Prompt** kept private by its author")
    if said.get("audit"):
        facts.append("**Bias audit** " + esc(audit_line(said["audit"])))
    facts.append(f"**The original credentials** {esc(str(found.get('original_manifest')))} (kept by this site: the original file is {esc(str(found.get('original_file')))})")
    facts.append(f"**How it matched** {esc(how)}")
    return "\n\n".join(lines + ["- " + fact for fact in facts])


def verify_markdown(result: Verification) -> str:
    """The Verify tab's answer: recognition has its own verdict; a file neither signed nor recognised says so."""
    if result.recovered:
        body = recognised_markdown(result)
        if result.verdict != "no_credentials":
            body += f"\n\nIts own credentials: {badge_html(result.verdict)} {esc(result.message)}"
        return body
    if result.verdict == "no_credentials":
        return (f"### {badge_html('no_credentials')} Neither signed nor recognised\n\nThis picture carries no Content Credentials and does not match "
                "anything this aipic made. That says nothing about who made it: credentials are often stripped by screenshots, re-encoding and uploads.")
    if result.claims_verified:
        return f"### {badge_html(result.verdict)} {esc(result.message)}\n\n" + panel_markdown(result, own=False).split("\n\n", 1)[1]
    reason = f"\n\n{esc(result.reason)}" if result.reason else ""
    return f"### {badge_html(result.verdict)} {esc(result.message)}{reason}"


def audit_markdown(outcome) -> str:
    """The full generation info beside the outputs: model, settings, seed and audit of each image."""
    blocks = []
    for model in outcome.models:
        blocks.append(f"**Model** {model.get('label') or model.get('name')} · licence: {licence_line(model.get('license'))}")
    settings = {key: value for key, value in outcome.parameters.items() if key not in ("seed", "batch") and value is not None}
    if settings:
        blocks.append("**Settings** " + ", ".join(f"{words(key)} {value}" for key, value in settings.items()))
    for index, item in enumerate(outcome.items, start=1):
        text = item.audit.summary().replace("\n", "  \n")
        blocks.append(f"**Image {index}** — seed {item.seed}, {item.width}×{item.height}, {item.mime.split('/')[-1].upper()}, signed  \n{text}")
    for warning in outcome.warnings:
        blocks.append(f"⚠ {warning}")
    if outcome.prompt_salt:
        blocks.append(f"🔒 Your prompt is recorded only as a salted hash. Keep this salt to prove later that you wrote it: `{outcome.prompt_salt}`")
    return "\n\n".join(blocks)


def alt_text(item, index: int, total: int, prompt: str | None) -> str:
    """A picture's alt text (the gallery's caption): what it shows by request, and what the audit saw."""
    what = f"“{prompt.strip()[:200]}”" if prompt and prompt.strip() else ("a picture from a private prompt" if prompt is None else "your picture, transformed")
    audit = item.audit.summary().splitlines()
    seen = next((line for line in audit if not line.startswith("⚠")), "")
    return f"Image {index} of {total}: {what}, seed {item.seed}. {seen}".strip()


def download_links(items) -> str:
    """Download links that say what they fetch: the image, its format and size, signed."""
    links = []
    for index, item in enumerate(items, start=1):
        size = os.path.getsize(item.path) if os.path.exists(item.path) else 0
        links.append(f"<li><a href='/gradio_api/file={quote(str(item.path))}' download>Download image {index} of {len(items)} "
                     f"({item.mime.split('/')[-1].upper()}, {size / 1024:.1f} KB, with its signed Content Credentials)</a></li>")
    return f"<ul class='aipic-downloads'>{''.join(links)}</ul>" if links else ""


def credentials_view(pipeline, paths, index=0):
    """The Content Credentials panel (plain language) and the raw manifest of one output."""
    if not paths:
        return "", None
    index = min(index, len(paths) - 1)
    result = pipeline.credentials(paths[index])
    return panel_markdown(result, (index + 1, len(paths)), made_at=recorded_at(pipeline, paths[index])), result.manifest


def recorded_at(pipeline, path) -> str | None:
    """When this site's registry recorded an output (by its file's hash), or None."""
    try:
        with open(path, "rb") as handle:
            entry = pipeline.registry.by_sha256(hashlib.sha256(handle.read()).hexdigest())
    except OSError:
        return None
    return entry.created_at.isoformat() if entry is not None and entry.created_at else None


def history_entries(outcome, prompt: str | None, private: bool) -> list[dict]:
    """What the history remembers of each output: its path, and a caption of prompt, seed, time and verdict."""
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    shown = "private prompt" if private else (f"“{prompt.strip()[:80]}”" if prompt and prompt.strip() else "image to image / style")
    return [{"output": str(item.path), "caption": f"{shown} · seed {item.seed} · {when} · signed"} for item in outcome.items]


def outcome_outputs(pipeline, outcome, history, prompt: str | None = None, private: bool = False):
    """Gallery (captions = alt text), generation info, the signed files (for API clients), credentials panel + raw
    manifest, the outputs' paths and seeds, the selected index, the history (state and gallery), the labelled
    download links and the announcement — one tuple for every generating tab."""
    total = len(outcome.items)
    gallery = [(str(item.path), alt_text(item, index, total, None if private else prompt)) for index, item in enumerate(outcome.items, start=1)]
    seeds = [item.seed for item in outcome.items]
    history = (list(history or []) + history_entries(outcome, prompt, private))[-HISTORY_SIZE:]
    announcement = f"{total} signed picture{'s' if total != 1 else ''} ready." if total else "No picture was made; see the notes beside the outputs."
    return (gallery, audit_markdown(outcome), outcome.paths, *credentials_view(pipeline, outcome.paths), outcome.paths, seeds, 0,
            history, history_gallery(history), download_links(outcome.items), announcement)


def history_gallery(history) -> list:
    return [(entry["output"], entry["caption"]) for entry in reversed(list(history or []))]
