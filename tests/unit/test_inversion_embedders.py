"""Embedder specs (any model's layer and pooling, or a sentence-transformers model) and proposers
(any decoder; an encoder is refused naming the flag), from Python and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.errors import UnknownModelError
from workbench.inversion.embedders import (
    EmbedderSpec,
    EmbedderSpecError,
    ModelEmbedder,
    load_embedder,
    load_proposer,
    parse_embedder_spec,
)


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("minilm-l6", EmbedderSpec("minilm-l6")),
        ("smollm2-135m:layer=12:pooling=mean", EmbedderSpec("smollm2-135m", 12, "mean")),
        ("smollm2-135m:pooling=pos:-2", EmbedderSpec("smollm2-135m", None, "pos:-2")),
        ("m:pooling=last:layer=-3", EmbedderSpec("m", -3, "last")),
        (
            "st:sentence-transformers/all-MiniLM-L6-v2",
            EmbedderSpec("sentence-transformers/all-MiniLM-L6-v2", sentence_transformers=True),
        ),  # noqa: E501
        ("st:./models/my:model", EmbedderSpec("./models/my:model", sentence_transformers=True)),
    ],
)
def test_parse_embedder_spec(spec, want):
    got = parse_embedder_spec(spec)
    assert got == want
    assert parse_embedder_spec(str(got)) == got  # the canonical form parses back


@pytest.mark.parametrize(
    ("spec", "kwargs", "match"),
    [
        ("", {}, "names no model"),
        ("st:", {}, "names no model after 'st:'"),
        ("m:depth=3", {}, r"unknown key 'depth': the keys are layer, pooling"),
        ("m:layer=x", {}, "not an integer"),
        ("m:layer=3", {"layer": 4}, "says layer=3 but layer 4 was also given"),
        ("st:minilm-l6", {"layer": 2}, "sentence-transformers model"),
    ],
)
def test_parse_embedder_spec_errors(spec, kwargs, match):
    with pytest.raises(EmbedderSpecError, match=match) as info:
        parse_embedder_spec(spec, **kwargs)
    assert "\n" not in str(info.value)


def test_spec_arguments_fill_what_the_string_leaves_out(tiny_llama):
    got = parse_embedder_spec("m", layer=2, pooling="last")
    assert got == EmbedderSpec("m", 2, "last")
    emb = load_embedder(f"{tiny_llama.source}:layer=2:pooling=last")
    ref = ModelEmbedder(tiny_llama, layer=2, pooling="last")
    assert emb.name.endswith(":L2:last") and emb.fingerprint == ref.fingerprint
    np.testing.assert_allclose(emb.embed(["a cat"]), ref.embed(["a cat"]), atol=1e-6)


def test_encoder_proposer_refused(tiny_bert, tiny_llama):
    assert load_proposer(tiny_llama) is tiny_llama
    with pytest.raises(UnknownModelError, match="is an encoder and cannot propose text"):
        load_proposer(tiny_bert)


def test_cli_names_the_flag_for_an_encoder_proposer(tiny_bert, capsys):
    from workbench.cli.main import main

    enc = str(tiny_bert.source)
    with pytest.raises(SystemExit) as info:
        main(["invert", "run", "a cat", "--model", enc, "--embedder", f"{enc}:pooling=mean"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--model" in err and "(e.g. smollm2-135m)" in err, err
    with pytest.raises(SystemExit) as info:
        main(["invert", "run", "a cat", "--embedder", f"{enc}:depth=2"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "unknown key 'depth'" in err, err


@pytest.mark.parametrize("proposer", ["tiny_llama", "tiny_gpt2"])
def test_any_decoder_proposes(proposer, tiny_bert, request):
    from workbench.inversion.guided import GuidedInverter

    emb = load_embedder(tiny_bert, pooling="mean")
    lm = load_proposer(request.getfixturevalue(proposer))
    g = GuidedInverter(lm, emb, beam_width=2, top_k=3, keywords=2, max_tokens=4, prior_words=300)
    res = g.invert(emb.embed(["the city of paris"])[0])
    assert res.text and -1 <= res.cosine <= 1
