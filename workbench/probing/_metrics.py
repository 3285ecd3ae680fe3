"""Probe metrics with bootstrap confidence intervals, vectorised over resamples.

Each metric takes ``(y_true, y_pred_or_score)`` and a matrix of bootstrap row indices
``[n_boot, n]`` and returns ``(value, resampled_values [n_boot])``; ``with_ci`` turns that into a
point estimate and a percentile interval.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Defined in workbench._geo (the lat/long figures use it too); probing re-exports it.
from .._geo import EARTH_RADIUS_KM as EARTH_RADIUS_KM
from .._geo import great_circle_km as great_circle_km

CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "auroc", "f1")
REGRESSION_METRICS = ("r2", "pearson_r", "mae")
GEO_METRICS = ("great_circle_km", "median_great_circle_km")


@dataclass(frozen=True)
class Estimate:
    """A metric value with its bootstrap percentile interval."""

    value: float
    low: float
    high: float


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``[n_boot, n]`` row indices drawn with replacement (deterministic for a seed)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def with_ci(
    metric: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    y: np.ndarray,
    pred: np.ndarray,
    boot: np.ndarray,
    level: float = 0.95,
) -> Estimate:
    """Point estimate on all rows and a percentile CI over the bootstrap resamples."""
    full = metric(y, pred, np.arange(len(y))[None, :])[0]
    if boot.size == 0:
        return Estimate(float(full), float("nan"), float("nan"))
    values = metric(y, pred, boot)
    lo, hi = np.nanpercentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return Estimate(float(full), float(lo), float(hi))


# --- classification: y [n] int labels, pred [n] int labels -------------------------------------


def accuracy(y: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return (y == pred)[idx].mean(axis=1)


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> np.ndarray:
    correct = (y == pred)[idx]
    recalls = []
    for c in np.unique(y):
        in_class = (y == c)[idx]
        recalls.append((correct & in_class).sum(axis=1) / np.maximum(in_class.sum(axis=1), 1))
    return np.mean(recalls, axis=0)


def f1(y: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Binary F1 of the larger label; macro F1 for more classes."""
    classes = np.unique(y)
    targets = classes[-1:] if len(classes) == 2 else classes
    scores = []
    for c in targets:
        tp = ((pred == c) & (y == c))[idx].sum(axis=1)
        fp = ((pred == c) & (y != c))[idx].sum(axis=1)
        fn = ((pred != c) & (y == c))[idx].sum(axis=1)
        scores.append(2 * tp / np.maximum(2 * tp + fp + fn, 1))
    return np.mean(scores, axis=0)


def auroc(y: np.ndarray, score: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Binary AUROC from scores [n] (rank statistic, ties averaged); NaN for one-class resamples."""
    classes = np.unique(y)
    if len(classes) != 2:
        return np.full(len(idx), np.nan)
    pos = y == classes[1]
    s = score[idx]  # [b, n]
    p = pos[idx]
    order = np.argsort(s, axis=1, kind="stable")
    ranks = np.empty_like(s, dtype=np.float64)
    rows = np.arange(len(idx))[:, None]
    ranks[rows, order] = np.arange(1, s.shape[1] + 1)
    # average ranks of ties
    sorted_s = np.take_along_axis(s, order, axis=1)
    for b in np.nonzero((np.diff(sorted_s, axis=1) == 0).any(axis=1))[0]:
        _, inverse, counts = np.unique(s[b], return_inverse=True, return_counts=True)
        ends = np.cumsum(counts)
        ranks[b] = ((ends - counts + 1 + ends) / 2)[inverse]
    n_pos = p.sum(axis=1)
    n_neg = p.shape[1] - n_pos
    u = (ranks * p).sum(axis=1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


# --- regression: y [n, t], pred [n, t] ----------------------------------------------------------


def r2(y: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Coefficient of determination, averaged over targets."""
    yy, pp = y[idx], pred[idx]  # [b, n, t]
    ss_res = ((yy - pp) ** 2).sum(axis=1)
    ss_tot = ((yy - yy.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    return (1 - ss_res / np.maximum(ss_tot, 1e-300)).mean(axis=1)


def pearson_r(y: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> np.ndarray:
    yy, pp = y[idx], pred[idx]
    yc = yy - yy.mean(axis=1, keepdims=True)
    pc = pp - pp.mean(axis=1, keepdims=True)
    num = (yc * pc).sum(axis=1)
    den = np.sqrt((yc**2).sum(axis=1) * (pc**2).sum(axis=1))
    return (num / np.maximum(den, 1e-300)).mean(axis=1)


def mae(y: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.abs(y[idx] - pred[idx]).mean(axis=(1, 2))


def mean_great_circle_km(y: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return great_circle_km(y, pred)[idx].mean(axis=1)


def median_great_circle_km(y: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.median(great_circle_km(y, pred)[idx], axis=1)


def classification_report(
    y: np.ndarray, pred: np.ndarray, score: np.ndarray | None, boot: np.ndarray
) -> dict[str, Estimate]:
    """accuracy, balanced accuracy, F1 and (binary, with scores) AUROC."""
    out = {
        "accuracy": with_ci(accuracy, y, pred, boot),
        "balanced_accuracy": with_ci(balanced_accuracy, y, pred, boot),
        "f1": with_ci(f1, y, pred, boot),
    }
    if score is not None and len(np.unique(y)) == 2:
        out["auroc"] = with_ci(auroc, y, score, boot)
    return out


def regression_report(
    y: np.ndarray, pred: np.ndarray, boot: np.ndarray, geo: bool = False
) -> dict[str, Estimate]:
    """R², Pearson r and MAE (averaged over targets); great-circle km for (lat, lon)."""
    y2 = y.reshape(len(y), -1)
    p2 = pred.reshape(len(pred), -1)
    out = {
        "r2": with_ci(r2, y2, p2, boot),
        "pearson_r": with_ci(pearson_r, y2, p2, boot),
        "mae": with_ci(mae, y2, p2, boot),
    }
    if geo:
        out["great_circle_km"] = with_ci(mean_great_circle_km, y2, p2, boot)
        out["median_great_circle_km"] = with_ci(median_great_circle_km, y2, p2, boot)
    return out
