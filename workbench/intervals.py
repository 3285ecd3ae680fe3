"""Uncertainty and baselines for scores (embedding grids, probes, the dashboard): Wilson
intervals for accuracies, Fisher-z intervals for Spearman correlations, the majority-class
baseline. It imports nothing of workbench, so any layer (viz included) may use it."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

Z95 = 1.959963984540054


def wilson_interval(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` observed on ``n`` items (95% by default).

    Out-of-fold accuracy predicts each item once, so it is treated as ``n`` Bernoulli trials
    (the interval ignores the variance between fold models).

    Examples:
        >>> [round(v, 3) for v in wilson_interval(0.5, 100)]
        [0.404, 0.596]
    """
    if n <= 0 or not math.isfinite(p):
        return (float("nan"), float("nan"))
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def spearman_interval(rho: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Fisher-z interval of a Spearman correlation on ``n`` pairs, with the Fieller, Hartley
    and Pearson (1957) standard error ``1.06 / sqrt(n - 3)``.

    Examples:
        >>> [round(v, 3) for v in spearman_interval(0.7, 500)]
        [0.649, 0.744]
    """
    if n <= 3 or not math.isfinite(rho):
        return (float("nan"), float("nan"))
    f = math.atanh(max(min(rho, 0.999999), -0.999999))
    half = z * 1.06 / math.sqrt(n - 3)
    return (math.tanh(f - half), math.tanh(f + half))


def majority_share(labels: Sequence[Any]) -> float:
    """The accuracy of always predicting the commonest label (a classifier's floor).

    Examples:
        >>> majority_share(["a", "b", "a", "a"])
        0.75
    """
    if not len(labels):
        return float("nan")
    return max(Counter(str(v) for v in labels).values()) / len(labels)


def metric_interval(metric: str, value: float, n: int, scale: float = 100.0) -> tuple[float, float]:
    """A 95% interval for one grid cell's ``metric`` (``accuracy``, ``pair_accuracy``,
    ``spearman``, on ``scale``: the grid reports x100) from ``n`` evaluated rows or pairs;
    ``(nan, nan)`` for metrics without one here (``v_measure``, retrieval)."""
    if metric in ("accuracy", "pair_accuracy", "recall@1", "recall@10"):
        lo, hi = wilson_interval(value / scale, n)
    elif metric == "spearman":
        lo, hi = spearman_interval(value / scale, n)
    else:
        return (float("nan"), float("nan"))
    return (lo * scale, hi * scale)
