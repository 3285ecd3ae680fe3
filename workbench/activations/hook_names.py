"""The hook naming scheme moved to :mod:`workbench.models.hook_names`; this path keeps working."""

from ..models.hook_names import (
    COMPONENTS,
    EMBED,
    FINAL_NORM,
    all_hook_points,
    block_hook,
    canonical,
    expand_hook_patterns,
    hook_layer,
    normalize_layers,
    parse_hook,
    resid_hook,
)

__all__ = [
    "COMPONENTS",
    "EMBED",
    "FINAL_NORM",
    "all_hook_points",
    "block_hook",
    "canonical",
    "expand_hook_patterns",
    "hook_layer",
    "normalize_layers",
    "parse_hook",
    "resid_hook",
]
