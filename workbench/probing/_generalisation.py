"""Generalisation across datasets: train a probe on one store, test it on another, per layer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import clone

from ..activations.storelike import StoreLike
from ..errors import ProbeTargetError
from ._sweep import PROBES, REGRESSION_PROBES, SweepResult, sweep


def _hooks(stores: Mapping[str, StoreLike], layers: Any) -> list[str]:
    """Hook points held by every store, in the first store's order."""
    per_store = []
    for store in stores.values():
        if layers is None:
            names = list(store.hook_points)
        else:
            names = [store.hook_points[i] for i in store.hook_index(layers, None)]
        per_store.append(names)
    common = [h for h in per_store[0] if all(h in names for names in per_store[1:])]
    if not common:
        listing = "; ".join(
            f"{k}: {len(v)} hook points" for k, v in zip(stores, per_store, strict=True)
        )
        raise ProbeTargetError(
            f"the stores share no hook point ({listing}): extract them with the same layers"
        )
    return common


def generalisation_matrix(
    stores: Mapping[str, StoreLike],
    target: str,
    probe: str | Any = "logistic",
    layers: Any = None,
    pooling: str = "last",
    C: float = 1.0,
    *,
    cv: int = 5,
    groups: str | None = None,
    seed: int = 0,
    sweeps: Mapping[str, SweepResult] | None = None,
) -> Any:
    """Accuracy of a probe trained on each store and tested on each store, per hook point.

    On the diagonal (train == test) the value is the sweep's cross-validated accuracy (taken
    from ``sweeps[name]`` when given, else computed with ``cv`` folds grouped by ``groups``);
    off the diagonal the probe is trained on every row of the train store and scored on every
    row of the test store at the same hook point.

    Args:
        stores: name -> ``ActivationStore`` (e.g. ``{"cities": a, "neg_cities": b}``), each
            with the ``target`` column.
        target: the class column (same label values in every store).
        probe: a classifier kind (``logistic``, ``mass_mean``, ``mass_mean_iid``, ``mlp``) or
            a scikit-learn classifier.
        layers: residual layers to use (default: every hook point all stores hold).
        pooling: the stored pooling to read.
        C: logistic regularisation.
        cv: cross-validation folds of the diagonal.
        groups: column whose rows stay in one fold on the diagonal.
        seed: seed of the diagonal's fold split.
        sweeps: precomputed ``SweepResult`` per store name for the diagonal.

    Returns:
        A ``pandas.DataFrame`` with columns ``train, test, layer, hook_point, accuracy``: one
        row per (train, test, hook point), in the order of ``stores`` and of the hook points.

    Examples:
        >>> df = generalisation_matrix({"cities": s1, "neg_cities": s2}, "label")  # doctest: +SKIP
        >>> df.pivot_table("accuracy", "train", "test", aggfunc="max")  # doctest: +SKIP
    """
    import pandas as pd

    if not stores:
        raise ValueError("stores is empty: pass at least one name -> ActivationStore")
    if isinstance(probe, str):
        if probe in REGRESSION_PROBES or probe not in PROBES:
            valid = [p for p in PROBES if p not in REGRESSION_PROBES]
            raise ValueError(
                f"probe {probe!r} cannot be scored by accuracy: choose a classifier "
                f"from {valid} or pass a scikit-learn classifier"
            )
        estimator = PROBES[probe](C, 1.0, seed)
    else:
        estimator = probe
    hooks = _hooks(stores, layers)
    names = list(stores)
    labels = {name: np.asarray(stores[name].column(target)) for name in names}
    layer_of = {v: k for k, v in next(iter(stores.values())).layers.items()}

    diagonal: dict[tuple[str, str], float] = {}
    for name in names:
        result = (sweeps or {}).get(name)
        if result is None:
            result = sweep(
                stores[name],
                target,
                probe=probe,
                hook_points=hooks,
                pooling=pooling,
                cv=cv,
                groups=groups,
                control=False,
                n_boot=0,
                C=C,
                seed=seed,
            )
        acc = result.curve("accuracy")
        acc = acc[acc.pooling == pooling]
        diagonal.update(
            {(name, h): float(v) for h, v in zip(acc.hook_point, acc.value, strict=True)}
        )
        missing = [h for h in hooks if (name, h) not in diagonal]
        if missing:
            raise ProbeTargetError(
                f"the sweep given for {name!r} has no accuracy at {missing[:3]}"
                f" ({pooling}): pass sweeps of the same hook points"
            )

    records: list[dict[str, Any]] = []
    for hook in hooks:
        X = {
            name: stores[name].get(pooling, hook_points=[hook])[:, 0].astype(np.float32)
            for name in names
        }
        for train in names:
            model = None
            for test in names:
                if test == train:
                    accuracy = diagonal[(train, hook)]
                else:
                    if model is None:
                        model = clone(estimator).fit(X[train], labels[train])
                    accuracy = float(np.mean(model.predict(X[test]) == labels[test]))
                records.append(
                    {
                        "train": train,
                        "test": test,
                        "layer": layer_of.get(hook),
                        "hook_point": hook,
                        "accuracy": accuracy,
                    }
                )
    order = {(r["train"], r["test"]): i for i, r in enumerate(records[: len(names) ** 2])}
    records.sort(key=lambda r: order[(r["train"], r["test"])])  # stable: hooks stay in order
    return pd.DataFrame.from_records(
        records, columns=["train", "test", "layer", "hook_point", "accuracy"]
    )
