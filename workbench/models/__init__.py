"""Load any model (bundled, hub id, local folder, GGUF) and find its blocks by module path."""

from ._bundled import BUNDLED, BundledModel, bundled_models
from ._loading import LoadedModel, cache_dir, load_model
from ._structure import find_blocks

__all__ = ["BUNDLED", "BundledModel", "LoadedModel", "bundled_models", "cache_dir", "find_blocks", "load_model"]
