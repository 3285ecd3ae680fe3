"""Causal check on SmolLM2: does adding the true-minus-false direction raise P(" True")?"""

from __future__ import annotations

import numpy as np
import pytest

import workbench
from workbench.probing import CausalCheck

LAYERS = [8, 12, 16]
#: In units of the layer's residual norm (CausalCheck's default scale). The class-mean difference
#: is ~2% of that norm; ±4 norms overwrites the stream (KL ~9 nats on unrelated prompts, and the
#: effect is no longer monotone), so the check uses ±0.1.
ALPHAS = (-0.1, 0, 0.1)


@pytest.mark.slow
def test_truth_direction_moves_true_vs_false(smollm2, tmp_path):
    ds = workbench.load_dataset("cities", limit=40)
    store = workbench.extract(
        smollm2, ds, layers=LAYERS, pooling="last", out=tmp_path / "run", progress=False
    )
    labels = np.asarray(store.column("label")).astype(bool)
    assert labels.sum() == 20 and (~labels).sum() == 20
    directions = {}
    for layer in LAYERS:
        X = store.layer(layer, "last")  # [rows, d_model]
        directions[layer] = X[labels].mean(axis=0) - X[~labels].mean(axis=0)

    check = CausalCheck(smollm2)
    table = check.run(ds.texts, directions, alphas=ALPHAS)
    print()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))

    monotone = []
    for layer, rows in table.groupby("layer"):
        effect = rows.sort_values("alpha")["mean_logit_diff"].to_numpy()
        if np.all(np.diff(effect) >= 0):
            monotone.append(layer)
    print("monotone non-decreasing in alpha at layers:", monotone)
    assert monotone, "adding the true-minus-false direction never raised log P(True) - log P(False)"
    zero = table[table["alpha"] == 0]
    assert (zero["kl_unrelated"] == 0).all() and (zero["delta_vs_alpha0"] == 0).all()
