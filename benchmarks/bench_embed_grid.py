"""Benchmark: a full embedding-quality grid on SICK test vs a naive per-configuration loop.

The grid (``workbench.evaluation.evaluate_grid``) deduplicates the 9,854 sentence slots of SICK
test (4,927 pairs) to 5,007 distinct sentences and runs one forward pass per distinct template
(plain, PromptEOL, echo); every (layer, pooling, post-processing) cell is then read from the
stores. The naive loop is what one writes by hand: for each (layer, pooling) configuration, run
the model over all 9,854 sentence slots (``output_hidden_states=True`` on the base model, batches
of 32 in file order, padded), take that layer and pool it.

Running the naive loop for every configuration would take hours here, so it is *measured* for
one configuration per template on a random subset of sentence slots and *extrapolated linearly*
(in slots, then in configurations); the printout says so. Threads are pinned (``--threads``,
default 1) and printed.

    python benchmarks/bench_embed_grid.py                       # SmolLM2, full grid, SICK test
    python benchmarks/bench_embed_grid.py --limit 200 --naive-slots 100   # a quick check

Notes and figures: ``benchmarks/EMBED.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

POOLINGS = "mean,last,first,max,prompteol,echo,echo-last"


def naive_config_seconds(
    lm, texts: list[str], template: str | None, layer: int, pooling: str, batch_size: int = 32
) -> tuple[float, int]:
    """Wall time of one naive configuration over ``texts``: a plain forward per batch, every
    hidden state returned, one layer pooled. Returns (seconds, tokens)."""
    from workbench.activations.pooling import apply_template

    inputs = [apply_template(template, t)[0] for t in texts]
    tok = lm.tokenizer
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    n_tokens = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(inputs), batch_size):
            batch = tok(inputs[i : i + batch_size], return_tensors="pt", padding=True)
            out = lm.base_model(**batch, output_hidden_states=True, use_cache=False)
            h = out.hidden_states[layer]
            m = batch["attention_mask"].bool()
            n_tokens += int(m.sum())
            if pooling == "mean":
                _ = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True)
            else:  # last real token (right padding)
                _ = h[torch.arange(len(h)), m.sum(1) - 1]
    return time.perf_counter() - start, n_tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--task", default="sick")
    ap.add_argument("--poolings", default=POOLINGS)
    ap.add_argument("--postprocess", default="none,center,whiten")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="first N pairs (default: all)")
    ap.add_argument(
        "--naive-slots",
        type=int,
        default=800,
        help="sentence slots timed per naive configuration (then extrapolated)",
    )
    ap.add_argument("--out", default="runs/bench-embed-grid")
    ap.add_argument("--skip-naive", action="store_true")
    args = ap.parse_args()

    import workbench as wb
    from workbench.evaluation import evaluate_grid, load_task, parse_grid_poolings

    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, threads pinned to {torch.get_num_threads()}, "
        f"{os.cpu_count()} cores visible, {platform.processor() or platform.machine()}"
    )
    lm = wb.load_model(args.model)
    task = load_task(args.task, limit=args.limit)
    info = task.describe()
    print(
        f"task {info['name']}: {info['n_pairs']} pairs, {info['n_sentence_slots']} sentence "
        f"slots, {info['n_unique_sentences']} distinct sentences"
    )

    # -- the grid ----------------------------------------------------------------------------------
    out = Path(args.out)
    if out.exists():
        import shutil

        shutil.rmtree(out)  # time a cold grid, not a reused one
    t0 = time.perf_counter()
    df = evaluate_grid(
        lm,
        task,
        layers="all",
        poolings=args.poolings,
        postprocess=args.postprocess,
        out=out,
        threads=args.threads,
        progress=False,
    )
    grid_s = time.perf_counter() - t0
    summary = df.attrs["summary"]
    grid_pool = parse_grid_poolings(args.poolings)
    n_layers = len(summary["layers"])
    n_configs = n_layers * len(grid_pool)
    print(
        f"grid: {n_layers} layers x {len(grid_pool)} poolings = {n_configs} configurations "
        f"x {len(summary['postprocess'])} post-processings = {len(df)} cells"
    )
    for s in summary["stores"]:
        print(
            f"  store {Path(s['path']).name}: poolings {s['poolings']}, {s['n_texts']} texts, "
            f"{s['n_tokens']} tokens, forward {s['forward_s']} s"
        )
    t = summary["timing"]
    print(
        f"grid wall {grid_s:.1f} s = extraction {t['extract_s']:.1f} s ({summary['forward_passes']}"
        f" forward passes) + evaluation {t['evaluate_s']:.1f} s"
    )

    result = {
        "model": lm.name,
        "task": info,
        "threads": args.threads,
        "grid_wall_s": grid_s,
        "grid_timing": t,
        "n_configurations": n_configs,
        "n_cells": len(df),
        "stores": summary["stores"],
        "best": summary["best"],
    }

    # -- the naive loop (measured on a subset, extrapolated) ---------------------------------------
    if not args.skip_naive:
        slots = [*task.sentences1, *task.sentences2]
        rng = random.Random(0)
        sample = rng.sample(slots, min(args.naive_slots, len(slots)))
        per_template: dict[str | None, float] = {}
        mid = n_layers // 2
        for template in dict.fromkeys(p.template for p in grid_pool):
            pooling = "mean" if template is None else "last"
            secs, toks = naive_config_seconds(lm, sample, template, mid, pooling)
            per_slot = secs / len(sample)
            per_template[template] = per_slot * len(slots)
            name = "plain" if template is None else template[:30]
            print(
                f"  naive config (layer {mid}, {pooling}, template {name!r}): {secs:.1f} s for "
                f"{len(sample)} slots ({toks} tokens) -> {per_template[template]:.0f} s "
                f"extrapolated to {len(slots)} slots"
            )
        naive_s = sum(per_template[p.template] * n_layers for p in grid_pool)
        print(
            f"naive loop, extrapolated: {n_configs} configurations x one full forward each = "
            f"{naive_s:.0f} s ({naive_s / 3600:.2f} h)"
        )
        print(
            f"ratio naive / grid: {naive_s / grid_s:.0f}x  (extraction only: "
            f"{naive_s / t['extract_s']:.0f}x); post-processings add cells, not forwards"
        )
        result.update(
            naive_extrapolated_s=naive_s,
            naive_slots_measured=len(sample),
            naive_per_config_s={str(k): v for k, v in per_template.items()},
            ratio=naive_s / grid_s,
            ratio_extraction=naive_s / t["extract_s"],
        )
    (out / "bench.json").write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {out / 'bench.json'}")


if __name__ == "__main__":
    main()
