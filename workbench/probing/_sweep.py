"""Layer sweeps: one probe per hook point, cross-validated, with controls, CIs and MDL."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone

from ..activations.storelike import StoreLike
from ..errors import ProbeTargetError, StoreSelectionError
from . import _metrics as metrics
from ._batched import (
    LinearFits,
    Standardized,
    logistic_fits,
    ridge_fits,
    ridge_moments,
    standardize_rows,
)
from ._estimators import LogisticProbe, MassMeanProbe, MLPProbe, RidgeProbe

#: probe name -> factory ``(C, alpha, seed, standardize=True) -> estimator``; the defaults equal
#: scikit-learn's recipe (``StandardScaler`` + ``LogisticRegression(C)`` / ``Ridge(alpha)``)
PROBES: dict[str, Callable[..., Any]] = {
    "logistic": lambda C, alpha, seed, standardize=True: LogisticProbe(
        C=C, standardize=standardize
    ),
    "ridge": lambda C, alpha, seed, standardize=True: RidgeProbe(
        alpha=alpha, standardize=standardize
    ),
    "mass_mean": lambda C, alpha, seed, standardize=True: MassMeanProbe(),
    "mass_mean_iid": lambda C, alpha, seed, standardize=True: MassMeanProbe(covariance=True),
    "mlp": lambda C, alpha, seed, standardize=True: MLPProbe(random_state=seed),
}
REGRESSION_PROBES = ("ridge",)
#: Online-code block boundaries as fractions of the data (Voita & Titov, 2020).
MDL_FRACTIONS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0)
#: solver tolerance of the online code's prefix probes: codelengths within 0.5% of the exact
#: optimum's on cities (scikit-learn's default tol=1e-4 leaves them 1-2% off), at half the cost
MDL_TOL = 1e-5


@dataclass
class SweepResult:
    """What a sweep measured.

    Attributes:
        table: tidy ``pandas.DataFrame`` with columns ``pooling, hook_point, layer, probe,
            labels (task | control | majority), metric, value, low, high``.
        predictions: out-of-fold (or test-split) predictions per ``(pooling, hook_point)``:
            ``{"task": [n] or [n, t], "control": ...}``; NaN/-1 for rows never evaluated.
        directions: per ``(pooling, hook_point)``, the unit directions ``[k, d_model]`` of the
            probe trained on all training rows.
        weights: per ``(pooling, hook_point)``, ``(coef [k, d_model], intercept [k])`` of that
            probe, when it is linear.
        mdl: tidy MDL table (``pooling, hook_point, layer, labels, codelength_bits,
            uniform_bits, compression``) or None.
        config: the sweep's settings (JSON-serialisable).
    """

    table: Any
    predictions: dict[tuple[str, str], dict[str, np.ndarray]]
    directions: dict[tuple[str, str], np.ndarray]
    weights: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]
    mdl: Any
    config: dict[str, Any]
    seconds: float = 0.0
    classes: list[Any] = field(default_factory=list)

    @property
    def task_kind(self) -> str:
        return self.config["kind"]

    def curve(self, metric: str, labels: str = "task") -> Any:
        """``[hook points]`` rows of one metric (value, low, high), in sweep order."""
        t = self.table
        return t[(t.metric == metric) & (t.labels == labels)].reset_index(drop=True)

    def selectivity(self, metric: str | None = None) -> Any:
        """Task minus control, per hook point (Hewitt & Liang)."""
        metric = metric or self.main_metric
        task = self.curve(metric, "task").set_index(["pooling", "hook_point"])
        control = self.curve(metric, "control").set_index(["pooling", "hook_point"])
        out = task[["layer"]].copy()
        out["selectivity"] = task["value"] - control["value"].reindex(task.index)
        return out.reset_index()

    @property
    def main_metric(self) -> str:
        return "accuracy" if self.task_kind == "classification" else "r2"

    def best(self) -> dict[str, Any]:
        """Best hook point by raw score, by selectivity, and by MDL codelength."""
        metric = self.main_metric
        task = self.curve(metric)
        lower_is_better = metric in ("mae",)
        i = task["value"].idxmin() if lower_is_better else task["value"].idxmax()
        out: dict[str, Any] = {
            "metric": metric,
            "by_score": _row(task.loc[i]),
        }
        if "control" in set(self.table.labels):
            sel = self.selectivity(metric)
            j = sel["selectivity"].idxmax()
            out["by_selectivity"] = {**_row(sel.loc[j]), "value": float(sel.loc[j, "selectivity"])}
        if self.mdl is not None and len(self.mdl):
            m = self.mdl[self.mdl.labels == "task"].reset_index(drop=True)
            k = m["codelength_bits"].idxmin()
            out["by_codelength"] = {
                **_row(m.loc[k]),
                "codelength_bits": float(m.loc[k, "codelength_bits"]),
                "compression": float(m.loc[k, "compression"]),
            }
        return out

    def save(self, folder: str | Path) -> None:
        """``results.csv``, ``mdl.csv``, ``probes.safetensors`` + ``probes.json`` (which records
        the weights' sha256, checked by ``load_probe_weights``)."""
        from ..artifacts import atomic_write, save_tensors, write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / "results.csv", lambda f: self.table.to_csv(f, index=False), "w")
        if self.mdl is not None:
            atomic_write(folder / "mdl.csv", lambda f: self.mdl.to_csv(f, index=False), "w")
        tensors, index = {}, []
        for (pooling, hook), (coef, intercept) in self.weights.items():
            key = f"{pooling}/{hook}"
            tensors[f"{key}/coef"] = np.ascontiguousarray(coef, dtype=np.float32)
            tensors[f"{key}/intercept"] = np.ascontiguousarray(intercept, dtype=np.float32)
            index.append({"pooling": pooling, "hook_point": hook})
        files = {}
        if tensors:
            files[PROBE_WEIGHTS] = save_tensors(folder / PROBE_WEIGHTS, tensors)
        write_json(
            folder / "probes.json",
            {
                "config": self.config,
                "probes": index,
                "classes": self.classes,
                "best": self.best(),
                "seconds": self.seconds,
                "files": files,
            },
        )

    @classmethod
    def load(cls, folder: str | Path) -> SweepResult:
        """A result saved by ``save`` (e.g. ``runs/<name>/probes/<kind>`` of ``run_spec``):
        its table, MDL table, settings, classes and probe weights (``directions`` are the unit
        rows of the weights). Out-of-fold ``predictions`` are not saved: ``{}``.

        Raises:
            RunFolderError: the folder has no ``probes.json`` or ``results.csv``.
        """
        import pandas as pd

        from ..errors import RunFolderError

        folder = Path(folder)
        for name in ("probes.json", "results.csv"):
            if not (folder / name).is_file():
                raise RunFolderError(
                    f"{folder} has no {name}: pick a folder written by "
                    "SweepResult.save (runs/<name>/probes/<kind>), or rerun "
                    "the sweep"
                )
        tensors, meta = load_probe_weights(folder)
        weights: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        directions: dict[tuple[str, str], np.ndarray] = {}
        for entry in meta["probes"]:
            key = (entry["pooling"], entry["hook_point"])
            coef = tensors[f"{key[0]}/{key[1]}/coef"]
            weights[key] = (coef, tensors[f"{key[0]}/{key[1]}/intercept"])
            norms = np.linalg.norm(coef, axis=1, keepdims=True)
            directions[key] = coef / np.maximum(norms, 1e-12)
        mdl = pd.read_csv(folder / "mdl.csv") if (folder / "mdl.csv").is_file() else None
        return cls(
            table=pd.read_csv(folder / "results.csv"),
            predictions={},
            directions=directions,
            weights=weights,
            mdl=mdl,
            config=meta["config"],
            seconds=float(meta.get("seconds", 0.0)),
            classes=list(meta["classes"]),
        )


PROBE_WEIGHTS = "probes.safetensors"


def load_probe_weights(folder: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The probe weights saved by ``SweepResult.save`` in ``folder`` (``"{pooling}/{hook}/coef"``
    ``[k, d_model]`` and ``".../intercept"`` ``[k]``) and its ``probes.json``, after checking the
    weights' sha256 (``ArtifactCorruptError`` when damaged; a warning for older saves)."""
    from ..artifacts import load_tensors, read_json

    folder = Path(folder)
    fix = "run the probe sweep again to rewrite it (`workbench probe run`)"
    config = read_json(folder / "probes.json", "probe config", fix)
    if not config.get("probes"):  # probe kinds without linear weights save none
        return {}, config
    tensors = load_tensors(
        folder / PROBE_WEIGHTS, config.get("files", {}).get(PROBE_WEIGHTS), fix=fix, what="probe"
    )
    return tensors, config


def _row(row: Any) -> dict[str, Any]:
    return {
        "pooling": row["pooling"],
        "hook_point": row["hook_point"],
        "layer": None
        if row["layer"] is None or row["layer"] != row["layer"]
        else int(row["layer"]),
        **({"value": float(row["value"])} if "value" in row else {}),
    }


# ------------------------------------------------------------------------------------------------


def _labels_from(store: Any, target: Any) -> tuple[np.ndarray, list[str]]:
    """Target values ``[n]`` or ``[n, t]`` from column name(s) or an array."""
    if isinstance(target, str):
        return np.asarray(store.column(target)), [target]
    if isinstance(target, (list, tuple)) and target and all(isinstance(t, str) for t in target):
        return np.column_stack(
            [np.asarray(store.column(t), dtype=np.float64) for t in target]
        ), list(target)
    return np.asarray(target), ["target"]


def _missing(values: np.ndarray) -> np.ndarray:
    """``[n]`` True where a target value is missing: None, NaN or pandas' NA (any column of a
    multi-output row)."""
    if values.dtype.kind in "fc":
        return np.asarray(np.isnan(values.reshape(len(values), -1)).any(axis=1), dtype=bool)
    if values.dtype == object:
        import pandas as pd

        isna = np.asarray(pd.isna(values), dtype=bool).reshape(len(values), -1)
        return np.asarray(isna.any(axis=1), dtype=bool)
    return np.zeros(len(values), dtype=bool)


def make_folds(
    n: int, y: np.ndarray | None, cv: int, groups: np.ndarray | None, seed: int
) -> np.ndarray:
    """Fold id per row (``0..cv-1``): stratified when ``y`` is given, grouped when ``groups`` is."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    if cv < 2:
        raise ValueError(f"cv={cv}: cross-validation needs at least 2 folds")
    X = np.zeros((n, 1))
    if groups is not None:
        n_groups = len(np.unique(groups))
        if n_groups < cv:
            raise ProbeTargetError(f"only {n_groups} groups for cv={cv} folds: lower cv")
        splitter: Any = (
            StratifiedGroupKFold(cv, shuffle=True, random_state=seed)
            if y is not None
            else GroupKFold(cv)
        )
        splits = splitter.split(X, y, groups)
    elif y is not None:
        splits = StratifiedKFold(cv, shuffle=True, random_state=seed).split(X, y)
    else:
        splits = KFold(cv, shuffle=True, random_state=seed).split(X)
    folds = np.full(n, -1)
    for k, (_, test) in enumerate(splits):
        folds[test] = k
    return folds


def control_labels(y: np.ndarray, types: np.ndarray, classification: bool, seed: int) -> np.ndarray:
    """Hewitt & Liang control task: each type gets a random label from the label distribution
    (classification) or the target of a random row (regression); rows of a type share it."""
    rng = np.random.default_rng(seed + 7919)
    uniq, inverse = np.unique(types, return_inverse=True)
    if classification:
        values, counts = np.unique(y, return_counts=True)
        per_type = rng.choice(values, size=len(uniq), p=counts / counts.sum())
    else:
        per_type = y[rng.integers(0, len(y), size=len(uniq))]
    return per_type[inverse]


def _check_finite(name: str, values: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.nonzero(bad.reshape(len(values), -1).any(axis=1))[0]
        raise ProbeTargetError(
            f"{what} {name} has NaN or inf in {len(rows)} rows (e.g. {rows[:5].tolist()}): "
            "drop those rows (rows=...), or re-extract in float32 if they overflowed float16"
        )


def sweep(
    store: StoreLike,
    target: Any,
    *,
    probe: str | Any = "logistic",
    layers: Any = "all",
    hook_points: Sequence[str] | None = None,
    pooling: str | Sequence[str] = "last",
    cv: int = 5,
    groups: str | Sequence[Any] | None = None,
    split: str | Sequence[bool] | None = None,
    control: bool = True,
    control_types: str | Sequence[Any] | None = None,
    mdl: bool = False,
    C: float = 1.0,
    alpha: float | str = 1.0,
    n_boot: int = 1000,
    seed: int = 0,
    fast: bool = True,
    geo: bool | None = None,
    rows: Sequence[int] | None = None,
    progress: bool = False,
    standardize: bool = True,
    dropna: bool = False,
) -> SweepResult:
    """Train one probe per hook point of ``store`` and report metrics with CIs and controls.

    Args:
        store: an ``ActivationStore``, or any ``StoreLike`` (``token_dataset``'s word view).
        target: a label column name, a list of numeric column names (multi-output regression,
            e.g. ``["latitude", "longitude"]``), or an array with one value per row.
        probe: ``logistic``, ``ridge``, ``mass_mean``, ``mass_mean_iid``, ``mlp`` or any
            scikit-learn estimator (always fitted by the reference path).
        layers: residual layers to probe (default ``"all"``: every hook point in the store).
        hook_points: hook names to probe instead of ``layers``.
        pooling: stored pooling(s) to probe (``last``, ``mean``, ...).
        cv: k-fold cross-validation (stratified for classes) when ``split`` is not given.
        groups: column (or values) whose rows must stay in the same fold (e.g. ``"city"``).
        split: boolean column (or values), True for test rows (e.g. ``"is_test"``): one split.
        control: also run the Hewitt & Liang control task and report selectivity.
        control_types: column whose values are the control task's types (default: each row).
        mdl: online-code MDL (classification): codelength and compression per hook point.
        C: inverse regularisation of logistic probes, in scikit-learn's convention.
        alpha: regularisation of ridge probes, in scikit-learn's convention; ``"auto"`` picks
            it per fold by efficient leave-one-out over ``RIDGE_ALPHAS`` (``RidgeCV``).
        n_boot: bootstrap resamples for CIs (0 for none).
        seed: seed of the folds, bootstrap, control task and probes.
        fast: batched exact solvers for ``logistic`` and ``ridge`` (every fold and label set of
            a layer at once); False runs the scikit-learn estimators one fit at a time (the
            reference). Both reach the same optimum.
        geo: report great-circle km (default: when the targets are latitude and longitude).
        rows: restrict to these rows.
        progress: show a progress bar over hook points.
        standardize: logistic and ridge probes standardise each feature on each fold's train
            rows, i.e. ``make_pipeline(StandardScaler(), LogisticRegression(C))`` /
            ``Ridge(alpha)``, the recipe of the probing literature (default); False fits them on
            raw hidden states.
        dropna: drop rows whose target is missing (None/NaN); by default they are an error.

    Returns:
        A ``SweepResult``.
    """
    import pandas as pd

    t0 = time.perf_counter()
    y_raw, target_names = _labels_from(store, target)
    n_store = len(store)
    if len(y_raw) != n_store:
        raise ProbeTargetError(
            f"{len(y_raw)} target values for a store of {n_store} rows: labels must match the "
            "store's rows one to one (pass a column name of the store, or an array in row order)"
        )
    row_idx = np.arange(n_store) if rows is None else np.asarray(rows)
    missing = _missing(y_raw[row_idx])
    if missing.any():
        bad = row_idx[missing]
        if not dropna:
            raise ProbeTargetError(
                f"target {target_names} is missing (None/NaN) in {len(bad)} of {len(row_idx)} "
                f"rows (store rows {bad[:8].tolist()}{' ...' if len(bad) > 8 else ''}): drop "
                "them with dropna=True (in a spec: dropna = true), or fill in the labels"
            )
        row_idx = row_idx[~missing]
    estimator = None if isinstance(probe, str) else probe
    if isinstance(probe, str) and probe not in PROBES:
        raise ValueError(
            f"unknown probe {probe!r}: choose from {sorted(PROBES)} or pass an estimator"
        )
    probe_name = probe if isinstance(probe, str) else type(probe).__name__
    is_regression = (
        (probe in REGRESSION_PROBES)
        if isinstance(probe, str)
        else (getattr(probe, "_estimator_type", None) == "regressor")
    )
    y_all = y_raw[row_idx]
    if y_all.dtype == object and missing.any():  # None held the column as objects: retype it
        retyped = np.asarray(y_all.tolist())
        y_all = retyped if retyped.dtype != object else y_all
    classes: list[Any] = []
    y: np.ndarray  # [rows, targets] floats (regression) or [rows] class ids
    if is_regression:
        try:
            y = np.asarray(y_all, dtype=np.float64)
        except (TypeError, ValueError):
            raise ProbeTargetError(
                f"{probe_name} is a regression probe but target {target_names} is not numeric "
                f"(e.g. {y_all[:3].tolist()}): use a classifier probe such as 'logistic'"
            ) from None
        _check_finite(str(target_names), y, "target")
        y = y.reshape(len(y), -1)
    else:
        if y_all.dtype.kind == "f" and not np.all(np.isfinite(y_all)):
            _check_finite(str(target_names), y_all.astype(float), "target")
        if y_all.dtype.kind == "f" and len(np.unique(y_all)) > max(20, len(y_all) // 10):
            raise ProbeTargetError(
                f"target {target_names} looks continuous ({len(np.unique(y_all))} distinct "
                f"values) for the classifier {probe_name!r}: use probe='ridge' for regression"
            )
        uniq, y = np.unique(
            y_all.astype(str) if y_all.dtype == object else y_all, return_inverse=True
        )
        classes = [v.item() if hasattr(v, "item") else v for v in uniq]
        if len(classes) < 2:
            raise ProbeTargetError(
                f"target {target_names} has a single class ({classes[0]!r}) in the selected rows: "
                "a probe needs at least two classes"
            )
    n = len(row_idx)
    geo = geo if geo is not None else [t.lower() for t in target_names] == ["latitude", "longitude"]

    def column_or_values(spec: Any) -> np.ndarray | None:
        if spec is None:
            return None
        values = np.asarray(store.column(spec) if isinstance(spec, str) else spec)
        if len(values) != n_store:
            raise ProbeTargetError(f"{len(values)} values for a store of {n_store} rows")
        return values[row_idx]

    split_values = column_or_values(split)
    group_values = column_or_values(groups)
    if split_values is not None:
        test = split_values.astype(bool)
        if test.all() or not test.any():
            raise ProbeTargetError("the split has no train rows or no test rows")
        folds = np.where(test, 0, -1)
        n_folds = 1
    else:
        folds = make_folds(n, None if is_regression else y, cv, group_values, seed)
        n_folds = cv
    train_masks = np.stack([folds != k for k in range(n_folds)])
    if split_values is not None:
        train_masks = np.stack([~split_values.astype(bool)])
    fit_all = train_masks[0] if split_values is not None else np.ones(n, bool)
    masks = np.concatenate([train_masks, fit_all[None]])  # [K+1, n]

    label_sets = {"task": y}
    if control:
        types = column_or_values(control_types)
        types = np.arange(n) if types is None else types
        label_sets["control"] = control_labels(
            y if is_regression else y, types, not is_regression, seed
        )

    if hook_points is not None:
        hooks = list(hook_points)
    elif layers is None or (isinstance(layers, str) and layers.lower() == "all"):
        hooks = list(store.hook_points)  # every hook point the store holds
    else:
        idx = store.hook_index(layers, None)  # validates layers against the store
        hooks = [store.hook_points[i] for i in idx]
    poolings = [pooling] if isinstance(pooling, str) else list(pooling)
    for p in poolings:
        store.pooling(p)
    layer_of = {v: k for k, v in store.layers.items()}
    boot = metrics.bootstrap(int((folds >= 0).sum()), n_boot, seed)
    evaluated = folds >= 0

    records: list[dict[str, Any]] = []
    mdl_records: list[dict[str, Any]] = []
    predictions: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    directions: dict[tuple[str, str], np.ndarray] = {}
    weights: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    use_fast = fast and estimator is None and probe in ("ridge", "logistic")
    items = [(p, h) for p in poolings for h in hooks]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc=f"sweep {probe_name}", unit="layer")
    for pooling_name, hook in items:
        try:
            X = store.get(pooling_name, hook_points=[hook], rows=row_idx)[:, 0].astype(np.float32)
        except StoreSelectionError:
            raise
        _check_finite(hook, X, f"activations ({pooling_name})")
        preds: dict[str, np.ndarray] = {}
        prepared = standardize_rows(X) if use_fast and not is_regression else None
        fast_fits = (
            _fast_fit_predict(
                X,
                label_sets,
                masks,
                folds,
                n_folds,
                is_regression,
                len(classes),
                C,
                alpha,
                standardize,
                prepared,
            )
            if use_fast
            else None
        )
        for label_name, labels in label_sets.items():
            oof, full_coef = (
                fast_fits[label_name]
                if fast_fits is not None
                else _fit_predict(
                    X,
                    labels,
                    masks,
                    folds,
                    n_folds,
                    probe,
                    estimator,
                    is_regression,
                    len(classes),
                    C,
                    alpha,
                    seed,
                    standardize,
                )
            )
            preds[label_name] = oof
            if label_name == "task" and full_coef is not None:
                coef, intercept = full_coef
                weights[(pooling_name, hook)] = (coef, intercept)
                norms = np.linalg.norm(coef, axis=1, keepdims=True)
                directions[(pooling_name, hook)] = coef / np.maximum(norms, 1e-12)
            report = _report(labels, oof, evaluated, boot, is_regression, geo)
            for metric, est in report.items():
                records.append(
                    {
                        "pooling": pooling_name,
                        "hook_point": hook,
                        "layer": layer_of.get(hook),
                        "probe": probe_name,
                        "labels": label_name,
                        "metric": metric,
                        "value": est.value,
                        "low": est.low,
                        "high": est.high,
                    }
                )
        if mdl and not is_regression:
            codes = _online_codelengths(
                X, list(label_sets.values()), len(classes), C, seed, use_fast, standardize, prepared
            )
            for label_name, (bits, uniform) in zip(label_sets, codes, strict=True):
                mdl_records.append(
                    {
                        "pooling": pooling_name,
                        "hook_point": hook,
                        "layer": layer_of.get(hook),
                        "labels": label_name,
                        "codelength_bits": bits,
                        "uniform_bits": uniform,
                        "compression": uniform / bits,
                    }
                )
        predictions[(pooling_name, hook)] = preds
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    # majority / mean baseline: independent of the layer
    base_pred = np.zeros_like(y, dtype=np.float64) if is_regression else np.zeros(n, dtype=np.int64)
    for k in range(n_folds):
        train, test = masks[k], folds == k
        if is_regression:
            base_pred[test] = y[train].mean(axis=0)
        else:
            base_pred[test] = np.bincount(y[train], minlength=len(classes)).argmax()
    for metric, est in _report(
        y, base_pred, evaluated, boot, is_regression, geo, scores=False
    ).items():
        records.append(
            {
                "pooling": None,
                "hook_point": None,
                "layer": None,
                "probe": "majority" if not is_regression else "mean",
                "labels": "majority",
                "metric": metric,
                "value": est.value,
                "low": est.low,
                "high": est.high,
            }
        )
    config = {
        "probe": probe_name,
        "kind": "regression" if is_regression else "classification",
        "target": target_names,
        "poolings": poolings,
        "hook_points": hooks,
        "cv": None if split_values is not None else cv,
        "split": split if isinstance(split, str) else (None if split is None else "array"),
        "groups": groups if isinstance(groups, str) else (None if groups is None else "array"),
        "control": control,
        "control_types": control_types if isinstance(control_types, str) else None,
        "C": C,
        "alpha": alpha,
        "n_boot": n_boot,
        "seed": seed,
        "fast": use_fast,
        "geo": geo,
        "standardize": standardize,
        "dropna": dropna,
        "n_dropped": int(missing.sum()),
        "n_rows": n,
        "store": str(store.path),
        "store_identity": store.manifest.get("identity_hash"),
    }
    return SweepResult(
        table=pd.DataFrame.from_records(records),
        predictions=predictions,
        directions=directions,
        weights=weights,
        mdl=pd.DataFrame.from_records(mdl_records) if mdl else None,
        config=config,
        seconds=time.perf_counter() - t0,
        classes=classes,
    )


def _report(
    labels: np.ndarray,
    oof: np.ndarray,
    evaluated: np.ndarray,
    boot: metrics.Bootstrap | None,
    is_regression: bool,
    geo: bool,
    scores: bool = True,
) -> dict[str, metrics.Estimate]:
    y, p = labels[evaluated], oof[evaluated]
    if is_regression:
        return metrics.regression_report(y, p, boot, geo=geo)
    if p.ndim == 2:  # class scores or probabilities
        pred = p.argmax(axis=1)
        score = p[:, 1] - p[:, 0] if p.shape[1] == 2 else None
    else:
        pred, score = p.astype(np.int64), None
    return metrics.classification_report(y, pred, score if scores else None, boot)


def _fast_fit_predict(
    X: np.ndarray,
    label_sets: dict[str, np.ndarray],
    masks: np.ndarray,
    folds: np.ndarray,
    n_folds: int,
    is_regression: bool,
    n_classes: int,
    C: float,
    alpha: float | str,
    standardize: bool,
    prepared: Standardized | None = None,
) -> dict[str, tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]]:
    """``_fit_predict`` of every label set of one layer by the batched solvers: every fold and
    label set (task, control) in one call (ridge with ``alpha="auto"``: one call per label set,
    as each picks its own alpha)."""
    n, P = len(X), len(masks)
    names = list(label_sets)
    # per label set: (fits, first problem, columns of the fits' outputs)
    parts: dict[str, tuple[LinearFits, int, slice]] = {}
    if is_regression:
        moments = ridge_moments(X, masks)
        if isinstance(alpha, str):
            for name in names:
                fit = ridge_fits(X, label_sets[name], masks, alpha, moments, standardize)
                parts[name] = (fit, 0, slice(None))
        else:
            fit = ridge_fits(
                X, np.hstack([label_sets[m] for m in names]), masks, alpha, moments, standardize
            )
            start = 0
            for name in names:
                width = label_sets[name].shape[1]
                parts[name] = (fit, 0, slice(start, start + width))
                start += width
    else:
        y = np.concatenate([np.tile(label_sets[m], (P, 1)) for m in names])  # [L * P, n]
        fit = logistic_fits(
            X,
            y,
            np.tile(masks, (len(names), 1)),
            C,
            n_classes=n_classes,
            standardize=standardize,
            prepared=prepared,
        )
        parts = {name: (fit, i * P, slice(None)) for i, name in enumerate(names)}
    out: dict[str, tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]] = {}
    for name, (fit, first, cols) in parts.items():
        width = label_sets[name].shape[1] if is_regression else n_classes
        oof = np.full((n, width), np.nan)
        for k in range(n_folds):
            test = folds == k
            scores = fit.decision(X[test], first + k)[:, cols]
            oof[test] = (
                scores
                if is_regression or n_classes > 2
                else np.c_[-scores[:, 0] / 2, scores[:, 0] / 2]
            )
        last = first + P - 1  # the all-train-rows probe
        out[name] = (oof, (fit.coef[last][:, cols].T, fit.intercept[last][cols]))
    return out


def _fit_predict(
    X: np.ndarray,
    labels: np.ndarray,
    masks: np.ndarray,
    folds: np.ndarray,
    n_folds: int,
    probe: Any,
    estimator: Any,
    is_regression: bool,
    n_classes: int,
    C: float,
    alpha: float | str,
    seed: int,
    standardize: bool = True,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """Out-of-fold predictions (regression ``[n, t]``; classes ``[n, K]`` scores) and the
    all-train-rows probe's ``(coef [k, d], intercept [k])``, by scikit-learn estimators one fit
    at a time (the reference path)."""
    n = len(X)
    est = estimator if estimator is not None else PROBES[probe](C, alpha, seed, standardize)
    out = np.full((n, labels.shape[1]) if is_regression else (n, n_classes), np.nan)
    target = labels if not is_regression or labels.shape[1] > 1 else labels[:, 0]
    for k in range(n_folds):
        model = clone(est).fit(X[masks[k]], target[masks[k]])
        test = folds == k
        if is_regression:
            out[test] = np.asarray(model.predict(X[test])).reshape(int(test.sum()), -1)
        else:
            out[test] = _class_scores(model, X[test], n_classes)
    final = clone(est).fit(X[masks[-1]], target[masks[-1]])
    coef = getattr(final, "coef_", None)
    if coef is None:
        return out, None
    coef = np.atleast_2d(coef)
    return out, (coef, np.atleast_1d(getattr(final, "intercept_", np.zeros(len(coef)))))


def _class_scores(model: Any, X: np.ndarray, n_classes: int) -> np.ndarray:
    """``[n, K]`` class scores over all K classes (columns for classes absent from a fold stay
    very low)."""
    out = np.full((len(X), n_classes), -np.inf)
    cols = np.asarray(model.classes_, dtype=np.int64)
    if hasattr(model, "predict_proba"):
        out[:, cols] = np.log(np.clip(model.predict_proba(X), 1e-12, 1))
    else:
        pred = model.predict(X).astype(np.int64)
        out[np.arange(len(X)), pred] = 0.0
    return out


def online_codelength(
    X: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    C: float,
    seed: int,
    fast: bool,
    standardize: bool = True,
) -> tuple[float, float]:
    """Online (prequential) codelength in bits of ``labels`` given ``X`` (Voita & Titov, 2020).

    Rows are shuffled with ``seed``; the first block is sent with the uniform code, each later
    block with a probe (``LogisticProbe(C, standardize)``) trained on all rows before it.
    Returns ``(codelength, uniform)``.
    """
    return _online_codelengths(X, [labels], n_classes, C, seed, fast, standardize)[0]


def _online_codelengths(
    X: np.ndarray,
    label_sets: Sequence[np.ndarray],
    n_classes: int,
    C: float,
    seed: int,
    fast: bool,
    standardize: bool = True,
    prepared: Standardized | None = None,
) -> list[tuple[float, float]]:
    """``online_codelength`` of several label vectors ``[n]`` of the same rows (task, control):
    the fast path fits every prefix of every label set in one batched call, sharing each
    prefix's preconditioner between the label sets (``prepared``: ``standardize_rows(X)``)."""
    n = len(X)
    order = np.random.default_rng(seed + 104729).permutation(n)
    ends = sorted({max(2 * n_classes, int(round(f * n))) for f in MDL_FRACTIONS} | {n})
    ends = [e for e in ends if e <= n]
    uniform = n * np.log2(n_classes)
    Xo = X[order]
    blocks = list(zip(ends[:-1], ends[1:], strict=True))
    ordered = [np.asarray(labels)[order] for labels in label_sets]
    batched: dict[tuple[int, int], np.ndarray] = {}  # (label set, block) -> class scores
    if fast and n_classes == 2:
        # every (label set, prefix) with both classes in one batched fit; the prefixes range
        # from a few rows to half the data, so each prefix gets its own preconditioner
        jobs = [
            (j, i)
            for j, yo in enumerate(ordered)
            for i, (start, _) in enumerate(blocks)
            if len(np.unique(yo[:start])) == 2
        ]
        if jobs:
            rows = np.arange(n)
            prefixes = np.stack([rows < blocks[i][0] for _, i in jobs])
            fit = logistic_fits(
                Xo,
                np.stack([ordered[j] for j, _ in jobs]),
                prefixes,
                C,
                standardize=standardize,
                precondition="each",
                tol=MDL_TOL,
                prepared=None if prepared is None else prepared.rows(order),
            )
            for p, (j, i) in enumerate(jobs):
                start, stop = blocks[i]
                z = fit.decision(Xo[start:stop], p)[:, 0]
                batched[(j, i)] = np.c_[-z / 2, z / 2]
    out = []
    for j, yo in enumerate(ordered):
        bits = ends[0] * np.log2(n_classes)
        for i, (start, stop) in enumerate(blocks):
            block_X, block_y = Xo[start:stop], yo[start:stop]
            train_y = yo[:start]
            if len(np.unique(train_y)) < 2:
                bits += (stop - start) * np.log2(n_classes)
                continue
            if (j, i) in batched or fast:
                if (j, i) in batched:
                    z = batched[(j, i)]
                else:  # multi-class: each prefix on its own rows, over the classes seen so far
                    present = np.unique(train_y)
                    codes = np.searchsorted(present, train_y)
                    fit = logistic_fits(
                        Xo[:start],
                        codes[None],
                        np.ones((1, start), bool),
                        C,
                        n_classes=max(len(present), 2),
                        standardize=standardize,
                    )
                    z_present = fit.decision(block_X, 0)
                    if len(present) == 2:
                        z_present = np.c_[-z_present[:, 0] / 2, z_present[:, 0] / 2]
                    z = np.full((len(block_X), n_classes), -np.inf)
                    z[:, present] = z_present  # unseen classes get probability 0 (floored)
                logp = np.maximum(
                    z[np.arange(len(block_y)), block_y] - np.logaddexp.reduce(z, axis=1),
                    np.log(1e-12),
                )
            else:
                model = LogisticProbe(C=C, standardize=standardize).fit(Xo[:start], train_y)
                proba = np.full((len(block_X), n_classes), 1e-12)
                proba[:, np.asarray(model.classes_, dtype=np.int64)] = model.predict_proba(block_X)
                logp = np.log(np.clip(proba[np.arange(len(block_y)), block_y], 1e-12, 1))
            bits += float(-logp.sum() / np.log(2))
        out.append((float(bits), float(uniform)))
    return out


def sweep_summary(result: SweepResult) -> str:
    """A few lines for the terminal and report.md."""
    best = result.best()
    lines = [
        f"probe {result.config['probe']} on {result.config['target']} "
        f"({result.config['kind']}, {result.config['n_rows']} rows, {result.seconds:.1f} s)"
    ]
    b = best["by_score"]
    lines.append(
        f"best by {best['metric']}: {b['hook_point']} (layer {b['layer']}, "
        f"{b['pooling']}) = {b['value']:.4f}"
    )
    if "by_selectivity" in best:
        s = best["by_selectivity"]
        lines.append(
            f"best by selectivity: {s['hook_point']} (layer {s['layer']}) = {s['value']:.4f}"
        )
    if "by_codelength" in best:
        c = best["by_codelength"]
        lines.append(
            f"best by MDL codelength: {c['hook_point']} (layer {c['layer']}) = "
            f"{c['codelength_bits']:.0f} bits, compression {c['compression']:.2f}"
        )
    t = result.table
    base = t[t.labels == "majority"]
    if len(base):
        m = base[base.metric == best["metric"]]
        if len(m):
            lines.append(
                f"baseline ({m.iloc[0]['probe']}): {best['metric']} = {m.iloc[0]['value']:.4f}"
            )
    return "\n".join(lines)


def to_json(result: SweepResult) -> str:
    return json.dumps({"config": result.config, "best": result.best()}, indent=2, default=str)
