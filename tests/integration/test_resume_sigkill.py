"""A run killed with SIGKILL part way resumes to files byte-identical to an uninterrupted run."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import workbench
from workbench.activations import extract as extract_mod

pytestmark = pytest.mark.slow

SPEC = {"layers": "all", "pooling": "mean,last,tokens", "shard_size": 2}
N_TEXTS = 40  # 20 shards

# The child extracts with the same spec; each shard is slowed down so the parent can kill it
# while it is part way through.
CHILD = textwrap.dedent(
    """
    import json, sys, time
    import torch
    torch.set_num_threads(1)
    import workbench
    from workbench.activations import extract as ex

    model, texts_file, delay, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    spec = json.loads(sys.argv[5])
    real = ex._run_shard

    def slow(*args, **kwargs):
        time.sleep(delay)
        return real(*args, **kwargs)

    ex._run_shard = slow
    texts = json.loads(open(texts_file, encoding="utf-8").read())
    workbench.extract(model, texts, out=out, progress=False, **spec)
    """
)


def make_texts(n: int) -> list[str]:
    words = "the river runs past old stone bridges toward a quiet harbour at dusk".split()
    return [f"Text {i}: " + " ".join(words[: 1 + (i * 7) % len(words)]) for i in range(n)]


def markers(run: Path) -> list[Path]:
    return sorted((run / "shards").glob("[0-9][0-9][0-9][0-9][0-9].json"))


def digests(run: Path) -> dict[str, str]:
    return {
        f.name: hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted((run / "shards").iterdir())
        if f.suffix == ".npy" or f.name.endswith(".token_strings.json")
    }


def kill_part_way(
    model_dir: str, texts_file: Path, out: Path, n_shards: int, delay: float
) -> int | None:
    """Start the child, SIGKILL it once a shard is committed; the number of markers then, or
    None if the child finished (or died) before it could be killed."""
    script = out.parent / "child.py"
    script.write_text(CHILD)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(script),
            model_dir,
            str(texts_file),
            str(delay),
            str(out),
            json.dumps(SPEC),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                _, err = proc.communicate()
                assert proc.returncode == 0, f"the child failed:\n{err.decode()[-3000:]}"
                return None
            if (out / "shards").is_dir() and markers(out):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return len(markers(out))
            time.sleep(0.02)
        pytest.fail("the child committed no shard within 300 s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return None


def test_sigkill_then_resume_is_byte_identical(tiny_llama, tmp_path, monkeypatch):
    texts = make_texts(N_TEXTS)
    n_shards = N_TEXTS // SPEC["shard_size"]
    texts_file = tmp_path / "texts.json"
    texts_file.write_text(json.dumps(texts))
    reference = workbench.extract(
        tiny_llama, texts, out=tmp_path / "reference", progress=False, **SPEC
    )

    killed_at = None
    for attempt, delay in enumerate((0.3, 1.0, 3.0)):
        out = tmp_path / f"killed-{attempt}"
        killed_at = kill_part_way(tiny_llama.source, texts_file, out, n_shards, delay)
        if killed_at is not None and killed_at < n_shards:
            break
    assert killed_at is not None and 1 <= killed_at < n_shards, "could not kill the child part way"

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "running"

    calls: list[int] = []
    real = extract_mod._run_shard

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(extract_mod, "_run_shard", counting)
    store = workbench.extract(tiny_llama, texts, out=out, progress=False, **SPEC)
    # Every committed shard is kept; the others are computed exactly once.
    assert len(calls) == n_shards - killed_at
    assert store.complete and len(store.shards) == n_shards
    assert not list((out / "shards").glob(".*.tmp"))
    assert digests(out) == digests(reference.path)
    store.verify()
