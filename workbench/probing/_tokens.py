"""Token-level probing: one row per word, its vector taken from its sub-tokens.

``token_dataset`` turns a store extracted with ``pooling="tokens"`` from a dataset with words
(CoNLL-U) into a view with the read interface ``sweep`` uses, so word-level probes (UPOS, ...)
run through the same sweep, controls and metrics as sentence-level ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from ..data import WordStrategy, align_word_labels
from ..errors import StoreSelectionError

STRATEGIES = ("first", "last", "mean")


class WordView:
    """Word-level rows over a token-level store (a ``StoreLike``, as ``ActivationStore`` is).

    Rows are words in store order; ``columns`` are the word-level columns plus ``word`` (the
    word form: the type for Hewitt & Liang control tasks) and ``sentence`` (the store row: the
    group that keeps a sentence's words in one fold). Vectors are read lazily, hook point by
    hook point, from the memory-mapped per-token arrays.
    """

    def __init__(
        self,
        store: Any,
        strategy: str,
        token_index: list[tuple[int, np.ndarray, np.ndarray]],
        columns: dict[str, np.ndarray],
        n_dropped: int,
    ) -> None:
        self._store = store
        self.strategy = strategy
        self._index = token_index  # per shard: (shard position, token ids [m], word id of each [m])
        self._columns = columns
        self.n_dropped = n_dropped
        self.path = store.path
        self.manifest = store.manifest
        self.hook_points = store.hook_points
        self.layers = store.layers
        self.pooling_names = [f"word_{strategy}"]

    def __len__(self) -> int:
        return len(self._columns["word"])

    @property
    def n_rows(self) -> int:
        return len(self)

    @property
    def d_model(self) -> int:
        return int(self._store.d_model)

    def row_index(self, rows: Any) -> np.ndarray:
        """``[n]`` word indices of a selection (None: all; a slice; indices, negative from the
        end)."""
        n = len(self)
        if rows is None:
            return np.arange(n)
        if isinstance(rows, slice):
            return np.arange(n)[rows]
        idx = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        bad = idx[(idx < -n) | (idx >= n)]
        if bad.size:
            raise StoreSelectionError(f"words {bad[:5].tolist()} do not exist: the view has {n}")
        return idx % n

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    def column(self, name: str) -> np.ndarray:
        if name not in self._columns:
            raise StoreSelectionError(
                f"word-level view has no column {name!r}; it has {self.columns}"
            )
        return self._columns[name]

    def hook_index(self, layers: Any, hook_points: Any) -> list[int]:
        return self._store.hook_index(layers, hook_points)

    def pooling(self, pooling: str) -> str:
        if pooling not in self.pooling_names:
            raise StoreSelectionError(
                f"pooling {pooling!r}: a word-level view has only {self.pooling_names}"
            )
        return pooling

    def get(
        self,
        pooling: str,
        *,
        layers: Any = None,
        hook_points: Sequence[str] | str | None = None,
        rows: Any = None,
    ) -> np.ndarray:
        """``[words, hook_points, d_model]`` word vectors (first/last sub-token or their mean),
        at ``layers`` or ``hook_points`` (default: every stored hook point)."""
        self.pooling(pooling)
        hooks = self._store.hook_index(layers, hook_points)
        n_words = len(self)
        out = np.zeros((n_words, len(hooks), self._store.d_model), dtype=np.float32)
        counts = np.zeros(n_words, dtype=np.float32)
        filename = self._store.pooling("tokens").filename
        for shard_pos, token_ids, word_ids in self._index:
            arr = self._store.shard_array(
                self._store.shards[shard_pos], filename
            )  # [hooks, tok, d]
            order = np.argsort(token_ids, kind="stable")
            block = np.asarray(arr[hooks][:, token_ids[order]], dtype=np.float32)  # [h, m, d]
            np.add.at(out, word_ids[order], np.moveaxis(block, 0, 1))
            np.add.at(counts, word_ids[order], 1.0)
        out /= np.maximum(counts, 1.0)[:, None, None]
        if rows is not None:
            out = out[self.row_index(rows)]
        return out


def token_dataset(store: Any, word_column: str = "upos", strategy: str = "first") -> WordView:
    """A word-level view of ``store`` for token-level probing.

    Args:
        store: an ``ActivationStore`` extracted with ``pooling`` including ``"tokens"`` from a
            dataset with words (e.g. a CoNLL-U file).
        word_column: the word-level label to keep (``upos``, ``xpos``, ``deprel``, ...); all
            word-level columns are kept, this one is checked.
        strategy: ``first``, ``last`` or ``mean`` sub-token of each word.

    Returns:
        A ``WordView``; words that lost every sub-token to truncation are dropped and counted in
        ``n_dropped``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r}: use one of {list(STRATEGIES)}")
    if "tokens" not in store.pooling_names:
        raise StoreSelectionError(
            f"{store.path} has no per-token vectors (poolings {store.pooling_names}): extract "
            "again with pooling='tokens' for token-level probing"
        )
    rows = store.rows
    if not rows or "words" not in rows[0]:
        raise StoreSelectionError(
            f"{store.path} was extracted from a dataset without words: token-level probing needs "
            "word annotations, e.g. a CoNLL-U file"
        )
    if word_column not in rows[0].get("word_columns", {}):
        raise StoreSelectionError(
            f"no word-level column {word_column!r}; there are {sorted(rows[0].get('word_columns', {}))}"
        )
    if store.manifest["extraction"].get("template"):
        raise StoreSelectionError("token-level probing needs a store extracted without a template")
    columns: dict[str, list[Any]] = {"word": [], "sentence": []}
    for name in rows[0]["word_columns"]:
        columns[name] = []
    index: list[tuple[int, np.ndarray, np.ndarray]] = []
    dropped = 0
    word_id = 0
    for shard_pos, shard in enumerate(store.shards):
        splits = store.shard_array(shard, "row_splits")
        offsets_all = store.shard_array(shard, "token_offsets")
        tok_ids: list[int] = []
        w_ids: list[int] = []
        for local in range(shard["stop"] - shard["start"]):
            row_id = shard["start"] + local
            row = rows[row_id]
            a, b = int(splits[local]), int(splits[local + 1])
            offsets = np.asarray(offsets_all[a:b]).tolist()  # [tokens, 2] (start, end)
            aligned = align_word_labels(row["word_spans"], offsets, cast(WordStrategy, strategy))
            for w, tokens in enumerate(aligned):
                toks = tokens if isinstance(tokens, list) else ([] if tokens < 0 else [tokens])
                if not toks:
                    dropped += 1
                    continue
                for t in toks:
                    tok_ids.append(a + t)
                    w_ids.append(word_id)
                columns["word"].append(row["words"][w])
                columns["sentence"].append(row_id)
                for name, values in row["word_columns"].items():
                    columns[name].append(values[w])
                word_id += 1
        index.append(
            (shard_pos, np.asarray(tok_ids, dtype=np.int64), np.asarray(w_ids, dtype=np.int64))
        )
    return WordView(store, strategy, index, {k: np.asarray(v) for k, v in columns.items()}, dropped)
