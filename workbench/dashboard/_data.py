"""Reading run folders for the dashboard: stores, probe experiments, embedding grids, and one
probe layer's out-of-fold predictions (a one-layer ``workbench.probing.sweep``).

Plain functions without streamlit; ``_cache.py`` wraps them in ``st.cache_data``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunFolderError, WorkbenchError

_SKIP = {"shards", "figures", "probes", ".git"}


def _walk(root: Path, marker: str, depth: int = 4) -> list[Path]:
    """Folders under ``root`` (``root`` included, ``depth`` levels) holding ``marker``."""
    found: list[Path] = []

    def visit(folder: Path, level: int) -> None:
        if (folder / marker).is_file():
            found.append(folder)
        if level >= depth:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in _SKIP)
        except OSError:
            return
        for child in children:
            visit(child, level + 1)

    if root.is_dir():
        visit(root, 0)
    return found


def signature(root: Path) -> tuple[tuple[str, float], ...]:
    """Modification times of every manifest/summary under ``root``: a cache key that changes
    when a run is added or finishes."""
    out = []
    for marker in ("manifest.json", "summary.json"):
        for folder in _walk(root, marker):
            out.append((str(folder / marker), (folder / marker).stat().st_mtime))
    return tuple(sorted(out))


_FIXES = {
    "manifest.json": "rerun the same `workbench extract ... --out {folder}` (it resumes from the "
    "finished shards and rewrites the manifest), or delete the folder",
    "summary.json": "rerun `workbench probe run` on the experiment's spec with outputs.dir "
    "{folder}, or delete the folder",
}


def _problem(path: Path, required: tuple[str, ...]) -> tuple[dict[str, Any] | None, str | None]:
    """``(parsed JSON, None)`` or ``(None, what is wrong)`` for a manifest or summary."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    except UnicodeDecodeError:
        return None, "is not UTF-8 text"
    except ValueError as exc:
        return None, f"is not valid JSON ({exc})"
    if not isinstance(data, dict):
        return None, f"holds a {type(data).__name__}, not a JSON object"
    missing = [k for k in required if not isinstance(data.get(k), dict)]
    if missing:
        return None, f"lacks the sections {missing}"
    return data, None


def find_damaged(root: Path) -> list[dict[str, Any]]:
    """Runs under ``root`` whose ``manifest.json`` or ``summary.json`` cannot be used: one row
    each with the folder, the file, what is wrong and how to fix it (they are listed, not
    dropped)."""
    rows = []
    for marker, required in (
        ("manifest.json", ("model", "dataset", "extraction")),
        ("summary.json", ()),
    ):
        for folder in _walk(root, marker):
            _, problem = _problem(folder / marker, required)
            if problem is not None:
                rows.append(
                    {
                        "run": str(folder.relative_to(root)) if folder != root else ".",
                        "file": marker,
                        "problem": f"{marker} {problem}",
                        "fix": _FIXES[marker].format(folder=folder),
                        "path": str(folder),
                    }
                )
    return rows


def find_stores(root: Path) -> list[dict[str, Any]]:
    """One row per activation store under ``root`` (from its ``manifest.json``); damaged ones
    are in ``find_damaged``."""
    rows = []
    for folder in _walk(root, "manifest.json"):
        m, problem = _problem(folder / "manifest.json", ("model", "dataset", "extraction"))
        if m is None or problem is not None:
            continue
        model, data, spec = m["model"], m["dataset"], m["extraction"]
        rows.append(
            {
                "store": str(folder.relative_to(root)) if folder != root else ".",
                "status": m.get("status"),
                "model": model.get("spec"),
                "d_model": model.get("d_model"),
                "dataset": data.get("name"),
                "rows": data.get("n_rows"),
                "hook points": len(spec.get("hook_points", [])),
                "poolings": ", ".join(spec.get("poolings", [])),
                "template": spec.get("template") or "",
                "finished": m.get("finished") or "",
                "path": str(folder),
            }
        )
    return rows


def _summaries(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """``(folder, summary.json)`` of every folder under ``root`` with a ``results.csv``."""
    out = []
    for folder in _walk(root, "summary.json"):
        s, problem = _problem(folder / "summary.json", ())
        if s is None or problem is not None:
            continue
        if (folder / "results.csv").is_file():
            out.append((folder, s))
    return out


def find_experiments(root: Path) -> list[dict[str, Any]]:
    """Probe experiments (``workbench probe run`` folders: ``summary.json`` with ``kinds``)."""
    return [
        {
            "experiment": s.get("name", folder.name),
            "model": s.get("model", {}).get("name"),
            "dataset": s.get("dataset", {}).get("name"),
            "rows": s.get("n_rows"),
            "task": s.get("task"),
            "probes": ", ".join(s.get("kinds", {})),
            "generalisation": (folder / "generalisation.csv").is_file(),
            "path": str(folder),
        }
        for folder, s in _summaries(root)
        if "kinds" in s
    ]


def find_grids(root: Path) -> list[dict[str, Any]]:
    """Embedding-quality grids (``evaluate_grid`` folders: ``results.csv`` with ``postprocess``)."""
    return [
        {
            "grid": str(folder.relative_to(root)) if folder != root else ".",
            "model": s.get("model"),
            "task": s.get("task"),
            "metric": s.get("metric"),
            "path": str(folder),
        }
        for folder, s in _summaries(root)
        if "postprocess" in s
    ]


def read_summary(folder: Path) -> dict[str, Any]:
    """``summary.json`` of a probe experiment or grid."""
    path = Path(folder) / "summary.json"
    if not path.is_file():
        raise RunFolderError(
            f"{folder} has no summary.json: pick a folder written by "
            "`workbench probe run` or `workbench embed eval`"
        )
    return json.loads(path.read_text())


def probe_result(folder: Path, kind: str) -> Any:
    """One probe kind of an experiment (``SweepResult.load`` of ``probes/<kind>``)."""
    from ..probing import SweepResult

    return SweepResult.load(Path(folder) / "probes" / kind)


def probe_config(folder: Path, kind: str) -> dict[str, Any]:
    """The sweep settings, classes and best layers of one probe kind of an experiment."""
    result = probe_result(folder, kind)
    return {"config": result.config, "classes": result.classes, "best": result.best()}


def experiment_store(folder: Path, config: dict[str, Any]) -> Path:
    """The activation store an experiment swept (``<folder>/store`` or the recorded path)."""
    for candidate in (Path(folder) / "store", Path(config.get("store", ""))):
        if (candidate / "manifest.json").is_file():
            return candidate
    raise RunFolderError(
        f"the activation store of {folder} is gone (looked in {folder}/store "
        f"and {config.get('store')}): rerun `workbench probe run` to rebuild it"
    )


def layer_predictions(folder: Path, kind: str, pooling: str, hook_point: str) -> dict[str, Any]:
    """Out-of-fold predictions of one probe kind at one hook point, recomputed by a one-layer
    ``sweep`` with the experiment's own settings (same folds and seed, so the same numbers as
    the stored curve).

    Returns:
        ``{"texts": [n], "true": [n] or [n, t], "pred": [n] class index (-1: not evaluated) or [n, t], "classes": [...],
        "margin": [n] or None (classification: the out-of-fold score of the predicted class
        minus that of the true class; 0 when right), "decision": [n] out-of-fold signed score
        around the decision boundary 0 (``out_of_fold_decision``; regression: the first
        target's prediction), "kind": "classification" | "regression",
        "target": [names], "geo": bool, "table": the one-layer results table}``.
    """
    from ..activations.store import ActivationStore
    from ..probing import sweep

    cfg = probe_config(folder, kind)["config"]
    store = ActivationStore(experiment_store(folder, cfg))
    target = cfg["target"][0] if len(cfg["target"]) == 1 else list(cfg["target"])
    result = sweep(
        store,
        target,
        probe=cfg["probe"],
        hook_points=[hook_point],
        pooling=pooling,
        cv=cfg.get("cv") or 5,
        groups=cfg.get("groups"),
        split=cfg.get("split"),
        control=False,
        C=cfg.get("C", 1.0),
        alpha=cfg.get("alpha", 1.0),
        n_boot=200,
        seed=cfg.get("seed", 0),
        geo=cfg.get("geo"),
    )
    pred = result.predictions[(pooling, hook_point)]["task"]
    classification = result.task_kind == "classification"
    if classification:
        classes = list(result.classes)
        index = {c: i for i, c in enumerate(classes)}
        # a classifier has one target column
        true = np.asarray([index.get(v, -1) for v in store.column(cfg["target"][0])])
    else:
        classes = []
        true = np.column_stack([np.asarray(store.column(t), dtype=float) for t in cfg["target"]])
    margin = None
    if classification:  # out-of-fold class scores [n, k]: NaN rows were never evaluated
        scores = np.asarray(pred, dtype=np.float64)
        if scores.ndim == 1:
            scores = scores[:, None]
        if scores.shape[1] == 1:  # binary with one logit for the second class
            scores = np.column_stack([np.zeros(len(scores)), scores[:, 0]])
        ok = np.isfinite(scores).all(axis=1) & (true >= 0)
        pred = np.full(len(scores), -1, dtype=np.int64)
        pred[ok] = scores[ok].argmax(axis=1)
        margin = np.full(len(scores), np.nan)
        rows = np.flatnonzero(ok)
        margin[rows] = scores[rows, pred[rows]] - scores[rows, true[rows]]
        decision = out_of_fold_decision(scores, true)
    else:
        decision = np.asarray(pred, dtype=np.float64)[:, 0]
    return {
        "texts": store.texts,
        "true": true,
        "pred": pred,
        "classes": classes,
        "margin": margin,
        "decision": decision,
        "kind": result.task_kind,
        "target": list(cfg["target"]),
        "geo": bool(cfg.get("geo")),
        "table": result.table,
    }


def out_of_fold_decision(scores: np.ndarray, true: np.ndarray) -> np.ndarray:
    """``[n]`` signed distance to the decision boundary from out-of-fold class scores
    ``[n, k]``: binary ``score(class 1) - score(class 0)`` (positive: predicted class 1);
    multi-class ``score(true) - max score(other)`` (positive: right). 0 is the boundary; NaN
    for rows never evaluated."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[1] == 2:
        return scores[:, 1] - scores[:, 0]
    out = np.full(len(scores), np.nan)
    ok = np.isfinite(scores).all(axis=1) & (true >= 0)
    rows = np.flatnonzero(ok)
    own = scores[rows, true[rows]]
    other = scores[rows].copy()
    other[np.arange(len(rows)), true[rows]] = -np.inf
    out[rows] = own - other.max(axis=1)
    return out


def worst_items(pred: dict[str, Any], n: int = 20) -> Any:
    """The ``n`` worst out-of-fold items: misclassified rows by margin, or the largest errors
    (great-circle km for lat/long targets)."""
    import pandas as pd

    texts = np.asarray(pred["texts"], dtype=object)
    if pred["kind"] == "classification":
        true, p = pred["true"], pred["pred"]
        wrong = np.flatnonzero((p >= 0) & (p != true))
        margin = pred["margin"]
        key = -margin[wrong] if margin is not None else np.zeros(len(wrong))
        wrong = wrong[np.argsort(key, kind="stable")][:n]
        classes = pred["classes"]
        return pd.DataFrame(
            {
                "row": wrong,
                "text": texts[wrong],
                "true": [classes[i] for i in true[wrong]],
                "predicted": [classes[int(i)] for i in p[wrong]],
                "margin": margin[wrong] if margin is not None else np.nan,
            }
        )
    true, p = np.asarray(pred["true"], float), np.asarray(pred["pred"], float)
    ok = np.flatnonzero(np.isfinite(p).all(axis=1))
    if pred["geo"] and true.shape[1] == 2:
        from ..probing import great_circle_km

        err = np.asarray(great_circle_km(true[ok], p[ok]), dtype=float)
        unit = "error_km"
    else:
        err = np.abs(true[ok] - p[ok]).mean(axis=1)
        unit = "mean_abs_error"
    order = np.argsort(-err, kind="stable")[:n]
    rows = ok[order]
    out = pd.DataFrame({"row": rows, "text": texts[rows], unit: err[order]})
    for j, name in enumerate(pred["target"]):
        out[f"true {name}"] = true[rows, j]
        out[f"predicted {name}"] = p[rows, j]
    return out


def confusion(pred: dict[str, Any]) -> np.ndarray:
    """``[classes, classes]`` counts of (true, predicted) over evaluated rows."""
    k = len(pred["classes"])
    true, p = pred["true"], pred["pred"]
    ok = (p >= 0) & (true >= 0)
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (true[ok], p[ok].astype(int)), 1)
    return counts


def selectivity(table: Any, metric: str) -> Any:
    """Task minus control per layer, one column per ``probe (pooling)``: ``[layers, probes]``."""
    t = table[(table["metric"] == metric) & table["labels"].isin(["task", "control"])]
    if not len(t) or "control" not in set(t["labels"]):
        return None
    t = t.assign(name=t["probe"] + " (" + t["pooling"].astype(str) + ")")
    wide = t.pivot_table(index=["layer", "name"], columns="labels", values="value", aggfunc="first")
    wide["selectivity"] = wide["task"] - wide["control"]
    return wide["selectivity"].unstack("name")


class SavedProbe:
    """A linear probe read back from ``probes/<kind>/probes.safetensors`` (weights of the probe
    trained on all training rows): ``coef_ [k, d_model]``, ``intercept_ [k]``, ``classes_``.
    Enough for ``decision_function`` and ``workbench.attribution.attribute_probe``."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, classes: list[Any]) -> None:
        self.coef_, self.intercept_, self.classes_ = coef, intercept, np.asarray(classes)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """``[n]`` (one output) or ``[n, k]`` scores of ``X`` ``[n, d_model]``."""
        s = np.asarray(X, np.float64) @ self.coef_.T.astype(np.float64) + self.intercept_
        return s[:, 0] if s.shape[1] == 1 else s


def saved_probe(folder: Path, kind: str, pooling: str, hook_point: str) -> SavedProbe:
    """The saved weights of one probe kind at one (pooling, hook point) of an experiment."""
    result = probe_result(folder, kind)
    if not result.weights:
        raise RunFolderError(
            f"the {kind} probes of {folder} have no linear weights: pick a "
            "logistic, ridge or mass-mean probe"
        )
    if (pooling, hook_point) not in result.weights:
        have = sorted(f"{p}/{h}" for p, h in result.weights)
        raise RunFolderError(
            f"no {kind} probe for {pooling}/{hook_point} in {folder}; it has {have[:8]}..."
        )
    coef, intercept = result.weights[(pooling, hook_point)]
    return SavedProbe(coef, intercept, result.classes)


def experiments_on(experiments: list[dict[str, Any]], store_path: str | Path) -> list[str]:
    """``"<experiment>/<kind>"`` for every probe kind swept on the store at ``store_path``."""
    target = Path(store_path).resolve()
    out = []
    for e in experiments:
        folder = Path(e["path"])
        for kind in e["probes"].split(", "):
            try:
                cfg = probe_config(folder, kind)["config"]
                if experiment_store(folder, cfg).resolve() == target:
                    out.append(f"{e['experiment']}/{kind}")
            except (WorkbenchError, OSError, KeyError, ValueError):
                continue
    return out


def find_inverters(root: Path) -> list[dict[str, Any]]:
    """Trained soft-prefix inverters under ``root`` (folders with ``inverter.json``): their LLM,
    embedder (``spec:L<layer>:<pooling>``), training steps and path."""
    rows = []
    for folder in _walk(root, "inverter.json"):
        try:
            meta = json.loads((folder / "inverter.json").read_text())
        except (OSError, ValueError):
            continue
        if meta.get("kind") != "soft-prefix-inverter":
            continue
        rows.append(
            {
                "inverter": str(folder.relative_to(root)) if folder != root else ".",
                "model": meta.get("model"),
                "embedder": meta.get("embedder"),
                "steps": meta.get("step"),
                "path": str(folder),
            }
        )
    return rows


def embedder_name(spec: str, layer: int, pooling: str | None) -> str:
    """The ``ModelEmbedder.name`` of a bundled model's layer and pooling without loading it
    (``"minilm-l6", -1, "native"`` -> ``"minilm-l6:L6:native"``); pooling None is the model's
    default (native for a sentence encoder, else mean)."""
    from ..models import bundled_models

    known = {m.name: m for m in bundled_models()}.get(spec)
    if pooling is None:
        pooling = "native" if known is not None and known.kind == "encoder" else "mean"
    return f"{spec}:L{layer % (known.n_layers + 1) if known is not None else layer}:{pooling}"
