"""aipic: image generation and style transfer with a bias audit and signed C2PA provenance on every output."""

__version__ = "0.1.0"

from .errors import AipicError  # noqa: E402,F401
