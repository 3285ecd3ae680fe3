"""Layer-aligned projections: one picture per layer in which an item keeps its place as a layer
slider moves.

Each layer gets its own projection (its own best 2-D/3-D view); consecutive layers are then
aligned by orthogonal Procrustes (rotation/reflection) after centring and scaling each layer to
unit RMS radius, chaining outwards from a reference layer. For UMAP and t-SNE each layer is also
*initialised* with the previous layer's aligned embedding, so the optimiser starts from the
previous picture instead of a fresh spectral layout.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from ..errors import arg
from ._estimators import ProjectionInputError, _NeighbourEmbedding, make_projection

ALIGN = ("procrustes", "none")


def _normalise(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``Y`` centred and scaled to unit RMS radius; returns (Y', centre, scale)."""
    centre = Y.mean(axis=0)
    Yc = Y - centre
    scale = float(np.sqrt((Yc**2).sum(axis=1).mean())) or 1.0
    return Yc / scale, centre, scale


def procrustes_rotation(Y: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The orthogonal ``[k, k]`` matrix ``R`` minimising ``||Y R - target||_F``."""
    u, _, vt = np.linalg.svd(Y.T.astype(np.float64) @ target.astype(np.float64))
    return (u @ vt).astype(np.float32)


def layer_displacement(embeddings: Any) -> float:
    """Mean distance an item moves between consecutive layers, each layer centred and scaled to
    unit RMS radius first (so the number compares pictures, not units).

    Args:
        embeddings: ``[layers, n, k]``.
    """
    E = np.asarray(embeddings, dtype=np.float64)
    if E.ndim != 3 or E.shape[0] < 2:
        raise ProjectionInputError(f"embeddings must be [layers >= 2, n, k], got {E.shape}")
    normed = [_normalise(e)[0] for e in E]
    return float(
        np.mean(
            [
                np.linalg.norm(b - a, axis=1).mean()
                for a, b in zip(normed[:-1], normed[1:], strict=True)
            ]
        )
    )


class AlignedProjection(BaseEstimator):
    """One projection per layer, aligned so that items keep their place across layers.

    Args:
        method: ``pca``, ``umap`` or ``tsne``.
        n_components: 2 or 3.
        align: ``procrustes`` (default) or ``none`` (independent fits, for comparison).
        reference: index (into the layers passed to ``fit``) of the layer fitted first; the
            others are aligned outwards from it. Negative counts from the end; None (default)
            is the middle layer (chains half as long, and middle layers are rarely degenerate).
        params: keyword parameters of the per-layer projection (e.g. ``{"n_neighbors": 10}``).
        random_state: seed of every per-layer fit.

    Attributes:
        embeddings_: ``[layers, n, k]`` aligned embeddings of the training rows.
        projections_: the fitted per-layer projections.
        centres_ ``[layers, k]``, scales_ ``[layers]``, rotations_ ``[layers, k, k]``: the
        alignment, applied as ``((Y - centre) / scale) @ R``.
        displacement_: ``layer_displacement(embeddings_)``.

    Examples:
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(50, 3, 8))  # [rows, layers, d]
        >>> AlignedProjection("pca").fit(X).embeddings_.shape
        (3, 50, 2)
    """

    def __init__(
        self,
        method: str = "pca",
        n_components: int = 2,
        *,
        align: str = "procrustes",
        reference: int | None = None,
        params: dict[str, Any] | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.method = method
        self.n_components = n_components
        self.align = align
        self.reference = reference
        self.params = params
        self.random_state = random_state

    def fit(
        self,
        X: Any,
        y: Any = None,
        progress: bool = False,
        callback: Callable[[int, int], None] | None = None,
    ) -> AlignedProjection:
        """Fit every layer.

        Args:
            X: ``[rows, layers, d]`` array, or a sequence of ``[rows, d]`` arrays (read lazily
                one at a time, so a store's layers need not all sit in memory).
            y: ignored (scikit-learn's signature).
            progress: show a progress bar over layers.
            callback: called as ``callback(done, total)`` after each layer (a UI's progress
                bar and ETA).
        """
        if self.align not in ALIGN:
            raise ProjectionInputError(
                f"{arg('align=', '--align ')}{self.align!r}: use one of {list(ALIGN)}"
            )
        layers = _layer_sequence(X)
        n_layers = len(layers)
        if n_layers < 1:
            raise ProjectionInputError("no layers to project: pass at least one layer")
        ref = n_layers // 2 if self.reference is None else self.reference
        ref = ref + n_layers if ref < 0 else ref
        if not 0 <= ref < n_layers:
            raise ProjectionInputError(
                f"reference={self.reference} is outside the {n_layers} layers passed: use "
                f"0..{n_layers - 1} (or negative from the end)"
            )
        base = make_projection(
            self.method, self.n_components, random_state=self.random_state, **(self.params or {})
        )
        order = [ref] + list(range(ref + 1, n_layers)) + list(range(ref - 1, -1, -1))
        projections: list[Any] = [None] * n_layers
        embeddings: list[Any] = [None] * n_layers
        centres = np.zeros((n_layers, self.n_components), np.float32)
        scales = np.ones(n_layers, np.float32)
        rotations = np.tile(np.eye(self.n_components, dtype=np.float32), (n_layers, 1, 1))
        bar = _bar(n_layers, progress)
        done = 0
        n = -1
        for i in order:
            x = layers[i]
            if n < 0:
                n = len(x)
            if len(x) != n:
                raise ProjectionInputError(
                    f"layer {i} has {len(x)} rows and the first has {n}: every layer must hold "
                    "the same rows"
                )
            if _degenerate(x):
                if i == ref:
                    raise ProjectionInputError(
                        f"the reference layer (position {ref}) has the same vector in every row, "
                        "so it has no picture to align to: pass another "
                        + arg("reference=", "--layers selection (the middle one is the reference)")
                    )
                warnings.warn(
                    f"layer at position {i}: every row has the same vector (e.g. "
                    "'last' pooling at the embedding layer when every text ends in "
                    "the same token); its points are all drawn at the origin",
                    stacklevel=2,
                )
                embeddings[i] = np.zeros((n, self.n_components), np.float32)
                bar.update(1)
                done += 1
                if callback is not None:
                    callback(done, n_layers)
                continue
            prev = _anchor(i, ref, projections)
            est = clone(base)
            if self.align != "none" and prev is not None and isinstance(est, _NeighbourEmbedding):
                est.set_params(init=embeddings[prev])
            Y = est.fit(x).embedding_
            Yn, centres[i], scales[i] = _normalise(Y)
            if self.align != "none" and prev is not None:
                rotations[i] = procrustes_rotation(Yn, embeddings[prev])
            embeddings[i] = (Yn @ rotations[i]).astype(np.float32)
            projections[i] = est
            bar.update(1)
            done += 1
            if callback is not None:
                callback(done, n_layers)
        bar.close()
        self.projections_ = projections
        self.embeddings_ = np.stack(embeddings)
        self.centres_, self.scales_, self.rotations_ = centres, scales, rotations
        self.n_layers_ = n_layers
        self.displacement_ = layer_displacement(self.embeddings_) if n_layers > 1 else 0.0
        return self

    def transform(self, X: Any) -> np.ndarray:
        """New rows ``[rows, layers, d]`` (or a sequence of ``[rows, d]``) -> ``[layers, rows, k]``
        in the aligned coordinates."""
        check_is_fitted(self)
        layers = _layer_sequence(X)
        if len(layers) != self.n_layers_:
            raise ProjectionInputError(
                f"{len(layers)} layers passed but the projection was fitted on {self.n_layers_}"
            )
        return np.stack(
            [
                np.zeros((len(layers[i]), self.n_components), np.float32)
                if p is None
                else (
                    ((p.transform(layers[i]) - self.centres_[i]) / self.scales_[i])
                    @ self.rotations_[i]
                ).astype(np.float32)
                for i, p in enumerate(self.projections_)
            ]
        )

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        return self.fit(X).embeddings_


def _degenerate(x: Any) -> bool:
    """Whether every row of ``x`` ``[rows, d]`` is the same vector."""
    arr = np.asarray(x)
    return bool(len(arr)) and bool(np.isfinite(arr).all()) and float(np.ptp(arr, axis=0).max()) == 0


def _anchor(i: int, ref: int, projections: list[Any]) -> int | None:
    """The nearest already-fitted, non-degenerate layer between ``i`` and the reference."""
    if i == ref:
        return None
    step = -1 if i > ref else 1
    j = i + step
    while projections[j] is None and j != ref:
        j += step
    return j if projections[j] is not None else None


def _layer_sequence(X: Any) -> Sequence[Any]:
    if isinstance(X, np.ndarray) or hasattr(X, "detach"):
        arr = X.detach().cpu().numpy() if hasattr(X, "detach") else X
        if arr.ndim != 3:
            raise ProjectionInputError(
                f"pass [rows, layers, d] (e.g. store.get(pooling, layers=...)) or a list of "
                f"[rows, d] arrays, got an array of shape {arr.shape}"
            )
        return [arr[:, i] for i in range(arr.shape[1])]
    if not hasattr(X, "__len__") or not hasattr(X, "__getitem__"):
        raise ProjectionInputError("pass [rows, layers, d] or a sequence of [rows, d] arrays")
    return X


def _bar(total: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="project layers", unit="layer", disable=not enabled)
