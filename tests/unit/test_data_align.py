"""align_word_labels: words (char spans) to tokens (char offsets)."""

from __future__ import annotations

import pytest

from workbench.data import align_word_labels, word_token_index
from workbench.errors import PoolingError

# "The city of Paris" with a BOS token and BPE tokens that carry the leading space:
# <s> | The | " city" | " of" | " Par" | "is"
TEXT = "The city of Paris"
WORDS = [(0, 3), (4, 8), (9, 11), (12, 17)]
OFFSETS = [(0, 0), (0, 3), (3, 8), (8, 11), (11, 15), (15, 17)]


def test_spans_match_the_text() -> None:
    assert [TEXT[s:e] for s, e in WORDS] == ["The", "city", "of", "Paris"]
    assert [TEXT[s:e] for s, e in OFFSETS[1:]] == ["The", " city", " of", " Par", "is"]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("first", [1, 2, 3, 4]),
        ("last", [1, 2, 3, 5]),
        ("mean", [[1], [2], [3], [4, 5]]),
    ],
)
def test_strategies(strategy: str, expected: list[object]) -> None:
    assert align_word_labels(WORDS, OFFSETS, strategy) == expected  # type: ignore[arg-type]


def test_default_strategy_is_first() -> None:
    assert align_word_labels(WORDS, OFFSETS) == [1, 2, 3, 4]


def test_truncated_words_and_special_tokens() -> None:
    # truncated after " of", then an EOS and padding with (0, 0) offsets
    offsets = [(0, 0), (0, 3), (3, 8), (8, 11), (0, 0), (0, 0)]
    assert align_word_labels(WORDS, offsets) == [1, 2, 3, -1]
    assert align_word_labels(WORDS, offsets, "last") == [1, 2, 3, -1]
    assert align_word_labels(WORDS, offsets, "mean") == [[1], [2], [3], []]


def test_whitespace_only_token_belongs_to_no_word() -> None:
    # "a  b": a lone-space token (1, 2) touches no word, the next " b" (2, 4) covers "b" (3, 4)
    assert align_word_labels([(0, 1), (3, 4)], [(0, 1), (1, 2), (2, 4)], "mean") == [[0], [2]]


def test_token_spanning_two_words_belongs_to_both() -> None:
    # "don't" with words "do" (0, 2) and "n't" (2, 5), one token "don" (0, 3) and "'t" (3, 5)
    assert align_word_labels([(0, 2), (2, 5)], [(0, 3), (3, 5)], "mean") == [[0], [0, 1]]
    assert align_word_labels([(0, 2), (2, 5)], [(0, 3), (3, 5)], "first") == [0, 0]


def test_unordered_offsets_and_sequences_of_lists() -> None:
    offsets = [[15, 17], [0, 3], [3, 8], [8, 11], [11, 15]]
    assert align_word_labels([list(w) for w in WORDS], offsets, "mean") == [[1], [2], [3], [0, 4]]


def test_unknown_strategy_lists_valid() -> None:
    with pytest.raises(PoolingError, match="first, last, mean"):
        align_word_labels(WORDS, OFFSETS, "max")  # type: ignore[arg-type]


def test_batch_helper_accepts_tensors() -> None:
    torch = pytest.importorskip("torch")
    offsets = torch.tensor([OFFSETS, [(0, 0), (0, 2), (2, 5), (0, 0), (0, 0), (0, 0)]])
    spans = [WORDS, [(0, 2), (3, 5)]]
    assert word_token_index(spans, offsets) == [[1, 2, 3, 4], [1, 2]]
    assert word_token_index(spans, offsets.numpy(), "mean")[1] == [[1], [2]]
    with pytest.raises(ValueError, match="same texts"):
        word_token_index(spans[:1], offsets)
