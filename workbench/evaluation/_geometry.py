"""Geometry of an embedding space and the post-processing that changes it.

- :func:`anisotropy`: mean cosine similarity between pairs of distinct rows (0 for an
  isotropic space, near 1 when every vector points the same way, as in many LLM layers).
- :func:`effective_rank`: ``exp`` of the entropy of the normalised singular values (Roy and
  Vetterli, 2007): how many directions the rows really use.
- :func:`norm_stats`: mean and standard deviation of the L2 norms.
- :class:`PostProcess`: ``none``, ``center`` (subtract the mean) or ``whiten`` (center, rotate to
  the principal axes and scale each to unit variance; BERT-whitening, Su et al. 2021).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import EvaluationOptionError, arg

POSTPROCESS = ("none", "center", "whiten")


def anisotropy(X: np.ndarray) -> float:
    """Mean cosine similarity between distinct rows of ``X`` ``[n, d]``: the expected cosine of
    a random pair, computed exactly over all ``n (n - 1)`` ordered pairs in ``O(n d)`` as
    ``(|sum of unit rows|^2 - n) / (n (n - 1))``.

    Examples:
        >>> anisotropy(np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]))
        1.0
        >>> anisotropy(np.array([[1.0, 0.0], [-1.0, 0.0]]))
        -1.0
    """
    X = np.asarray(X, np.float64)
    n = len(X)
    if n < 2:
        return float("nan")
    unit = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-300)
    total = unit.sum(axis=0)
    return float((total @ total - (unit * unit).sum()) / (n * (n - 1)))


def effective_rank(X: np.ndarray) -> float:
    """``exp(H(p))`` with ``p`` the singular values of ``X`` ``[n, d]`` divided by their sum.

    Computed on ``X`` as given (no centering: post-process first to measure a centered space).
    Between 1 (rank one) and ``min(n, d)`` (all singular values equal). The singular values come
    from the eigenvalues of the smaller Gram matrix, so the cost is ``n d min(n, d)``.

    Examples:
        >>> round(effective_rank(np.eye(4)), 6)
        4.0
    """
    X = np.asarray(X, np.float64)
    if X.size == 0 or not np.isfinite(X).all():
        return float("nan")
    gram = X.T @ X if X.shape[0] >= X.shape[1] else X @ X.T
    s = np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0.0, None))
    total = s.sum()
    if total <= 0:
        return float("nan")
    p = s[s > total * 1e-12] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def norm_stats(X: np.ndarray) -> dict[str, float]:
    """``{"norm_mean": ..., "norm_std": ...}`` of the rows' L2 norms."""
    norms = np.linalg.norm(np.asarray(X, np.float64), axis=1)
    return {"norm_mean": float(norms.mean()), "norm_std": float(norms.std())}


def geometry(X: np.ndarray) -> dict[str, float]:
    """Anisotropy, effective rank and norm statistics of ``X`` ``[n, d]`` in one dict."""
    return {
        "anisotropy": anisotropy(X),
        "effective_rank": effective_rank(X),
        **norm_stats(X),
    }


class PostProcess:
    """Center or whiten embeddings, fitted on a set of rows (scikit-learn style).

    Args:
        method: ``"none"`` (identity), ``"center"`` or ``"whiten"``.
        rtol: whitening keeps the principal directions whose variance exceeds ``rtol`` times
            the largest (the numerical rank), so near-empty directions are not blown up.

    Attributes:
        mean_: ``[d]`` the fitted mean (``center``, ``whiten``).
        components_: ``[d, k]`` whitening matrix: ``(X - mean_) @ components_`` has identity
            covariance on the fitted rows (``whiten``).

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(200, 3)) * [1.0, 5.0, 0.2] + 3.0
        >>> Z = PostProcess("whiten").fit_transform(X)
        >>> bool(np.allclose(np.cov(Z, rowvar=False), np.eye(3)))
        True
    """

    def __init__(self, method: str = "none", rtol: float = 1e-9) -> None:
        self.method = method
        self.rtol = rtol

    def fit(self, X: np.ndarray, y: Any = None) -> PostProcess:
        if self.method not in POSTPROCESS:
            raise EvaluationOptionError(
                f"post-processing {self.method!r}: use one of {list(POSTPROCESS)}"
            )
        X = np.asarray(X, np.float64)
        self.mean_ = X.mean(axis=0) if self.method != "none" else np.zeros(X.shape[1])
        if self.method == "whiten":
            # Eigen-decomposition of the d x d covariance (cheaper than an SVD of X when n > d).
            Xc = X - self.mean_
            var, vecs = np.linalg.eigh(Xc.T @ Xc / max(len(X) - 1, 1))
            top = var.max() if var.size else 0.0
            keep = var > self.rtol * top if top > 0 else np.zeros_like(var, dtype=bool)
            self.components_ = vecs[:, keep] / np.sqrt(var[keep])
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "mean_"):
            raise RuntimeError("this PostProcess is not fitted yet: call fit(X) first")
        if self.method == "none":
            return np.asarray(X)
        Xc = np.asarray(X, np.float64) - self.mean_
        if self.method == "whiten":
            Xc = Xc @ self.components_
        return Xc.astype(np.float32)

    def fit_transform(self, X: np.ndarray, y: Any = None) -> np.ndarray:
        return self.fit(X).transform(X)

    def __repr__(self) -> str:
        return f"PostProcess(method={self.method!r})"


def parse_postprocess(spec: str | Sequence[str]) -> list[str]:
    """``"none,center,whiten"`` -> a list, checking each name."""
    names = [s.strip().lower() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    bad = [n for n in names if n not in POSTPROCESS]
    if bad or not names:
        raise EvaluationOptionError(
            f"post-processing {bad or spec!r} ({arg('postprocess=', '--postprocess')}): choose "
            f"from {list(POSTPROCESS)}, comma separated"
        )
    return list(dict.fromkeys(names))
