"""The leakage report as a static figure (matplotlib, so a PNG needs no browser): per-layer
reconstruction and the noise-defence curve, each metric with its 95% interval as a band."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

LAYER_METRICS = ("token_f1", "cosine", "entity_recall")
DEFENCE_METRICS = ("token_f1", "cosine", "bleu", "recall@1")


def _band(
    ax: Any, x: Sequence[float], rows: list[dict[str, Any]], metric: str, **style: Any
) -> None:
    """One metric as a line with its ``_low``/``_high`` interval shaded (BLEU scaled to 0-1)."""
    scale = 0.01 if metric == "bleu" else 1.0
    y = [scale * float(r[metric]) for r in rows]
    label = f"{metric} / 100" if metric == "bleu" else metric
    (line,) = ax.plot(x, y, marker="o", label=style.pop("label", label), **style)
    if f"{metric}_low" in rows[0]:
        lo = [scale * float(r[f"{metric}_low"]) for r in rows]
        hi = [scale * float(r[f"{metric}_high"]) for r in rows]
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.18, linewidth=0)


def leakage_figure(
    rows: list[dict[str, Any]],
    defence: list[dict[str, Any]],
    path: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
) -> Any:
    """Per-layer leakage (one line per metric and pooling) beside the defence curve.

    Args:
        rows: ``LeakageReport.rows`` (``layer``, ``pooling`` and metrics with ``_low``/``_high``).
        defence: ``LeakageReport.defence`` (``noise`` and metrics with intervals).
        path: write a PNG here (150 dpi) when given.
        title: figure title.

    Returns:
        The ``matplotlib.figure.Figure``.

    Raises:
        ValueError: no rows.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no leakage rows to draw: run leakage_report first")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    poolings = list(dict.fromkeys(r["pooling"] for r in rows))
    styles = ["-", "--", ":", "-."]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, p in enumerate(poolings):
        sub = sorted((r for r in rows if r["pooling"] == p), key=lambda r: r["layer"])
        layers = [r["layer"] for r in sub]
        for c, m in enumerate(m for m in LAYER_METRICS if m in sub[0]):
            label = m if len(poolings) == 1 else f"{m} ({p})"
            _band(left, layers, sub, m, color=colours[c], linestyle=styles[j % 4], label=label)
        if "cosine_bow_anchor" in sub[0]:
            left.plot(
                layers,
                [r["cosine_bow_anchor"] for r in sub],
                color="grey",
                linestyle=styles[j % 4],
                linewidth=1,
                label="bag-of-words anchor" + ("" if len(poolings) == 1 else f" ({p})"),
            )
    left.set(xlabel="layer", ylabel="score", title="reconstruction per layer (95% CI)")
    left.set_ylim(-0.02, 1.02)
    left.legend(fontsize=7, loc="best")
    if defence:
        noise = [float(r["noise"]) for r in defence]
        shown = [m for m in DEFENCE_METRICS if m in defence[0]]
        for c, m in enumerate(shown):
            _band(right, noise, defence, m, color=colours[c])
        positive = [v for v in noise if v > 0]
        if positive:
            right.set_xscale("symlog", linthresh=min(positive))
        d = defence[0]
        right.set(
            xlabel="noise scale (unit-norm vectors)",
            title=f"noise defence at layer {d['layer']}, {d['pooling']} (95% CI)",
        )
        right.set_ylim(-0.02, 1.02)
        right.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig
