"""Nearest neighbours of a row in the original activation space (cosine distance)."""

from __future__ import annotations

from typing import Any

import numpy as np


def nearest_neighbors(
    X: Any, row: int, k: int = 10, *, include_self: bool = False, chunk: int = 65_536
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``X`` closest to ``X[row]`` by cosine distance.

    Exact (one pass over the rows in chunks, so memory-mapped stores of 100k rows work); ties
    are broken by row index.

    Args:
        X: ``[n, d_model]`` states of one layer and pooling (e.g. ``store.layer(15, "last")``).
        row: the query row.
        k: neighbours to return.
        include_self: keep ``row`` itself (distance 0) in the list.
        chunk: rows per block.

    Returns:
        ``(indices [k], distances [k])``: cosine distances ``1 - cos`` in ``[0, 2]``, ascending.
    """
    n = len(X)
    if not -n <= row < n:
        raise IndexError(f"row {row} is outside 0..{n - 1}")
    row = row % n
    q = np.asarray(X[row], dtype=np.float64)
    q = q / max(float(np.linalg.norm(q)), 1e-30)
    dist = np.empty(n, dtype=np.float64)
    for start in range(0, n, chunk):
        block = np.asarray(X[start : start + chunk], dtype=np.float64)
        norms = np.maximum(np.linalg.norm(block, axis=1), 1e-30)
        dist[start : start + len(block)] = 1.0 - (block @ q) / norms
    np.clip(dist, 0.0, 2.0, out=dist)
    if not include_self:
        dist[row] = np.inf
    k = max(0, min(k, n - (0 if include_self else 1)))
    order = np.lexsort((np.arange(n), dist))[:k]
    return order.astype(np.int64), dist[order]
