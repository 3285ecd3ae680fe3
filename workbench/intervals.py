"""Uncertainty and baselines for scores (embedding grids, probes, leakage reports, the
dashboard): Wilson intervals for accuracies, Fisher-z intervals for Spearman correlations,
percentile bootstrap intervals vectorised over resamples, the majority-class baseline. It
imports nothing of workbench, so any layer (viz included) may use it.

A bootstrap resample is a row of counts (how often each row was drawn), so a metric that is a
weighted sum over rows is computed for all resamples at once as one matrix product
``counts [n_boot, n] @ per_row [n, ...]``. Each metric takes ``(y, pred, counts [b, n])`` and
returns ``[b]`` values (``counts = ones [1, n]``: the full sample); ``with_ci`` turns that into
a point estimate and a percentile interval."""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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


@dataclass(frozen=True)
class Estimate:
    """A metric value with its bootstrap percentile interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class Bootstrap:
    """``n_boot`` resamples of ``n`` rows as count matrices, drawn once and shared by every
    metric, layer and label set of a sweep.

    Attributes:
        n: rows per resample.
        chunks: ``[c, n]`` counts (each row sums to ``n``), ``n_boot`` rows in all, in chunks
            that bound the memory of the products (float32 when float64 would exceed 128 MB).
    """

    n: int
    chunks: tuple[np.ndarray, ...]

    @property
    def n_boot(self) -> int:
        """The number of resamples."""
        return sum(len(c) for c in self.chunks)

    @functools.cached_property
    def int_chunks(self) -> tuple[np.ndarray, ...]:
        """The ``chunks`` in the smallest integer dtype that holds the counts (what sorted
        metrics gather and sum: a fraction of the memory traffic of floats, and exact)."""
        return tuple(small_ints(c) for c in self.chunks)


def small_ints(w: np.ndarray) -> np.ndarray:
    """Counts ``w [b, n]`` in the smallest unsigned integer dtype that holds them."""
    top = int(w.max()) if w.size else 0
    return np.asarray(w, dtype=np.min_scalar_type(top))


def bootstrap(n: int, n_boot: int, seed: int, max_cells: int = 8_000_000) -> Bootstrap:
    """``n_boot`` resamples of ``n`` rows drawn with replacement (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    size = max(1, max_cells // max(n, 1))
    # float64 (what the products use) unless that would hold over 128 MB
    dtype = np.float64 if n * n_boot <= 16_000_000 else np.float32
    chunks = []
    for start in range(0, n_boot, size):
        c = min(size, n_boot - start)
        idx = rng.integers(0, n, size=(c, n)) + (np.arange(c) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=c * n).reshape(c, n)
        chunks.append(counts.astype(dtype))
    return Bootstrap(n, tuple(chunks))


def counts_of(idx: np.ndarray, n: int) -> np.ndarray:
    """``[b, n]`` float64 counts of explicit resample indices ``idx [b, n_draws]``."""
    b = len(idx)
    flat = (np.asarray(idx) + (np.arange(b) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def with_ci(
    metric: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    y: np.ndarray,
    pred: np.ndarray,
    boot: Bootstrap | None,
    level: float = 0.95,
) -> Estimate:
    """Point estimate on all rows and a percentile CI over the bootstrap resamples."""
    full = metric(y, pred, np.ones((1, len(y))))[0]
    if boot is None or boot.n_boot == 0:
        return Estimate(float(full), float("nan"), float("nan"))
    values = np.concatenate(
        [metric(y, pred, c.astype(np.float64, copy=False)) for c in boot.chunks]
    )
    lo, hi = np.nanpercentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return Estimate(float(full), float(lo), float(hi))
