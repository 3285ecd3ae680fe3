"""The in-memory dataset every loader returns and every extraction reads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ColumnNotFoundError, EmptyDatasetError


@dataclass(frozen=True)
class TextDataset:
    """Texts plus aligned label/metadata columns (and, for treebanks, word-level annotations).

    Attributes:
        name: short name (``"cities"``, a file stem, ...).
        texts: one string per row, ``[n_rows]``.
        columns: label and metadata columns, each a list of length ``n_rows`` holding
            JSON-serialisable scalars.
        source: where the rows came from (path, built-in recipe, hub id).
        words: optional word segmentation, ``[n_rows][n_words]`` strings.
        word_spans: optional character spans of ``words`` inside ``texts``, ``[n_rows][n_words]``
            ``(start, end)`` pairs.
        word_columns: optional word-level labels, each ``[n_rows][n_words]`` (e.g. ``upos``).

    Examples:
        >>> ds = TextDataset("toy", ["a b", "c"], {"label": [0, 1]})
        >>> len(ds), ds.column("label")
        (2, [0, 1])
    """

    name: str
    texts: list[str]
    columns: dict[str, list[Any]] = field(default_factory=dict)
    source: str = ""
    words: list[list[str]] | None = None
    word_spans: list[list[tuple[int, int]]] | None = None
    word_columns: dict[str, list[list[Any]]] | None = None

    def __post_init__(self) -> None:
        if len(self.texts) == 0:
            raise EmptyDatasetError(
                f"dataset {self.name!r} ({self.source or 'no source'}) has no rows: "
                "check the file, the filter or the split you asked for"
            )
        for name, values in self.columns.items():
            if len(values) != len(self.texts):
                raise ValueError(
                    f"column {name!r} has {len(values)} values for {len(self.texts)} texts: "
                    "every column must have one value per text"
                )

    def __len__(self) -> int:
        return len(self.texts)

    def column(self, name: str) -> list[Any]:
        """One label/metadata column; the error lists the columns there are."""
        if name not in self.columns:
            raise ColumnNotFoundError(
                f"dataset {self.name!r} has no column {name!r}; its columns are "
                f"{sorted(self.columns)}"
            )
        return self.columns[name]

    def fingerprint(self) -> str:
        """sha256 over texts and columns (order-sensitive): identifies the data in manifests."""
        h = hashlib.sha256()
        for t in self.texts:
            h.update(t.encode("utf-8"))
            h.update(b"\x00")
        h.update(json.dumps(self.columns, sort_keys=True, default=str).encode("utf-8"))
        if self.words is not None:
            h.update(json.dumps(self.words).encode("utf-8"))
        return h.hexdigest()

    def select(self, indices: Sequence[int]) -> TextDataset:
        """A new dataset with the given rows, in the given order."""
        idx = list(indices)
        return TextDataset(
            name=self.name,
            texts=[self.texts[i] for i in idx],
            columns={k: [v[i] for i in idx] for k, v in self.columns.items()},
            source=self.source,
            words=None if self.words is None else [self.words[i] for i in idx],
            word_spans=None if self.word_spans is None else [self.word_spans[i] for i in idx],
            word_columns=None
            if self.word_columns is None
            else {k: [v[i] for i in idx] for k, v in self.word_columns.items()},
        )

    def head(self, n: int) -> TextDataset:
        """The first ``n`` rows."""
        return self.select(range(min(n, len(self))))
