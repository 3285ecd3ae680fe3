"""Ray engine benchmark: tokens/s of ``extract(engine="ray")`` with 1 and 2 workers against the
single-process engine on the same corpus, and the Ray start-up overhead.

Corpus: the built-in ``cities`` and ``neg_cities`` statements (2,992 texts, 10-20 tokens each),
all residual layers, ``mean`` and ``last`` pooling, the same ``shard_size`` for every engine (so
every engine runs the very same length-sorted batches). Torch threads are pinned: 1 in the
single-process run and 1 per Ray actor (``worker_cpus=1``).

Contenders are interleaved (local, ray x1, ray x2, then rotated) and figures are medians over
rounds, because the machine is shared. For each Ray run three times are recorded:

- ``wall``: the whole ``extract`` call once the driver holds the model (actor processes start,
  import torch and load their replica, shards, final manifest);
- ``compute span``: first shard start to last shard end over all actors, i.e. excluding the
  cluster and actor start-up, but including Ray's scheduling between shards;
- ``actor load``: the slowest actor's start-up (process, imports, ``load_model``).

``ray.init`` (a fresh local cluster) is timed once. The single-process figure is the compute
phase of ``extract`` (``manifest.stats.wall_seconds``) with the model already loaded.

Run from the repository root::

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_ray.py \
        --model minilm-l6 --rounds 3 --json /tmp/bench_ray.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Ray starts its worker processes at nice 15 by default; on a shared machine that alone makes
# them lose the CPU to everyone else. Same priority as the single-process run (--niceness).

import torch  # noqa: E402

import workbench as wb  # noqa: E402
from workbench.data import TextDataset, load_dataset  # noqa: E402


def corpus(n: int) -> TextDataset:
    """``cities`` + ``neg_cities`` statements, the first ``n``."""
    a, b = load_dataset("cities"), load_dataset("neg_cities")
    texts = (a.texts + b.texts)[:n]
    return TextDataset(name="cities+neg", texts=texts, source="built-in cities + neg_cities")


def run_once(
    lm: Any, data: TextDataset, engine: str, workers: int, shard_size: int, root: Path
) -> dict[str, Any]:
    out = root / f"{engine}{workers}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    store = wb.extract(
        lm,
        data,
        out=out,
        layers="all",
        pooling="mean,last",
        shard_size=shard_size,
        threads=1,
        progress=False,
        engine=engine,
        num_workers=workers,
    )
    wall = time.perf_counter() - t0
    stats, eng = store.manifest["stats"], store.manifest["extraction"]["engine"]
    tokens = stats["n_tokens"]
    if engine == "local":
        compute = stats["wall_seconds"]
        return {"tokens": tokens, "wall": wall, "compute": compute, "tok_s": tokens / compute}
    span = eng["compute_span_s"]
    return {
        "tokens": tokens,
        "wall": stats["wall_seconds"],
        "compute": span,
        "tok_s": tokens / span,
        "tok_s_wall": tokens / stats["wall_seconds"],
        "actor_load": eng["actor_load_s"],
        "shards_per_worker": eng["shards_per_worker"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--n", type=int, default=2992)
    parser.add_argument("--shard-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--niceness", type=int, default=0, help="Ray worker niceness (Ray: 15)")
    args = parser.parse_args()
    os.environ["RAY_worker_niceness"] = str(args.niceness)  # read by the raylet at ray.init
    torch.set_num_threads(1)
    import ray

    lm = wb.load_model(args.model)
    data = corpus(args.n)
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_init = time.perf_counter() - t0
    contenders = [("local", 1), ("ray", 1), ("ray", 2)]
    results: dict[str, list[dict[str, Any]]] = {f"{e}{w}": [] for e, w in contenders}
    root = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    try:
        for r in range(args.rounds):
            order = contenders[r % 3 :] + contenders[: r % 3]
            for engine, workers in order:
                res = run_once(lm, data, engine, workers, args.shard_size, root)
                results[f"{engine}{workers}"].append(res)
                print(f"round {r} {engine} x{workers}: {json.dumps(res)}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        ray.shutdown()

    def med(key: str, field: str) -> float:
        return statistics.median(x[field] for x in results[key])

    local = med("local1", "compute")
    summary = {
        "model": args.model,
        "n_texts": len(data),
        "n_tokens": results["local1"][0]["tokens"],
        "shard_size": args.shard_size,
        "rounds": args.rounds,
        "torch_threads_per_process": 1,
        "ray_init_s": round(ray_init, 2),
        "ray_worker_niceness": args.niceness,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "python": platform.python_version(),
        "rows": {},
    }
    for key in results:
        row = {
            "compute_s": round(med(key, "compute"), 2),
            "tok_s": round(med(key, "tok_s"), 1),
            "wall_s": round(med(key, "wall"), 2),
        }
        if key != "local1":
            # Per round: this engine's time over the local time of the same round.
            ratios = [
                x["compute"] / y["compute"]
                for x, y in zip(results[key], results["local1"], strict=True)
            ]
            row["overhead_vs_local"] = round(statistics.median(ratios) - 1, 3)
            row["speedup_vs_local"] = round(local / med(key, "compute"), 2)
            row["tok_s_incl_startup"] = round(med(key, "tok_s_wall"), 1)
            row["actor_load_s"] = round(med(key, "actor_load"), 2)
        summary["rows"][key] = row
    print(json.dumps(summary, indent=2))
    print("\n| engine | compute s | tokens/s | vs single-process | wall incl. actor start-up s |")
    print("| --- | --- | --- | --- | --- |")
    for key, row in summary["rows"].items():
        rel = (
            "1.00x"
            if key == "local1"
            else (f"{row['speedup_vs_local']:.2f}x (overhead {row['overhead_vs_local']:+.1%})")
        )
        print(f"| {key} | {row['compute_s']} | {row['tok_s']} | {rel} | {row['wall_s']} |")
    print(f"ray.init (local cluster, 2 CPUs): {ray_init:.1f} s")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "raw": results}, indent=2))


if __name__ == "__main__":
    main()
