"""Task metrics on embeddings: STS Spearman, pair retrieval, linear-probe classification and
k-means clustering. Inputs are numpy arrays ``[n, d]``; scipy and scikit-learn are imported on
first use."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import EvaluationOptionError


def _eval_dep(module: str) -> Any:
    """Import ``module`` (scipy / scikit-learn) or say which extra installs it."""
    from ..data._tables import require

    return require(module, "eval")


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """``x`` ``[n, d]`` with each row scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def cosine_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of ``a`` and ``b`` (both ``[n, d]``) -> ``[n]``."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    denom = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return (a64 * b64).sum(axis=1) / np.maximum(denom, 1e-300)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation of ``x`` and ``y`` (``[n]`` each); NaN when either is constant
    or holds NaN."""
    spearmanr = _eval_dep("scipy.stats").spearmanr
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if not (np.isfinite(x).all() and np.isfinite(y).all()) or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(x, y).statistic)


def sts_spearman(emb1: np.ndarray, emb2: np.ndarray, scores: np.ndarray) -> float:
    """Semantic textual similarity: Spearman correlation between the cosine similarity of each
    pair's embeddings (``emb1``, ``emb2``: ``[pairs, d]``) and the human ``scores`` ``[pairs]``.

    Returns a correlation in ``[-1, 1]`` (tables report it x100).

    Examples:
        >>> e1 = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
        >>> e2 = np.array([[1.0, 0.1], [1.0, 1.0], [0.0, 1.0]])
        >>> sts_spearman(e1, e2, np.array([5.0, 3.0, 1.0]))
        1.0
    """
    return spearman(cosine_pairs(emb1, emb2), scores)


def retrieval_scores(
    queries: np.ndarray,
    candidates: np.ndarray,
    partner: np.ndarray,
    *,
    exclude: np.ndarray | None = None,
    ks: Sequence[int] = (1, 10),
    chunk: int = 1024,
) -> dict[str, float]:
    """Recall@k and MRR of finding each query's partner among all candidates by cosine.

    Args:
        queries: ``[q, d]`` query embeddings (a pair's first sentence).
        candidates: ``[c, d]`` candidate embeddings (every distinct second sentence).
        partner: ``[q]`` index of each query's partner in ``candidates``.
        exclude: ``[q]`` a candidate to leave out for each query (the query's own text when it
            is also a candidate), ``-1`` for none.
        ks: the cut-offs of recall@k.
        chunk: queries scored at a time (bounds memory to ``chunk x c`` floats).

    Ties count against the query: the rank is 1 + the number of other candidates scoring at
    least as high as the partner, so a degenerate embedding (all vectors equal) gets the worst
    rank, not the best. A NaN partner score gets the worst rank too.

    Returns:
        ``{"recall@1": ..., "recall@10": ..., "mrr": ...}`` as fractions in ``[0, 1]``.

    Examples:
        >>> q = np.array([[1.0, 0.0], [0.0, 1.0]])
        >>> retrieval_scores(q, q, np.array([0, 1]), ks=(1,))
        {'recall@1': 1.0, 'mrr': 1.0}
    """
    qn, cn = normalize_rows(queries), normalize_rows(candidates)
    partner = np.asarray(partner, dtype=np.int64)
    n_q, n_c = len(qn), len(cn)
    excl = np.full(n_q, -1, np.int64) if exclude is None else np.asarray(exclude, np.int64)
    ranks = np.empty(n_q, dtype=np.int64)
    for start in range(0, n_q, chunk):
        stop = min(n_q, start + chunk)
        sims = qn[start:stop] @ cn.T  # [chunk, c]
        rows = np.arange(stop - start)
        true = sims[rows, partner[start:stop]]
        ex = excl[start:stop]
        has_ex = ex >= 0
        sims[rows[has_ex], ex[has_ex]] = -np.inf
        at_least = (sims >= true[:, None]).sum(axis=1) - 1  # others scoring >= the partner
        rank = 1 + at_least
        rank[~np.isfinite(true)] = n_c
        ranks[start:stop] = rank
    out = {f"recall@{k}": float(np.mean(ranks <= k)) for k in ks}
    out["mrr"] = float(np.mean(1.0 / ranks))
    return out


def _linear_probe_score(X: np.ndarray, y: Sequence[Any], *, folds: int = 5, seed: int = 0) -> float:
    """Mean cross-validated accuracy of a linear probe on ``X`` ``[n, d]`` for labels ``y``.

    The one place the evaluation trains a probe: the probing package's ``LogisticProbe`` on
    standardised features, scored by stratified k-fold accuracy.
    """
    _eval_dep("sklearn")
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y_arr = np.asarray([str(v) for v in y])
    _, counts = np.unique(y_arr, return_counts=True)
    if len(counts) < 2:
        return float("nan")
    n_splits = int(min(folds, counts.min()))
    if n_splits < 2:
        raise EvaluationOptionError(
            f"a class has only {counts.min()} example(s): cross-validated classification needs at "
            "least 2 per class; drop rare classes or use more rows"
        )
    from ..probing import LogisticProbe

    probe = make_pipeline(StandardScaler(), LogisticProbe(max_iter=1000))
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    X = np.nan_to_num(np.asarray(X, dtype=np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings on degenerate layers
        scores = cross_val_score(probe, X, y_arr, cv=cv, scoring="accuracy")
    return float(np.mean(scores))


def classification_accuracy(
    X: np.ndarray, labels: Sequence[Any], *, folds: int = 5, seed: int = 0
) -> float:
    """Cross-validated accuracy of a linear probe (logistic regression) predicting ``labels``
    from ``X`` ``[n, d]``; a fraction in ``[0, 1]``."""
    return _linear_probe_score(X, labels, folds=folds, seed=seed)


def pair_classification_accuracy(
    emb1: np.ndarray, emb2: np.ndarray, labels: Sequence[Any], *, folds: int = 5, seed: int = 0
) -> float:
    """Accuracy of a linear probe on pair features ``[u, v, |u - v|, u * v]`` (SentEval's
    SICK-E recipe): predicts a pair label (entailment judgment) from the two embeddings."""
    u, v = np.asarray(emb1, np.float32), np.asarray(emb2, np.float32)
    features = np.concatenate([u, v, np.abs(u - v), u * v], axis=1)
    return _linear_probe_score(features, labels, folds=folds, seed=seed)


def clustering_v_measure(
    X: np.ndarray, labels: Sequence[Any], *, seed: int = 0, n_init: int = 10
) -> float:
    """V-measure of k-means clusters (k = number of labels, fixed ``seed``) of the L2-normalised
    rows of ``X`` against ``labels``; in ``[0, 1]``.

    Examples:
        >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> clustering_v_measure(X, ["a", "a", "b", "b"])
        1.0
    """
    _eval_dep("sklearn")
    from sklearn.cluster import KMeans
    from sklearn.metrics import v_measure_score

    y = np.asarray([str(v) for v in labels])
    k = len(np.unique(y))
    if k < 2:
        return float("nan")
    Xn = np.nan_to_num(normalize_rows(X)).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate points / fewer distinct points than k
        pred = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(Xn)
    return float(v_measure_score(y, pred))
