"""The Ray engine writes the store the local engine writes, survives a killed actor, resumes.

A local Ray cluster (``num_cpus=2``) serves the whole module; the tiny random models keep each
test within 10-40 s on two shared cores (most of it is Ray starting actor processes that import
torch and load their model replica). The faults are injected through ``WORKBENCH_RAY_FAULT``:
``exit-once:FILE`` makes the first actor that takes a shard die with ``os._exit`` (as if
killed); ``raise:K`` makes shard K fail, which aborts the whole run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip(
    "ray", reason="the Ray engine needs Ray Data: pip install 'workbench[ray]'"
)

import workbench  # noqa: E402
from workbench.activations.ray_engine import FAULT_ENV, check_coverage, read_texts  # noqa: E402

pytestmark = pytest.mark.slow  # Ray starts a cluster and actor processes that import torch

SPEC = {"layers": "all", "pooling": "mean,last,tokens", "shard_size": 4}
WORDS = "the river runs past old stone bridges toward a quiet harbour at dusk and dawn".split()


def make_texts(n: int) -> list[str]:
    return [f"Text {i}: " + " ".join(WORDS[: 1 + (i * 7) % len(WORDS)]) for i in range(n)]


TEXTS = make_texts(30)  # 8 shards, the last one short


@pytest.fixture(scope="module")
def cluster():
    # Ray starts workers at nice 15; on a busy shared machine they would barely get the CPU.
    saved = os.environ.get("RAY_worker_niceness")
    os.environ["RAY_worker_niceness"] = "0"  # read by the raylet that ray.init starts
    try:
        if not ray.is_initialized():
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    finally:
        if saved is None:
            del os.environ["RAY_worker_niceness"]
        else:
            os.environ["RAY_worker_niceness"] = saved
    yield ray
    ray.shutdown()


def shard_bytes(run: Path) -> dict[str, str]:
    """sha256 of every data file of the shards (markers hold timings, so they are left out)."""
    return {
        f.name: hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted((run / "shards").iterdir())
        if f.suffix == ".npy" or f.name.endswith(".token_strings.json")
    }


def assert_same_store(a: workbench.ActivationStore, b: workbench.ActivationStore) -> None:
    assert a.manifest["identity_hash"] == b.manifest["identity_hash"]
    assert (a.path / "rows.jsonl").read_bytes() == (b.path / "rows.jsonl").read_bytes()
    assert shard_bytes(a.path) == shard_bytes(b.path)
    assert [(m["start"], m["stop"]) for m in a.shards] == [
        (m["start"], m["stop"]) for m in b.shards
    ]
    for pooling in ("mean", "last"):
        np.testing.assert_array_equal(a.get(pooling), b.get(pooling))
        assert a.get(pooling).dtype == b.get(pooling).dtype
    if "tokens" in a.pooling_names:
        for row in (0, len(a) - 1):
            np.testing.assert_array_equal(a.token_states(row), b.token_states(row))


@pytest.fixture(scope="module")
def reference(tiny_llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "run"
    return workbench.extract(tiny_llama, TEXTS, out=out, progress=False, **SPEC)


def test_same_store_as_the_local_engine(cluster, tiny_llama, reference, tmp_path):
    store = workbench.extract(
        tiny_llama, TEXTS, out=tmp_path / "ray", progress=False, engine="ray", num_workers=2, **SPEC
    )
    assert store.complete and len(store) == len(TEXTS)
    assert_same_store(reference, store)
    engine = store.manifest["extraction"]["engine"]
    assert engine["name"] == "ray" and engine["workers"] == 2
    # Every shard says which actor wrote it.
    # (Shards go to whichever actor is free: with shards this small, one actor may take all.)
    assert sum(engine["shards_per_worker"].values()) == len(store.shards)
    assert {f"{m['worker']['host']}:{m['worker']['pid']}" for m in store.shards} == set(
        engine["shards_per_worker"]
    )
    check_coverage(store.shards, len(TEXTS))
    # The same command again reuses the complete run, whichever engine asks.
    again = workbench.extract(tiny_llama, TEXTS, out=tmp_path / "ray", progress=False, **SPEC)
    assert again.manifest["finished"] == store.manifest["finished"]


def test_gpt2_float16_and_a_template_match_too(cluster, tiny_gpt2, tmp_path):
    spec = {
        "layers": [0, -1],
        "pooling": "mean,last",
        "shard_size": 5,
        "storage_dtype": "float16",
        "template": "echo",
    }
    texts = TEXTS[:12]
    local = workbench.extract(tiny_gpt2, texts, out=tmp_path / "local", progress=False, **spec)
    store = workbench.extract(
        tiny_gpt2, texts, out=tmp_path / "ray", progress=False, engine="ray", num_workers=1, **spec
    )
    assert_same_store(local, store)


def test_a_killed_actor_is_retried_and_every_row_is_there_once(
    cluster, tiny_llama, reference, tmp_path, monkeypatch
):
    flag = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, f"exit-once:{flag}")
    store = workbench.extract(
        tiny_llama, TEXTS, out=tmp_path / "ray", progress=False, engine="ray", num_workers=2, **SPEC
    )
    assert flag.exists(), "no actor was killed: the fault hook did not fire"
    assert store.complete
    check_coverage(store.shards, len(TEXTS))  # each row in exactly one shard, none missing
    markers = sorted((store.path / "shards").glob("[0-9][0-9][0-9][0-9][0-9].json"))
    assert len(markers) == len(store.shards) == 8
    assert not list((store.path / "shards").glob(".*.tmp"))
    assert_same_store(reference, store)


def test_an_interrupted_run_resumes_from_the_written_shards(
    cluster, tiny_llama, reference, tmp_path, monkeypatch
):
    out = tmp_path / "ray"
    monkeypatch.setenv(FAULT_ENV, "raise:6")
    with pytest.raises(Exception, match="fails on purpose"):
        workbench.extract(
            tiny_llama, TEXTS, out=out, progress=False, engine="ray", num_workers=1, **SPEC
        )
    monkeypatch.delenv(FAULT_ENV)
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"
    shards = out / "shards"
    kept = {m.name: m.stat().st_mtime_ns for m in shards.glob("[0-9][0-9][0-9][0-9][0-9].json")}
    assert 1 <= len(kept) < 8, f"expected a part-way run, found {len(kept)} committed shards"
    assert "00006.json" not in kept

    store = workbench.extract(
        tiny_llama, TEXTS, out=out, progress=False, engine="ray", num_workers=2, **SPEC
    )
    # The committed shards were kept as they were; the others computed once.
    for name, mtime in kept.items():
        assert (shards / name).stat().st_mtime_ns == mtime, f"{name} was recomputed"
    assert store.complete
    assert_same_store(reference, store)


def test_texts_from_a_url_read_by_ray_data(cluster, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [{"text": t, "label": i % 3} for i, t in enumerate(TEXTS)]
    jsonl = tmp_path / "corpus.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "corpus.parquet")
    (tmp_path / "corpus.csv").write_text(
        "text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows)
    )
    local = workbench.load_dataset(str(jsonl))
    for name in ("corpus.jsonl", "corpus.parquet", "corpus.csv"):
        ds = read_texts(f"file://{tmp_path / name}")
        assert ds.texts == local.texts, name
        assert ds.columns == local.columns, name
        assert ds.fingerprint() == local.fingerprint(), name
    assert read_texts(str(jsonl), limit=5).texts == TEXTS[:5]  # local paths: workbench.data


def test_cli_engine_ray(cluster, tiny_llama, tmp_path):
    from typer.testing import CliRunner

    from workbench.cli.main import app

    data = tmp_path / "corpus.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:8]))
    runs = {}
    for engine in ("local", "ray"):
        out = tmp_path / engine
        result = CliRunner().invoke(
            app,
            [
                "extract",
                "--model",
                tiny_llama.name,
                "--dataset",
                f"file://{data}" if engine == "ray" else str(data),
                "--layers",
                "all",
                "--pooling",
                "mean,last",
                "--shard-size",
                "4",
                "--threads",
                "1",
                "--no-progress",
                "--out",
                str(out),
                "--engine",
                engine,
                "--workers",
                "2",
            ],
        )
        assert result.exit_code == 0, result.output
        runs[engine] = workbench.ActivationStore(out)
    assert runs["ray"].manifest["extraction"]["engine"]["name"] == "ray"
    assert shard_bytes(runs["local"].path) == shard_bytes(runs["ray"].path)


def test_ray_engine_rejects_an_unknown_engine(tiny_llama, tmp_path):
    with pytest.raises(ValueError, match="engine='spark'"):
        workbench.extract(tiny_llama, TEXTS[:2], out=tmp_path / "x", engine="spark")


def test_ray_progress_bars_leave_print_alone(monkeypatch):
    """Ray Data's progress bars replace builtins.print unless RAY_TQDM_PATCH_PRINT=0, and numba
    (UMAP) then cannot compile in that process: the engine switches the patch off."""
    import builtins

    from workbench.activations.ray_engine import require_ray

    monkeypatch.delenv("RAY_TQDM_PATCH_PRINT", raising=False)
    original = builtins.print
    require_ray()
    assert os.environ["RAY_TQDM_PATCH_PRINT"] == "0"
    from ray.experimental import tqdm_ray

    bar = tqdm_ray.tqdm(total=1, desc="probe")  # what Ray Data shows in the driver
    bar.update(1)
    bar.close()
    assert builtins.print is original
