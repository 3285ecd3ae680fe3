"""Extraction benchmark: ``wb.extract`` against a plain Hugging Face forward, TransformerLens and
nnsight, plus memory, batching and thread-count figures.

Every contender runs the *same* batches: the texts are tokenised with workbench's own
``_tokenize`` and batched with its length-sorted plan (``_batches``), right-padded, with
``max_batch_size`` = the batch size and a token budget large enough that the batch size binds.
Every contender pools ``mean`` and ``last`` over the real tokens of every residual layer with
the same ``pool`` function and copies the vectors to numpy; only ``wb.extract`` writes them to
disk (a fresh folder each repeat, fsync and checksums included). Tokenisation and batching are
inside every contender's timed region.

Contenders are interleaved (A, B, C, A, B, C, ... with the starting contender rotated each round)
and the figures are medians, so a neighbour's load on the shared 2-core machine hits all of them
alike. Ratios are medians over rounds of the per-round time ratio.

Run (from the repository root; TransformerLens and nnsight are optional)::

    . .venv-bench/bin/activate   # or .venv: then TL/nnsight print "not installed"
    HF_HUB_OFFLINE=1 python benchmarks/bench_extract.py --model both --json bench.json
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import workbench as wb  # noqa: E402
import workbench.activations.extract as wbx  # noqa: E402
from workbench.activations.pooling import parse_poolings, pool  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CITIES = REPO.parent / "shared" / "data" / "geometry_of_truth" / "cities.csv"
MODELS = ("smollm2-135m", "minilm-l6")
TARGETS = {"smollm2-135m": 1.15, "minilm-l6": 0.97}  # wb.extract / plain HF forward, tokens/s
RSS_TARGET = 1.25
MEAN, LAST = parse_poolings("mean,last")


# ----------------------------------------------------------------------------------------------
# data and plan


def load_texts(n: int) -> tuple[list[str], str]:
    """``n`` statements of cities.csv (cycled when ``n`` exceeds the file), or generated ones."""
    if CITIES.is_file():
        with CITIES.open(newline="", encoding="utf-8") as f:
            base = [row["statement"] for row in csv.DictReader(f)]
        source = f"{CITIES.name} ({len(base)} statements{', cycled' if n > len(base) else ''})"
    else:
        cities = [
            "Paris",
            "Lagos",
            "Osaka",
            "Lima",
            "Kraków",
            "Montevideo",
            "Dhaka",
            "Perth",
            "Winnipeg",
            "Marrakesh",
            "Chongqing",
            "São Paulo",
            "Tbilisi",
            "Accra",
        ]
        countries = [
            "France",
            "Nigeria",
            "Japan",
            "Peru",
            "Poland",
            "Uruguay",
            "Bangladesh",
            "Australia",
            "Canada",
            "Morocco",
            "China",
            "Brazil",
            "Georgia",
            "Ghana",
        ]
        base = [f"The city of {c} is in {k}." for c in cities for k in countries]
        source = "generated 'The city of X is in Y.' (../shared missing)"
    return [base[i % len(base)] for i in range(n)], source


def segments(lm: Any, b: Any) -> dict[str, torch.Tensor]:
    """Segment ids where the model has a segment embedding (BERT), as its tokenizer gives them."""
    if getattr(lm.config, "type_vocab_size", 0):
        return {"token_type_ids": torch.zeros_like(b.input_ids)}
    return {}


def plan(lm: Any, ids: list[list[int]], bs: int, max_len: int) -> list[Any]:
    """workbench's own length-sorted plan; the token budget never binds before ``bs``."""
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    return list(wbx._batches(ids, bs * max_len, bs, pad, "right"))


_SORTED_BATCHES = wbx._batches


def input_order_batches(
    ids: list[list[int]], batch_tokens: int, max_batch_size: int, *args: Any, **kwargs: Any
) -> Any:
    """Drop-in for ``wbx._batches`` without the length sort: consecutive chunks of
    ``max_batch_size`` texts in dataset order, each padded to its own longest text. Each chunk
    goes through workbench's own ``_batches`` (so the padding and tensors are built the same
    way; the order of rows inside a batch does not change its cost); per-row list arguments
    (such as ``scopes``) are sliced alongside."""
    for pos in range(0, len(ids), max_batch_size):
        cut = slice(pos, pos + max_batch_size)
        a = [x[cut] if isinstance(x, list) else x for x in args]
        kw = {k: v[cut] if isinstance(v, list) else v for k, v in kwargs.items()}
        for b in _SORTED_BATCHES(ids[cut], 1 << 40, max_batch_size, *a, **kw):
            yield dataclasses.replace(b, rows=[pos + r for r in b.rows])


def same_plan(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(
        x.rows == y.rows
        and torch.equal(x.input_ids, y.input_ids)
        and torch.equal(x.attention_mask, y.attention_mask)
        for x, y in zip(a, b, strict=True)
    )


def padding_fraction(batches: list[Any]) -> float:
    real = sum(int(b.attention_mask.sum()) for b in batches)
    padded = sum(b.attention_mask.numel() for b in batches)
    return 1.0 - real / padded


# ----------------------------------------------------------------------------------------------
# contenders: each runs the whole job and returns (mean, last) arrays [states, rows, d] or None


class Pooled:
    """Preallocated ``[states, rows, d]`` float32 arrays, filled in dataset order."""

    def __init__(self, n_states: int, n: int, d: int) -> None:
        self.mean = np.empty((n_states, n, d), dtype=np.float32)
        self.last = np.empty((n_states, n, d), dtype=np.float32)

    def add(self, states: Any, mask: torch.Tensor, rows: list[int]) -> None:
        m = mask.bool()
        for j, h in enumerate(states):
            self.mean[j, rows] = pool(h, m, MEAN).cpu().numpy()
            self.last[j, rows] = pool(h, m, LAST).cpu().numpy()


def make_wb(lm: Any, bs: int, max_len: int, threads: int, root: Path) -> Callable[[list[str]], Any]:
    """``wb.extract`` into a fresh folder; ``run.plan`` keeps the batches it built last time
    (recorded by a pass-through wrapper around ``_batches``: a list append per batch)."""

    def run(texts: list[str]) -> Any:
        out = Path(tempfile.mkdtemp(dir=root)) / "run"  # fresh, empty folder every call
        run.plan = []
        original = wbx._batches

        def record(*args: Any, **kwargs: Any) -> Any:
            for b in original(*args, **kwargs):
                run.plan.append(b)
                yield b

        wbx._batches = record
        try:
            return wb.extract(
                lm,
                texts,
                layers="all",
                pooling="mean,last",
                out=out,
                batch_tokens=bs * max_len,
                max_batch_size=bs,
                shard_size=max(1024, len(texts)),
                threads=threads,
                progress=False,
                overwrite=True,
            )
        finally:
            wbx._batches = original

    run.plan = []
    return run


def make_hf(
    lm: Any, model: Any, bs: int, max_len: int, n_states: int
) -> Callable[[list[str]], Any]:
    kwargs = {"use_cache": False} if lm.kind == "decoder" else {}

    def run(texts: list[str]) -> Any:
        ids, _ = wbx._tokenize(lm, texts, None)
        acc = Pooled(n_states, len(texts), lm.d_model)
        with torch.inference_mode():
            for b in plan(lm, ids, bs, max_len):
                out = model(
                    input_ids=b.input_ids,
                    attention_mask=b.attention_mask,
                    **segments(lm, b),
                    output_hidden_states=True,
                    **kwargs,
                )
                acc.add(out.hidden_states, b.attention_mask, b.rows)
        return acc

    return run


def make_tl(lm: Any, bridge: Any, bs: int, max_len: int) -> Callable[[list[str]], Any]:
    names = [f"blocks.{i}.hook_resid_post" for i in range(lm.n_layers)]

    def run(texts: list[str]) -> Any:
        ids, _ = wbx._tokenize(lm, texts, None)
        acc = Pooled(len(names), len(texts), lm.d_model)
        with torch.inference_mode():
            for b in plan(lm, ids, bs, max_len):
                _, cache = bridge.run_with_cache(
                    b.input_ids,
                    attention_mask=b.attention_mask,
                    names_filter=lambda name: name.endswith("hook_resid_post"),
                )
                acc.add([cache[k] for k in names], b.attention_mask, b.rows)
        return acc

    return run


def _nn_trace(
    model: Any, blocks: Any, inputs: dict[str, torch.Tensor], n: int, as_kwargs: bool
) -> list[Any]:
    # nnsight runs the body of a trace in its own frame: keep it a plain loop in a function
    # (a list comprehension there leaves the name unbound).
    saved = []
    with model.trace(**inputs) if as_kwargs else model.trace(inputs):
        for i in range(n):
            saved.append(blocks[i].output.save())
    return saved


def make_nnsight(
    lm: Any, model: Any, bs: int, max_len: int, as_kwargs: bool
) -> Callable[[list[str]], Any]:
    blocks = model  # walk the envoy tree, so that .output is nnsight's
    for part in lm.blocks_path.split("."):
        blocks = getattr(blocks, part)

    def run(texts: list[str]) -> Any:
        ids, _ = wbx._tokenize(lm, texts, None)
        acc = Pooled(lm.n_layers, len(texts), lm.d_model)
        with torch.inference_mode():
            for b in plan(lm, ids, bs, max_len):
                inputs = {
                    "input_ids": b.input_ids,
                    "attention_mask": b.attention_mask,
                    **segments(lm, b),
                }
                saved = _nn_trace(model, blocks, inputs, lm.n_layers, as_kwargs)
                states = [s if isinstance(s, torch.Tensor) else s[0] for s in saved]
                acc.add(states, b.attention_mask, b.rows)
        return acc

    return run


# ----------------------------------------------------------------------------------------------
# timing


def as_pooled(result: Any) -> Any:
    """A contender's result as ``.mean``/``.last`` ``[states, rows, d]`` arrays in memory."""
    if isinstance(result, Pooled):
        return result
    out = Pooled.__new__(Pooled)
    out.mean = np.moveaxis(result.get("mean"), 0, 1).copy()
    out.last = np.moveaxis(result.get("last"), 0, 1).copy()
    return out


def interleave(
    contenders: dict[str, Callable[[list[str]], Any]],
    texts: list[str],
    repeats: int,
    cleanup: Path | None = None,
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Time every contender ``repeats`` times, interleaved, rotating who goes first."""
    names = list(contenders)
    times: dict[str, list[float]] = {k: [] for k in names}
    first: dict[str, Any] = {}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            gc.collect()
            t0 = time.perf_counter()
            result = contenders[name](texts)
            times[name].append(time.perf_counter() - t0)
            if name not in first:
                first[name] = as_pooled(result)
            del result
            if cleanup is not None:
                for child in cleanup.iterdir():
                    shutil.rmtree(child, ignore_errors=True)
    return times, first


def paired_ratio(base: list[float], other: list[float]) -> float:
    """Median over rounds of other_time / base_time (> 1: base is faster)."""
    return statistics.median(o / b for b, o in zip(base, other, strict=True))


def max_diff(lm: Any, ours: Any, other: Any, offset: int) -> float:
    """Largest |Δ| of mean and last pooling vs workbench on layers 1 and n_layers-1 (every
    contender has them; ``offset`` maps a hidden-state index to the contender's state index)."""
    worst = 0.0
    for layer in (1, lm.n_layers - 1):
        for a, b in ((ours.mean, other.mean), (ours.last, other.last)):
            worst = max(worst, float(np.abs(a[layer] - b[layer + offset]).max()))
    return worst


# ----------------------------------------------------------------------------------------------
# parts


def bench_vs_others(
    lm: Any, texts: list[str], args: argparse.Namespace, root: Path, report: dict[str, Any]
) -> None:
    from transformers import AutoModel, AutoModelForCausalLM

    ids, _ = wbx._tokenize(lm, texts, None)
    n_tokens = sum(len(x) for x in ids)
    max_len = max(len(x) for x in ids)
    n_states = lm.n_layers + 1
    loader = AutoModelForCausalLM if lm.kind == "decoder" else AutoModel
    hf = loader.from_pretrained(lm.source, dtype=torch.float32).eval()
    others: dict[str, Any] = {}
    notes: dict[str, str] = {}

    try:
        from transformer_lens import TransformerBridge
    except ImportError:
        TransformerBridge = None
        notes["TransformerLens"] = "not installed"
    if TransformerBridge is not None:
        try:
            if lm.kind == "decoder":
                tl_hf = AutoModelForCausalLM.from_pretrained(lm.source, dtype=torch.float32)
            else:  # TL's BERT adapter wants a BertForMaskedLM; the MLM head is left random.
                from transformers import BertForMaskedLM

                tl_hf = BertForMaskedLM.from_pretrained(lm.source, dtype=torch.float32)
            bridge = TransformerBridge.boot_transformers(
                lm.source, hf_model=tl_hf.eval(), tokenizer=lm.tokenizer, device="cpu"
            )
            others["TransformerLens"] = bridge
        except Exception as exc:  # report, do not crash the benchmark
            notes["TransformerLens"] = f"cannot build offline: {type(exc).__name__}: {exc}"[:200]
    try:
        import warnings

        from nnsight import LanguageModel
    except ImportError:
        LanguageModel = None
        notes["nnsight"] = "not installed"
    if LanguageModel is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                nn_hf = loader.from_pretrained(lm.source, dtype=torch.float32).eval()
                if lm.kind == "decoder":
                    others["nnsight"] = (False, LanguageModel(nn_hf, tokenizer=lm.tokenizer))
                else:  # LanguageModel wraps a text-generation pipeline: BERT goes through NNsight
                    from nnsight import NNsight

                    others["nnsight"] = (True, NNsight(nn_hf))
                    notes["nnsight"] = "NNsight(model) (LanguageModel needs a generation model)"
        except Exception as exc:
            notes["nnsight"] = f"cannot build: {type(exc).__name__}: {exc}"[:200]

    print(
        f"\n[1+2] tokens/s, {lm.name}: {len(texts)} texts, {n_tokens} tokens, all {n_states} "
        f"residual states (TL/nnsight: the {lm.n_layers} block outputs), mean+last, "
        f"threads={args.threads}, repeats={args.repeats} (medians)"
    )
    for k in ("TransformerLens", "nnsight"):
        if k in notes:
            print(f"       {k}: {notes[k]}")
    print(
        f"{'batch':>5}  {'contender':<16} {'tok/s':>9} {'median s':>9} {'wb speed-up':>12} "
        f"{'max|Δ| vs wb':>13}  same batches"
    )
    rows = []
    for bs in args.batch_sizes:
        contenders: dict[str, Callable[[list[str]], Any]] = {
            "workbench": make_wb(lm, bs, max_len, args.threads, root),
            "HF forward": make_hf(lm, hf, bs, max_len, n_states),
        }
        if bs in args.others_batch_sizes:
            if "TransformerLens" in others:
                contenders["TransformerLens"] = make_tl(lm, others["TransformerLens"], bs, max_len)
            if "nnsight" in others:
                as_kwargs, nn_model = others["nnsight"]
                contenders["nnsight"] = make_nnsight(lm, nn_model, bs, max_len, as_kwargs)
        for fn in contenders.values():  # warm-up (one batch), untimed
            fn(texts[: min(len(texts), bs, 16)])
        for child in root.iterdir():
            shutil.rmtree(child, ignore_errors=True)
        times, first = interleave(contenders, texts, args.repeats, cleanup=root)
        plans_equal = same_plan(contenders["workbench"].plan, plan(lm, ids, bs, max_len))
        ours = first["workbench"]
        for name, ts in times.items():
            med = statistics.median(ts)
            row = {
                "model": lm.name,
                "batch": bs,
                "contender": name,
                "median_s": med,
                "tok_s": n_tokens / med,
                "times": ts,
                "same_plan": plans_equal,
            }
            if name != "workbench":
                row["wb_speedup"] = paired_ratio(times["workbench"], ts)
                offset = -1 if name in ("TransformerLens", "nnsight") else 0
                row["max_abs_diff"] = max_diff(lm, ours, first[name], offset)
            rows.append(row)
            sp = f"{row['wb_speedup']:.2f}x" if "wb_speedup" in row else "-"
            diff = f"{row['max_abs_diff']:.1e}" if "max_abs_diff" in row else "-"
            print(
                f"{bs:>5}  {name:<16} {row['tok_s']:>9.0f} {med:>9.2f} {sp:>12} {diff:>13}  "
                f"{'yes' if plans_equal else 'NO'}",
                flush=True,
            )
        del first, ours
    report.setdefault("vs_others", []).extend(rows)
    report.setdefault("notes", {}).update({f"{lm.name}: {k}": v for k, v in notes.items()})
    target = TARGETS.get(lm.name)
    if target is not None:
        sp = [r["wb_speedup"] for r in rows if r["contender"] == "HF forward"]
        verdict = "meets" if min(sp) >= target else "MISSES"
        print(
            f"  target vs HF forward: >= {target:.2f}x; measured "
            f"{', '.join(f'{s:.2f}x' for s in sp)} (batch {args.batch_sizes}) -> {verdict}"
        )
    del hf, others
    gc.collect()


def bench_sorting(
    lm: Any, texts: list[str], args: argparse.Namespace, root: Path, report: dict[str, Any]
) -> None:
    bs = args.single_batch
    ids, _ = wbx._tokenize(lm, texts, None)
    n_tokens = sum(len(x) for x in ids)
    max_len = max(len(x) for x in ids)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    sorted_plan = plan(lm, ids, bs, max_len)
    input_plan = list(input_order_batches(ids, bs * max_len, bs, pad, "right"))
    assert [sorted(b.rows) for b in input_plan] == [
        list(range(i, min(len(texts), i + bs))) for i in range(0, len(texts), bs)
    ]
    run = make_wb(lm, bs, max_len, args.threads, root)
    original = wbx._batches

    def unsorted(texts_: list[str]) -> Any:
        wbx._batches = input_order_batches
        try:
            return run(texts_)
        finally:
            wbx._batches = original

    run(texts[:16]), unsorted(texts[:16])
    times, _ = interleave({"sorted": run, "input order": unsorted}, texts, args.repeats, root)
    ratio = paired_ratio(times["sorted"], times["input order"])
    res = {
        "model": lm.name,
        "batch": bs,
        "sorted_tok_s": n_tokens / statistics.median(times["sorted"]),
        "input_tok_s": n_tokens / statistics.median(times["input order"]),
        "speedup": ratio,
        "pad_sorted": padding_fraction(sorted_plan),
        "pad_input": padding_fraction(input_plan),
        "times": times,
    }
    report.setdefault("sorting", []).append(res)
    print(
        f"\n[4] length-sorted vs dataset order, {lm.name}, wb.extract, batch {bs} "
        f"(input order = workbench with its sort patched out)"
    )
    print(
        f"  sorted: {res['sorted_tok_s']:.0f} tok/s, padding {res['pad_sorted']:.1%}   "
        f"input order: {res['input_tok_s']:.0f} tok/s, padding {res['pad_input']:.1%}   "
        f"sorted speed-up {ratio:.2f}x"
    )


def bench_threads(
    lm: Any, texts: list[str], args: argparse.Namespace, root: Path, report: dict[str, Any]
) -> None:
    bs = args.single_batch
    ids, _ = wbx._tokenize(lm, texts, None)
    n_tokens = sum(len(x) for x in ids)
    max_len = max(len(x) for x in ids)
    runs = {f"threads={t}": make_wb(lm, bs, max_len, t, root) for t in (1, 2)}
    for fn in runs.values():
        fn(texts[:16])
    times, _ = interleave(runs, texts, args.repeats, root)
    res = {
        "model": lm.name,
        "batch": bs,
        "times": times,
        "tok_s": {k: n_tokens / statistics.median(v) for k, v in times.items()},
        "speedup_2_over_1": paired_ratio(times["threads=2"], times["threads=1"]),
        "load_avg": os.getloadavg(),
    }
    report.setdefault("thread_scaling", []).append(res)
    print(
        f"\n[5] torch threads, {lm.name}, wb.extract, batch {bs} (shared, noisy 2-core machine; "
        f"load average now {res['load_avg'][0]:.2f})"
    )
    print(
        f"  threads=1: {res['tok_s']['threads=1']:.0f} tok/s   threads=2: "
        f"{res['tok_s']['threads=2']:.0f} tok/s   2 threads speed-up {res['speedup_2_over_1']:.2f}x"
    )


def rss_child(model: str, n: int, shard_size: int, threads: int, bs: int) -> None:
    """In a fresh process: load, reset the peak, extract, print the peaks as JSON."""
    import psutil

    torch.set_num_threads(threads)
    texts, _ = load_texts(n)
    lm = wb.load_model(model)
    gc.collect()
    after_load = psutil.Process().memory_info().rss
    try:  # Linux: "5" resets VmHWM, so the extraction's own peak can be read
        Path("/proc/self/clear_refs").write_text("5")
        hwm_ok = True
    except OSError:
        hwm_ok = False
    with tempfile.TemporaryDirectory() as d:
        wb.extract(
            lm,
            texts,
            layers="all",
            pooling="mean,last",
            out=Path(d) / "run",
            batch_tokens=bs * 512,
            max_batch_size=bs,
            shard_size=shard_size,
            threads=threads,
            progress=False,
            overwrite=True,
        )
    hwm = None
    if hwm_ok:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    print(
        json.dumps(
            {
                "n": n,
                "after_load": after_load,
                "extract_peak": hwm,
                "process_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            }
        )
    )


def bench_rss(model: str, args: argparse.Namespace, report: dict[str, Any]) -> None:
    out = {}
    for n in (args.rss_n, 8 * args.rss_n):
        cmd = [
            sys.executable,
            __file__,
            "--rss-child",
            model,
            str(n),
            str(args.shard_size),
            str(args.threads),
            str(args.single_batch),
        ]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        if proc.returncode:
            print(proc.stderr[-2000:])
            raise SystemExit(f"RSS child for {model} n={n} failed")
        out[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    small, big = out[args.rss_n], out[8 * args.rss_n]
    mb = 1 / 2**20
    res = {
        "model": model,
        "shard_size": args.shard_size,
        "runs": out,
        "process_peak_ratio": big["process_peak"] / small["process_peak"],
    }
    if small["extract_peak"] and big["extract_peak"]:
        res["extract_peak_ratio"] = big["extract_peak"] / small["extract_peak"]
        res["growth_mb"] = {n: (v["extract_peak"] - v["after_load"]) * mb for n, v in out.items()}
    report.setdefault("rss", []).append(res)
    print(
        f"\n[3] peak RSS, {model}: {args.rss_n} vs {8 * args.rss_n} texts, all layers mean+last, "
        f"shard_size={args.shard_size}, each in a fresh process"
    )
    for n, v in out.items():
        extra = (
            f", extraction peak {v['extract_peak'] * mb:.0f} MB (+"
            f"{(v['extract_peak'] - v['after_load']) * mb:.0f} MB over the loaded model)"
            if v["extract_peak"]
            else ""
        )
        print(
            f"  n={n:>5}: process peak {v['process_peak'] * mb:.0f} MB, after load "
            f"{v['after_load'] * mb:.0f} MB{extra}"
        )
    verdict = "meets" if res["process_peak_ratio"] <= RSS_TARGET else "MISSES"
    line = f"  ratio 8N/N: process peak {res['process_peak_ratio']:.3f}"
    if "extract_peak_ratio" in res:
        line += f", extraction peak {res['extract_peak_ratio']:.3f}"
    print(f"{line} (target <= {RSS_TARGET}) -> {verdict}")


# ----------------------------------------------------------------------------------------------


def _git(*args: str) -> str:
    """Read-only git query (the commit measured); empty when git is unavailable."""
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return out.stdout.strip()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> None:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--rss-child":
        model, n, shard, threads, bs = sys.argv[2:7]
        rss_child(model, int(n), int(shard), int(threads), int(bs))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=[*MODELS, "both"], default="both")
    ap.add_argument("--n", type=int, default=300, help="texts per timed run (default 300)")
    ap.add_argument("--batch-sizes", default="8,32,64")
    ap.add_argument(
        "--single-batch",
        type=int,
        default=32,
        help="batch size of the sorting, threads and RSS figures",
    )
    ap.add_argument(
        "--others-batch-sizes",
        default=None,
        help="batch sizes at which TransformerLens and nnsight run (default: --single-batch)",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads (recorded)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rss-n", type=int, default=200, help="N of the N vs 8N memory figure")
    ap.add_argument("--shard-size", type=int, default=256, help="shard size of the RSS figure")
    ap.add_argument(
        "--parts",
        default="1,3,4,5",
        help="1 = vs HF/TL/nnsight (parts 1 and 2), 3 = RSS, 4 = sorting, 5 = threads",
    )
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = ap.parse_args(argv)
    args.batch_sizes = [int(x) for x in args.batch_sizes.split(",") if x.strip()]
    others = args.others_batch_sizes or str(args.single_batch)
    args.others_batch_sizes = [int(x) for x in others.split(",") if x.strip()]
    parts = {p.strip() for p in args.parts.split(",")}
    models = list(MODELS) if args.model == "both" else [args.model]

    torch.set_num_threads(args.threads)
    texts, source = load_texts(args.n)
    import warnings

    import transformers

    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", module="nnsight")

    report: dict[str, Any] = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "threads": args.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "workbench": wb.__version__,
        "commit": _git("rev-parse", "--short", "HEAD"),
        "extract_py_modified": bool(_git("status", "--porcelain", "workbench/activations")),
        "data": source,
        "n": args.n,
        "repeats": args.repeats,
        "load_avg_start": os.getloadavg(),
    }
    for mod in ("transformer_lens", "nnsight"):
        try:
            report[mod] = __import__(mod).__version__
        except Exception:
            try:
                from importlib.metadata import version

                report[mod] = version(mod.replace("_", "-"))
            except Exception:
                report[mod] = "not installed"
    print(
        f"workbench {report['workbench']} (commit {report['commit'] or '?'}"
        f"{', activations/ modified' if report['extract_py_modified'] else ''}), torch {report['torch']}, transformers "
        f"{report['transformers']}, TransformerLens {report['transformer_lens']}, nnsight "
        f"{report['nnsight']}"
    )
    print(
        f"{report['date']}  {report['machine']} (shared with other jobs: figures are noisy; "
        f"contenders interleaved, medians)  torch threads={args.threads}  data: {source}  "
        f"load avg {report['load_avg_start'][0]:.2f}"
    )

    t_start = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="wb-bench-"))
    try:
        for model in models:
            lm = wb.load_model(model)
            if "1" in parts or "2" in parts:
                bench_vs_others(lm, texts, args, root, report)
            if "4" in parts:
                bench_sorting(lm, texts, args, root, report)
            if "5" in parts:
                bench_threads(lm, texts, args, root, report)
                torch.set_num_threads(args.threads)
            del lm
            gc.collect()
            if "3" in parts:
                bench_rss(model, args, report)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report["seconds"] = time.perf_counter() - t_start
    report["load_avg_end"] = os.getloadavg()
    print(f"\ntotal {report['seconds']:.0f} s; load average at end {report['load_avg_end'][0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
