"""Inversion metrics against hand-computed values, and the embedders' bad-input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.errors import EmptyDatasetError, LayerOutOfRangeError
from workbench.inversion.embedders import EmbeddingInputError, ModelEmbedder, check_embeddings
from workbench.inversion.metrics import (
    bag_of_words,
    bleu,
    bleu1,
    entity_recall,
    evaluate,
    exact_match,
    perplexity,
    rouge_l,
    sentence_bleu,
    token_f1,
)

REF = "the cat sat on the mat"


def test_token_f1_by_hand():
    # ref words: the cat sat on the mat (6); hyp: the cat on a mat (5); common the, cat, on, mat
    p, r = 4 / 5, 4 / 6
    assert token_f1(REF, "the cat on a mat") == pytest.approx(2 * p * r / (p + r))
    assert token_f1(REF, "The CAT, sat on the mat!") == 1.0  # case and punctuation ignored
    assert token_f1(REF, "dog") == 0.0
    assert token_f1("", "") == 1.0


def test_exact_match():
    assert exact_match(REF, "  the cat  sat on the mat ")
    assert not exact_match(REF, "The cat sat on the mat")


def test_bleu_by_hand():
    # hyp "the cat sat on a mat": 1-4-gram precisions 5/6, 3/5, 2/4, 1/3; same length, BP = 1
    expected = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert bleu([REF], ["the cat sat on a mat"]) == pytest.approx(expected, abs=1e-6)
    assert bleu([REF], [REF]) == pytest.approx(100.0)
    # brevity penalty: hyp "the cat sat on the" (5 of 6 words): exp(1 - 6/5)
    p = (5 / 5 * 4 / 4 * 3 / 3 * 2 / 2) ** 0.25
    assert bleu([REF], ["the cat sat on the"]) == pytest.approx(100 * p * math.exp(1 - 6 / 5))
    assert sentence_bleu(REF, REF) == pytest.approx(100.0)


def test_bleu1_and_rouge_l_by_hand():
    # "the cat sat": unigram precision 3/3, brevity penalty exp(1 - 6/3)
    assert bleu1([REF], ["the cat sat"]) == pytest.approx(100 * math.exp(1 - 6 / 3))
    # LCS of "the mat sat" with the reference is "the sat" or "the mat" (2 words):
    # precision 2/3, recall 2/6
    p, r = 2 / 3, 2 / 6
    assert rouge_l([REF], ["the mat sat"]) == pytest.approx(100 * 2 * p * r / (p + r))
    assert rouge_l([REF, REF], [REF, "dog"]) == pytest.approx(50.0)


def test_bag_of_words_and_entities():
    assert bag_of_words("the Cat sat on a mat") == "a Cat mat on sat the"
    assert entity_recall(["New York", "Bush"], "bush went to new york") == 1.0
    assert entity_recall(["New York", "Bush"], "Bush went to York") == 0.5
    assert math.isnan(entity_recall([], "anything"))


def test_perplexity_matches_manual(tiny_llama):
    text = "the cat sat on the mat"
    tok = tiny_llama.tokenizer
    bos = [] if tok.bos_token_id is None else [tok.bos_token_id]  # the tiny tokenizer has none
    ids = bos + tok(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = tiny_llama.model(input_ids=torch.tensor([ids])).logits[0, :-1]
    nll = -torch.log_softmax(logits, -1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    got = perplexity(tiny_llama, [text, "a dog"])
    assert got[0] == pytest.approx(math.exp(nll.mean().item()), rel=1e-4)
    assert got[1] > 1.0


def test_evaluate_with_embedder(tiny_bert):
    emb = ModelEmbedder(tiny_bert, pooling="mean")
    res = evaluate([REF, "a dog barked"], [REF, "a dog barked"], emb)
    assert res["exact_match"] == 1.0 and res["token_f1"] == 1.0
    assert res["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert res["cosine_bow_anchor"] < 1.0  # the sorted words are another input


def test_embedder_matches_extract(tiny_bert, tmp_path):
    import workbench as wb

    texts = ["the cat sat on the mat", "a dog", "a much longer sentence about nothing at all"]
    emb = ModelEmbedder(tiny_bert, layer=2, pooling="mean", batch_size=2)
    store = wb.extract(
        tiny_bert, texts, layers=[2], pooling="mean", out=tmp_path / "s", progress=False
    )
    np.testing.assert_allclose(emb.embed(texts), store.layer(2, "mean"), atol=1e-5)
    assert emb.dim == 32 and len(emb.fingerprint) == 64
    assert ModelEmbedder(tiny_bert, layer=1, pooling="mean").fingerprint != emb.fingerprint


def test_embedder_bad_input(tiny_bert):
    emb = ModelEmbedder(tiny_bert, pooling="mean")
    with pytest.raises(EmbeddingInputError, match="expects vectors of dimension 32"):
        check_embeddings(np.ones(384), emb)
    with pytest.raises(EmbeddingInputError, match="NaN"):
        check_embeddings(np.full((2, 32), np.nan), emb)
    with pytest.raises(EmbeddingInputError, match="all zeros"):
        check_embeddings(np.zeros(32), emb)
    with pytest.raises(EmptyDatasetError, match=r"position\(s\) \[1\]"):
        emb.embed(["fine", "  "])
    with pytest.raises(LayerOutOfRangeError):
        ModelEmbedder(tiny_bert, layer=9)
    with pytest.raises(EmbeddingInputError, match=r"outside text\(s\) at row\(s\) \[0\]"):
        ModelEmbedder(tiny_bert, pooling="pos:40").embed(["short", "a " * 50])
    assert check_embeddings(np.ones(32), emb).shape == (1, 32)
