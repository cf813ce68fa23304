"""Every error aipic raises on purpose, in one place. Each knows its exit code (the CLI's) and its title (the
app's toast, the API client's error title).

Messages are written for the person using aipic (UI, CLI, API): never a traceback, never a server path, and
never user text in logs.
"""


class AipicError(Exception):
    """An error whose message is meant for the person using aipic, not a traceback."""

    exit_code = 2
    title = "Cannot do that"


class BadInput(AipicError):
    """The request itself is wrong (empty prompt, size out of range, not an image)."""

    exit_code = 2
    title = "Please check your input"


class RateLimited(BadInput):
    """A client asked more often than the per-client limit allows."""

    title = "Too many requests"


class Blocked(BadInput):
    """Every image of a request was held back by the safety filter."""

    title = "Held back by the safety filter"

    def __init__(self, count: int = 1):
        images = "this image" if count == 1 else f"all {count} images"
        super().__init__(f"The safety filter held back {images}: nothing was shown, signed or kept. Please try a different prompt.")


class TooManyPixels(BadInput):
    """A picture has more pixels than a registry lookup decodes (it is refused from its header, never decoded)."""

    def __init__(self, width: int, height: int, limit: int, kind: str = ""):
        super().__init__(f"The picture is {width}×{height}; {kind + ' ' if kind else ''}pictures over {limit:,} pixels are not compared with the registry.")


class ConfigError(AipicError):
    """The installation or its settings are wrong (catalog, keys, home folder, environment)."""

    exit_code = 3
    title = "This server is not set up for that"


class ModelUnavailable(AipicError):
    """A model could not be loaded (no weights, no network)."""

    exit_code = 4
    title = "Model unavailable"


class StageFailed(AipicError):
    """A stage of the engine failed for one output; the other outputs of the batch are unaffected."""

    exit_code = 1
    title = "Not published"


class Cancelled(AipicError):
    """The person stopped the request, or it ran past the time limit for one request."""

    exit_code = 130
    title = "Stopped"


class WorkerFailed(Exception):
    """A worker process's error that is not an AipicError, by type name only (library errors may not pickle).
    Not meant for people: the engine turns it into a StageFailed with a plain message."""
