"""Probe metrics with bootstrap confidence intervals, vectorised over resamples.

A bootstrap resample is a row of counts (how often each row was drawn), so every metric is a
weighted sum over the rows computed for all resamples at once as one matrix product
``counts [n_boot, n] @ per_row [n, ...]``; AUROC and the median sort the rows once, not once per
resample. Each metric takes ``(y_true, y_pred_or_score, counts [b, n])`` and returns ``[b]``
values (``counts = ones [1, n]``: the full sample); ``with_ci`` turns that into a point estimate
and a percentile interval. The reports fuse the metrics of one task into one product per chunk
of resamples; the sorted metrics (AUROC, median) read the same counts as small integers
(``Bootstrap.int_chunks``): a fraction of the memory traffic, and exact sums.
"""

from __future__ import annotations

from collections.abc import Callable

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


from ..intervals import small_ints as _small_ints  # noqa: E402


def _running(g: np.ndarray) -> np.ndarray:
    """``[b, n + 1]`` running sums of the counts ``g [b, n]`` along the rows (column 0 is zero)
    in an integer dtype that holds twice the total."""
    total = int(g.sum(axis=1).max()) if g.size else 0
    out = np.zeros((g.shape[0], g.shape[1] + 1), dtype=np.min_scalar_type(2 * total + 1))
    np.cumsum(g, axis=1, out=out[:, 1:])
    return out


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
    return _auroc_ints(y, score, _small_ints(w))


def _auroc_ints(y: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``auroc`` of the resamples ``w [b, n]`` (integer counts).

    With the rows sorted by score, a positive row's rank ``R`` (the count of rows below its tie
    group plus half its group's) gives ``U = sum_pos w R - W_pos^2 / 2``: the positive-positive
    pairs add exactly ``W_pos^2 / 2``. ``2 U`` is an integer, so the sums are exact."""
    classes = np.unique(y)
    if len(classes) != 2:
        return np.full(len(w), np.nan)
    order = np.argsort(score, kind="stable")
    s = score[order]
    g = w[:, order]
    cum = _running(g)  # [b, n + 1]
    new = np.r_[True, s[1:] != s[:-1]]  # the first row of each tie group
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(s)]  # one past each group's last row
    pos = np.flatnonzero(y[order] == classes[1])  # sorted positions of the positive rows
    group = (np.cumsum(new) - 1)[pos]
    twice_rank = cum[:, starts[group]] + cum[:, ends[group]]  # [b, n_pos]: 2 R
    w_pos = g[:, pos]
    twice_sum = np.einsum("ij,ij->i", w_pos, twice_rank, dtype=np.int64)
    n_pos = w_pos.sum(axis=1, dtype=np.int64)
    n_neg = cum[:, -1].astype(np.int64) - n_pos
    u = (twice_sum - n_pos * n_pos) / 2.0
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
    return _median_ints(great_circle_km(y, pred), _small_ints(w))


def _median_ints(values: np.ndarray, w: np.ndarray, block: int = 64) -> np.ndarray:
    """``np.median`` of ``values [n]`` under each resample ``w [b, n]`` (integer counts).

    The rows are sorted once; per resample, running counts of blocks of ``block`` sorted rows
    find the block holding the ``ceil(N/2)``-th and ``(N/2 + 1)``-th values, and only that
    block's rows are summed one by one."""
    order = np.argsort(values, kind="stable")
    v = values[order]
    b, n = w.shape
    g = np.take(w, order, axis=1)  # [b, n] counts in sorted order
    full = n // block
    sums = g[:, : full * block].reshape(b, full, block).sum(axis=2, dtype=np.int32)
    if n > full * block:
        sums = np.c_[sums, g[:, full * block :].sum(axis=1, dtype=np.int32)]
    cum = np.cumsum(sums, axis=1, dtype=np.int64)  # [b, blocks]
    n_blocks, total, rows = cum.shape[1], cum[:, -1], np.arange(b)[:, None]
    lanes = np.arange(block)

    def kth(k: np.ndarray) -> np.ndarray:
        """Sorted position of each resample's ``k``-th value (1-based; 0 for empty ones)."""
        blk = np.minimum((cum < k[:, None]).sum(axis=1), n_blocks - 1)
        before = np.where(blk > 0, cum[rows[:, 0], blk - 1], 0)
        cols = blk[:, None] * block + lanes  # [b, block]; past the last row counts 0
        inside = np.where(cols < n, g[rows, np.minimum(cols, n - 1)], 0)
        inner = np.cumsum(inside, axis=1, dtype=np.int64) + before[:, None]
        return np.minimum(blk * block + (inner < k[:, None]).sum(axis=1), n - 1)

    return (v[kth((total + 1) // 2)] + v[kth(total // 2 + 1)]) / 2


def classification_report(
    y: np.ndarray, pred: np.ndarray, score: np.ndarray | None, boot: Bootstrap | None
) -> dict[str, Estimate]:
    """accuracy, balanced accuracy, F1 and (binary, with scores) AUROC.

    The sums behind accuracy, balanced accuracy and F1 come from one product ``counts @ F`` per
    chunk of resamples (``F [n, 1 + 3K]``: correct, and per class of ``y`` its true positives,
    rows and false positives); the formulas are those of ``accuracy``, ``balanced_accuracy``
    and ``f1``."""
    classes = np.unique(y)
    correct = y == pred
    K = len(classes)
    in_class = y[:, None] == classes[None]  # [n, K]
    F = np.hstack(
        [
            correct[:, None],
            in_class & correct[:, None],
            in_class,
            (pred[:, None] == classes) & ~in_class,
        ]
    ).astype(np.float64)
    targets = slice(K - 1, K) if K == 2 else slice(None)  # F1 of the larger label, or macro

    product = _products(F)

    def stats(w: np.ndarray) -> np.ndarray:
        """``[b, 3]``: accuracy, balanced accuracy and F1 of the resamples ``w [b, n]``."""
        s = product(w)
        tp, rows, fp = s[:, 1 : 1 + K], s[:, 1 + K : 1 + 2 * K], s[:, 1 + 2 * K :]
        balanced = (tp / np.maximum(rows, 1)).mean(axis=1)
        tp, fn, fp = tp[:, targets], (rows - tp)[:, targets], fp[:, targets]
        f1_ = (2 * tp / np.maximum(2 * tp + fp + fn, 1)).mean(axis=1)
        return np.c_[s[:, 0] / w.sum(axis=1), balanced, f1_]

    names = ["accuracy", "balanced_accuracy", "f1"]
    out = _fused(stats, names, len(y), boot)
    if score is not None and K == 2:
        out["auroc"] = _sorted_ci(lambda w: _auroc_ints(y, score, w), len(y), boot)
    return out


def _fused(
    stats: Callable[[np.ndarray], np.ndarray], names: list[str], n: int, boot: Bootstrap | None
) -> dict[str, Estimate]:
    """Point estimates and percentile CIs of the metrics ``stats(counts [b, n]) -> [b, m]``."""
    full = stats(np.ones((1, n)))[0]
    if boot is None or boot.n_boot == 0:
        return {
            k: Estimate(float(full[i]), float("nan"), float("nan")) for i, k in enumerate(names)
        }
    values = np.concatenate([stats(c) for c in boot.chunks])
    lo, hi = np.nanpercentile(values, [2.5, 97.5], axis=0)
    return {k: Estimate(float(full[i]), float(lo[i]), float(hi[i])) for i, k in enumerate(names)}


def _products(F: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``w -> w @ F`` (float64 result) in the precision of the counts ``w``: float32 chunks
    (large sweeps) multiply in float32, with no float64 copy of the counts and ``F`` cast once;
    exact for the 0/1 columns of classification, about 1e-6 relative for regression sums."""
    casts = {F.dtype: F}

    def product(w: np.ndarray) -> np.ndarray:
        if w.dtype not in casts:
            casts[w.dtype] = F.astype(w.dtype)
        return np.asarray(w @ casts[w.dtype], dtype=np.float64)

    return product


def _sorted_ci(
    metric: Callable[[np.ndarray], np.ndarray], n: int, boot: Bootstrap | None
) -> Estimate:
    """``with_ci`` of a sorted metric ``metric(counts [b, n] integers) -> [b]``."""
    full = metric(np.ones((1, n), dtype=np.uint8))[0]
    if boot is None or boot.n_boot == 0:
        return Estimate(float(full), float("nan"), float("nan"))
    values = np.concatenate([metric(c) for c in boot.int_chunks])
    lo, hi = np.nanpercentile(values, [2.5, 97.5])
    return Estimate(float(full), float(lo), float(hi))


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

    product = _products(F)

    def stats(w: np.ndarray) -> np.ndarray:
        """``[b, 4]``: R², r, MAE, mean km of the resamples ``w [b, n]``."""
        s = product(w)
        n = w.sum(axis=1)[:, None]
        ss_res, sy, syy, sp, spp, syp, sae = (s[:, i * t : (i + 1) * t] for i in range(7))
        ss_tot = syy - sy**2 / n
        r2_ = (1 - ss_res / np.maximum(ss_tot, 1e-300)).mean(axis=1)
        den = np.sqrt(np.maximum(ss_tot, 0) * np.maximum(spp - sp**2 / n, 0))
        r_ = ((syp - sy * sp / n) / np.maximum(den, 1e-300)).mean(axis=1)
        mae_ = sae.mean(axis=1) / n[:, 0]
        return np.c_[r2_, r_, mae_, s[:, -1] / n[:, 0]]

    names = ["r2", "pearson_r", "mae"] + (["great_circle_km"] if geo else [])
    out = _fused(stats, names, len(y2), boot)
    if geo:
        out["median_great_circle_km"] = _sorted_ci(lambda w: _median_ints(km, w), len(y2), boot)
    return out
