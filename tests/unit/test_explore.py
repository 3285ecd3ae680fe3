"""``workbench.explore``: search, neighbours, filters, per-slice metrics and export, each checked
against an independent computation (pandas, scikit-learn, scipy, a hand count)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench.explore import (
    SearchError,
    export_selection,
    filter_rows,
    highlight,
    nearest_neighbors,
    search,
    selection_frame,
    slice_metrics,
)

TEXTS = [
    "The city of Paris is in France.",
    "The city of Rome is in Italy.",
    "The city of Lyon is in France.",
    "paris, Texas",
    "Berlin (Germany)",
]
COUNTRY = ["France", "Italy", "France", "USA", "Germany"]


def test_search_matches_pandas_contains() -> None:
    s = pd.Series(TEXTS)
    for query, regex in (
        ("paris", False),
        ("France.", False),
        (r"\bin (?:France|Italy)", True),
        ("(Germany)", False),
        (r"^The", True),
    ):
        expected = np.flatnonzero(s.str.contains(query, case=False, regex=regex))
        assert search(TEXTS, query, regex=regex).tolist() == expected.tolist()
    assert search(TEXTS, "Paris", case=True).tolist() == [0]
    assert search(TEXTS, "").tolist() == []


def test_search_reaches_metadata_and_refuses_bad_regex() -> None:
    assert search(TEXTS, "usa", columns={"country": COUNTRY}).tolist() == [3]
    with pytest.raises(SearchError, match="regex off"):
        search(TEXTS, "(unclosed", regex=True)
    assert search(TEXTS, "(unclosed").tolist() == []  # plain text: no error


def test_highlight_marks_every_match_and_escapes() -> None:
    assert highlight("a<b> Paris paris", "paris") == (
        "a&lt;b&gt; <mark>Paris</mark> <mark>paris</mark>"
    )
    assert highlight("x1 y22", r"\d+", regex=True, mark=("[", "]")) == "x[1] y[22]"


def test_nearest_neighbors_match_sklearn_cosine() -> None:
    from sklearn.neighbors import NearestNeighbors

    X = np.random.default_rng(0).normal(size=(500, 24)).astype(np.float32)
    idx, dist = nearest_neighbors(X, 7, k=10, chunk=64)
    ref_d, ref_i = (
        NearestNeighbors(n_neighbors=11, metric="cosine", algorithm="brute")
        .fit(X)
        .kneighbors(X[7:8])
    )
    assert ref_i[0, 0] == 7
    assert idx.tolist() == ref_i[0, 1:].tolist()
    np.testing.assert_allclose(dist, ref_d[0, 1:], atol=1e-6)
    idx, dist = nearest_neighbors(X, -1, k=3, include_self=True)
    assert idx[0] == 499 and dist[0] == pytest.approx(0.0, abs=1e-9)


def test_filter_rows_categorical_and_ranges() -> None:
    cols = {
        "country": COUNTRY,
        "label": [np.int64(1), 0, 1, 1, 0],
        "lat": [48.9, 41.9, 45.8, "n/a", 52.5],
    }
    keep = filter_rows(cols, equals={"country": ["France", "Germany"], "label": [0, 1]})
    assert keep.tolist() == [True, False, True, False, True]
    keep = filter_rows(cols, ranges={"lat": (45.0, None)})
    assert keep.tolist() == [True, False, True, False, True]
    keep = filter_rows(cols, equals={"label": [1]}, ranges={"lat": (None, 46.0)})
    assert keep.tolist() == [False, False, True, False, False]
    with pytest.raises(KeyError, match="the columns are"):
        filter_rows(cols, equals={"city": ["Paris"]})


def test_slice_metrics_count_by_hand() -> None:
    true = [1, 0, 1, 1, 0, 0]
    pred = [1, 1, 1, 0, 0, 0]
    group = ["a", "a", "b", "b", "b", "c"]
    df = slice_metrics(true, pred, group)
    by = df.set_index("slice")
    assert by.loc["a", "n"] == 2 and by.loc["a", "correct"] == 1
    assert by.loc["b", "accuracy"] == pytest.approx(2 / 3)
    assert by.loc["c", "accuracy"] == 1.0
    assert by.loc["(all)", "correct"] == 4 and by.loc["(all)", "n"] == 6
    assert list(df["slice"])[:3] == ["a", "b", "c"]  # worst first
    assert (df["low"] <= df["accuracy"]).all() and (df["accuracy"] <= df["high"]).all()
    only = slice_metrics(true, pred, group, evaluated=[True] * 3 + [False] * 3)
    assert only.set_index("slice").loc["(all)", "n"] == 3


def test_export_roundtrip_csv_and_parquet(tmp_path: Path) -> None:
    coords = np.arange(10, dtype=float).reshape(5, 2)
    frame = selection_frame(
        [3, 0],
        TEXTS,
        coords=coords,
        columns={"country": COUNTRY, "label": np.array([1, 0, 1, 1, 0])},
        scores={"probe": np.linspace(-1, 1, 5)},
    )
    assert list(frame.columns) == ["row", "text", "x", "y", "country", "label", "probe"]
    assert type(frame.to_dict("records")[0]["label"]) is int  # plain values, not np.int64
    for suffix in ("csv", "parquet"):
        data = export_selection(frame, tmp_path / f"sel.{suffix}")
        back = (pd.read_csv if suffix == "csv" else pd.read_parquet)(tmp_path / f"sel.{suffix}")
        assert (tmp_path / f"sel.{suffix}").read_bytes() == data
        assert back["row"].tolist() == [3, 0]
        assert back["x"].tolist() == [6.0, 0.0] and back["y"].tolist() == [7.0, 1.0]
        assert back["text"].tolist() == [TEXTS[3], TEXTS[0]]
        assert back["probe"].tolist() == pytest.approx([0.5, -1.0])
    with pytest.raises(ValueError, match="csv"):
        export_selection(frame, format="xlsx")
