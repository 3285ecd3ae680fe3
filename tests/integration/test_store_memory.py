"""The probing sweep and the embedding evaluation read a store larger than their memory budget.

A child process loads everything it needs (torch, the model, scikit-learn, a warm-up run of
both), then caps its own memory with ``RLIMIT_DATA`` at what it holds now plus a fixed allowance
for run-time noise that does not grow with the store (thread stacks, allocator arenas, 4 MiB
hashing buffers: about 8 MiB each) plus a working budget of a quarter of the store, and runs
``evaluate_grid`` (extraction included) and ``sweep`` over every layer and two poolings. A read
of the whole store must then fail with ``MemoryError``: the cap bites, so finishing under it
shows the store is read layer by layer.

The margins are sized so that neither side depends on luck: the store (about 120 MB) is more
than the cap's headroom (allowance + budget, about 78 MB) by some 40 MB, and the headroom is
about 30 times one layer's share of the store. (An earlier version capped at a third of a 38 MB
store: 12.8 MB of headroom, which one extra thread stack or hashing buffer could exhaust on a
loaded machine.)

Why ``RLIMIT_DATA`` (Linux >= 4.7): it limits the process's private writable memory (heap,
anonymous mmaps: every numpy array, torch tensor, malloc) and nothing else. ``RLIMIT_RSS`` is
not enforced by Linux; ``RLIMIT_AS`` counts address space, where torch and the BLAS libraries
reserve gigabytes they never touch and where every memory-mapped shard counts in full even when
no page of it is resident; a cgroup memory limit needs privileges a test does not have. The
memory-mapped shards are shared, read-only, file-backed pages: the kernel can drop them at
any time, so they are page cache, not memory the process holds. The child reports ``VmHWM``
(peak resident set, reset once the cap is set) against the store's size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="RLIMIT_DATA and /proc/self/status are Linux's"
    ),
    pytest.mark.slow,  # extraction, 26 evaluation cells and a sweep in a child
]

N_ROWS = 3000
N_BLOCKS = 12  # 13 residual layers: one layer is 1/26 of the store with two poolings
D_MODEL = 384
#: run-time memory that does not grow with the store (see the module docstring)
ALLOWANCE_BYTES = 48 << 20
BUDGET_FRACTION = 0.25

CHILD = textwrap.dedent(
    """
    import json, os, resource, sys, time
    import numpy as np
    import torch
    torch.set_num_threads(1)
    import sklearn.cluster, sklearn.linear_model, sklearn.metrics, scipy.stats, pandas  # noqa
    import workbench
    from workbench.activations import ActivationStore
    from workbench.evaluation import LabelTask, evaluate_grid
    from workbench.probing import sweep

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    model_dir, work = sys.argv[1], sys.argv[2]
    budget_fraction, allowance = float(sys.argv[3]), int(sys.argv[4])
    rows = json.loads(open(os.path.join(work, "texts.json")).read())
    texts, labels = [r[0] for r in rows], [r[1] for r in rows]
    lm = workbench.load_model(model_dir)
    grid = dict(layers="all", poolings="mean,last", postprocess="none", metrics="classification",
                progress=False, threads=1, extract_options={"shard_size": 64})

    def evaluate(n, name):
        df = evaluate_grid(lm, LabelTask(name, texts[:n], labels[:n]),
                           out=os.path.join(work, name), **grid)
        (path,) = [s["path"] for s in df.attrs["summary"]["stores"]]
        return df, ActivationStore(path)

    def probe(store, n):
        return sweep(store, np.asarray(labels[:n]), probe="logistic", pooling=["mean", "last"],
                     cv=2, control=False, n_boot=0)

    # Warm-up on 64 rows: every lazy import, BLAS buffer and allocator arena exists before the cap.
    _, warm = evaluate(64, "warm")
    probe(warm, 64)

    # The store's size is known in advance: rows x layers x d_model x 4 bytes x 2 poolings.
    store_bytes = len(texts) * (lm.n_layers + 1) * lm.d_model * 4 * 2
    budget = int(store_bytes * budget_fraction)
    base_data, base_rss = status("VmData"), status("VmRSS")
    cap = base_data + allowance + budget
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM to the current RSS

    t0 = time.perf_counter()
    df, store = evaluate(len(texts), "big")
    t1 = time.perf_counter()
    result = probe(store, len(texts))
    t2 = time.perf_counter()
    peak_rss, peak_data = status("VmHWM"), status("VmData")
    shards = os.path.join(store.path, "shards")
    on_disk = sum(os.path.getsize(os.path.join(shards, f)) for f in os.listdir(shards)
                  if f.endswith((".mean.npy", ".last.npy")))
    try:
        whole = [store.get(p) for p in ("mean", "last")]  # 2 x [rows, layers, d]: the store
        control = f"loaded {sum(w.nbytes for w in whole)} bytes"
    except MemoryError as err:
        control = "MemoryError: " + str(err)[:120]
    print(json.dumps({
        "store_bytes": on_disk, "expected_store_bytes": store_bytes, "budget_bytes": budget,
        "headroom_bytes": allowance + budget,
        "base_rss": base_rss, "peak_rss": peak_rss, "base_data": base_data,
        "peak_data": peak_data, "cells": len(df), "probed": len(result.predictions),
        "best_probe_accuracy": float(result.table.query("metric == 'accuracy'")["value"].max()),
        "best_accuracy": float(df["accuracy"].max()), "evaluate_s": round(t1 - t0, 1),
        "sweep_s": round(t2 - t1, 1), "control": control,
    }))
    """
)


def make_rows(n: int) -> list[tuple[str, int]]:
    """Short texts (a few tokens each: the store's size, not the model's work, is what counts
    here) whose label is whether they name water, so the probes have something to find."""
    water = ["river", "harbour", "sea", "lake", "rain"]
    land = ["hill", "road", "stone", "field", "wall"]
    rows = []
    for i in range(n):
        label = i % 2
        noun = (water if label else land)[(i // 2) % 5]
        rows.append((f"{noun} {i}", label))  # unique: the grid deduplicates texts
    return rows


def save_deep_model(folder: Path) -> Path:
    """A random 12-block Llama with d_model 384: a store of many layers, cheap to run."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from workbench.models import bundled_models

    # (not `from conftest import ...`: with tests/dashboard/conftest.py also on the path, the
    # module named conftest is whichever pytest imported first)
    (minilm,) = [m for m in bundled_models() if m.name == "minilm-l6"]

    torch.manual_seed(0)
    config = LlamaConfig(
        num_hidden_layers=N_BLOCKS,
        hidden_size=D_MODEL,
        intermediate_size=D_MODEL,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=30522,
        max_position_embeddings=128,
        bos_token_id=101,
        eos_token_id=102,
        pad_token_id=0,
        architectures=["LlamaForCausalLM"],
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm.path()).save_pretrained(folder)
    return folder


def test_sweep_and_evaluation_run_under_a_memory_cap_below_the_store_size(tmp_path):
    model_dir = save_deep_model(tmp_path / "deep-llama")
    (tmp_path / "texts.json").write_text(json.dumps(make_rows(N_ROWS)))
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            str(model_dir),
            str(tmp_path),
            str(BUDGET_FRACTION),
            str(ALLOWANCE_BYTES),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=2))
    # (the files add a 128-byte .npy header each)
    assert (
        report["expected_store_bytes"]
        <= report["store_bytes"]
        < 1.01 * report["expected_store_bytes"]
    )
    # Every layer and pooling was evaluated and probed, under the cap ...
    assert report["cells"] == 2 * (N_BLOCKS + 1)
    assert report["probed"] == 2 * (N_BLOCKS + 1)
    # the water/land label is linearly readable (even from a random model's embeddings)
    assert report["best_accuracy"] > 90 and report["best_probe_accuracy"] > 0.9
    # ... the resident set grew by less than the store's size ...
    assert report["peak_rss"] - report["base_rss"] < report["store_bytes"]
    # ... and the cap really binds: half the store at once does not fit.
    assert report["control"].startswith("MemoryError"), report["control"]
