"""A side-by-side table of inversions: each method's reconstructed text beside its scores."""

from __future__ import annotations

from typing import Any

from ._embedding import require_plotly

COLUMNS = ("method", "text", "cosine", "bleu", "token_f1")


def inversion_table(results: Any, *, reference: str | None = None, title: str | None = None) -> Any:
    """Inversions side by side.

    Args:
        results: a list of dicts or a DataFrame with columns ``method``, ``text``, ``cosine``,
            ``bleu``, ``token_f1`` (extra columns are shown after them).
        reference: the original text, shown as the first row.
        title: figure title.

    Returns:
        A ``plotly.graph_objects.Figure`` (``Table``), rows sorted as given.

    Raises:
        KeyError: a needed column is missing (the columns present are listed).
    """
    go, _ = require_plotly()
    rows = results.to_dict("records") if hasattr(results, "to_dict") else list(results)
    if not rows:
        raise ValueError("no inversions to show: pass a non-empty list or DataFrame")
    present = list(dict.fromkeys(k for r in rows for k in r))
    missing = [c for c in COLUMNS if c not in present]
    if missing:
        raise KeyError(
            f"inversion results lack columns {missing}; they have {present} (need {list(COLUMNS)})"
        )
    columns = list(COLUMNS) + [c for c in present if c not in COLUMNS]

    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return ""
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    cells = [[fmt(r.get(c)) for r in rows] for c in columns]
    if reference is not None:
        cells = [
            [("original" if c == "method" else reference if c == "text" else "")] + col
            for c, col in zip(columns, cells, strict=True)
        ]
    widths = [3 if c == "text" else 1 for c in columns]
    fig = go.Figure(
        go.Table(
            columnwidth=widths,
            header={
                "values": [f"<b>{c}</b>" for c in columns],
                "align": "left",
                "fill_color": "#e8eef7",
            },
            cells={"values": cells, "align": "left", "height": 26},
        )
    )
    fig.update_layout(
        title=title or "inversions",
        template="plotly_white",
        height=min(1200, 120 + 40 * (len(rows) + (reference is not None))),
    )
    return fig
