"""Probe directions as axes: x = the projection onto a probe's direction, y (and z) = the top
principal components of what is left once that direction is removed ("The Geometry of Truth")."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..probing._directions import unit_direction
from ._estimators import (
    PCAProjection,
    ProjectionInputError,
    _check_width,
    _float32_tags,
    check_rows,
    check_varies,
)


def probe_direction(direction: Any, d_model: int | None = None) -> np.ndarray:
    """A unit ``[d_model]`` float32 vector from a vector, ``[1, d_model]``, a fitted probe (its
    ``directions_``) or a feature index ``k`` (the basis vector of column ``k``: one neuron)."""
    if isinstance(direction, int | np.integer) and not isinstance(direction, bool | np.bool_):
        k = int(direction)
        if d_model is None:
            raise ProjectionInputError(
                f"direction={k} is a feature index: pass d_model (the number of columns) too"
            )
        if not -d_model <= k < d_model:
            raise ProjectionInputError(
                f"direction={k} is not a column of the {d_model} features: pass an index in "
                f"0..{d_model - 1} or a [d_model] vector"
            )
        vec = np.zeros(d_model, dtype=np.float32)
        vec[k] = 1.0
        return vec
    return unit_direction(direction, d_model, error=ProjectionInputError).astype(np.float32)


class ProbeAxes(TransformerMixin, BaseEstimator):
    """Coordinates along a probe direction and the top PC(s) orthogonal to it.

    Args:
        direction: a fitted probe (``directions_``), a ``[d_model]`` vector, or a feature
            index ``k`` (column ``k``'s axis, e.g. one neuron against the PCs of the rest).
        n_components: 2 (direction, PC1 of the residual) or 3 for a picture; 1 is the
            coordinate along the direction alone, more adds residual PCs (at most d).
        random_state: seed of the PCA solver.

    Attributes:
        direction_: unit ``[d]``; mean_: ``[d]``; components_: ``[k, d]`` orthonormal rows, the
        first being ``direction_``; explained_variance_ratio_: ``[k - 1]`` of the residual PCs;
        embedding_: ``[n, k]``.

    Examples:
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(40, 6))
        >>> ProbeAxes(direction=np.eye(6)[0]).fit_transform(X).shape
        (40, 2)
    """

    def __init__(
        self, direction: Any = None, n_components: int = 2, random_state: int | None = 0
    ) -> None:
        self.direction = direction
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> ProbeAxes:
        X = check_rows(X, min_rows=3, method="ProbeAxes")
        check_varies(X)
        k = int(self.n_components)
        if not 1 <= k <= X.shape[1]:
            raise ProjectionInputError(
                f"n_components={k} is not within 1..{X.shape[1]} (the number of columns): use "
                "2 or 3 for a picture"
            )
        d = probe_direction(self.direction, X.shape[1])
        self.mean_ = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        Xc = X - self.mean_
        pcs = np.zeros((0, X.shape[1]), dtype=np.float32)
        self.explained_variance_ratio_ = np.zeros(0, dtype=np.float32)
        if k > 1:
            residual = Xc - np.outer(Xc @ d, d)
            pca = PCAProjection(k - 1, random_state=self.random_state).fit(residual)
            pcs = pca.components_ - np.outer(pca.components_ @ d, d)  # exact orthogonality
            pcs /= np.linalg.norm(pcs, axis=1, keepdims=True)
            self.explained_variance_ratio_ = pca.explained_variance_ratio_
        self.direction_ = d
        self.components_ = np.vstack([d[None], pcs]).astype(np.float32)
        self.n_features_in_ = X.shape[1]
        self.embedding_ = (Xc @ self.components_.T).astype(np.float32)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """``[n, d]`` -> ``[n, k]``: column 0 along the probe direction."""
        check_is_fitted(self)
        X = _check_width(self, X, "ProbeAxes")
        return ((X - self.mean_) @ self.components_.T).astype(np.float32)

    def fit_transform(self, X: Any, y: Any = None, **_: Any) -> np.ndarray:
        return self.fit(X).embedding_

    def __sklearn_tags__(self) -> Any:
        return _float32_tags(super().__sklearn_tags__())
