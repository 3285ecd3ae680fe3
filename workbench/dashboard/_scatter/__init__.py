"""A WebGL scatter for many points: regl-scatterplot (vendored under ``static/vendor``, MIT)
in a Streamlit component, for the Projection page above ``scattergl``'s comfortable size.

Points travel as bytes (float32 coordinates and colour codes, int32 row ids: 12 bytes a point)
instead of a plotly figure's JSON. Pan (drag), zoom (scroll), hover (a tooltip), click (one
point), box and lasso (toolbar modes; shift+drag lassos in any mode). A selection comes back
in the shape of a plotly selection event (``{"selection": {"points": [{"customdata": row}],
"box": [...], "lasso": [...]}}``) in ``st.session_state[key]``, so the page's plotly callback
(``_selection.chart_selected``) reads both.

Examples:
    >>> from workbench.dashboard._scatter import webgl_scatter  # doctest: +SKIP
    >>> webgl_scatter(xy, labels, key="scatter", on_change=print)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit.components.v1 as components

from workbench.viz import point_colours

STATIC = Path(__file__).with_name("static")
_component = components.declare_component("webgl_scatter", path=str(STATIC))


@dataclass(frozen=True)
class Mark:
    """Rings drawn over some rows (search matches, neighbours, the current item)."""

    name: str
    rows: Sequence[int]
    color: str
    radius: float = 6.0
    width: float = 1.5


def _normalise(xy: np.ndarray, bounds: np.ndarray | None) -> np.ndarray:
    """``[n, 2]`` into ``[-1, 1]`` (regl-scatterplot's device coordinates), one scale for both
    axes so distances keep their ratio; ``bounds`` ``[2, 2]`` (min row, max row) fixes the
    frame, e.g. over every layer so points keep their place on the layer slider."""
    lo, hi = (xy.min(axis=0), xy.max(axis=0)) if bounds is None else bounds
    centre, half = (lo + hi) / 2, float(np.max(hi - lo)) / 2 * 1.05 or 1.0
    return ((xy - centre) / half).astype(np.float32)


def webgl_scatter(
    xy: Any,
    color: Any = None,
    *,
    ids: Any = None,
    hover: Sequence[str] | None = None,
    bounds: Any = None,
    color_title: str = "label",
    color_midpoint: float | None = None,
    selected: Sequence[int] = (),
    marks: Sequence[Mark] = (),
    title: str = "",
    height: int = 560,
    point_size: float = 4.0,
    key: str,
    on_change: Callable[[], None] | None = None,
) -> Any:
    """Draw ``xy`` ``[n, 2]`` coloured by ``color`` ``[n]`` (as ``projection_scatter``: labels
    or scores) and return the last selection event (or None).

    ``ids`` ``[n]`` are the rows the points stand for (default ``0..n-1``); ``selected`` and
    each mark's ``rows`` are given as ids. ``hover`` ``[n]`` texts (default ``row <id>``)."""
    pts = np.asarray(xy, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"xy must be [n, 2], got shape {pts.shape}")
    n = len(pts)
    rows = np.arange(n) if ids is None else np.asarray(ids, dtype=np.int64)
    if rows.shape != (n,):
        raise ValueError(f"ids has shape {rows.shape}: pass one id per point ({n})")
    if hover is not None and len(hover) != n:
        raise ValueError(f"{len(hover)} hover texts for {n} points")
    colours = point_colours(color, n, color_title=color_title, color_midpoint=color_midpoint)
    order = np.argsort(rows, kind="stable")

    def positions(wanted: Sequence[int]) -> list[int]:
        want = np.asarray(list(wanted), dtype=np.int64)
        at = np.clip(np.searchsorted(rows[order], want), 0, max(n - 1, 0))
        return order[at][rows[order][at] == want].tolist() if n else []

    coords = _normalise(pts, None if bounds is None else np.asarray(bounds, dtype=np.float64))
    xy_bytes, z_bytes = coords.tobytes(), colours.values.astype(np.float32).tobytes()
    ids_bytes = rows.astype(np.int32).tobytes()
    digest = hashlib.blake2b(xy_bytes + z_bytes + ids_bytes, digest_size=16)
    digest.update(repr((colours.palette, hover is None, n and hover and hover[0])).encode())
    return _component(
        xy=xy_bytes,
        z=z_bytes,
        ids=ids_bytes,
        z_type="categorical" if colours.kind == "categorical" else "continuous",
        palette=colours.palette,
        legend=[[name, c] for name, c in colours.legend]
        + [[m.name, m.color] for m in marks if len(m.rows)],
        labels=colours.labels or None,
        hover=None if hover is None else [str(h) for h in hover],
        data_id=digest.hexdigest(),
        selected=positions(selected),
        marks=[
            {"positions": positions(m.rows), "color": m.color, "radius": m.radius, "width": m.width}
            for m in marks
        ],
        title=title,
        height=height,
        point_size=point_size,
        key=key,
        on_change=on_change,
        default=None,
    )
