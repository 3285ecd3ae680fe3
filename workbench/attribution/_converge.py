"""Integrated gradients until they converge: raise ``n_steps`` until the completeness error
(``Attribution.relative_delta``) is under a tolerance, or give up at a step budget."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import TypeVar

from ._core import Attribution

A = TypeVar("A", Attribution, Sequence[Attribution])


def worst_delta(result: Attribution | Sequence[Attribution]) -> float:
    """The largest ``relative_delta`` of one attribution or of several (a similarity pair)."""
    items = [result] if isinstance(result, Attribution) else list(result)
    return max(a.relative_delta for a in items)


def attribute_until_converged(
    attribute: Callable[[int], A],
    *,
    n_steps: int = 32,
    max_steps: int = 512,
    tolerance: float = 0.05,
) -> A:
    """Call ``attribute(n_steps)``, doubling ``n_steps`` until every relative convergence delta
    is below ``tolerance`` or ``max_steps`` is reached.

    The result keeps its ``n_steps`` and ``delta``: when ``worst_delta(result) >= tolerance``
    the budget ran out and the map is unreliable (the caller says so). The library's own
    "did not converge" warning is silenced for the intermediate tries and raised once, for the
    final result, when it did not converge.

    Examples:
        >>> from functools import partial  # doctest: +SKIP
        >>> attr = attribute_until_converged(
        ...     lambda n: attribute_next_token(lm, "The capital of France is", " Paris",
        ...                                    n_steps=n))  # doctest: +SKIP
        >>> attr.n_steps, attr.relative_delta  # doctest: +SKIP
    """
    if n_steps < 2 or max_steps < n_steps:
        raise ValueError(
            f"n_steps={n_steps}, max_steps={max_steps}: use 2 <= n_steps <= "
            "max_steps (e.g. 32 and 512)"
        )
    steps = n_steps
    while True:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = attribute(steps)
        if worst_delta(result) < tolerance or steps >= max_steps:
            break
        steps = min(2 * steps, max_steps)
    if worst_delta(result) >= tolerance:
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result
