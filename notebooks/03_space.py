# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Space: where is a place?
#
# "Language Models Represent Space and Time" (Gurnee & Tegmark, 2023) regress the latitude and
# longitude of place names from a model's hidden states with a linear probe, layer by layer.
# Here: the bundled SmolLM2-135M on the built-in `world_places` (populous GeoNames cities, a
# seeded 80/20 split in `is_test`), one ridge probe per residual layer, a control task that gives
# each place another place's coordinates, and the map of held-out predictions.
#
# Sizes come from environment variables so the test suite can run this small; the defaults are
# the full run.

# %%
import os

import numpy as np

import workbench as wb
from workbench.probing import sweep
from workbench.viz.probing import latlon_map, layer_curves

ROWS = int(os.environ.get("WB_NB_ROWS", "2000"))  # places
LAYERS = os.environ.get("WB_NB_LAYERS", "all")  # residual layers to extract
RUNS = os.environ.get("WB_NB_RUNS", "runs/notebooks")

lm = wb.load_model("smollm2-135m")
places = wb.load_dataset("world_places", limit=ROWS)
print(lm.name, len(places), "places, e.g.", places.texts[:5])

# %% [markdown]
# SmolLM2 has no BOS token: a bare one-token name would sit at position 0, the attention sink,
# whose residual norm is ~100x the others'. So each name is read as `Place: NAME` and pooled over
# the name's own tokens (`pool_over="text"`, the default for templates).

# %%
store = wb.extract(lm, places, layers=LAYERS, pooling=["last", "mean"], template="Place: {text}",
                   out=f"{RUNS}/space-{ROWS}", progress=False)
result = sweep(store, ["latitude", "longitude"], probe="ridge", pooling=["last", "mean"],
               split="is_test", alpha=10.0, n_boot=200)
best = result.best()
print("best by R²:", best["by_score"])
print("best by selectivity (task - control):", best.get("by_selectivity"))

# %%
layer_curves(result, metric="r2")

# %% [markdown]
# Held-out error in kilometres at each layer (median great-circle distance), lower is better:

# %%
layer_curves(result, metric="median_great_circle_km")

# %% [markdown]
# The map: each held-out place's true position and the probe's prediction at the best layer,
# joined by a line.

# %%
b = best["by_score"]
pred = result.predictions[(b["pooling"], b["hook_point"])]["task"]
true = np.column_stack([store.column("latitude"), store.column("longitude")]).astype(float)
test = np.isfinite(pred).all(axis=1)
fig = latlon_map(true[test], pred[test], labels=list(np.asarray(store.texts)[test]))
fig.update_layout(title=f"layer {b['layer']} ({b['pooling']}): held-out predictions vs truth")
fig

# %% [markdown]
# What to take away: R² rises from near zero at the embeddings to its peak in the upper layers,
# far above the control task, while the errors stay large (thousands of km) for a 135M model:
# the direction of "where" is linearly present but coarse.

# %% [markdown]
# The key numbers, saved to `$WB_NB_RUNS/03_space.json`: the test suite checks them against
# the claims above.

# %%
import json  # noqa: E402
from pathlib import Path  # noqa: E402


def by_layer(metric: str, labels: str = "task") -> dict[int, float]:
    """One metric per layer at the best pooling."""
    c = result.curve(metric, labels)
    c = c[c["pooling"] == b["pooling"]]
    return {int(k): float(v) for k, v in zip(c["layer"], c["value"], strict=True)}


figures = {"rows": len(store), "best_layer": int(b["layer"]), "pooling": b["pooling"],
           "r2": by_layer("r2"), "control_r2": by_layer("r2", "control"),
           "median_km": by_layer("median_great_circle_km")}
Path(RUNS).mkdir(parents=True, exist_ok=True)
Path(RUNS, "03_space.json").write_text(json.dumps(figures, indent=1))
figures
