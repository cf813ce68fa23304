"""Gradio components as aipic uses them: number inputs that let a wrong value reach aipic's own validation (so
the API gets aipic's clear message), and the page's small fixed texts."""

from __future__ import annotations

import gradio as gr

EXAMPLE_PROMPTS = [
    "a lighthouse on a cliff at dusk, oil painting",
    "a portrait of a nurse, natural light, 35mm photo",
    "a cosy reading nook with plants, watercolour",
    "a red fox in fresh snow, wildlife photography",
]
MAX_UPLOAD_MB = 25  # the largest upload Gradio accepts (the page says so)
# The choice is remembered in this browser (localStorage) and applied before the page paints (HEAD below).
DARK_MODE_JS = "() => { const dark = document.body.classList.toggle('dark'); try { localStorage.setItem('aipic-dark', dark ? '1' : '0'); } catch (e) {} }"


def theme() -> gr.themes.Base:
    """Gradio's default theme with WCAG 2.1 AA contrast: subdued text, primary and Stop buttons darker."""
    return gr.themes.Default().set(
        body_text_color_subdued="*neutral_600",
        body_text_color_subdued_dark="*neutral_300",
        button_primary_background_fill="*primary_700",
        button_primary_background_fill_hover="*primary_800",
        button_primary_background_fill_dark="*primary_700",
        button_primary_background_fill_hover_dark="*primary_800",
        button_primary_text_color="white",
        button_primary_text_color_dark="white",
        button_cancel_background_fill="#b91c1c",
        button_cancel_background_fill_hover="#991b1b",
        button_cancel_background_fill_dark="#b91c1c",
        button_cancel_background_fill_hover_dark="#991b1b",
        button_cancel_text_color="white",
        button_cancel_text_color_dark="white",
    )


CSS = """
.aipic-skip { position: absolute; left: -10000px; top: 0; z-index: 1000; background: #fff; color: #1d4ed8; padding: .5em 1em; }
.aipic-skip:focus { left: .5em; top: .5em; }
.aipic-visually-hidden { position: absolute !important; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
/* every tab stays reachable on a narrow screen: Gradio measures its tabs in a hidden copy and folds those that do not
   fit behind a menu; the copy is measured tiny, so all tabs stay in the tab list, which wraps onto more lines */
.tab-wrapper { height: auto !important; }
.tab-wrapper .tab-container.visually-hidden button { font-size: 1px !important; padding: 0 !important; margin: 0 !important; min-width: 0 !important; }
.tab-wrapper [role="tablist"] { flex-wrap: wrap !important; height: auto !important; overflow: visible !important; }
.tab-wrapper .overflow-menu { display: none !important; }
.aipic-downloads a { font-weight: 600; }
/* the selected tab's label at 4.5:1 (Gradio's orange is 2.8:1 on white) */
.tab-wrapper [role="tab"].selected { color: #c2410c !important; }
.dark .tab-wrapper [role="tab"].selected { color: #fdba74 !important; }
/* text panels grow with their text instead of scrolling a region a keyboard cannot reach */
#verify-report, [id$="-audit"], [id$="-credentials"], #history-credentials { overflow: visible !important; max-height: none !important; }
/* the raw manifest's JSON colours, at 4.5:1 or more on its background (Gradio's own are 2.6–3.3:1) */
.json-node { --text-color: #9a3412 !important; --string-color: #166534 !important; --number-color: #1e40af !important; --bracket-color: #115e59 !important;
             --square-bracket-color: #9f1239 !important; --punctuation-color: #334155 !important; --line-number-color: #4b5563 !important; }
.dark .json-node { --text-color: #fdba74 !important; --string-color: #86efac !important; --number-color: #93c5fd !important; --bracket-color: #5eead4 !important;
                   --square-bracket-color: #fda4af !important; --punctuation-color: #cbd5e1 !important; --line-number-color: #9ca3af !important; }
"""

# Before the page paints: the remembered dark mode; arrow keys move between tabs (the WAI-ARIA tabs pattern);
# aipicAnnounce() speaks a result or an error through the page's live region.
HEAD = """
<script>
(function () {
  try { if (localStorage.getItem('aipic-dark') === '1') { document.documentElement.classList.add('dark');
        document.addEventListener('DOMContentLoaded', function () { document.body.classList.add('dark'); }); } } catch (e) {}
  window.aipicAnnounce = function (text) {
    var region = document.getElementById('aipic-live');
    if (!region) return;
    region.textContent = '';
    setTimeout(function () { region.textContent = text; }, 50);
  };
  document.addEventListener('keydown', function (event) {
    var tab = event.target.closest && event.target.closest('[role="tab"]');
    if (!tab || ['ArrowLeft', 'ArrowRight', 'Home', 'End'].indexOf(event.key) < 0) return;
    var tabs = Array.prototype.filter.call(tab.parentElement.querySelectorAll('[role="tab"]'), function (t) { return t.offsetParent !== null; });
    var i = tabs.indexOf(tab);
    var next = event.key === 'Home' ? 0 : event.key === 'End' ? tabs.length - 1 : (i + (event.key === 'ArrowRight' ? 1 : -1) + tabs.length) % tabs.length;
    event.preventDefault();
    tabs[next].focus();
    tabs[next].click();
  });
})();
</script>
"""
SKIP_LINK = "<a class='aipic-skip' href='#aipic-main'>Skip to the app</a>"
LIVE_REGION = "<div id='aipic-live' class='aipic-visually-hidden' role='status' aria-live='polite'></div>"


def _lenient(component):
    """Numbers from the API reach aipic's own validation as sent, so a wrong value gets aipic's clear message
    ("Seed must be a whole number (got 'abc')") instead of Gradio's internal preprocessing error. The component's
    own preprocess is wrapped on the instance (a subclass would make Gradio write a .pyi stub next to this file)."""
    original = component.preprocess

    def preprocess(payload):
        try:
            return original(payload)
        except (TypeError, ValueError):
            return payload

    component.preprocess = preprocess
    return component


def Number(*args, **kwargs) -> gr.Number:  # noqa: N802 - stands in for gr.Number
    return _lenient(gr.Number(*args, **kwargs))


def Slider(*args, **kwargs) -> gr.Slider:  # noqa: N802 - stands in for gr.Slider
    return _lenient(gr.Slider(*args, **kwargs))


def number_or_none(value):
    return None if value is None or value == "" else value
