"""aipic's Gradio app: a thin UI over aipic.pipeline.AipicPipeline.

Every image shown went through generate → bias audit → C2PA signing; the UI
serves the signed files by path (never a re-encoded copy, which would strip
the Content Credentials).  Uploads are taken as files, so their own
credentials stay in the provenance chain.

    python app.py [--host 127.0.0.1] [--port 7860] [--models auto|real|tiny]
"""

import argparse
import concurrent.futures
import threading
import logging
import os
import time
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
from gradio import utils as gradio_utils

from aipic import authorship
from aipic.errors import AipicError
from aipic.engine import EngineSettings
from aipic.generate import GenerationRequest
from aipic.images import OUTPUT_FORMATS
from aipic.pipeline import AipicPipeline
from aipic.publish import STAGING
from aipic.ratelimit import RateLimiter
from aipic.verify import VERIFY_SLOTS, badge_html
from aipic.style import StyleRequest
from aipic.webui import (  # noqa: F401 - re-exported for callers of app
    DARK_MODE_JS,
    EXAMPLE_PROMPTS,
    ON_SPACES,
    Number,
    Slider,
    _number,
    auth_from_env,
    client_of,
    credentials_view,
    gpu_call,
    keep_inputs_out_of_errors,
    outcome_outputs,
    rate_limit_from_env,
    trusted_proxies_from_env,
    verify_slots_from_env,
    signed_in_account,
    tell_waiting_clients,
    user_errors,
)

log = logging.getLogger("aipic.app")

def build_app(pipeline: AipicPipeline, limiter: RateLimiter | None = None) -> gr.Blocks:
    limiter = limiter or rate_limit_from_env()
    limits = pipeline.catalog.limits
    notes = pipeline.placeholder_notes()
    t2i_defaults = pipeline._defaults(pipeline.models.get("text_to_image"))

    running: dict = {}  # session → its jobs in the engine, so Stop can cancel them
    running_lock = threading.Lock()

    engine_run = gpu_call(pipeline.run, pipeline.catalog.limits.max_seconds) if pipeline.settings.inline else pipeline.run

    def run(job, http):
        """Run a job in the engine, registered under the person's session so that Stop reaches it."""
        session = getattr(http, "session_hash", None) or "anonymous"
        with running_lock:
            running.setdefault(session, set()).add(job)
        try:
            return engine_run(job)
        except concurrent.futures.CancelledError:
            raise AipicError("Stopped.") from None
        finally:
            with running_lock:
                running.get(session, set()).discard(job)

    def stop(request: gr.Request | None = None):
        """Stop: a queued request is dropped; a running batch is aborted once all of its requests have stopped."""
        session = getattr(request, "session_hash", None) or "anonymous"
        with running_lock:
            jobs = list(running.get(session, ()))
        for job in jobs:
            job.cancel()

    def author_of(http):
        account = signed_in_account(http)
        return pipeline.author_for_account(*account) if account else None

    def rights_fields(mining, inference, training, generative, constraint, rights) -> dict:
        return {
            "terms": {"data_mining": mining, "ai_inference": inference, "ai_training": training, "ai_generative_training": generative},
            "terms_constraint": constraint or "",
            "rights_statement": rights or "",
        }

    def who_is_signed_in(request: gr.Request | None = None):
        account = signed_in_account(request)
        if account:
            return f"👤 Signed in as **{account[0]}** ({account[1]}): your outputs name you as their author, in a signed identity assertion."
        return "👤 Not signed in: outputs are recorded as made anonymously (no name)."

    def steps_of(progress, what):
        """Step progress from the engine's GPU loop (diffusers' callback, the style optimiser) to the person's bar."""
        return lambda done, total: progress(done / max(total, 1), desc=what)

    @user_errors
    def text_to_image(prompt, negative, seed, steps, guidance, width, height, batch, output_format, private=False, mining=None, inference=None, training=None, generative=None, constraint=None, rights=None, model=None, history=None, http: gr.Request | None = None, progress=gr.Progress()):
        limiter.check(client_of(http))
        request = GenerationRequest(prompt=prompt, negative_prompt=negative, seed=_number(seed), steps=_number(steps), guidance=_number(guidance), width=_number(width), height=_number(height), batch=_number(batch) or 1, output_format=output_format or None, private_prompt=bool(private),
                                    **rights_fields(mining, inference, training, generative, constraint, rights))
        job = pipeline.text_to_image_job(request, model or None, progress=steps_of(progress, "generating"), author=author_of(http))
        return outcome_outputs(pipeline, run(job, http), history)

    @user_errors
    def image_to_image(init_file, prompt, negative, strength, seed, steps, guidance, batch, output_format, private=False, mining=None, inference=None, training=None, generative=None, constraint=None, rights=None, model=None, history=None, http: gr.Request | None = None, progress=gr.Progress()):
        limiter.check(client_of(http))
        if not init_file:
            raise AipicError("Please upload an init image.")
        request = GenerationRequest(prompt=prompt, negative_prompt=negative, seed=_number(seed), steps=_number(steps), guidance=_number(guidance), strength=_number(strength), batch=_number(batch) or 1, output_format=output_format or None, private_prompt=bool(private),
                                    **rights_fields(mining, inference, training, generative, constraint, rights))
        job = pipeline.image_to_image_job(request, init_file, model or None, progress=steps_of(progress, "transforming"), author=author_of(http))
        return outcome_outputs(pipeline, run(job, http), history)

    @user_errors
    def stylise(content_file, style_file, steps, size, style_weight, seed, output_format, mining=None, inference=None, training=None, generative=None, constraint=None, rights=None, history=None, http: gr.Request | None = None, progress=gr.Progress()):
        limiter.check(client_of(http))
        if not content_file or not style_file:
            raise AipicError("Please upload both a content image and a style image.")
        request = StyleRequest(content_image=content_file, style_image=style_file, steps=_number(steps), size=_number(size), style_weight=_number(style_weight), seed=_number(seed) or 0, output_format=output_format or None,
                               **rights_fields(mining, inference, training, generative, constraint, rights))
        job = pipeline.style_job(request, progress=steps_of(progress, "style transfer"), author=author_of(http))
        return outcome_outputs(pipeline, run(job, http), history)

    @user_errors
    def verify(file, request: gr.Request | None = None):
        limiter.check(client_of(request))
        if not file:
            raise AipicError("Please upload a file to verify.")
        result = pipeline.verify(file)
        details = result.report().replace("\n", "  \n")
        codes = f"  \nc2pa codes: `{', '.join(result.codes)}`" if result.codes else ""
        return f"### {badge_html(result.verdict)} {result.message}\n\n{details}{codes}", result.to_dict()

    def select_credentials(paths, event: gr.SelectData):
        index = event.index or 0
        return (*credentials_view(pipeline, paths, index), index)

    def reuse_seed(seeds, selected):
        """The selected output's seed back into the seed box: the same picture again (within the GPU tolerance)."""
        if not seeds:
            raise gr.Error("Make an image first; its seed can then be reused.", title="Nothing to reuse")
        return seeds[min(selected or 0, len(seeds) - 1)]

    def send_to_img2img(paths, selected):
        if not paths:
            raise gr.Error("Make an image first; it can then be edited in image-to-image.", title="Nothing to send")
        return paths[min(selected or 0, len(paths) - 1)], gr.Tabs(selected="i2i")

    def licence_for(key):
        """The chosen model's licence, without loading it: a loaded model reports its own (a placeholder's are
        aipic's random weights); otherwise the catalog's, or the placeholder's when only tiny models run."""
        entry = pipeline.catalog.entry("text_to_image", key or None)
        loaded = pipeline.models._loaded.get(("text_to_image", entry.key))
        if loaded is not None:
            label, licence = loaded.describe()["label"], loaded.license
        elif pipeline.models.mode == "tiny":
            label, licence = f"tiny random weights in place of {entry.label}", entry.placeholder_license
        else:
            label, licence = entry.label, entry.license
        return f"**Model:** {label} · **Licence:** {authorship.licence_markdown(licence)}"

    def signed_outputs(prefix, gallery_label, files_label, between=None):
        """A generating tab's output column, its components in the order outcome_outputs fills them: gallery,
        generation info, files, the Content Credentials panel (plain words, the raw manifest one click away), and
        the outputs' paths, seeds and selected index. ``between`` adds controls under the gallery."""
        out = SimpleNamespace(gallery=gr.Gallery(label=gallery_label, elem_id=f"{prefix}-gallery"))
        out.extra = between() if between is not None else None
        audit = gr.Markdown(elem_id=f"{prefix}-audit")
        files = gr.File(label=files_label, file_count="multiple", elem_id=f"{prefix}-files")
        out.panel = gr.Markdown(elem_id=f"{prefix}-credentials", label="Content Credentials")
        with gr.Accordion("Raw manifest", open=False):
            out.raw = gr.JSON(label="Active manifest")
        out.paths, out.seeds, out.selected = gr.State([]), gr.State([]), gr.State(0)
        out.components = [out.gallery, audit, files, out.panel, out.raw, out.paths, out.seeds, out.selected]
        return out

    def go_and_stop(label, go_id, stop_id):
        with gr.Row():
            return gr.Button(label, variant="primary", elem_id=go_id), gr.Button("Stop", variant="stop", elem_id=stop_id)

    upload_limits = (f"PNG, JPEG, WebP, GIF, TIFF or BMP · up to 25 MB and {limits.max_upload_pixels / 1e6:.1f} megapixels. "
                     "The file is used as uploaded, so its own Content Credentials stay in the chain.")

    def drop_zone(label, elem_id):
        """One image drop zone with its preview: upload, paste or webcam. The original file is kept (no re-encoding)."""
        return gr.Image(label=label, type="filepath", image_mode=None, sources=["upload", "clipboard", "webcam"], height=220, elem_id=elem_id)

    def model_picker(prefix):
        entries = pipeline.catalog.entries["text_to_image"]
        choices = [(entry.label, key) for key, entry in entries.items()]
        return gr.Dropdown(choices, value=pipeline.catalog.defaults["text_to_image"], label="Model", elem_id=f"{prefix}-model",
                           info="Each model's licence is shown below; with the offline placeholders every choice runs the tiny stand-in.")

    def privacy_choice():
        return gr.Checkbox(label="Keep my prompt private (the signed manifest records only a salted hash; you keep the salt)", value=False)

    def rights_controls(prefix):
        """Training-and-mining terms (cawg.training-mining) and the person's own rights statement."""
        choices = [("allowed", "allowed"), ("not allowed", "notAllowed"), ("constrained", "constrained")]
        with gr.Accordion("Authorship and terms", open=False, elem_id=f"{prefix}-terms"):
            gr.Markdown("May others use this image for… (recorded as signed `cawg.training-mining` terms)")
            with gr.Row():
                fields = [gr.Dropdown(choices, value=authorship.DEFAULT_TERMS[use], label=authorship.USE_TITLES[use][0].upper() + authorship.USE_TITLES[use][1:], elem_id=f"{prefix}-terms-{use}") for use in authorship.USES]
            constraint = gr.Textbox(label="If constrained: under what terms", max_length=authorship.MAX_CONSTRAINT_CHARS)
            rights = gr.Textbox(label="Your rights statement (optional, recorded in the manifest)", placeholder="e.g. © 2026 Your Name. Some rights reserved.", max_length=authorship.MAX_RIGHTS_CHARS, elem_id=f"{prefix}-rights")
        return [*fields, constraint, rights]

    def licence_note(section, prefix):
        """The model and its licence, shown before generating."""
        if section == "text_to_image":
            return gr.Markdown(licence_for(None), elem_id=f"{prefix}-licence")
        model = pipeline.models.get(section)
        return gr.Markdown(f"**Model:** {model.describe()['label']} · **Licence:** {authorship.licence_markdown(model.license)}", elem_id=f"{prefix}-licence")

    def format_picker():
        return gr.Radio(list(OUTPUT_FORMATS), value=pipeline.settings.output_format, label="File format (all carry signed credentials)")

    # The signed outputs are served straight from the output folder (one copy on disk, the signed bytes
    # themselves); Gradio's cache holds only uploads, dropped after a day.
    pipeline.output_dir.mkdir(parents=True, exist_ok=True)
    gr.set_static_paths([str(pipeline.output_dir)])
    with gr.Blocks(title="aipic", delete_cache=(3600, 86400)) as demo:
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
            signed_in = gr.Markdown(elem_id="signed-in")
            if ON_SPACES:
                gr.LoginButton()
        demo.load(who_is_signed_in, None, signed_in, api_visibility="private")
        history = gr.State([])

        with gr.Tabs() as tabs:
            with gr.Tab("Text to image", id="t2i"):
                with gr.Row():
                    with gr.Column():
                        prompt = gr.Textbox(label="Prompt", lines=2, elem_id="t2i-prompt", placeholder="Describe the picture, e.g. a lighthouse on a cliff at dusk, oil painting",
                                            max_length=limits.max_prompt_chars)
                        gr.Examples(EXAMPLE_PROMPTS, inputs=[prompt], label="Try an example")
                        negative = gr.Textbox(label="Negative prompt", lines=1, placeholder="What to avoid, e.g. blurry, text")
                        t_model = model_picker("t2i")
                        t_licence = licence_note("text_to_image", "t2i")
                        with gr.Accordion("Settings", open=False, elem_id="t2i-settings"):
                            seed = Number(label="Seed", value=-1, precision=0, elem_id="t2i-seed", info="-1 picks one at random; the seed used is shown beside each picture. The same seed and settings give the same picture.")
                            steps = Slider(1, limits.max_steps, value=t2i_defaults.get("steps", 20), step=1, label="Steps", info="More steps: more detail, slower. SD-Turbo needs 1–4.")
                            guidance = Slider(0, limits.max_guidance, value=t2i_defaults.get("guidance", 7.5), step=0.5, label="Guidance",
                                                 info="How literally to follow the prompt. Higher sticks closer to the words; SD-Turbo works at 0 (and ignores the negative prompt at 1 or below).")
                            size = t2i_defaults.get("size", 512)
                            width = Slider(limits.min_side, limits.max_side, value=size, step=8, label="Width", info=f"{limits.min_side}–{limits.max_side} pixels, a multiple of 8")
                            height = Slider(limits.min_side, limits.max_side, value=size, step=8, label="Height")
                            batch = Slider(1, limits.max_batch, value=1, step=1, label="Pictures", info=f"Up to {limits.max_batch} at once, seeds counting up from the first")
                            output_format = format_picker()
                        private = privacy_choice()
                        t_rights = rights_controls("t2i")
                        generate, t_stop = go_and_stop("Generate", "t2i-generate", "t2i-stop")
                    with gr.Column():
                        def reuse_and_send():
                            with gr.Row():
                                return gr.Button("Reuse seed", size="sm", elem_id="t2i-reuse-seed"), gr.Button("Send to image-to-image", size="sm", elem_id="t2i-send-i2i")

                        t_out = signed_outputs("t2i", "Signed outputs", "Download signed files", between=reuse_and_send)
                        t_reuse, t_send = t_out.extra
                t_model.change(licence_for, t_model, t_licence, api_visibility="private")

            with gr.Tab("Image to image", id="i2i"):
                with gr.Row():
                    with gr.Column():
                        init_file = drop_zone("Your image (drop, paste or take a photo)", "i2i-file")
                        gr.Markdown(upload_limits, elem_id="i2i-limits")
                        i_prompt = gr.Textbox(label="Prompt", lines=2, elem_id="i2i-prompt", placeholder="How to change it, e.g. as a watercolour painting", max_length=limits.max_prompt_chars)
                        i_negative = gr.Textbox(label="Negative prompt", lines=1, placeholder="What to avoid")
                        i_model = model_picker("i2i")
                        i_licence = licence_note("text_to_image", "i2i")
                        with gr.Accordion("Settings", open=False):
                            strength = Slider(0.05, 1.0, value=t2i_defaults.get("strength", 0.6), step=0.05, label="Strength",
                                                 info="How much to change your image: low keeps it close, 1 keeps little more than its colours and layout.")
                            i_seed = Number(label="Seed", value=-1, precision=0, info="-1 picks one at random")
                            i_steps = Slider(1, limits.max_steps, value=t2i_defaults.get("img2img_steps", t2i_defaults.get("steps", 20)), step=1, label="Steps", info="Only steps × strength of them run.")
                            i_guidance = Slider(0, limits.max_guidance, value=t2i_defaults.get("guidance", 7.5), step=0.5, label="Guidance", info="How literally to follow the prompt.")
                            i_batch = Slider(1, limits.max_batch, value=1, step=1, label="Pictures")
                            i_format = format_picker()
                        i_private = privacy_choice()
                        i_rights = rights_controls("i2i")
                        i_go, i_stop = go_and_stop("Transform", "i2i-go", "i2i-stop")
                    with gr.Column():
                        i_out = signed_outputs("i2i", "Signed outputs", "Download signed files")
                i_model.change(licence_for, i_model, i_licence, api_visibility="private")

            with gr.Tab("Style transfer", id="style"):
                with gr.Row():
                    with gr.Column():
                        with gr.Row():
                            content_file = drop_zone("Content image", "style-content")
                            style_file = drop_zone("Style image", "style-style")
                        gr.Markdown(upload_limits)
                        licence_note("style", "style")
                        with gr.Accordion("Settings", open=False):
                            s_steps = Slider(1, limits.max_style_steps, value=100, step=1, label="Optimisation steps", elem_id="style-steps", info="More steps: the style takes hold more, slower.")
                            s_size = Slider(limits.min_side, min(limits.max_side, 768), value=256, step=8, label="Longest side")
                            s_weight = Number(label="Style weight", value=1e5, info="How strongly the style image's textures win over the content's layout (try 1e4 to 1e6).")
                            s_seed = Number(label="Seed", value=0, precision=0)
                            s_format = format_picker()
                        s_rights = rights_controls("style")
                        s_go, s_stop = go_and_stop("Stylise", "style-go", "style-stop")
                    with gr.Column():
                        s_out = signed_outputs("style", "Signed output", "Download signed file")

            with gr.Tab("History", id="history"):
                gr.Markdown("Everything you made in this session, newest first (kept only while this page is open; download what you want to keep).")
                history_gallery = gr.Gallery(label="This session", columns=6, elem_id="history-gallery")

            with gr.Tab("Verify", id="verify"):
                gr.Markdown("Check any picture's Content Credentials: who signed it, who the author is, what a person and what an AI contributed, and its bias audit.")
                v_file = gr.File(label="Image to verify", type="filepath", elem_id="verify-file")
                v_go = gr.Button("Verify", variant="primary", elem_id="verify-button")
                v_report = gr.Markdown(elem_id="verify-report")
                v_json = gr.JSON(label="Details")
                # Verify as soon as a file arrives (the server has it then), and again on the button.
                gr.on([v_file.upload, v_go.click], verify, v_file, [v_report, v_json], api_name="verify",
                      concurrency_id="verify", concurrency_limit=VERIFY_SLOTS.slots)  # each verification may hold up to 300 MB

        tail = [history, history_gallery]
        t_event = generate.click(text_to_image, [prompt, negative, seed, steps, guidance, width, height, batch, output_format, private, *t_rights, t_model, history],
                                 [*t_out.components, *tail], api_name="text_to_image")
        t_reuse.click(reuse_seed, [t_out.seeds, t_out.selected], seed, api_visibility="private")
        t_send.click(send_to_img2img, [t_out.paths, t_out.selected], [init_file, tabs], api_visibility="private")
        i_event = i_go.click(image_to_image, [init_file, i_prompt, i_negative, strength, i_seed, i_steps, i_guidance, i_batch, i_format, i_private, *i_rights, i_model, history],
                             [*i_out.components, *tail], api_name="image_to_image")
        s_event = s_go.click(stylise, [content_file, style_file, s_steps, s_size, s_weight, s_seed, s_format, *s_rights, history],
                             [*s_out.components, *tail], api_name="style_transfer",
                             concurrency_id="long-jobs", concurrency_limit=2)  # long jobs: their own Gradio slots and engine lane
        for out, event, stop_button in ((t_out, t_event, t_stop), (i_out, i_event, i_stop), (s_out, s_event, s_stop)):
            stop_button.click(stop, None, None, cancels=[event], api_visibility="private")
            out.gallery.select(select_credentials, out.paths, [out.panel, out.raw, out.selected], api_visibility="private")
    return demo


def start_retention(pipeline: AipicPipeline, every_s: float = 3600) -> None:
    """Apply the output retention (AIPIC_RETENTION_DAYS) now and then hourly, in the background."""
    import threading

    def loop():
        while True:
            try:
                pipeline.apply_retention()
            except Exception:  # noqa: BLE001 - retention must never stop the app
                log.exception("retention failed")
            time.sleep(every_s)

    threading.Thread(target=loop, name="aipic-retention", daemon=True).start()


def make_server_app(pipeline: AipicPipeline, demo: gr.Blocks):
    """The app's HTTP server: Gradio at /, the engine's Prometheus metrics at /metrics."""
    from fastapi import FastAPI, Response

    server = FastAPI()

    @server.get("/metrics", include_in_schema=False)
    def metrics():
        return Response(pipeline.engine.metrics.render(), media_type=pipeline.engine.metrics.content_type)

    secrets = [pipeline.key_dir, pipeline.home / "keys-backup", pipeline.home / "registry.sqlite3"]
    for served in (pipeline.output_dir, Path(gradio_utils.get_upload_folder())):
        inside = [path for path in secrets if gradio_utils.is_in_or_equal(path.resolve(), served.resolve())]
        if inside:
            raise AipicError(f"The signing keys and the registry must not lie inside a folder the app serves ({served}); choose another home with --home or AIPIC_HOME.")
    # The engine batches across requests: let as many events reach it at once as fit in one GPU batch,
    # instead of Gradio serialising them first (the queue's default is one event at a time).
    # api_open=False: every request goes through the queue (and its max_size); /gradio_api/run/… is closed.
    demo.queue(default_concurrency_limit=pipeline.settings.max_gpu_batch, max_size=64, api_open=False)
    app = gr.mount_gradio_app(
        server,
        demo,
        path="",
        auth=auth_from_env(),
        auth_message="Sign in: your outputs will name you as their author.",
        allowed_paths=[str(pipeline.output_dir)],
        blocked_paths=[str(pipeline.key_dir), str(pipeline.home / "keys-backup"), str(pipeline.home / "quarantine"), str(pipeline.output_dir / STAGING)],
        max_file_size="25mb",
        footer_links=["api"],
        show_error=False,  # mount's default is True: an internal error's text (a server path) would reach the client
    )
    # Gradio accepts an input file only if it uploaded it (or it is a static output) once ``has_launched`` is
    # set, which only launch() does: without it a client could name any server file (the CA key) as an input
    # and Gradio would copy it into its cache and serve it. Mounted apps must set it themselves
    # (tests/test_app_security.py keeps it from being lost in a Gradio upgrade).
    demo.has_launched = True
    keep_inputs_out_of_errors(demo)
    return app


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run the aipic Gradio app.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME") or os.environ.get("AIPIC_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("AIPIC_PORT", "7860")))
    parser.add_argument("--models", choices=("auto", "real", "tiny"), default=None, help="default: $AIPIC_MODELS or auto")
    parser.add_argument("--device", default=None)
    parser.add_argument("--home", default=None, help="keys/ and outputs/ live here (default $AIPIC_HOME or ~/.aipic)")
    parser.add_argument("--max-gpu-batch", type=int, default=None, help="most images in one GPU batch (default 16, $AIPIC_MAX_GPU_BATCH)")
    parser.add_argument("--batch-wait-ms", type=float, default=None, help="how long a request waits for company (default 4, $AIPIC_BATCH_WAIT_MS)")
    parser.add_argument("--output-format", choices=tuple(OUTPUT_FORMATS), default=None, help="default file format (default png, $AIPIC_OUTPUT_FORMAT)")
    parser.add_argument("--compile", action="store_true", default=None, help="torch.compile the model on CUDA, warmed at start ($AIPIC_COMPILE)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    import socket

    with socket.socket() as probe:
        try:
            probe.bind((args.host, args.port))
        except OSError as error:
            raise SystemExit(f"aipic: error: cannot listen on {args.host}:{args.port} ({error.strerror or error}); is another app running there? Choose another with --port.")
    try:
        settings = EngineSettings.from_env(
            max_gpu_batch=args.max_gpu_batch,
            batch_wait_s=None if args.batch_wait_ms is None else args.batch_wait_ms / 1000,
            output_format=args.output_format,
            compile=args.compile,
        )
        trusted_proxies = trusted_proxies_from_env()
        slots = verify_slots_from_env()
        if slots:
            VERIFY_SLOTS.resize(slots)
        pipeline = AipicPipeline(models_mode=args.models, device=args.device, home=args.home, settings=settings)
        pipeline.check_home()
        pipeline.reconcile_outputs()  # nothing is served that the registry does not know, after a crash too
        _ = pipeline.identity, pipeline.identity_authority  # make or load the signing and identity CAs now, not on the first request
        demo = build_app(pipeline)
        server = make_server_app(pipeline, demo)
        pipeline.warm_up()
    except AipicError as error:
        raise SystemExit(f"aipic: error: {error}")
    start_retention(pipeline)
    import uvicorn
    from starlette.routing import Mount

    gradio_app = next((route.app for route in server.routes if isinstance(route, Mount)), None)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            """A stop (SIGTERM, Ctrl-C) logs one line: the waiting clients are told first, so their streams
            end by themselves before the grace period instead of being cut (a traceback each)."""
            if not self.should_exit:
                told = tell_waiting_clients(demo, gradio_app)
                log.info("aipic stopping (signal %d): %d request(s) in progress were told the server is stopping", sig, told)
            super().handle_exit(sig, frame)

    log.info("aipic on http://%s:%d (metrics at /metrics)", args.host, args.port)
    # Forwarded headers name the client only when they come from a proxy the operator trusts (uvicorn would
    # otherwise believe any local process's X-Forwarded-For, and the rate limit with it).
    config = uvicorn.Config(server, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5,
                            proxy_headers=bool(trusted_proxies), forwarded_allow_ips=trusted_proxies or None)
    Server(config).run()


def __getattr__(name):
    """``app.demo``: the Blocks, built on first access from the environment (Gradio's reload mode, Spaces)."""
    if name == "demo":
        global demo
        pipeline = AipicPipeline(settings=EngineSettings.from_env())
        demo = build_app(pipeline)
        return demo
    raise AttributeError(name)


if __name__ == "__main__":
    main()
