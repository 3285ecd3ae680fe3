"""Probe estimators: scikit-learn estimators over activations ``[n_samples, d_model]``.

Each follows the estimator contract (``__init__`` stores hyperparameters, ``fit`` returns
``self``, learned state ends in ``_``) so ``Pipeline``, ``cross_val_score`` and ``GridSearchCV``
work, and each exposes its direction(s) in model space (``directions_``, ``[k, d_model]``) for
steering, projections and the dashboard.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, Ridge, RidgeCV
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import ProbeTargetError
from ._batched import RIDGE_ALPHAS


def _classification_targets(y: Any, name: str) -> None:
    """Reject a continuous target given to a classifier with a message that says what to do."""
    try:
        check_classification_targets(y)
    except ValueError as exc:
        raise ProbeTargetError(
            f"{name} is a classifier, but the target is not class labels ({exc}; e.g. "
            f"{np.ravel(y)[:3]}): use RidgeProbe for continuous targets such as latitude"
        ) from None


def _fitted_input(estimator: Any, X: Any) -> np.ndarray:
    """Check ``estimator`` is fitted and validate ``X`` against what it was fitted on."""
    check_is_fitted(estimator)
    return validate_data(estimator, X, reset=False, dtype=[np.float64, np.float32])


def _unit_rows(w: np.ndarray) -> np.ndarray:
    w = np.atleast_2d(w)
    return w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)


def _scaled(model: Any, standardize: bool) -> Any:
    """``model`` behind a ``StandardScaler`` when ``standardize`` (scikit-learn's recipe)."""
    return make_pipeline(StandardScaler(), model) if standardize else model


def _raw_weights(fitted: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(coef, intercept)`` of a fitted linear model, or of ``StandardScaler`` + linear model,
    in raw feature units: ``x @ coef.T + intercept`` equals the model's decision function."""
    if isinstance(fitted, Pipeline):
        scaler, model = fitted[0], fitted[-1]
        coef = np.asarray(model.coef_) / scaler.scale_
        intercept = np.asarray(model.intercept_) - coef @ scaler.mean_
        return coef, intercept
    return np.asarray(fitted.coef_), np.asarray(fitted.intercept_)


class _Delegating:
    """``predict`` by the fitted scikit-learn model in ``_model`` (after checking ``X`` against
    what the probe was fitted on), and ``directions_`` from ``coef_``."""

    # set by the subclass's fit (declared, not assigned: unfitted probes have neither)
    _model: Any
    coef_: np.ndarray

    def _delegate(self, method: str, X: Any) -> np.ndarray:
        X = _fitted_input(self, X)  # NotFittedError before _model is looked up
        return getattr(self._model, method)(X)

    def predict(self, X: Any) -> np.ndarray:
        return self._delegate("predict", X)

    @property
    def directions_(self) -> np.ndarray:
        check_is_fitted(self)
        return _unit_rows(self.coef_)


class LogisticProbe(_Delegating, ClassifierMixin, BaseEstimator):
    """L2-regularised logistic regression probe on standardised features.

    The default is the recipe of the probing literature, and equals scikit-learn's
    ``make_pipeline(StandardScaler(), LogisticRegression(C=C))``; ``standardize=False`` is
    ``LogisticRegression(C=C)`` on the raw hidden states (whose outlier dimensions make the
    same ``C`` a much weaker penalty, and scikit-learn's solver slow to converge).

    Args:
        C: inverse regularisation strength (scikit-learn's convention).
        Cs: when given (a list, or an int for a log grid), ``C`` is chosen by inner
            cross-validation over these values (``cv`` folds).
        cv: folds of the inner cross-validation.
        max_iter: solver iterations.
        class_weight: as in scikit-learn (``"balanced"`` for skewed classes).
        standardize: scale each feature to zero mean and unit variance on the training rows.

    Attributes:
        classes_: the class labels.
        coef_: ``[1 or n_classes, d_model]`` weights in raw feature units (the scaler folded
            in: ``X @ coef_.T + intercept_`` is the decision function); ``intercept_``.
        C_: the regularisation used (chosen when ``Cs`` is given).
        directions_: unit-norm weight vectors in model space, ``[1 or n_classes, d_model]``.

    Examples:
        >>> import numpy as np
        >>> X = np.r_[np.random.default_rng(0).normal(0, 1, (20, 4)) + 2,
        ...           np.random.default_rng(1).normal(0, 1, (20, 4)) - 2]
        >>> y = np.r_[np.ones(20), np.zeros(20)]
        >>> LogisticProbe().fit(X, y).score(X, y)
        1.0
    """

    def __init__(
        self,
        C: float = 1.0,
        Cs: int | Sequence[float] | None = None,
        cv: int = 5,
        max_iter: int = 1000,
        class_weight: str | dict[Any, float] | None = None,
        standardize: bool = True,
    ) -> None:
        self.C = C
        self.Cs = Cs
        self.cv = cv
        self.max_iter = max_iter
        self.class_weight = class_weight
        self.standardize = standardize

    def fit(self, X: Any, y: Any) -> LogisticProbe:
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        _classification_targets(y, type(self).__name__)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ProbeTargetError(
                f"only one class ({self.classes_[0]!r}) in the training labels: a probe needs at "
                "least two; check the label column and the split"
            )
        if self.Cs is not None:
            inner: Any = LogisticRegressionCV(
                Cs=self.Cs, cv=self.cv, max_iter=self.max_iter, class_weight=self.class_weight
            )
        else:
            inner = LogisticRegression(
                C=self.C, max_iter=self.max_iter, class_weight=self.class_weight
            )
        model = _scaled(inner, self.standardize).fit(X, y)
        fitted = model[-1] if self.standardize else model
        self.C_ = float(np.atleast_1d(fitted.C_)[0]) if self.Cs is not None else float(self.C)
        self.coef_, self.intercept_ = _raw_weights(model)
        self.n_iter_ = fitted.n_iter_
        self._model = model
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        return self._delegate("decision_function", X)

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._delegate("predict_proba", X)


class RidgeProbe(_Delegating, RegressorMixin, BaseEstimator):
    """Ridge regression probe for continuous and multi-output targets (latitude + longitude).

    The default equals scikit-learn's ``make_pipeline(StandardScaler(), Ridge(alpha=alpha))``;
    ``alpha="auto"`` equals ``make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))``
    (efficient leave-one-out selection of one alpha, as in Gurnee & Tegmark's "Language Models
    Represent Space and Time"); ``standardize=False`` is ``Ridge(alpha)`` on raw features.

    Args:
        alpha: L2 penalty (scikit-learn's convention), or ``"auto"``.
        alphas: the grid of ``alpha="auto"`` (default ``RIDGE_ALPHAS``, 1e-2 .. 1e6); giving it
            implies ``"auto"``.
        standardize: scale each feature to zero mean and unit variance on the training rows.

    Attributes:
        coef_: ``[d_model]`` or ``[n_targets, d_model]`` in raw feature units; ``intercept_``;
        alpha_: the penalty used (chosen when ``alpha="auto"``).
        directions_: unit-norm weight vectors, ``[n_targets, d_model]``.
    """

    def __init__(
        self,
        alpha: float | str = 1.0,
        alphas: Sequence[float] | None = None,
        standardize: bool = True,
    ) -> None:
        self.alpha = alpha
        self.alphas = alphas
        self.standardize = standardize

    def fit(self, X: Any, y: Any) -> RidgeProbe:
        X, y = validate_data(
            self, X, y, multi_output=True, y_numeric=True, dtype=[np.float64, np.float32]
        )
        auto = self.alphas is not None or self.alpha == "auto"
        if isinstance(self.alpha, str) and self.alpha != "auto":
            raise ValueError(f"alpha={self.alpha!r}: pass a number >= 0 or 'auto'")
        inner: Any = (
            RidgeCV(alphas=self.alphas if self.alphas is not None else RIDGE_ALPHAS)
            if auto
            else Ridge(alpha=self.alpha)
        )
        model = _scaled(inner, self.standardize).fit(X, y)
        fitted = model[-1] if self.standardize else model
        self.alpha_ = float(fitted.alpha_) if auto else float(self.alpha)
        self.coef_, self.intercept_ = _raw_weights(model)
        self._model = model
        return self

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class MassMeanProbe(ClassifierMixin, BaseEstimator):
    """Difference-of-class-means probe ("The Geometry of Truth", Marks & Tegmark 2023).

    The direction is ``theta = mean(X | y=1) - mean(X | y=0)``; the score of ``x`` is
    ``theta . (x - (mean(X | y=1) + mean(X | y=0)) / 2)``: the threshold sits midway between the
    projected class means, as in the paper (there is no scikit-learn estimator for it; the
    nearest is ``NearestCentroid`` projected on ``theta``). ``predict_proba`` is the sigmoid of
    that score. With ``covariance=True`` it is the
    in-distribution variant ``Sigma^-1 theta``, ``Sigma`` the pooled within-class covariance
    shrunk towards its mean eigenvalue by ``shrinkage`` (needed when ``n < d_model``).
    Binary labels only.

    Attributes:
        classes_, direction_ (``[d_model]``, unnormalised), directions_ (``[1, d_model]``,
        unit norm), coef_ (``[1, d_model]``, ``theta``), intercept_ (``[1]``, minus the
        projected midpoint).
    """

    def __init__(self, covariance: bool = False, shrinkage: float = 0.1) -> None:
        self.covariance = covariance
        self.shrinkage = shrinkage

    def fit(self, X: Any, y: Any) -> MassMeanProbe:
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        _classification_targets(y, type(self).__name__)
        self.classes_ = np.unique(y)
        if len(self.classes_) != 2:
            raise ProbeTargetError(
                "Only binary classification is supported. MassMeanProbe needs exactly two "
                f"classes, got {len(self.classes_)} class{'es' if len(self.classes_) > 1 else ''} "
                f"({self.classes_[:5].tolist()}): use LogisticProbe for multi-class targets"
            )
        if not 0.0 <= self.shrinkage <= 1.0:
            raise ValueError(f"shrinkage={self.shrinkage} must be within [0, 1]")
        X = np.asarray(X, dtype=np.float64)
        pos, neg = X[y == self.classes_[1]], X[y == self.classes_[0]]
        theta = pos.mean(axis=0) - neg.mean(axis=0)
        if self.covariance:
            centred = np.vstack([pos - pos.mean(axis=0), neg - neg.mean(axis=0)])
            sigma = centred.T @ centred / max(len(X) - 2, 1)
            target = np.trace(sigma) / sigma.shape[0]
            sigma = (1 - self.shrinkage) * sigma + self.shrinkage * target * np.eye(len(sigma))
            theta = np.linalg.solve(sigma, theta)
        self.direction_ = theta
        midpoint = (pos.mean(axis=0) + neg.mean(axis=0)) / 2
        self.coef_ = theta[None, :]
        self.intercept_ = np.array([-float(theta @ midpoint)])
        return self

    @property
    def directions_(self) -> np.ndarray:
        check_is_fitted(self)
        return _unit_rows(self.direction_)

    def decision_function(self, X: Any) -> np.ndarray:
        X = _fitted_input(self, X)
        return np.asarray(X, dtype=np.float64) @ self.coef_[0] + self.intercept_[0]

    def predict_proba(self, X: Any) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-np.clip(self.decision_function(X), -500, 500)))
        return np.c_[1 - p, p]

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return self.classes_[(self.decision_function(X) > 0).astype(int)]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags


class MLPProbe(_Delegating, ClassifierMixin, BaseEstimator):
    """A small non-linear baseline: one hidden ReLU layer, early stopping.

    Report it beside the linear probes: a large gap says the information is there but not
    linearly. ``directions_`` are the first layer's unit-norm input weights ``[hidden, d_model]``.
    """

    def __init__(
        self, hidden: int = 128, alpha: float = 1e-3, max_iter: int = 300, random_state: int = 0
    ) -> None:
        self.hidden = hidden
        self.alpha = alpha
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> MLPProbe:
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        _classification_targets(y, type(self).__name__)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ProbeTargetError("only one class in the training labels: a probe needs two")
        early = len(X) >= 50
        self._model = MLPClassifier(
            hidden_layer_sizes=(self.hidden,),
            alpha=self.alpha,
            max_iter=self.max_iter,
            early_stopping=early,
            random_state=self.random_state,
        ).fit(X, y)
        self.n_iter_ = self._model.n_iter_
        return self

    @property
    def directions_(self) -> np.ndarray:
        check_is_fitted(self)
        return _unit_rows(self._model.coefs_[0].T)

    def predict_proba(self, X: Any) -> np.ndarray:
        return self._delegate("predict_proba", X)
