"""Probing on real data from ../shared with the bundled SmolLM2 (skipped without ../shared,
except the agreement tests, which fall back to the built-in datasets)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

import workbench
from workbench.probing import make_folds, sweep, token_dataset

pytestmark = pytest.mark.slow

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


def _cached_store(smollm2, ds, name: str, template: str | None = None):
    """All 31 layers of ``ds`` (last token), extracted once into ``$WORKBENCH_CACHE`` and reused
    by later runs (``extract`` returns a complete identical run as is)."""
    cache = Path(os.environ.get("WORKBENCH_CACHE", Path.home() / ".cache" / "workbench"))
    torch.set_num_threads(1)
    return workbench.extract(
        smollm2,
        ds,
        layers="all",
        pooling="last",
        template=template,
        out=cache / "probe-tests" / f"{name}-{workbench.__version__}",
        progress=False,
    )


@pytest.fixture(scope="module")
def cities_all_layers(smollm2):
    """Cities from ../shared, or the built-in copy when ../shared is absent."""
    path = SHARED / "data/geometry_of_truth/cities.csv"
    if path.is_file():
        return _cached_store(
            smollm2, workbench.load_dataset(str(path), text_column="statement"), "shared-cities"
        )
    return _cached_store(smollm2, workbench.load_dataset("cities"), "builtin-cities")


@pytest.fixture(scope="module")
def places_all_layers(smollm2):
    """1,500 world places from ../shared (or the built-in ones), read as "Place: NAME"."""
    if (SHARED / "data/space_time/world_place.csv").is_file():
        return _cached_store(
            smollm2, _world_places(SHARED), "shared-places-1500", template="Place: {text}"
        )
    return _cached_store(
        smollm2,
        workbench.load_dataset("world_places", limit=1500),
        "builtin-places-1500",
        template="Place: {text}",
    )


def test_sweep_equals_the_sklearn_recipe_at_every_layer(cities_all_layers):
    """The default logistic sweep is ``StandardScaler`` + ``LogisticRegression(C=1)`` fitted on
    each fold's train rows: every layer's cross-validated accuracy within 1 point of that
    recipe run independently on the same folds, and no ConvergenceWarning from the sweep."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    store = cities_all_layers
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ConvergenceWarning (or any other) fails the test
        result = sweep(store, "label", groups="city", cv=5, control=False, n_boot=0)
    ours = result.curve("accuracy")["value"].to_numpy()
    y = np.unique(np.asarray(store.column("label")), return_inverse=True)[1]
    folds = make_folds(len(y), y, 5, np.asarray(store.column("city")), 0)
    recipe = []
    with threadpool_limits(1):  # one BLAS thread, as the suite's one torch thread
        for hook in store.hook_points:
            X = store.get("last", hook_points=[hook])[:, 0]
            pred = np.zeros_like(y)
            for k in range(5):
                test = folds == k
                model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
                pred[test] = model.fit(X[~test], y[~test]).predict(X[test])
            recipe.append((pred == y).mean())
    diff = np.abs(ours - np.asarray(recipe))
    print(
        f"\ncities, {len(diff)} layers: max |sweep - recipe| = {100 * diff.max():.2f} points, "
        f"mean {100 * diff.mean():.3f}; best layer {int(np.argmax(ours))} = {ours.max():.4f}"
    )
    assert len(diff) == 31
    assert diff.max() <= 0.01
    assert ours.max() > 0.7  # far above the 50% majority


def test_online_codelength_equals_the_sklearn_recipe_at_every_layer(cities_all_layers):
    """MDL as the sweep computes it (every prefix of the online code in one batched call:
    Newton's method for prefixes of at most d / 2 rows, L-BFGS above) against each prefix
    fitted by ``StandardScaler`` + ``LogisticRegression(C=1)`` to a tight tolerance: every
    layer's codelength within 1% (the sweep's solver tolerance moves it by about 0.3%)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from workbench.probing import online_codelength
    from workbench.probing._sweep import MDL_FRACTIONS

    store = cities_all_layers
    y = np.unique(np.asarray(store.column("label")), return_inverse=True)[1]
    n = len(y)
    order = np.random.default_rng(0 + 104729).permutation(n)  # seed 0, as online_codelength
    ends = sorted({max(4, int(round(f * n))) for f in MDL_FRACTIONS} | {n})
    yo = y[order]
    with threadpool_limits(1):
        for hook in store.hook_points:
            X = store.get("last", hook_points=[hook])[:, 0].astype(np.float32)
            bits, uniform = online_codelength(X, y, 2, C=1.0, seed=0, fast=True)
            Xo = X[order].astype(np.float64)  # float32 probabilities would round 1 - p to 0
            ref = ends[0] * 1.0
            for start, stop in zip(ends[:-1], ends[1:], strict=True):
                if len(np.unique(yo[:start])) < 2:
                    ref += stop - start
                    continue
                model = make_pipeline(
                    StandardScaler(), LogisticRegression(C=1.0, tol=1e-8, max_iter=20000)
                ).fit(Xo[:start], yo[:start])
                proba = np.clip(model.predict_proba(Xo[start:stop]), 1e-12, 1)
                ref -= np.log2(proba[np.arange(stop - start), yo[start:stop]]).sum()
            assert uniform == pytest.approx(n)
            assert bits == pytest.approx(ref, rel=0.01), hook


def test_ridge_sweep_equals_the_sklearn_recipe_at_every_layer(places_all_layers):
    """The default ridge sweep is ``StandardScaler`` + ``Ridge(alpha)`` per fold: R² of every
    layer within 0.01 of the recipe on the same folds."""
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    store = places_all_layers
    target = ["latitude", "longitude"]
    result = sweep(store, target, probe="ridge", alpha=100.0, cv=5, control=False, n_boot=0)
    ours = result.curve("r2")["value"].to_numpy()
    Y = np.column_stack([np.asarray(store.column(t), dtype=np.float64) for t in target])
    folds = make_folds(len(Y), None, 5, None, 0)
    recipe = []
    with threadpool_limits(1):
        for hook in store.hook_points:
            X = store.get("last", hook_points=[hook])[:, 0]
            pred = np.zeros_like(Y)
            for k in range(5):
                test = folds == k
                model = make_pipeline(StandardScaler(), Ridge(alpha=100.0))
                pred[test] = model.fit(X[~test], Y[~test]).predict(X[test])
            recipe.append(r2_score(Y, pred))
    diff = np.abs(ours - np.asarray(recipe))
    print(
        f"\nworld places, {len(diff)} layers: max |sweep R² - recipe R²| = {diff.max():.2e}; "
        f"best layer {int(np.argmax(ours))} R² = {ours.max():.3f}"
    )
    assert len(diff) == 31
    assert diff.max() <= 0.01


def test_cities_sweep_matches_an_independent_sklearn_reference(
    smollm2, shared_dir, cities_all_layers
):
    """Best-layer test accuracy of the workbench sweep (on the store ``extract`` wrote) is within
    2 points of the scikit-learn recipe (StandardScaler + LogisticRegression) on plain Hugging
    Face hidden states computed here one text at a time (80/20 split, last token)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ds = workbench.load_dataset(
        str(shared_dir / "data/geometry_of_truth/cities.csv"), text_column="statement"
    )
    n = len(ds)
    is_test = np.random.default_rng(0).permutation(n) < n // 5
    layers = list(range(0, 31, 5))
    assert cities_all_layers.n_rows == n
    result = sweep(
        cities_all_layers, "label", layers=layers, split=is_test, control=False, n_boot=0
    )
    ours = result.curve("accuracy").set_index("layer")["value"]

    # independent reference: HF forward, one text at a time, last token of every hidden state
    tok, model = smollm2.tokenizer, smollm2.model
    states = np.zeros((n, len(layers), smollm2.d_model), dtype=np.float32)
    with torch.inference_mode():
        for i, text in enumerate(ds.texts):
            hs = model(**tok(text, return_tensors="pt"), output_hidden_states=True).hidden_states
            states[i] = torch.stack([hs[layer][0, -1] for layer in layers]).numpy()
    y = np.asarray(ds.column("label"))
    reference = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j, layer in enumerate(layers):
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
            clf.fit(states[~is_test, j], y[~is_test])
            reference[layer] = clf.score(states[is_test, j], y[is_test])
    best_ours, best_ref = ours.max(), max(reference.values())
    print(
        f"\ncities best layer: workbench {ours.idxmax()} = {best_ours:.4f}; "
        f"sklearn on HF states {max(reference, key=reference.get)} = {best_ref:.4f}"
    )
    assert abs(best_ours - best_ref) <= 0.02
    assert best_ours > 0.7  # far above the 50% majority


def test_world_places_latlon_ridge_reports_r2_per_layer(places_all_layers, shared_dir):
    # SmolLM2 adds no BOS token: a one-token place name would put its last token at position 0,
    # the attention sink (norm ~23,000 vs ~180), and those rows wreck any linear probe. A short
    # prefix ("Place: NAME", in the store) keeps the name off position 0; alpha is chosen by
    # leave-one-out on the standardised states, as in "Language Models Represent Space and Time".
    r = sweep(
        places_all_layers,
        ["latitude", "longitude"],
        probe="ridge",
        alpha="auto",
        layers=[0, 6, 12, 18, 24, 30],
        split="is_test",
        n_boot=100,
    )
    curve = r.curve("r2").set_index("layer")["value"]
    print("\nworld_place R² per layer:", curve.round(3).to_dict())
    print(
        "great-circle km per layer:",
        r.curve("great_circle_km").set_index("layer")["value"].round(0).to_dict(),
    )
    assert len(curve) == 6 and curve.max() > 0.2
    assert curve.max() > curve.loc[0]  # the model adds geography beyond the token embeddings


def _world_places(shared_dir):
    """1,500 seeded random rows of ../shared's world places."""
    import csv

    with open(shared_dir / "data/space_time/world_place.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(0)
    rows = [rows[i] for i in rng.permutation(len(rows))[:1500]]
    return workbench.TextDataset(
        "world_place",
        [r["name"] for r in rows],
        {
            "latitude": [float(r["latitude"]) for r in rows],
            "longitude": [float(r["longitude"]) for r in rows],
            "is_test": [r["is_test"].strip().lower() in ("true", "1") for r in rows],
        },
        source="../shared world_place.csv (1,500 random rows)",
    )


def test_upos_is_far_above_its_control_task(smollm2, shared_dir, tmp_path):
    ds = workbench.load_dataset(
        str(shared_dir / "data/ud_english_ewt/en_ewt-ud-dev.conllu"), limit=120
    )
    store = workbench.extract(
        smollm2, ds, layers=[0, 12], pooling="tokens", out=tmp_path / "run", progress=False
    )
    words = token_dataset(store, "upos", "first")
    r = sweep(
        words,
        "upos",
        pooling="word_first",
        cv=3,
        groups="sentence",
        control_types="word",
        n_boot=50,
    )
    task = r.curve("accuracy").set_index("layer")["value"]
    control = r.curve("accuracy", "control").set_index("layer")["value"]
    print(
        "\nUPOS accuracy per layer:",
        task.round(3).to_dict(),
        "control:",
        control.round(3).to_dict(),
    )
    assert task.max() > 0.8
    assert (task - control).max() > 0.3
