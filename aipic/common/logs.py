"""User text never goes to the logs.

aipic's own modules never log prompts. Some libraries do: diffusers logs the part of a long prompt that CLIP
cut off ("The following part of your input was truncated…"). aipic already tells the person about the cut in
plain words, so those records are dropped at the libraries' handlers.
"""

import logging

USER_TEXT_MESSAGES = ("The following part of your input was truncated",)


class DropUserText(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(USER_TEXT_MESSAGES)


_FILTER = DropUserText()


def keep_user_text_out_of_logs() -> None:
    """Install the filter on the handlers that library records reach (idempotent)."""
    import diffusers  # noqa: F401 - configures its library logger and handler

    for logger in (logging.getLogger("diffusers"), logging.getLogger()):
        logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
