"""Projection scatters: one layer, or every layer behind a slider, coloured by a label, a
prediction or a probe score, with hover text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._embedding import require_plotly
from .probing import _COLOURS


def _colour_kind(color: Any, n: int) -> tuple[str, np.ndarray | None]:
    """``none``, ``categorical`` or ``continuous`` and the values ``[n]``."""
    if color is None:
        return "none", None
    values = np.asarray(color)
    if values.shape != (n,):
        raise ValueError(f"color has shape {values.shape}: pass one value per point ({n})")
    if values.dtype.kind in "fc" or (values.dtype.kind in "iu" and len(np.unique(values)) > 20):
        return "continuous", values.astype(float)
    return "categorical", values.astype(str)


# ColorBrewer RdBu, reversed (low scores blue, high red), as plotly's "RdBu_r"
_RDBU_R = (
    "#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
    "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f",
)  # fmt: skip


@dataclass(frozen=True)
class PointColours:
    """Point colours for a renderer that takes one value per point and a palette (the WebGL
    scatter of the dashboard): ``values`` ``[n]`` float32 are category codes (``categorical``),
    positions in ``[0, 1]`` on the palette (``continuous``) or zeros (``none``); ``legend`` is
    ``(name, colour)`` pairs."""

    kind: str
    values: np.ndarray
    palette: list[str]
    legend: list[tuple[str, str]]
    labels: list[str]


def point_colours(
    color: Any, n: int, *, color_title: str = "label", color_midpoint: float | None = None
) -> PointColours:
    """The colours ``projection_scatter`` gives ``color`` (the same categorical palette; the
    same diverging scale, symmetric around ``color_midpoint``), as codes and a palette.

    Examples:
        >>> point_colours(["a", "b", "a"], 3).values.tolist()
        [0.0, 1.0, 0.0]
    """
    kind, values = _colour_kind(color, n)
    if kind == "none" or values is None:
        return PointColours("none", np.zeros(n, np.float32), [_COLOURS[0]], [], [])
    if kind == "categorical":
        cats = list(dict.fromkeys(values.tolist()))
        codes = {c: i for i, c in enumerate(cats)}
        palette = [_COLOURS[i % len(_COLOURS)] for i in range(len(cats))]
        legend = [(f"{color_title} {c}", palette[i]) for i, c in enumerate(cats)]
        out = np.fromiter((codes[v] for v in values.tolist()), np.float32, count=n)
        return PointColours(kind, out, palette, legend, cats)
    finite = values[np.isfinite(values)]
    if color_midpoint is not None and len(finite):
        bound = float(np.abs(finite - color_midpoint).max()) or 1.0
        lo, hi = color_midpoint - bound, color_midpoint + bound
    else:
        lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    scaled = np.clip((values - lo) / ((hi - lo) or 1.0), 0.0, 1.0)
    scaled = np.where(np.isfinite(scaled), scaled, 0.5).astype(np.float32)
    legend = [(f"{color_title} {lo:.3g}", _RDBU_R[0]), (f"{(lo + hi) / 2:.3g}", _RDBU_R[5])]
    legend.append((f"{hi:.3g}", _RDBU_R[-1]))
    return PointColours(kind, scaled, list(_RDBU_R), legend, [])


def _check_points(points: Any, what: str = "points") -> np.ndarray:
    arr = np.asarray(points, dtype=float)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise ValueError(f"{what} must be [n, 2] or [n, 3], got shape {arr.shape}")
    return arr


def _traces(
    go: Any,
    xy: np.ndarray,
    kind: str,
    values: Any,
    hover: list[str],
    color_title: str,
    size: float,
    crange: tuple[float, float] | None,
    ids: np.ndarray | None = None,
    midpoint: float | None = None,
) -> list[Any]:
    three = xy.shape[1] == 3
    cls = go.Scatter3d if three else go.Scattergl
    coords = {"x": xy[:, 0], "y": xy[:, 1], **({"z": xy[:, 2]} if three else {})}
    rows = np.arange(len(xy)) if ids is None else np.asarray(ids)
    template = "%{text}<extra>%{fullData.name}</extra>"
    if kind == "categorical":
        out = []
        for i, cat in enumerate(dict.fromkeys(values)):
            m = values == cat
            out.append(
                cls(
                    **{k: v[m] for k, v in coords.items()},
                    mode="markers",
                    name=str(cat),
                    text=[h for h, keep in zip(hover, m, strict=True) if keep],
                    customdata=rows[m],
                    marker={"size": size, "color": _COLOURS[i % len(_COLOURS)]},
                    hovertemplate=template,
                )
            )
        return out
    marker: dict[str, Any] = {"size": size}
    if kind == "continuous":
        finite = values[np.isfinite(values)]
        if crange:
            lo, hi = crange
        elif midpoint is not None and len(finite):
            bound = float(np.abs(finite - midpoint).max()) or 1.0
            lo, hi = midpoint - bound, midpoint + bound
        else:
            lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        marker.update(
            color=values, colorscale="RdBu_r", cmin=lo, cmax=hi, colorbar={"title": color_title}
        )
        if midpoint is not None:
            marker["cmid"] = midpoint
    return [
        cls(
            **coords,
            mode="markers",
            name="points",
            text=hover,
            customdata=rows,
            marker=marker,
            hovertemplate=template,
        )
    ]


def _hover(n: int, hover: Sequence[str] | None, kind: str, values: Any, title: str) -> list[str]:
    if hover is not None and len(hover) != n:
        raise ValueError(f"{len(hover)} hover texts for {n} points")
    base = [str(h) for h in hover] if hover is not None else [f"row {i}" for i in range(n)]
    if kind == "continuous":
        return [
            f"{b}<br>{title} {v:.3f}" if np.isfinite(v) else f"{b}<br>{title} (not scored)"
            for b, v in zip(base, values, strict=True)
        ]
    if kind == "categorical":
        return [f"{b}<br>{title} {v}" for b, v in zip(base, values, strict=True)]
    return base


def projection_scatter(
    points: Any,
    color: Any = None,
    *,
    hover: Sequence[str] | None = None,
    color_title: str = "label",
    axis_titles: Sequence[str] | None = None,
    title: str | None = None,
    size: float = 5.0,
    ids: Any = None,
    color_midpoint: float | None = None,
) -> Any:
    """A 2-D or 3-D scatter of projected points.

    Args:
        points: ``[n, 2]`` or ``[n, 3]`` coordinates.
        color: ``[n]`` labels or predictions (one trace and legend entry per value) or scores
            (floats: a diverging colour scale with a colour bar).
        hover: ``[n]`` hover texts (e.g. the texts); the colour value is appended.
        color_title: what ``color`` is (``label``, ``prediction``, ``probe score``).
        axis_titles: axis names (default ``dim 1``, ``dim 2``...; e.g. ``["probe direction",
            "PC 1 of the rest"]`` for ``ProbeAxes``).
        title: figure title.
        size: marker size.
        ids: ``[n]`` row ids carried as each point's ``customdata`` (default ``0..n-1``), so
            a click or a lasso maps back to rows whatever the trace split.
        color_midpoint: for scores, the value at the centre of the diverging scale (a probe's
            decision boundary, 0 for logits); the range is made symmetric around it.

    Returns:
        A ``plotly.graph_objects.Figure`` (``Scattergl`` in 2-D, ``Scatter3d`` in 3-D).
    """
    go, _ = require_plotly()
    xy = _check_points(points)
    kind, values = _colour_kind(color, len(xy))
    text = _hover(len(xy), hover, kind, values, color_title)
    row_ids = np.arange(len(xy)) if ids is None else np.asarray(ids)
    if row_ids.shape != (len(xy),):
        raise ValueError(f"ids has shape {row_ids.shape}: pass one id per point ({len(xy)})")
    fig = go.Figure(
        _traces(go, xy, kind, values, text, color_title, size, None, row_ids, color_midpoint)
    )
    _axes(fig, xy.shape[1], axis_titles)
    fig.update_layout(title=title, template="plotly_white", legend={"title": color_title})
    return fig


def _axes(fig: Any, k: int, axis_titles: Sequence[str] | None) -> None:
    names = list(axis_titles) if axis_titles else [f"dim {i + 1}" for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} axis titles for {k} dimensions")
    if k == 3:
        fig.update_layout(
            scene={"xaxis_title": names[0], "yaxis_title": names[1], "zaxis_title": names[2]}
        )
    else:
        fig.update_layout(xaxis_title=names[0], yaxis_title=names[1])


def layer_projection_slider(
    embeddings: Any,
    layer_names: Sequence[Any] | None = None,
    color: Any = None,
    *,
    hover: Sequence[str] | None = None,
    color_title: str = "label",
    title: str | None = None,
    size: float = 5.0,
    active: int = 0,
) -> Any:
    """Aligned per-layer projections ``[layers, n, 2]`` as one figure with a layer slider
    (plotly frames): the axes are fixed over all layers, so aligned items stay put.

    Args:
        embeddings: ``[layers, n, 2]`` (e.g. ``project_store(...).embeddings``).
        layer_names: a name per layer (default ``0..layers-1``).
        color: as in ``projection_scatter``.
        hover: as in ``projection_scatter``.
        color_title: as in ``projection_scatter``.
        title: as in ``projection_scatter``.
        size: as in ``projection_scatter``.
        active: the layer shown first.

    Returns:
        A ``plotly.graph_objects.Figure`` with one frame per layer and a slider.
    """
    go, _ = require_plotly()
    E = np.asarray(embeddings, dtype=float)
    if E.ndim != 3 or E.shape[2] != 2:
        raise ValueError(f"embeddings must be [layers, n, 2], got shape {E.shape}")
    names = [str(v) for v in (layer_names if layer_names is not None else range(len(E)))]
    if len(names) != len(E):
        raise ValueError(f"{len(names)} layer names for {len(E)} layers")
    if not 0 <= active < len(E):
        raise ValueError(f"active={active} is outside 0..{len(E) - 1}")
    kind, values = _colour_kind(color, E.shape[1])
    text = _hover(E.shape[1], hover, kind, values, color_title)
    crange = (
        (float(np.nanmin(values)), float(np.nanmax(values)))
        if kind == "continuous" and values is not None
        else None
    )
    frames = [
        go.Frame(
            data=_traces(go, E[i], kind, values, text, color_title, size, crange), name=names[i]
        )
        for i in range(len(E))
    ]
    fig = go.Figure(data=frames[active].data, frames=frames)
    pad = 0.05 * float(np.ptp(E[..., :2]))
    lo, hi = E.min(axis=(0, 1)) - pad, E.max(axis=(0, 1)) + pad
    fig.update_xaxes(range=[lo[0], hi[0]], title="aligned dim 1")
    fig.update_yaxes(range=[lo[1], hi[1]], title="aligned dim 2")
    steps = [
        {
            "method": "animate",
            "label": n,
            "args": [
                [n],
                {
                    "mode": "immediate",
                    "frame": {"duration": 0, "redraw": True},
                    "transition": {"duration": 0},
                },
            ],
        }
        for n in names
    ]
    fig.update_layout(
        title=title or "projection by layer",
        template="plotly_white",
        legend={"title": color_title},
        sliders=[
            {
                "active": active,
                "currentvalue": {"prefix": "layer "},
                "steps": steps,
                "pad": {"t": 40},
            }
        ],
    )
    return fig
