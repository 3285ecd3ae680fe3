"""The Projection page's shared state: the selection (rows), the current item, and the view in
the URL's query parameters.

Selections arrive through widget callbacks (``on_select``), which run before the page script,
so the page draws the new selection in the same run. A selection is a list of row indices; it
is kept in ``st.session_state`` and so survives reruns, layer and method changes, and is
shared by both panels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import streamlit as st

SELECTION = "proj_selection"
"""Session key of the selected rows (a list of ints)."""

ITEM = "proj_row"
"""Session key of the current item (the row number input)."""

URL_KEYS = {
    "store": "proj_store",
    "pooling": "proj_pooling",
    "method": "proj_method",
    "layer": "proj_layer",
    "colour": "proj_colour",
    "renderer": "proj_renderer",
}
"""Query parameter -> widget key; ``rows`` (the selection) and ``item`` are handled apart."""

MAX_URL_ROWS = 500
"""A selection larger than this is not written into the URL (the URL would be too long)."""

_APPLIED = "proj_url_applied"


def plain(v: Any) -> Any:
    """A numpy scalar as the Python value it holds (``1``, not ``np.int64(1)``)."""
    return v.item() if isinstance(v, np.generic) else v


def _point_row(point: Any) -> int | None:
    data = point.get("customdata") if hasattr(point, "get") else None
    if isinstance(data, list | tuple):
        data = data[0] if data else None
    try:
        return int(data) if data is not None else None
    except (TypeError, ValueError):
        return None


def select_rows(rows: Sequence[int]) -> None:
    """Make ``rows`` the selection; the first becomes the current item when none is open."""
    st.session_state[SELECTION] = sorted({int(r) for r in rows})
    if rows and st.session_state.get(ITEM) is None:
        st.session_state[ITEM] = int(rows[0])


def chart_selected(key: str) -> None:
    """``on_select`` callback of a scatter: a click selects that one point and opens it; a
    box or lasso selects every point inside. Rows come from each point's ``customdata``."""
    event = st.session_state.get(key) or {}
    selection = event.get("selection") or {}
    rows = [r for r in (_point_row(p) for p in selection.get("points") or []) if r is not None]
    if not rows:  # an emptied selection (double-click, new figure): keep ours
        return
    dragged = bool(selection.get("box") or selection.get("lasso"))
    if len(set(rows)) == 1 and not dragged:
        st.session_state[SELECTION] = [rows[0]]
        st.session_state[ITEM] = rows[0]
    else:
        select_rows(rows)


def set_item(key: str, rows: Sequence[int]) -> None:
    """``on_select`` callback of a table whose i-th line is row ``rows[i]``: open that row."""
    event = st.session_state.get(key) or {}
    picked = (event.get("selection") or {}).get("rows") or []
    if picked and 0 <= picked[0] < len(rows):
        st.session_state[ITEM] = int(rows[picked[0]])


def _rows(text: str) -> list[int]:
    try:
        return sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        return []


def apply_url(stores: Sequence[str]) -> None:
    """Restore the view from the URL (store, pooling, method, layer, colour, selection, item)
    when its query parameters changed since they were last applied or written; values the
    page cannot use are dropped later by the page's own checks."""
    params = st.query_params.to_dict()
    if params == st.session_state.get(_APPLIED) or not params:
        st.session_state[_APPLIED] = params
        return
    for name, key in URL_KEYS.items():
        if name in params and (name != "store" or params[name] in stores):
            st.session_state[key] = params[name]
    if "rows" in params:
        st.session_state[SELECTION] = _rows(params["rows"])
    if "item" in params:
        try:
            st.session_state[ITEM] = int(params["item"])
        except ValueError:
            pass
    st.session_state[_APPLIED] = params


def write_url(view: dict[str, Any]) -> None:
    """Write the view into the URL's query parameters (a reload or a shared link restores it);
    a selection over ``MAX_URL_ROWS`` rows is left out."""
    params = {k: str(v) for k, v in view.items() if v is not None and k not in ("rows",)}
    rows = list(view.get("rows") or [])
    if rows and len(rows) <= MAX_URL_ROWS:
        params["rows"] = ",".join(str(int(r)) for r in rows)
    if params != st.query_params.to_dict():
        st.query_params.from_dict(params)
    st.session_state[_APPLIED] = params
