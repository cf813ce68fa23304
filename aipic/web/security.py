"""What keeps the public app safe and quiet: errors that show no server paths and no tracebacks, requests with
too few inputs that never print their values (a prompt) to the log, and a stop that tells waiting clients
instead of cutting their streams."""

from __future__ import annotations

import functools
import html
import logging
import os
import re
import traceback
from pathlib import Path

import gradio as gr
from gradio import utils as gradio_utils
from PIL import Image

from aipic.common.errors import AipicError
from aipic.common.images import UPLOAD_FORMAT_NAMES, UPLOAD_FORMATS

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
            # Where it failed, for the operator, but not the exception's message: it may carry a request's values.
            log.error("unexpected error in %s (%s):\n%s", handler.__name__, type(error).__name__, "".join(traceback.format_tb(error.__traceback__)).rstrip())
            raise gr.Error(f"Something went wrong ({type(error).__name__}). Your inputs are kept; please try again.", title="Something went wrong", print_exception=False) from None

    return wrapped


CHECK_INPUT = "Please check your input"
NOT_UPLOADED = "This file was not uploaded to this app. Please upload it again."
NOT_A_PICTURE = f"This file is not a picture aipic can read ({UPLOAD_FORMAT_NAMES}). Please choose another file."
NOT_READABLE = "One of the inputs could not be read. Please check it and try again."
NOT_PROCESSED = "This request could not be processed. Please check its inputs and try again."


def titled(title: str, message: str) -> str:
    """A toast's text with its title first: Gradio 6.31's toast always heads errors "Error" and drops the title
    it is given (API clients still get ``title``), so the title is written into the message, as escaped HTML."""
    if message.startswith("<strong>"):
        return message
    return f"<strong>{html.escape(title, quote=False)}</strong><br>{html.escape(message, quote=False)}"


def _within(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def protect_inputs(demo: gr.Blocks, allowed: list[Path], refused: list[Path], max_pixels: int) -> None:
    """Every event's inputs, as a hostile client may send them, before Gradio touches them:

    * a file value, in any shape (with or without Gradio's ``meta`` marker, in a list, nested), may only name an
      existing regular file that Gradio stored from an upload, or an output in ``allowed``, never one under
      ``refused``; an embedded ``data:`` picture or a URL to fetch is refused. Gradio's own check covers only
      values with its marker, and it moves (or downloads, or decodes) a value before any component sees it;
    * a picture is looked at from its header before anything decodes it: a format the page does not list, or more
      than ``max_pixels``, is refused;
    * a value a component cannot read gets aipic's plain message (an image: "not a picture aipic can read"), and
      no input's value reaches the log: Gradio prints the traceback of a failed preprocessing, values included,
      and names the inputs of a request with too few; here only the error's type is logged.
    """
    roots = [os.path.realpath(gradio_utils.get_upload_folder()), *(os.path.realpath(path) for path in allowed)]
    blocked = [os.path.realpath(path) for path in refused]

    def check(value) -> None:
        if isinstance(value, list):
            for item in value:
                check(item)
        elif isinstance(value, dict):
            if "path" in value or "url" in value:
                url, path = value.get("url"), value.get("path")
                if isinstance(url, str) and url.startswith("data:"):
                    raise gr.Error(NOT_UPLOADED, title=CHECK_INPUT, print_exception=False)
                if path is not None and not _uploaded_here(path, roots, blocked):
                    raise gr.Error(NOT_UPLOADED, title=CHECK_INPUT, print_exception=False)
            for item in value.values():
                check(item)

    for block in list(demo.blocks.values()):
        if isinstance(block, gr.Image) and not getattr(block, "_aipic_guarded", False):
            _guard_component(block, NOT_A_PICTURE, max_pixels)
        elif isinstance(block, gr.File) and not getattr(block, "_aipic_guarded", False):
            _guard_component(block, NOT_READABLE, None)

    original_validate = demo.validate_inputs

    def validate_inputs(block_fn, inputs):
        if len(inputs) < len(block_fn.inputs):
            raise gr.Error(f"This endpoint takes {len(block_fn.inputs)} inputs; the request gave {len(inputs)}.", title=CHECK_INPUT, print_exception=False)
        return original_validate(block_fn, inputs)

    original_preprocess = demo.preprocess_data
    original_process = demo.process_api

    async def preprocess_data(block_fn, inputs, state, explicit_call=False):
        check(inputs)
        return await original_preprocess(block_fn, inputs, state, explicit_call)

    async def process_api(*args, **kwargs):
        """The whole event (its inputs, its event data, its handler, its outputs): whatever fails, the client gets
        plain words and the log the error's type, never a traceback with the request's values in it."""
        try:
            return await original_process(*args, **kwargs)
        except gr.Error as error:
            error.print_exception = False
            if not error.title or error.title == "Error":
                error.title = CHECK_INPUT
            error.message = titled(error.title, str(error.message))
            raise
        except Exception as error:  # noqa: BLE001 - a value Gradio could not take in: its type only, never the value
            log.warning("a request could not be processed (%s)", type(error).__name__)
            raise gr.Error(NOT_PROCESSED, title=CHECK_INPUT, print_exception=False) from None

    demo.validate_inputs = validate_inputs  # type: ignore[method-assign]
    demo.preprocess_data = preprocess_data  # type: ignore[method-assign]
    demo.process_api = process_api  # type: ignore[method-assign]


def _uploaded_here(path, roots: list[str], blocked: list[str]) -> bool:
    """A local path to an existing regular file inside one of ``roots`` and none of ``blocked`` (links resolved)."""
    if not isinstance(path, str) or "://" in path or "\x00" in path:
        return False
    real = os.path.realpath(path)
    return _within(real, roots) and not _within(real, blocked) and os.path.isfile(real)


def _guard_component(component, unreadable: str, max_pixels: int | None) -> None:
    """Wrap one file component's preprocess (on the instance: a subclass would make Gradio write a .pyi stub): a
    picture's header first (format and size, nothing decoded), then Gradio's own reading, its failures in aipic's
    words."""
    original = component.preprocess

    def preprocess(payload):
        path = getattr(payload, "path", None)
        if max_pixels is not None and path:
            try:
                with Image.open(path, formats=UPLOAD_FORMATS) as picture:
                    width, height = picture.size
            except Exception:  # noqa: BLE001 - not one of the formats the page lists, or not a picture at all
                raise gr.Error(unreadable, title=CHECK_INPUT, print_exception=False) from None
            if width * height > max_pixels:
                raise gr.Error(f"The picture is {width}×{height}; at most {max_pixels:,} pixels are accepted.", title=CHECK_INPUT, print_exception=False)
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
