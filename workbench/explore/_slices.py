"""Subsets of rows by metadata, and a probe's metrics per slice."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np


def filter_rows(
    columns: Mapping[str, Sequence[Any]],
    *,
    equals: Mapping[str, Collection[Any]] | None = None,
    ranges: Mapping[str, tuple[float | None, float | None]] | None = None,
) -> np.ndarray:
    """``[n]`` boolean mask of the rows that pass every filter.

    Args:
        columns: the metadata columns by name, each ``[n]``.
        equals: categorical filters: ``{"country": ["France", "Italy"]}`` keeps rows whose
            value is one of those (compared as strings, so ``1`` and ``np.int64(1)`` match).
        ranges: numeric filters ``{"latitude": (lo, hi)}``, inclusive; None leaves a side open.
            Rows whose value is not a number fail a range filter.

    Raises:
        KeyError: a filter names a column that is not in ``columns`` (the columns are listed).
    """
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns have different lengths {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    keep = np.ones(n, dtype=bool)
    for name in [*(equals or {}), *(ranges or {})]:
        if name not in columns:
            raise KeyError(f"no column {name!r} to filter on; the columns are {list(columns)}")
    for name, allowed in (equals or {}).items():
        wanted = {str(v) for v in allowed}
        keep &= np.fromiter((str(v) in wanted for v in columns[name]), bool, n)
    for name, (lo, hi) in (ranges or {}).items():
        values = np.array([_number(v) for v in columns[name]], dtype=np.float64)
        ok = np.isfinite(values)
        if lo is not None:
            ok &= values >= lo
        if hi is not None:
            ok &= values <= hi
        keep &= ok
    return keep


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def slice_metrics(
    true: Sequence[Any],
    pred: Sequence[Any],
    groups: Sequence[Any],
    *,
    evaluated: Sequence[bool] | None = None,
) -> Any:
    """Accuracy of predictions per slice (one value of ``groups``), with the slice size and a
    95% Wilson interval; the slices sorted from worst to best, then the overall row.

    Args:
        true: ``[n]`` labels.
        pred: ``[n]`` (out-of-fold) predictions.
        groups: ``[n]`` the slicing column (country, template, ...).
        evaluated: ``[n]`` which rows were predicted (default all): held-out rows only when the
            probe was fitted on a split.

    Returns:
        A DataFrame: ``slice, n, correct, accuracy, low, high``.
    """
    import pandas as pd

    from ..evaluation import wilson_interval

    t, p, g = (np.asarray(a, dtype=object) for a in (true, pred, groups))
    if not len(t) == len(p) == len(g):
        raise ValueError(
            f"true, pred and groups have {len(t)}, {len(p)} and {len(g)} rows: pass one value "
            "per row"
        )
    ok = np.ones(len(t), bool) if evaluated is None else np.asarray(evaluated, bool)
    right = np.array([str(a) == str(b) for a, b in zip(t, p, strict=True)], dtype=bool)
    rows = []
    frame = pd.DataFrame({"slice": [str(v) for v in g[ok]], "right": right[ok]})
    for name, part in frame.groupby("slice", sort=False):
        rows.append(_row(str(name), part["right"].to_numpy(), wilson_interval))
    rows.sort(key=lambda r: (r["accuracy"], r["slice"]))
    rows.append(_row("(all)", right[ok], wilson_interval))
    return pd.DataFrame(rows, columns=["slice", "n", "correct", "accuracy", "low", "high"])


def _row(name: str, right: np.ndarray, interval: Any) -> dict[str, Any]:
    n, k = len(right), int(right.sum())
    acc = k / n if n else float("nan")
    lo, hi = interval(acc, n)
    return {"slice": name, "n": n, "correct": k, "accuracy": acc, "low": lo, "high": hi}
