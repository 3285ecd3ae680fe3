"""Cached resources of the dashboard: models in ``st.cache_resource`` (one per process), tables
and arrays in ``st.cache_data`` (keyed by path and modification time, so finished runs show up).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from . import _data


@st.cache_resource(show_spinner="loading the model ...", max_entries=3)
def model(spec: str) -> Any:
    """A ``LoadedModel`` (bundled name, hub id, folder or .gguf), loaded once per process."""
    from ..models import load_model
    from ..settings import set_threads

    set_threads(1)  # the server's process: one thread per forward keeps pages responsive
    return load_model(spec)


@st.cache_resource(max_entries=4)
def store(path: str, mtime: float) -> Any:
    """An ``ActivationStore`` (memory-mapped; ``mtime`` of its manifest is the cache key)."""
    from ..activations.store import ActivationStore

    return ActivationStore(path)


def open_store(path: str | Path) -> Any:
    """The store at ``path``, reopened when its manifest changes."""
    manifest = Path(path) / "manifest.json"
    if not manifest.is_file():
        raise _data.RunFolderError(f"{path} is not an activation store (no manifest.json): "
                                   "pick one listed on the Runs page")
    return store(str(path), manifest.stat().st_mtime)


@st.cache_data(show_spinner=False, ttl=30)
def runs(root: str, signature: tuple) -> dict[str, list[dict[str, Any]]]:
    """Stores, probe experiments and embedding grids under ``root``."""
    r = Path(root)
    return {"stores": _data.find_stores(r), "experiments": _data.find_experiments(r),
            "grids": _data.find_grids(r)}


@st.cache_data(show_spinner=False, ttl=30)
def inverters(root: str) -> list[dict[str, Any]]:
    """Trained inverters under ``root``."""
    return _data.find_inverters(Path(root))


@st.cache_resource(show_spinner="loading the embedder ...", max_entries=4)
def embedder(spec: str, layer: int, pooling: str) -> Any:
    """A ``ModelEmbedder`` on the cached model."""
    from ..inversion.embedders import ModelEmbedder

    return ModelEmbedder(model(spec), layer=layer, pooling=pooling)


def scan(root: Path) -> dict[str, list[dict[str, Any]]]:
    """``runs(root)``, rescanned when a manifest or summary under it changes."""
    return runs(str(root), _data.signature(root))


@st.cache_data(show_spinner=False, max_entries=16)
def csv(path: str, mtime: float) -> Any:
    """A CSV file as a DataFrame."""
    import pandas as pd

    return pd.read_csv(path)


def read_csv(path: str | Path) -> Any:
    """``csv(path)`` keyed by the file's modification time."""
    p = Path(path)
    return csv(str(p), p.stat().st_mtime)


@st.cache_data(show_spinner="fitting the probe at this layer (out of fold) ...", max_entries=32)
def layer_predictions(folder: str, kind: str, pooling: str, hook_point: str,
                      mtime: float) -> dict[str, Any]:
    """``_data.layer_predictions``, cached per experiment, probe kind and layer."""
    return _data.layer_predictions(Path(folder), kind, pooling, hook_point)


@st.cache_data(show_spinner=False, max_entries=8)
def layer_array(path: str, mtime: float, pooling: str, hook_point: str) -> Any:
    """``[rows, d_model]`` float32 states of one hook point of a store."""
    import numpy as np

    s = open_store(path)
    return s.get(pooling, hook_points=[hook_point])[:, 0].astype(np.float32)


@st.cache_data(show_spinner=False, max_entries=8)
def projection(path: str, mtime: float, method: str, pooling: str) -> dict[str, Any]:
    """``workbench.projection.project_store`` of the layers of a store (aligned, so items stay
    in place across the layer slider); fits are also cached on disk under the store.

    Position poolings (``last``, ``first``, ``pos:K``) skip layer 0: the token embedding of a
    shared final token (``.``) is the same vector for every text."""
    from ..projection import project_store

    s = open_store(path)
    layers = sorted(s.layers)
    if pooling not in ("mean", "max", "native") and 0 in layers and len(layers) > 1:
        layers = [v for v in layers if v != 0]
    res = project_store(s, method, pooling=pooling, layers=layers)
    return {"embeddings": res.embeddings, "layers": res.layers, "hook_points": res.hook_points,
            "displacement": res.displacement, "cached": res.cached, "rows": res.rows}


@st.cache_data(show_spinner=False, max_entries=16)
def column(path: str, mtime: float, name: str) -> list[Any]:
    """One label column (or ``text``) of a store."""
    s = open_store(path)
    return s.texts if name == "text" else s.column(name)


@st.cache_data(show_spinner=False, max_entries=16)
def probe_scores(folder: str, kind: str, pooling: str, hook_point: str, store_path: str,
                 mtime: float) -> Any:
    """``[rows]`` scores of an experiment's saved probe on the store's states (first output of
    multi-output probes)."""
    probe = _data.saved_probe(Path(folder), kind, pooling, hook_point)
    s = probe.decision_function(layer_array(store_path, mtime, pooling, hook_point))
    return s if s.ndim == 1 else s[:, -1]
