"""Search rows by substring or regular expression over their texts and metadata columns."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import WorkbenchError


class SearchError(WorkbenchError, ValueError):
    """A search pattern that is not a valid regular expression."""


def _pattern(query: str, regex: bool, case: bool) -> re.Pattern[str]:
    flags = 0 if case else re.IGNORECASE
    try:
        return re.compile(query if regex else re.escape(query), flags)
    except re.error as exc:
        raise SearchError(
            f"{query!r} is not a valid regular expression ({exc}): fix it, or "
            "search for the plain text (regex off)"
        ) from exc


def search(
    texts: Sequence[str],
    query: str,
    *,
    columns: Mapping[str, Sequence[Any]] | None = None,
    regex: bool = False,
    case: bool = False,
) -> np.ndarray:
    """Rows whose text, or any value of ``columns``, contains ``query``.

    Args:
        texts: ``[n]`` texts.
        query: a substring (or a regular expression with ``regex=True``); empty matches nothing.
        columns: more ``[n]`` columns to search (metadata: country, label, ...), by name.
        regex: treat ``query`` as a Python regular expression.
        case: match case (default: case-insensitive).

    Returns:
        ``[m]`` sorted row indices (int64).

    Raises:
        SearchError: ``regex=True`` and ``query`` does not compile.
    """
    if not query:
        return np.zeros(0, dtype=np.int64)
    pat = _pattern(query, regex, case)
    hit = np.fromiter((pat.search(str(t)) is not None for t in texts), bool, len(texts))
    for name, values in (columns or {}).items():
        if len(values) != len(texts):
            raise ValueError(f"column {name!r} has {len(values)} values for {len(texts)} texts")
        hit |= np.fromiter((pat.search(str(v)) is not None for v in values), bool, len(texts))
    return np.flatnonzero(hit).astype(np.int64)


def highlight(
    text: str,
    query: str,
    *,
    regex: bool = False,
    case: bool = False,
    mark: tuple[str, str] = ("<mark>", "</mark>"),
) -> str:
    """``text`` HTML-escaped, with every match of ``query`` wrapped in ``mark``.

    Examples:
        >>> highlight("Paris & paris", "paris")
        '<mark>Paris</mark> &amp; <mark>paris</mark>'
    """
    if not query:
        return html.escape(text)
    pat = _pattern(query, regex, case)
    out, last = [], 0
    for m in pat.finditer(text):
        if m.end() == m.start():
            continue
        out += [html.escape(text[last : m.start()]), mark[0], html.escape(m.group()), mark[1]]
        last = m.end()
    out.append(html.escape(text[last:]))
    return "".join(out)
