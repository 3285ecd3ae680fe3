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
# # 04 · An LLM as a text embedder
#
# Which layer and which pooling make a decoder LLM a good sentence embedder? Mean pooling,
# the last token, and a PromptEOL-style prompt (`This sentence : "{text}" means in one word:"`,
# last token) are compared per layer of the bundled SmolLM2-135M on semantic textual similarity
# (SICK-R: Spearman correlation of cosine similarity with human scores), against the bundled
# all-MiniLM-L6-v2 sentence encoder, which was trained for exactly this.
#
# SICK comes from `../shared` when it is there; otherwise the notebook falls back to the
# built-in `cities` statements as a labelled task (linear-probe accuracy and clustering).

# %%
import os

import workbench as wb
from workbench.evaluation import evaluate_grid, load_task
from workbench.viz import embedding_heatmap, embedding_layer_curves

PAIRS = int(os.environ.get("WB_NB_PAIRS", "1000"))
LAYERS = os.environ.get("WB_NB_LAYERS", "all")
RUNS = os.environ.get("WB_NB_RUNS", "runs/notebooks")

try:
    task = load_task("sick", limit=PAIRS)
    metric = "spearman"
except wb.WorkbenchError as exc:
    print("SICK not available, using the built-in cities statements:", exc)
    task = load_task("cities", limit=PAIRS)
    metric = "accuracy"
print(task.describe())

# %%
llm = evaluate_grid("smollm2-135m", task, layers=LAYERS, poolings="mean,last,prompteol",
                    postprocess="none,center", out=f"{RUNS}/embed-smollm2-{PAIRS}",
                    progress=False)
minilm = evaluate_grid("minilm-l6", task, layers=[-1], poolings="native", postprocess="none",
                       out=f"{RUNS}/embed-minilm-{PAIRS}", progress=False)
reference = float(minilm[metric].iloc[0])
print(f"MiniLM (its own pooling): {metric} = {reference:.2f}")
print("SmolLM2 best:", llm.attrs["summary"]["best"])

# %%
embedding_layer_curves(llm, metric, reference=("MiniLM sentence encoder", reference),
                       title=f"{task.describe()['name']}: {metric} by layer and pooling")

# %% [markdown]
# The same grid as a heatmap, with centering (subtracting the mean embedding, which removes the
# shared direction that makes raw LLM embeddings anisotropic) beside the raw cosine:

# %%
embedding_heatmap(llm, metric)

# %% [markdown]
# Anisotropy (mean cosine between random pairs) per layer: high values mean every embedding
# points the same way, which hurts raw cosine similarity and is what centering fixes.

# %%
embedding_layer_curves(llm[llm["postprocess"] == "none"], "anisotropy",
                       title="anisotropy by layer (raw): mean pairwise cosine")

# %% [markdown]
# The key numbers, saved to `$WB_NB_RUNS/04_llm_as_embedder.json`: the test suite checks them
# against the figures the README quotes (on the whole SICK-R test set).

# %%
import json  # noqa: E402
from pathlib import Path  # noqa: E402

best_by_pooling = llm.groupby("pooling")[metric].max()
figures = {"task": task.describe()["name"], "metric": metric, "n": task.describe().get("n_pairs"),
           "minilm": reference, "smollm2_best": float(llm[metric].max()),
           "smollm2_best_by_pooling": {k: float(v) for k, v in best_by_pooling.items()}}
Path(RUNS).mkdir(parents=True, exist_ok=True)
Path(RUNS, "04_llm_as_embedder.json").write_text(json.dumps(figures, indent=1))
figures
