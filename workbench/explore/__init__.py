"""Exploring the rows of a store: find them by text, by neighbourhood and by metadata, measure
a probe per slice, and export a selection. Plain numpy/pandas functions shared by the dashboard
and the notebooks.

Examples:
    >>> from workbench.explore import search, nearest_neighbors, filter_rows
    >>> rows = search(["Paris is in France.", "Rome is in Italy."], "paris")
    >>> rows.tolist()
    [0]
    >>> import numpy as np
    >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> idx, dist = nearest_neighbors(X, 0, k=1)
    >>> idx.tolist(), [round(float(d), 4) for d in dist]
    ([1], [0.0061])
    >>> filter_rows({"label": [0, 1, 1]}, equals={"label": [1]}).tolist()
    [False, True, True]
"""

from ._export import export_selection, selection_frame
from ._neighbours import nearest_neighbors
from ._search import SearchError, highlight, search
from ._slices import filter_rows, slice_metrics

__all__ = [
    "SearchError",
    "export_selection",
    "filter_rows",
    "highlight",
    "nearest_neighbors",
    "search",
    "selection_frame",
    "slice_metrics",
]
