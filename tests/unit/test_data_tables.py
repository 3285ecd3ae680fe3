"""read_table / load_dataset on small CSV, TSV, JSONL and Parquet files written in tmp_path."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from workbench.data import TextDataset, load_dataset, read_table
from workbench.errors import (
    ColumnNotFoundError,
    DatasetEncodingError,
    DatasetFormatError,
    DatasetNotFoundError,
    DatasetOptionError,
    EmptyDatasetError,
    MissingDependencyError,
    UnknownDatasetError,
)

REPO = Path(__file__).resolve().parents[2]
ROWS = [
    {"text": "The cat sat.", "label": 1, "score": 0.5, "group": "a"},
    {"text": "NA", "label": 0, "score": None, "group": "b"},
    {"text": "A dog ran, fast.", "label": 1, "score": 2.0, "group": None},
]


def _write_csv(path: Path) -> Path:
    path.write_text(
        'text,label,score,group\nThe cat sat.,1,0.5,a\nNA,0,,b\n"A dog ran, fast.",1,2.0,\n'
    )
    return path


def _write_tsv(path: Path) -> Path:
    path.write_text(
        "text\tlabel\tscore\tgroup\nThe cat sat.\t1\t0.5\ta\nNA\t0\t\tb\nA dog ran, fast.\t1\t2.0\t\n"
    )
    return path


def _write_jsonl(path: Path) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    return path


def _write_parquet(path: Path) -> Path:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pd.DataFrame(ROWS).to_parquet(path)  # pandas' index is stored too and must be dropped
    return path


WRITERS = {
    "data.csv": _write_csv,
    "data.tsv": _write_tsv,
    "data.txt": _write_tsv,
    "data.jsonl": _write_jsonl,
    "data.ndjson": _write_jsonl,
    "data.parquet": _write_parquet,
}


@pytest.mark.parametrize("filename", sorted(WRITERS))
def test_every_format_reads_the_same_rows(tmp_path: Path, filename: str) -> None:
    ds = read_table(WRITERS[filename](tmp_path / filename), "text")
    assert isinstance(ds, TextDataset)
    assert ds.name == "data" and ds.source == str(tmp_path / filename)
    assert ds.texts == ["The cat sat.", "NA", "A dog ran, fast."]  # "NA" stays a text
    assert ds.columns == {
        "label": [1, 0, 1],
        "score": [0.5, None, 2.0],
        "group": ["a", "b", None],
    }
    json.dumps(ds.columns)  # JSON-serialisable, NaN became None
    assert all(type(v) is int for v in ds.column("label"))


def test_label_columns_limit_and_name(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv")
    ds = read_table(path, "text", ["label"], name="toy", limit=2)
    assert ds.name == "toy" and ds.texts == ["The cat sat.", "NA"]
    assert ds.columns == {"label": [1, 0]}
    assert read_table(path, "text", "group").columns == {"group": ["a", "b", None]}


def test_default_text_column(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("id,statement,label\n1,The sky is blue.,1\n")
    assert read_table(path).texts == ["The sky is blue."]
    assert load_dataset(path).columns == {"id": [1], "label": [1]}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        read_table(tmp_path / "nope.csv", "text")
    with pytest.raises(DatasetNotFoundError, match="is a folder"):
        read_table(tmp_path, "text")


def test_unknown_extension_lists_supported(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_text("x")
    with pytest.raises(UnknownDatasetError, match=r"'\.xlsx'.*\.csv, \.tsv, \.txt, \.jsonl"):
        read_table(path, "text")


def test_missing_column_lists_columns(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv")
    with pytest.raises(ColumnNotFoundError) as err:
        read_table(path, "sentence")
    assert "'sentence'" in str(err.value)
    assert "['text', 'label', 'score', 'group']" in str(err.value)
    with pytest.raises(ColumnNotFoundError, match="'nope'"):
        read_table(path, "text", ["label", "nope"])
    with pytest.raises(KeyError):  # ColumnNotFoundError is a KeyError
        read_table(_write_jsonl(tmp_path / "d.jsonl"), "body")


def test_no_default_text_column(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("body,label\nhello,1\n")
    with pytest.raises(
        ColumnNotFoundError, match=r"its columns are \['body', 'label'\]: pass text_column="
    ):
        load_dataset(path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_not_utf8_names_the_line(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"latin{suffix}"
    lines = (
        ["text,label", "first,1", "second,0", "caf\xe9 au lait,1"]
        if suffix == ".csv"
        else ['{"text": "first"}', '{"text": "second"}', '{"text": "caf\xe9"}']
    )
    path.write_bytes("\n".join(lines).encode("latin-1"))
    with pytest.raises(DatasetEncodingError) as err:
        read_table(path, "text")
    message = str(err.value)
    line = 4 if suffix == ".csv" else 3
    assert f"line {line}" in message and "0xe9" in message
    assert "iconv -f latin1 -t utf-8" in message


def test_utf8_bom_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("text,label\nnaïve,1\n".encode("utf-8-sig"))
    ds = read_table(path, "text")
    assert ds.texts == ["naïve"] and ds.columns == {"label": [1]}


@pytest.mark.parametrize("filename", ["empty.csv", "empty.tsv", "empty.jsonl", "empty.parquet"])
def test_empty_file(tmp_path: Path, filename: str) -> None:
    path = tmp_path / filename
    path.write_text("" if not filename.endswith(".jsonl") else "\n\n")
    with pytest.raises(EmptyDatasetError, match="empty"):
        read_table(path, "text")


def test_header_without_rows(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("text,label\n")
    with pytest.raises(EmptyDatasetError, match="no data rows"):
        read_table(path, "text")


def test_parquet_without_rows(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    path = tmp_path / "none.parquet"
    pd.DataFrame({"text": pd.Series([], dtype=str)}).to_parquet(path)
    with pytest.raises(EmptyDatasetError, match="no data rows"):
        read_table(path, "text")


def _write_with_blanks(path: Path) -> Path:
    texts = ["ok one", "", "   ", "ok two", None, "\t", "ok three", "", ""]
    if path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps({"text": t, "label": i}) for i, t in enumerate(texts)))
    else:
        path.write_text("text,label\n" + "".join(f"{t or ''},{i}\n" for i, t in enumerate(texts)))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_empty_texts_are_reported(tmp_path: Path, suffix: str) -> None:
    path = _write_with_blanks(tmp_path / f"blank{suffix}")
    with pytest.raises(EmptyDatasetError) as err:
        read_table(path, "text")
    message = str(err.value)
    assert "6 of 9 rows" in message
    assert "rows 2, 3, 5, 6, 8, ..." in message  # the first five, 1-based
    assert "drop_empty=True" in message


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_drop_empty_warns_with_the_count(tmp_path: Path, suffix: str) -> None:
    path = _write_with_blanks(tmp_path / f"blank{suffix}")
    with pytest.warns(UserWarning, match="dropped 6 of 9 rows"):
        ds = read_table(path, "text", drop_empty=True)
    assert ds.texts == ["ok one", "ok two", "ok three"]
    assert ds.columns == {"label": [0, 3, 6]}


def test_all_texts_empty_with_drop_empty(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("text,label\n ,1\n,0\n")
    with pytest.raises(EmptyDatasetError, match="every row"):
        read_table(path, "text", drop_empty=True)


def test_bad_jsonl_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(DatasetFormatError, match="line 2 is not valid JSON"):
        read_table(path, "text")
    path.write_text('{"text": "a"}\n["b"]\n')
    with pytest.raises(DatasetFormatError, match="line 2 is a JSON list"):
        read_table(path, "text")


def test_numbers_as_text_stay_strings(tmp_path: Path) -> None:
    path = tmp_path / "n.csv"
    path.write_text("text,label\n123,1\n4.50,0\n")
    assert read_table(path, "text").texts == ["123", "4.50"]


def test_tsv_keeps_quotes(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text('text\tlabel\n"Hi," she said.\t1\n')
    assert read_table(path, "text").texts == ['"Hi," she said.']


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
def test_bad_limit(tmp_path: Path, limit: object) -> None:
    with pytest.raises(DatasetOptionError, match="limit must be a positive integer"):
        read_table(_write_csv(tmp_path / "d.csv"), "text", limit=limit)  # type: ignore[arg-type]


def test_load_dataset_dispatches_and_checks_options(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "d.csv")
    assert load_dataset(str(path), label_columns=["label"], limit=1).columns == {"label": [1]}
    with pytest.raises(DatasetOptionError, match=r"no option 'pairs'.*\['name', 'drop_empty'\]"):
        load_dataset(path, pairs=True)


def test_load_dataset_unknown_spec_lists_what_is_valid(tmp_path: Path) -> None:
    with pytest.raises(UnknownDatasetError) as err:
        load_dataset("no_such_dataset")
    message = str(err.value)
    assert "cities, neg_cities, world_places" in message
    assert ".csv" in message and ".conllu" in message and "hf:NAME" in message
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    with pytest.raises(UnknownDatasetError, match="unsupported extension"):
        load_dataset(odd)
    with pytest.raises(DatasetNotFoundError):  # a known extension: the file must exist
        load_dataset(tmp_path / "missing.csv")


def test_hf_spec_without_the_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes "import datasets" fail
    with pytest.raises(MissingDependencyError, match=r"pip install 'workbench\[hf\]'"):
        load_dataset("hf:imdb:test")


def test_hf_spec_ignores_a_bare_datasets_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a folder named datasets/ (like this repository's cards) imports as a namespace package
    if importlib.util.find_spec("datasets") is not None and (
        importlib.util.find_spec("datasets").origin not in (None, "namespace")
    ):
        pytest.skip("Hugging Face datasets is installed: a bare folder cannot shadow it")
    (tmp_path / "datasets").mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "datasets", raising=False)
    with pytest.raises(MissingDependencyError, match="folder without code"):
        load_dataset("hf:imdb")


def test_tiny_example_file() -> None:
    ds = load_dataset(REPO / "datasets" / "examples" / "tiny.csv")
    assert len(ds) == 10 and list(ds.columns) == ["label"]
    assert sorted(ds.column("label")) == [0] * 5 + [1] * 5
