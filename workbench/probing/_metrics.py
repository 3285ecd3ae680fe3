"""Probe metrics with bootstrap confidence intervals, vectorised over resamples.

A bootstrap resample is a row of counts (how often each row was drawn), so every metric is a
weighted sum over the rows computed for all resamples at once as one matrix product
``counts [n_boot, n] @ per_row [n, ...]``; AUROC and the median sort the rows once, not once per
resample. Each metric takes ``(y_true, y_pred_or_score, counts [b, n])`` and returns ``[b]``
values (``counts = ones [1, n]``: the full sample); ``with_ci`` turns that into a point estimate
and a percentile interval.
"""

from __future__ import annotations

import numpy as np

# Defined in workbench._geo (the lat/long figures use it too); probing re-exports it.
from .._geo import EARTH_RADIUS_KM as EARTH_RADIUS_KM
from .._geo import great_circle_km as great_circle_km

# The bootstrap lives in workbench.intervals (the leakage report uses it too); probing
# re-exports it.
from ..intervals import Bootstrap as Bootstrap
from ..intervals import Estimate as Estimate
from ..intervals import bootstrap as bootstrap
from ..intervals import counts_of as counts_of
from ..intervals import with_ci as with_ci

CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "auroc", "f1")
REGRESSION_METRICS = ("r2", "pearson_r", "mae")
GEO_METRICS = ("great_circle_km", "median_great_circle_km")


# --- classification: y [n] int labels, pred [n] int labels; w [b, n] counts -------------------


def accuracy(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w @ (y == pred)) / w.sum(axis=1)


def balanced_accuracy(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    correct = y == pred
    recalls = []
    for c in np.unique(y):
        in_class = y == c
        recalls.append((w @ (correct & in_class)) / np.maximum(w @ in_class, 1))
    return np.mean(recalls, axis=0)


def f1(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Binary F1 of the larger label; macro F1 for more classes."""
    classes = np.unique(y)
    targets = classes[-1:] if len(classes) == 2 else classes
    scores = []
    for c in targets:
        tp = w @ ((pred == c) & (y == c))
        fp = w @ ((pred == c) & (y != c))
        fn = w @ ((pred != c) & (y == c))
        scores.append(2 * tp / np.maximum(2 * tp + fp + fn, 1))
    return np.mean(scores, axis=0)


def auroc(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Binary AUROC from scores [n] (Mann-Whitney U, ties count half); NaN for one-class
    resamples. The rows are sorted once; each resample weighs the tie groups by its counts."""
    classes = np.unique(y)
    if len(classes) != 2:
        return np.full(len(w), np.nan)
    order = np.argsort(score, kind="stable")
    s, pos = score[order], (y == classes[1])[order]
    ws = w[:, order]
    wp, wn = ws * pos, ws * ~pos  # [b, n]
    starts = np.r_[0, np.nonzero(np.diff(s))[0] + 1]
    if len(starts) < len(s):  # tie groups of equal scores
        wp, wn = np.add.reduceat(wp, starts, axis=1), np.add.reduceat(wn, starts, axis=1)
    below = np.cumsum(wn, axis=1) - wn  # negatives strictly below each group
    u = (wp * (below + 0.5 * wn)).sum(axis=1)
    n_pos, n_neg = wp.sum(axis=1), wn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)


# --- regression: y [n, t], pred [n, t] ----------------------------------------------------------


def r2(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Coefficient of determination, averaged over targets."""
    n = w.sum(axis=1)[:, None]
    yc = y - y.mean(axis=0)  # centred once: the weighted variance loses no precision
    ss_res = w @ (y - pred) ** 2  # [b, t]
    ss_tot = w @ yc**2 - (w @ yc) ** 2 / n
    return (1 - ss_res / np.maximum(ss_tot, 1e-300)).mean(axis=1)


def pearson_r(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    n = w.sum(axis=1)[:, None]
    yc, pc = y - y.mean(axis=0), pred - pred.mean(axis=0)
    sy, sp = w @ yc, w @ pc
    num = w @ (yc * pc) - sy * sp / n
    var_y = w @ yc**2 - sy**2 / n
    var_p = w @ pc**2 - sp**2 / n
    den = np.sqrt(np.maximum(var_y, 0) * np.maximum(var_p, 0))
    return (num / np.maximum(den, 1e-300)).mean(axis=1)


def mae(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w @ np.abs(y - pred)).mean(axis=1) / w.sum(axis=1)


def mean_great_circle_km(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w @ great_circle_km(y, pred)) / w.sum(axis=1)


def median_great_circle_km(y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``np.median`` of each resample's distances, from one sort and cumulative counts."""
    dist = great_circle_km(y, pred)
    order = np.argsort(dist, kind="stable")
    d = dist[order]
    cum = np.cumsum(w[:, order].astype(np.float32), axis=1)  # [b, n]; counts: exact in float32
    total = cum[:, -1]
    lo = (cum >= np.floor((total + 1) / 2)[:, None]).argmax(axis=1)  # the ceil(N/2)-th value
    hi = (cum >= (np.floor(total / 2) + 1)[:, None]).argmax(axis=1)  # the (N/2 + 1)-th value
    return (d[lo] + d[hi]) / 2


def classification_report(
    y: np.ndarray, pred: np.ndarray, score: np.ndarray | None, boot: Bootstrap | None
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
    y: np.ndarray, pred: np.ndarray, boot: Bootstrap | None, geo: bool = False
) -> dict[str, Estimate]:
    """R², Pearson r and MAE (averaged over targets); great-circle km for (lat, lon).

    The sums behind R², r, MAE and the mean distance come from one product ``counts @ F`` per
    chunk of resamples (``F [n, 7t + 1]`` per-row terms), not one product per metric; the
    formulas are those of ``r2``, ``pearson_r``, ``mae`` and ``mean_great_circle_km``."""
    y2 = y.reshape(len(y), -1).astype(np.float64)
    p2 = pred.reshape(len(pred), -1).astype(np.float64)
    t = y2.shape[1]
    yc, pc, err = y2 - y2.mean(axis=0), p2 - p2.mean(axis=0), y2 - p2
    km = great_circle_km(y2, p2) if geo else np.zeros(len(y2))
    F = np.hstack([err**2, yc, yc**2, pc, pc**2, yc * pc, np.abs(err), km[:, None]])

    def stats(w: np.ndarray) -> np.ndarray:
        """``[b, 4]``: R², r, MAE, mean km of the resamples ``w [b, n]``."""
        s = w @ F
        n = w.sum(axis=1)[:, None]
        ss_res, sy, syy, sp, spp, syp, sae = (s[:, i * t : (i + 1) * t] for i in range(7))
        ss_tot = syy - sy**2 / n
        r2_ = (1 - ss_res / np.maximum(ss_tot, 1e-300)).mean(axis=1)
        den = np.sqrt(np.maximum(ss_tot, 0) * np.maximum(spp - sp**2 / n, 0))
        r_ = ((syp - sy * sp / n) / np.maximum(den, 1e-300)).mean(axis=1)
        mae_ = sae.mean(axis=1) / n[:, 0]
        return np.c_[r2_, r_, mae_, s[:, -1] / n[:, 0]]

    full = stats(np.ones((1, len(y2))))[0]
    names = ["r2", "pearson_r", "mae"] + (["great_circle_km"] if geo else [])
    if boot is None or boot.n_boot == 0:
        out = {k: Estimate(float(full[i]), float("nan"), float("nan")) for i, k in enumerate(names)}
    else:
        values = np.concatenate([stats(c.astype(np.float64, copy=False)) for c in boot.chunks])
        lo, hi = np.nanpercentile(values, [2.5, 97.5], axis=0)
        out = {k: Estimate(float(full[i]), float(lo[i]), float(hi[i])) for i, k in enumerate(names)}
    if geo:
        out["median_great_circle_km"] = with_ci(median_great_circle_km, y2, p2, boot)
    return out
