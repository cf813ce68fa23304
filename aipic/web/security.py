"""What keeps the public app safe and quiet: errors that show no server paths and no tracebacks, requests with
too few inputs that never print their values (a prompt) to the log, and a stop that tells waiting clients
instead of cutting their streams."""

from __future__ import annotations

import functools
import logging
import re

import gradio as gr

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
