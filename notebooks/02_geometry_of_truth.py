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
# # 02 · The Geometry of Truth, on SmolLM2-135M
#
# Marks & Tegmark (2023) find a linear "truth direction" in the residual stream: probes trained
# on true/false statements such as "The city of Paris is in France." generalise to negated
# statements, and steering along the direction flips the model's own verdict. The recipe, on
# the bundled SmolLM2-135M and the built-in `cities` / `neg_cities` datasets:
#
# 1. a layer sweep with logistic and mass-mean probes, folds grouped by city, a Hewitt & Liang
#    control task (one random label per city) and the selectivity it gives;
# 2. the generalisation matrix, cities → negated cities;
# 3. the truth direction in a PCA picture;
# 4. the causal check: does adding the direction change log P(" True") − log P(" False")?

# %%
import os

import numpy as np
import pandas as pd

import workbench as wb
from workbench.probing import CausalCheck, generalisation_matrix, sweep
from workbench.projection import ProbeAxes
from workbench.viz import projection_scatter
from workbench.viz.causal import causal_curves
from workbench.viz.probing import generalisation_heatmap, layer_curves

ROWS = int(os.environ.get("WB_NB_ROWS", "1496"))  # statements per dataset (true/false pairs)
LAYERS = os.environ.get("WB_NB_LAYERS", "all")
RUNS = os.environ.get("WB_NB_RUNS", "runs/notebooks")
FAST = bool(os.environ.get("WB_NB_FAST"))  # CI: fewer bootstrap samples and steered texts
N_BOOT = 200 if FAST else 1000

lm = wb.load_model("smollm2-135m")
cities = wb.load_dataset("cities", limit=ROWS)
neg_cities = wb.load_dataset("neg_cities", limit=ROWS)
print(cities.texts[:2], neg_cities.texts[:2])

# %% [markdown]
# ## 1 · Layer sweep with controls
# Last-token states of every residual layer; 5-fold cross-validation grouped by city so a city's
# true and false statements never straddle train and test.

# %%
stores = {
    name: wb.extract(lm, ds, layers=LAYERS, pooling="last", out=f"{RUNS}/{name}-{ROWS}",
                     progress=False)
    for name, ds in {"cities": cities, "neg_cities": neg_cities}.items()
}
store = stores["cities"]
results = {
    kind: sweep(store, "label", probe=kind, groups="city", control_types="city", n_boot=N_BOOT)
    for kind in ("logistic", "mass_mean")
}
for kind, r in results.items():
    best = r.best()
    print(f"{kind:9s} best accuracy: layer {best['by_score']['layer']} "
          f"({best['by_score']['value']:.3f}); best selectivity: layer "
          f"{best['by_selectivity']['layer']} ({best['by_selectivity']['value']:.3f})")

# %%
layer_curves(pd.concat([r.table for r in results.values()]).drop_duplicates(),
             metric="accuracy")

# %% [markdown]
# ## 2 · Generalisation: train on cities, test on negated cities
# Off the diagonal, a probe trained on every row of one dataset is scored on the other; the
# diagonal is the cross-validated accuracy. A probe that only learned "city-country association"
# fails on negations, where the association and the truth value disagree.

# %%
gen = generalisation_matrix(stores, "label", probe="logistic", groups="city",
                            sweeps={"cities": results["logistic"]})
best_pairs = gen.loc[gen.groupby(["train", "test"])["accuracy"].idxmax()]
print(best_pairs.to_string(index=False))
generalisation_heatmap(gen)

# %% [markdown]
# ## 3 · The truth direction in a PCA picture
# x is the projection on the mass-mean direction at the best layer, y the top principal component
# of what is left once that direction is removed. True and false statements separate along x.

# %%
best = results["mass_mean"].best()["by_score"]
layer = best["layer"]
X = store.layer(layer, "last")  # [rows, d_model]
labels = np.asarray(store.column("label")).astype(int)
direction = results["mass_mean"].directions[("last", best["hook_point"])][0]
xy = ProbeAxes(direction=direction).fit_transform(X)

projection_scatter(xy, np.where(labels == 1, "true", "false"), hover=list(store.texts),
                   axis_titles=["projection on the truth direction", "top PC of the rest"],
                   title=f"cities at layer {layer}: truth direction vs the top remaining PC")

# %% [markdown]
# ## 4 · Causal check
# Add alpha × (unit truth direction) to the residual stream at the layer (alpha in units of that
# layer's mean residual norm) while the model reads "{statement} This statement is", and measure
# the change in log P(" True") − log P(" False"); the side effect is the KL divergence of the
# next-token distribution on unrelated prompts.

# %%
steerable = [layer for layer in sorted(store.layers) if 0 < layer < lm.n_layers]
accuracy = results["logistic"].curve("accuracy").set_index("layer")["value"]
selectivity = results["logistic"].selectivity().set_index("layer")["selectivity"]
steer_layers = sorted({int(accuracy.loc[steerable].idxmax()),
                       int(selectivity.loc[steerable].idxmax())})
directions = {layer: results["logistic"].directions[("last", store.layers[layer])][0]
              for layer in steer_layers}
rng = np.random.default_rng(0)
n_steered = min(24 if FAST else 48, len(cities))
texts = [cities.texts[i] for i in rng.choice(len(cities), size=n_steered, replace=False)]
check = CausalCheck(lm)
table = check.run(texts, directions, alphas=(-0.2, -0.1, 0.0, 0.1, 0.2))
print(table[["layer", "alpha", "mean_logit_diff", "delta_vs_alpha0", "kl_unrelated"]]
      .to_string(index=False, float_format=lambda v: f"{v:.3f}"))
causal_curves(table)

# %% [markdown]
# What to take away: truth is linearly decodable from the middle layers on, well above the
# control task; the generalisation to negations is the honest test of whether the direction is
# "truth" rather than association; and steering along it moves the model's own answer at a
# small KL cost on unrelated text.

# %% [markdown]
# The key numbers, saved to `$WB_NB_RUNS/02_geometry_of_truth.json`: the test suite checks them
# against the figures the README quotes.

# %%
import json  # noqa: E402
from pathlib import Path  # noqa: E402

figures = {"rows": len(store), "steer_layers": steer_layers}
for kind, r in results.items():
    b = r.best()["by_score"]
    control = r.curve("accuracy", "control").set_index("layer")["value"]
    figures[kind] = {"best_layer": int(b["layer"]), "accuracy": float(b["value"]),
                     "control_accuracy": float(control.loc[b["layer"]])}
figures["causal"] = [{k: float(v) for k, v in row.items()} for row in
                     table[["layer", "alpha", "delta_vs_alpha0", "kl_unrelated"]]
                     .to_dict("records")]
Path(RUNS).mkdir(parents=True, exist_ok=True)
Path(RUNS, "02_geometry_of_truth.json").write_text(json.dumps(figures, indent=1))
figures
