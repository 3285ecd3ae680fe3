"""``StoreLike``: what sweeps, generalisation matrices and projections read from a store.

``ActivationStore`` (a run folder) implements it, and so does ``probing.WordView`` (word vectors
over a store's per-token states); any object with these members can be swept or projected.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class StoreLike(Protocol):
    """Rows of labelled vectors at named hook points, read by pooling.

    Attributes:
        path: the folder the vectors come from (results and caches are keyed by it).
        manifest: the run's manifest (``identity``, ``model``, ``extraction``, ...).
        hook_points: the stored hook point names, in forward order.
        layers: ``{residual layer: hook point}`` for the hook points that are residual layers.
        pooling_names: the poolings that :meth:`get` reads.
    """

    path: Path
    manifest: dict[str, Any]
    hook_points: list[str]
    layers: dict[int, str]

    @property
    def pooling_names(self) -> list[str]:
        """The poolings that :meth:`get` reads."""
        ...

    @property
    def n_rows(self) -> int:
        """Rows in the store."""
        ...

    @property
    def d_model(self) -> int:
        """Width of each stored vector."""
        ...

    @property
    def columns(self) -> list[str]:
        """Names of the label columns."""
        ...

    def __len__(self) -> int: ...

    def column(self, name: str) -> Any:
        """The values of a label column, one per row."""
        ...

    def hook_index(self, layers: Any, hook_points: Sequence[str] | str | None) -> list[int]:
        """Positions in ``hook_points`` of the selected layers or hook points (None and None: all);
        raises ``StoreSelectionError`` naming what is held."""
        ...

    def row_index(self, rows: Any) -> np.ndarray:
        """``[n]`` row indices of a selection (None: all rows; a slice; indices, negative from
        the end); raises ``StoreSelectionError`` for a row that does not exist."""
        ...

    def pooling(self, name: str) -> Any:
        """The pooling ``name``; raises ``StoreSelectionError`` naming those held."""
        ...

    def get(
        self,
        pooling: str,
        *,
        layers: Any = None,
        hook_points: Sequence[str] | str | None = None,
        rows: Any = None,
    ) -> np.ndarray:
        """``[rows, hook_points, d_model]`` vectors."""
        ...


__all__ = ["StoreLike"]
