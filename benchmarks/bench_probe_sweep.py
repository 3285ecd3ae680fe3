"""Probe sweeps: ``workbench.probing.sweep`` against the scikit-learn loop a researcher writes.

The workload of a probing experiment, per layer of SmolLM2-135M's last-token states (31 hook
points): 5 folds x (task + Hewitt & Liang control task) + the all-rows probe, and 1,000
bootstrap resamples of the held-out predictions for confidence intervals.

- ``cities`` (1,496 true/false statements, ``../shared`` Geometry of Truth): logistic probes,
  folds grouped by city, one control label per city.
- ``world`` (39,585 place names, ``../shared`` Space and Time, read as "Place: NAME"; or
  ``--world-n`` seeded random ones): ridge on latitude and longitude, control task = the
  coordinates of a random other place.

The baseline is the recipe, ``make_pipeline(StandardScaler(), LogisticRegression(C))`` (or
``Ridge(alpha)``) fitted fold by fold, with a vectorised numpy bootstrap of accuracy / R²
(what a user would otherwise write); it runs on every layer, on the same folds and control
labels, so the per-layer differences cover all 31 layers. A second row runs the unscaled
estimators (``LogisticRegression(C)`` on raw states, the old comparison) on ``--unscaled-layers``
layers and extrapolates. The sweep also runs without the bootstrap and with MDL, to report what
each costs. The sweep and the recipe alternate for ``--rounds`` rounds (median times reported,
every round kept in the JSON); the speed-up is the median of the rounds' paired ratios.
Everything runs in one process with torch, BLAS and OpenMP pinned to ``--threads`` (printed);
imports happen before the clocks start.

    HF_HUB_OFFLINE=1 python benchmarks/bench_probe_sweep.py --threads 1 \\
        --json benchmarks/PROBE_SWEEP.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

import workbench as wb
from workbench.probing import control_labels, make_folds, sweep

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _cities_store(folder: Path, threads: int) -> Any:
    path = SHARED / "data/geometry_of_truth/cities.csv"
    ds = (
        wb.load_dataset(str(path), text_column="statement")
        if path.is_file()
        else wb.load_dataset("cities")
    )
    return wb.extract(
        "smollm2-135m", ds, layers="all", pooling="last", out=folder, threads=threads, progress=True
    )


def _world_store(folder: Path, threads: int, n: int | None) -> Any:
    """World places read as "Place: NAME" (all 39,585, or ``n`` seeded random rows)."""
    path = SHARED / "data/space_time/world_place.csv"
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if n is not None and n < len(rows):
        rows = [rows[i] for i in np.sort(np.random.default_rng(0).permutation(len(rows))[:n])]
    ds = wb.TextDataset(
        "world_place",
        [r["name"] for r in rows],
        {
            "latitude": [float(r["latitude"]) for r in rows],
            "longitude": [float(r["longitude"]) for r in rows],
        },
        source=str(path),
    )
    return wb.extract(
        "smollm2-135m",
        ds,
        layers="all",
        pooling="last",
        template="Place: {text}",
        out=folder,
        threads=threads,
        progress=True,
    )


def _bootstrap_ci(stat, n: int, n_boot: int, seed: int = 0, chunk: int = 100) -> tuple:
    """Percentile CI of ``stat(idx [b, n]) -> [b]`` over resamples, in chunks (the user's loop)."""
    rng = np.random.default_rng(seed)
    values = np.concatenate(
        [
            stat(rng.integers(0, n, size=(min(chunk, n_boot - s), n)))
            for s in range(0, n_boot, chunk)
        ]
    )
    return tuple(np.percentile(values, [2.5, 97.5]))


def sklearn_loop(
    store: Any,
    hooks: list[str],
    y: np.ndarray,
    control: np.ndarray,
    folds: np.ndarray,
    regression: bool,
    reg: float,
    scaled: bool,
    n_boot: int,
) -> dict[str, list[float]]:
    """Per layer: fold-by-fold fits of task and control, the all-rows fit, bootstrap CIs."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def model():
        est = Ridge(alpha=reg) if regression else LogisticRegression(C=reg, max_iter=1000)
        return make_pipeline(StandardScaler(), est) if scaled else est

    out: dict[str, list[float]] = {"task": [], "control": []}
    for hook in hooks:
        X = store.get("last", hook_points=[hook])[:, 0].astype(np.float32)
        for name, labels in (("task", y), ("control", control)):
            pred = np.zeros_like(labels, dtype=np.float64)
            for k in range(folds.max() + 1):
                test = folds == k
                pred[test] = model().fit(X[~test], labels[~test]).predict(X[test])
            model().fit(X, labels)  # the all-rows probe (directions for steering)
            if regression:
                out[name].append(r2_score(labels, pred))
                _bootstrap_ci(
                    lambda i, lab=labels, p=pred: _r2_rows(lab, p, i), len(labels), n_boot
                )
            else:
                correct = pred == labels
                out[name].append(float(correct.mean()))
                _bootstrap_ci(lambda i, c=correct: c[i].mean(axis=1), len(labels), n_boot)
    return out


def _r2_rows(y: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    yy, pp = y[idx], p[idx]  # [b, n, t]
    ss_res = ((yy - pp) ** 2).sum(axis=1)
    ss_tot = ((yy - yy.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    return (1 - ss_res / ss_tot).mean(axis=1)


def run_workload(name: str, store: Any, args: argparse.Namespace) -> dict[str, Any]:
    regression = name == "world"
    if regression:
        target: Any = ["latitude", "longitude"]
        y = np.column_stack([np.asarray(store.column(t), dtype=np.float64) for t in target])
        groups, types, probe, reg = None, np.arange(len(store)), "ridge", args.alpha
        folds = make_folds(len(y), None, 5, None, 0)
        control = control_labels(y, types, False, 0)
        kw: dict[str, Any] = {"alpha": reg}
    else:
        target = "label"
        y = np.unique(np.asarray(store.column("label")), return_inverse=True)[1]
        groups = np.asarray(store.column("city"))
        probe, reg = "logistic", args.C
        folds = make_folds(len(y), y, 5, groups, 0)
        control = control_labels(y, groups, True, 0)
        kw = {"C": reg, "groups": "city", "control_types": "city"}
    hooks = list(store.hook_points)[: args.max_layers]
    common = {"probe": probe, "cv": 5, "control": True, "seed": 0, "hook_points": hooks, **kw}

    timings: dict[str, float] = {}  # wall-clock seconds
    cpu: dict[str, float] = {}  # this process's CPU seconds (robust to a busy machine)
    rounds: list[dict[str, float]] = []
    for _ in range(args.rounds):  # interleaved: ours, then the recipe, in every round
        t, c = time.perf_counter(), time.process_time()
        ours = sweep(store, target, n_boot=args.n_boot, **common)
        one = {"workbench_s": time.perf_counter() - t, "workbench_cpu_s": time.process_time() - c}
        t, c = time.perf_counter(), time.process_time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ref = sklearn_loop(store, hooks, y, control, folds, regression, reg, True, args.n_boot)
        one["sklearn_scaled_s"] = time.perf_counter() - t
        one["sklearn_scaled_cpu_s"] = time.process_time() - c
        one["speedup"] = one["sklearn_scaled_s"] / one["workbench_s"]
        one["cpu_speedup"] = one["sklearn_scaled_cpu_s"] / one["workbench_cpu_s"]
        rounds.append(one)
        print(f"round {len(rounds)}: " + ", ".join(f"{k} {v:.2f}" for k, v in one.items()))
    for key in ("workbench", "sklearn_scaled"):
        timings[f"{key}_s"] = float(np.median([r[f"{key}_s"] for r in rounds]))
        cpu[f"{key}_s"] = float(np.median([r[f"{key}_cpu_s"] for r in rounds]))
    t, c = time.perf_counter(), time.process_time()
    sweep(store, target, n_boot=0, **common)
    timings["workbench_no_bootstrap_s"] = time.perf_counter() - t
    cpu["workbench_no_bootstrap_s"] = time.process_time() - c
    if not regression:
        t, c = time.perf_counter(), time.process_time()
        sweep(store, target, n_boot=0, mdl=True, **common)
        timings["workbench_no_bootstrap_with_mdl_s"] = time.perf_counter() - t
        cpu["workbench_no_bootstrap_with_mdl_s"] = time.process_time() - c
    scaled_warnings = sum("converge" in str(w.message).lower() for w in caught)
    few = [
        hooks[i] for i in np.linspace(0, len(hooks) - 1, args.unscaled_layers).round().astype(int)
    ]
    t, c = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sklearn_loop(store, few, y, control, folds, regression, reg, False, args.n_boot)
    unscaled_s = time.perf_counter() - t
    cpu["sklearn_unscaled_s_extrapolated"] = (time.process_time() - c) / len(few) * len(hooks)
    unscaled_warnings = sum("converge" in str(w.message).lower() for w in caught)
    timings["sklearn_unscaled_s_extrapolated"] = unscaled_s / len(few) * len(hooks)

    metric = ours.main_metric
    diffs = {}
    for labels in ("task", "control"):
        a = ours.curve(metric, labels)["value"].to_numpy()
        b = np.asarray(ref[labels])
        diffs[labels] = {
            "max_abs_diff": float(np.abs(a - b).max()),
            "mean_abs_diff": float(np.abs(a - b).mean()),
        }
    per_layer = ours.curve(metric)[["layer", "value"]].assign(sklearn=ref["task"])
    mdl_s = timings.get("workbench_no_bootstrap_with_mdl_s")
    return {
        "workload": name,
        "probe": probe,
        "metric": metric,
        "rows": len(store),
        "layers": len(hooks),
        "reg": reg,
        "n_boot": args.n_boot,
        **{k: round(v, 2) for k, v in timings.items()},
        "bootstrap_s": round(timings["workbench_s"] - timings["workbench_no_bootstrap_s"], 2),
        "mdl_s": None if mdl_s is None else round(mdl_s - timings["workbench_no_bootstrap_s"], 2),
        # the median of the rounds' paired ratios (each round times both, back to back)
        "speedup_vs_scaled": round(float(np.median([r["speedup"] for r in rounds])), 2),
        "rounds": [{k: round(v, 2) for k, v in r.items()} for r in rounds],
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "cpu_speedup_vs_scaled": round(float(np.median([r["cpu_speedup"] for r in rounds])), 2),
        "cpu_speedup_range": [
            round(min(r["cpu_speedup"] for r in rounds), 2),
            round(max(r["cpu_speedup"] for r in rounds), 2),
        ],
        "speedup_vs_unscaled": round(
            timings["sklearn_unscaled_s_extrapolated"] / timings["workbench_s"], 1
        ),
        "unscaled_layers_measured": len(few),
        "unscaled_s_measured": round(unscaled_s, 2),
        "convergence_warnings": {
            "sklearn_scaled": scaled_warnings,
            "sklearn_unscaled": unscaled_warnings,
        },
        "diff_vs_scaled_sklearn": diffs,
        "per_layer": [
            {
                "layer": int(r.layer),
                "workbench": round(float(r.value), 4),
                "sklearn": round(float(r.sklearn), 4),
            }
            for r in per_layer.itertuples()
        ],
        "best": ours.best()["by_score"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workloads", default="cities,world")
    parser.add_argument("--runs", default="runs/bench-probe", help="stores are kept here")
    parser.add_argument("--cities-store", default=None)
    parser.add_argument("--world-store", default=None)
    parser.add_argument(
        "--world-n",
        type=int,
        default=None,
        help="seeded random subset of world places (default: all 39,585)",
    )
    parser.add_argument("--unscaled-layers", type=int, default=3)
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved rounds of ours and the recipe (medians)"
    )
    parser.add_argument("--max-layers", type=int, default=None, help="a quick check: fewer layers")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--alpha", type=float, default=10.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    import sklearn.linear_model  # noqa: F401  (imports outside the clocks)
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    print(
        f"torch threads: {torch.get_num_threads()}, BLAS threads (threadpoolctl): "
        f"{args.threads}, cpus: {os.cpu_count()}, load average: {os.getloadavg()}"
    )
    runs = Path(args.runs)
    results = []
    for name in args.workloads.split(","):
        if name == "cities":
            store = _cities_store(Path(args.cities_store or runs / "cities"), args.threads)
        else:
            folder = args.world_store or runs / f"world-{args.world_n or 'all'}"
            store = _world_store(Path(folder), args.threads, args.world_n)
        results.append(run_workload(name, store, args))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "per_layer"}, indent=2))
    print(
        "\n| workload | rows x layers | workbench (bootstrap / MDL share) | scikit-learn + "
        "StandardScaler | speed-up | unscaled scikit-learn (extrapolated) | max / mean abs "
        "per-layer diff, task |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        d = r["diff_vs_scaled_sklearn"]["task"]
        unit = 100 if r["metric"] == "accuracy" else 1
        mdl = "" if r["mdl_s"] is None else f", MDL +{r['mdl_s']} s"
        print(
            f"| {r['workload']} ({r['probe']}, {r['metric']}) | {r['rows']:,} x {r['layers']} | "
            f"{r['workbench_s']} s (bootstrap {r['bootstrap_s']} s{mdl}) | "
            f"{r['sklearn_scaled_s']} s | **{r['speedup_vs_scaled']}x** "
            f"(CPU time {r['cpu_speedup_vs_scaled']}x, rounds {r['cpu_speedup_range'][0]}-"
            f"{r['cpu_speedup_range'][1]}x) | "
            f"{round(r['sklearn_unscaled_s_extrapolated'], 1)} s "
            f"({r['speedup_vs_unscaled']}x) | {d['max_abs_diff'] * unit:.3g} / "
            f"{d['mean_abs_diff'] * unit:.3g} {'points' if unit == 100 else 'R²'} |"
        )
    if args.json:
        meta = {
            "threads": args.threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_end": os.getloadavg(),
        }
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
