"""workbench: look inside LLM embeddings.

>>> import workbench as wb
>>> lm = wb.load_model("smollm2-135m")                                   # doctest: +SKIP
>>> store = wb.extract(lm, "cities", layers="all", pooling="mean,last")  # doctest: +SKIP
>>> store.layer(15, "last").shape                                        # doctest: +SKIP
(1496, 576)

Importing the package loads torch and nothing heavier (no transformers, streamlit, umap, captum or
plotly): everything else is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import errors
from ._version import __version__

if TYPE_CHECKING:
    from .activations import ActivationStore
    from .activations.extract import extract
    from .data import TextDataset, load_dataset
    from .models import LoadedModel, bundled_models, load_model

_LAZY = {
    "load_model": "workbench.models",
    "LoadedModel": "workbench.models",
    "bundled_models": "workbench.models",
    "extract": "workbench.activations.extract",
    "ActivationStore": "workbench.activations.store",
    "open_store": "workbench.activations.store",
    "load_dataset": "workbench.data",
    "TextDataset": "workbench.data",
}

__all__ = [
    "ActivationStore",
    "LoadedModel",
    "TextDataset",
    "__version__",
    "bundled_models",
    "errors",
    "extract",
    "load_dataset",
    "load_model",
    "open_store",
]


def __getattr__(name: str) -> Any:
    if name == "open_store":
        from .activations.store import ActivationStore

        return ActivationStore
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
