"""Projections: shapes, determinism, save/load, layer alignment, probe axes, the store cache and
bad input (tiny synthetic data and a tiny random Llama store)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from workbench.projection import (
    AlignedProjection,
    PCAProjection,
    ProbeAxes,
    ProjectionInputError,
    TSNEProjection,
    UMAPProjection,
    layer_displacement,
    load_projection,
    make_projection,
    project_store,
    save_projection,
)


def _layers(n: int = 120, n_layers: int = 4, d: int = 24, seed: int = 0) -> np.ndarray:
    """[n, layers, d]: 3 clusters drifting slowly across layers, each layer randomly rotated
    (so independent per-layer fits land in unrelated orientations)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(3, d))
    labels = rng.integers(0, 3, n)
    base = centres[labels] + rng.normal(size=(n, d))
    out = []
    for _ in range(n_layers):
        base = base + 0.3 * rng.normal(size=(n, d))
        q = np.linalg.qr(rng.normal(size=(d, d)))[0]
        out.append(base @ q)
    return np.stack(out, axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    return _layers()[:, 0]


@pytest.mark.parametrize("k", [2, 3])
def test_pca_shapes_and_determinism(X, k):
    a = PCAProjection(n_components=k).fit(X)
    assert a.embedding_.shape == (len(X), k) and a.embedding_.dtype == np.float32
    assert a.components_.shape == (k, X.shape[1])
    np.testing.assert_allclose(a.components_ @ a.components_.T, np.eye(k), atol=1e-5)
    b = PCAProjection(n_components=k).fit(X)
    np.testing.assert_array_equal(a.embedding_, b.embedding_)
    np.testing.assert_allclose(a.transform(X), a.embedding_, atol=1e-4)


def test_tsne_and_umap_shapes_determinism_and_transform(X):
    for est in (
        TSNEProjection(perplexity=10, max_iter=250, pca_components=10, random_state=3),
        UMAPProjection(n_neighbors=8, n_epochs=50, pca_components=10, random_state=3),
    ):
        Y = est.fit_transform(X)
        assert Y.shape == (len(X), 2) and est.reduced_.shape == (len(X), 10)
        again = clone(est).fit_transform(X)
        np.testing.assert_array_equal(Y, again)  # same seed, same picture
        np.testing.assert_allclose(est.transform(X[:5]), Y[:5], atol=1e-5)  # training rows
        new = est.transform(X[:5] + 0.01)
        assert new.shape == (5, 2) and np.isfinite(new).all()


def test_three_d_tsne(X):
    est = TSNEProjection(3, perplexity=5, max_iter=250, pca_components=10)
    assert est.fit_transform(X[:40]).shape == (40, 3)


def test_sklearn_contract(X):
    pipe = make_pipeline(StandardScaler(), PCAProjection(2))
    assert pipe.fit_transform(X).shape == (len(X), 2)
    assert set(PCAProjection().get_params()) == {
        "n_components",
        "scale",
        "svd_solver",
        "random_state",
    }


def _check_alignment(aligned):
    """What alignment promises of any fit: the picture is the fit's own, centred, scaled and
    rotated, and each rotation moves the layer no further from its (aligned) neighbour than
    leaving it unrotated would (the identity is one of the rotations Procrustes chooses from)."""
    E = aligned.embeddings_
    assert aligned.displacement_ == pytest.approx(layer_displacement(E))
    ref = aligned.n_layers_ // 2
    for i, p in enumerate(aligned.projections_):
        own = (p.embedding_ - aligned.centres_[i]) / aligned.scales_[i]
        np.testing.assert_allclose(own @ aligned.rotations_[i], E[i], atol=1e-4)
        if i != ref:
            prev = i - 1 if i > ref else i + 1
            assert np.linalg.norm(E[i] - E[prev]) <= np.linalg.norm(own - E[prev]) + 1e-4


def test_pca_alignment_keeps_items_in_place():
    data = _layers(n=100)
    aligned = AlignedProjection("pca").fit(data)
    free = AlignedProjection("pca", align="none").fit(data)
    assert aligned.embeddings_.shape == (4, len(data), 2)
    _check_alignment(aligned)
    # every layer is randomly rotated: independent PCA pictures jump (sign flips, rotations),
    # aligned ones barely move (measured: 0.022 against 1.66 of the unit-RMS radius)
    assert aligned.displacement_ < 0.5 * free.displacement_, (
        aligned.displacement_,
        free.displacement_,
    )
    # transform of the training rows reproduces the aligned embeddings
    np.testing.assert_allclose(aligned.transform(data), aligned.embeddings_, atol=1e-3)


def test_umap_alignment_moves_items_less_than_independent_fits():
    # UMAP sees only the kNN graph, which a rotation of the data leaves unchanged, so
    # independent seeded fits are already roughly aligned and the gain of initialising each
    # layer from its neighbour (plus Procrustes) varies from one dataset to the next (measured
    # on the four seeds below: 0.31/0.32, 0.18/0.33, 0.22/0.32, 0.26/0.44 aligned/independent).
    # The claim is about the expectation, so it is checked on the mean over the four datasets.
    params = {"n_neighbors": 10, "n_epochs": 40}
    aligned_d, free_d = [], []
    for seed in range(4):
        data = _layers(n=100, seed=seed)
        aligned = AlignedProjection("umap", params=params).fit(data)
        _check_alignment(aligned)
        aligned_d.append(aligned.displacement_)
        free_d.append(
            AlignedProjection("umap", params=params, align="none").fit(data).displacement_
        )
        if seed == 0:
            np.testing.assert_allclose(aligned.transform(data), aligned.embeddings_, atol=1e-3)
    assert np.mean(aligned_d) < 0.9 * np.mean(free_d), (aligned_d, free_d)


def test_alignment_reference_in_the_middle():
    data = _layers(n_layers=5)
    est = AlignedProjection("pca", reference=-3).fit(data)
    np.testing.assert_allclose(est.rotations_[2], np.eye(2), atol=1e-6)
    assert est.displacement_ < AlignedProjection("pca", align="none").fit(data).displacement_


def test_save_load_round_trip(tmp_path, X):
    data = _layers(n=60)
    for name, est in {
        "pca": PCAProjection(3, scale=True).fit(X),
        "umap": UMAPProjection(n_neighbors=5, n_epochs=20, pca_components=8).fit(X),
        "aligned": AlignedProjection("pca").fit(data),
        "axes": ProbeAxes(direction=np.ones(X.shape[1])).fit(X),
    }.items():
        save_projection(est, tmp_path / name, meta={"what": name})
        assert {p.name for p in (tmp_path / name).iterdir()} == {
            "config.json",
            "arrays.safetensors",
        }
        back = load_projection(tmp_path / name)
        assert type(back) is type(est) and back.get_params().keys() == est.get_params().keys()
        inp = data if name == "aligned" else X[:7]
        np.testing.assert_allclose(back.transform(inp), est.transform(inp), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="save_projection"):
        load_projection(tmp_path / "nothing")


def test_probe_axes_separate_classes():
    from workbench.probing import MassMeanProbe

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    X = rng.normal(size=(200, 16)) * np.r_[5.0, np.ones(15)]  # big variance on dim 0 ...
    X[:, 3] += 3.0 * (2 * y - 1)  # ... truth lives on dim 3
    probe = MassMeanProbe().fit(X, y)
    axes = ProbeAxes(direction=probe).fit(X)
    Y = axes.embedding_
    np.testing.assert_allclose(axes.components_ @ axes.components_.T, np.eye(2), atol=1e-5)
    assert Y[y == 1, 0].mean() - Y[y == 0, 0].mean() > 5.0  # x separates the classes
    assert abs(Y[y == 1, 1].mean() - Y[y == 0, 1].mean()) < 1.0  # y (PC1 of the rest) does not
    assert abs(axes.components_[1, 0]) > 0.9  # and it is the high-variance dim


def test_project_store_caches(tmp_path, tiny_llama):
    import workbench as wb

    texts = [f"The city number {i} is in country {i % 7}." for i in range(40)]
    store = wb.extract(
        tiny_llama, texts, layers="all", pooling="mean,last", out=tmp_path / "run", progress=False
    )
    first = project_store(store, "pca", pooling="mean")
    assert first.embeddings.shape == (4, 40, 2) and not first.cached
    assert first.layers == [0, 1, 2, 3] and first.path.parent == tmp_path / "run" / "projections"
    again = project_store(store, "pca", pooling="mean")
    assert again.cached and again.key == first.key
    np.testing.assert_array_equal(again.embeddings, first.embeddings)
    other = project_store(
        store, "pca", pooling="mean", rows=slice(0, 30), cache_dir=tmp_path / "cache"
    )
    assert other.key != first.key and other.embeddings.shape == (4, 30, 2)
    assert other.path.parent == tmp_path / "cache"
    refit = project_store(store, "pca", pooling="mean", refit=True)
    assert not refit.cached
    np.testing.assert_allclose(refit.embeddings, first.embeddings, atol=1e-6)
    # the CLI reuses the same cached fit and writes the slider figure
    from typer.testing import CliRunner

    from workbench.cli.main import app

    out = CliRunner().invoke(
        app,
        [
            "project",
            "map",
            str(tmp_path / "run"),
            "--pooling",
            "mean",
            "--out",
            str(tmp_path / "fig"),
            "--no-png",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "reused cached projection" in out.output and (tmp_path / "fig.html").is_file()


def test_bad_input(X):
    with pytest.raises(ProjectionInputError, match="n_neighbors below the number of rows"):
        UMAPProjection(n_neighbors=15).fit(X[:10])
    with pytest.raises(ProjectionInputError, match="smaller perplexity"):
        TSNEProjection(perplexity=30).fit(X[:20])
    bad = X.copy()
    bad[[3, 7]] = np.nan
    with pytest.raises(ProjectionInputError, match=r"rows \[3, 7\].*drop them"):
        PCAProjection().fit(bad)
    const = X.copy()
    const[:, 5] = 1.0
    with pytest.raises(
        ProjectionInputError,
        match=r"columns are constant \(columns \[5\]\).*"
        r"scale=False",
    ):
        PCAProjection(scale=True).fit(const)
    PCAProjection().fit(const)  # unscaled, a constant column is harmless
    with pytest.raises(ProjectionInputError, match="identical"):
        PCAProjection().fit(np.ones((10, 4)))
    with pytest.raises(ProjectionInputError, match="2-D array"):
        PCAProjection().fit(X[None])
    with pytest.raises(ProjectionInputError, match="fitted on 24"):
        PCAProjection().fit(X).transform(X[:, :5])
    with pytest.raises(ProjectionInputError, match="use one of"):
        make_projection("lda")
    with pytest.raises(ProjectionInputError, match="its parameters are"):
        make_projection("umap", perplexity=5)
    with pytest.raises(ProjectionInputError, match="choose a class"):
        ProbeAxes(direction=np.ones((3, X.shape[1]))).fit(X)
    from workbench.probing import LogisticProbe

    with pytest.raises(ProjectionInputError, match="not fitted"):
        ProbeAxes(direction=LogisticProbe()).fit(X)
    with pytest.raises(ProjectionInputError, match="reference=7"):
        AlignedProjection(reference=7).fit(_layers(n=20))


def test_degenerate_layer_is_drawn_at_the_origin(tmp_path):
    """'last' pooling at the embedding layer is the same vector for every text ending in '.'."""
    data = _layers(n=50, n_layers=3)
    data[:, 0] = data[0, 0]
    with pytest.warns(UserWarning, match="same vector"):
        est = AlignedProjection("pca").fit(data)
    assert est.projections_[0] is None and not est.embeddings_[0].any()
    assert est.embeddings_[1:].std() > 0.1
    np.testing.assert_allclose(est.transform(data), est.embeddings_, atol=1e-4)
    save_projection(est, tmp_path / "p")
    assert load_projection(tmp_path / "p").projections_[0] is None
    with pytest.raises(ProjectionInputError, match="another reference"):
        AlignedProjection("pca", reference=0).fit(data)


def test_umap_reuses_one_knn_graph(X, monkeypatch):
    """Refitting the same rows with other UMAP settings or another init searches neighbours
    once; the graph agrees with an exact scikit-learn kNN search."""
    import umap
    from sklearn.neighbors import NearestNeighbors

    from workbench.projection import _estimators

    calls = []
    real = umap.umap_.nearest_neighbors

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(umap.umap_, "nearest_neighbors", counting)
    monkeypatch.setattr(_estimators, "_KNN", {})
    Xs = X + 0.5  # rows no other test fitted in this process
    a = UMAPProjection(n_neighbors=8, n_epochs=30, pca_components=10, random_state=5).fit(Xs)
    UMAPProjection(n_neighbors=8, n_epochs=30, min_dist=0.5, pca_components=10, random_state=5).fit(
        Xs
    )
    UMAPProjection(
        n_neighbors=8, n_epochs=30, pca_components=10, random_state=5, init=a.embedding_
    ).fit(Xs)
    assert calls == [8]
    UMAPProjection(n_neighbors=10, n_epochs=30, pca_components=10, random_state=5).fit(Xs)
    assert calls == [8, 10]  # another neighbourhood size: a new search
    idx, _ = next(v for k, v in _estimators._KNN.items() if k[2] == 8)
    exact = NearestNeighbors(n_neighbors=8).fit(a.reduced_).kneighbors(a.reduced_)[1]
    overlap = np.mean([len(set(r) & set(e)) / 8 for r, e in zip(idx, exact, strict=True)])
    assert overlap > 0.95
