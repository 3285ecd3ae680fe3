"""Attribution completeness on the bundled SmolLM2 and MiniLM: the convergence delta is small
relative to the total attribution, and the attributions make sense."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.attribution import attribute_next_token, attribute_probe, attribute_similarity

pytestmark = pytest.mark.slow

#: |delta| / |output - baseline_output| allowed at 64 Gauss-Legendre steps (measured on this
#: machine: 0.0013 next token, 1e-4 probe, <1e-3 similarity).
TOL = 0.05


def _complete(a):
    assert np.isfinite(a.scores).all()
    assert abs(a.delta) < TOL * abs(a.total), (a.delta, a.total)
    assert a.relative_delta < TOL, (a.delta, a.output, a.baseline_output)


def test_smollm2_next_token_and_contrast(smollm2):
    france, england = attribute_next_token(
        smollm2,
        ["The capital of France is", "The capital of England is"],
        " Paris",
        foil=" London",
        n_steps=64,
        internal_batch_size=32,
    )
    for a in (france, england):
        _complete(a)
        assert a.kept_first and a.scores[0] == 0.0  # SmolLM2 adds no BOS: the first token is kept
    assert france.output > 0 > england.output  # Paris after France, London after England
    # The country token pushes the contrast towards its own capital. Measured at 64 steps
    # (relative delta 0.0013 and 0.0008): " France" +0.48 towards Paris, " England" -0.24
    # (towards London). It is not the largest score: " is" +2.41, " of" +2.28, " capital"
    # +1.77 for France; integrated gradients credits the frame the country sits in too.
    assert france.scores[france.tokens.index("ĠFrance")] > 0
    assert england.scores[england.tokens.index("ĠEngland")] < 0


def test_smollm2_probe_at_a_middle_layer(smollm2):
    rng = np.random.default_rng(0)
    direction = rng.normal(size=smollm2.d_model)
    a = attribute_probe(
        smollm2,
        "The city of Paris is in France.",
        direction,
        layer=15,
        pooling="mean",
        n_steps=64,
        internal_batch_size=32,
    )
    _complete(a)
    assert "layer 15" in a.target


def test_similarity_minilm_native_and_smollm2_mean(minilm, smollm2):
    for lm, pooling in ((minilm, None), (smollm2, "mean")):
        a, b = attribute_similarity(
            lm,
            "A man is playing a guitar.",
            "Someone plays music.",
            pooling=pooling,
            n_steps=64,
            internal_batch_size=32,
        )
        _complete(a)
        _complete(b)
        assert a.output == pytest.approx(b.output, abs=1e-5)
