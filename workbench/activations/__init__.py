"""Hook names, poolings, extraction and the on-disk activation store."""

from ..models import hook_names
from .pooling import TEMPLATES, Pooling, parse_poolings, pool
from .store import ActivationStore, TokenInfo
from .storelike import StoreLike

__all__ = [
    "TEMPLATES",
    "ActivationStore",
    "Pooling",
    "StoreLike",
    "TokenInfo",
    "extract",
    "hook_names",
    "parse_poolings",
    "pool",
]


def __getattr__(name: str):  # extract imports the model layer; load it on first use
    if name == "extract":
        from .extract import extract

        return extract
    raise AttributeError(name)
