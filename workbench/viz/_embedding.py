"""Figures of the embedding-quality grid (``workbench.evaluation.evaluate_grid``)."""

from __future__ import annotations

from typing import Any

import numpy as np


def require_plotly() -> tuple[Any, Any]:
    """``plotly.graph_objects`` and ``plotly.subplots.make_subplots``, or an error naming the
    extra that installs plotly."""
    from ..data._tables import require

    go = require("plotly.graph_objects", "viz")
    subplots = require("plotly.subplots", "viz")
    return go, subplots.make_subplots


def embedding_heatmap(
    df: Any,
    metric: str = "spearman",
    *,
    postprocess: str | list[str] | None = None,
    title: str | None = None,
    annotate: bool = True,
) -> Any:
    """A layer x pooling heatmap of ``metric``, one panel per post-processing.

    Args:
        df: the DataFrame of ``evaluate_grid`` (columns ``layer``, ``pooling``, ``postprocess``
            and ``metric``).
        metric: the column to show (``spearman``, ``mrr``, ``anisotropy``, ...).
        postprocess: the post-processing(s) to show (default: every one in ``df``, side by side
            on one colour scale).
        title: figure title (default: metric, model and task, and the best cell).
        annotate: write each cell's value in it.

    Returns:
        A ``plotly.graph_objects.Figure``; layers run down the y axis (0 at the top), poolings
        across in the order of ``df``.

    Raises:
        KeyError: ``metric`` or a needed column is not in ``df`` (the columns are listed).
    """
    go, make_subplots = require_plotly()
    needed = ["layer", "pooling", "postprocess", metric]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise KeyError(
            f"columns {missing} are not in the results; its columns are {list(df.columns)}"
        )
    posts = (
        list(dict.fromkeys(df["postprocess"]))
        if postprocess is None
        else ([postprocess] if isinstance(postprocess, str) else list(postprocess))
    )
    unknown = [p for p in posts if p not in set(df["postprocess"])]
    if unknown:
        raise KeyError(
            f"post-processing {unknown} is not in the results: it has "
            f"{sorted(set(df['postprocess']))}"
        )
    poolings = list(dict.fromkeys(df["pooling"]))
    layers = sorted(set(int(v) for v in df["layer"]))
    sub = df[df["postprocess"].isin(posts)]
    zmin, zmax = float(sub[metric].min()), float(sub[metric].max())
    fig = make_subplots(
        rows=1, cols=len(posts), subplot_titles=posts, shared_yaxes=True, horizontal_spacing=0.02
    )
    for i, post in enumerate(posts, start=1):
        table = (
            sub[sub["postprocess"] == post]
            .pivot_table(index="layer", columns="pooling", values=metric, aggfunc="first")
            .reindex(index=layers, columns=poolings)
        )
        z = table.to_numpy()
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=[_short(p) for p in poolings],
                y=layers,
                zmin=zmin,
                zmax=zmax,
                colorscale="Viridis",
                showscale=i == len(posts),
                colorbar={"title": metric},
                text=[[f"{v:.1f}" if v == v else "" for v in row] for row in z]
                if annotate
                else None,
                texttemplate="%{text}" if annotate else None,
                textfont={"size": 8},
                hovertemplate=f"layer %{{y}}<br>pooling %{{x}}<br>{post}<br>{metric} %{{z:.3f}}"
                "<extra></extra>",
            ),
            row=1,
            col=i,
        )
    fig.update_yaxes(autorange="reversed", title_text="layer", row=1, col=1)
    fig.update_yaxes(autorange="reversed")
    if title is None:
        valid = sub[sub[metric].notna()]
        title = metric
        if "model" in df.columns and "task" in df.columns and len(df):
            title += f" — {df['model'].iloc[0]} on {df['task'].iloc[0]}"
        if len(valid):
            best = valid.loc[valid[metric].idxmax()]
            title += (
                f"<br><sup>best {best[metric]:.2f}: layer {int(best['layer'])}, "
                f"{_short(best['pooling'])}, {best['postprocess']}</sup>"
            )
    fig.update_layout(
        title=title,
        height=max(400, 22 * len(layers) + 160),
        width=max(500, 90 * len(poolings) * len(posts) + 200),
    )
    return fig


def embedding_layer_curves(
    df: Any,
    metric: str = "spearman",
    *,
    reference: tuple[str, float] | None = None,
    n_items: int | None = None,
    title: str | None = None,
) -> Any:
    """``metric`` by layer, one line per (pooling, post-processing) of an ``evaluate_grid``
    table (raw cells solid, post-processed dotted), with an optional reference line and 95%
    intervals.

    Args:
        df: the DataFrame of ``evaluate_grid`` (``layer``, ``pooling``, ``postprocess``, metric).
        metric: the column to draw (``spearman``, ``accuracy``, ``anisotropy``, ...).
        reference: ``(name, value)`` drawn as a horizontal line (e.g. a sentence encoder's
            score on the same task, or the majority-class baseline).
        n_items: rows (or pairs) each cell was scored on: error bars with the 95% interval of
            ``workbench.evaluation.metric_interval`` (Wilson for accuracies, Fisher z for
            Spearman; none for other metrics).
        title: figure title.

    Raises:
        KeyError: ``metric`` or a needed column is not in ``df`` (the columns are listed).
    """
    go, _ = require_plotly()
    missing = [c for c in ("layer", "pooling", "postprocess", metric) if c not in df.columns]
    if missing:
        raise KeyError(
            f"columns {missing} are not in the results; its columns are {list(df.columns)}"
        )
    from ..intervals import metric_interval

    fig = go.Figure()
    for (pooling, post), rows in df.groupby(["pooling", "postprocess"], sort=False):
        rows = rows.sort_values("layer")
        y = rows[metric].to_numpy(dtype=float)
        error: dict[str, Any] | None = None
        if n_items:
            bounds = np.array([metric_interval(metric, v, int(n_items)) for v in y])
            if np.isfinite(bounds).any():
                error = {
                    "type": "data",
                    "symmetric": False,
                    "array": bounds[:, 1] - y,
                    "arrayminus": y - bounds[:, 0],
                    "thickness": 1,
                }
        fig.add_trace(
            go.Scatter(
                x=rows["layer"],
                y=y,
                mode="lines+markers",
                name=f"{_short(pooling)} ({post})",
                error_y=error,
                line={"dash": "solid" if post == "none" else "dot"},
            )
        )
    if reference is not None:
        name, value = reference
        fig.add_hline(
            y=value, line_dash="dash", line_color="black", annotation_text=f"{name} {value:.1f}"
        )
    note = f" (95% intervals, n = {int(n_items)})" if n_items else ""
    fig.update_layout(
        title=title or f"{metric} by layer{note}",
        xaxis_title="layer",
        yaxis_title=metric,
        template="plotly_white",
    )
    return fig


def _short(name: str) -> str:
    return name if len(name) <= 24 else name[:21] + "..."
