"""``extract``: run a model over texts and stream the requested activations into a store.

What makes it fast and exact:
- only the base model runs (no unembedding), and the forward stops after the deepest requested
  hook point;
- hooks pool on the fly, so only ``[batch, d_model]`` per pooling and hook point is kept;
- texts are batched by length (sorted within each shard, token budget per batch);
- every pooling reads real tokens only, and position ids follow the attention mask, so padding
  side and batch composition do not change a vector beyond float tolerance.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import settings
from .._version import __version__
from ..errors import (
    ContextLengthError,
    EmptyDatasetError,
    OptionError,
    OutputPathError,
    WorkbenchError,
    arg,
)
from ..models import hook_names
from ..models.hooks import eval_mode, forward_inputs, read, run, stop_after
from ..settings import runs_dir
from .pooling import (
    POOL_OVER,
    Pooling,
    apply_template,
    default_pool_over,
    parse_poolings,
    pool,
    resolve_template,
    text_token_mask,
)
from .store import FORMAT_VERSION, ActivationStore, StoreWriter, identity_hash

log = logging.getLogger(__name__)

_FP16_MAX = float(np.finfo(np.float16).max)


@dataclass
class _Batch:
    """A padded batch: rows (shard-local indices), ``input_ids``/``attention_mask`` ``[b, t]``."""

    rows: list[int]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pool_mask: torch.Tensor


class _Capture:
    """Pools each requested hook point as the forward passes it (``read``), and stops the
    forward after the deepest one (``stop_after``); hooks are removed on exit.

    ``results[hook][pooling]`` is ``[batch, d]``, or ``[real_tokens, d]`` for ``tokens``.
    Pooled vectors read ``pool_mask`` (the text's tokens, or every real token); ``tokens`` keeps
    every real token of ``mask``.
    """

    def __init__(self, lm: Any, names: list[str], poolings: list[Pooling]) -> None:
        self.lm = lm
        self.names = names
        self.poolings = poolings
        order = lm.hook_points()
        self.last = max(names, key=order.index)
        self.mask: torch.Tensor | None = None
        self.pool_mask: torch.Tensor | None = None
        self.results: dict[str, dict[str, torch.Tensor]] = {}
        self._stack = ExitStack()

    def __enter__(self) -> _Capture:
        with ExitStack() as stack:
            stack.enter_context(read(self.lm, self.names, self._record))
            stack.enter_context(stop_after(self.lm, self.last))
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _record(self, name: str, hidden: torch.Tensor) -> None:
        assert self.mask is not None and self.pool_mask is not None
        out: dict[str, torch.Tensor] = {}
        for p in self.poolings:
            out[p.name] = hidden[self.mask].float() if p.ragged else pool(hidden, self.pool_mask, p)
        self.results[name] = out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", Path(text).name).strip("-").lower()[:40] or "run"


def _as_dataset(data: Any, text_column: str | None, label_columns: Sequence[str] | None) -> Any:
    from ..data import TextDataset, load_dataset

    if isinstance(data, TextDataset):
        return data
    if isinstance(data, (str, os.PathLike)):
        return load_dataset(str(data), text_column=text_column, label_columns=label_columns)
    texts = list(data)
    if not texts:
        raise EmptyDatasetError("no texts given: pass a non-empty list of strings or a dataset")
    if not all(isinstance(t, str) for t in texts):
        bad = next(i for i, t in enumerate(texts) if not isinstance(t, str))
        raise TypeError(f"texts[{bad}] is a {type(texts[bad]).__name__}, not a str")
    return TextDataset(name="texts", texts=texts, source="python list")


def _check_texts(texts: list[str]) -> None:
    empty = [i for i, t in enumerate(texts) if not t or not t.strip()]
    if empty:
        how = arg("load_dataset(..., drop_empty=True) or filter your list", "--drop-empty")
        raise EmptyDatasetError(
            f"{len(empty)} of {len(texts)} texts are empty or whitespace (rows {empty[:10]}"
            f"{' ...' if len(empty) > 10 else ''}): drop them first ({how}); an empty text has "
            "no token to pool"
        )


def extract(
    model: Any,
    data: Any,
    *,
    layers: Any = None,
    hook_points: Sequence[str] | str | None = None,
    pooling: str | Sequence[str] = ("mean", "last"),
    template: str | None = None,
    pool_over: str | None = None,
    out: str | os.PathLike[str] | None = None,
    storage_dtype: str = "float32",
    max_length: int | None = None,
    truncation: str = "warn",
    batch_tokens: int = 4096,
    max_batch_size: int = 64,
    shard_size: int = 1024,
    padding_side: str = "right",
    threads: int | None = None,
    text_column: str | None = None,
    label_columns: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    verify_resume: bool = True,
    engine: str = "local",
    ray_address: str | None = None,
    num_workers: int | None = None,
    worker_cpus: float = 1.0,
) -> ActivationStore:
    """Extract activations of ``model`` over ``data`` into an on-disk store and return it.

    Args:
        model: a ``LoadedModel`` or anything ``load_model`` accepts (``"smollm2-135m"``).
        data: a ``TextDataset``, a list of strings, or a dataset spec (``"cities"``, a path).
        layers: residual layers (hidden-state indices, ``"all"``, ``[0, 10, -1]``, ``"5:10"``);
            default (None): all of them, unless ``hook_points`` is given.
        hook_points: hook names or patterns instead of ``layers`` (passing both is refused)
            (``["blocks.*.hook_mlp_out", "hook_embed"]``).
        pooling: ``mean``, ``last``, ``first``, ``max``, ``pos:K``, ``tokens`` (every token,
            ragged), ``native`` (sentence-transformers pooling); a list or comma string.
        template: ``"prompteol"``, ``"echo"`` or a string with ``{text}`` once or twice: each
            text is wrapped before tokenising (take ``last`` for PromptEOL-style embeddings).
        pool_over: ``"input"`` (every real token of the model input) or ``"text"`` (only the
            text's tokens; its second copy for echo templates). Default: ``"text"`` for
            two-copy templates, else ``"input"``. ``tokens`` always stores every token.
        out: run folder; default ``runs/<model>-<dataset>-<hash>``.
        storage_dtype: ``"float32"`` or ``"float16"``.
        max_length: truncate to this many tokens (default: the model's context length).
        truncation: ``"warn"`` (truncate, count in the manifest) or ``"error"`` (refuse).
        batch_tokens: padded tokens per batch (``batch_size * longest``).
        max_batch_size: texts per batch at most.
        shard_size: texts per shard (the unit of resumption).
        padding_side: ``"right"`` or ``"left"``; vectors do not depend on it.
        threads: torch CPU threads during the run (default: leave torch's setting).
        text_column: the text column, for ``data`` given as a file path.
        label_columns: the label columns kept with the rows, for ``data`` given as a file path.
        overwrite: replace an output folder that holds a different run (only an empty folder
            or a workbench run is ever replaced).
        progress: show a progress bar with texts/s, tokens/s and ETA (and one while verifying
            a large store).
        verify_resume: check the sha256 of the shards kept from an earlier attempt, or of a
            complete run before reusing it; a damaged shard is recomputed (with a warning).
        engine: ``"local"`` (this process, the default) or ``"ray"``: shards run on a pool of
            Ray actors, one model replica each, and are written into the same store (see
            ``workbench.activations.ray_engine``; needs ``pip install 'workbench[ray]'``).
        ray_address: Ray cluster to join (``"auto"``, ``"ray://host:10001"``); default: the
            running one, or a new local cluster.
        num_workers: Ray actors (model replicas); default: one per GPU of the cluster for a
            CUDA model, else ``cluster CPUs // worker_cpus``.
        worker_cpus: CPUs per Ray actor (also its torch threads unless ``threads`` is given).

    Returns:
        The ``ActivationStore`` of the run (reused as is when the same run is complete).

    Examples:
        >>> store = extract("smollm2-135m", ["The city of Paris is in France."],
        ...                 layers=[0, 15, -1], pooling="mean,last", out="runs/demo")  # doctest: +SKIP
        >>> store.get("last").shape  # doctest: +SKIP
        (1, 3, 576)
    """
    if engine not in ("local", "ray"):
        raise OptionError(f"engine={engine!r}: use 'local' (this process) or 'ray' (a Ray cluster)")
    plan = plan_run(
        model,
        data,
        layers=layers,
        hook_points=hook_points,
        pooling=pooling,
        template=template,
        pool_over=pool_over,
        out=out,
        storage_dtype=storage_dtype,
        max_length=max_length,
        truncation=truncation,
        batch_tokens=batch_tokens,
        max_batch_size=max_batch_size,
        shard_size=shard_size,
        padding_side=padding_side,
        text_column=text_column,
        label_columns=label_columns,
        overwrite=overwrite,
        verify_resume=verify_resume,
        progress=progress,
    )
    if isinstance(plan, ActivationStore):
        return plan
    t0 = time.perf_counter()
    try:
        if engine == "ray":
            from .ray_engine import run_shards

            new_metas = run_shards(
                plan,
                compute_shard,
                address=ray_address,
                num_workers=num_workers,
                worker_cpus=worker_cpus,
                threads=threads,
                progress=progress,
            )
        else:
            new_metas = _run_local(plan, threads, progress)
        return finish_run(plan, plan.done + new_metas, time.perf_counter() - t0)
    except KeyboardInterrupt as exc:
        kept = sum(1 for _ in plan.writer.shard_dir.glob("[0-9][0-9][0-9][0-9][0-9].json"))
        n_shards = plan.manifest["extraction"]["n_shards"]
        raise RunInterrupted(
            f"interrupted: {kept} of {n_shards} shards are complete and kept in "
            f"{plan.writer.path}; run the same "
            f"{arg('extract(...)', 'command')} again to resume from there"
        ) from exc
    finally:
        plan.writer.close()


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM under the CLI) during a run; the message says what was kept and how
    to resume."""


@dataclass(frozen=True)
class ShardSpec:
    """How each shard of a run is computed: everything ``_run_shard`` takes besides the texts."""

    hooks: list[str]
    poolings: list[Pooling]
    template: str | None
    pool_over: str
    limit: int
    storage_dtype: str
    batch_tokens: int
    max_batch_size: int
    padding_side: str


@dataclass
class RunPlan:
    """A run ready to compute: its model, rows, shard spec, writer and the shards left to do.

    ``done`` holds the markers of shards kept from an earlier attempt, ``todo`` the indices of
    the others; shard ``i`` holds rows ``bounds(i)``.
    """

    lm: Any
    dataset: Any
    spec: ShardSpec
    shard_size: int
    manifest: dict[str, Any]
    writer: StoreWriter
    done: list[dict[str, Any]]
    todo: list[int]

    @property
    def n_rows(self) -> int:
        """Rows in the dataset being extracted."""
        return len(self.dataset)

    def bounds(self, index: int) -> tuple[int, int]:
        """Rows ``[start, stop)`` of shard ``index``."""
        return index * self.shard_size, min(self.n_rows, (index + 1) * self.shard_size)


def compute_shard(
    lm: Any,
    texts: list[str],
    start: int,
    index: int,
    spec: ShardSpec,
    writer: StoreWriter,
    bar: Any = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Extract rows ``[start, start + len(texts))`` as shard ``index`` and commit it.

    Used by both engines, so a shard's files do not depend on where it ran. Returns the marker.
    """
    meta = _run_shard(
        lm,
        texts,
        spec.hooks,
        spec.poolings,
        spec.template,
        spec.pool_over,
        spec.limit,
        spec.storage_dtype,
        spec.batch_tokens,
        spec.max_batch_size,
        spec.padding_side,
        bar,
    )
    meta.update(start=start, stop=start + len(texts), **(extra or {}))
    meta["truncated_rows"] = [start + r for r in meta["truncated_rows"]]
    arrays = meta.pop("arrays")
    strings = meta.pop("token_strings")
    return writer.write_shard(index, arrays, strings, meta)


def plan_run(
    model: Any,
    data: Any,
    *,
    layers: Any,
    hook_points: Sequence[str] | str | None,
    pooling: str | Sequence[str],
    template: str | None,
    pool_over: str | None,
    out: str | os.PathLike[str] | None,
    storage_dtype: str,
    max_length: int | None,
    truncation: str,
    batch_tokens: int,
    max_batch_size: int,
    shard_size: int,
    padding_side: str,
    text_column: str | None,
    label_columns: Sequence[str] | None,
    overwrite: bool,
    verify_resume: bool,
    progress: bool = False,
) -> RunPlan | ActivationStore:
    """Check the options, open (or resume) the run folder and list the shards to compute.

    Returns the existing ``ActivationStore`` when the same run is already complete (its
    checksums verified unless ``verify_resume`` is False). Otherwise the plan's writer holds the
    folder's lock: the caller closes it (``plan.writer.close()``) when the run ends.
    """
    from ..models import LoadedModel, load_model

    lm: LoadedModel = model if isinstance(model, LoadedModel) else load_model(model)
    dataset = _as_dataset(data, text_column, label_columns)
    _check_texts(dataset.texts)
    if truncation not in ("warn", "error"):
        raise OptionError(f"truncation={truncation!r}: use 'warn' (truncate and count) or 'error'")
    if padding_side not in ("left", "right"):
        raise OptionError(f"padding_side={padding_side!r}: use 'left' or 'right'")
    if storage_dtype not in ("float32", "float16"):
        raise OptionError(f"storage_dtype={storage_dtype!r}: use 'float32' or 'float16'")
    for name, value in (
        ("shard_size", shard_size),
        ("batch_tokens", batch_tokens),
        ("max_batch_size", max_batch_size),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            flag = "--" + name.replace("_", "-")
            raise OptionError(
                f"{arg(name, flag)}={value!r}: must be a positive integer "
                f"(e.g. {arg(name + '=1024', flag + ' 1024')})"
            )
    if hook_points is not None and layers is not None:
        raise OptionError(
            f"pass {arg('layers=', '--layers')} or {arg('hook_points=', '--hook-points')}, not "
            f"both: hook points name their layers (e.g. 'blocks.5.hook_resid_post')"
        )
    if layers is None:
        layers = "all"

    # -- what to capture ------------------------------------------------------------------------
    available = lm.hook_points()
    if hook_points is not None:
        patterns = [hook_points] if isinstance(hook_points, str) else list(hook_points)
        hooks = hook_names.expand_hook_patterns(patterns, available)
    else:
        wanted = hook_names.normalize_layers(layers, lm.n_layers, lm.name)
        hooks = [
            hook_names.resid_hook(layer, lm.n_layers, lm.final_norm) for layer in sorted(wanted)
        ]
    layer_map = {}
    for name in hooks:
        layer = hook_names.hook_layer(name, lm.n_layers, lm.final_norm)
        if layer is not None:
            layer_map[str(layer)] = name
    poolings = parse_poolings(pooling, lm.sentence_pooling)
    template_text = resolve_template(template)
    pool_over = pool_over or default_pool_over(template_text)
    if pool_over not in POOL_OVER:
        raise OptionError(f"pool_over={pool_over!r}: use one of {list(POOL_OVER)}")
    context = lm.max_length
    limit = max_length or context
    if limit > context:
        warnings.warn(f"max_length={limit} exceeds {lm.name}'s context of {context}", stacklevel=3)

    # -- manifest and identity -------------------------------------------------------------------
    identity = {
        "weights_fingerprint": lm.weights_fingerprint,
        "model_class": type(lm.model).__name__,
        "compute_dtype": str(lm.dtype).removeprefix("torch."),
        "tokenizer_fingerprint": lm.tokenizer_fingerprint(),
        "dataset_fingerprint": dataset.fingerprint(),
        "hook_points": hooks,
        "poolings": sorted(p.name for p in poolings),  # order does not change the run
        "sentence_pooling": lm.sentence_pooling
        if any(p.name == "native" for p in poolings)
        else None,
        "template": template_text,
        "pool_over": pool_over,
        "max_length": limit,
        "truncation": truncation,
        "storage_dtype": storage_dtype,
        "shard_size": shard_size,
    }
    # Where attention / MLP outputs are read, when that is not the sublayer module itself (BERT's
    # post-LN blocks): a store read at the module's output (before this was fixed) is another run.
    moved = {c: p for c, p in lm.sublayer_paths.items() if p not in (lm.attn_path, lm.mlp_path)}
    if moved and any(hook_names.parse_hook(h)[1] in moved for h in hooks):
        identity["sublayer_paths"] = moved
    if out is None:
        out = runs_dir() / (f"{_slug(lm.name)}-{_slug(dataset.name)}-{identity_hash(identity)[:8]}")
    n = len(dataset)
    n_shards = math.ceil(n / shard_size)
    manifest: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "workbench_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": "running",
        "identity": identity,
        "model": lm.describe(),
        "tokenizer": {
            "name_or_path": getattr(lm.tokenizer, "name_or_path", None),
            "class": type(lm.tokenizer).__name__,
            "vocab_size": len(lm.tokenizer),
            "fingerprint": identity["tokenizer_fingerprint"],
        },
        "dataset": {
            "name": dataset.name,
            "source": dataset.source,
            "n_rows": n,
            "fingerprint": identity["dataset_fingerprint"],
            "columns": sorted(dataset.columns),
            "has_words": dataset.words is not None,
        },
        "extraction": {
            "hook_points": hooks,
            "layers": layer_map,
            "poolings": [p.name for p in poolings],
            "template": template_text,
            "pool_over": pool_over,
            "storage_dtype": storage_dtype,
            "max_length": limit,
            "truncation": truncation,
            "padding_side": padding_side,
            "batch_tokens": batch_tokens,
            "max_batch_size": max_batch_size,
            "shard_size": shard_size,
            "n_shards": n_shards,
            "torch": torch.__version__,
        },
    }
    missing = _missing_labels(dataset)
    if missing:
        manifest["dataset"]["missing_labels"] = missing
    # Refusals come before the folder is touched, so a refused run leaves nothing behind.
    if truncation == "error":
        _refuse_long_texts(lm, dataset.texts, template_text, limit)

    try:
        writer = StoreWriter(out, manifest, overwrite=overwrite)
    except OutputPathError:
        # A read-only folder can still serve the same run when it is complete and intact.
        store = _complete_read_only(Path(out), identity_hash(identity), verify_resume, progress)
        if store is None:
            raise
        return store
    try:
        return _resume(
            writer,
            manifest,
            dataset,
            n_shards,
            verify_resume,
            progress,
            missing,
            lm,
            ShardSpec(
                hooks,
                poolings,
                template_text,
                pool_over,
                limit,
                storage_dtype,
                batch_tokens,
                max_batch_size,
                padding_side,
            ),
            shard_size,
        )
    except BaseException:
        writer.close()
        raise


def _resume(
    writer: StoreWriter,
    manifest: dict[str, Any],
    dataset: Any,
    n_shards: int,
    verify: bool,
    progress: bool,
    missing: dict[str, int],
    lm: Any,
    spec: ShardSpec,
    shard_size: int,
) -> RunPlan | ActivationStore:
    """List the shards of ``writer``'s folder to keep (verified) and to compute; reuse the run
    when it is complete and intact."""
    old = writer.path / "manifest.json"
    complete = old.is_file() and ActivationStore(writer.path).complete
    markers = writer.shard_dir.glob("[0-9][0-9][0-9][0-9][0-9].json")
    total = (
        sum(int(info["bytes"]) for m in markers for info in _marker_files(m).values())
        if verify
        else 0
    )
    from .store import _bytes_bar

    bar = _bytes_bar(total, f"verify {writer.path.name}", progress)
    shard_metas: list[dict[str, Any]] = []
    todo: list[int] = []
    damaged: list[str] = []
    try:
        for index in range(n_shards):
            meta, why = writer.check_shard(index, verify, bar.update if bar else None)
            if meta is None:
                todo.append(index)
                if why is not None:
                    damaged.append(f"shard {index} ({why})")
                    writer.discard_shard(index)
            else:
                shard_metas.append(meta)
    finally:
        if bar is not None:
            bar.close()
    if damaged:
        warnings.warn(
            f"{writer.path}: {len(damaged)} damaged shard(s) will be recomputed: "
            + "; ".join(damaged[:5])
            + (" ..." if len(damaged) > 5 else ""),
            stacklevel=4,
        )
    if complete and not todo:
        log.info("reusing complete run %s", writer.path)
        if verify and writer.recorded_rows is not None and not writer.write_rows(_rows(dataset)):
            warnings.warn(
                f"{writer.path / 'rows.jsonl'} was damaged and has been rewritten", stacklevel=4
            )
        writer.close()
        return ActivationStore(writer.path)
    if missing:
        warnings.warn(
            f"label columns with missing values (NaN/None), by count: {missing}; they are "
            "stored as null and flagged in the manifest (dataset.missing_labels): drop or fill "
            "those rows before probing them, or they would count as a class",
            stacklevel=4,
        )
    writer.save_manifest()  # first: the folder is a workbench run from here on
    writer.write_rows(_rows(dataset))
    writer.save_manifest()
    return RunPlan(lm, dataset, spec, shard_size, manifest, writer, shard_metas, todo)


def _complete_read_only(
    path: Path, identity: str, verify: bool, progress: bool
) -> ActivationStore | None:
    """The complete run in ``path`` if it is the same run (and intact, with ``verify``)."""
    if not (path / "manifest.json").is_file():
        return None
    try:
        store = ActivationStore(path)
    except WorkbenchError:
        return None
    if store.manifest.get("identity_hash") != identity or not store.complete:
        return None
    if verify:
        store.verify(progress=progress)
    log.info("reusing complete run %s (read-only, not locked)", path)
    return store


def _marker_files(marker: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(marker.read_text()).get("files", {}))
    except (OSError, ValueError):
        return {}


def _missing_labels(dataset: Any) -> dict[str, int]:
    """Per label column, how many values are None or NaN."""
    out = {}
    for name, values in dataset.columns.items():
        n = sum(1 for v in values if v is None or (isinstance(v, float) and math.isnan(v)))
        if n:
            out[name] = n
    return out


def _run_local(plan: RunPlan, threads: int | None, progress: bool) -> list[dict[str, Any]]:
    """Compute the shards left in this process, one after the other; returns their markers."""
    plan.manifest["extraction"]["engine"] = {"name": "local"}
    shard_metas: list[dict[str, Any]] = []
    done_rows = sum(m["stop"] - m["start"] for m in plan.done)
    with settings.threads(threads) as n_threads:
        plan.manifest["extraction"]["threads"] = n_threads
        bar = _progress(plan.n_rows, done_rows, progress, plan.lm.name)
        try:
            for index in plan.todo:
                start, stop = plan.bounds(index)
                texts = plan.dataset.texts[start:stop]
                shard_metas.append(
                    compute_shard(plan.lm, texts, start, index, plan.spec, plan.writer, bar)
                )
        finally:
            if bar is not None:
                bar.close()
    return shard_metas


def finish_run(
    plan: RunPlan, shard_metas: list[dict[str, Any]], wall_seconds: float
) -> ActivationStore:
    """Write the final manifest (stats over every shard) and return the store."""
    manifest, writer, n, limit = plan.manifest, plan.writer, plan.n_rows, plan.spec.limit
    shard_metas.sort(key=lambda m: m["index"])
    truncated = [r for m in shard_metas for r in m["truncated_rows"]]
    seconds = sum(m["seconds"] for m in shard_metas)
    tokens = sum(m["n_tokens"] for m in shard_metas)
    manifest["status"] = "complete"
    manifest["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    manifest["stats"] = {
        "n_tokens": tokens,
        "n_truncated": len(truncated),
        "truncated_rows": truncated[:1000],
        "n_nan_positions": sum(m["n_nan"] for m in shard_metas),
        "n_fp16_overflow": sum(m["n_fp16_overflow"] for m in shard_metas),
        "seconds": round(seconds, 3),
        "wall_seconds": round(wall_seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1) if seconds else None,
        "texts_per_s": round(n / seconds, 1) if seconds else None,
    }
    writer.save_manifest()
    if truncated:
        warnings.warn(
            f"{len(truncated)} texts were longer than {limit} tokens and were truncated (rows "
            f"{truncated[:10]}); the count is in the manifest. Pass "
            f"{arg(chr(39).join(['truncation=', 'error', '']), '--truncation error')} to refuse",
            stacklevel=3,
        )
    if manifest["stats"]["n_fp16_overflow"]:
        warnings.warn(
            f"{manifest['stats']['n_fp16_overflow']} values exceeded float16's range and are "
            f"stored as inf: use {arg(chr(39).join(['storage_dtype=', 'float32', '']), '--storage-dtype float32')} for this model",
            stacklevel=3,
        )
    return ActivationStore(writer.path)


def _rows(dataset: Any) -> Iterator[dict[str, Any]]:
    for i, text in enumerate(dataset.texts):
        row: dict[str, Any] = {
            "text": text,
            "columns": {k: v[i] for k, v in dataset.columns.items()},
        }
        if dataset.words is not None:
            row["words"] = dataset.words[i]
            row["word_spans"] = dataset.word_spans[i] if dataset.word_spans is not None else None
            if dataset.word_columns is not None:
                row["word_columns"] = {k: v[i] for k, v in dataset.word_columns.items()}
        yield row


def _progress(total: int, initial: int, enabled: bool, name: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="text", desc=f"extract {name}", smoothing=0.1)


def _tokenize(
    lm: Any, texts: list[str], template: str | None
) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
    inputs = [apply_template(template, t)[0] for t in texts]
    enc = lm.tokenizer(
        inputs,
        add_special_tokens=True,
        return_offsets_mapping=True,
        return_attention_mask=False,
        truncation=False,
    )
    return enc["input_ids"], enc["offset_mapping"]


def _refuse_long_texts(lm: Any, texts: list[str], template: str | None, limit: int) -> None:
    long_rows = []
    for start in range(0, len(texts), 4096):
        ids, _ = _tokenize(lm, texts[start : start + 4096], template)
        long_rows += [(start + i, len(x)) for i, x in enumerate(ids) if len(x) > limit]
    if long_rows:
        raise ContextLengthError(
            f"{len(long_rows)} texts are longer than max_length={limit} tokens "
            f"(row, tokens): {long_rows[:10]}. Shorten them, raise "
            f"{arg('max_length', '--max-length')} (context of {lm.name}: {lm.max_length}), or "
            f"pass {arg('truncation=' + chr(39) + 'warn' + chr(39), '--truncation warn')} to "
            "truncate and count them"
        )


def _batches(
    ids: list[list[int]],
    batch_tokens: int,
    max_batch_size: int,
    pad_id: int,
    padding_side: str,
    scopes: list[list[bool]] | None = None,
) -> Iterator[_Batch]:
    """Length-sorted batches (longest first) of at most ``batch_tokens`` padded tokens."""
    order = sorted(range(len(ids)), key=lambda i: (-len(ids[i]), i))
    pos = 0
    while pos < len(order):
        longest = len(ids[order[pos]])
        size = max(1, min(max_batch_size, batch_tokens // max(longest, 1)))
        rows = order[pos : pos + size]
        pos += size
        input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        pool_mask = torch.zeros((len(rows), longest), dtype=torch.bool)
        for b, r in enumerate(rows):
            seq = torch.tensor(ids[r], dtype=torch.long)
            at = slice(0, len(seq)) if padding_side == "right" else slice(longest - len(seq), None)
            input_ids[b, at] = seq
            mask[b, at] = 1
            pool_mask[b, at] = torch.tensor(scopes[r]) if scopes is not None else True
        yield _Batch(rows, input_ids, mask, pool_mask)


def _run_shard(
    lm: Any,
    texts: list[str],
    names: list[str],
    poolings: list[Pooling],
    template: str | None,
    pool_over: str,
    limit: int,
    storage_dtype: str,
    batch_tokens: int,
    max_batch_size: int,
    padding_side: str,
    bar: Any,
) -> dict[str, Any]:
    """Extract one shard; returns its arrays and bookkeeping (nothing is written here)."""
    t0 = time.perf_counter()
    ids, offsets = _tokenize(lm, texts, template)
    truncated = [i for i, x in enumerate(ids) if len(x) > limit]
    ids = [x[:limit] for x in ids]
    offsets = [o[:limit] for o in offsets]
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    if (lengths == 0).any():
        raise EmptyDatasetError(
            f"texts {np.nonzero(lengths == 0)[0][:10].tolist()} of this shard tokenise to no "
            "tokens: drop them from the dataset"
        )
    splits = np.concatenate([[0], np.cumsum(lengths)])
    scopes = None
    if pool_over == "text":
        scopes = [
            text_token_mask(o, apply_template(template, t)[1], len(t))
            for o, t in zip(offsets, texts, strict=True)
        ]
    n, d, h = len(texts), lm.d_model, len(names)
    dtype = np.float16 if storage_dtype == "float16" else np.float32
    pooled = {p.name: np.empty((h, n, d), dtype=dtype) for p in poolings if not p.ragged}
    ragged = {p.name: np.empty((h, int(splits[-1]), d), dtype=dtype) for p in poolings if p.ragged}
    base = lm.base_model
    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    device = lm.device
    n_fp16_overflow = 0
    n_nan = 0
    done_tokens = 0
    with (
        eval_mode(lm.model),
        torch.inference_mode(),
        _Capture(lm, names, poolings) as capture,
    ):
        for batch in _batches(ids, batch_tokens, max_batch_size, pad_id, padding_side, scopes):
            inputs = forward_inputs(lm, batch.input_ids, batch.attention_mask)
            capture.mask = inputs["attention_mask"].bool()
            capture.pool_mask = batch.pool_mask.to(device) & capture.mask
            capture.results = {}
            run(base, inputs)
            rows = np.asarray(batch.rows)
            for j, name in enumerate(names):
                result = capture.results[name]
                for p_name, target in pooled.items():
                    values = result[p_name].cpu().numpy()
                    n_nan += int(np.isnan(values).any(axis=1).sum()) if j == 0 else 0
                    if dtype == np.float16:
                        n_fp16_overflow += int((np.abs(values) > _FP16_MAX).sum())
                    target[j, rows] = values
                for p_name, target in ragged.items():
                    values = result[p_name].cpu().numpy()
                    if dtype == np.float16:
                        n_fp16_overflow += int((np.abs(values) > _FP16_MAX).sum())
                    at = 0
                    for r in batch.rows:
                        k = int(lengths[r])
                        target[j, splits[r] : splits[r] + k] = values[at : at + k]
                        at += k
            if bar is not None:
                done_tokens += int(lengths[rows].sum())
                rate = done_tokens / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(tok_s=f"{rate:,.0f}", refresh=False)
                bar.update(len(batch.rows))
    arrays: dict[str, np.ndarray] = {}
    for p in poolings:
        arrays[p.filename] = ragged[p.name] if p.ragged else pooled[p.name]
    arrays["token_ids"] = np.concatenate([np.asarray(x, dtype=np.int32) for x in ids])
    arrays["token_offsets"] = np.concatenate(
        [np.asarray(o, dtype=np.int32).reshape(-1, 2) for o in offsets]
    )
    arrays["row_splits"] = splits.astype(np.int64)
    strings = [lm.tokenizer.convert_ids_to_tokens(x) for x in ids]
    seconds = time.perf_counter() - t0
    if n_nan:
        names = [p.name for p in poolings if p.kind == "pos"]
        warnings.warn(
            f"{n_nan} texts have no token at a requested position ({names}) or none in the "
            "pooled span (pool_over='text' after truncation); their vectors are NaN",
            stacklevel=5,
        )
    return {
        "arrays": arrays,
        "token_strings": strings,
        "n_tokens": int(splits[-1]),
        "truncated_rows": truncated,
        "n_nan": n_nan,
        "n_fp16_overflow": n_fp16_overflow,
        "seconds": round(seconds, 4),
    }
