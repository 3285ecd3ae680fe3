"""Running an experiment spec end to end (``run_spec``): data, model, extraction, one layer sweep
per probe kind, generalisation, random weights, causal check, figures, ``summary.json`` and
``report.md`` (formatted by ``workbench.probing.report``)."""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpecError, StoreMismatchError
from ..settings import threads
from . import report
from ._spec import CLASSIFIER_KINDS, ProbeSpec, apply_overrides, load_spec


def _resolve_data(spec_text: str, spec: ProbeSpec) -> str:
    """A dataset spec as given when it is a built-in, ``hf:`` or found from the working
    directory; else relative to the spec file's folder when it exists there."""
    from ..data import builtin_datasets

    if spec_text in builtin_datasets() or spec_text.startswith("hf:"):
        return spec_text
    p = Path(spec_text).expanduser()
    if p.is_absolute() or p.exists() or spec.path is None:
        return str(p)
    beside = Path(spec.path).parent / p
    return str(beside) if beside.exists() else str(p)


def _load_data(spec: ProbeSpec, dataset_spec: str) -> Any:
    from ..data import load_dataset

    d = spec.dataset
    return load_dataset(
        _resolve_data(dataset_spec, spec),
        text_column=d.text_column,
        label_columns=list(d.label_columns) if d.label_columns else None,
        limit=d.limit,
        seed=spec.seed if d.seed is None else d.seed,
        **dict(d.options),
    )


def _extract(
    lm: Any, dataset: Any, spec: ProbeSpec, out: Path, owned: bool, progress: bool, notes: list[str]
) -> tuple[Any, float, bool]:
    """Extract (or reuse) a store; ``owned`` stores (under the results folder) are replaced
    when they hold another run, a user-given ``[extract] out`` never is."""
    from ..activations.extract import extract
    from ..activations.store import ActivationStore

    e = spec.extract
    layers: Any = list(e.layers) if isinstance(e.layers, tuple) else e.layers
    kwargs = dict(
        layers=layers,
        pooling=list(e.pooling),
        template=e.template,
        storage_dtype=e.storage_dtype,
        batch_tokens=e.batch_tokens,
        threads=e.threads,
        progress=progress,
    )
    before = None
    if (out / "manifest.json").is_file():
        before = json.loads((out / "manifest.json").read_text()).get("finished")
    t0 = time.perf_counter()
    try:
        store = extract(lm, dataset, out=out, **kwargs)
    except StoreMismatchError:
        if not owned:
            raise
        notes.append(f"{out} held another run (other model, data or settings) and was replaced")
        store = extract(lm, dataset, out=out, overwrite=True, **kwargs)
    seconds = time.perf_counter() - t0
    reused = before is not None and before == store.manifest.get("finished")
    return ActivationStore(store.path), seconds, reused


@contextmanager
def _collect_warnings(notes: list[str]) -> Iterator[None]:
    """Warnings raised inside (e.g. scikit-learn's ConvergenceWarning, once per fit) become one
    note per distinct message, with a count, instead of a screenful of repeats."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    counts: dict[str, int] = {}
    for w in caught:
        first = str(w.message).strip().splitlines()[0] if str(w.message).strip() else ""
        key = f"{w.category.__name__}: {first}"
        counts[key] = counts.get(key, 0) + 1
    for key, n in counts.items():
        notes.append(f"{key}" + (f" (x{n})" if n > 1 else ""))


def _sweeps(spec: ProbeSpec, store: Any, progress: bool) -> dict[str, Any]:
    """One ``sweep`` per ``[probe] kind``: over the store's pooled vectors, or for
    ``level = "token"`` over its words (``token_dataset``: folds keep a sentence's words
    together, the control task gives each word form one random label)."""
    from ._sweep import sweep
    from ._tokens import token_dataset

    e, ev, pr = spec.extract, spec.evaluation, spec.probe
    target: Any = list(pr.target) if isinstance(pr.target, tuple) else pr.target
    common: dict[str, Any] = dict(
        cv=ev.cv,
        control=ev.control,
        mdl=ev.mdl,
        C=pr.C,
        alpha=pr.alpha,
        n_boot=ev.n_boot,
        seed=spec.seed,
        split=ev.split,
        progress=progress,
    )
    # passed only when not sweep's default, so a spec without them runs on any sweep()
    if not pr.standardize:
        common["standardize"] = False
    if pr.dropna:
        common["dropna"] = True
    if pr.level == "token":
        view = token_dataset(store, word_column=target, strategy=pr.strategy)
        return {
            kind: sweep(
                view,
                target,
                probe=kind,
                hook_points=store.hook_points,
                pooling=view.pooling_names[0],
                groups=ev.groups or "sentence",
                control_types=ev.control_types or "word",
                **common,
            )
            for kind in pr.kind
        }
    poolings = [p for p in e.pooling if p != "tokens"]
    if not poolings:
        raise SpecError(
            f"[extract] pooling = {list(e.pooling)} has no pooled vector for a "
            "sentence-level probe: add last, mean, first, max or pos:K"
        )
    return {
        kind: sweep(
            store,
            target,
            probe=kind,
            hook_points=store.hook_points,
            pooling=poolings,
            groups=ev.groups,
            control_types=ev.control_types,
            **common,
        )
        for kind in pr.kind
    }


def run_spec(
    spec: ProbeSpec | str | os.PathLike[str],
    *,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> Path:
    """Run an experiment spec end to end and return its results folder.

    Loads the dataset and the model, extracts (reusing a complete identical store), runs a
    layer sweep per probe kind (and the generalisation matrix when asked), and writes:
    ``results.csv`` (every kind, tidy), ``probes/<kind>/`` (``SweepResult.save``),
    ``summary.json`` (best layers per kind), ``report.md``, ``spec.json`` and ``figures/``
    (HTML, plus PNG when kaleido and Chromium work). Re-running gives the same ``results.csv``.

    Args:
        spec: a ``ProbeSpec`` or the path of a TOML spec.
        overrides: keys to change, checked like the file's (see ``apply_overrides``), e.g.
            ``{"dataset.limit": 600, "extract.layers": "0:10", "outputs.dir": "runs/x"}``.
        progress: progress bars for extraction and sweeps.

    Raises:
        SpecError: a bad spec or override.
    """
    import pandas as pd

    from ..models import load_model

    t_start = time.perf_counter()
    if not isinstance(spec, ProbeSpec):
        spec = load_spec(spec)
    spec = apply_overrides(spec, overrides)
    out = spec.out_dir
    out.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    notes: list[str] = []

    t0 = time.perf_counter()
    dataset = _load_data(spec, spec.dataset.spec)
    timing["dataset"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    lm = load_model(spec.model.spec, dtype=spec.model.dtype)
    timing["model"] = time.perf_counter() - t0
    store, timing["extract"], reused = _extract(
        lm, dataset, spec, spec.store_dir, spec.extract.out is None, progress, notes
    )

    with threads(spec.extract.threads), _collect_warnings(notes):
        t0 = time.perf_counter()
        results = _sweeps(spec, store, progress)
        timing["sweeps"] = time.perf_counter() - t0
        for kind, result in results.items():
            timing[f"sweep {kind}"] = result.seconds
        gen = None
        if spec.generalisation is not None:
            t0 = time.perf_counter()
            gen = _run_generalisation(spec, lm, store, results, progress, notes, timing)
            timing["generalisation"] = time.perf_counter() - t0
        if spec.evaluation.random_weights:
            _random_weights(spec, dataset, results, progress, notes, timing)
        causal = None
        if spec.causal is not None:
            t0 = time.perf_counter()
            causal = _run_causal(spec, lm, dataset, store, results, notes)
            timing["causal"] = time.perf_counter() - t0

    # -- write --------------------------------------------------------------------------------
    from ..artifacts import atomic_write, write_json

    table = pd.concat([r.table for r in results.values()], ignore_index=True)
    table = table.drop_duplicates(ignore_index=True)  # one majority baseline per setting
    atomic_write(out / "results.csv", lambda f: table.to_csv(f, index=False), "w")
    for kind, result in results.items():
        result.save(out / "probes" / kind)
    if gen is not None:
        atomic_write(out / "generalisation.csv", lambda f: gen.to_csv(f, index=False), "w")
    if causal is not None:
        atomic_write(out / "causal.csv", lambda f: causal.to_csv(f, index=False), "w")
    write_json(out / "spec.json", {"path": spec.path, **spec.to_dict()})

    figures: list[str] = []
    if spec.outputs.figures:
        t0 = time.perf_counter()
        figures = _write_figures(spec, store, results, gen, causal, out, notes)
        timing["figures"] = time.perf_counter() - t0
    timing["total"] = time.perf_counter() - t_start
    summary = _summary(
        spec, lm, dataset, store, reused, results, gen, causal, timing, figures, notes
    )
    write_json(out / "summary.json", summary)
    atomic_write(out / "report.md", lambda f: f.write(report.markdown(summary)), "w")
    return out


def _run_generalisation(
    spec: ProbeSpec,
    lm: Any,
    store: Any,
    results: dict[str, Any],
    progress: bool,
    notes: list[str],
    timing: dict[str, float],
) -> Any:
    from ._generalisation import generalisation_matrix

    g = spec.generalisation
    assert g is not None
    target = g.target or spec.probe.target
    if not isinstance(target, str):  # the schema refuses this combination; kept for the types
        raise SpecError(
            "[generalisation] needs a target (one class column) when [probe] target "
            "is a list of columns"
        )
    stores: dict[str, Any] = {}
    t0 = time.perf_counter()
    for name in g.datasets:
        if name == spec.dataset.spec:
            stores[name] = store
            continue
        slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in Path(name).name)
        ds = _load_data(spec, name)
        stores[name], _, _ = _extract(
            lm, ds, spec, spec.out_dir / "stores" / slug, True, progress, notes
        )
    timing["generalisation_extract"] = time.perf_counter() - t0
    pooling = next(p for p in spec.extract.pooling if p != "tokens")
    groups = spec.evaluation.groups
    if groups is not None and not all(groups in s.columns for s in stores.values()):
        notes.append(
            f"generalisation: not every dataset has column {groups!r}; its diagonal "
            "uses ungrouped folds"
        )
        groups = None
    sweeps = {}
    main = results.get(g.probe)
    if (
        main is not None
        and target == spec.probe.target
        and groups == spec.evaluation.groups
        and spec.evaluation.split is None
        and spec.dataset.spec in stores
    ):
        sweeps[spec.dataset.spec] = main
    return generalisation_matrix(
        stores,
        target,
        probe=g.probe,
        layers=None,
        pooling=pooling,
        C=spec.probe.C,
        cv=spec.evaluation.cv,
        groups=groups,
        seed=spec.seed,
        sweeps=sweeps,
    )


def _random_weights(
    spec: ProbeSpec,
    dataset: Any,
    results: dict[str, Any],
    progress: bool,
    notes: list[str],
    timing: dict[str, float],
) -> None:
    """The same architecture with random weights (re-initialised with seed ``spec.seed``): the
    same rows extracted into ``stores/random-weights`` and the same probes swept (no control,
    no MDL); its rows join each kind's table with ``labels = "random_weights"``."""
    import pandas as pd

    from ..models import load_model

    t0 = time.perf_counter()
    random_lm = load_model(spec.model.spec, dtype=spec.model.dtype, random_init=spec.seed)
    random_store, _, _ = _extract(
        random_lm, dataset, spec, spec.out_dir / "stores" / "random-weights", True, progress, notes
    )
    del random_lm
    timing["random_weights_extract"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain = spec.model_copy(
        update={"evaluation": spec.evaluation.model_copy(update={"control": False, "mdl": False})}
    )
    for kind, result in _sweeps(plain, random_store, progress).items():
        rows = result.table[result.table.labels == "task"].copy()
        rows["labels"] = "random_weights"
        results[kind].table = pd.concat([results[kind].table, rows], ignore_index=True)
    timing["random_weights_sweeps"] = time.perf_counter() - t0


def _causal_layers(spec: ProbeSpec, lm: Any, result: Any, pooling: str) -> list[int]:
    """``[causal] layers``, or the best steerable layers (residual, not the final norm's output,
    not the embeddings) by score and by selectivity."""
    c = spec.causal
    assert c is not None
    if not isinstance(c.layers, str):
        return [int(v) for v in c.layers]

    def best(frame: Any, column: str) -> list[int]:
        frame = frame[(frame.pooling == pooling) & frame.layer.notna()]
        frame = frame[[0 < int(v) < lm.n_layers for v in frame.layer]]  # steerable layers
        return [int(frame.loc[frame[column].idxmax(), "layer"])] if len(frame) else []

    metric = result.main_metric
    layers = best(result.curve(metric), "value")
    if "control" in set(result.table.labels):
        layers += best(result.selectivity(metric), "selectivity")
    return sorted(set(layers))


def _run_causal(
    spec: ProbeSpec, lm: Any, dataset: Any, store: Any, results: dict[str, Any], notes: list[str]
) -> Any:
    """Steer along the probe's direction at the chosen layers (``CausalCheck``); the direction
    points to the probe's second class (e.g. ``True`` of ``[False, True]``)."""
    import pandas as pd

    from ._causal import CausalCheck

    c = spec.causal
    assert c is not None
    kind = c.probe or next(k for k in spec.probe.kind if k in CLASSIFIER_KINDS)
    result = results[kind]
    if result.task_kind != "classification" or len(result.classes) != 2:
        raise SpecError(
            f"[causal] steers along a binary probe's direction: the {kind} probe of "
            f"{spec.path or spec.name} has classes {result.classes}; use a target with "
            "two classes or remove [causal]"
        )
    pooling = result.best()["by_score"]["pooling"]
    layers = _causal_layers(spec, lm, result, pooling)
    if not layers:
        raise SpecError(
            '[causal] layers = "best" found no steerable layer (0 < layer < '
            f"{lm.n_layers}) in the store: list layers explicitly"
        )
    from ..models.hook_names import normalize_layers

    directions = {}
    for layer in layers:
        hook = store.layers.get(normalize_layers(layer, lm.n_layers, lm.name)[0])
        if hook is None or (pooling, hook) not in result.directions:
            raise SpecError(
                f"[causal] layer {layer} is not in the store's layers "
                f"{sorted(store.layers)}: extract it or choose among those"
            )
        directions[layer] = result.directions[(pooling, hook)][0]
    rng = np.random.default_rng(spec.seed)
    n = min(c.limit, len(dataset))
    rows = np.sort(rng.choice(len(dataset), size=n, replace=False))
    texts = [dataset.texts[i] for i in rows]
    check = CausalCheck(lm, template=c.template, targets=c.targets)
    modes = ("add", "ablate") if c.mode == "both" else (c.mode,)
    tables = [
        check.run(
            texts,
            directions,
            alphas=c.alphas,
            mode=mode,
            positions=c.positions,
            batch_size=c.batch_size,
        )
        for mode in modes
    ]
    table = pd.concat(tables, ignore_index=True)
    table.insert(0, "probe", kind)
    table.insert(1, "pooling", pooling)
    notes.append(
        f"causal check: {kind} direction (towards {result.classes[1]!r}) at layers "
        f"{layers}, {n} texts in {c.template!r}, answer log P({c.targets[0]!r}) - "
        f"log P({c.targets[1]!r})"
    )
    return table


def _write_figures(
    spec: ProbeSpec,
    store: Any,
    results: dict[str, Any],
    gen: Any,
    causal: Any,
    out: Path,
    notes: list[str],
) -> list[str]:
    from ..viz import write_figure
    from ..viz.probing import generalisation_heatmap, latlon_map, layer_curves

    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            written.extend(write_figure(fig, out / "figures" / name, png=spec.outputs.png))
        for w in caught:
            text = str(w.message)
            if text not in notes:
                notes.append(text)

    for kind, result in results.items():
        save(layer_curves(result, metric=result.main_metric), f"layers_{kind}")
        if result.config.get("geo") and result.task_kind == "regression":
            best = result.best()["by_score"]
            pred = result.predictions[(best["pooling"], best["hook_point"])]["task"]
            target = result.config["target"]
            true = np.column_stack([np.asarray(store.column(t), dtype=float) for t in target])
            keep = np.isfinite(pred).all(axis=1)
            texts = np.asarray(store.texts, dtype=object)
            fig = latlon_map(true[keep], pred[keep], labels=list(texts[keep]))
            fig.update_layout(
                title=f"{kind} probe, layer {best['layer']} ({best['hook_point']}): "
                f"out-of-sample predictions vs truth ({int(keep.sum())} places)"
            )
            save(fig, f"latlon_{kind}")
    if gen is not None and len(gen):
        save(generalisation_heatmap(gen), "generalisation")
    if causal is not None and len(causal) and spec.causal is not None:
        from ..viz.causal import causal_curves

        t = spec.causal.targets
        save(causal_curves(causal, answer=f"log P({t[0]!r}) - log P({t[1]!r})"), "causal")
    return sorted(str(p.relative_to(out)) for p in written)


# -- summary and report --------------------------------------------------------------------------


def _metric_at(result: Any, metric: str, labels: str, pooling: str, hook: str) -> dict | None:
    t = result.table
    rows = t[
        (t.metric == metric)
        & (t.labels == labels)
        & (t.pooling == pooling)
        & (t.hook_point == hook)
    ]
    if not len(rows):
        return None
    r = rows.iloc[0]
    return {"value": float(r["value"]), "low": float(r["low"]), "high": float(r["high"])}


def _kind_summary(result: Any) -> dict[str, Any]:
    best = result.best()
    metric = best["metric"]
    b = best["by_score"]
    out: dict[str, Any] = {"metric": metric, **best}
    out["by_score"] = {
        **b,
        **(_metric_at(result, metric, "task", b["pooling"], b["hook_point"]) or {}),
    }
    t = result.table
    base = t[(t.labels == "majority") & (t.metric == metric)]
    if len(base):
        out["baseline"] = {
            "name": str(base.iloc[0]["probe"]),
            "value": float(base.iloc[0]["value"]),
        }
    control = _metric_at(result, metric, "control", b["pooling"], b["hook_point"])
    if control is not None:
        out["control_at_best"] = control
    random = _metric_at(result, metric, "random_weights", b["pooling"], b["hook_point"])
    if random is not None:
        out["random_weights_at_best"] = random
        curve = result.curve(metric, "random_weights")
        r = curve.loc[curve["value"].idxmax()]
        out["random_weights_best"] = {
            "layer": None if r.layer != r.layer else int(r.layer),
            "pooling": r.pooling,
            "value": float(r["value"]),
        }
    if result.config.get("geo"):
        km = _metric_at(result, "median_great_circle_km", "task", b["pooling"], b["hook_point"])
        if km is not None:
            out["median_km_at_best"] = km
    out["seconds"] = round(result.seconds, 2)
    return out


def _summary(
    spec: ProbeSpec,
    lm: Any,
    dataset: Any,
    store: Any,
    reused: bool,
    results: dict[str, Any],
    gen: Any,
    causal: Any,
    timing: dict[str, float],
    figures: list[str],
    notes: list[str],
) -> dict[str, Any]:
    first = next(iter(results.values()))
    summary: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description,
        "spec": spec.path,
        "model": {
            "spec": spec.model.spec,
            "name": lm.name,
            "n_layers": lm.n_layers,
            "d_model": lm.d_model,
            "dtype": spec.model.dtype,
        },
        "dataset": {
            "spec": spec.dataset.spec,
            "name": dataset.name,
            "source": dataset.source,
            "n_rows": len(dataset),
            "limit": spec.dataset.limit,
        },
        "store": {
            "path": str(store.path),
            "reused": reused,
            "hook_points": len(store.hook_points),
            "poolings": store.pooling_names,
        },
        "target": first.config["target"],
        "task": first.task_kind,
        "n_rows": first.config["n_rows"],
        "classes": first.classes,
        "evaluation": spec.evaluation.model_dump(),
        "kinds": {kind: _kind_summary(r) for kind, r in results.items()},
    }
    if gen is not None and len(gen):
        best = gen.loc[gen.groupby(["train", "test"], sort=False)["accuracy"].idxmax()]
        summary["generalisation"] = {
            "probe": spec.generalisation.probe if spec.generalisation else None,
            "best_per_pair": [
                {
                    "train": r.train,
                    "test": r.test,
                    "layer": None if r.layer != r.layer else int(r.layer),
                    "hook_point": r.hook_point,
                    "accuracy": float(r.accuracy),
                }
                for r in best.itertuples()
            ],
        }
    if causal is not None and len(causal):
        summary["causal"] = _causal_summary(spec, causal)
    summary["timing_s"] = {k: round(v, 2) for k, v in timing.items()}
    summary["figures"] = figures
    summary["notes"] = notes
    return summary


def _causal_summary(spec: ProbeSpec, causal: Any) -> dict[str, Any]:
    """Per layer: the effect at the largest and smallest alpha, ablation, and the worst KL."""
    assert spec.causal is not None
    out: dict[str, Any] = {
        "probe": str(causal["probe"].iloc[0]),
        "pooling": str(causal["pooling"].iloc[0]),
        "targets": list(spec.causal.targets),
        "template": spec.causal.template,
        "layers": [],
    }
    for layer, rows in causal.groupby("layer", sort=True):
        entry: dict[str, Any] = {"layer": int(layer)}
        add = rows[rows["mode"] == "add"].sort_values("alpha")
        if len(add):
            lo, hi = add.iloc[0], add.iloc[-1]
            entry.update(
                {
                    "alpha_min": float(lo.alpha),
                    "delta_at_alpha_min": float(lo.delta_vs_alpha0),
                    "alpha_max": float(hi.alpha),
                    "delta_at_alpha_max": float(hi.delta_vs_alpha0),
                    "monotone": bool(np.all(np.diff(add.mean_logit_diff) >= 0)),
                }
            )
        ablate = rows[rows["mode"] == "ablate"]
        if len(ablate):
            entry["delta_ablate"] = float(ablate.iloc[0].delta_vs_alpha0)
        entry["max_kl_unrelated"] = float(rows["kl_unrelated"].max())
        out["layers"].append(entry)
    return out
