"""``evaluate_grid``: every (layer, pooling, post-processing) of a model on one task, from the
smallest set of forward passes.

A grid pooling is a store pooling read from a store extracted with one template:

===============  ==========================================  =========================
grid name        template                                    pooled by
===============  ==========================================  =========================
``mean``         none                                        mean of the real tokens
``last``         none                                        last real token
``first``        none                                        first real token
``max``          none                                        max over the real tokens
``native``       none                                        the sentence-transformers
                                                             pooling (and Normalize)
``prompteol``    ``This sentence : "{text}" means in one     last token
                 word:"``
``echo``         the text twice (see ``TEMPLATES["echo"]``)  mean over the second copy
``echo-last``    the same                                    last token of the second copy
``template:S``   ``S`` (must contain ``{text}``)             last token (``{text}`` once),
                                                             mean over the second copy
                                                             (``{text}`` twice)
===============  ==========================================  =========================

Poolings that share a template share one store, so the grid costs one forward pass per
distinct template over the task's distinct sentences (SICK test: 5,007 distinct sentences in
9,854 slots), whatever the number of layers and poolings.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EvaluationOptionError, PoolingError, arg
from ._geometry import PostProcess, geometry, parse_postprocess
from ._metrics import (
    classification_accuracy,
    clustering_v_measure,
    cosine_pairs,
    pair_classification_accuracy,
    retrieval_scores,
    spearman,
)
from ._tasks import LabelTask, PairTask, load_task

#: Grid pooling names (besides ``template:<string with {text}>``).
GRID_POOLINGS = ("mean", "last", "first", "max", "native", "prompteol", "echo", "echo-last")
DEFAULT_POOLINGS = "mean,last,first,max,prompteol,echo"
#: Metrics and the result columns they fill (task metrics are x100).
METRICS: dict[str, tuple[str, ...]] = {
    "sts": ("spearman",),
    "retrieval": ("recall@1", "recall@10", "mrr"),
    "pair-classification": ("pair_accuracy",),
    "classification": ("accuracy",),
    "clustering": ("v_measure",),
}
_PAIR_METRICS = ("sts", "retrieval", "pair-classification")
_MAIN_ORDER = ("spearman", "accuracy", "v_measure", "pair_accuracy", "mrr", "recall@1")
GEOMETRY_COLUMNS = ("anisotropy", "effective_rank", "norm_mean", "norm_std")


@dataclass(frozen=True)
class GridPooling:
    """One pooling column of the grid.

    Attributes:
        name: the name in the results (``"mean"``, ``"prompteol"``, ``"template:..."``).
        template: the resolved template string, or None.
        store_pooling: the pooling read from that template's store (``"last"``, ``"mean"``...).
    """

    name: str
    template: str | None
    store_pooling: str


def parse_grid_poolings(spec: str | Sequence[str]) -> list[GridPooling]:
    """Grid poolings from ``"mean,last,prompteol,echo"`` or a list.

    A user template is written ``template:<string with {text}>``; it may contain commas (the
    pieces after it that are not pooling names are joined back).

    Raises:
        PoolingError: an unknown name, or a template without ``{text}`` (or with it more than
            twice).
    """
    from ..activations.pooling import TEMPLATES

    pieces = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for piece in pieces:
        key = piece.strip().lower()
        if (
            names
            and names[-1].startswith("template:")
            and key not in GRID_POOLINGS
            and not key.startswith("template:")
            and isinstance(spec, str)
        ):
            names[-1] += "," + piece
        elif piece.strip():
            names.append(piece.strip() if not key.startswith("template:") else piece.lstrip())
    if not names:
        raise PoolingError(
            f"no pooling given ({arg('poolings=', '--pooling')}): choose from "
            f"{list(GRID_POOLINGS)} or template:..."
        )
    out: list[GridPooling] = []
    for raw in names:
        key = raw.lower()
        if key in ("mean", "last", "first", "max", "native"):
            out.append(GridPooling(key, None, key))
        elif key == "prompteol":
            out.append(GridPooling("prompteol", TEMPLATES["prompteol"], "last"))
        elif key == "echo":
            out.append(GridPooling("echo", TEMPLATES["echo"], "mean"))
        elif key == "echo-last":
            out.append(GridPooling("echo-last", TEMPLATES["echo"], "last"))
        elif key.startswith("template:"):
            text = raw[len("template:") :]
            count = text.count("{text}")
            if count not in (1, 2):
                raise PoolingError(
                    f"pooling {raw!r}: the template contains '{{text}}' {count} times; write it "
                    "where the sentence goes, once (pooled by the last token, e.g. "
                    '\'template:This sentence : "{text}" means in one word:"\') or twice '
                    "(echo style, pooled by the mean over the second copy)"
                )
            out.append(GridPooling(raw, text, "last" if count == 1 else "mean"))
        else:
            raise PoolingError(
                f"unknown grid pooling {raw!r} ({arg('poolings=', '--pooling')}): valid names are "
                f"{list(GRID_POOLINGS)} or "
                "'template:<string with {text}>'"
            )
    return list({p.name: p for p in out}.values())


def _store_groups(poolings: list[GridPooling]) -> dict[str | None, list[str]]:
    """Template -> the store poolings it needs (one store, one forward pass, per template)."""
    groups: dict[str | None, list[str]] = {}
    for p in poolings:
        groups.setdefault(p.template, [])
        if p.store_pooling not in groups[p.template]:
            groups[p.template].append(p.store_pooling)
    return groups


def _default_metrics(task: PairTask | LabelTask) -> list[str]:
    return ["sts", "retrieval"] if isinstance(task, PairTask) else ["classification", "clustering"]


def parse_metrics(spec: str | Sequence[str] | None, task: PairTask | LabelTask) -> list[str]:
    """The metrics to compute, checked against what ``task`` supports."""
    if spec is None:
        return _default_metrics(task)
    names = [s.strip().lower() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    bad = [n for n in names if n not in METRICS]
    if bad or not names:
        raise EvaluationOptionError(
            f"{arg('metrics', '--metrics')} {bad or spec!r}: choose from {list(METRICS)}"
        )
    if isinstance(task, PairTask):
        wrong = [n for n in names if n not in _PAIR_METRICS]
        if wrong:
            raise EvaluationOptionError(
                f"{arg('metrics', '--metrics')} {wrong} need a labelled-text task; {task.name!r} "
                f"is a pair task: use {list(_PAIR_METRICS)}"
            )
        if "pair-classification" in names and task.labels is None:
            raise EvaluationOptionError(
                f"pair-classification needs pair labels (SICK's entailment_judgment); "
                f"{task.name!r} has none"
            )
    else:
        wrong = [n for n in names if n in _PAIR_METRICS]
        if wrong:
            raise EvaluationOptionError(
                f"{arg('metrics', '--metrics')} {wrong} need a sentence-pair task; {task.name!r} "
                "has labelled texts: use classification, clustering"
            )
    return list(dict.fromkeys(names))


def _slug(text: str | None) -> str:
    from ..activations.pooling import TEMPLATES

    if text is None:
        return "plain"
    for name, value in TEMPLATES.items():
        if value == text:
            return name
    return "template"


def _texts_hash(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


class _PairContext:
    """Index arrays shared by every cell of a pair task."""

    def __init__(self, task: PairTask) -> None:
        self.texts, self.ids1, self.ids2 = task.unique_sentences()
        candidates = list(dict.fromkeys(self.ids2.tolist()))
        position = {uid: j for j, uid in enumerate(candidates)}
        self.candidates = np.asarray(candidates, dtype=np.int64)
        self.partner = np.asarray([position[i] for i in self.ids2.tolist()], dtype=np.int64)
        self.exclude = np.asarray(
            [
                position.get(a, -1) if a != b else -1
                for a, b in zip(self.ids1.tolist(), self.ids2.tolist(), strict=True)
            ],
            dtype=np.int64,
        )


def _cell_metrics(
    Z: np.ndarray, task: PairTask | LabelTask, ctx: Any, metrics: list[str], seed: int
) -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(task, PairTask):
        e1, e2 = Z[ctx.ids1], Z[ctx.ids2]
        if "sts" in metrics:
            out["spearman"] = 100 * spearman(cosine_pairs(e1, e2), task.scores)
        if "retrieval" in metrics:
            r = retrieval_scores(e1, Z[ctx.candidates], ctx.partner, exclude=ctx.exclude)
            out.update({k: 100 * v for k, v in r.items()})
        if "pair-classification" in metrics:
            assert task.labels is not None  # checked by parse_metrics
            out["pair_accuracy"] = 100 * pair_classification_accuracy(
                e1, e2, task.labels, seed=seed
            )
    else:
        X = Z[ctx]
        if "classification" in metrics:
            out["accuracy"] = 100 * classification_accuracy(X, task.labels, seed=seed)
        if "clustering" in metrics:
            out["v_measure"] = 100 * clustering_v_measure(X, task.labels, seed=seed)
    return out


def _main_metric(columns: Sequence[str], select: str | None) -> str:
    if select is not None:
        if select not in columns:
            raise EvaluationOptionError(
                f"select={select!r} is not a result column; the metrics computed are "
                f"{[c for c in columns if c in sum(METRICS.values(), ())]}"
            )
        return select
    return next(c for c in _MAIN_ORDER if c in columns)


def summarize(df: Any, metric: str) -> dict[str, Any]:
    """Best configuration overall, per pooling and per post-processing, by ``metric``."""

    def row(r: Any) -> dict[str, Any]:
        return {
            "layer": int(r["layer"]),
            "pooling": r["pooling"],
            "postprocess": r["postprocess"],
            metric: round(float(r[metric]), 4),
        }

    valid = df[df[metric].notna()]
    if valid.empty:
        return {"metric": metric, "best": None, "best_per_pooling": {}, "best_per_postprocess": {}}
    best = valid.loc[valid[metric].idxmax()]
    return {
        "metric": metric,
        "best": {**row(best), "hook_point": best["hook_point"]},
        "best_per_pooling": {
            p: row(g.loc[g[metric].idxmax()]) for p, g in valid.groupby("pooling", sort=False)
        },
        "best_per_postprocess": {
            p: row(g.loc[g[metric].idxmax()]) for p, g in valid.groupby("postprocess", sort=False)
        },
    }


def evaluate_grid(
    model: Any,
    task: Any,
    *,
    layers: Any = "all",
    poolings: str | Sequence[str] = DEFAULT_POOLINGS,
    postprocess: str | Sequence[str] = "none,center,whiten",
    metrics: str | Sequence[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    limit: int | None = None,
    geometry_stats: bool = True,
    select: str | None = None,
    seed: int = 0,
    progress: bool = True,
    extract_options: dict[str, Any] | None = None,
) -> Any:
    """Evaluate every (layer, pooling, post-processing) of ``model`` on ``task``.

    Sentences are deduplicated, then one store is extracted per distinct template (reused when
    the same grid is run again) and every cell is read from those stores.

    Args:
        model: a ``LoadedModel`` or anything ``load_model`` accepts.
        task: a :class:`PairTask` / :class:`LabelTask` or a spec for :func:`load_task`
            (``"sick"``, a SICK or STS file, a labelled table).
        layers: residual layers (``"all"``, ``[0, 15, -1]``, ``"10:20"``).
        poolings: grid poolings (see the module docstring), a list or comma string.
        postprocess: any of ``none``, ``center``, ``whiten``. Centering and whitening are
            fitted on the task's own distinct sentences (transductive: no held-out split),
            as BERT-whitening is usually reported.
        metrics: ``sts``, ``retrieval``, ``pair-classification`` for pair tasks (default
            ``sts,retrieval``); ``classification``, ``clustering`` for labelled texts (default
            both). Task metrics are reported x100.
        out: folder for ``results.csv``, ``results.parquet``, ``summary.json`` and the stores
            (``stores/<template>-<hash>``); default ``runs/embed-<model>-<task>``.
        threads: torch and BLAS threads (extraction and evaluation); default unchanged.
        limit: evaluate the first ``limit`` pairs/rows of the task.
        geometry_stats: add anisotropy, effective rank and norm statistics per cell (computed
            on the task's distinct sentences after post-processing).
        select: the column that picks the best configuration (default ``spearman`` for pair
            tasks, ``accuracy`` for labelled texts).
        seed: seed of the probes' folds and k-means.
        progress: progress bars for extraction and evaluation.
        extract_options: more keyword arguments for ``extract`` (``batch_tokens``, ...).

    Returns:
        A pandas DataFrame with one row per cell: ``model, task, layer, hook_point, pooling,
        template, postprocess``, the metric columns and the geometry columns. ``df.attrs``
        holds the summary written to ``summary.json``.

    Examples:
        >>> df = evaluate_grid("smollm2-135m", "sick", layers="all",
        ...                    poolings="mean,last,prompteol,echo", out="runs/sick")  # doctest: +SKIP
        >>> df.attrs["summary"]["best"]  # doctest: +SKIP
    """
    from ..activations.extract import extract
    from ..data._tables import require
    from ..models import LoadedModel, load_model
    from ..models.hook_names import normalize_layers
    from ..settings import runs_dir

    pd = require("pandas", "data")
    t_start = time.perf_counter()
    grid = parse_grid_poolings(poolings)
    post = parse_postprocess(postprocess)
    the_task = load_task(task, limit=limit)
    metric_names = parse_metrics(metrics, the_task)
    lm = model if isinstance(model, LoadedModel) else load_model(model)
    if any(p.store_pooling == "native" for p in grid) and lm.sentence_pooling is None:
        raise PoolingError(
            f"pooling 'native' is a sentence-transformers model's own pooling and {lm.name} has "
            f"none: drop 'native' from {arg('the poolings', '--pooling')}"
        )
    layer_list = sorted(normalize_layers(layers, lm.n_layers, lm.name))
    if isinstance(the_task, PairTask):
        ctx: Any = _PairContext(the_task)
        texts = ctx.texts
    else:
        texts, ctx = the_task.unique_sentences()
    out_dir = (
        Path(out)
        if out is not None
        else runs_dir() / (f"embed-{Path(lm.name).name}-{the_task.name}".replace(" ", "_"))
    )
    out_dir.mkdir(parents=True, exist_ok=True)

    # -- one store per template ------------------------------------------------------------------
    groups = _store_groups(grid)
    texts_hash = _texts_hash(texts)
    stores: dict[str | None, Any] = {}
    store_info: list[dict[str, Any]] = []
    for template, store_poolings in groups.items():
        key = json.dumps([template, store_poolings, layer_list, texts_hash, lm.weights_fingerprint])
        path = (
            out_dir
            / "stores"
            / f"{_slug(template)}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
        )
        reused = (path / "manifest.json").is_file() and json.loads(
            (path / "manifest.json").read_text()
        ).get("status") == "complete"
        t0 = time.perf_counter()
        store = extract(
            lm,
            texts,
            layers=layer_list,
            pooling=store_poolings,
            template=template,
            out=path,
            threads=threads,
            progress=progress,
            **(extract_options or {}),
        )
        stores[template] = store
        stats = store.manifest.get("stats", {})
        store_info.append(
            {
                "template": template,
                "poolings": store_poolings,
                "path": str(path),
                "reused": reused,
                "wall_s": round(time.perf_counter() - t0, 3),
                "forward_s": stats.get("seconds"),
                "n_tokens": stats.get("n_tokens"),
                "n_texts": len(texts),
            }
        )
    t_extracted = time.perf_counter()

    # -- every cell ------------------------------------------------------------------------------
    limits: Any = nullcontext()
    if threads is not None:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(limits=threads)
    rows: list[dict[str, Any]] = []
    n_cells = len(layer_list) * len(grid) * len(post)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_cells, unit="cell", desc=f"evaluate {the_task.name}")
    try:
        with limits:
            for gp in grid:
                store = stores[gp.template]
                for layer in layer_list:
                    X = store.layer(layer, gp.store_pooling)  # [n_unique, d]
                    for pp in post:
                        Z = PostProcess(pp).fit_transform(X)
                        row: dict[str, Any] = {
                            "model": lm.name,
                            "task": the_task.name,
                            "layer": layer,
                            "hook_point": store.layers[layer],
                            "pooling": gp.name,
                            "template": gp.template or "",
                            "postprocess": pp,
                        }
                        row.update(_cell_metrics(Z, the_task, ctx, metric_names, seed))
                        if geometry_stats:
                            row.update(geometry(Z))
                        rows.append(row)
                        if bar is not None:
                            bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    df = pd.DataFrame(rows)
    t_done = time.perf_counter()

    # -- summary and files -----------------------------------------------------------------------
    main = _main_metric(list(df.columns), select)
    summary = {
        "model": lm.name,
        "model_spec": lm.describe().get("source"),
        "task": the_task.describe(),
        "layers": layer_list,
        "poolings": [
            {"name": p.name, "template": p.template, "store_pooling": p.store_pooling} for p in grid
        ],
        "postprocess": post,
        "postprocess_fit": "each post-processing is fitted on the task's own distinct sentences",
        "metrics": metric_names,
        "units": "task metrics x100; anisotropy, effective_rank and norms raw",
        "n_configurations": len(df),
        **summarize(df, main),
        "stores": store_info,
        "forward_passes": len(store_info),
        "timing": {
            "extract_s": round(t_extracted - t_start, 3),
            "evaluate_s": round(t_done - t_extracted, 3),
            "total_s": round(t_done - t_start, 3),
            "threads": threads,
        },
    }
    df.to_csv(out_dir / "results.csv", index=False)
    try:
        df.to_parquet(out_dir / "results.parquet", index=False)
        summary["files"] = ["results.csv", "results.parquet", "summary.json"]
    except ImportError:  # pyarrow absent: CSV only
        summary["files"] = ["results.csv", "summary.json"]
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    df.attrs["summary"] = summary
    df.attrs["out"] = str(out_dir)
    return df
