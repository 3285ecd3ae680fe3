"""Benchmark: a short scripted training of the soft-prefix inverter and then of the trained
corrector on the inverter's real hypotheses, bundled MiniLM embeddings inverted by the bundled
SmolLM2-135M, from a clean copy (nothing is fetched). Records the loss, the held-out BLEU, token
F1 and cosine (``eval.jsonl``) and the seconds per step, into a JSON (``--json``, one entry per
``--label``) and the training section of benchmarks/INVERSION.md.

    # one GPU (bf16 autocast by default on CUDA)
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_invert_train.py --device cuda \\
        --steps 300 --corrector-steps 300 --batch-size 64 --label "H100, 300 steps"
    # CPU smoke setting (proves the script; the figures mean little)
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_invert_train.py \\
        --device cpu --steps 5 --label "CPU smoke"

Data: the UD English EWT dev sentences of ``../shared`` (the 100 held-out sentences of
bench_inversion.py are never trained on; ``--n-eval`` of them are the evaluation slice), or
``--data`` (a .txt, a data file or ``hf:NAME[:CONFIG][:SPLIT]``, already on disk or in the HF
cache) with the held-out sentences removed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inversion import split  # noqa: E402

START, END = "<!-- bench_invert_train:start -->", "<!-- bench_invert_train:end -->"


def _summary(model: Any, out: Path, wall: float, texts_per_step: int) -> dict[str, Any]:
    """Loss, seconds per step and the last held-out record of a finished training."""
    from workbench.inversion.trained import read_eval_log

    losses, secs = model.losses_, model.seconds_
    k = max(1, min(10, len(losses) // 4))
    steady = secs[1:] or secs  # the first step pays for warm-up (kernels, caches)
    log = read_eval_log(out)
    last = log[-1] if log else {}
    return {
        "steps": model.step_,
        "texts_per_step": texts_per_step,
        "precision": model.config.precision,
        "loss_first": round(float(np.mean(losses[:k])), 4),
        "loss_last": round(float(np.mean(losses[-k:])), 4),
        "seconds_per_step_median": round(float(np.median(steady)), 4),
        "texts_per_second": round(texts_per_step / float(np.median(steady)), 1),
        "wall_seconds": round(wall, 1),
        "eval": {k: v for k, v in last.items() if k != "train_loss"},
        "eval_curve": [
            {k: r.get(k) for k in ("step", "train_loss", "bleu", "token_f1", "cosine")} for r in log
        ],
    }


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    threads = torch.get_num_threads()
    return f"CPU {platform.machine()}, {os.cpu_count()} cores, torch threads {threads}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default=None, help="cpu, cuda (default: cuda if present)")
    ap.add_argument("--steps", type=int, default=300, help="inverter steps")
    ap.add_argument("--corrector-steps", type=int, default=None, help="default: --steps")
    ap.add_argument("--batch-size", type=int, default=None, help="default 64 on CUDA, 4 on CPU")
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--precision", default="auto", help="auto (bf16 on CUDA), bf16 or fp32")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--n-eval", type=int, default=None, help="default 100 on CUDA, 8 on CPU")
    ap.add_argument(
        "--eval-every", type=int, default=None, help="default: steps / 4 on CUDA, steps on CPU"
    )
    ap.add_argument(
        "--n-train", type=int, default=None, help="first N training texts (all on CUDA, 64 on CPU)"
    )
    ap.add_argument("--data", default=None, help="training texts (default: UD EWT dev)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--workdir", type=Path, default=None, help="checkpoints (default: a temp dir)")
    ap.add_argument("--label", default=None, help="key of this run in the JSON")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "INVERSION_TRAIN.json")
    ap.add_argument("--md", type=Path, default=ROOT / "benchmarks" / "INVERSION.md")
    args = ap.parse_args()

    import torch

    from workbench.inversion.correction import HYPOTHESES_FILE, TrainedCorrector, cached_hypotheses
    from workbench.inversion.embedders import ModelEmbedder
    from workbench.inversion.trained import InverterConfig, SoftPrefixInverter
    from workbench.models import load_model

    torch.set_num_threads(args.threads)
    dev = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    gpu = dev.startswith("cuda")
    batch = args.batch_size or (64 if gpu else 4)
    n_eval = args.n_eval or (100 if gpu else 8)
    precision = args.precision if args.precision != "auto" else ("bf16" if gpu else "fp32")
    held, _, train = split()
    if args.data is not None:
        from workbench.data import load_dataset

        keep = set(held)
        train = [t for t in load_dataset(args.data).texts if t.strip() and t not in keep]
    train = train[: args.n_train or (None if gpu else 64)]
    held = held[:n_eval]
    every = args.eval_every or (max(1, args.steps // 4) if gpu else args.steps)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_invert_train."))
    shutil.rmtree(work / "inverter", ignore_errors=True)  # a clean run every time
    shutil.rmtree(work / "corrector", ignore_errors=True)
    print(f"{dev} ({_device_name(dev)}), {precision}, batch {batch} x {args.grad_accum}")
    print(f"{len(train)} training texts, {len(held)} held out, checkpoints in {work}")

    t0 = time.time()
    emb = ModelEmbedder(load_model("minilm-l6", device=dev))
    lm = load_model("smollm2-135m", device=dev)
    load_s = time.time() - t0
    config = InverterConfig(
        batch_size=batch, grad_accum=args.grad_accum, lr=args.lr, precision=precision
    )
    fit = {"held_out": held, "eval_every": every, "checkpoint_every": every}
    t0 = time.time()
    inv = SoftPrefixInverter(lm, emb, config).fit(train, work / "inverter", args.steps, **fit)
    runs = {"inverter": _summary(inv, work / "inverter", time.time() - t0, batch * args.grad_accum)}

    t0 = time.time()
    everything = [*train, *held]

    def make(part: list[str]) -> list[str]:
        with inv.autocast():
            return inv.invert(emb.embed(part), max_new_tokens=config.max_tokens)

    hyps = cached_hypotheses(
        everything, work / "corrector" / HYPOTHESES_FILE, make, source="bench", chunk=4 * batch
    )
    hyp_s = time.time() - t0
    t0 = time.time()
    corr = TrainedCorrector(lm, emb, config).fit(
        train,
        work / "corrector",
        args.corrector_steps or args.steps,
        drafts=hyps[: len(train)],
        held_out_drafts=hyps[len(train) :],
        **fit,
    )
    runs["corrector"] = _summary(
        corr, work / "corrector", time.time() - t0, batch * args.grad_accum
    )
    runs["corrector"]["hypotheses_seconds"] = round(hyp_s, 1)
    result = {
        "device": dev,
        "device_name": _device_name(dev),
        "torch": torch.__version__,
        "n_train": len(train),
        "n_held_out": len(held),
        "model_load_seconds": round(load_s, 1),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_end": [round(x, 1) for x in os.getloadavg()],
        "command": "python benchmarks/bench_invert_train.py " + " ".join(sys.argv[1:]),
        **runs,
    }
    label = args.label or f"{dev}, {args.steps} steps"
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    results[label] = result
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    _write_section(args.md, results)
    print(json.dumps(result, indent=2))
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


def _write_section(md: Path, results: dict[str, Any]) -> None:
    """Rewrite the part of ``md`` between the markers with one table row per run and kind."""
    rows = [
        "| run | device | kind | steps | texts/step | precision | loss first → last | "
        "s/step (median) | held-out BLEU | token F1 | cosine | drafts' cosine |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        for kind in ("inverter", "corrector"):
            k = r[kind]
            e = k["eval"]
            draft = f"{e['draft_cosine']:.3f}" if "draft_cosine" in e else "—"
            rows.append(
                f"| {label} | {r['device_name']} | {kind} | {k['steps']} | {k['texts_per_step']} "
                f"| {k['precision']} | {k['loss_first']:.2f} → {k['loss_last']:.2f} | "
                f"{k['seconds_per_step_median']:.3f} | {e.get('bleu', float('nan')):.2f} | "
                f"{e.get('token_f1', float('nan')):.3f} | {e.get('cosine', float('nan')):.3f} | "
                f"{draft} |"
            )
    body = "\n".join(rows)
    text = md.read_text()
    if START in text:
        head, rest = text.split(START, 1)
        text = head + START + "\n" + body + "\n" + END + rest.split(END, 1)[1]
    else:
        text += f"\n{START}\n{body}\n{END}\n"
    md.write_text(text)


if __name__ == "__main__":
    main()
