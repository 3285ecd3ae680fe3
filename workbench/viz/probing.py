"""Figures of probing results: layer curves, generalisation heatmaps and lat/long maps.

Pure functions: a result in, a ``plotly.graph_objects.Figure`` out (plotly is imported when a
figure is built).

Examples:
    >>> from workbench.viz.probing import layer_curves
    >>> fig = layer_curves(result, metric="accuracy")  # doctest: +SKIP
    >>> fig.write_html("layers.html")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._embedding import require_plotly

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _table(result_or_table: Any) -> Any:
    table = getattr(result_or_table, "table", result_or_table)
    needed = ["pooling", "hook_point", "layer", "probe", "labels", "metric", "value", "low", "high"]
    missing = [c for c in needed if c not in getattr(table, "columns", [])]
    if missing:
        raise KeyError(
            f"not a sweep table: columns {missing} are missing (pass a SweepResult or "
            "its .table / a results.csv read with pandas)"
        )
    return table


def layer_curves(
    result_or_table: Any, metric: str = "accuracy", *, title: str | None = None
) -> Any:
    """Score per layer: the task probe with its CI band, the control task (dotted), the same
    probe on a random-weights model (dashed, when the table has ``labels == "random_weights"``)
    and the majority (or mean) baseline as a grey dashed line.

    Args:
        result_or_table: a ``SweepResult`` or a tidy sweep table (one or several probes and
            poolings: one line per probe and pooling).
        metric: a metric of the table (``accuracy``, ``auroc``, ``r2``, ``great_circle_km``, ...).
        title: figure title (default: the metric and the best layer).

    Returns:
        A ``plotly.graph_objects.Figure`` with x = layer (the hook point's position when it is
        no residual layer).

    Raises:
        KeyError: ``metric`` is not in the table (the error lists those that are).
    """
    go, _ = require_plotly()
    t = _table(result_or_table)
    if metric not in set(t["metric"]):
        raise KeyError(
            f"metric {metric!r} is not in the results; they have {sorted(set(t['metric']))}"
        )
    t = t[t["metric"] == metric]
    fig = go.Figure()
    hook_order = list(dict.fromkeys(t.loc[t["labels"] != "majority", "hook_point"]))
    task = t[t["labels"] == "task"]
    groups = list(dict.fromkeys(zip(task["probe"], task["pooling"], strict=True)))
    best_text = ""
    for i, (probe, pooling) in enumerate(groups):
        colour = _COLOURS[i % len(_COLOURS)]
        name = probe if len({p for _, p in groups}) == 1 else f"{probe} ({pooling})"
        for labels, dash in (("task", "solid"), ("control", "dot"), ("random_weights", "dash")):
            rows = t[(t["labels"] == labels) & (t["probe"] == probe) & (t["pooling"] == pooling)]
            if not len(rows):
                continue
            x = [
                int(v) if v == v and v is not None else hook_order.index(h)
                for v, h in zip(rows["layer"], rows["hook_point"], strict=True)
            ]
            if labels == "task" and rows[["low", "high"]].notna().all().all():
                fig.add_trace(
                    go.Scatter(
                        x=x + x[::-1],
                        y=list(rows["high"]) + list(rows["low"])[::-1],
                        fill="toself",
                        fillcolor=_rgba(colour, 0.18),
                        line={"width": 0},
                        mode="lines",
                        hoverinfo="skip",
                        showlegend=True,
                        name=f"{name} 95% CI",
                    )
                )
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=list(rows["value"]),
                    mode="lines+markers" if labels == "task" else "lines",
                    name={
                        "task": name,
                        "control": f"{name} control task",
                        "random_weights": f"{name} random weights",
                    }[labels],
                    line={"color": colour, "dash": dash, "width": 2 if labels == "task" else 1.5},
                    customdata=np.asarray(rows["hook_point"], dtype=object),
                    hovertemplate="layer %{x} (%{customdata})<br>"
                    + metric
                    + " %{y:.4f}<extra>"
                    + name
                    + {"task": "", "control": " control", "random_weights": " random weights"}[
                        labels
                    ]
                    + "</extra>",
                )
            )
            if labels == "task" and i == 0:
                lower = metric in ("mae", "great_circle_km", "median_great_circle_km")
                values = np.asarray(rows["value"], dtype=float)
                j = int(np.nanargmin(values) if lower else np.nanargmax(values))
                best_text = f"best {name}: layer {x[j]} = {values[j]:.3f}"
    base = t[t["labels"] == "majority"]
    if len(base):
        value = float(base.iloc[0]["value"])
        fig.add_hline(
            y=value,
            line_dash="dash",
            line_color="grey",
            annotation_text=f"{base.iloc[0]['probe']} baseline {value:.3f}",
            annotation_position="bottom right",
        )
    fig.update_layout(
        title=title or f"{metric} by layer" + (f" ({best_text})" if best_text else ""),
        xaxis_title="layer",
        yaxis_title=metric,
        template="plotly_white",
        legend={"orientation": "h", "y": -0.18},
        hovermode="x unified",
    )
    return fig


def generalisation_heatmap(df: Any, layer: int | None = None, *, title: str | None = None) -> Any:
    """Train x test accuracy at one layer, or the best layer per pair.

    Args:
        df: ``generalisation_matrix``'s DataFrame (``train, test, layer, hook_point, accuracy``).
        layer: the layer to show; None shows each pair's best accuracy and its layer.
        title: figure title.

    Returns:
        A ``plotly.graph_objects.Figure``: rows are the training dataset, columns the test one.

    Raises:
        KeyError: a needed column is missing, or ``layer`` is not in ``df`` (layers listed).
    """
    go, _ = require_plotly()
    needed = ["train", "test", "layer", "accuracy"]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise KeyError(f"columns {missing} are not in the DataFrame; it has {list(df.columns)}")
    names = list(dict.fromkeys(list(df["train"]) + list(df["test"])))
    if layer is not None:
        sub = df[df["layer"] == layer]
        if not len(sub):
            raise KeyError(
                f"layer {layer} is not in the results; they have layers "
                f"{sorted(int(v) for v in set(df['layer']) if v == v)}"
            )
        cells = {(r.train, r.test): (float(r.accuracy), layer) for r in sub.itertuples()}
    else:
        best = df.loc[df.groupby(["train", "test"], sort=False)["accuracy"].idxmax()]
        cells = {(r.train, r.test): (float(r.accuracy), r.layer) for r in best.itertuples()}
    z = [[cells.get((a, b), (np.nan, None))[0] for b in names] for a in names]
    text = [
        [
            ""
            if (a, b) not in cells
            else f"{cells[(a, b)][0]:.3f}"
            + (
                f"<br>L{int(cells[(a, b)][1])}"
                if layer is None
                and cells[(a, b)][1] == cells[(a, b)][1]
                and cells[(a, b)][1] is not None
                else ""
            )
            for b in names
        ]
        for a in names
    ]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=names,
            y=names,
            text=text,
            texttemplate="%{text}",
            zmin=0.0,
            zmax=1.0,
            colorscale="RdBu",
            zmid=0.5,
            colorbar={"title": "accuracy"},
            hovertemplate="train %{y}<br>test %{x}<br>accuracy %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title
        or (
            "generalisation accuracy "
            + (f"at layer {layer}" if layer is not None else "(best layer per pair)")
        ),
        xaxis_title="test",
        yaxis_title="train",
        yaxis_autorange="reversed",
        template="plotly_white",
    )
    return fig


def _latlon_inputs(true: Any, pred: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``true``, ``pred`` ``[n, 2]`` float arrays and ``[n]`` label strings (object array),
    checked."""
    true, pred = np.asarray(true, dtype=float), np.asarray(pred, dtype=float)
    if true.ndim != 2 or true.shape[1] != 2 or pred.shape != true.shape:
        raise ValueError(
            f"true and pred must both be [n, 2] (latitude, longitude), got "
            f"{true.shape} and {pred.shape}"
        )
    n = len(true)
    listed = [str(v) for v in labels] if labels is not None else [str(i) for i in range(n)]
    if len(listed) != n:
        raise ValueError(f"{len(listed)} labels for {n} points")
    names = np.empty(n, dtype=object)
    names[:] = listed
    return true, pred, names


def _shown(n: int, max_points: int | None, seed: int) -> np.ndarray:
    """Indices of the places drawn: all of them, or a sorted random ``max_points`` (``seed``)."""
    if max_points is not None and max_points < 1:
        raise ValueError(
            f"max_points={max_points}: pass a positive number of places, or None "
            "to draw all of them"
        )
    if max_points is None or n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def _latlon_title(n: int, shown: int, km: np.ndarray) -> str:
    title = f"predicted vs true location ({n} places, median error {np.median(km):.0f} km"
    return title + (f"; showing a random {shown})" if shown < n else ")")


def _latlon_drawn(
    true: Any, pred: Any, labels: Any, max_points: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked inputs of a lat/long figure: names ``[n]``, great-circle errors ``[n]`` (km),
    the drawn rows ``[m]`` and their true and predicted (lat, lon) ``[m, 2]``."""
    from .._geo import great_circle_km

    true, pred, names = _latlon_inputs(true, pred, labels)
    km = np.asarray(great_circle_km(true, pred), dtype=float)
    idx = _shown(len(true), max_points, seed)
    return names, km, idx, true[idx], pred[idx]


def latlon_map(
    true: Any,
    pred: Any,
    labels: Any = None,
    *,
    title: str | None = None,
    max_points: int | None = None,
    seed: int = 0,
) -> Any:
    """Predicted vs true places on a world map, each pair joined by a line.

    The map's country outlines are fetched by plotly.js from its CDN when the figure is drawn
    (offline, the map stays blank: ``latlon_scatter`` draws the same pairs without outlines).

    Args:
        true: ``[n, 2]`` true (latitude, longitude) in degrees.
        pred: ``[n, 2]`` predicted (latitude, longitude).
        labels: ``[n]`` names shown on hover.
        title: figure title (default: the median great-circle error over all ``n`` places).
        max_points: draw at most this many places (a random sample, ``seed``); the title still
            reports the median error over all of them. None draws every place (scattergeo is
            SVG: thousands of places take seconds to draw in a browser).
        seed: the sample's seed.

    Returns:
        A ``plotly.graph_objects.Figure`` (``scattergeo``).

    Raises:
        ValueError: ``true`` and ``pred`` are not both ``[n, 2]``, ``labels`` has another
            length, or ``max_points`` is not positive.
    """
    go, _ = require_plotly()
    names, km, idx, t, p = _latlon_drawn(true, pred, labels, max_points, seed)
    n, m = len(km), len(idx)
    lat_lines = np.column_stack([t[:, 0], p[:, 0], np.full(m, np.nan)]).ravel()
    lon_lines = np.column_stack([t[:, 1], p[:, 1], np.full(m, np.nan)]).ravel()
    fig = go.Figure()
    fig.add_trace(
        go.Scattergeo(
            lat=lat_lines,
            lon=lon_lines,
            mode="lines",
            line={"width": 0.5, "color": "rgba(120,120,120,0.35)"},
            name="error",
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scattergeo(
            lat=t[:, 0],
            lon=t[:, 1],
            mode="markers",
            name="true",
            marker={"size": 4, "color": "#1f77b4"},
            text=names[idx].tolist(),
            hovertemplate="%{text}<br>true %{lat:.1f}, %{lon:.1f}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scattergeo(
            lat=p[:, 0],
            lon=p[:, 1],
            mode="markers",
            name="predicted",
            marker={"size": 4, "color": "#d62728"},
            text=[f"{a}<br>error {k:.0f} km" for a, k in zip(names[idx], km[idx], strict=True)],
            hovertemplate="%{text}<br>predicted %{lat:.1f}, %{lon:.1f}<extra></extra>",
        )
    )
    fig.update_geos(
        showcountries=True,
        countrycolor="rgb(210,210,210)",
        showland=True,
        landcolor="rgb(245,245,245)",
        projection_type="natural earth",
    )
    fig.update_layout(
        title=title or _latlon_title(n, m, km), template="plotly_white", legend={"orientation": "h"}
    )
    return fig


WEBGL_ABOVE = 2500
"""``latlon_scatter`` draws its markers with WebGL above this many places (SVG below: WebGL's
fixed start-up cost, about half a second in a software-rendering browser, buys nothing for a
few thousand markers)."""


def latlon_scatter(
    true: Any,
    pred: Any,
    labels: Any = None,
    *,
    title: str | None = None,
    max_points: int | None = None,
    seed: int = 0,
    webgl: bool | None = None,
) -> Any:
    """Predicted vs true places on longitude/latitude axes (an equirectangular map without
    outlines), each pair joined by a line. Nothing is fetched, so it draws offline (unlike
    ``latlon_map``), and it draws fast: the error lines are one SVG path (a layout shape), not
    one element per line.

    Args:
        true: as in ``latlon_map``.
        pred: as in ``latlon_map``.
        labels: as in ``latlon_map``.
        title: as in ``latlon_map``.
        max_points: as in ``latlon_map``.
        seed: as in ``latlon_map``.
        webgl: markers in WebGL (``scattergl``) or SVG (``scatter``); None picks WebGL above
            ``WEBGL_ABOVE`` drawn places.

    Returns:
        A ``plotly.graph_objects.Figure`` with ``true`` and ``predicted`` marker traces and
        the ``error`` lines as a path shape (in the legend); x = longitude, y = latitude, one
        degree as long on both axes.

    Raises:
        ValueError: as ``latlon_map``.

    Examples:
        >>> fig = latlon_scatter([[48.85, 2.35]], [[47.0, 3.0]], ["Paris"])
        >>> [t.name for t in fig.data], fig.layout.shapes[0].name
        (['true', 'predicted'], 'error')
    """
    go, _ = require_plotly()
    names, km, idx, t, p = _latlon_drawn(true, pred, labels, max_points, seed)
    n, m = len(km), len(idx)
    cls = go.Scattergl if (webgl if webgl is not None else m > WEBGL_ABOVE) else go.Scatter
    fig = go.Figure()
    fig.add_trace(
        cls(
            x=t[:, 1],
            y=t[:, 0],
            mode="markers",
            name="true",
            marker={"size": 4, "color": "#1f77b4"},
            text=names[idx],
            hovertemplate="%{text}<br>true %{y:.1f}, %{x:.1f}<extra></extra>",
        )
    )
    fig.add_trace(
        cls(
            x=p[:, 1],
            y=p[:, 0],
            mode="markers",
            name="predicted",
            marker={"size": 4, "color": "#d62728"},
            text=names[idx],
            customdata=km[idx],
            hovertemplate="%{text}<br>error %{customdata:.0f} km<br>predicted %{y:.1f}, "
            "%{x:.1f}<extra></extra>",
        )
    )
    ok = np.isfinite(t).all(axis=1) & np.isfinite(p).all(axis=1)
    path = "".join(
        f"M{a:.3f},{b:.3f}L{c:.3f},{d:.3f}"
        for a, b, c, d in zip(t[ok, 1], t[ok, 0], p[ok, 1], p[ok, 0], strict=True)
    )
    if path:
        fig.add_shape(
            type="path",
            path=path,
            layer="below",
            name="error",
            showlegend=True,
            line={"width": 0.5, "color": "rgba(120,120,120,0.5)"},
        )
    fig.update_xaxes(
        range=[-180, 180],
        tick0=-180,
        dtick=30,
        title="longitude",
        zeroline=False,
        constrain="domain",
    )
    fig.update_yaxes(
        range=[-90, 90],
        tick0=-90,
        dtick=30,
        title="latitude",
        zeroline=False,
        scaleanchor="x",
        scaleratio=1,
        constrain="domain",
    )
    fig.update_layout(
        title=title or _latlon_title(n, m, km), template="plotly_white", legend={"orientation": "h"}
    )
    return fig
