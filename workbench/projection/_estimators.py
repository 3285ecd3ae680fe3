"""PCA, UMAP and t-SNE as scikit-learn transformers, with input checks that name the fix.

Every projection works in float32, pre-reduces wide inputs with PCA before UMAP/t-SNE (so 100k
points at d_model 576 fit in a few hundred MB), is deterministic for a fixed ``random_state``,
and keeps only numpy arrays as fitted state (so it saves to safetensors + JSON, no pickle).

float32 is a choice, not an accident: float64 input gives float32 output (half the memory of
hidden states, and what the picture needs), declared to scikit-learn as
``transformer_tags.preserves_dtype = ["float32"]``; a permuted batch therefore agrees with the
original to float32 rounding. Otherwise the transformers follow scikit-learn's estimator contract
(``tests/unit/test_projection_contract.py``): sparse and complex input are refused with a message.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ..errors import WorkbenchError, arg


class ProjectionInputError(WorkbenchError, ValueError):
    """Rows a projection cannot use: NaN/inf rows, too few rows for the method, a constant
    column under scaling, zero variance, or a shape that does not match the fitted one."""


class ProjectionDtypeError(ProjectionInputError, TypeError):
    """Values that are not numbers (a ``TypeError`` as well, as numpy's own conversion is)."""


def check_rows(X: Any, *, min_rows: int, method: str, hint: str = "") -> np.ndarray:
    """``X`` as a C-contiguous float32 ``[n, d]`` array, or a ``ProjectionInputError``.

    Args:
        X: ``[n, d]`` dense array-like (a torch tensor works too; sparse and complex do not).
        min_rows: the fewest rows the method can use.
        method: the method's name, for the message.
        hint: what to change when there are too few rows (e.g. ``pass n_neighbors<=4``).
    """
    if hasattr(X, "detach"):
        X = X.detach().cpu().numpy()
    if sp.issparse(X):
        raise ProjectionInputError(
            f"{method} got a sparse {type(X).__name__}: sparse input is not supported; pass a "
            "dense array, e.g. X.toarray()"
        )
    raw = np.asarray(X)
    if np.iscomplexobj(raw):
        raise ProjectionInputError(
            f"{method} got complex values: Complex data not supported; pass real vectors, "
            "e.g. X.real or np.abs(X)"
        )
    try:
        arr = np.ascontiguousarray(raw, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ProjectionDtypeError(
            f"{method} takes numbers, got dtype {raw.dtype} ({exc}): pass a numeric [rows, "
            "d_model] array"
        ) from exc
    if arr.ndim != 2:
        raise ProjectionInputError(
            f"{method} takes a 2-D array [rows, d_model], got shape {arr.shape}: Reshape your "
            "data: select one layer (store.layer(l, pooling)), or X.reshape(1, -1) for one row"
        )
    if arr.shape[1] == 0:
        raise ProjectionInputError(
            f"{method} got 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required: "
            "pass vectors with at least one column"
        )
    bad = np.nonzero(~np.isfinite(arr).all(axis=1))[0]
    if bad.size:
        raise ProjectionInputError(
            f"{bad.size} of {len(arr)} rows contain NaN or inf (rows {bad[:10].tolist()}"
            f"{' ...' if bad.size > 10 else ''}); a pooling such as pos:K gives NaN for texts "
            "shorter than K tokens: drop them first, e.g. X[np.isfinite(X).all(axis=1)]"
        )
    if len(arr) < min_rows:
        raise ProjectionInputError(
            f"{method} needs at least {min_rows} rows, got n_samples={len(arr)}"
            + (f": {hint}" if hint else ": pass more rows")
        )
    return arr


def check_varies(X: np.ndarray) -> None:
    """A ``ProjectionInputError`` when every row of the training rows ``X`` ``[n, d]`` is the
    same (a fit has nothing to project; new rows passed to ``transform`` may be anything)."""
    if float(np.ptp(X, axis=0).max(initial=0.0)) == 0.0:
        raise ProjectionInputError(
            f"all {len(X)} rows are identical (every column is constant): there is nothing to "
            "project; check the layer (e.g. a BOS-only pooling gives the same vector for every text)"
        )


def _float32_tags(tags: Any) -> Any:
    """scikit-learn tags of a float32-by-design transformer: float32 out for any float input."""
    tags.transformer_tags.preserves_dtype = ["float32"]
    return tags


def _flip_signs(components: np.ndarray) -> np.ndarray:
    """Each row's largest-magnitude entry made positive: one sign convention for every solver."""
    idx = np.abs(components).argmax(axis=1)
    signs = np.sign(components[np.arange(len(components)), idx])
    signs[signs == 0] = 1.0
    return components * signs[:, None]


class PCAProjection(TransformerMixin, BaseEstimator):
    """Principal components in float32.

    Args:
        n_components: output dimensions (2 or 3 for a picture; 50 as a pre-reduction).
        scale: divide each column by its standard deviation first (a constant column is then an
            error); hidden states are usually projected unscaled.
        svd_solver: scikit-learn's (``auto`` picks the randomized solver for large inputs).
        random_state: seed of the randomized solver.

    Attributes:
        mean_: ``[d]``; scale_: ``[d]`` (ones unless ``scale``); components_: ``[k, d]`` unit rows
        (largest entry positive); explained_variance_ratio_: ``[k]``; embedding_: ``[n, k]`` of
        the training rows; n_features_in_.

    Examples:
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(100, 8))
        >>> PCAProjection(n_components=2).fit_transform(X).shape
        (100, 2)
    """

    def __init__(
        self,
        n_components: int = 2,
        *,
        scale: bool = False,
        svd_solver: str = "auto",
        random_state: int | None = 0,
    ) -> None:
        self.n_components = n_components
        self.scale = scale
        self.svd_solver = svd_solver
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> PCAProjection:
        from sklearn.decomposition import PCA

        k = int(self.n_components)
        method = f"PCA with n_components={k}"
        X = check_rows(X, min_rows=1, method=method)
        X = check_rows(
            X,
            min_rows=max(k, 2),
            method=method,
            hint=f"pass n_components<={max(len(X) - 1, 1)} or more rows",
        )
        check_varies(X)
        if k < 1 or k > X.shape[1]:
            raise ProjectionInputError(
                f"n_components={k} is not within 1..{X.shape[1]} (the number of columns)"
            )
        self.mean_ = X.mean(axis=0, dtype=np.float64).astype(np.float32)
        self.scale_ = np.ones(X.shape[1], dtype=np.float32)
        if self.scale:
            std = X.std(axis=0, dtype=np.float64).astype(np.float32)
            constant = np.nonzero(std == 0)[0]
            if constant.size:
                raise ProjectionInputError(
                    f"{constant.size} columns are constant (columns {constant[:10].tolist()}), so "
                    "scale=True would divide by zero: pass scale=False (the usual choice for "
                    "hidden states) or drop those columns"
                )
            self.scale_ = std
        Z = (X - self.mean_) / self.scale_
        pca = PCA(n_components=k, svd_solver=self.svd_solver, random_state=self.random_state)
        pca.fit(Z)
        self.components_ = _flip_signs(pca.components_.astype(np.float32))
        self.explained_variance_ratio_ = pca.explained_variance_ratio_.astype(np.float32)
        self.n_features_in_ = X.shape[1]
        self.embedding_ = self._apply(Z)
        return self

    def _apply(self, Z: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(Z @ self.components_.T, dtype=np.float32)

    def transform(self, X: Any) -> np.ndarray:
        """``[n, d]`` -> ``[n, n_components]``."""
        check_is_fitted(self)
        X = _check_width(self, X, "PCA")
        return self._apply((X - self.mean_) / self.scale_)

    def fit_transform(self, X: Any, y: Any = None, **_: Any) -> np.ndarray:
        return self.fit(X).embedding_

    def __sklearn_tags__(self) -> Any:
        return _float32_tags(super().__sklearn_tags__())


def _check_width(est: Any, X: Any, method: str) -> np.ndarray:
    """New rows for a fitted ``est``: ``check_rows`` and the fitted width ``n_features_in_``."""
    X = check_rows(X, min_rows=1, method=method)
    if X.shape[1] != est.n_features_in_:
        raise ProjectionInputError(
            f"X has {X.shape[1]} features, but {type(est).__name__} is expecting "
            f"{est.n_features_in_} features as input (it was fitted on {est.n_features_in_}-wide "
            "vectors): project vectors of the same model and hook point"
        )
    return X


class _NeighbourEmbedding(TransformerMixin, BaseEstimator):
    """Shared part of UMAP and t-SNE: PCA pre-reduction, the fitted embedding, and ``transform``
    of new rows by distance-weighted interpolation of their nearest training rows (UMAP's own
    initialisation of new points), which needs no pickled index."""

    _method = "neighbour embedding"
    n_components: int
    pca_components: int | None
    random_state: int | None
    init: Any
    pca_: PCAProjection | None  # fitted: the PCA pre-reduction, None without one

    def _min_rows(self) -> tuple[int, str]:
        raise NotImplementedError

    def _embed(self, Z: np.ndarray, init: Any) -> np.ndarray:
        raise NotImplementedError

    def _n_interp(self) -> int:
        return 10

    def fit(self, X: Any, y: Any = None) -> Any:
        need, hint = self._min_rows()
        X = check_rows(X, min_rows=need, method=self._method, hint=hint)
        check_varies(X)
        self.n_features_in_ = X.shape[1]
        p = self.pca_components
        if p is not None and X.shape[1] > p:
            self.pca_ = PCAProjection(min(p, len(X) - 1), random_state=self.random_state).fit(X)
            Z = self.pca_.embedding_
        else:
            self.pca_ = None
            Z = X
        init = self.init
        if isinstance(init, np.ndarray | list):
            init = np.asarray(init, dtype=np.float32)
            if init.shape != (len(X), self.n_components):
                raise ProjectionInputError(
                    f"init has shape {init.shape}: it must be [rows, n_components] = "
                    f"({len(X)}, {self.n_components})"
                )
        self.reduced_ = np.ascontiguousarray(Z, dtype=np.float32)
        self.embedding_ = np.ascontiguousarray(self._embed(self.reduced_, init), dtype=np.float32)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """New rows ``[n, d]`` -> ``[n, n_components]``, placed at the inverse-distance-weighted
        mean of the embeddings of their nearest training rows (exact for training rows)."""
        from sklearn.neighbors import NearestNeighbors

        check_is_fitted(self)
        X = _check_width(self, X, self._method)
        Z = self.pca_.transform(X) if self.pca_ is not None else X
        k = min(self._n_interp(), len(self.reduced_))
        dist, idx = NearestNeighbors(n_neighbors=k).fit(self.reduced_).kneighbors(Z)
        w = 1.0 / np.maximum(dist, 1e-12)
        exact = dist[:, 0] <= 1e-6 * (1.0 + np.abs(Z).max(axis=1))
        w[exact] = 0.0
        w[exact, 0] = 1.0
        w /= w.sum(axis=1, keepdims=True)
        return np.einsum("nk,nkc->nc", w, self.embedding_[idx]).astype(np.float32)

    def fit_transform(self, X: Any, y: Any = None, **_: Any) -> np.ndarray:
        return self.fit(X).embedding_

    def __sklearn_tags__(self) -> Any:
        return _float32_tags(super().__sklearn_tags__())


class UMAPProjection(_NeighbourEmbedding):
    """UMAP (umap-learn) after a PCA pre-reduction.

    Args:
        n_components: 2 or 3.
        n_neighbors, min_dist, metric: UMAP's; ``n_neighbors`` must be below the row count.
        pca_components: PCA dimensions before UMAP (None: none).
        init: ``"spectral"``, ``"pca"``, ``"random"`` or an ``[n, n_components]`` array (the
            layer-aligned projection passes the previous layer's embedding).
        n_epochs: optimisation epochs (None: UMAP's default, 200 for large inputs).
        random_state: seed (UMAP then runs single-threaded and is reproducible).

    The kNN graph of the (pre-reduced) rows is computed once per process and reused when the
    same rows are fitted again with other settings or another init (``_knn``).

    Attributes:
        embedding_: ``[n, n_components]``; reduced_: ``[n, pca_components]`` training rows after
        the pre-reduction; pca_: the fitted ``PCAProjection`` or None.

    Examples:
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(60, 8))
        >>> UMAPProjection(n_neighbors=5).fit_transform(X).shape  # doctest: +SKIP
        (60, 2)
    """

    _method = "UMAP"

    def __init__(
        self,
        n_components: int = 2,
        *,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        metric: str = "euclidean",
        pca_components: int | None = 50,
        init: Any = "spectral",
        n_epochs: int | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.pca_components = pca_components
        self.init = init
        self.n_epochs = n_epochs
        self.random_state = random_state

    def _min_rows(self) -> tuple[int, str]:
        k = int(self.n_neighbors)
        if k < 2:
            raise ProjectionInputError(f"n_neighbors={k}: UMAP needs n_neighbors >= 2")
        return k + 1, (
            f"UMAP with n_neighbors={k} needs more rows than neighbours: pass "
            + arg(
                "n_neighbors below the number of rows, or more rows",
                "more rows (raise or drop --limit)",
            )
        )

    def _n_interp(self) -> int:
        return int(self.n_neighbors)

    def _embed(self, Z: np.ndarray, init: Any) -> np.ndarray:
        import warnings

        from ..data._tables import require

        umap = require("umap", "projection")
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*n_jobs.*")
            warnings.filterwarnings("ignore", message=".*spectral initialisation.*")
            warnings.filterwarnings("ignore", message=r".*precomputed_knn\[2\].*")
            model = umap.UMAP(
                n_components=self.n_components,
                n_neighbors=self.n_neighbors,
                min_dist=self.min_dist,
                metric=self.metric,
                init=init,
                n_epochs=self.n_epochs,
                random_state=self.random_state,
                n_jobs=1,
                low_memory=True,
                precomputed_knn=(*self._knn(umap, Z), None),
            )
            return model.fit_transform(Z)

    def _knn(self, umap: Any, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The fitted kNN graph of ``Z`` (indices, distances ``[n, n_neighbors]``), computed
        once per process for the same rows, neighbours, metric and seed and then reused: a
        layer refitted with other UMAP settings (``min_dist``, epochs) or another init (a
        single layer, then every layer aligned) skips the neighbour search."""
        key = (
            hashlib.sha256(np.ascontiguousarray(Z).tobytes()).hexdigest(),
            Z.shape,
            int(self.n_neighbors),
            str(self.metric),
            self.random_state,
        )
        if key in _KNN:
            _KNN[key] = _KNN.pop(key)  # most recent last
            return _KNN[key]
        from sklearn.utils import check_random_state

        idx, dist, _ = umap.umap_.nearest_neighbors(
            Z,
            int(self.n_neighbors),
            self.metric,
            {},
            False,
            check_random_state(self.random_state),
            low_memory=True,
            n_jobs=1,
        )
        _KNN[key] = (np.asarray(idx), np.asarray(dist))
        while len(_KNN) > KNN_KEPT:
            _KNN.pop(next(iter(_KNN)))
        return _KNN[key]


KNN_KEPT = 64
"""kNN graphs kept per process by ``UMAPProjection`` (each ``[rows, n_neighbors]`` x 2)."""

_KNN: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


EXACT_NEIGHBOURS_MAX_ROWS = 20_000
"""t-SNE's ``neighbors="auto"`` searches exact neighbours up to this many rows (at 10k rows 1.6
CPU s against Annoy's 4.2, the same affinities to KL 2.1742 vs 2.1746), Annoy above (exact
search grows with the square of the rows)."""


class TSNEProjection(_NeighbourEmbedding):
    """t-SNE (openTSNE: FFT-accelerated interpolation in 2-D, Barnes-Hut in 3-D) after a PCA
    pre-reduction.

    At 10k rows this takes 2.9x less CPU than scikit-learn's Barnes-Hut ``TSNE`` (1000
    iterations) for a map of the same quality (trustworthiness and 10-NN preservation equal to
    the third decimal; ``benchmarks/bench_projection.py``): openTSNE's schedule (250
    early-exaggeration iterations at learning rate n/12, then 500 at n), FFT gradients, and
    exact neighbours up to ``EXACT_NEIGHBOURS_MAX_ROWS`` rows (Annoy above). Perplexity-based
    bandwidths, as scikit-learn's.

    Args:
        n_components: 2 or 3.
        perplexity: must be below the row count.
        pca_components: PCA dimensions before t-SNE (None: none).
        init: ``"pca"``, ``"random"`` or an ``[n, n_components]`` array (rescaled to standard
            deviation 1e-4, the scale openTSNE gives its own PCA init).
        max_iter: optimisation iterations in all (250 early-exaggeration iterations, then the
            rest; below 500, half and half).
        random_state: seed.
        n_jobs: threads (default 1).
        neighbors: ``"auto"`` (exact up to ``EXACT_NEIGHBOURS_MAX_ROWS`` rows, else Annoy),
            ``"exact"``, ``"annoy"`` or ``"pynndescent"``.
        ints_in_interval: width of a cell of the FFT grid (openTSNE's ``ints_in_interval``):
            2 draws the 10k-row map with 4.5x less CPU than scikit-learn, at a 7% lower
            10-NN preservation (benchmarks/README.md); 1 (the default) keeps the quality.

    Attributes:
        embedding_, reduced_, pca_: as for ``UMAPProjection``; kl_divergence_; perplexity_:
        the perplexity used (``perplexity``, lowered to ``(rows - 1) / 3`` for few rows);
        n_iter_: iterations run (``max_iter``); neighbors_: the neighbour search used.
    """

    _method = "t-SNE"

    def __init__(
        self,
        n_components: int = 2,
        *,
        perplexity: float = 30.0,
        pca_components: int | None = 50,
        init: Any = "pca",
        max_iter: int = 750,
        random_state: int | None = 0,
        n_jobs: int = 1,
        neighbors: str = "auto",
        ints_in_interval: float = 1.0,
    ) -> None:
        self.n_components = n_components
        self.perplexity = perplexity
        self.pca_components = pca_components
        self.init = init
        self.max_iter = max_iter
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.neighbors = neighbors
        self.ints_in_interval = ints_in_interval

    def _min_rows(self) -> tuple[int, str]:
        need = int(np.floor(self.perplexity)) + 1
        return need, (
            f"t-SNE with perplexity={self.perplexity} needs more rows than the perplexity: pass "
            + arg(
                "a smaller perplexity (5-50 is usual), or more rows",
                "more rows (raise or drop --limit)",
            )
        )

    def _embed(self, Z: np.ndarray, init: Any) -> np.ndarray:
        from ..data._tables import require

        open_tsne = require("openTSNE", "projection")
        if isinstance(init, np.ndarray):
            init = (init - init.mean(axis=0)) / max(float(init[:, 0].std()), 1e-12) * 1e-4
        # openTSNE takes 3 x perplexity neighbours; fewer rows lower the perplexity to fit
        self.perplexity_ = float(min(self.perplexity, (len(Z) - 1) / 3))
        max_iter = int(self.max_iter)
        if max_iter < 2:
            raise ProjectionInputError(f"max_iter={max_iter}: t-SNE needs max_iter >= 2")
        early = min(250, max_iter // 2)
        self.n_iter_ = max_iter
        if self.neighbors not in ("auto", "exact", "annoy", "pynndescent"):
            raise ProjectionInputError(
                f"neighbors={self.neighbors!r}: use 'auto', 'exact', 'annoy' or 'pynndescent'"
            )
        self.neighbors_ = (
            ("exact" if len(Z) <= EXACT_NEIGHBOURS_MAX_ROWS else "annoy")
            if self.neighbors == "auto"
            else self.neighbors
        )
        model = open_tsne.TSNE(
            n_components=self.n_components,
            perplexity=self.perplexity_,
            n_iter=max_iter - early,
            early_exaggeration_iter=early,
            initialization=init,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            negative_gradient_method="fft" if self.n_components <= 2 else "bh",
            neighbors=self.neighbors_,
            ints_in_interval=self.ints_in_interval,
            verbose=False,
        )
        out = model.fit(np.asarray(Z, dtype=np.float64))
        self.kl_divergence_ = float(out.kl_divergence)
        return np.asarray(out)


METHODS: dict[str, type[Any]] = {
    "pca": PCAProjection,
    "umap": UMAPProjection,
    "tsne": TSNEProjection,
}


def make_projection(method: str, n_components: int = 2, **params: Any) -> Any:
    """A projection by name (``pca``, ``umap``, ``tsne``), or an error listing the names."""
    key = method.lower().replace("-", "")
    if key not in METHODS:
        raise ProjectionInputError(
            f"unknown projection {method!r} ({arg('method=', '--method')}): use one of "
            f"{sorted(METHODS)}"
        )
    cls = METHODS[key]
    valid = set(cls().get_params())
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ProjectionInputError(
            f"{cls.__name__} has no parameter {unknown}: its parameters are {sorted(valid)}"
        )
    return cls(n_components=n_components, **params)
