"""A selection of rows as a table (text, coordinates, metadata, scores), written to CSV or
Parquet."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = ("csv", "parquet")


def _plain(v: Any) -> Any:
    """NumPy scalars as Python values (``1``, not ``np.int64(1)``)."""
    return v.item() if isinstance(v, np.generic) else v


def selection_frame(
    rows: Sequence[int],
    texts: Sequence[str],
    *,
    coords: Any = None,
    columns: Mapping[str, Sequence[Any]] | None = None,
    scores: Mapping[str, Sequence[float] | np.ndarray] | None = None,
) -> Any:
    """One row per selected item: ``row``, ``text``, ``x``/``y`` (``z``), then ``columns`` and
    ``scores`` (each ``[n]`` over all items, indexed by ``rows``), values as plain Python.

    Args:
        rows: ``[m]`` selected row indices.
        texts: ``[n]`` all texts.
        coords: ``[n, 2]`` or ``[n, 3]`` projected coordinates of all rows (or None).
        columns: metadata columns ``[n]`` by name.
        scores: probe scores ``[n]`` by name.
    """
    import pandas as pd

    idx = np.asarray(rows, dtype=np.int64)
    out: dict[str, Any] = {"row": idx, "text": [str(texts[i]) for i in idx]}
    if coords is not None:
        xy = np.asarray(coords, dtype=np.float64)
        for j, axis in enumerate("xyz"[: xy.shape[1]]):
            out[axis] = xy[idx, j]
    for name, values in {**(columns or {}), **(scores or {})}.items():
        out[name] = [_plain(values[i]) for i in idx]
    return pd.DataFrame(out)


def export_selection(
    frame: Any, path: str | os.PathLike[str] | None = None, *, format: str | None = None
) -> bytes:
    """``frame`` (``selection_frame``) as CSV or Parquet bytes, also written to ``path`` when
    given (the format from its suffix, or ``format``).

    Raises:
        ValueError: an unknown format (the valid ones are listed).
    """
    fmt = (format or (Path(path).suffix.lstrip(".") if path is not None else "csv")).lower()
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: use one of {list(FORMATS)} (or a .csv/.parquet path)")
    buf = io.BytesIO()
    if fmt == "csv":
        buf.write(frame.to_csv(index=False).encode())
    else:
        frame.to_parquet(buf, index=False)
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data
