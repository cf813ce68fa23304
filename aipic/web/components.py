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
DARK_MODE_JS = "() => { document.body.classList.toggle('dark'); }"


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
