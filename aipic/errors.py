class AipicError(Exception):
    """An error whose message is meant for the person using aipic (UI, CLI), not a traceback."""
