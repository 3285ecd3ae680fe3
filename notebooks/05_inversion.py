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
# # 05 · Decoding back to text
#
# Two questions, one model layer and one store underneath:
#
# 1. **What does a hidden state say?** The logit lens reads every layer through the model's own
#    final norm and unembedding; a Patchscope patches a hidden state into an identity prompt and
#    lets the model say what it holds.
# 2. **What does a sentence embedding leak?** Invert MiniLM sentence embeddings with SmolLM2
#    with each inverter: guided by the embedder (zero-shot, no training), a trained soft-prefix
#    inverter, a trained vec2text-style corrector, and the hybrid; then measure how much of the
#    text comes back from an LLM's pooled hidden states per layer, with and without Gaussian
#    noise.
#
# On CPU, and with a 135M model, expect keywords rather than reconstructions: BLEU stays low.
# The cosine of the reference with its words sorted alphabetically (the *bag-of-words anchor*)
# is printed beside every cosine, because cosine alone flatters word salad.

# %%
import os

import numpy as np
import pandas as pd

import workbench as wb
from workbench.inversion import (
    GuidedInverter,
    HybridInverter,
    InverterConfig,
    ModelEmbedder,
    SoftPrefixInverter,
    SoftPromptModel,
    TrainedCorrector,
    evaluate_inversion,
    leakage_report,
)
from workbench.lens import Patchscope, TunedLens, lens_report, logit_lens
from workbench.viz import inversion_table, logit_lens_grid

SENTENCES = int(os.environ.get("WB_NB_SENTENCES", "8"))
FAST = bool(os.environ.get("WB_NB_FAST"))
RUNS = os.environ.get("WB_NB_RUNS", "runs/notebooks")
#: Trained inverter / corrector folders (benchmarks/bench_inversion.py trains these); when they
#: hold nothing, the notebook trains small ones itself for TRAIN_STEPS steps.
INVERTER = os.environ.get("WB_NB_INVERTER", "runs/inverter-minilm-smollm2")
CORRECTOR = os.environ.get("WB_NB_CORRECTOR", "runs/corrector-minilm-smollm2")
TRAIN_STEPS = 3 if FAST else 60
lm = wb.load_model("smollm2-135m")

# %% [markdown]
# ## Logit lens
# Top next token at every layer (rows) and position (columns), coloured by its probability;
# the rank of " Paris" at the last position is printed per layer.

# %%
lens = logit_lens(lm, "The capital of France is", k=5, target=" Paris")
print({int(layer): int(rank) for layer, rank in zip(lens.layers, lens.target_rank[:, -1],
                                                    strict=True) if layer % 5 == 0 or rank <= 3})
logit_lens_grid(lens.top1(), lens.top_probs[..., 0], layer_labels=list(lens.layers),
                position_labels=lens.input_tokens, title="logit lens: SmolLM2-135M")

# %% [markdown]
# ## Patchscope
# The last token's state of "I visited Paris" at each layer, patched into
# `cat -> cat; 1135 -> 1135; hello -> hello; ? ->` at the same layer: what does the model read
# back? (Position 0 of SmolLM2 is an attention sink, so the word is read at a later position.)

# %%
scope = Patchscope(lm)
layers = [2, 6, 10, 14, 18] if FAST else list(range(1, lm.n_layers, 2))
readouts = scope.run_layers("I visited Paris", layers=layers, position=-1)
pd.DataFrame([{"layer": r.layer, "source token": r.source_token, "reads back": r.description}
              for r in readouts])

# %% [markdown]
# ## The texts
# Sentences from the UD English EWT dev set when `../shared` is present, else a few built-in
# ones; the trained lens, inverter and corrector learn only from *other* sentences (the rest of
# the dev set, or the bundled cities statements).

# %%
ud = wb.load_dataset("../shared/data/ud_english_ewt/en_ewt-ud-dev.conllu") \
    if os.path.exists("../shared/data/ud_english_ewt/en_ewt-ud-dev.conllu") else None
if ud is not None:
    pool = [t for t in ud.texts if 5 <= len(t.split()) <= 15]
    texts = [pool[i] for i in np.random.default_rng(0).choice(len(pool), SENTENCES, replace=False)]
    train_texts = [t for t in ud.texts if t.strip() and t not in set(texts)]
else:
    texts = ["The cat sat on the warm mat.", "We are going to Paris next summer.",
             "The stock market fell sharply on Monday.", "She plays the violin every evening."]
    texts = texts[:SENTENCES]
    train_texts = list(wb.load_dataset("cities").texts)
print(f"{len(texts)} texts to decode, {len(train_texts)} training texts")

# %% [markdown]
# ## Tuned lens
# One affine translator per layer, fitted so that the final norm and unembedding read layer
# *l* the way they read the last layer (least squares, then KL steps). On held-out text, the
# KL to the model's own next-token distribution per layer: the logit lens against the tuned lens.

# %%
tuned = TunedLens(lm).fit(train_texts[: 64 if FAST else 512], steps=0 if FAST else 40,
                          init_texts=64 if FAST else 256, progress=False)
lens_cmp = lens_report(lm, texts, tuned, progress=False)
print(lens_cmp.to_markdown())
import plotly.graph_objects as go  # noqa: E402

fig = go.Figure([go.Scatter(x=lens_cmp.table["layer"], y=lens_cmp.table[c], mode="lines+markers",
                            name=c.replace("kl_", "") + " lens") for c in ("kl_logit", "kl_tuned")])
fig.update_layout(title="KL(model || lens) per layer on held-out text", xaxis_title="layer",
                  yaxis_title="nats per token", yaxis_type="log", template="plotly_white")
fig

# %% [markdown]
# ## Inverting MiniLM sentence embeddings: guided decoding
# SmolLM2 proposes tokens, MiniLM scores every candidate by cosine to the target, a beam keeps
# the best; "write a sentence similar to this" rounds refine, and word edits polish, until a CPU
# budget per text is spent (30 s gives cosine about 0.9: benchmarks/INVERSION_ZERO_SHOT.md).
# No training.

# %%
minilm = ModelEmbedder(wb.load_model("minilm-l6"))
targets = minilm.embed(texts)  # [n, 384]
inverter = GuidedInverter(lm, minilm, budget=4.0 if FAST else 30.0)
results = inverter.invert_many(targets)
scores = evaluate_inversion(texts, [r.text for r in results], minilm)
print({k: round(v, 3) for k, v in scores.items()})


def table_rows(method: str, results: list) -> list[dict]:
    """One row per text: the reconstruction and its metrics."""
    rows = []
    for text, r in zip(texts, results, strict=True):
        m = evaluate_inversion([text], [r.text], minilm)
        rows.append({"method": method, "reference": text, "text": r.text, "cosine": m["cosine"],
                     "bow anchor": m["cosine_bow_anchor"], "bleu": m["bleu"],
                     "token_f1": m["token_f1"], "seconds": r.seconds})
    return rows


rows = table_rows("guided", results)
inversion_table(rows, title="MiniLM embeddings inverted by SmolLM2 (guided decoding)")

# %% [markdown]
# ## Trained inverter, trained corrector, hybrid
# - The **soft-prefix inverter** (GEIA / vec2text's hypothesis model) maps the embedding through
#   an MLP to 8 soft-prompt vectors that SmolLM2 continues with the text.
# - The **trained corrector** (vec2text's corrector) reads the target embedding, the
#   hypothesis' embedding and their difference as a soft prompt, then `Draft: <hypothesis>`,
#   and writes a correction; a correction is kept only when its cosine to the target is higher.
# - The **hybrid** lets the inverter propose four hypotheses, re-ranks them by cosine and
#   refines the best by guided rewriting.
#
# On a CPU these are trained for minutes at most: the checkpoints of
# `benchmarks/bench_inversion.py` are used when present, else the notebook trains tiny ones
# (60 steps; 3 in CI), which measure the pipeline rather than the method. The step counts are
# printed: read the table with them.

# %%
from pathlib import Path  # noqa: E402


def trained_model(cls: type, folder: str, name: str) -> SoftPromptModel:
    """The checkpoint in ``folder``, or a small one trained here."""
    if (Path(folder) / "inverter.json").exists():
        return cls.load(folder, lm, minilm)
    model = cls(lm, minilm, InverterConfig(batch_size=4, lr=2e-3))
    return model.fit(train_texts, Path(RUNS) / name, steps=TRAIN_STEPS, progress=False)


soft = trained_model(SoftPrefixInverter, INVERTER, "inverter")
corrector = trained_model(TrainedCorrector, CORRECTOR, "corrector")
print(f"inverter: {soft.step_} steps; corrector: {corrector.step_} steps")
new_tokens = 12 if FAST else 24
proposals = [soft.reconstruct(x, max_new_tokens=new_tokens) for x in targets]
steps = 1 if FAST else 2
corrected = [corrector.refine(x, r, steps, max_new_tokens=new_tokens)
             for x, r in zip(targets, proposals, strict=True)]
guided_corrected = [corrector.refine(x, r, steps, max_new_tokens=new_tokens)
                    for x, r in zip(targets, results, strict=True)]
hybrid = HybridInverter(soft, inverter, proposals=2 if FAST else 4, steps=0 if FAST else 1)
hybrid_results = [hybrid.invert(x) for x in targets]
rows = (table_rows("guided", results) + table_rows("soft-prefix inverter", proposals)
        + table_rows("inverter + trained corrector", corrected)
        + table_rows("guided + trained corrector", guided_corrected)
        + table_rows("hybrid", hybrid_results))
summary = pd.DataFrame(rows).groupby("method", sort=False)[
    ["cosine", "bow anchor", "bleu", "token_f1"]].mean().round(3)
print(summary.to_markdown())
inversion_table(rows, title="each inverter on the same MiniLM embeddings")

# %% [markdown]
# ## Leakage per layer, and the noise defence
# The same inversion, now of SmolLM2's own mean-pooled hidden states at three layers (one in
# CI); then Gaussian noise of growing scale on the (unit-normalised) embeddings, against
# reconstruction and against retrieval (recall@1 of the noisy vector among the clean ones): the
# vec2text defence trade-off.

# %%
report = leakage_report(lm, texts, layers=(6,) if FAST else (6, 15, -1), poolings=("mean",),
                        noise=(0.0, 0.2) if FAST else (0.0, 0.01, 0.05, 0.1, 0.2),
                        guided={"beam_width": 2, "max_tokens": 8 if FAST else 12,
                                "rewrite_rounds": 0},
                        progress=False)
print(report.to_markdown())
defence = pd.DataFrame(report.defence)
fig = go.Figure()
for column in [c for c in defence.columns
               if c.startswith("recall@") and not c.endswith(("_low", "_high"))] + ["token_f1"]:
    fig.add_trace(go.Scatter(x=defence["noise"], y=defence[column], mode="lines+markers",
                             name=column,
                             error_y={"type": "data", "symmetric": False,  # 95% bootstrap CI
                                      "array": defence[f"{column}_high"] - defence[column],
                                      "arrayminus": defence[column] - defence[f"{column}_low"]}))
fig.update_layout(title="noise defence: retrieval vs reconstruction", xaxis_title="noise scale",
                  template="plotly_white")
fig

# %% [markdown]
# The key numbers, saved to `$WB_NB_RUNS/05_inversion.json`: the test suite checks them against
# the figures the README quotes. `cosine_unrelated` is the mean cosine between the embeddings of
# *different* texts: the level a reconstruction that kept nothing of its text would reach.

# %%
import json  # noqa: E402

unit = targets / np.linalg.norm(targets, axis=1, keepdims=True)
cos = unit @ unit.T
figures = {
    "n_texts": len(texts),
    "paris_rank": {int(layer): int(rank) for layer, rank in
                   zip(lens.layers, lens.target_rank[:, -1], strict=True)},
    "lens_kl": lens_cmp.table[["layer", "kl_logit", "kl_tuned"]].to_dict("records"),
    "inversion": summary.reset_index().to_dict("records"),
    "cosine_unrelated": float(cos[~np.eye(len(texts), dtype=bool)].mean()) if len(texts) > 1
    else None,
    "leakage": report.rows,
    "defence": report.defence,
}
Path(RUNS).mkdir(parents=True, exist_ok=True)
Path(RUNS, "05_inversion.json").write_text(json.dumps(figures, indent=1, default=float))
figures
