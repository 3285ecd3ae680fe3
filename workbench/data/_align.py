"""Map words (character spans) to the model tokens that cover them (tokenizer offsets)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any, Literal

from ..errors import PoolingError

WordStrategy = Literal["first", "last", "mean"]

#: Valid ``strategy`` values of :func:`align_word_labels`.
STRATEGIES: tuple[str, ...] = ("first", "last", "mean")

Span = tuple[int, int] | Sequence[int]


def align_word_labels(
    word_spans: Sequence[Span], token_offsets: Sequence[Span], strategy: WordStrategy = "first"
) -> list[list[int] | int]:
    """For each word, the index of its first or last sub-token, or all of them.

    A token belongs to a word when their character ranges overlap, so a BPE token that carries
    the leading space (``(3, 8)`` = ``" city"``) belongs to the word ``(4, 8)``. Special tokens
    (empty offsets such as ``(0, 0)``) belong to no word.

    Args:
        word_spans: ``[n_words]`` ``(start, end)`` character spans of one text's words.
        token_offsets: ``[n_tokens]`` ``(start, end)`` character offsets of its tokens, as the
            tokenizer returns with ``return_offsets_mapping=True``.
        strategy: ``"first"`` or ``"last"`` give one token index per word; ``"mean"`` gives the
            list of all the word's token indices (callers average over them).

    Returns:
        ``[n_words]`` token indices (``-1`` for a word without tokens, e.g. truncated away), or
        for ``"mean"`` lists of indices (``[]`` for such a word).

    Raises:
        PoolingError: an unknown ``strategy``.

    Examples:
        >>> align_word_labels([(0, 3), (4, 8)], [(0, 0), (0, 3), (3, 6), (6, 8)])
        [1, 2]
        >>> align_word_labels([(0, 3), (4, 8)], [(0, 3), (3, 6), (6, 8)], "mean")
        [[0], [1, 2]]
    """
    if strategy not in STRATEGIES:
        raise PoolingError(
            f"unknown word alignment strategy {strategy!r}; valid: {', '.join(STRATEGIES)}"
        )
    tokens = sorted((s, e, i) for i, (s, e) in enumerate(_pairs(token_offsets)) if e > s)
    starts = [s for s, _, _ in tokens]
    result: list[list[int] | int] = []
    for ws, we in _pairs(word_spans):
        # tokens starting before the word ends, scanned back while they end after it starts
        j = bisect_left(starts, we) - 1
        covering = []
        while j >= 0 and tokens[j][1] > ws:
            covering.append(tokens[j][2])
            j -= 1
        covering.sort()
        if strategy == "mean":
            result.append(covering)
        elif not covering:
            result.append(-1)
        else:
            result.append(covering[0] if strategy == "first" else covering[-1])
    return result


def word_token_index(
    word_spans: Sequence[Sequence[Span]], offsets: Any, strategy: WordStrategy = "first"
) -> list[list[list[int] | int]]:
    """:func:`align_word_labels` over a batch.

    Args:
        word_spans: ``[batch][n_words]`` spans, e.g. ``dataset.word_spans[i:j]``.
        offsets: ``[batch, n_tokens, 2]`` offsets: nested lists, a numpy array or a tensor
            (the tokenizer's ``offset_mapping``); padding has ``(0, 0)`` and is ignored.
        strategy: as in :func:`align_word_labels`.

    Returns:
        ``[batch][n_words]`` token indices (or index lists for ``"mean"``).
    """
    rows = offsets.tolist() if hasattr(offsets, "tolist") else offsets
    if len(rows) != len(word_spans):
        raise ValueError(
            f"{len(word_spans)} rows of word spans but {len(rows)} rows of offsets: pass the "
            "same texts to both"
        )
    return [align_word_labels(w, o, strategy) for w, o in zip(word_spans, rows, strict=True)]


def _pairs(spans: Sequence[Span]) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in spans]
