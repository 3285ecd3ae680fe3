"""Embedding quality: how good is each layer, pooling, template and post-processing of a model
as a text embedder, on real tasks.

- Tasks: :class:`PairTask` (SICK-R, SemEval STS 2012-2016) and :class:`LabelTask` (texts with
  class labels), read by :func:`load_task`, :func:`read_pair_task`, :func:`load_sick`,
  :func:`load_sts`.
- Metrics: :func:`sts_spearman`, :func:`retrieval_scores` (recall@k, MRR),
  :func:`classification_accuracy` (linear probe), :func:`pair_classification_accuracy`,
  :func:`clustering_v_measure`.
- Geometry: :func:`anisotropy`, :func:`effective_rank`, :func:`norm_stats`, and
  :class:`PostProcess` (``none``, ``center``, ``whiten``).
- :func:`evaluate_grid`: every (layer, pooling, post-processing) cell from one forward pass per
  distinct template; a tidy DataFrame, ``results.csv``/``.parquet`` and ``summary.json``.
- :class:`LayerEncoder` and :func:`run_mteb`: one layer and pooling as an MTEB encoder.

Only numpy is imported here; scipy, scikit-learn, pandas and mteb load on first use.

Examples:
    >>> from workbench.evaluation import evaluate_grid
    >>> df = evaluate_grid("smollm2-135m", "sick", poolings="mean,last,prompteol,echo",
    ...                    out="runs/sick-smollm2")  # doctest: +SKIP
    >>> df.attrs["summary"]["best"]  # doctest: +SKIP
"""

from ..intervals import majority_share, metric_interval, spearman_interval, wilson_interval
from ._geometry import POSTPROCESS, PostProcess, anisotropy, effective_rank, geometry, norm_stats
from ._grid import (
    DEFAULT_POOLINGS,
    GRID_POOLINGS,
    METRICS,
    GridPooling,
    evaluate_grid,
    parse_grid_poolings,
    summarize,
)
from ._metrics import (
    classification_accuracy,
    clustering_v_measure,
    cosine_pairs,
    pair_classification_accuracy,
    retrieval_scores,
    spearman,
    sts_spearman,
)
from ._mteb import LayerEncoder, run_mteb
from ._tasks import (
    SICK_FILES,
    LabelTask,
    PairTask,
    load_sick,
    load_sts,
    load_task,
    read_pair_task,
    sick_path,
)

__all__ = [
    "majority_share",
    "metric_interval",
    "spearman_interval",
    "wilson_interval",
    "DEFAULT_POOLINGS",
    "GRID_POOLINGS",
    "METRICS",
    "POSTPROCESS",
    "SICK_FILES",
    "GridPooling",
    "LabelTask",
    "LayerEncoder",
    "PairTask",
    "PostProcess",
    "anisotropy",
    "classification_accuracy",
    "clustering_v_measure",
    "cosine_pairs",
    "effective_rank",
    "evaluate_grid",
    "geometry",
    "load_sick",
    "load_sts",
    "load_task",
    "norm_stats",
    "pair_classification_accuracy",
    "parse_grid_poolings",
    "read_pair_task",
    "retrieval_scores",
    "run_mteb",
    "sick_path",
    "spearman",
    "sts_spearman",
    "summarize",
]
