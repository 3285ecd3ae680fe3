"""Benchmark: inverting bundled MiniLM embeddings with SmolLM2 on held-out UD English EWT dev
sentences of 5-25 words; every method's BLEU, token F1, exact match, cosine (with the
bag-of-words anchor), perplexity and seconds per sentence, and the figures after each correction
step. Writes a Markdown table (``--out``, default benchmarks/INVERSION.md) and a JSON next to it.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 WORKBENCH_CACHE=/tmp/wbcache \\
        .venv/bin/python benchmarks/bench_inversion.py --n 100 --train-minutes 20

The held-out sentences are drawn with a fixed seed; the trained inverter sees only the other dev
sentences (or a train file given with ``--train-conllu``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "ud_english_ewt" / "en_ewt-ud-dev.conllu"


def split(
    conllu: Path = DEV, n_heldout: int = 100, seed: int = 0, min_words: int = 5, max_words: int = 25
) -> tuple[list[str], list[list[str]], list[str]]:
    """Held-out texts, their PROPN words (named entities) and the training texts (all other
    sentences of the file whose text is not held out)."""
    from workbench.data import load_dataset

    ds = load_dataset(conllu)
    texts = list(ds.texts)
    upos = ds.word_columns["upos"]
    ok = [i for i, w in enumerate(ds.words) if min_words <= len(w) <= max_words]
    rng = np.random.default_rng(seed)
    held = sorted(rng.choice(ok, size=min(n_heldout, len(ok)), replace=False).tolist())
    held_texts = {texts[i] for i in held}
    entities = [
        [w for w, u in zip(ds.words[i], upos[i], strict=True) if u == "PROPN"] for i in held
    ]
    train = [t for i, t in enumerate(texts) if t not in held_texts and t.strip()]
    return [texts[i] for i in held], entities, train


def _methods(
    lm: Any, emb: Any, trained: Any, corrector: Any, steps: int, corrector_steps: int
) -> dict[str, tuple[str | None, Any]]:
    """name -> (base method or None, callable). A callable without a base maps a target [dim]
    to an InversionResult; one with a base maps (target, the base's InversionResult) to one that
    goes on from it (its time includes the base's)."""
    from workbench.inversion.correction import HybridInverter
    from workbench.inversion.guided import GuidedInverter

    greedy = GuidedInverter(lm, emb, beam_width=1, top_k=5, keywords=10, rewrite_rounds=0)
    out: dict[str, tuple[str | None, Any]] = {"guided greedy": (None, greedy.invert)}

    def corrected(x: np.ndarray, first: Any) -> Any:
        return corrector.refine(x, first, corrector_steps)

    if corrector is not None:
        out[f"guided greedy + trained corrector ({corrector_steps} steps)"] = (
            "guided greedy",
            corrected,
        )
    if trained is not None:
        out["soft-prefix inverter"] = (None, trained.reconstruct)
        if corrector is not None:
            out[f"soft-prefix + trained corrector ({corrector_steps} steps)"] = (
                "soft-prefix inverter",
                corrected,
            )
        out[f"hybrid (prefix proposes, {steps} rewrite(s))"] = (
            None,
            HybridInverter(trained, GuidedInverter(lm, emb), proposals=4, steps=steps).invert,
        )
    beam = GuidedInverter(lm, emb, rewrite_rounds=steps)
    out[f"guided beam + {steps} rewrite(s)"] = (None, beam.invert)
    return out  # the slowest last, so that an interrupted run keeps the others


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--n",
        type=int,
        default=100,
        help="held-out sentences (all 100 take hours on a busy 2-core CPU)",
    )
    ap.add_argument("--steps", type=int, default=1, help="correction (rewrite) steps")
    ap.add_argument(
        "--checkpoint",
        type=Path,
        default=Path("runs/inverter-minilm-smollm2"),
        help="trained inverter folder (trained here first if it holds none)",
    )
    ap.add_argument(
        "--train-minutes",
        type=float,
        default=0.0,
        help="train (or resume) the soft-prefix inverter this long first",
    )
    ap.add_argument(
        "--corrector",
        type=Path,
        default=Path("runs/corrector-minilm-smollm2"),
        help="trained corrector folder (its methods are skipped if it holds none)",
    )
    ap.add_argument("--corrector-steps", type=int, default=3, help="trained-corrector steps")
    ap.add_argument(
        "--train-conllu",
        type=Path,
        default=None,
        help="training sentences (default: the dev sentences not held out)",
    )
    ap.add_argument("--methods", default="all", help="comma-separated substrings of method names")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "INVERSION.md")
    ap.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="only merge the JSONs of runs split by --methods into --out",
    )
    args = ap.parse_args()
    if args.merge:
        runs = [json.loads(f.read_text()) for f in args.merge]
        meta = {
            **runs[0]["meta"],
            "load_average": max((r["meta"]["load_average"] for r in runs), key=lambda la: la[0]),
        }
        results = {k: v for r in runs for k, v in r["results"].items()}
        args.out.with_suffix(".json").write_text(
            json.dumps({"meta": meta, "results": results}, indent=2)
        )
        args.out.write_text(_markdown(meta, results))
        print(args.out.read_text())
        return

    import torch

    torch.set_num_threads(args.threads)
    from workbench import load_model
    from workbench.inversion.correction import TrainedCorrector
    from workbench.inversion.embedders import ModelEmbedder
    from workbench.inversion.metrics import evaluate
    from workbench.inversion.trained import InverterConfig, SoftPrefixInverter

    held, entities, train = split()
    if args.train_conllu is not None:
        from workbench.data import load_dataset

        keep = set(held)
        train = [t for t in load_dataset(args.train_conllu).texts if t.strip() and t not in keep]
    held, entities = held[: args.n], entities[: args.n]
    lm, emb = load_model("smollm2-135m"), ModelEmbedder("minilm-l6")
    trained = None
    if args.train_minutes > 0:
        inv = SoftPrefixInverter(lm, emb, InverterConfig(batch_size=8, lr=2e-3))
        inv.fit(
            train,
            args.checkpoint,
            steps=100_000,
            checkpoint_every=10,
            max_seconds=60 * args.train_minutes,
        )
    if (args.checkpoint / "inverter.json").exists():
        trained = SoftPrefixInverter.load(args.checkpoint, lm, emb)
    corrector = None
    if (args.corrector / "inverter.json").exists():
        corrector = TrainedCorrector.load(args.corrector, lm, emb)
    methods = _methods(lm, emb, trained, corrector, args.steps, args.corrector_steps)
    if args.methods != "all":
        wanted = args.methods.split(",")
        chosen = {k for k in methods if any(w in k for w in wanted)}
        chosen |= {methods[k][0] for k in chosen if methods[k][0] is not None}
        methods = {k: v for k, v in methods.items() if k in chosen}
    targets = emb.embed(held)
    results: dict[str, Any] = {}
    done: dict[str, tuple[list[Any], float, float]] = {}  # name -> (results, wall, cpu)
    for name, (base, fn) in methods.items():
        runs, wall, cpu = [], 0.0, 0.0
        if base is not None:
            _, wall, cpu = done[base]  # a continuation costs its base's time too
        for i, x in enumerate(targets):
            w0, c0 = time.time(), time.process_time()
            runs.append(fn(x) if base is None else fn(x, done[base][0][i]))
            wall += time.time() - w0
            cpu += time.process_time() - c0
            print(
                f"[{name}] {i + 1}/{len(held)} cos {runs[-1].cosine:.3f}: {runs[-1].text}",
                flush=True,
            )
        done[name] = (runs, wall, cpu)
        per_step = []
        for s in range(max(len(r.history) for r in runs)):
            hyps = [r.history[min(s, len(r.history) - 1)][1] for r in runs]
            per_step.append({"step": s, **evaluate(held, hyps, emb, targets=targets)})
        final = evaluate(
            held, [r.text for r in runs], emb, targets=targets, lm=lm, entities=entities
        )
        results[name] = {
            **final,
            "wall_s_per_sentence": wall / len(held),
            "cpu_s_per_sentence": cpu / len(held),
            "per_step": per_step,
            "examples": [(h, r.text) for h, r in zip(held, runs, strict=True)][:5],
        }
        print(
            name,
            {k: v for k, v in results[name].items() if k not in ("per_step", "examples")},
            flush=True,
        )
        meta = {
            "n": len(held),
            "n_train": len(train),
            "threads": args.threads,
            "trained_steps": None if trained is None else trained.step_,
            "corrector_steps_trained": None if corrector is None else corrector.step_,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "load_average": os.getloadavg(),
        }
        # after every method, so that an interrupted run keeps what it measured
        args.out.with_suffix(".json").write_text(
            json.dumps({"meta": meta, "results": results}, indent=2)
        )
        args.out.write_text(_markdown(meta, results))
    print(args.out.read_text())


def _markdown(meta: dict[str, Any], results: dict[str, Any]) -> str:
    cols = [
        "bleu",
        "token_f1",
        "exact_match",
        "cosine",
        "cosine_bow_anchor",
        "perplexity",
        "entity_recall",
        "wall_s_per_sentence",
        "cpu_s_per_sentence",
    ]
    lines = [
        f"Held-out sentences: {meta['n']}; training sentences: {meta['n_train']}; "
        f"trained inverter steps: {meta['trained_steps']}; torch threads "
        f"{meta['threads']}; {meta['machine']}; load average at the end "
        f"{tuple(round(x, 1) for x in meta['load_average'])}.",
        "",
        "| method | " + " | ".join(cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")
    lines += [
        "",
        "After each correction step (step 0: before correction):",
        "",
        "| method | step | bleu | token_f1 | exact_match | cosine | cosine_bow_anchor |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for s in r["per_step"]:
            lines.append(
                f"| {name} | {s['step']} | {s['bleu']:.3f} | {s['token_f1']:.3f} | "
                f"{s['exact_match']:.3f} | {s['cosine']:.3f} | "
                f"{s['cosine_bow_anchor']:.3f} |"
            )
    lines += ["", "Examples (reference -> reconstruction):", ""]
    for name, r in results.items():
        for ref, hyp in r["examples"][:3]:
            lines.append(f"- {name}: `{ref}` -> `{hyp}`")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
