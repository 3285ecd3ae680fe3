"""Benchmark: zero-shot inversion (embedder-guided search, no training) of bundled MiniLM
embeddings with SmolLM2-135M proposing, on the 100 held-out UD English EWT sentences of
``bench_inversion.py``, at a CPU budget per sentence; with the curve of every metric against the
budget, read from each run's trace (the best text after each finished round and the CPU seconds
spent by then: what the same search stopped at that budget would have had at least).

Shards run side by side (one torch thread each) and resume: every finished sentence is a line
of ``--work``/shard-K.jsonl. ``--report`` merges the shards into the tables and the figure.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_zero_shot.py --shard 0/2 &
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_zero_shot.py --shard 1/2
    # the short budgets, each its own run
    ... bench_zero_shot.py --shard 0/2 --budget 5 --work runs/bench-zero-shot-5   (and 1/2, and 10)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_zero_shot.py --report \
        --budget-runs runs/bench-zero-shot-5 runs/bench-zero-shot-10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_inversion import split  # noqa: E402

BUDGETS = (15, 20, 25, 30)
ZERO2TEXT = (
    "Zero2Text (GTR-base, MS MARCO, black-box; its paper): ROUGE-L 18.7, BLEU-1 25.0, cosine 0.75"
)


def run_shard(args: argparse.Namespace) -> None:
    """Invert this shard's sentences, appending one JSON line per sentence."""
    import torch

    torch.set_num_threads(args.threads)
    from workbench import load_model
    from workbench.inversion.embedders import ModelEmbedder
    from workbench.inversion.guided import GuidedInverter

    k, n = (int(x) for x in args.shard.split("/"))
    held, _, _ = split()
    mine = [i for i in range(min(args.n, len(held))) if i % n == k]
    args.work.mkdir(parents=True, exist_ok=True)
    path = args.work / f"shard-{k}.jsonl"
    done = set()
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                done.add(json.loads(line)["i"])
            except (json.JSONDecodeError, KeyError):
                break  # a torn last line: that sentence is redone
    lm, emb = load_model(args.model), ModelEmbedder(args.embedder)
    inv = GuidedInverter(lm, emb, budget=args.budget)
    inv.invert(emb.embed(["A warm-up sentence for the search."])[0], budget=1.0)
    for i in mine:
        if i in done:
            continue
        target = emb.embed([held[i]])[0]
        w0, c0 = time.time(), time.process_time()
        res = inv.invert(target)
        rec = {
            "i": i,
            "reference": held[i],
            "text": res.text,
            "cosine": res.cosine,
            "cpu_s": time.process_time() - c0,
            "wall_s": time.time() - w0,
            "trace": res.trace,
            "budget": args.budget,
            "load_average": os.getloadavg(),
        }
        with path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
        print(
            f"[{k}/{n}] {i}: cos {res.cosine:.3f} {rec['cpu_s']:.1f} CPU-s  {res.text}", flush=True
        )


def _at(trace: list[list[Any]], budget: float) -> str:
    """The best text of a trace within ``budget`` CPU seconds (the caller makes sure every
    sentence's first round finished by then)."""
    return str([t for t in trace if t[0] <= budget][-1][1])


def _records(work: Path) -> dict[int, dict[str, Any]]:
    """Finished sentences of a run folder, by index (a torn line is skipped)."""
    recs: dict[int, dict[str, Any]] = {}
    for f in sorted(work.glob("shard-*.jsonl")):
        for line in f.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            recs[r["i"]] = r
    return recs


def report(args: argparse.Namespace) -> None:
    """Merge the shards: metrics at the full budget and at every budget of the curve."""
    import torch

    torch.set_num_threads(args.threads)
    from workbench import load_model
    from workbench.inversion.embedders import ModelEmbedder
    from workbench.inversion.metrics import evaluate

    held, entities, _ = split()
    recs = _records(args.work)
    idx = sorted(recs)
    if not idx:
        raise SystemExit(f"no finished sentence in {args.work}: run the shards first")
    refs = [held[i] for i in idx]
    ents = [entities[i] for i in idx]
    lm, emb = load_model(args.model), ModelEmbedder(args.embedder)
    targets = emb.embed(refs)
    final = evaluate(
        refs, [recs[i]["text"] for i in idx], emb, targets=targets, lm=lm, entities=ents
    )
    cpu = np.array([recs[i]["cpu_s"] for i in idx])
    curve = []
    for folder in args.budget_runs:  # separate runs at a shorter budget
        short = _records(folder)
        if sorted(short) != idx:
            raise SystemExit(f"{folder} has {len(short)} of the {len(idx)} sentences: finish it")
        hyps = [short[i]["text"] for i in idx]
        m = evaluate(refs, hyps, emb, targets=targets, entities=ents)
        spent = float(np.mean([short[i]["cpu_s"] for i in idx]))
        budget = float(np.median([short[i].get("budget", np.nan) for i in idx]))
        curve.append({"budget_cpu_s": budget, "source": "own run", "cpu_s": spent, **m})
    first = max(recs[i]["trace"][0][0] for i in idx)  # every first round done by then
    for b in [b for b in BUDGETS if first <= b <= args.budget]:
        hyps = [_at(recs[i]["trace"], b) for i in idx]
        m = evaluate(refs, hyps, emb, targets=targets, entities=ents)
        curve.append({"budget_cpu_s": b, "source": "trace", "cpu_s": float(b), **m})
    meta = {
        "n": len(idx),
        "budget_cpu_s": args.budget,
        "model": args.model,
        "embedder": args.embedder,
        "threads": args.threads,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_during_runs": [
            float(np.min([recs[i]["load_average"][0] for i in idx])),
            float(np.max([recs[i]["load_average"][0] for i in idx])),
        ],
        "cpu_s_per_sentence": {
            "mean": float(cpu.mean()),
            "median": float(np.median(cpu)),
            "max": float(cpu.max()),
        },
        "wall_s_per_sentence": float(np.mean([recs[i]["wall_s"] for i in idx])),
    }
    out = {"meta": meta, "final": final, "curve": curve}
    out["examples"] = [(recs[i]["reference"], recs[i]["text"], recs[i]["cosine"]) for i in idx]
    args.out.with_suffix(".json").write_text(json.dumps(out, indent=2))
    args.out.write_text(_markdown(meta, final, curve, out["examples"]))
    _figure(curve, args.out.with_suffix(".png"))
    print(args.out.read_text())


def _markdown(
    meta: dict[str, Any], final: dict[str, float], curve: list[dict[str, Any]], ex: list[Any]
) -> str:
    cols = ["cosine", "cosine_bow_anchor", "token_f1", "rouge_l", "bleu1", "bleu", "exact_match"]
    cpu = meta["cpu_s_per_sentence"]
    la = meta["load_average_during_runs"]
    lines = [
        f"{meta['n']} held-out sentences; {meta['model']} proposes, {meta['embedder']} is "
        f"inverted; budget {meta['budget_cpu_s']} CPU-s per sentence; torch threads "
        f"{meta['threads']}; {meta['machine']}; load average during the runs {la[0]:.1f}-"
        f"{la[1]:.1f}. CPU seconds per sentence: mean {cpu['mean']:.1f}, median "
        f"{cpu['median']:.1f}, max {cpu['max']:.1f} (wall {meta['wall_s_per_sentence']:.1f}).",
        "",
        "| " + " | ".join(cols + ["entity_recall", "perplexity"]) + " |",
        "|---" * (len(cols) + 2) + "|",
        "| " + " | ".join(f"{final[c]:.3f}" for c in cols + ["entity_recall", "perplexity"]) + " |",
        "",
        f"Anchor: {ZERO2TEXT}.",
        "",
        "Against the CPU budget: *own run* rows are the search run with that budget (mean CPU "
        "seconds spent beside it); *trace* rows read the full run's trace, each sentence's best "
        "text after the last round that finished within the budget (a lower bound for a run "
        "stopped there; only budgets after every sentence's first round):",
        "",
        "| budget CPU-s | from | CPU-s spent | " + " | ".join(cols + ["entity_recall"]) + " |",
        "|---" * (len(cols) + 4) + "|",
    ]
    for c in curve:
        lines.append(
            f"| {c['budget_cpu_s']:g} | {c['source']} | {c['cpu_s']:.1f} | "
            + " | ".join(f"{c[k]:.3f}" for k in cols + ["entity_recall"])
            + " |"
        )
    lines += ["", "Examples (reference -> reconstruction, cosine):", ""]
    for ref, hyp, cos in ex[:8]:
        lines.append(f"- `{ref}` -> `{hyp}` ({cos:.3f})")
    return "\n".join(lines) + "\n"


def _figure(curve: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = [c["budget_cpu_s"] for c in curve]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    for key, label in (
        ("cosine", "cosine"),
        ("token_f1", "token F1"),
        ("cosine_bow_anchor", "bag-of-words anchor (cosine)"),
    ):
        ax.plot(b, [c[key] for c in curve], marker="o", label=label)
    ax.plot(b, [c["rouge_l"] / 100 for c in curve], marker="o", label="ROUGE-L / 100")
    ax.axhline(0.9, color="grey", lw=0.8, ls="--")
    ax.axhline(0.4, color="grey", lw=0.8, ls=":")
    own = ", ".join(f"{c['budget_cpu_s']:g}" for c in curve if c.get("source") == "own run")
    ax.set_xlabel(
        "CPU seconds per sentence (one thread)\n"
        + (f"{own} s: runs at that budget; " if own else "")
        + "others: the full run's trace (lower bounds)",
        fontsize=8,
    )
    ax.set_ylabel("mean over held-out sentences")
    ax.set_title("Zero-shot inversion of MiniLM with SmolLM2-135M")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shard", default="0/1", help="K/N: this process takes sentences i % N == K")
    ap.add_argument("--n", type=int, default=100, help="held-out sentences")
    ap.add_argument("--budget", type=float, default=30.0, help="CPU seconds per sentence")
    ap.add_argument("--model", default="smollm2-135m", help="decoder that proposes")
    ap.add_argument("--embedder", default="minilm-l6", help="embedder that is inverted")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("runs/bench-zero-shot"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "INVERSION_ZERO_SHOT.md")
    ap.add_argument("--report", action="store_true", help="merge the shards into --out")
    ap.add_argument(
        "--budget-runs",
        type=Path,
        nargs="*",
        default=[],
        help="work folders of runs at shorter budgets, for the curve",
    )
    args = ap.parse_args()
    report(args) if args.report else run_shard(args)


if __name__ == "__main__":
    main()
