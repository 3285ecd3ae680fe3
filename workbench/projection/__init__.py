"""Projections of activations: PCA, UMAP and t-SNE as scikit-learn transformers, layer-aligned
projections for a layer slider, probe directions as axes, and a cached ``project_store``.

Examples:
    >>> from workbench.projection import PCAProjection, AlignedProjection, project_store
    >>> xy = PCAProjection(n_components=2).fit_transform(store.layer(15, "last"))  # doctest: +SKIP
    >>> res = project_store(store, "umap", pooling="last", layers="all")  # doctest: +SKIP
    >>> res.embeddings.shape  # [layers, rows, 2]  # doctest: +SKIP
"""

from ._aligned import AlignedProjection, layer_displacement, procrustes_rotation
from ._axes import ProbeAxes, probe_direction
from ._estimators import (
    PCAProjection,
    ProjectionInputError,
    TSNEProjection,
    UMAPProjection,
    make_projection,
)
from ._io import StoreProjection, load_projection, project_store, save_projection

__all__ = [
    "AlignedProjection",
    "PCAProjection",
    "ProbeAxes",
    "ProjectionInputError",
    "StoreProjection",
    "TSNEProjection",
    "UMAPProjection",
    "layer_displacement",
    "load_projection",
    "make_projection",
    "probe_direction",
    "procrustes_rotation",
    "project_store",
    "save_projection",
]
