"""Poolings, extraction, the on-disk activation store and ``StoreLike``, what sweeps and
projections read (hook names live in ``workbench.models.hook_names``; re-exported here)."""

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
