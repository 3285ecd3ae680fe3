"""Figures: pure functions from results to plotly figures, shared by the CLI, the dashboard and
the notebooks. plotly is imported when a figure is built, never by ``import workbench``.

Examples:
    >>> from workbench.viz import embedding_heatmap, write_figure
    >>> fig = embedding_heatmap(df, "spearman")  # doctest: +SKIP
    >>> write_figure(fig, "runs/sick/heatmap_spearman")  # doctest: +SKIP
"""

from ._embedding import embedding_heatmap, embedding_layer_curves
from ._io import png_available, write_figure
from .inversion import inversion_table
from .leakage import leakage_figure
from .probing import generalisation_heatmap, latlon_map, latlon_scatter, layer_curves
from .projection import PointColours, layer_projection_slider, point_colours, projection_scatter
from .tokens import attribution_heatmap, logit_lens_grid, visible_token

__all__ = ["embedding_heatmap", "embedding_layer_curves", "png_available", "write_figure"]
__all__ += ["generalisation_heatmap", "latlon_map", "latlon_scatter", "layer_curves"]
__all__ += [
    "attribution_heatmap",
    "inversion_table",
    "leakage_figure",
    "layer_projection_slider",
    "logit_lens_grid",
    "point_colours",
    "PointColours",
    "projection_scatter",
    "visible_token",
]
