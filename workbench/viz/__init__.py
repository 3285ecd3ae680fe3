"""Figures: pure functions from results to plotly figures, shared by the CLI, the dashboard and
the notebooks. plotly is imported when a figure is built, never by ``import workbench``.

Examples:
    >>> from workbench.viz import embedding_heatmap, write_figure
    >>> fig = embedding_heatmap(df, "spearman")  # doctest: +SKIP
    >>> write_figure(fig, "runs/sick/heatmap_spearman")  # doctest: +SKIP
"""

from ._embedding import embedding_heatmap
from ._io import png_available, write_figure
from .probing import generalisation_heatmap, latlon_map, layer_curves

__all__ = ["embedding_heatmap", "png_available", "write_figure"]
__all__ += ["generalisation_heatmap", "latlon_map", "layer_curves"]
