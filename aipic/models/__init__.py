"""The models aipic runs: the catalog (models/catalog.yaml, with licences and request limits), their loading
(real weights when present, tiny random-weight stand-ins otherwise) and the tiny stand-ins themselves."""

from aipic.models.catalog import Catalog, Limits, ModelEntry, load_catalog
from aipic.models.loading import LoadedModel, Models

__all__ = ["Catalog", "Limits", "LoadedModel", "ModelEntry", "Models", "load_catalog"]
