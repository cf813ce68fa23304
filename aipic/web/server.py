"""The app's HTTP server: Gradio mounted on aipic's FastAPI app (the engine's metrics at /metrics), the checks that
keep server files unreachable, the retention loop, and ``main`` (``python app.py``)."""

from __future__ import annotations

import argparse
import logging
import socket
import threading
import time
from pathlib import Path

import gradio as gr
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from gradio import utils as gradio_utils
from starlette.routing import Mount

from aipic.common.errors import AipicError, RateLimited
from aipic.common.images import OUTPUT_FORMATS
from aipic.common.settings import Settings
from aipic.pipeline import AipicPipeline
from aipic.provenance.publish import STAGING
from aipic.provenance.verify import VERIFY_SLOTS
from aipic.web.app import build_app
from aipic.web.accounts import Accounts
from aipic.web.components import CSS, HEAD, MAX_UPLOAD_MB, theme
from aipic.web.ratelimit import RateLimiter
from aipic.web.security import protect_inputs, tell_waiting_clients

log = logging.getLogger(__name__)
UPLOADS_PER_REQUEST = 4  # style transfer uploads two pictures; a retry or a verify may add more


def start_retention(pipeline: AipicPipeline, every_s: float = 3600) -> None:
    """Apply the output retention (Settings.retention_days) now and then hourly, in the background."""

    def loop():
        while True:
            try:
                pipeline.apply_retention()
            except Exception:  # noqa: BLE001 - retention must never stop the app
                log.exception("retention failed")
            time.sleep(every_s)

    threading.Thread(target=loop, name="aipic-retention", daemon=True).start()


def make_server_app(pipeline: AipicPipeline, demo: gr.Blocks, accounts: Accounts | None = None) -> FastAPI:
    """Gradio at /, the engine's Prometheus metrics at /metrics, optional sign-in at /login and /logout."""
    secrets = [pipeline.key_dir, pipeline.home / "keys-backup", pipeline.settings.registry_file, pipeline.home / "browser-state.key"]
    for served in (pipeline.output_dir, Path(gradio_utils.get_upload_folder())):
        if any(gradio_utils.is_in_or_equal(path.resolve(), served.resolve()) for path in secrets):
            raise AipicError(f"The signing keys and the registry must not lie inside a folder the app serves ({served}); choose another home with --home or AIPIC_HOME.")
    server = FastAPI()
    uploads = RateLimiter(pipeline.settings.rate_limit * UPLOADS_PER_REQUEST)

    @server.middleware("http")
    async def limit_uploads(request: Request, call_next):
        """Uploads count against the client's rate too (a request takes at most a few): the upload cache is on disk."""
        if request.method == "POST" and request.url.path.endswith("/gradio_api/upload"):
            try:
                uploads.check(request.client.host if request.client else None)
            except RateLimited as error:
                return JSONResponse({"detail": str(error)}, status_code=429)
        return await call_next(request)

    if accounts is not None and accounts.enabled:
        accounts.mount(server)

    @server.get("/ca.pem", include_in_schema=False)
    def certificate_authority():
        """This site's signing certificate authorities (public certificates only), so a stranger can trust its
        pictures elsewhere: ``aipic verify --trust ca.pem`` or a C2PA verifier's trust list."""
        return Response("".join(pipeline.identity.trust_anchors), media_type="application/x-pem-file",
                        headers={"Content-Disposition": "attachment; filename=ca.pem"})

    @server.get("/metrics", include_in_schema=False)
    def metrics():
        return Response(pipeline.engine.metrics.render(), media_type=pipeline.engine.metrics.content_type)

    # The engine batches across requests: let as many events reach it at once as fit in one GPU batch,
    # instead of Gradio serialising them first (the queue's default is one event at a time).
    # api_open=False: every request goes through the queue (and its max_size); /gradio_api/run/… is closed.
    demo.queue(default_concurrency_limit=pipeline.settings.max_gpu_batch, max_size=64, api_open=False)
    # Never served, never taken as an input: the keys, their backup, quarantined files and outputs not yet recorded.
    private = [pipeline.key_dir, pipeline.home / "keys-backup", pipeline.home / "quarantine", pipeline.output_dir / STAGING, pipeline.home / "browser-state.key"]
    app = gr.mount_gradio_app(
        server,
        demo,
        path="",
        theme=theme(),
        css=CSS,
        head=HEAD,
        allowed_paths=[str(pipeline.output_dir)],
        blocked_paths=[str(path) for path in private],
        max_file_size=f"{MAX_UPLOAD_MB}mb",
        footer_links=["api"],
        show_error=False,  # mount's default is True: an internal error's text (a server path) would reach the client
    )
    # Gradio accepts an input file only if it uploaded it (or it is a static output) once ``has_launched`` is
    # set, which only launch() does: without it a client could name any server file (the CA key) as an input
    # and Gradio would copy it into its cache and serve it. Mounted apps must set it themselves
    # (tests/test_app_security.py keeps it from being lost in a Gradio upgrade).
    demo.has_launched = True
    # …and aipic checks every file input itself too, whatever its shape (Gradio skips values without its meta marker).
    protect_inputs(demo, allowed=[pipeline.output_dir], refused=private, max_pixels=pipeline.catalog.limits.max_upload_pixels)
    return app


def _port_is_free(host: str, port: int) -> str | None:
    """None when the server can listen there, else why not. SO_REUSEADDR as uvicorn binds: a port whose old
    connections linger in TIME_WAIT (a restart within a minute) is free for the server, so it is free here."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return str(error.strerror or error)
    return None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Run the aipic Gradio app.")
    parser.add_argument("--host", default=None, help="default: $GRADIO_SERVER_NAME, $AIPIC_HOST or 127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT, $AIPIC_PORT or 7860")
    parser.add_argument("--models", choices=("auto", "real", "tiny"), default=None, help="default: $AIPIC_MODELS or auto")
    parser.add_argument("--device", default=None)
    parser.add_argument("--home", default=None, help="keys/ and outputs/ live here (default $AIPIC_HOME or ~/.aipic)")
    parser.add_argument("--max-gpu-batch", type=int, default=None, help="most images in one GPU batch (default 16, $AIPIC_MAX_GPU_BATCH)")
    parser.add_argument("--batch-wait-ms", type=float, default=None, help="how long a request waits for company (default 4, $AIPIC_BATCH_WAIT_MS)")
    parser.add_argument("--output-format", choices=tuple(OUTPUT_FORMATS), default=None, help="default file format (default png, $AIPIC_OUTPUT_FORMAT)")
    parser.add_argument("--compile", action="store_true", default=None, help="torch.compile the model on CUDA, warmed at start ($AIPIC_COMPILE)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        settings = Settings.from_env(
            host=args.host, port=args.port, models_mode=args.models, device=args.device, home=Path(args.home) if args.home else None,
            max_gpu_batch=args.max_gpu_batch, batch_wait_s=None if args.batch_wait_ms is None else args.batch_wait_ms / 1000,
            output_format=args.output_format, compile=args.compile,
        )
    except AipicError as error:
        raise SystemExit(f"aipic: error: {error}")
    busy = _port_is_free(settings.host, settings.port)
    if busy:
        raise SystemExit(f"aipic: error: cannot listen on {settings.host}:{settings.port} ({busy}); is another app running there? Choose another with --port.")
    try:
        if settings.verify_concurrency:
            VERIFY_SLOTS.resize(settings.verify_concurrency)
        pipeline = AipicPipeline(settings)
        pipeline.check_home()
        pipeline.reconcile_outputs()  # nothing is served that the registry does not know, after a crash too
        _ = pipeline.identity, pipeline.identity_authority  # make or load the signing and identity CAs now, not on the first request
        accounts = Accounts(settings.auth)
        demo = build_app(pipeline, accounts=accounts)
        server = make_server_app(pipeline, demo, accounts)
        pipeline.warm_up()
        for note in pipeline.placeholder_notes():
            log.warning("placeholder models are running: %s", note)
    except AipicError as error:
        raise SystemExit(f"aipic: error: {error}")
    start_retention(pipeline)
    import uvicorn

    gradio_app = next((route.app for route in server.routes if isinstance(route, Mount)), None)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            """A stop (SIGTERM, Ctrl-C) logs one line: the waiting clients are told first, so their streams
            end by themselves before the grace period instead of being cut (a traceback each)."""
            if not self.should_exit:
                told = tell_waiting_clients(demo, gradio_app)
                log.info("aipic stopping (signal %d): %d request(s) in progress were told the server is stopping", sig, told)
            super().handle_exit(sig, frame)

    log.info("aipic on http://%s:%d (metrics at /metrics)", settings.host, settings.port)
    # Forwarded headers name the client only when they come from a proxy the operator trusts (uvicorn would
    # otherwise believe any local process's X-Forwarded-For, and the rate limit with it).
    trusted = list(settings.trusted_proxies)
    config = uvicorn.Config(server, host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=5,
                            proxy_headers=bool(trusted), forwarded_allow_ips=trusted or None)
    Server(config).run()


def demo_from_environment() -> gr.Blocks:
    """The Blocks for Gradio's reload mode and Spaces (``app.demo``), from the environment's Settings. Spaces call
    ``demo.launch()`` themselves: the theme, CSS and head reach it through the attributes Gradio 6's launch() reads
    when it is given none."""
    demo = build_app(AipicPipeline(Settings.from_env()))
    demo._deprecated_theme, demo._deprecated_css, demo._deprecated_head = theme(), CSS, HEAD
    return demo
