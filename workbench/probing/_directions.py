"""One reading of "a direction in model space": a vector, a binary probe's ``[1, d_model]`` row, or
a fitted probe (its ``directions_``), checked and unit-normalised. Steering, probe-axis
projections and probe attributions all take directions this way."""

from __future__ import annotations

from typing import Any

import numpy as np


def unit_direction(
    direction: Any,
    d_model: int | None = None,
    *,
    where: str = "direction",
    error: type[Exception] = ValueError,
) -> np.ndarray:
    """A unit ``[d_model]`` float64 vector.

    Args:
        direction: ``[d_model]`` or ``[1, d_model]`` (numpy, torch or a list), or a fitted probe.
        d_model: the width it must have (None: any).
        where: how error messages name it (``"directions[12]"``).
        error: the exception class to raise (callers keep their own error types).

    Raises:
        error: an unfitted probe, None, a shape other than ``[d_model]``, or a zero / non-finite
            norm.
    """
    vec = direction
    if hasattr(direction, "fit"):  # a probe: it must be fitted
        try:
            vec = direction.directions_
        except (AttributeError, ValueError) as exc:
            raise error(
                f"{type(direction).__name__} is not fitted or has no directions_: fit the probe "
                f"first, or pass its direction (a [d_model] vector) as {where}"
            ) from exc
    if vec is None:
        raise error(f"{where} is None: pass a fitted probe or a [d_model] vector")
    if hasattr(vec, "detach"):
        vec = vec.detach().cpu().numpy()
    vec = np.asarray(vec, dtype=np.float64)
    if vec.ndim == 2 and vec.shape[0] == 1:
        vec = vec[0]  # a binary probe's directions_ [1, d_model]
    if vec.ndim != 1 or (d_model is not None and vec.shape[0] != d_model):
        expected = "[d_model]" + (f" = ({d_model},)" if d_model is not None else "")
        raise error(
            f"{where} has shape {vec.shape}: expected {expected}, one vector of the model and "
            "layer it is used on (for a multi-class probe choose a class, e.g. "
            "probe.directions_[k])"
        )
    norm = float(np.linalg.norm(vec))
    if not np.isfinite(norm) or norm == 0.0:
        raise error(f"{where} has norm {norm}: it must be finite and non-zero")
    return vec / norm
