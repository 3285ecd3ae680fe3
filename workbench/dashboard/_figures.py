"""A plotly figure the dashboard needs and ``workbench.viz`` does not build (yet): the confusion
matrix. Pure functions: arrays in, figure out."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(counts: Any, classes: list[Any], *, title: str | None = None) -> Any:
    """A ``[classes, classes]`` count matrix (rows true, columns predicted) as a heatmap."""
    import plotly.graph_objects as go

    counts = np.asarray(counts)
    names = [str(c) for c in classes]
    fig = go.Figure(go.Heatmap(
        z=counts, x=names, y=names, text=counts, texttemplate="%{text}", colorscale="Blues",
        colorbar={"title": "items"},
        hovertemplate="true %{y}<br>predicted %{x}<br>%{z} items<extra></extra>",
    ))
    acc = np.trace(counts) / max(int(counts.sum()), 1)
    fig.update_layout(title=title or f"confusion matrix (accuracy {acc:.3f})",
                      xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed",
                      xaxis_type="category", yaxis_type="category", template="plotly_white")
    return fig

