"""The web app's helpers (app.py stays the layout): error mapping, sign-in, the generation info beside each
output, the ZeroGPU wrapper, and the settings read from the environment. Imports gradio; the rest of the library
does not."""

import functools
import logging
import os
import re

import gradio as gr

from . import authorship
from .errors import AipicError
from .ratelimit import RateLimiter
from .verify import panel_markdown

log = logging.getLogger("aipic.app")

ERROR_TITLES = {
    "BadInput": "Please check your input",
    "Blocked": "Held back by the safety filter",
    "ConfigError": "This server is not set up for that",
    "ModelUnavailable": "Model unavailable",
    "StageFailed": "Not published",
    "RateLimited": "Too many requests",
    "Cancelled": "Stopped",
}
EXAMPLE_PROMPTS = [
    "a lighthouse on a cliff at dusk, oil painting",
    "a portrait of a nurse, natural light, 35mm photo",
    "a cosy reading nook with plants, watercolour",
    "a red fox in fresh snow, wildlife photography",
]
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


_SERVER_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s/'\"`<>]+/)+([^\s/'\"`<>]*)")


def without_server_paths(text: str) -> str:
    """A message with every absolute path reduced to its file name: what the server's folders are called (its
    home, its caches) is never shown to a client, whatever a library put in an error."""
    return _SERVER_PATH.sub(lambda match: match.group(1) or "…", text)


def user_errors(handler):
    """Show AipicError messages to the person; log anything unexpected and show a plain message, never a traceback."""

    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except AipicError as error:
            raise gr.Error(without_server_paths(str(error)), title=ERROR_TITLES.get(type(error).__name__, "Cannot do that"), print_exception=False) from None
        except gr.Error as error:
            error.message = without_server_paths(str(error.message))
            raise
        except Exception as error:  # noqa: BLE001
            log.exception("unexpected error in %s", handler.__name__)
            raise gr.Error(f"Something went wrong ({type(error).__name__}). Your inputs are kept; please try again.", title="Something went wrong", print_exception=False) from None

    return wrapped


def audit_markdown(outcome) -> str:
    """The full generation info beside the outputs: model, settings, seed and audit of each image."""
    blocks = []
    for model in outcome.models:
        blocks.append(f"**Model** {model.get('label') or model.get('name')} · licence: {authorship.licence_line(model.get('license'))}")
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


def _number(value):
    return None if value is None or value == "" else value


def client_of(request) -> str | None:
    """The client's address as the server saw it (a proxy in front must be trusted before its headers are)."""
    return getattr(getattr(request, "client", None), "host", None)


ON_SPACES = bool(os.environ.get("SPACE_ID"))


def signed_in_account(http) -> tuple[str, str] | None:
    """(account name, who verified it) of the person signed in, or None: anonymous.

    Gradio's ``auth`` (an identity the operator configures: AIPIC_AUTH) sets ``request.username``; on Hugging
    Face Spaces, ``gr.LoginButton`` keeps the Hugging Face account in the session.
    """
    name = getattr(http, "username", None)
    if name:
        return str(name), "account on this aipic instance"
    if ON_SPACES and http is not None:
        try:
            info = http.request.session.get("oauth_info") or {}
        except Exception:  # noqa: BLE001 - no session middleware: nobody signed in through Hugging Face
            info = {}
        username = (info.get("userinfo") or {}).get("preferred_username")
        if username:
            return str(username), "Hugging Face account"
    return None


def gpu_call(function, seconds: float):
    """On Hugging Face ZeroGPU, the GPU exists only inside a ``@spaces.GPU`` call: wrap the engine's inline run in
    one (at most ``seconds``). Elsewhere (no ``spaces`` package) the function runs as it is."""
    try:
        import spaces
    except ImportError:
        log.warning("inline mode without the spaces package: running without @spaces.GPU")
        return function
    return spaces.GPU(duration=int(seconds))(function)


def auth_from_env() -> list[tuple[str, str]] | None:
    """AIPIC_AUTH=user:password[,user:password…] (or AIPIC_AUTH_FILE, one user:password per line): sign-in."""
    text = os.environ.get("AIPIC_AUTH", "")
    path = os.environ.get("AIPIC_AUTH_FILE")
    if path:
        try:
            text = open(path, encoding="utf-8").read().replace("\n", ",")
        except OSError as error:
            raise AipicError(f"Cannot read AIPIC_AUTH_FILE {path}: {error.strerror or error}") from None
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        user, sep, password = item.partition(":")
        if not sep or not user or not password:
            raise AipicError("AIPIC_AUTH takes user:password pairs separated by commas.")
        pairs.append((user, password))
    return pairs or None


def keep_inputs_out_of_errors(demo: gr.Blocks) -> None:
    """A request with too few inputs gets a plain error. Gradio's own names the inputs it got, a prompt
    included, and prints it to the server's log: user text never goes to the logs."""
    original = demo.validate_inputs

    def validate_inputs(block_fn, inputs):
        if len(inputs) < len(block_fn.inputs):
            raise gr.Error(f"This endpoint takes {len(block_fn.inputs)} inputs; the request gave {len(inputs)}.", title="Please check your input", print_exception=False)
        return original(block_fn, inputs)

    demo.validate_inputs = validate_inputs  # type: ignore[method-assign]


STOPPING_MESSAGE = "The server is stopping (a restart or an update); nothing from this request was published. Please try again in a minute."


def tell_waiting_clients(demo: gr.Blocks, gradio_app=None) -> int:
    """When the server is asked to stop: every client still waiting on an event gets a plain "stopping" result,
    so its stream ends by itself instead of being cut at the grace timeout (which logs a traceback per client);
    the browsers' heartbeat streams end too. Returns how many requests were told."""
    from gradio.server_messages import ProcessCompletedMessage

    queue = demo._queue
    told = 0
    for session, event_ids in list(queue.pending_event_ids_session.items()):
        messages = queue.pending_messages_per_session.get(session)
        if messages is None:
            continue
        for event_id in list(event_ids):
            message = ProcessCompletedMessage(output={"error": STOPPING_MESSAGE, "title": "Stopped", "visible": True}, success=False, title="Stopped")
            message.event_id = event_id
            messages.put_nowait(message)
            told += 1
    if gradio_app is not None:
        gradio_app.stop_event.set()
    return told


def trusted_proxies_from_env() -> list[str]:
    """AIPIC_TRUSTED_PROXIES: the addresses of the reverse proxies whose X-Forwarded-For header names the client
    (comma-separated IPs or networks; * trusts every peer, right only when nothing but the proxy can connect).
    Unset: no forwarded header is believed, from anyone, loopback included."""
    return [item.strip() for item in os.environ.get("AIPIC_TRUSTED_PROXIES", "").split(",") if item.strip()]


def verify_slots_from_env() -> int | None:
    """AIPIC_VERIFY_CONCURRENCY: how many verifications run at once (unset: by cores and memory)."""
    text = os.environ.get("AIPIC_VERIFY_CONCURRENCY", "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise AipicError(f"AIPIC_VERIFY_CONCURRENCY must be a whole number of 1 or more (got {text!r}).")
    return value


def rate_limit_from_env() -> RateLimiter:
    try:
        per_minute = float(os.environ.get("AIPIC_RATE_LIMIT", "30"))
    except ValueError:
        raise AipicError(f"AIPIC_RATE_LIMIT must be a number of requests per minute (got {os.environ['AIPIC_RATE_LIMIT']!r}).") from None
    return RateLimiter(per_minute)
