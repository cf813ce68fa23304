"""aipic's Gradio app: a thin UI over the pipeline. One small builder per tab; the handlers share one run helper.

Every image shown went through generate → safety → bias audit → C2PA signing; the UI serves the signed files by
path (never a re-encoded copy, which would strip the Content Credentials). Uploads are taken as files, so their
own credentials stay in the provenance chain.
"""

from __future__ import annotations

import concurrent.futures
import html
import os
import queue
import secrets
import threading
from types import SimpleNamespace

import gradio as gr

from aipic.common.errors import BadInput, Cancelled
from aipic.common.files import write_atomically
from aipic.common.images import MIN_INPUT_SIDE, OUTPUT_FORMATS, UPLOAD_FORMAT_NAMES, open_user_image
from aipic.generation.requests import GenerationRequest, StyleRequest
from aipic.pipeline import AipicPipeline
from aipic.provenance.authorship import DEFAULT_TERMS, MAX_CONSTRAINT_CHARS, MAX_RIGHTS_CHARS, USE_TITLES, USES, licence_markdown
from aipic.provenance.verify import VERIFY_SLOTS
from aipic.web.components import DARK_MODE_JS, EXAMPLE_PROMPTS, LIVE_REGION, MAX_UPLOAD_MB, SKIP_LINK, Number, Slider, number_or_none
from aipic.web.ratelimit import RateLimiter
from aipic.web.security import titled, user_errors
from aipic.web.session import client_of, gpu_call, signed_in_account
from aipic.web.views import HISTORY_SIZE, credentials_view, history_gallery, outcome_outputs, panel_markdown, recorded_at, verify_markdown

FAILED_JS = "() => { window.aipicAnnounce && aipicAnnounce('The request did not complete: the reason is shown in the message at the top of the page.'); }"
ANNOUNCE_JS = "(text) => { window.aipicAnnounce && aipicAnnounce(text); }"
# The verdict's headline, read from the page once it shows it, spoken through the live region.
VERIFIED_JS = ("() => { setTimeout(() => { const head = document.querySelector('#verify-report h3'); "
               "window.aipicAnnounce && aipicAnnounce('Verified: ' + (head ? head.innerText : 'see the report')); }, 150); }")
# Gradio sets the page's light or dark mode as it starts; the choice remembered in this browser is applied after.
REMEMBERED_DARK_JS = ("() => { try { const choice = localStorage.getItem('aipic-dark'); if (choice === '1') document.body.classList.add('dark'); "
                      "else if (choice === '0') document.body.classList.remove('dark'); } catch (e) {} }")


class Handlers:
    """The app's event handlers over one pipeline. Each request kind turns its fields into a request; all of them
    run through ``_run`` (rate limit, the person's session for Stop, the engine, the outputs)."""

    def __init__(self, pipeline: AipicPipeline, limiter: RateLimiter, accounts=None):
        self.pipeline = pipeline
        self.limiter = limiter
        self.accounts = accounts
        self._running: dict = {}  # session → its jobs in the engine, so Stop can cancel them
        self._running_lock = threading.Lock()
        self._engine_run = gpu_call(pipeline.run, pipeline.catalog.limits.max_seconds) if pipeline.settings.inline else pipeline.run

    # ---- the one run helper ----------------------------------------------------------------------------

    def _run(self, http, make_job, history, progress, what: str, prompt: str | None = None, private: bool = False):
        """Check the client's rate, build the job (its request resolved once), run it under the person's session
        so that Stop reaches it, relay its steps to the person's progress bar, and give back the outputs.

        Gradio's progress works only on the handler's own thread: the engine's GPU thread puts its steps in a
        queue, and this thread shows the latest while it waits (inline mode runs the job on this thread)."""
        self.limiter.check(client_of(http))
        steps: queue.SimpleQueue = queue.SimpleQueue()

        def show(done: int, total: int) -> None:
            progress(done / max(total, 1), desc=f"{what}: step {done} of {total}")

        def relay() -> None:
            latest = None
            while True:
                try:
                    latest = steps.get_nowait()
                except queue.Empty:
                    break
            if latest is not None:
                show(*latest)

        inline = self.pipeline.settings.inline
        job = make_job(self._author_of(http), show if inline else (lambda done, total: steps.put((done, total))))
        session = getattr(http, "session_hash", None) or "anonymous"
        with self._running_lock:
            self._running.setdefault(session, set()).add(job)
        try:
            if inline:
                outcome = self._engine_run(job)
            else:
                progress(0, desc=f"{what}: waiting for the GPU")
                outcome = self.pipeline.run(job, on_wait=relay)
        except concurrent.futures.CancelledError:
            raise Cancelled("Stopped.") from None
        finally:
            with self._running_lock:
                self._running.get(session, set()).discard(job)
        kept, _ = self.restore_history(history)  # what a client sends as its history is checked like a stored one
        return outcome_outputs(self.pipeline, outcome, kept, prompt, private)

    def _author_of(self, http):
        account = signed_in_account(http, self.pipeline.settings.on_spaces, self.accounts)
        return self.pipeline.author_for_account(*account) if account else None

    @staticmethod
    def _rights(mining, inference, training, generative, constraint, rights) -> dict:
        return {
            "terms": {"data_mining": mining, "ai_inference": inference, "ai_training": training, "ai_generative_training": generative},
            "terms_constraint": constraint or "",
            "rights_statement": rights or "",
        }

    # ---- the request kinds (their inputs, in the order the UI and the API send them) ---------------------------

    def text_to_image(self, prompt, negative, seed, steps, guidance, width, height, batch, output_format, private=False, mining=None, inference=None, training=None, generative=None, constraint=None, rights=None, model=None, history=None, http: gr.Request | None = None, progress=gr.Progress()):
        request = GenerationRequest(prompt=prompt, negative_prompt=negative, seed=number_or_none(seed), steps=number_or_none(steps), guidance=number_or_none(guidance), width=number_or_none(width), height=number_or_none(height),
                                    batch=number_or_none(batch) or 1, output_format=output_format or None, private_prompt=bool(private),
                                    **self._rights(mining, inference, training, generative, constraint, rights))
        return self._run(http, lambda author, steps: self.pipeline.jobs.text_to_image(request, model or None, progress=steps, author=author), history, progress, "Generating",
                         prompt, bool(private))

    def image_to_image(self, init_file, prompt, negative, strength, seed, steps, guidance, batch, output_format, private=False, mining=None, inference=None, training=None, generative=None, constraint=None, rights=None, model=None, history=None, http: gr.Request | None = None, progress=gr.Progress()):
        if not init_file:
            self.limiter.check(client_of(http))
            raise BadInput("Please upload an init image.")
        request = GenerationRequest(prompt=prompt, negative_prompt=negative, seed=number_or_none(seed), steps=number_or_none(steps), guidance=number_or_none(guidance), strength=number_or_none(strength),
                                    batch=number_or_none(batch) or 1, output_format=output_format or None, private_prompt=bool(private),
                                    **self._rights(mining, inference, training, generative, constraint, rights))
        return self._run(http, lambda author, steps: self.pipeline.jobs.image_to_image(request, init_file, model or None, progress=steps, author=author), history, progress,
                         "Transforming", prompt, bool(private))

    def stylise(self, content_file, style_file, steps, size, style_weight, seed, output_format, mining=None, inference=None, training=None, generative=None, constraint=None, rights=None, history=None, http: gr.Request | None = None, progress=gr.Progress()):
        if not content_file or not style_file:
            self.limiter.check(client_of(http))
            raise BadInput("Please upload both a content image and a style image.")
        request = StyleRequest(content_image=content_file, style_image=style_file, steps=number_or_none(steps), size=number_or_none(size), style_weight=number_or_none(style_weight), seed=number_or_none(seed) or 0,
                               output_format=output_format or None, **self._rights(mining, inference, training, generative, constraint, rights))
        return self._run(http, lambda author, steps: self.pipeline.jobs.style(request, progress=steps, author=author), history, progress, "Style transfer")

    def verify(self, file, request: gr.Request | None = None):
        self.limiter.check(client_of(request))
        if not file:
            raise BadInput("Please upload a file to verify.")
        result = self.pipeline.verify(file)
        return verify_markdown(result), result.to_dict()

    # ---- small helpers of the page --------------------------------------------------------------------------

    def stop(self, request: gr.Request | None = None):
        """Stop: a queued request is dropped; a running batch is aborted once all of its requests have stopped."""
        session = getattr(request, "session_hash", None) or "anonymous"
        with self._running_lock:
            jobs = list(self._running.get(session, ()))
        for job in jobs:
            job.cancel()
        gr.Info(titled("Stopped", "A request still waiting is dropped; one already on the GPU stops at its next step."), title="Stopped")

    def who_is_signed_in(self, request: gr.Request | None = None):
        """Who is signed in, as HTML (links open here, not in a new tab): signing in is offered, never required."""
        account = signed_in_account(request, self.pipeline.settings.on_spaces, self.accounts)
        own = self.accounts is not None and self.accounts.enabled
        if account:
            leave = " · <a href='logout' target='_self'>Sign out</a>" if own else ""
            return (f"<p>Signed in as <strong>{html.escape(account[0])}</strong> ({html.escape(account[1])}): your outputs name you as their author, "
                    f"in a signed identity assertion.{leave}</p>")
        join = " <a href='login' target='_self'>Sign in</a> to be named as their author (optional)." if own else ""
        return f"<p>Not signed in: outputs are recorded as made anonymously (no name).{join}</p>"

    def select_credentials(self, paths, event: gr.SelectData):
        index = event.index if isinstance(event.index, int) and not isinstance(event.index, bool) and event.index >= 0 else 0  # as a client sent it
        return (*credentials_view(self.pipeline, paths, index), index)

    @staticmethod
    def reuse_seed(seeds, selected):
        """The selected output's seed back into the seed box: the same picture again (within the GPU tolerance)."""
        if not seeds:
            raise gr.Error("Make an image first; its seed can then be reused.", title="Nothing to reuse")
        return seeds[min(selected or 0, len(seeds) - 1)]

    @staticmethod
    def send_to_img2img(paths, selected):
        """The selected output into image-to-image; that tab's outputs are cleared of anything an earlier request left."""
        if not paths:
            raise gr.Error("Make an image first; it can then be edited in image-to-image.", title="Nothing to send")
        return paths[min(selected or 0, len(paths) - 1)], gr.Tabs(selected="i2i"), None, "", None, "", None, ""

    def check_upload(self, path):
        """Nothing to do once a picture arrives: the drop zone's guard has read its header already (a file that is
        not a picture aipic can read, or too large, is refused there with aipic's own words). Pictures too small
        to work from are said at once too."""
        if path:
            open_user_image(path, "picture", self.pipeline.catalog.limits.max_upload_pixels, MIN_INPUT_SIDE)

    def licence_for(self, key):
        """The chosen model, what will actually load for it, and its licence, without loading it: a loaded model
        reports its own (a placeholder's are aipic's random weights); otherwise the catalog's, or the
        placeholder's when the tiny stand-in will run."""
        entry = self.pipeline.catalog.entry("text_to_image", key or None)
        loaded = self.pipeline.models.loaded("text_to_image", entry.key)
        defaults = self.pipeline.models.request_defaults(entry.key)
        tiny = self.pipeline.models.runs_tiny(entry.key)
        if loaded is not None:
            label, licence = loaded.describe()["label"], loaded.license
        elif tiny:
            label, licence = f"tiny random weights in place of {entry.label}", entry.placeholder_license
        else:
            label, licence = entry.label, entry.license
        runs = ("Runs: a tiny random-weight stand-in (offline placeholder): pictures are noise." if tiny
                else f"Runs: {entry.label}" + (" (loaded)" if loaded is not None else " (loads on first use)"))
        settings = f"Its settings: {defaults.get('steps')} steps, guidance {defaults.get('guidance')}, {defaults.get('size')}×{defaults.get('size')} pixels."
        return f"**Model:** {label} · **Licence:** {licence_markdown(licence)}  \n{runs} {settings}"

    def model_changed(self, key):
        """A model's catalog defaults applied to the settings it needs (steps, guidance, size), with what will load."""
        defaults = self.pipeline.models.request_defaults(key or None)
        size = defaults.get("size")
        return (self.licence_for(key), gr.update(value=defaults.get("steps")), gr.update(value=defaults.get("guidance")), gr.update(value=size), gr.update(value=size))

    def model_changed_i2i(self, key):
        defaults = self.pipeline.models.request_defaults(key or None)
        return (self.licence_for(key), gr.update(value=defaults.get("img2img_steps", defaults.get("steps"))), gr.update(value=defaults.get("guidance")),
                gr.update(value=defaults.get("strength")))

    # ---- the history: kept in this browser ---------------------------------------------------------------

    def _own_output(self, path) -> bool:
        """A path the history may show: an existing output of this app (the browser's copy is not trusted)."""
        if not isinstance(path, str):
            return False
        real, root = os.path.realpath(path), os.path.realpath(self.pipeline.output_dir)
        return real.startswith(root + os.sep) and os.sep + ".staging" + os.sep not in real and os.path.isfile(real)

    def restore_history(self, stored):
        """The history this browser kept, checked entry by entry (outputs removed by retention drop out)."""
        # Entries name their picture under "output", not "path": a file value's key, which the request guard would
        # refuse (a whole event) once retention removed that picture; here a missing picture just drops out.
        stored = stored if isinstance(stored, list) else []
        entries = [entry for entry in stored if isinstance(entry, dict) and self._own_output(entry.get("output")) and isinstance(entry.get("caption"), str)]
        entries = [{"output": entry["output"], "caption": entry["caption"][:300]} for entry in entries][-HISTORY_SIZE:]
        return entries, history_gallery(entries)

    def history_credentials(self, history, event: gr.SelectData):
        """The credentials of the history picture clicked (newest first, as shown)."""
        entries = list(reversed(list(history or [])))
        index = event.index if isinstance(event.index, int) and not isinstance(event.index, bool) else -1
        if not 0 <= index < len(entries) or not isinstance(entries[index], dict) or not self._own_output(entries[index].get("output")):
            return "This picture is no longer kept here."
        path = entries[index]["output"]
        return panel_markdown(self.pipeline.credentials(path), made_at=recorded_at(self.pipeline, path))


# ---- pieces several tabs share ----------------------------------------------------------------------------


class Page:
    """The components several tabs build the same way, for one pipeline."""

    def __init__(self, pipeline: AipicPipeline, handlers: Handlers):
        self.pipeline = pipeline
        self.handlers = handlers
        self.limits = pipeline.catalog.limits
        self.defaults = pipeline.models.request_defaults()
        self.upload_limits = (f"{UPLOAD_FORMAT_NAMES} · up to {MAX_UPLOAD_MB} MB and {self.limits.max_upload_pixels / 1e6:.1f} megapixels. "
                              "The file is used as uploaded, so its own Content Credentials stay in the chain.")

    def signed_outputs(self, prefix, gallery_label, files_label, between=None):
        """A generating tab's output column, its components in the order outcome_outputs fills them: gallery
        (captions are the pictures' alt text), generation info, labelled download links, the Content Credentials
        panel (plain words, the raw manifest one click away), the outputs' paths, seeds and selected index, and
        the hidden text announced when a result arrives. ``between`` adds controls under the gallery."""
        out = SimpleNamespace(gallery=gr.Gallery(label=gallery_label, elem_id=f"{prefix}-gallery"))
        out.extra = between() if between is not None else None
        audit = gr.Markdown(elem_id=f"{prefix}-audit")
        out.links = gr.HTML(label=files_label, elem_id=f"{prefix}-files", js_on_load=None)
        files = gr.File(label=files_label, file_count="multiple", visible="hidden")  # the signed files for API clients
        out.panel = gr.Markdown(elem_id=f"{prefix}-credentials", label="Content Credentials")
        with gr.Accordion("Raw manifest (for C2PA specialists)", open=False):
            out.raw = gr.JSON(label="Active manifest")
        out.paths, out.seeds, out.selected = gr.State([]), gr.State([]), gr.State(0)
        out.announce = gr.Textbox(visible="hidden", elem_id=f"{prefix}-announce", label="Announcement")
        out.components = [out.gallery, audit, files, out.panel, out.raw, out.paths, out.seeds, out.selected]
        return out

    @staticmethod
    def go_and_stop(label, go_id, stop_id):
        with gr.Row():
            return gr.Button(label, variant="primary", elem_id=go_id), gr.Button("Stop", variant="stop", elem_id=stop_id)

    def drop_zone(self, label, elem_id):
        """One image drop zone with its preview: upload, paste or webcam. The original file is kept (no re-encoding).
        A file that is not a picture is refused as soon as it arrives (the same check guards every request)."""
        zone = gr.Image(label=label, type="filepath", image_mode=None, sources=["upload", "clipboard", "webcam"], height=220, elem_id=elem_id)
        zone.upload(user_errors(self.handlers.check_upload), zone, None, api_visibility="private")
        return zone

    def model_picker(self, prefix):
        entries = self.pipeline.catalog.entries["text_to_image"]
        choices = [(entry.label, key) for key, entry in entries.items()]
        return gr.Dropdown(choices, value=self.pipeline.catalog.defaults["text_to_image"], label="Model", elem_id=f"{prefix}-model",
                           info="Each model's licence is shown below; with the offline placeholders every choice runs the tiny stand-in.")

    @staticmethod
    def privacy_choice():
        return gr.Checkbox(label="Keep my prompt private (the signed manifest records only a salted hash; you keep the salt)", value=False)

    @staticmethod
    def rights_controls(prefix):
        """Training-and-mining terms (cawg.training-mining) and the person's own rights statement."""
        choices = [("allowed", "allowed"), ("not allowed", "notAllowed"), ("constrained", "constrained")]
        with gr.Accordion("Authorship and terms", open=False, elem_id=f"{prefix}-terms"):
            gr.Markdown("May others use this image for… (recorded as signed `cawg.training-mining` terms)")
            with gr.Row():
                fields = [gr.Dropdown(choices, value=DEFAULT_TERMS[use], label=USE_TITLES[use][0].upper() + USE_TITLES[use][1:], elem_id=f"{prefix}-terms-{use}") for use in USES]
            constraint = gr.Textbox(label="If constrained: under what terms", max_length=MAX_CONSTRAINT_CHARS)
            rights = gr.Textbox(label="Your rights statement (optional, recorded in the manifest)", placeholder="e.g. © 2026 Your Name. Some rights reserved.", max_length=MAX_RIGHTS_CHARS, elem_id=f"{prefix}-rights")
        return [*fields, constraint, rights]

    def licence_note(self, section, prefix):
        """The model and its licence, shown before generating."""
        if section == "text_to_image":
            return gr.Markdown(self.handlers.licence_for(None), elem_id=f"{prefix}-licence")
        model = self.pipeline.models.get(section)
        return gr.Markdown(f"**Model:** {model.describe()['label']} · **Licence:** {licence_markdown(model.license)}", elem_id=f"{prefix}-licence")

    def format_picker(self):
        return gr.Radio(list(OUTPUT_FORMATS), value=self.pipeline.settings.output_format, label="File format (all carry signed credentials)")


# ---- one builder per tab ----------------------------------------------------------------------------------


def text_to_image_tab(page: Page):
    limits, defaults = page.limits, page.defaults
    with gr.Tab("Text to image", id="t2i"):
        with gr.Row():
            with gr.Column():
                prompt = gr.Textbox(label="Prompt", lines=2, elem_id="t2i-prompt", placeholder="Describe the picture, e.g. a lighthouse on a cliff at dusk, oil painting",
                                    max_length=limits.max_prompt_chars)
                gr.Examples(EXAMPLE_PROMPTS, inputs=[prompt], label="Try an example")
                negative = gr.Textbox(label="Negative prompt", lines=1, placeholder="What to avoid, e.g. blurry, text")
                model = page.model_picker("t2i")
                licence = page.licence_note("text_to_image", "t2i")
                with gr.Accordion("Settings", open=False, elem_id="t2i-settings"):
                    seed = Number(label="Seed", value=-1, precision=0, elem_id="t2i-seed", info="-1 picks one at random; the seed used is shown beside each picture. The same seed and settings give the same picture.")
                    steps = Slider(1, limits.max_steps, value=defaults.get("steps", 20), step=1, label="Steps", elem_id="t2i-steps",
                                   info="More steps: more detail, slower. Choosing a model sets its own (SD-Turbo: 1–4; Stable Diffusion 1.5: about 25).")
                    guidance = Slider(0, limits.max_guidance, value=defaults.get("guidance", 7.5), step=0.5, label="Guidance", elem_id="t2i-guidance",
                                      info="How literally to follow the prompt. Higher sticks closer to the words; choosing a model sets its own (SD-Turbo works at 0 and then ignores the negative prompt).")
                    size = defaults.get("size", 512)
                    width = Slider(limits.min_side, limits.max_side, value=size, step=8, label="Width", info=f"{limits.min_side}–{limits.max_side} pixels, a multiple of 8")
                    height = Slider(limits.min_side, limits.max_side, value=size, step=8, label="Height")
                    batch = Slider(1, limits.max_batch, value=1, step=1, label="Pictures", elem_id="t2i-batch", info=f"Up to {limits.max_batch} at once, seeds counting up from the first")
                    output_format = page.format_picker()
                private = page.privacy_choice()
                rights = page.rights_controls("t2i")
                go, stop = page.go_and_stop("Generate", "t2i-generate", "t2i-stop")
            with gr.Column():
                def reuse_and_send():
                    with gr.Row():
                        return gr.Button("Reuse seed", size="sm", elem_id="t2i-reuse-seed"), gr.Button("Send to image-to-image", size="sm", elem_id="t2i-send-i2i")

                out = page.signed_outputs("t2i", "Signed outputs", "Download signed files", between=reuse_and_send)
        model.change(user_errors(page.handlers.model_changed), model, [licence, steps, guidance, width, height], api_visibility="private")
    inputs = [prompt, negative, seed, steps, guidance, width, height, batch, output_format, private, *rights, model]
    return SimpleNamespace(inputs=inputs, out=out, go=go, stop=stop, seed=seed, reuse=out.extra[0], send=out.extra[1])


def image_to_image_tab(page: Page):
    limits, defaults = page.limits, page.defaults
    with gr.Tab("Image to image", id="i2i"):
        with gr.Row():
            with gr.Column():
                init_file = page.drop_zone("Your image (drop, paste or take a photo)", "i2i-file")
                gr.Markdown(page.upload_limits, elem_id="i2i-limits")
                prompt = gr.Textbox(label="Prompt", lines=2, elem_id="i2i-prompt", placeholder="How to change it, e.g. as a watercolour painting", max_length=limits.max_prompt_chars)
                negative = gr.Textbox(label="Negative prompt", lines=1, placeholder="What to avoid")
                model = page.model_picker("i2i")
                licence = page.licence_note("text_to_image", "i2i")
                with gr.Accordion("Settings", open=False, elem_id="i2i-settings"):
                    strength = Slider(0.05, 1.0, value=defaults.get("strength", 0.6), step=0.05, label="Strength",
                                      info="How much to change your image: low keeps it close, 1 keeps little more than its colours and layout.")
                    seed = Number(label="Seed", value=-1, precision=0, info="-1 picks one at random")
                    steps = Slider(1, limits.max_steps, value=defaults.get("img2img_steps", defaults.get("steps", 20)), step=1, label="Steps", info="Only steps × strength of them run.")
                    guidance = Slider(0, limits.max_guidance, value=defaults.get("guidance", 7.5), step=0.5, label="Guidance", info="How literally to follow the prompt.")
                    batch = Slider(1, limits.max_batch, value=1, step=1, label="Pictures")
                    output_format = page.format_picker()
                private = page.privacy_choice()
                rights = page.rights_controls("i2i")
                go, stop = page.go_and_stop("Transform", "i2i-go", "i2i-stop")
            with gr.Column():
                out = page.signed_outputs("i2i", "Signed outputs", "Download signed files")
        model.change(user_errors(page.handlers.model_changed_i2i), model, [licence, steps, guidance, strength], api_visibility="private")
    inputs = [init_file, prompt, negative, strength, seed, steps, guidance, batch, output_format, private, *rights, model]
    return SimpleNamespace(inputs=inputs, out=out, go=go, stop=stop, init_file=init_file)


def style_tab(page: Page):
    limits = page.limits
    with gr.Tab("Style transfer", id="style"):
        with gr.Row():
            with gr.Column():
                with gr.Row():
                    content_file = page.drop_zone("Content image", "style-content")
                    style_file = page.drop_zone("Style image", "style-style")
                gr.Markdown(page.upload_limits)
                page.licence_note("style", "style")
                with gr.Accordion("Settings", open=False, elem_id="style-settings"):
                    steps = Slider(1, limits.max_style_steps, value=100, step=1, label="Optimisation steps", elem_id="style-steps", info="More steps: the style takes hold more, slower.")
                    size = Slider(limits.min_side, min(limits.max_side, 768), value=256, step=8, label="Longest side")
                    weight = Number(label="Style weight", value=1e5, info="How strongly the style image's textures win over the content's layout (try 1e4 to 1e6).")
                    seed = Number(label="Seed", value=0, precision=0)
                    output_format = page.format_picker()
                rights = page.rights_controls("style")
                go, stop = page.go_and_stop("Stylise", "style-go", "style-stop")
            with gr.Column():
                out = page.signed_outputs("style", "Signed output", "Download signed file")
    inputs = [content_file, style_file, steps, size, weight, seed, output_format, *rights]
    return SimpleNamespace(inputs=inputs, out=out, go=go, stop=stop)


def history_tab():
    with gr.Tab("History", id="history"):
        gr.Markdown("What you made here, newest first, kept in this browser (pictures the site no longer keeps drop out). "
                    "Choose one to see its Content Credentials.")
        gallery = gr.Gallery(label="Your pictures", columns=4, elem_id="history-gallery", allow_preview=False)
        panel = gr.Markdown(elem_id="history-credentials")
        return SimpleNamespace(gallery=gallery, panel=panel)


def verify_tab(page: Page):
    with gr.Tab("Verify", id="verify"):
        gr.Markdown("Check any picture's Content Credentials: who signed it, who the author is, what a person and what an AI contributed, and its bias audit.")
        file = gr.File(label="Image to verify", type="filepath", elem_id="verify-file")
        go = gr.Button("Verify", variant="primary", elem_id="verify-button")
        report = gr.Markdown(elem_id="verify-report")
        with gr.Accordion("Details (for C2PA specialists)", open=False):
            details = gr.JSON(label="Details")
        # Verify as soon as a file arrives (the server has it then), and again on the button. Each verification
        # may hold up to 300 MB: the tab has as many Gradio slots as the verifier has.
        verified = gr.on([file.upload, go.click], user_errors(page.handlers.verify), file, [report, details], api_name="verify",
                         concurrency_id="verify", concurrency_limit=VERIFY_SLOTS.slots)
        verified.success(None, None, None, js=VERIFIED_JS, api_visibility="private")
        verified.failure(None, None, None, js=FAILED_JS, api_visibility="private")


# ---- the page ----------------------------------------------------------------------------------------------


def browser_secret(home) -> str:
    """The key the history kept in browsers is sealed with: kept in the home (0600), so a restart does not make
    every browser's history unreadable."""
    path = home / "browser-state.key"
    if not path.is_file():
        write_atomically(path, secrets.token_hex(32), private=True)
    return path.read_text().strip()


def build_app(pipeline: AipicPipeline, limiter: RateLimiter | None = None, accounts=None) -> gr.Blocks:
    handlers = Handlers(pipeline, limiter or RateLimiter(pipeline.settings.rate_limit), accounts)
    page = Page(pipeline, handlers)
    notes = pipeline.placeholder_notes()
    # The signed outputs are served straight from the output folder (one copy on disk, the signed bytes
    # themselves); Gradio's cache holds only uploads, dropped after a day.
    pipeline.output_dir.mkdir(parents=True, exist_ok=True)
    gr.set_static_paths([str(pipeline.output_dir)])
    with gr.Blocks(title="aipic", delete_cache=(3600, 86400), analytics_enabled=pipeline.settings.analytics) as demo:
        gr.HTML(SKIP_LINK + LIVE_REGION, elem_id="aipic-top", js_on_load=None)
        with gr.Row():
            gr.Markdown(
                "# aipic\nMake pictures from words or from your own images. **Every picture is checked for bias** (how an AI "
                "model perceives the people in it) **and carries signed Content Credentials** saying what you did and what the AI "
                "did. Download the file to keep them.",
                elem_id="intro",
            )
            gr.Button("🌓 Dark mode", size="sm", scale=0, elem_id="theme-toggle").click(None, js=DARK_MODE_JS, api_visibility="private")
        if notes:
            with gr.Group():
                gr.Markdown("> ⚠ **Demo mode — offline placeholder models**: pictures are noise and the checks are not real. Details below.", elem_id="placeholder-banner")
                with gr.Accordion("Details for operators", open=False):
                    gr.Markdown("  \n".join(notes))
        with gr.Row():
            signed_in = gr.HTML(elem_id="signed-in", js_on_load=None)
            if pipeline.settings.on_spaces:
                gr.LoginButton()
        demo.load(user_errors(handlers.who_is_signed_in), None, signed_in, api_visibility="private")
        demo.load(None, js=REMEMBERED_DARK_JS, api_visibility="private")
        history = gr.BrowserState([], storage_key="aipic-history", secret=browser_secret(pipeline.home))

        with gr.Column(elem_id="aipic-main"):
            with gr.Tabs() as tabs:
                t2i = text_to_image_tab(page)
                i2i = image_to_image_tab(page)
                style = style_tab(page)
                past = history_tab()
                verify_tab(page)

        tail = [history, past.gallery]
        demo.load(user_errors(handlers.restore_history), history, tail, api_visibility="private")
        past.gallery.select(user_errors(handlers.history_credentials), history, past.panel, api_visibility="private")
        t_event = t2i.go.click(user_errors(handlers.text_to_image), [*t2i.inputs, history], [*t2i.out.components, *tail, t2i.out.links, t2i.out.announce], api_name="text_to_image")
        t2i.reuse.click(user_errors(handlers.reuse_seed), [t2i.out.seeds, t2i.out.selected], t2i.seed, api_visibility="private")
        # New content in the image-to-image tab clears what its outputs showed of an earlier failure.
        t2i.send.click(user_errors(handlers.send_to_img2img), [t2i.out.paths, t2i.out.selected], [i2i.init_file, tabs, *i2i.out.components[:5], i2i.out.links], api_visibility="private")
        i_event = i2i.go.click(user_errors(handlers.image_to_image), [*i2i.inputs, history], [*i2i.out.components, *tail, i2i.out.links, i2i.out.announce], api_name="image_to_image")
        s_event = style.go.click(user_errors(handlers.stylise), [*style.inputs, history], [*style.out.components, *tail, style.out.links, style.out.announce], api_name="style_transfer",
                                 concurrency_id="long-jobs", concurrency_limit=2)  # long jobs: their own Gradio slots and engine lane
        for tab, event in ((t2i, t_event), (i2i, i_event), (style, s_event)):
            tab.stop.click(handlers.stop, None, None, cancels=[event], api_visibility="private")
            tab.out.gallery.select(user_errors(handlers.select_credentials), tab.out.paths, [tab.out.panel, tab.out.raw, tab.out.selected], api_visibility="private")
            event.success(None, tab.out.announce, None, js=ANNOUNCE_JS, api_visibility="private")
            event.failure(None, None, None, js=FAILED_JS, api_visibility="private")
    return demo
