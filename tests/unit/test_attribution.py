"""Attributions on tiny random models: completeness, agreement with extraction and probes,
batching, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import workbench as wb
from workbench.attribution import (
    Attribution,
    AttributionInputError,
    TargetTokenError,
    TokenIndexError,
    attribute_next_token,
    attribute_probe,
    attribute_similarity,
)

TEXT = "the city of paris is in france."


def _complete(a: Attribution, tol: float = 0.02) -> None:
    assert a.scores.shape == (len(a.tokens),) and a.offsets.shape == (len(a.tokens), 2)
    assert a.relative_delta < tol, (a.delta, a.output, a.baseline_output)
    assert a.total == pytest.approx(a.output - a.baseline_output + a.delta, abs=1e-4)


def test_next_token_completeness_and_contrast(tiny_llama):
    a = attribute_next_token(tiny_llama, TEXT, "paris", n_steps=32)
    _complete(a)
    # the tiny models share a WordPiece tokenizer: [CLS] is special and stays in the reference
    assert not a.kept_first and a.tokens[0] == "[CLS]" and a.scores[0] == 0.0
    assert a.tokens == tiny_llama.tokenizer.convert_ids_to_tokens(
        tiny_llama.tokenizer(TEXT)["input_ids"]
    )
    for (s, e), tok in zip(a.offsets, a.tokens, strict=True):
        assert TEXT[s:e] == ("" if tok in ("[CLS]", "[SEP]") else tok.removeprefix("##"))
    c = attribute_next_token(tiny_llama, TEXT, "paris", foil="london", n_steps=32)
    f = attribute_next_token(tiny_llama, TEXT, "london", n_steps=32)
    _complete(c)
    assert c.output == pytest.approx(a.output - f.output, abs=1e-4)
    assert "logit('paris') - logit('london')" in c.target


def test_internal_batch_size_and_lists(tiny_llama):
    one = attribute_next_token(tiny_llama, TEXT, "paris", n_steps=16, internal_batch_size=None)
    small = attribute_next_token(tiny_llama, TEXT, "paris", n_steps=16, internal_batch_size=3)
    np.testing.assert_allclose(one.scores, small.scores, atol=1e-5)
    many = attribute_next_token(tiny_llama, [TEXT, "a short one"], "paris", n_steps=16)
    assert isinstance(many, list) and len(many) == 2 and many[1].text == "a short one"


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_probe_output_matches_extracted_activations(tmp_path, tiny_llama, pooling):
    from workbench.probing import LogisticProbe

    texts = [f"the city of town{i} is in land{i % 3}." for i in range(12)] + [TEXT]
    store = wb.extract(
        tiny_llama, texts, layers=[2], pooling=pooling, out=tmp_path / pooling, progress=False
    )
    X = store.layer(2, pooling)
    y = np.arange(len(X)) % 2
    probe = LogisticProbe().fit(X, y)
    a = attribute_probe(tiny_llama, TEXT, probe, layer=2, pooling=pooling, n_steps=32)
    # the attributed scalar is exactly the probe's decision value on the stored activation
    assert a.output == pytest.approx(float(probe.decision_function(X[-1:])[0]), abs=1e-4)
    _complete(a)
    assert "layer 2" in a.target


def test_similarity_on_an_encoder(tmp_path, tiny_bert):
    b_text = "paris is a city in france."
    a, b = attribute_similarity(tiny_bert, TEXT, b_text, pooling="mean", n_steps=32)
    store = wb.extract(
        tiny_bert, [TEXT, b_text], layers=[-1], pooling="mean", out=tmp_path / "s", progress=False
    )
    e = store.layer(-1, "mean")
    cos = float(e[0] @ e[1] / np.linalg.norm(e[0]) / np.linalg.norm(e[1]))
    assert a.output == pytest.approx(cos, abs=1e-4) and b.output == pytest.approx(cos, abs=1e-4)
    _complete(a)
    _complete(b)
    assert a.tokens[0] == "[CLS]" and a.scores[0] == 0.0 and not a.kept_first  # specials kept


def test_bad_input(tiny_llama, tiny_bert):
    with pytest.raises(TargetTokenError, match="exactly one token"):
        attribute_next_token(tiny_llama, TEXT, "parisian metropolis")
    with pytest.raises(TokenIndexError, match="outside the text"):
        attribute_next_token(tiny_llama, TEXT, "paris", position=99)
    with pytest.raises(TokenIndexError, match="position 40 is outside"):
        attribute_probe(tiny_llama, TEXT, np.ones(32), layer=1, pooling="pos:40")
    with pytest.raises(AttributionInputError, match="empty"):
        attribute_next_token(tiny_llama, "  ", "paris")
    with pytest.raises(AttributionInputError, match="needs a decoder"):
        attribute_next_token(tiny_bert, TEXT, "paris")
    with pytest.raises(AttributionInputError, match=r"\[d_model\]"):
        attribute_probe(tiny_llama, TEXT, np.ones(5), layer=1)

    class NotLinear:
        pass

    with pytest.raises(AttributionInputError, match="no linear weights"):
        attribute_probe(tiny_llama, TEXT, NotLinear(), layer=1)
    from workbench.errors import LayerOutOfRangeError

    with pytest.raises(LayerOutOfRangeError):
        attribute_probe(tiny_llama, TEXT, np.ones(32), layer=9)


def test_until_converged_doubles_steps_to_the_tolerance(tiny_llama):
    """From 2 steps, n_steps doubles until the relative delta is under the tolerance: the
    result's steps are the first power-of-two multiple that converges (checked by direct calls),
    and a budget too small returns the last try with its (large) delta and a warning."""
    import warnings

    from workbench.attribution import attribute_until_converged, worst_delta

    def run(n: int) -> Attribution:
        return attribute_next_token(tiny_llama, TEXT, "paris", n_steps=n)

    tol = 0.01
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = attribute_until_converged(run, n_steps=2, max_steps=256, tolerance=tol)
        assert got.relative_delta < tol
        tried = [run(n) for n in (2, 4, 8, 16, 32, 64, 128) if n < got.n_steps]
    assert all(a.relative_delta >= tol for a in tried)
    assert got.n_steps == 2 ** (len(tried) + 1)
    short = attribute_until_converged(run, n_steps=2, max_steps=2, tolerance=1e-9)
    assert short.n_steps == 2 and worst_delta(short) >= 1e-9
    pair = attribute_until_converged(
        lambda n: attribute_similarity(tiny_llama, TEXT, "paris is a city", n_steps=n),
        n_steps=4,
        max_steps=64,
        tolerance=0.05,
    )
    assert len(pair) == 2 and (worst_delta(pair) < 0.05 or pair[0].n_steps == 64)
    with pytest.raises(ValueError, match="n_steps"):
        attribute_until_converged(run, n_steps=64, max_steps=32)
