"""aipic: image generation and style transfer with a bias audit and signed C2PA provenance on every output."""

__version__ = "0.3.0"  # as pyproject.toml: the claim generator every manifest names

from .errors import AipicError  # noqa: E402,F401
