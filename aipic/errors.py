"""Typed errors. Each maps to a clear message for people and to an exit code for the CLI.

Their messages are written for the person using aipic (UI, CLI): never a traceback, never user text in logs.
"""


class AipicError(Exception):
    """An error whose message is meant for the person using aipic, not a traceback."""

    exit_code = 2


class BadInput(AipicError):
    """The request itself is wrong (empty prompt, size out of range, not an image)."""

    exit_code = 2


class ConfigError(AipicError):
    """The installation or its settings are wrong (catalog, keys, home folder)."""

    exit_code = 3


class ModelUnavailable(AipicError):
    """A model could not be loaded (no weights, no network)."""

    exit_code = 4


class StageFailed(AipicError):
    """A stage of the engine failed for one output; the other outputs of the batch are unaffected."""

    exit_code = 1
