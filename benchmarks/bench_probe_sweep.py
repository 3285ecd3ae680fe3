"""Full probing sweep: the fast batched path vs a per-layer loop of scikit-learn estimators.

Workload per layer: 5 folds x (probe + Hewitt & Liang control task) + the all-rows probe, at the
same regularisation (logistic C, ridge alpha). Prints time ratios and the mean absolute per-layer
difference of accuracy / R². The scikit-learn loop on raw hidden states is slow (hundreds of
L-BFGS iterations per fit), so it runs on ``--ref-layers`` layers and its per-layer time is
extrapolated to all layers (printed as such); accuracy differences are over those layers.

    HF_HUB_OFFLINE=1 python benchmarks/bench_probe_sweep.py --threads 1
    HF_HUB_OFFLINE=1 python benchmarks/bench_probe_sweep.py --workloads world --world-n 50000

Both paths run under the same thread limit: torch threads and, through threadpoolctl, the BLAS
threads numpy and scikit-learn use (an unlimited BLAS on a busy machine spins and slows
everything). Imports (torch.optim, scikit-learn) happen before the clocks start.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.optim  # noqa: F401  (its first import takes seconds: outside the clocks)

import workbench as wb
from workbench.probing import sweep

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _store(name: str, dataset, out: Path, threads: int):
    return wb.extract("smollm2-135m", dataset, layers="all", pooling="last", out=out,
                      threads=threads, progress=True)


def _cities():
    path = SHARED / "data/geometry_of_truth/cities.csv"
    if path.is_file():
        return wb.load_dataset(str(path), text_column="statement")
    return wb.load_dataset("cities")


def _world_places(n: int):
    path = SHARED / "data/space_time/world_place.csv"
    if not path.is_file():
        return wb.load_dataset("world_places", limit=n)
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))[:n]]
    return wb.TextDataset("world_place", [r["name"] for r in rows], {
        "latitude": [float(r["latitude"]) for r in rows],
        "longitude": [float(r["longitude"]) for r in rows],
    }, source=str(path))


def compare(store, target, probe, ref_layers, groups=None, **kw):
    all_hooks = store.hook_points
    ref_hooks = [all_hooks[i] for i in np.linspace(0, len(all_hooks) - 1, ref_layers).round().astype(int)]
    t = time.perf_counter()
    fast = sweep(store, target, probe=probe, groups=groups, n_boot=0, **kw)
    t_fast = time.perf_counter() - t
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = sweep(store, target, probe=probe, groups=groups, n_boot=0, fast=False,
                    hook_points=ref_hooks, **kw)
    t_ref = time.perf_counter() - t
    metric = fast.main_metric
    a = fast.curve(metric).set_index("hook_point").loc[ref_hooks, "value"].to_numpy()
    b = ref.curve(metric).set_index("hook_point")["value"].to_numpy()
    per_layer_ref = t_ref / len(ref_hooks)
    return {
        "probe": probe, "metric": metric, "rows": len(store), "layers": len(all_hooks),
        "fast_s": round(t_fast, 2), "sklearn_s_measured": round(t_ref, 2),
        "sklearn_layers_measured": len(ref_hooks),
        "sklearn_s_all_layers_extrapolated": round(per_layer_ref * len(all_hooks), 1),
        "speedup": round(per_layer_ref * len(all_hooks) / t_fast, 1),
        "mean_abs_diff_points": round(100 * float(np.abs(a - b).mean()), 3),
        "max_abs_diff_points": round(100 * float(np.abs(a - b).max()), 3),
        "best": fast.best()["by_score"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ref-layers", type=int, default=3)
    parser.add_argument("--world-n", type=int, default=5000)
    parser.add_argument("--runs", default="runs/bench-probe")
    parser.add_argument("--json", default=None)
    parser.add_argument("--workloads", default="cities,world",
                        help="comma list of cities (logistic) and world (ridge)")
    args = parser.parse_args()
    import sklearn.linear_model  # noqa: F401  (imports outside the clocks)
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    threadpool_limits(args.threads)
    print(f"torch threads: {torch.get_num_threads()}, BLAS threads: {args.threads}")
    runs = Path(args.runs)
    results = []
    workloads = args.workloads.split(",")
    if "cities" in workloads:
        cities = _store("cities", _cities(), runs / "cities", args.threads)
        groups = "city" if "city" in cities.columns else None
        results.append(compare(cities, "label", "logistic", args.ref_layers, groups=groups, cv=5))
        print(json.dumps(results[-1], indent=2))
    if "world" in workloads:
        world = _store("world", _world_places(args.world_n), runs / f"world-{args.world_n}",
                       args.threads)
        results.append(compare(world, ["latitude", "longitude"], "ridge", args.ref_layers, cv=5,
                               alpha=10.0))
        print(json.dumps(results[-1], indent=2))
    print("\n| workload | rows x layers | fast path | sklearn loop (extrapolated) | speed-up | "
          "mean / max abs diff (points) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['probe']} ({r['metric']}) | {r['rows']} x {r['layers']} | {r['fast_s']} s | "
              f"{r['sklearn_s_all_layers_extrapolated']} s ({r['sklearn_layers_measured']} layers "
              f"measured: {r['sklearn_s_measured']} s) | {r['speedup']}x | "
              f"{r['mean_abs_diff_points']} / {r['max_abs_diff_points']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
