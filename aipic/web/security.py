"""What keeps the public app safe and quiet: errors that show no server paths and no tracebacks, requests with
too few inputs that never print their values (a prompt) to the log, and a stop that tells waiting clients
instead of cutting their streams."""

from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path

import gradio as gr
from gradio import utils as gradio_utils

from aipic.common.errors import AipicError

log = logging.getLogger(__name__)

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
            raise gr.Error(without_server_paths(str(error)), title=error.title, print_exception=False) from None
        except gr.Error as error:
            error.message = without_server_paths(str(error.message))
            raise
        except Exception as error:  # noqa: BLE001
            log.exception("unexpected error in %s", handler.__name__)
            raise gr.Error(f"Something went wrong ({type(error).__name__}). Your inputs are kept; please try again.", title="Something went wrong", print_exception=False) from None

    return wrapped


CHECK_INPUT = "Please check your input"
NOT_UPLOADED = "This file was not uploaded to this app. Please upload it again."
NOT_A_PICTURE = "This file is not a picture aipic can read (PNG, JPEG, WebP, GIF, TIFF or BMP). Please choose another file."
NOT_READABLE = "One of the inputs could not be read. Please check it and try again."


def _within(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def _payload_paths(payload) -> list[str]:
    """The file paths a file component's payload names (one file, or a list of them)."""
    items = getattr(payload, "root", None)
    items = items if isinstance(items, list) else [payload]
    return [str(item.path) for item in items if getattr(item, "path", None)]


def protect_inputs(demo: gr.Blocks, allowed: list[Path], refused: list[Path]) -> None:
    """Every event's inputs, as a hostile client may send them:

    * a file input may only name a file Gradio stored from an upload, or an output in ``allowed``, never one under
      ``refused`` — checked here for every shape of value, since Gradio checks only values that carry its
      ``meta`` marker and a component would otherwise open whatever path it is handed;
    * a value a component cannot read gets aipic's plain message (an image: "not a picture aipic can read");
    * no input's value reaches the log: Gradio prints the traceback of a failed preprocessing, values included,
      and names the inputs of a request with too few; here only the error's type is logged.
    """
    roots = [os.path.realpath(gradio_utils.get_upload_folder()), *(os.path.realpath(path) for path in allowed)]
    blocked = [os.path.realpath(path) for path in refused]
    for block in list(demo.blocks.values()):
        if isinstance(block, (gr.Image, gr.File)) and not getattr(block, "_aipic_guarded", False):
            _guard_files(block, roots, blocked)

    original_validate = demo.validate_inputs

    def validate_inputs(block_fn, inputs):
        if len(inputs) < len(block_fn.inputs):
            raise gr.Error(f"This endpoint takes {len(block_fn.inputs)} inputs; the request gave {len(inputs)}.", title=CHECK_INPUT, print_exception=False)
        return original_validate(block_fn, inputs)

    original_preprocess = demo.preprocess_data

    async def preprocess_data(block_fn, inputs, state, explicit_call=False):
        try:
            return await original_preprocess(block_fn, inputs, state, explicit_call)
        except gr.Error as error:
            error.print_exception = False
            raise
        except Exception as error:  # noqa: BLE001 - a value Gradio could not take in: its type only, never the value
            log.warning("a request's inputs could not be read (%s)", type(error).__name__)
            raise gr.Error(NOT_READABLE, title=CHECK_INPUT, print_exception=False) from None

    demo.validate_inputs = validate_inputs  # type: ignore[method-assign]
    demo.preprocess_data = preprocess_data  # type: ignore[method-assign]


def _guard_files(component, roots: list[str], blocked: list[str]) -> None:
    """Wrap one file component's preprocess (on the instance: a subclass would make Gradio write a .pyi stub)."""
    original = component.preprocess
    unreadable = NOT_A_PICTURE if isinstance(component, gr.Image) else NOT_READABLE

    def preprocess(payload):
        for path in _payload_paths(payload):
            real = os.path.realpath(path)
            if not _within(real, roots) or _within(real, blocked):
                raise gr.Error(NOT_UPLOADED, title=CHECK_INPUT, print_exception=False)
        try:
            return original(payload)
        except gr.Error as error:
            error.print_exception = False
            raise
        except Exception as error:  # noqa: BLE001 - Gradio could not read the upload: aipic's own words, no path
            log.info("an upload could not be read (%s)", type(error).__name__)
            raise gr.Error(unreadable, title=CHECK_INPUT, print_exception=False) from None

    component.preprocess = preprocess
    component._aipic_guarded = True


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
