"""Saving fitted projections (safetensors + JSON, no pickle) and projecting a store's layers
with a content-addressed cache, so a dashboard never refits what it has already fitted."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..activations.storelike import StoreLike
from ..artifacts import load_tensors, read_json, save_tensors, write_json
from ._aligned import AlignedProjection
from ._axes import ProbeAxes
from ._estimators import METHODS, ProjectionInputError

CONFIG = "config.json"
ARRAYS = "arrays.safetensors"
_CLASSES: dict[str, type[Any]] = {
    c.__name__: c for c in [*METHODS.values(), AlignedProjection, ProbeAxes]
}


def _state(est: Any, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """JSON description of ``est``; its arrays go into ``arrays`` under ``prefix``."""
    params: dict[str, Any] = {}
    for name, value in est.get_params(deep=False).items():
        if hasattr(value, "directions_") or isinstance(value, np.ndarray):
            arrays[f"{prefix}param.{name}"] = np.ascontiguousarray(
                getattr(value, "directions_", value), dtype=np.float32
            )
            params[name] = {"__array__": f"{prefix}param.{name}"}
        else:
            params[name] = value
    fitted: dict[str, Any] = {}
    for name, value in vars(est).items():
        if not name.endswith("_") or name.startswith("_"):
            continue
        if isinstance(value, np.ndarray):
            arrays[f"{prefix}{name}"] = np.ascontiguousarray(value)
            fitted[name] = {"__array__": f"{prefix}{name}"}
        elif value is None or isinstance(value, int | float | str | bool):
            fitted[name] = value
        elif type(value).__name__ in _CLASSES:
            fitted[name] = {"__estimator__": _state(value, f"{prefix}{name}.", arrays)}
        elif isinstance(value, list) and all(
            v is None or type(v).__name__ in _CLASSES for v in value
        ):
            fitted[name] = {
                "__estimators__": [
                    None if v is None else _state(v, f"{prefix}{name}.{i}.", arrays)
                    for i, v in enumerate(value)
                ]
            }
        else:
            raise TypeError(f"cannot save {type(est).__name__}.{name} of type {type(value)}")
    return {"class": type(est).__name__, "params": params, "fitted": fitted}


def _restore(desc: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    def value(v: Any) -> Any:
        if isinstance(v, dict) and "__array__" in v:
            return arrays[v["__array__"]]
        if isinstance(v, dict) and "__estimator__" in v:
            return _restore(v["__estimator__"], arrays)
        if isinstance(v, dict) and "__estimators__" in v:
            return [None if d is None else _restore(d, arrays) for d in v["__estimators__"]]
        return v

    cls = _CLASSES.get(desc["class"])
    if cls is None:
        raise ProjectionInputError(f"unknown projection class {desc['class']!r} in a saved file")
    est = cls(**{k: value(v) for k, v in desc["params"].items()})
    for k, v in desc["fitted"].items():
        setattr(est, k, value(v))
    return est


def save_projection(
    est: Any, path: str | os.PathLike[str], meta: dict[str, Any] | None = None
) -> Path:
    """Write a fitted projection to ``path/config.json`` + ``path/arrays.safetensors``.

    Args:
        est: a fitted ``PCAProjection``, ``UMAPProjection``, ``TSNEProjection``, ``ProbeAxes`` or
            ``AlignedProjection`` (UMAP/t-SNE are saved by their embedding, the PCA
            pre-reduction and the reduced training rows that ``transform`` interpolates from).
        path: the folder to write.
        meta: extra JSON (what was projected: store, layers, rows).
    """
    folder = Path(path)
    arrays: dict[str, np.ndarray] = {}
    desc = _state(est, "", arrays)
    files = {ARRAYS: save_tensors(folder / ARRAYS, arrays)}
    write_json(
        folder / CONFIG,
        {"workbench_version": __version__, "estimator": desc, "meta": meta or {}, "files": files},
    )
    return folder


def load_projection(path: str | os.PathLike[str]) -> Any:
    """A projection saved by ``save_projection`` (its ``meta`` is in ``path/config.json``)."""
    from ..errors import ArtifactNotFoundError

    folder = Path(path)
    if not (folder / CONFIG).is_file() or not (folder / ARRAYS).is_file():
        raise ArtifactNotFoundError(
            f"{folder} holds no saved projection ({CONFIG} + {ARRAYS}); write one with "
            "save_projection(est, folder)"
        )
    fix = "fit and save the projection again (save_projection)"
    config = read_json(folder / CONFIG, "projection config", fix)
    arrays = load_tensors(
        folder / ARRAYS, config.get("files", {}).get(ARRAYS), fix=fix, what="projection"
    )
    return _restore(config["estimator"], arrays)


@dataclass(frozen=True)
class StoreProjection:
    """Aligned per-layer coordinates of a store's rows.

    Attributes:
        embeddings: ``[layers, rows, k]`` float32.
        hook_points: the hook point of each layer slice.
        layers: residual layer index of each slice (None for non-residual hook points).
        rows: ``[rows]`` store row indices.
        method, pooling, params: what was fitted.
        key: the content hash naming the cache entry.
        displacement: mean move of an item between consecutive layers (unit-RMS pictures).
        cached: whether this came from the cache.
        path: the cache folder.
    """

    embeddings: np.ndarray
    hook_points: list[str]
    layers: list[int | None]
    rows: np.ndarray
    method: str
    pooling: str
    params: dict[str, Any]
    key: str
    displacement: float
    cached: bool
    path: Path | None = None
    projection: Any = field(default=None, repr=False, compare=False)


class _StoreLayers:
    """A lazy sequence of ``[rows, d]`` float32 arrays, one store hook point at a time."""

    def __init__(self, store: StoreLike, pooling: str, hooks: list[str], rows: np.ndarray) -> None:
        self.store, self.pooling, self.hooks, self.rows = store, pooling, hooks, rows

    def __len__(self) -> int:
        return len(self.hooks)

    def __getitem__(self, i: int) -> np.ndarray:
        x = self.store.get(self.pooling, hook_points=[self.hooks[i]], rows=self.rows)[:, 0]
        return np.asarray(x, dtype=np.float32)


def projection_key(
    store: StoreLike,
    pooling: str,
    hooks: list[str],
    rows: np.ndarray,
    method: str,
    n_components: int,
    align: str,
    params: dict[str, Any],
) -> str:
    """sha256 of what determines the projection: the store's identity and completeness, the
    rows, hook points, pooling, method and parameters, and the workbench version."""
    m = store.manifest
    identity = {
        "store": m.get("identity_hash"),
        "status": m.get("status"),
        "n_rows": store.n_rows,
        "rows": hashlib.sha256(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest(),
        "hooks": hooks,
        "pooling": pooling,
        "method": method,
        "n_components": n_components,
        "align": align,
        "params": params,
        "version": __version__,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def project_store(
    store: StoreLike | str | os.PathLike[str],
    method: str = "pca",
    *,
    pooling: str = "last",
    layers: Any = None,
    hook_points: list[str] | None = None,
    rows: Any = None,
    n_components: int = 2,
    align: str = "procrustes",
    reference: int | None = None,
    params: dict[str, Any] | None = None,
    random_state: int | None = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    refit: bool = False,
    progress: bool = False,
    callback: Callable[[int, int], None] | None = None,
) -> StoreProjection:
    """Project a store's layers with one aligned projection, reusing a cached fit.

    Args:
        store: an ``ActivationStore`` (or its folder), or any ``StoreLike``.
        method: ``pca``, ``umap`` or ``tsne``.
        pooling: a pooled view of the store (``last``, ``mean``, ...).
        layers: residual layers (default: every stored hook point).
        hook_points: hook names to project instead of ``layers``.
        rows: row indices or a slice (default: all rows).
        n_components: 2 or 3.
        align: ``procrustes`` or ``none``.
        reference: position (in the selected layers) of the layer fitted first (default the
            middle one).
        params: parameters of the per-layer projection (``{"n_neighbors": 30}``).
        random_state: seed.
        cache_dir: where fits are cached (default ``<store>/projections``); each fit is a folder
            named by its content hash, holding ``config.json`` and ``arrays.safetensors``.
        refit: ignore (and overwrite) a cached fit.
        progress: a progress bar over layers.
        callback: ``callback(done, total)`` after each fitted layer (not called for a cached
            fit).

    Returns:
        A ``StoreProjection`` with ``embeddings`` ``[layers, rows, k]``.
    """
    from ..activations.store import ActivationStore

    if not isinstance(store, StoreLike):
        store = ActivationStore(store)
    idx = store.row_index(rows)
    hook_idx = store.hook_index(layers, hook_points)
    hooks = [store.hook_points[i] for i in hook_idx]
    store.pooling(pooling)  # a clear error for an unknown pooling
    params = dict(params or {})
    key = projection_key(
        store,
        pooling,
        hooks,
        idx,
        method,
        n_components,
        align,
        {**params, "reference": reference, "random_state": random_state},
    )
    folder = Path(cache_dir) if cache_dir is not None else Path(store.path) / "projections"
    folder = folder / key[:24]
    by_hook = {v: k for k, v in store.layers.items()}
    layer_ids = [by_hook.get(h) for h in hooks]
    est = None
    if not refit and (folder / CONFIG).is_file():
        from ..errors import ArtifactCorruptError, ArtifactNotFoundError

        try:
            est = load_projection(folder)
        except (ArtifactCorruptError, ArtifactNotFoundError) as exc:
            import warnings

            warnings.warn(f"refitting a damaged cached projection: {exc}", stacklevel=2)
    cached = est is not None
    if est is None:
        est = AlignedProjection(
            method,
            n_components,
            align=align,
            reference=reference,
            params=params,
            random_state=random_state,
        )
        est.fit(_StoreLayers(store, pooling, hooks, idx), progress=progress, callback=callback)
        save_projection(
            est,
            folder,
            meta={
                "store": str(store.path),
                "pooling": pooling,
                "hook_points": hooks,
                "layers": layer_ids,
                "rows": idx.tolist() if len(idx) <= 10_000 else len(idx),
                "method": method,
                "params": params,
                "key": key,
            },
        )
    return StoreProjection(
        embeddings=est.embeddings_,
        hook_points=hooks,
        layers=layer_ids,
        rows=idx,
        method=method,
        pooling=pooling,
        params=params,
        key=key,
        displacement=float(est.displacement_),
        cached=cached,
        path=folder,
        projection=est,
    )
