"""SmolLM2 inverting bundled MiniLM embeddings (slow: real models)."""

from __future__ import annotations

import pytest

from workbench.inversion.embedders import ModelEmbedder, cosine_to
from workbench.inversion.guided import GuidedInverter
from workbench.inversion.metrics import bag_of_words, token_f1

pytestmark = pytest.mark.slow

SENTENCES = ["The city of Paris is in France.", "A man is playing a guitar on the stage."]
#: The bag-of-words-free baseline: an unrelated sentence scored against each target.
RANDOM = "Quarterly revenue rose by four percent after the merger."


def test_guided_inverts_minilm(smollm2, minilm):
    emb = ModelEmbedder(minilm)
    assert emb.dim == 384 and emb.pooling.name == "native"
    g = GuidedInverter(
        smollm2,
        emb,
        beam_width=2,
        top_k=4,
        keywords=8,
        max_tokens=14,
        rewrite_rounds=0,
        prior_words=8000,
    )
    targets = emb.embed(SENTENCES)
    for text, target in zip(SENTENCES, targets, strict=True):
        res = g.invert(target)
        baseline = float(cosine_to(emb.embed([RANDOM]), target)[0])
        anchor = float(cosine_to(emb.embed([bag_of_words(text)]), target)[0])
        assert res.cosine > baseline + 0.3, (res.text, res.cosine, baseline)
        assert anchor > 0.7  # why cosine alone misleads: sorted words already score high
        assert token_f1(text, res.text) > 0.0, res.text


def test_sentence_transformers_embedder_matches_native_pooling(minilm):
    """``st:minilm-l6`` runs the sentence-transformers library; the ModelEmbedder's native
    pooling reimplements it, so both give the same vectors (an independent reference)."""
    pytest.importorskip("sentence_transformers")
    import numpy as np

    from workbench.inversion.embedders import SentenceTransformerEmbedder, load_embedder

    st = load_embedder("st:minilm-l6")
    assert isinstance(st, SentenceTransformerEmbedder) and st.dim == 384
    np.testing.assert_allclose(
        st.embed(SENTENCES), ModelEmbedder(minilm).embed(SENTENCES), atol=1e-5
    )
    assert st.fingerprint != ModelEmbedder(minilm).fingerprint  # another embedder, another key
