"""Figure of a causal check: effect on the model's answer and side effect, per layer and alpha.

Examples:
    >>> from workbench.viz.causal import causal_curves
    >>> fig = causal_curves(check.run(texts, directions))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from ._embedding import require_plotly
from .probing import _COLOURS


def causal_curves(
    table: Any, *, title: str | None = None, answer: str = "log P(True) - log P(False)"
) -> Any:
    """Two panels sharing the alpha axis: the mean change of the answer's log-odds
    (``delta_vs_alpha0``) and the KL divergence on unrelated prompts (``kl_unrelated``), one line
    per layer; ablation rows (alpha NaN) are drawn as single markers at alpha = 0.

    Args:
        table: ``CausalCheck.run``'s DataFrame (``layer, alpha, mode, delta_vs_alpha0,
            kl_unrelated``), or a ``causal.csv`` read with pandas.
        title: figure title.
        answer: what the effect measures, for the axis title.

    Returns:
        A ``plotly.graph_objects.Figure``.

    Raises:
        KeyError: a needed column is missing.
    """
    go, _ = require_plotly()
    from plotly.subplots import make_subplots

    needed = ["layer", "alpha", "mode", "delta_vs_alpha0", "kl_unrelated"]
    missing = [c for c in needed if c not in getattr(table, "columns", [])]
    if missing:
        raise KeyError(
            f"not a causal-check table: columns {missing} are missing (pass "
            "CausalCheck.run's DataFrame or causal.csv)"
        )
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=(
            f"effect: change in {answer}",
            "side effect: KL on unrelated prompts (nats)",
        ),
    )
    for i, (layer, rows) in enumerate(table.groupby("layer", sort=True)):
        colour = _COLOURS[i % len(_COLOURS)]
        for mode, part in rows.groupby("mode", sort=False):
            part = part.sort_values("alpha")
            ablate = mode == "ablate"
            x = [0.0] * len(part) if ablate else list(part["alpha"])
            name = f"layer {layer}" + (" (ablate)" if ablate else "")
            style = (
                {"mode": "markers", "marker": {"symbol": "x", "size": 10, "color": colour}}
                if ablate
                else {"mode": "lines+markers", "line": {"color": colour}}
            )
            for row, column in ((1, "delta_vs_alpha0"), (2, "kl_unrelated")):
                fig.add_trace(
                    go.Scatter(
                        x=x,
                        y=list(part[column]),
                        name=name,
                        legendgroup=name,
                        showlegend=row == 1,
                        hovertemplate=f"{name}<br>alpha %{{x}}<br>{column} "
                        "%{y:.4f}<extra></extra>",
                        **style,
                    ),
                    row=row,
                    col=1,
                )
    fig.add_hline(y=0, line_color="grey", line_dash="dot", row=1, col=1)
    fig.update_xaxes(title_text="alpha (units of the layer's residual-stream norm)", row=2, col=1)
    fig.update_yaxes(title_text="mean change (nats)", row=1, col=1)
    fig.update_yaxes(title_text="KL (nats)", row=2, col=1)
    fig.update_layout(
        title=title or "Causal check: steering along the probe direction",
        template="plotly_white",
        legend={"orientation": "h", "y": -0.15},
    )
    return fig
