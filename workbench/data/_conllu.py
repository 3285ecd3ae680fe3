"""Read CoNLL-U treebanks: one row per sentence, with words, their spans and word-level tags."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetFormatError, EmptyDatasetError
from ._dataset import TextDataset
from ._tables import check_limit, check_path, read_utf8

#: Word-level columns read from each word line, in CoNLL-U field order.
WORD_COLUMNS: tuple[str, ...] = ("lemma", "upos", "xpos", "head", "deprel")

_FIELDS = "ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC"


@dataclass
class _Token:
    """A surface token: one word, or a multiword token (``1-2``) covering several words."""

    form: str
    space_after: bool
    words: list[int] = field(default_factory=list)  # indices into the sentence's words
    last_id: int = 0  # for a multiword token, the id of its last word


@dataclass
class _Sentence:
    text: str | None = None
    sent_id: str | None = None
    tokens: list[_Token] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    tags: dict[str, list[str | int | None]] = field(
        default_factory=lambda: {c: [] for c in WORD_COLUMNS}
    )


def _parse(text: str, path: Path, limit: int | None) -> Iterator[_Sentence]:
    """Yield sentences (those with at least one word) in file order."""
    sent = _Sentence()
    n_sentences = 0
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            if sent.words:
                yield sent
                n_sentences += 1
                if limit is not None and n_sentences >= limit:
                    return
            sent = _Sentence()
            continue
        if line.startswith("#"):
            key, sep, value = line[1:].partition("=")
            if sep and key.strip() in ("text", "sent_id"):
                setattr(sent, key.strip(), value.strip())
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise DatasetFormatError(
                f"{path} line {lineno}: expected 10 tab-separated fields ({_FIELDS}), found "
                f"{len(cols)}: is this a CoNLL-U file (spaces instead of tabs?)"
            )
        token_id, form, misc = cols[0], cols[1], cols[9]
        space_after = "SpaceAfter=No" not in misc.split("|")
        try:
            if "." in token_id:  # empty node (enhanced dependencies): not a word
                continue
            if "-" in token_id:  # multiword token: its words follow on the next lines
                last = int(token_id.split("-")[1])
                sent.tokens.append(_Token(form, space_after, last_id=last))
                continue
            word_id = int(token_id)
            head = None if cols[6] == "_" else int(cols[6])
        except ValueError:
            raise DatasetFormatError(
                f"{path} line {lineno}: ID {token_id!r} or HEAD {cols[6]!r} is not a number "
                "(IDs are 1, 2, ... or ranges 1-2 or empty nodes 1.1; HEAD is a word id or _)"
            ) from None
        open_mwt = sent.tokens[-1] if sent.tokens and sent.tokens[-1].last_id >= word_id else None
        if open_mwt is None:
            sent.tokens.append(_Token(form, space_after))
            open_mwt = sent.tokens[-1]
        open_mwt.words.append(len(sent.words))
        sent.words.append(form)
        for name, tag in zip(WORD_COLUMNS, (cols[2], cols[3], cols[4], head, cols[7]), strict=True):
            sent.tags[name].append(tag)
    if sent.words:
        yield sent


def _find_tokens(text: str, forms: list[str]) -> list[tuple[int, int]] | None:
    """Spans of ``forms`` found in order in ``text`` with only whitespace between; else None."""
    spans = []
    cursor = 0
    for form in forms:
        while cursor < len(text) and text[cursor].isspace():
            cursor += 1
        if not text.startswith(form, cursor):
            return None
        spans.append((cursor, cursor + len(form)))
        cursor += len(form)
    return spans


def _join_tokens(tokens: list[_Token]) -> tuple[str, list[tuple[int, int]]]:
    """The text built from token forms and SpaceAfter, with each token's span."""
    parts: list[str] = []
    spans = []
    cursor = 0
    for i, token in enumerate(tokens):
        spans.append((cursor, cursor + len(token.form)))
        parts.append(token.form)
        cursor += len(token.form)
        if token.space_after and i < len(tokens) - 1:
            parts.append(" ")
            cursor += 1
    return "".join(parts), spans


def _layout(sent: _Sentence) -> tuple[str, list[tuple[int, int]], bool]:
    """The sentence text, each word's span in it, and whether the text had to be rebuilt.

    A word's span is its own characters when its token is a single word, or a multiword token
    whose words spell it (``don't`` = ``do`` + ``n't``); otherwise (``del`` = ``de`` + ``el``)
    every word of the token gets the token's span.
    """
    forms = [t.form for t in sent.tokens]
    token_spans = None if sent.text is None else _find_tokens(sent.text, forms)
    rebuilt = sent.text is not None and token_spans is None
    if token_spans is None:
        text, token_spans = _join_tokens(sent.tokens)
    else:
        text = sent.text or ""
    word_spans: list[tuple[int, int]] = []
    for token, (start, end) in zip(sent.tokens, token_spans, strict=True):
        pieces = [sent.words[i] for i in token.words]
        if "".join(pieces) == token.form:
            for piece in pieces:
                word_spans.append((start, start + len(piece)))
                start += len(piece)
        else:
            word_spans.extend((start, end) for _ in pieces)
    return text, word_spans, rebuilt


def read_conllu(
    path: str | os.PathLike[str], *, limit: int | None = None, name: str | None = None
) -> TextDataset:
    """Read a CoNLL-U file: one row per sentence, with words and word-level annotations.

    The text is the ``# text =`` comment when the words can be found in it in order, else the
    words joined by spaces except where MISC says ``SpaceAfter=No`` (a warning counts such
    sentences). Multiword-token lines (``1-2``) and empty nodes (``1.1``) are not words.

    Args:
        path: the ``.conllu`` file (UTF-8).
        limit: read only the first ``limit`` sentences.
        name: dataset name (default: the file stem).

    Returns:
        A TextDataset with ``columns["sent_id"]``, ``words`` and ``word_spans``
        (``[n_sentences][n_words]``, ``text[start:end]`` is the word) and ``word_columns``
        ``lemma``, ``upos``, ``xpos``, ``head`` (int, 0 = root) and ``deprel``.

    Raises:
        DatasetNotFoundError: the file does not exist.
        DatasetEncodingError: the file is not UTF-8 (the message gives the line).
        DatasetFormatError: a word line without 10 tab-separated fields, or a non-numeric ID.
        EmptyDatasetError: the file holds no sentences.
    """
    p = check_path(path)
    check_limit(limit)
    sentences = list(_parse(read_utf8(p), p, limit))
    if not sentences:
        raise EmptyDatasetError(
            f"{p} holds no sentences: CoNLL-U has one word per line (10 tab-separated fields) "
            "and a blank line after each sentence"
        )
    layouts = [_layout(s) for s in sentences]
    n_rebuilt = sum(rebuilt for _, _, rebuilt in layouts)
    if n_rebuilt:
        warnings.warn(
            f"{p}: in {n_rebuilt} sentence(s) the words do not match the '# text =' comment; "
            "their text was rebuilt from the words and SpaceAfter=No",
            UserWarning,
            stacklevel=2,
        )
    return TextDataset(
        name=name or p.stem,
        texts=[text for text, _, _ in layouts],
        columns={"sent_id": [s.sent_id for s in sentences]},
        source=str(p),
        words=[s.words for s in sentences],
        word_spans=[spans for _, spans, _ in layouts],
        word_columns={c: [s.tags[c] for s in sentences] for c in WORD_COLUMNS},
    )
