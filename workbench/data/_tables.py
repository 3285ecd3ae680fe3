"""Read CSV, TSV, JSONL and Parquet files (and Hugging Face datasets) into a TextDataset.

Also holds the file helpers every loader shares: path and ``limit`` checks, strict UTF-8
reading with line numbers, optional-dependency imports and JSON-safe scalars.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import (
    ColumnNotFoundError,
    DatasetEncodingError,
    DatasetFormatError,
    DatasetNotFoundError,
    DatasetOptionError,
    EmptyDatasetError,
    MissingDependencyError,
    UnknownDatasetError,
    arg,
)
from ._dataset import TextDataset

#: File extension -> table format read by :func:`read_table`.
TABLE_FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
}

#: Column names taken as the text, in this order, when no ``text_column`` is given.
TEXT_COLUMN_CANDIDATES: tuple[str, ...] = ("text", "statement", "sentence", "sentence_A")

# pandas' default missing-value markers; applied to every column except the text column, where
# only an empty field is missing (so a sentence "NA" or "None" stays a string).
_NA_MARKERS = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]  # fmt: skip

_SHOWN_ROWS = 5


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency, or raise an error naming the pip extra that provides it."""
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"this needs the optional package {module.split('.')[0]!r}, which is not installed: "
            f"pip install 'workbench[{extra}]'"
        ) from err
    if getattr(mod, "__file__", None) is None:  # a bare folder on sys.path, e.g. ./datasets
        raise MissingDependencyError(
            f"'import {module}' found only a folder without code ({list(mod.__path__)}), not "
            f"the package: pip install 'workbench[{extra}]'"
        )
    return mod


def check_path(path: str | os.PathLike[str]) -> Path:
    """The path of an existing data file; a clear error when it is missing or a folder."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise DatasetNotFoundError(f"{p} is a folder, not a data file: pass a file inside it")
    if not p.is_file():
        raise DatasetNotFoundError(
            f"data file {p} does not exist (looked at {p.resolve()}): check the path and the "
            "working directory"
        )
    return p


def check_limit(limit: int | None) -> None:
    """Reject a ``limit`` that is not ``None`` or a positive integer."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DatasetOptionError(
            f"{arg('limit', '--limit')} must be a positive integer (the number of rows to keep)"
            f"{arg(' or None', '')}, got {limit!r}"
        )


def read_utf8(path: Path) -> str:
    """The file's text; a non-UTF-8 byte raises an error naming its 1-based line and the fix."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise DatasetEncodingError(
            f"{path} is not valid UTF-8: byte 0x{data[err.start]:02x} on line {line} (byte "
            f"{column} of that line) cannot be decoded. Re-encode the file as UTF-8, e.g. "
            f"`iconv -f latin1 -t utf-8 {path} > {path.stem}.utf8{path.suffix}` (put the "
            "file's real encoding in place of latin1)"
        ) from None
    return text.removeprefix("\ufeff")


def to_scalar(value: Any) -> Any:
    """A JSON-serialisable python value: numpy scalars unwrapped, NaN/NA/NaT -> None."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas.NA, pandas.NaT
        return None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [to_scalar(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_scalar(v) for k, v in value.items()}
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy scalar
        return to_scalar(value.item())
    if hasattr(value, "tolist"):  # numpy array
        return to_scalar(value.tolist())
    return str(value)


def _is_empty(text: Any) -> bool:
    value = to_scalar(text)
    return value is None or (isinstance(value, str) and not value.strip())


def choose_text_column(columns: Sequence[str], source: str) -> str:
    """The first of :data:`TEXT_COLUMN_CANDIDATES` present in ``columns``."""
    for name in TEXT_COLUMN_CANDIDATES:
        if name in columns:
            return name
    raise ColumnNotFoundError(
        f"{source} has none of the default text columns {list(TEXT_COLUMN_CANDIDATES)}; its "
        f"columns are {list(columns)}: pass {arg('text_column=', '--text-column')} with one of them"
    )


def dataset_from_columns(
    data: Mapping[str, Sequence[Any]],
    *,
    text_column: str | None,
    label_columns: Sequence[str] | str | None,
    name: str,
    source: str,
    drop_empty: bool = False,
) -> TextDataset:
    """Build a TextDataset from column lists: pick columns, check texts, make values JSON-safe.

    Args:
        data: column name -> values, all of one length.
        text_column: the column holding the texts; ``None`` picks a default (``text``, ...).
        label_columns: columns to keep besides the text; ``None`` keeps all the others.
        name: dataset name.
        source: where the data came from (used in error messages).
        drop_empty: drop rows whose text is empty, whitespace-only or missing (with a warning)
            instead of raising.
    """
    available = list(data)
    text_column = text_column if text_column is not None else choose_text_column(available, source)
    if isinstance(label_columns, str):
        label_columns = [label_columns]
    labels = (
        [c for c in available if c != text_column] if label_columns is None else list(label_columns)
    )
    missing = [c for c in [text_column, *labels] if c not in data]
    if missing:
        raise ColumnNotFoundError(
            f"{source} has no column {', '.join(map(repr, missing))}; its columns are "
            f"{available}: pass {arg('text_column= / label_columns=', '--text-column / --label-columns')} "
            "with names from that list"
        )
    raw = data[text_column]
    if len(raw) == 0:
        raise EmptyDatasetError(f"{source} has columns {available} but no data rows")
    empty = [i for i, t in enumerate(raw) if _is_empty(t)]
    if empty and not drop_empty:
        shown = ", ".join(str(i + 1) for i in empty[:_SHOWN_ROWS])
        more = ", ..." if len(empty) > _SHOWN_ROWS else ""
        raise EmptyDatasetError(
            f"{source}: {len(empty)} of {len(raw)} rows have an empty or missing "
            f"{text_column!r} (data rows {shown}{more}; 1-based, header not counted): drop "
            f"those rows from the file or pass {arg('drop_empty=True', '--drop-empty')}"
        )
    dropped = set(empty)
    keep = [i for i in range(len(raw)) if i not in dropped]
    if empty:
        if not keep:
            raise EmptyDatasetError(f"{source}: every row has an empty {text_column!r}")
        warnings.warn(
            f"{source}: dropped {len(empty)} of {len(raw)} rows whose {text_column!r} is empty",
            UserWarning,
            stacklevel=3,
        )
    return TextDataset(
        name=name,
        texts=[str(to_scalar(raw[i])) for i in keep],
        columns={c: [to_scalar(data[c][i]) for i in keep] for c in labels},
        source=source,
    )


def table_format(path: Path) -> str:
    """The table format for a file extension; an error lists the supported ones."""
    fmt = TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UnknownDatasetError(
            f"{path} has extension {path.suffix or '(none)'!r}, which is not a supported table "
            f"format; supported: {', '.join(TABLE_FORMATS)} (.txt is read as tab-separated) "
            "and .conllu: convert the file or rename it to the right extension"
        )
    return fmt


def _read_delimited(
    path: Path, fmt: str, text_column: str | None, limit: int | None
) -> dict[str, list[Any]]:
    pd = require("pandas", "data")
    text = read_utf8(path)
    if not text.strip():
        raise EmptyDatasetError(f"{path} is empty: it needs a header line and at least one row")
    options: dict[str, Any] = {"sep": "\t"} if fmt == "tsv" else {"sep": ","}
    if fmt == "tsv":  # tab-separated files are not quoted: keep quote characters as text
        options["quoting"] = csv.QUOTE_NONE
    try:
        header = list(pd.read_csv(io.StringIO(text), nrows=0, **options).columns)
        text_column = (
            text_column if text_column is not None else choose_text_column(header, str(path))
        )
        frame = pd.read_csv(
            io.StringIO(text),
            nrows=limit,
            keep_default_na=False,
            na_values={c: [""] if c == text_column else _NA_MARKERS for c in header},
            dtype={text_column: str} if text_column in header else None,
            **options,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DatasetFormatError(
            f"{path} cannot be read as {fmt.upper()}: {err}. Check the separator "
            f"({'tab' if fmt == 'tsv' else 'comma'}) and the quoting of fields"
        ) from err
    return {str(c): frame[c].tolist() for c in frame.columns}


def _read_jsonl(path: Path, limit: int | None) -> dict[str, list[Any]]:
    rows: list[dict[str, Any]] = []
    for lineno, line in enumerate(read_utf8(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetFormatError(
                f"{path} line {lineno} is not valid JSON ({err.msg} at column {err.colno}): "
                "each line of a JSONL file must be one JSON object"
            ) from None
        if not isinstance(row, dict):
            raise DatasetFormatError(
                f"{path} line {lineno} is a JSON {type(row).__name__}, not an object: each line "
                'of a JSONL file must be one object such as {"text": "...", "label": 1}'
            )
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise EmptyDatasetError(f"{path} is empty: it needs at least one JSON object per line")
    names = list(dict.fromkeys(k for row in rows for k in row))
    return {k: [row.get(k) for row in rows] for k in names}


def _read_parquet(path: Path, limit: int | None) -> dict[str, list[Any]]:
    pa = require("pyarrow", "data")
    pq = require("pyarrow.parquet", "data")
    if path.stat().st_size == 0:
        raise EmptyDatasetError(f"{path} is empty (0 bytes): write the table again")
    try:
        file = pq.ParquetFile(path)
        if limit is None:
            table = file.read()
        else:
            table = next(file.iter_batches(batch_size=limit), None)
            if table is None:
                table = file.schema_arrow.empty_table()
    except pa.ArrowException as err:
        raise DatasetFormatError(f"{path} cannot be read as Parquet: {err}") from err
    return {
        c: table.column(c).to_pylist()
        for c in table.column_names
        if not c.startswith("__index_level_")  # pandas' saved index
    }


def read_table(
    path: str | os.PathLike[str],
    text_column: str | None = None,
    label_columns: Sequence[str] | str | None = None,
    *,
    name: str | None = None,
    limit: int | None = None,
    drop_empty: bool = False,
) -> TextDataset:
    """Read a CSV, TSV (``.tsv``/``.txt``), JSONL (``.jsonl``/``.ndjson``) or Parquet file.

    Args:
        path: the file; its extension picks the format.
        text_column: the column holding the texts. ``None`` takes the first of ``text``,
            ``statement``, ``sentence``, ``sentence_A`` that the file has.
        label_columns: columns to keep as labels/metadata; ``None`` keeps all the others.
        name: dataset name (default: the file stem).
        limit: keep only the first ``limit`` rows.
        drop_empty: drop rows with an empty/missing text (and warn) instead of raising.

    Returns:
        A TextDataset whose column values are JSON-serialisable scalars (NaN -> ``None``).

    Raises:
        DatasetNotFoundError: the file does not exist.
        UnknownDatasetError: the extension is not a supported format.
        ColumnNotFoundError: the text or a label column is not in the file.
        DatasetEncodingError: the file is not UTF-8 (the message gives the line).
        EmptyDatasetError: the file has no rows, or rows with an empty text.

    Examples:
        >>> ds = read_table("datasets/examples/tiny.csv", "text")  # doctest: +SKIP
        >>> ds.column("label")[:3]  # doctest: +SKIP
        [1, 0, 1]
    """
    p = check_path(path)
    check_limit(limit)
    fmt = table_format(p)
    if fmt == "jsonl":
        data = _read_jsonl(p, limit)
    elif fmt == "parquet":
        data = _read_parquet(p, limit)
    else:
        data = _read_delimited(p, fmt, text_column, limit)
    return dataset_from_columns(
        data,
        text_column=text_column,
        label_columns=label_columns,
        name=name or p.stem,
        source=str(p),
        drop_empty=drop_empty,
    )


_SPLIT = re.compile(r"^(train|test|validation|valid|dev|eval)\b|\[")
_OUTSIDE_BRACKETS = re.compile(r":(?![^\[]*\])")


def parse_hf_spec(spec: str) -> tuple[str, str | None, str]:
    """``NAME[:CONFIG][:SPLIT]`` (what follows ``hf:``) -> ``(name, config, split)``.

    One part after the name is the split when it reads like one (``train``, ``test``,
    ``validation``, ``dev``, or a slice such as ``train[:1000]``), else the configuration; two
    parts are the configuration (may be empty) and the split. The split defaults to ``train``.

    Examples:
        >>> parse_hf_spec("wikitext:wikitext-103-raw-v1:validation")
        ('wikitext', 'wikitext-103-raw-v1', 'validation')
        >>> parse_hf_spec("imdb:test[:100]")
        ('imdb', None, 'test[:100]')
    """
    parts = _OUTSIDE_BRACKETS.split(spec)
    if not parts[0] or len(parts) > 3:
        raise UnknownDatasetError(
            f"hf:{spec} is not a Hugging Face dataset spec: write hf:NAME, hf:NAME:SPLIT, "
            "hf:NAME:CONFIG or hf:NAME:CONFIG:SPLIT"
        )
    if len(parts) == 2:
        parts = [parts[0], "", parts[1]] if _SPLIT.search(parts[1]) else [*parts, ""]
    name, config, split = [*parts, "", ""][:3]
    return name, config or None, split or "train"


def read_hf(
    spec: str,
    text_column: str | None = None,
    label_columns: Sequence[str] | str | None = None,
    *,
    limit: int | None = None,
    drop_empty: bool = False,
    streaming: bool = False,
    **load_options: Any,
) -> TextDataset:
    """Load ``NAME[:CONFIG][:SPLIT]`` (see :func:`parse_hf_spec`) with Hugging Face ``datasets``.

    ``streaming=True`` reads rows as they arrive and stops after ``limit`` (nothing else is
    downloaded); ``load_options`` go to ``datasets.load_dataset`` (e.g. ``revision=``).

    Raises:
        DatasetNotFoundError: the dataset cannot be loaded (offline and not cached, unknown
            name, configuration or split); one line naming the fix.
    """
    check_limit(limit)
    hub_name, config, split = parse_hf_spec(spec)
    hf = require("datasets", "hf")
    where = f"{hub_name!r} (configuration {config!r}, split {split!r})"
    try:
        ds = hf.load_dataset(hub_name, config, split=split, streaming=streaming, **load_options)
        if streaming:
            rows = list(ds if limit is None else ds.take(limit))
            columns = {k: [r.get(k) for r in rows] for k in (rows[0] if rows else {})}
        else:
            if limit is not None:
                ds = ds.select(range(min(limit, len(ds))))
            columns = ds.to_dict()
    except Exception as err:  # network, cache and unknown-name errors all mean "not available"
        why = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        offline = any(
            os.environ.get(v, "").lower() in ("1", "true", "yes")
            for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
        )
        fix = (
            "offline (HF_HUB_OFFLINE=1) only cached datasets load: run once online to cache it, "
            "or save it as .txt/.csv/.jsonl/.parquet and pass that file"
            if offline
            else "check the name, configuration and split on huggingface.co/datasets (or "
            "save the data as .txt/.csv/.jsonl/.parquet and pass that file)"
        )
        raise DatasetNotFoundError(
            f"could not load Hugging Face dataset {where}: {why}; {fix}"
        ) from err
    return dataset_from_columns(
        columns,
        text_column=text_column,
        label_columns=label_columns,
        name=hub_name.rsplit("/", 1)[-1],
        source=f"hf:{hub_name}:{split}" if config is None else f"hf:{hub_name}:{config}:{split}",
        drop_empty=drop_empty,
    )
