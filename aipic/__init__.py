"""aipic: image generation and style transfer with a bias audit and signed C2PA provenance on every output.

Where to start: ARCHITECTURE.md (the layers, the path of one request, the objects to learn)."""

__version__ = "0.3.0"  # as pyproject.toml: the claim generator every manifest names
