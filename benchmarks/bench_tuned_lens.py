"""Tuned lens vs logit lens on SmolLM2-135M: per-layer KL to the model's output and perplexity
on held-out UD English sentences, with training time.

Texts: sentences of 5-25 words from ``../shared/data/ud_english_ewt/en_ewt-ud-dev.conllu`` (the
built-in ``cities`` statements if it is absent); the last ``--holdout`` are held out, the
translators are fitted on the first ``--train-texts`` of the rest. Two tuned lenses are compared
with the logit lens: the least-squares start alone (``steps=0``) and the same refined by
``--steps`` AdamW steps on the KL. Position 0 (SmolLM2's attention sink) is left out.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/bench_tuned_lens.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import workbench as wb
from workbench.lens.tuned import TunedLens, lens_report

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--holdout", type=int, default=100)
    ap.add_argument("--eval-texts", type=int, default=50, help="held-out texts evaluated")
    ap.add_argument("--eval-layers", default="0:31:3", help="'all' or start:stop:step")
    ap.add_argument("--train-texts", type=int, default=512, help="texts for least squares")
    ap.add_argument("--steps", type=int, default=10, help="KL steps after least squares")
    ap.add_argument("--tokens-per-step", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-length", type=int, default=24)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-tuned-lens"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ud = SHARED / "data/ud_english_ewt/en_ewt-ud-dev.conllu"
    texts = wb.load_dataset(str(ud) if ud.is_file() else "cities").texts
    texts = [t for t in texts if 5 <= len(t.split()) <= 25]
    train, held = texts[: -args.holdout], texts[-args.holdout :][: args.eval_texts]
    lm = wb.load_model(args.model)
    n = lm.n_layers
    if args.eval_layers == "all":
        layers = list(range(n + 1))
    else:
        start, stop, step = (int(x) for x in args.eval_layers.split(":"))
        layers = sorted(set(range(start, min(stop, n + 1), step)) | {n})

    t0 = time.perf_counter()
    lstsq = TunedLens(lm).fit(
        train[: args.train_texts],
        steps=0,
        init_texts=args.train_texts,
        max_length=args.max_length,
        progress=True,
    )
    t_lstsq = time.perf_counter() - t0
    refined = TunedLens(lm) if args.steps else None
    t_kl = 0.0
    if refined is not None:
        refined.translators.load_state_dict(lstsq.translators.state_dict())
        t0 = time.perf_counter()
        refined.fit(
            train,
            steps=args.steps,
            init="identity",
            lr=args.lr,
            warmup=0,
            tokens_per_step=args.tokens_per_step,
            max_length=args.max_length,
            progress=True,
        )  # identity: keep the least-squares start
        t_kl = time.perf_counter() - t0
        refined.save(args.out)
    lenses = {"lstsq": lstsq, **({"kl": refined} if refined is not None else {})}
    rep = lens_report(lm, held, lenses, layers=layers, max_length=args.max_length)
    print(f"\n{lm.name}: {n} blocks, d_model {lm.d_model}; torch threads {args.threads}")
    print(
        f"least squares on {args.train_texts} texts: {t_lstsq:.0f} s; "
        f"{args.steps} KL steps x {args.tokens_per_step} tokens x {n} layers: {t_kl:.0f} s"
    )
    print(
        f"held out: {rep.n_texts} texts, {rep.n_tokens} tokens (position 0 left out), "
        f"model perplexity {rep.ppl_model:.1f}; evaluation {rep.seconds:.0f} s\n"
    )
    print(rep.to_markdown())
    summary = {
        "model": lm.name,
        "threads": args.threads,
        "train_texts": args.train_texts,
        "steps": args.steps,
        "tokens_per_step": args.tokens_per_step,
        "lr": args.lr,
        "seconds_lstsq": t_lstsq,
        "seconds_kl": t_kl,
        "eval_texts": rep.n_texts,
        "eval_tokens": rep.n_tokens,
        "ppl_model": rep.ppl_model,
        "table": rep.table.to_dict(orient="records"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
