"""Load any model (bundled, hub id, local folder, GGUF), find its blocks by module path, name its
hook points (``hook_names``) and read or write them (``hooks``)."""

from . import hook_names, hooks
from ._bundled import BUNDLED, BundledModel, bundled_models
from ._loading import LoadedModel, cache_dir, load_model
from ._structure import find_blocks

__all__ = [
    "BUNDLED",
    "BundledModel",
    "LoadedModel",
    "bundled_models",
    "cache_dir",
    "find_blocks",
    "hook_names",
    "hooks",
    "load_model",
]
