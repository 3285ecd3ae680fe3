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
        raise _data.RunFolderError(
            f"{path} is not an activation store (no manifest.json): "
            "pick one listed on the Runs page"
        )
    return store(str(path), manifest.stat().st_mtime)


@st.cache_data(show_spinner=False, ttl=30)
def runs(root: str, signature: tuple) -> dict[str, list[dict[str, Any]]]:
    """Stores, probe experiments and embedding grids under ``root``."""
    r = Path(root)
    return {
        "stores": _data.find_stores(r),
        "experiments": _data.find_experiments(r),
        "grids": _data.find_grids(r),
        "damaged": _data.find_damaged(r),
    }


@st.cache_data(show_spinner=False, ttl=30)
def inverters(root: str) -> list[dict[str, Any]]:
    """Trained inverters under ``root``."""
    return _data.find_inverters(Path(root))


@st.cache_resource(show_spinner="loading the embedder ...", max_entries=4)
def embedder(spec: str) -> Any:
    """The embedder of a spec string (``minilm-l6``, ``smollm2-135m:layer=12:pooling=mean``,
    ``st:NAME``), on the cached model."""
    from ..inversion.embedders import load_embedder, parse_embedder_spec

    parsed = parse_embedder_spec(spec)
    if parsed.sentence_transformers:
        return load_embedder(spec)
    return load_embedder(model(parsed.model), parsed.layer, parsed.pooling)


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
def layer_predictions(
    folder: str, kind: str, pooling: str, hook_point: str, mtime: float
) -> dict[str, Any]:
    """``_data.layer_predictions``, cached per experiment, probe kind and layer."""
    return _data.layer_predictions(Path(folder), kind, pooling, hook_point)


@st.cache_resource(show_spinner=False, max_entries=4)
def layer_array(path: str, mtime: float, pooling: str, hook_point: str) -> Any:
    """``[rows, d_model]`` float32 states of one hook point of a store (a shared resource, not
    copied per run: read it, never write to it)."""
    import numpy as np

    s = open_store(path)
    return s.get(pooling, hook_points=[hook_point])[:, 0].astype(np.float32)


@st.cache_resource(show_spinner=False)
def _projections() -> dict[tuple, dict[str, Any]]:
    """The process-wide memo of ``projection`` (an ordered dict, oldest first)."""
    return {}


PROJECTIONS_KEPT = 8
"""Projections kept in memory (each is ``[layers, rows, 2]`` float32)."""


def projection(
    path: str,
    mtime: float,
    method: str,
    pooling: str,
    hook_points: tuple[str, ...],
    progress: Any = None,
) -> dict[str, Any]:
    """``workbench.projection.project_store`` of some hook points of a store (aligned when
    several, so items stay in place across the layer slider), kept in memory per process and
    cached on disk under the store. ``progress(done, total)`` is called per fitted layer.

    (A memo rather than ``st.cache_resource`` on this function: a cached function may not
    update a progress bar drawn outside it.)"""
    from ..projection import project_store

    memo = _projections()
    key = (path, mtime, method, pooling, tuple(hook_points))
    if key in memo:
        memo[key] = memo.pop(key)  # most recent last
        return memo[key]
    res = project_store(
        open_store(path), method, pooling=pooling, hook_points=list(hook_points), callback=progress
    )
    memo[key] = {
        "embeddings": res.embeddings,
        "layers": res.layers,
        "hook_points": res.hook_points,
        "displacement": res.displacement,
        "cached": res.cached,
        "rows": res.rows,
    }
    while len(memo) > PROJECTIONS_KEPT:
        memo.pop(next(iter(memo)))
    return memo[key]


def projected_layers(store: Any, pooling: str) -> list[int]:
    """The residual layers worth projecting: position poolings (``last``, ``first``,
    ``pos:K``) skip layer 0, where a shared final token (``.``) is the same vector for every
    text."""
    layers = sorted(store.layers)
    if pooling not in ("mean", "max", "native") and 0 in layers and len(layers) > 1:
        layers = [v for v in layers if v != 0]
    return layers


@st.cache_resource(show_spinner=False, max_entries=32)
def column(path: str, mtime: float, name: str) -> list[Any]:
    """One label column (or ``text``) of a store (shared: read it, never write to it)."""
    s = open_store(path)
    return s.texts if name == "text" else s.column(name)


def probe_scores(folder: str, kind: str, pooling: str, hook_point: str) -> Any:
    """``[rows]`` out-of-fold scores of an experiment's probe kind at one layer, centred on the
    decision boundary (``_data.out_of_fold_decision``): each row scored by a probe that did not
    see it."""
    mtime = (Path(folder) / "results.csv").stat().st_mtime
    return layer_predictions(folder, kind, pooling, hook_point, mtime)["decision"]
