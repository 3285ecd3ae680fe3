"""Guided decoding, correction and the leakage report on tiny random models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.inversion.correction import GuidedCorrector
from workbench.inversion.embedders import EmbeddingInputError, ModelEmbedder, cosine_to
from workbench.inversion.guided import WRITE_PROMPT, GuidedInverter, _prompt_ids
from workbench.inversion.leakage import add_noise, default_entities, leakage_report

TEXT = "the city of paris is in france"


@pytest.fixture(scope="module")
def embedder(tiny_bert):
    return ModelEmbedder(tiny_bert, pooling="mean")


def _greedy(lm, n: int) -> str:
    """The LLM's own greedy continuation of the prompt: decoding with no guidance."""
    ids = torch.tensor([_prompt_ids(lm.tokenizer, WRITE_PROMPT)])
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(lm.model(input_ids=ids).logits[0, -1].argmax())
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    return lm.tokenizer.decode(out, skip_special_tokens=True)


def test_guided_beats_unguided_start(tiny_llama, embedder):
    target = embedder.embed([TEXT])[0]
    g = GuidedInverter(
        tiny_llama,
        embedder,
        beam_width=3,
        top_k=5,
        keywords=5,
        max_tokens=8,
        rewrite_rounds=1,
        prior_words=2000,
        polish="none",
    )
    res = g.invert(target)
    start = float(cosine_to(embedder.embed([_greedy(tiny_llama, 8) or "."]), target)[0])
    assert res.cosine > start + 0.05
    assert res.cosine == pytest.approx(
        float(cosine_to(embedder.embed([res.text]), target)[0]), abs=1e-5
    )
    cosines = [c for _, _, c in res.history]
    assert cosines == sorted(cosines) and len(cosines) == 2  # never worse after a round


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_budget_trace_and_exact_rescoring(tiny_llama, embedder, dtype):
    """The search stops when its CPU budget is spent, its trace only improves, and every cosine
    it reports is the embedder's own (the bfloat16 search copy only ranks candidates)."""
    import time

    target = embedder.embed([TEXT])[0]
    g = GuidedInverter(
        tiny_llama,
        embedder,
        max_tokens=8,
        prior_words=2000,
        rewrite_rounds=10_000,
        budget=1.5,
        search_dtype=dtype,
    )
    prompts: list[str] = []
    decode = g.decode

    def spy(target, message, *args, **kwargs):
        prompts.append(message)
        return decode(target, message, *args, **kwargs)

    g.decode = spy  # type: ignore[method-assign]
    c0 = time.process_time()
    res = g.invert(target)
    assert time.process_time() - c0 < 1.5 + 1.0  # one decode step of slack (tiny models)
    assert len(prompts) > 2
    assert len(set(prompts)) == len(prompts)  # no round rewrites the same text twice
    secs = [t for t, _, _ in res.trace]
    cos = [c for _, _, c in res.trace]
    assert secs == sorted(secs) and cos == sorted(cos) and secs[-1] <= 1.5 + 1.0
    assert res.at_budget(0.0) == (res.trace[0][1], res.trace[0][2])
    assert res.at_budget(1e9) == (res.text, res.cosine)
    for _, text, c in res.trace:
        assert c == pytest.approx(float(cosine_to(embedder.embed([text]), target)[0]), abs=1e-5)


@pytest.mark.parametrize("polish", ["delete", "edit"])
def test_polish_deletes_words_that_lower_the_cosine(tiny_llama, embedder, polish):
    target = embedder.embed([TEXT])[0]
    g = GuidedInverter(
        tiny_llama, embedder, max_tokens=4, prior_words=500, budget=None, polish=polish
    )
    res = g.invert(target, seed=TEXT + " banana", rounds=0)
    assert res.text == TEXT and res.cosine == pytest.approx(1.0, abs=1e-5)
    assert [h[1] for h in res.history] == [TEXT + " banana", TEXT]


def test_edit_polish_puts_back_a_missing_word(tiny_llama, embedder):
    """A word of the target missing from the hypothesis comes back by insertion or substitution
    when it is among the words closest to the target (the tiny BERT's WordPiece vocabulary
    holds every word of TEXT; wordfreq's words are left out so that 2,000 words reach it)."""
    target = embedder.embed([TEXT])[0]
    g = GuidedInverter(
        tiny_llama,
        embedder,
        max_tokens=4,
        prior_words=500,
        budget=None,
        edit_words=2000,
        common_words=0,
    )
    assert "paris" in g.prior.words  # from the embedder's vocabulary
    seed = TEXT.replace("paris ", "")
    res = g.invert(target, seed=seed, rounds=0)
    assert res.cosine > float(cosine_to(embedder.embed([seed]), target)[0])
    assert res.text == TEXT


def test_keyword_prior_helps(tiny_llama, embedder):
    target = embedder.embed([TEXT])[0]
    plain = GuidedInverter(
        tiny_llama,
        embedder,
        beam_width=2,
        top_k=3,
        keywords=0,
        max_tokens=6,
        rewrite_rounds=0,
        polish="none",
    )
    prior = GuidedInverter(
        tiny_llama,
        embedder,
        beam_width=2,
        top_k=3,
        keywords=8,
        max_tokens=6,
        rewrite_rounds=0,
        prior_words=2000,
        polish="none",  # the prior in decoding alone
    )
    assert prior.invert(target).cosine > plain.invert(target).cosine


def test_correction_is_monotone_and_seeded(tiny_llama, embedder):
    target = embedder.embed([TEXT])[0]
    g = GuidedInverter(
        tiny_llama,
        embedder,
        beam_width=2,
        top_k=3,
        keywords=4,
        max_tokens=6,
        prior_words=2000,
        polish="none",
    )
    res = GuidedCorrector(g, steps=2).correct(target, "a dog")
    assert res.history[0][1] == "a dog" and len(res.history) == 3
    cos = [c for _, _, c in res.history]
    assert cos == sorted(cos)


def test_guided_bad_input(tiny_llama, tiny_bert, embedder):
    g = GuidedInverter(tiny_llama, embedder, keywords=0)
    with pytest.raises(EmbeddingInputError, match="dimension 32"):
        g.invert(np.ones(384))
    with pytest.raises(EmbeddingInputError, match="NaN"):
        g.invert(np.full(32, np.nan))
    with pytest.raises(Exception, match="encoder"):
        GuidedInverter(tiny_bert, embedder)
    with pytest.raises(ValueError, match="search_dtype"):
        GuidedInverter(tiny_llama, embedder, search_dtype="fp8")
    with pytest.raises(ValueError, match="budget=-1"):
        GuidedInverter(tiny_llama, embedder, budget=-1)
    with pytest.raises(ValueError, match="polish_share"):
        GuidedInverter(tiny_llama, embedder, polish_share=1.0)


def test_leakage_report(tiny_llama):
    texts = ["the city of paris is in france", "a dog barked at Bob", "numbers like 12"]
    rep = leakage_report(
        tiny_llama,
        texts,
        layers=[1, -1],
        poolings=["mean", "last"],
        noise=[0.0, 10.0],
        ks=(1,),
        progress=False,
        guided={"max_tokens": 4, "prior_words": 500},
    )
    assert [(r["layer"], r["pooling"]) for r in rep.rows] == [
        (1, "mean"),
        (1, "last"),
        (3, "mean"),
        (3, "last"),
    ]
    assert all(0 <= r["token_f1"] <= 1 and -1 <= r["cosine"] <= 1 for r in rep.rows)
    assert [d["noise"] for d in rep.defence] == [0.0, 10.0]
    assert rep.defence[0]["recall@1"] == 1.0  # clean vectors find themselves
    assert "Gaussian-noise defence" in rep.to_markdown()
    assert default_entities("Yesterday Bob met Alice in Paris.") == ["Bob", "Alice", "Paris"]
    x = add_noise(np.ones((2, 4)), 0.0)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-6)


def test_cli_run_guided_with_budget_and_polish(tiny_llama, tiny_bert, capsys):
    from workbench.cli.main import main

    llm, enc = str(tiny_llama.source), f"{tiny_bert.source}:pooling=mean"
    base = ["invert", "run", TEXT, "--model", llm, "--embedder", enc, "--max-tokens", "4"]
    main([*base, "--budget", "2", "--polish", "delete", "--steps", "2"])
    out = capsys.readouterr()
    assert "cosine" in out.out and "step 0: cos" in out.err, out
    with pytest.raises(SystemExit) as info:
        main([*base, "--polish", "sometimes"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--polish" in err and "edit, delete or none" in err, err
    with pytest.raises(SystemExit) as info:
        main([*base, "--budget", "-3"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--budget -3 is negative" in err, err
