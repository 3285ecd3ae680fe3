"""The Ray engine of ``extract``: shards computed by a pool of Ray actors, one model replica each.

``extract(..., engine="ray")`` plans the run exactly as the local engine does (same identity,
same shard boundaries, same ``rows.jsonl``), then hands the shards left to do to Ray Data::

    shard descriptors (index, first row, texts)          one row per shard, one block per shard
      -> map_batches(_ShardWorker, batch_size=1, ActorPoolStrategy(size=num_workers))
         each actor: load_model once, then compute_shard() per shard: the same length-sorted
         batches under the token budget, the same hooks, written straight into RUN/shards/
      -> the driver collects the shard markers and writes the one manifest at the end

So shard ``i`` holds rows ``[i * shard_size, (i + 1) * shard_size)`` whichever actor ran it, and
the store is the one the local engine writes: same files, same bytes (fp32, same torch thread
count). A shard is committed by its marker, written last and atomically, so a retried shard
(an actor died; Ray Data restarts actors and retries their tasks) rewrites identical files and
every row is in the store once; an interrupted run resumes from the committed shards, with
either engine.

On a multi-node cluster the run folder must be on a filesystem every node mounts (NFS, Lustre,
a FUSE mount): actors write shards where the driver reads them. Texts pass through the driver
(the dataset fingerprint and ``rows.jsonl`` need them); activations never do.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import MissingDependencyError, WorkbenchError
from .store import SHARDS, StoreWriter

if TYPE_CHECKING:  # types only: extract imports this module to run its shards
    from .extract import RunPlan, ShardSpec

#: Test hook: ``exit-once:FLAG_FILE`` makes the first actor that takes a shard exit hard (as if
#: killed) after creating FLAG_FILE; ``raise:K`` makes shard K fail with an error.
FAULT_ENV = "WORKBENCH_RAY_FAULT"

#: URL schemes pyarrow reads natively; any other ``scheme://`` goes through fsspec.
_ARROW_SCHEMES = ("file", "local", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class RayEngineError(WorkbenchError, RuntimeError):
    """The Ray engine cannot run or finish a run."""


def require_ray() -> Any:
    """Import ``ray`` (with Ray Data), or raise an error naming the extra that installs it.

    Ray Data's progress bars replace ``builtins.print`` for the rest of the process unless
    ``RAY_TQDM_PATCH_PRINT=0``; numba cannot compile code that calls the replacement, so a UMAP
    projection after a Ray extraction in the same process would fail. It is switched off here
    (unless the user set it).
    """
    os.environ.setdefault("RAY_TQDM_PATCH_PRINT", "0")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as err:
        raise MissingDependencyError(
            "engine='ray' needs Ray Data, which is not installed: pip install 'workbench[ray]' "
            "(or pip install 'ray[data]'), or use the default engine='local'"
        ) from err
    return ray


def connect(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Join the running Ray session, the cluster at ``address``, or start a local one."""
    ray = require_ray()
    if not ray.is_initialized():
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
        if address is None and num_cpus is not None:
            options["num_cpus"] = num_cpus
        ray.init(address=address, **options)
    return ray


# ----------------------------------------------------------------------------------------------
# reading texts


def is_url(spec: Any) -> bool:
    """Whether ``spec`` is a ``scheme://`` URL (read by Ray Data) rather than a local spec."""
    return isinstance(spec, str) and bool(_URL.match(spec))


def read_texts(
    spec: str | os.PathLike[str],
    *,
    text_column: str | None = None,
    label_columns: list[str] | str | None = None,
    limit: int | None = None,
    address: str | None = None,
    file_format: str | None = None,
    drop_empty: bool = False,
    seed: int = 0,
    **kwargs: Any,
) -> Any:
    """Texts and label columns as a ``TextDataset``, from a local spec or any fsspec URL.

    Local specs (built-in names, files) go through ``workbench.data.load_dataset`` (``kwargs``
    such as ``seed`` are its options). A URL (``s3://bucket/corpus/``, ``gs://...``,
    ``https://...``, ``file:///data/x.parquet``) is read with Ray Data's Parquet/JSONL/CSV
    readers in file order; ``file_format`` (``parquet``, ``jsonl``, ``csv``) is needed when the
    URL does not end in one of those extensions (a folder of files). ``seed`` applies to
    built-in datasets only.
    """
    from ..data import load_dataset
    from ..data._tables import dataset_from_columns

    if not is_url(spec):
        return load_dataset(
            spec,
            text_column=text_column,
            label_columns=label_columns,
            limit=limit,
            seed=seed,
            **({"drop_empty": True} if drop_empty else {}),
            **kwargs,
        )
    if kwargs:
        raise WorkbenchError(
            f"options {sorted(kwargs)} apply to local datasets only; a URL takes text_column, "
            "label_columns, limit, file_format and drop_empty"
        )
    url = str(spec)
    fmt = file_format or _url_format(url)
    ray = connect(address)
    context = ray.data.DataContext.get_current()
    previous = context.execution_options.preserve_order
    context.execution_options.preserve_order = True  # rows in file order: a stable fingerprint
    try:
        read, options = {
            "parquet": (ray.data.read_parquet, {}),
            "jsonl": (ray.data.read_json, {"lines": True}),
            "csv": (ray.data.read_csv, {}),
        }[fmt]
        ds = read(url, filesystem=_filesystem(url), **options)
        if limit is not None:
            ds = ds.limit(limit)
        columns: dict[str, list[Any]] = {}
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=65536):
            for name in batch.column_names:
                columns.setdefault(name, []).extend(batch.column(name).to_pylist())
    finally:
        context.execution_options.preserve_order = previous
    name = Path(url.rstrip("/").split("://", 1)[1]).stem or "texts"
    return dataset_from_columns(
        columns,
        text_column=text_column,
        label_columns=label_columns,
        name=name,
        source=url,
        drop_empty=drop_empty,
    )


def _url_format(url: str) -> str:
    path = url.split("?", 1)[0].rstrip("/").lower()
    for suffix, fmt in (
        (".parquet", "parquet"),
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".json", "jsonl"),
        (".csv", "csv"),
    ):
        if path.endswith(suffix):
            return fmt
    raise WorkbenchError(
        f"cannot tell the format of {url}: it does not end in .parquet, .jsonl or .csv; pass "
        "file_format='parquet' | 'jsonl' | 'csv'"
    )


def _filesystem(url: str) -> Any:
    """None for schemes pyarrow resolves itself; an fsspec filesystem wrapped for pyarrow else."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in _ARROW_SCHEMES:
        return None
    import fsspec
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return PyFileSystem(FSSpecHandler(fsspec.filesystem(scheme)))


# ----------------------------------------------------------------------------------------------
# the actors


class _ShardWriter(StoreWriter):
    """Writes shards into a run folder the driver has opened (no manifest checks, no clean-up:
    other actors may be writing their own temporary files next to ours)."""

    def __init__(self, path: str) -> None:  # noqa: D107 - deliberately skips StoreWriter's checks
        self.path = Path(path)
        self.shard_dir = self.path / SHARDS


class _ShardWorker:
    """One model replica; ``__call__`` computes and commits the shards of one Ray Data batch."""

    def __init__(
        self,
        model_args: dict[str, Any],
        fingerprint: str,
        spec: ShardSpec,
        compute: Callable[..., dict[str, Any]],
        out: str,
        threads: int,
        fault: str | None,
    ) -> None:
        from ..models import load_model
        from ..settings import set_threads

        self.started = time.time()
        set_threads(threads)  # the actor's process is this worker's alone
        self.threads = threads
        if not (Path(out) / "manifest.json").is_file():
            raise RayEngineError(
                f"the run folder {out} is not visible on node {socket.gethostname()}: put --out "
                "on a filesystem every node of the Ray cluster mounts (NFS, Lustre, ...)"
            )
        self.lm = load_model(**model_args)
        if self.lm.weights_fingerprint != fingerprint:
            raise RayEngineError(
                f"the model loaded on {socket.gethostname()} from {model_args['spec']!r} has other "
                "weights than the driver's: install the same model files on every node"
            )
        self.spec = spec
        self.compute = compute
        self.writer = _ShardWriter(out)
        self.fault = fault
        self.ready = time.time()

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        out = []
        for row in batch.to_pylist():
            self._maybe_fail(int(row["index"]))
            t0 = time.time()
            worker = {"host": socket.gethostname(), "pid": os.getpid(), "threads": self.threads}
            meta = self.compute(
                self.lm,
                row["texts"],
                int(row["start"]),
                int(row["index"]),
                self.spec,
                self.writer,
                extra={"worker": worker},
            )
            timing = {
                "t0": t0,
                "t1": time.time(),
                "actor_started": self.started,
                "actor_ready": self.ready,
            }
            out.append(json.dumps({"marker": meta, "timing": timing}))
        return {"result": np.asarray(out, dtype=object)}

    def _maybe_fail(self, index: int) -> None:
        if not self.fault:
            return
        kind, _, arg = self.fault.partition(":")
        if kind == "exit-once":
            try:
                os.close(os.open(arg, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
            os._exit(1)  # as if the process were killed: no clean-up, no exception
        if kind == "raise" and index == int(arg):
            raise RuntimeError(f"{FAULT_ENV}: shard {index} fails on purpose")


def _model_args(lm: Any, device: str) -> dict[str, Any]:
    """``load_model`` arguments that rebuild ``lm`` in an actor."""
    spec, random_init = lm.name, None
    match = re.fullmatch(r"(.*)@random(\d+)", spec)
    if match:
        spec, random_init = match.group(1), int(match.group(2))
    return {
        "spec": spec,
        "dtype": str(lm.dtype).removeprefix("torch."),
        "device": device,
        "revision": lm.revision,
        "blocks_path": lm.blocks_path,
        "attn_path": lm.attn_path,
        "mlp_path": lm.mlp_path,
        "random_init": random_init,
    }


# ----------------------------------------------------------------------------------------------
# the driver


def run_shards(
    plan: RunPlan,
    compute: Callable[..., dict[str, Any]],
    *,
    address: str | None = None,
    num_workers: int | None = None,
    worker_cpus: float = 1.0,
    threads: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Compute ``plan.todo`` on a Ray actor pool; returns the markers of the shards written.

    Args:
        plan: from ``extract.plan_run`` (run folder opened, rows written, shards left listed).
        compute: ``extract.compute_shard``, which each actor runs per shard (passed in, so this
            module does not import ``extract``, which imports it).
        address: Ray cluster (``"auto"``, ``"ray://head:10001"``); None: the running session or
            a new local cluster.
        num_workers: actors, i.e. model replicas (default: cluster GPUs for a CUDA model, else
            cluster CPUs // worker_cpus), at most one per shard left.
        worker_cpus: CPUs reserved per actor on a CPU model.
        threads: torch threads per actor (default ``max(1, int(worker_cpus))``).
        progress: a tqdm bar over rows (Ray Data's own bars are switched off).
    """
    if not plan.todo:
        return []
    ray = connect(address)
    lm = plan.lm
    cuda = lm.device.type == "cuda"
    resources = ray.cluster_resources()
    if num_workers is None:
        num_workers = (
            int(resources.get("GPU", 0)) if cuda else int(resources.get("CPU", 1) // worker_cpus)
        )
    num_workers = max(1, min(num_workers, len(plan.todo)))
    threads = threads or max(1, int(worker_cpus))
    fault = os.environ.get(FAULT_ENV) or None
    items = []
    for index in plan.todo:
        start, stop = plan.bounds(index)
        items.append({"index": index, "start": start, "texts": plan.dataset.texts[start:stop]})

    context = ray.data.DataContext.get_current()
    saved = context.enable_progress_bars
    context.enable_progress_bars = False
    engine = {
        "name": "ray",
        "ray_version": ray.__version__,
        "address": address,
        "workers": num_workers,
        "worker_cpus": worker_cpus,
        "threads": threads,
        "device": "cuda" if cuda else "cpu",
    }
    plan.manifest["extraction"]["threads"] = threads
    plan.manifest["extraction"]["engine"] = engine
    plan.writer.save_manifest()
    done_rows = sum(m["stop"] - m["start"] for m in plan.done)
    bar = _progress(plan.n_rows, done_rows, progress, lm.name, num_workers)
    results: dict[int, dict[str, Any]] = {}
    timings: list[dict[str, float]] = []
    try:
        shards = ray.data.from_items(items, override_num_blocks=len(items))
        computed = shards.map_batches(
            _ShardWorker,
            fn_constructor_kwargs={
                "model_args": _model_args(lm, "cuda" if cuda else "cpu"),
                "fingerprint": plan.manifest["identity"]["weights_fingerprint"],
                "spec": plan.spec,
                "compute": compute,
                "out": str(plan.writer.path.resolve()),
                "threads": threads,
                "fault": fault,
            },
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=num_workers),
            **({"num_gpus": 1} if cuda else {"num_cpus": worker_cpus}),
        )
        for row in computed.iter_rows():
            result = json.loads(row["result"])
            marker = result["marker"]
            if marker["index"] not in results and bar is not None:
                bar.update(marker["stop"] - marker["start"])
            results[marker["index"]] = marker  # a retried shard reports once more: keep one
            timings.append(result["timing"])
    finally:
        context.enable_progress_bars = saved
        if bar is not None:
            bar.close()
    engine.update(_timing_summary(timings, results))
    markers = [results[i] for i in plan.todo if i in results]
    missing = [i for i in plan.todo if i not in results]
    if missing:
        raise RayEngineError(
            f"Ray returned no result for shards {missing[:10]}: run the same extract again to "
            "compute them (committed shards are kept)"
        )
    check_coverage(plan.done + markers, plan.n_rows)
    return markers


def check_coverage(markers: list[dict[str, Any]], n_rows: int) -> None:
    """Raise unless the shards cover rows ``0..n_rows-1`` exactly once, in index order."""
    at = 0
    for m in sorted(markers, key=lambda m: m["index"]):
        if m["start"] != at or m["stop"] <= m["start"]:
            raise RayEngineError(
                f"shard {m['index']} holds rows {m['start']}..{m['stop']} but row {at} was "
                "expected next: delete the run folder's shards/ and extract again"
            )
        at = m["stop"]
    if at != n_rows:
        raise RayEngineError(
            f"the shards hold rows 0..{at} of {n_rows}: run the same extract again to finish"
        )


def _timing_summary(
    timings: list[dict[str, float]], markers: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    """Compute span (first shard start to last shard end: excludes cluster and actor start-up)
    and which worker ran how many shards."""
    if not timings:
        return {}
    per_worker: dict[str, int] = {}
    for m in markers.values():
        key = f"{m['worker']['host']}:{m['worker']['pid']}"
        per_worker[key] = per_worker.get(key, 0) + 1
    return {
        "compute_span_s": round(max(t["t1"] for t in timings) - min(t["t0"] for t in timings), 3),
        "actor_load_s": round(max(t["actor_ready"] - t["actor_started"] for t in timings), 3),
        "shards_per_worker": per_worker,
    }


def _progress(total: int, initial: int, enabled: bool, name: str, workers: int) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="text",
        smoothing=0.1,
        desc=f"extract {name} on ray x{workers}",
    )
