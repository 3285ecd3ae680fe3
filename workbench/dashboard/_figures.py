"""Plotly figures the dashboard needs and ``workbench.viz`` does not build (yet): the confusion
matrix and the selectivity curves. Pure functions: arrays in, figure out."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(counts: Any, classes: list[Any], *, title: str | None = None) -> Any:
    """A ``[classes, classes]`` count matrix (rows true, columns predicted) as a heatmap."""
    import plotly.graph_objects as go

    counts = np.asarray(counts)
    names = [str(c) for c in classes]
    fig = go.Figure(
        go.Heatmap(
            z=counts,
            x=names,
            y=names,
            text=counts,
            texttemplate="%{text}",
            colorscale="Blues",
            colorbar={"title": "items"},
            hovertemplate="true %{y}<br>predicted %{x}<br>%{z} items<extra></extra>",
        )
    )
    acc = np.trace(counts) / max(int(counts.sum()), 1)
    fig.update_layout(
        title=title or f"confusion matrix (accuracy {acc:.3f})",
        xaxis_title="predicted",
        yaxis_title="true",
        yaxis_autorange="reversed",
        xaxis_type="category",
        yaxis_type="category",
        template="plotly_white",
    )
    return fig


def selectivity_curves(wide: Any, metric: str, *, height: int = 260) -> Any:
    """Selectivity per layer (``_data.selectivity``: a ``[layers, probes]`` DataFrame of task
    minus control-task scores), one line per probe, with a zero line.

    A plotly figure rather than ``st.line_chart``, so that the Probes page loads one chart
    library in the browser (plotly.js), not two (plotly.js and Vega)."""
    import plotly.graph_objects as go

    from ..viz.probing import _COLOURS

    fig = go.Figure()
    for i, name in enumerate(wide.columns):
        col = wide[name].dropna()
        fig.add_trace(
            go.Scatter(
                x=[int(v) for v in col.index],
                y=col.to_numpy(dtype=float),
                mode="lines+markers",
                name=str(name),
                line={"color": _COLOURS[i % len(_COLOURS)]},
                hovertemplate="layer %{x}<br>selectivity %{y:.4f}<extra>" + str(name) + "</extra>",
            )
        )
    fig.add_hline(y=0.0, line_dash="dot", line_color="grey")
    fig.update_layout(
        title=f"selectivity: task {metric} minus control-task {metric} (Hewitt & Liang)",
        height=height,
        xaxis_title="layer",
        yaxis_title=f"selectivity ({metric})",
        template="plotly_white",
        margin={"t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.3},
        hovermode="x unified",
    )
    return fig
