"""Probes (scikit-learn estimators), layer sweeps with controls, and causal checks.

>>> from workbench.probing import sweep                                       # doctest: +SKIP
>>> result = sweep(store, "label", probe="logistic", groups="city", mdl=True)  # doctest: +SKIP
>>> result.best()                                                             # doctest: +SKIP
"""

from . import report
from ._batched import logistic_fits, ridge_fits
from ._causal import CausalCheck, steer
from ._estimators import LogisticProbe, MassMeanProbe, MLPProbe, RidgeProbe
from ._generalisation import generalisation_matrix
from ._metrics import great_circle_km
from ._runner import run_spec
from ._spec import ProbeSpec, apply_overrides, load_spec, parse_spec
from ._sweep import (
    PROBES,
    SweepResult,
    control_labels,
    load_probe_weights,
    make_folds,
    online_codelength,
    sweep,
    sweep_summary,
)
from ._tokens import WordView, token_dataset

__all__ = [
    "PROBES",
    "ProbeSpec",
    "apply_overrides",
    "parse_spec",
    "report",
    "generalisation_matrix",
    "load_probe_weights",
    "load_spec",
    "run_spec",
    "CausalCheck",
    "LogisticProbe",
    "MLPProbe",
    "MassMeanProbe",
    "RidgeProbe",
    "SweepResult",
    "control_labels",
    "great_circle_km",
    "logistic_fits",
    "make_folds",
    "online_codelength",
    "ridge_fits",
    "steer",
    "sweep",
    "token_dataset",
    "WordView",
    "sweep_summary",
]
