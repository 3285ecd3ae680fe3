"""Reconstruction metrics: BLEU and BLEU-1 (sacrebleu), ROUGE-L (rouge-score), token F1, exact
match, cosine of the re-embedded reconstruction with the bag-of-words anchor beside it, and
perplexity under an LLM.

Cosine alone misleads: a sentence encoder such as MiniLM gives the reference with its words
sorted alphabetically a cosine of about 0.85 to the reference, so every report shows this
*bag-of-words anchor* next to the method's cosine.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    r"""Lower-cased word tokens (``\w+``; punctuation dropped): the unit of token F1."""
    return _WORD.findall(text.lower())


def token_f1(reference: str, hypothesis: str) -> float:
    """SQuAD-style F1 of the word multisets (1.0 when both are empty)."""
    ref, hyp = words(reference), words(hypothesis)
    if not ref and not hyp:
        return 1.0
    common = sum((Counter(ref) & Counter(hyp)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(hyp), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(reference: str, hypothesis: str) -> bool:
    """Equal after collapsing whitespace and stripping (case and punctuation count)."""
    return " ".join(reference.split()) == " ".join(hypothesis.split())


def bleu(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation, 4-grams, exponential smoothing off)."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def bleu1(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus BLEU-1: unigram precision with the brevity penalty (sacrebleu, 13a tokenisation),
    the BLEU-1 that Zero2Text and ALGEN report."""
    import sacrebleu

    scorer = sacrebleu.BLEU(max_ngram_order=1)
    return float(scorer.corpus_score(list(hypotheses), [list(references)]).score)


def rouge_l(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure x 100 (Google's ``rouge-score``, no stemming)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    scores = [
        scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(references, hypotheses, strict=True)
    ]
    return 100.0 * float(np.mean(scores)) if scores else float("nan")


def sentence_bleu(reference: str, hypothesis: str) -> float:
    """Sentence BLEU (sacrebleu, exponential smoothing)."""
    import sacrebleu

    return float(sacrebleu.sentence_bleu(hypothesis, [reference]).score)


def bag_of_words(text: str) -> str:
    """The text's whitespace-separated words sorted alphabetically (the anchor's input)."""
    return " ".join(sorted(text.split(), key=str.lower))


def entity_recall(entities: Sequence[str], hypothesis: str) -> float:
    """Fraction of ``entities`` (strings) whose words all occur in the hypothesis (NaN if none)."""
    if not entities:
        return float("nan")
    hyp = set(words(hypothesis))
    return float(np.mean([all(w in hyp for w in words(e)) for e in entities]))


@torch.inference_mode()
def perplexity(lm: Any, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
    """Per-text perplexity under a decoder ``LoadedModel`` (BOS prepended when the tokenizer has
    one; NaN for a text with no token to predict). ``[len(texts)]``."""
    tok = lm.tokenizer
    out = np.full(len(texts), np.nan)
    bos = tok.bos_token_id
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        ids = [tok(t, add_special_tokens=False)["input_ids"] for t in chunk]
        ids = [([bos] if bos is not None else []) + x for x in ids]
        width = max(1, max(len(x) for x in ids))
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        inp = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros_like(inp)
        for i, x in enumerate(ids):
            inp[i, : len(x)] = torch.tensor(x, dtype=torch.long)
            mask[i, : len(x)] = 1
        logits = lm.model(input_ids=inp.to(lm.device), attention_mask=mask.to(lm.device)).logits
        logp = torch.log_softmax(logits[:, :-1].float(), -1)
        nll = -logp.gather(-1, inp[:, 1:, None].to(lm.device))[..., 0].cpu()
        m = mask[:, 1:].float()
        for i in range(len(ids)):
            n = m[i].sum().item()
            if n > 0:
                out[start + i] = math.exp(float((nll[i] * m[i]).sum() / n))
    return out


def evaluate(
    references: Sequence[str],
    hypotheses: Sequence[str],
    embedder: Any | None = None,
    *,
    targets: np.ndarray | None = None,
    lm: Any | None = None,
    entities: Sequence[Sequence[str]] | None = None,
) -> dict[str, float]:
    """Every metric over a set of reconstructions (means over sentences; BLEU is corpus BLEU).

    Args:
        references: the texts.
        hypotheses: their reconstructions, one per reference.
        embedder: re-embeds hypotheses for ``cosine`` and the sorted references for
            ``cosine_bow_anchor``.
        targets: ``[n, dim]`` the vectors that were inverted, for ``cosine``; default the
            references' embeddings (pass the inverted vectors when they differ, e.g. noisy ones).
        lm: a decoder for ``perplexity`` (median over sentences, robust to one odd output).
        entities: per reference, named entities for ``entity_recall``.

    Returns:
        ``bleu``, ``bleu1``, ``rouge_l``, ``token_f1``, ``exact_match`` and, when given what they need, ``cosine``,
        ``cosine_bow_anchor``, ``perplexity`` and ``entity_recall``.
    """
    from .embedders import cosine_to

    refs, hyps = list(references), list(hypotheses)
    res: dict[str, float] = {
        "bleu": bleu(refs, hyps),
        "bleu1": bleu1(refs, hyps),
        "rouge_l": rouge_l(refs, hyps),
        "token_f1": float(np.mean([token_f1(r, h) for r, h in zip(refs, hyps, strict=True)])),
        "exact_match": float(np.mean([exact_match(r, h) for r, h in zip(refs, hyps, strict=True)])),
    }
    if embedder is not None:
        tgt = embedder.embed(refs) if targets is None else np.asarray(targets)
        safe = [h if h.strip() else "." for h in hyps]
        he, be = embedder.embed(safe), embedder.embed([bag_of_words(r) for r in refs])
        res["cosine"] = float(
            np.mean([cosine_to(he[i : i + 1], tgt[i])[0] for i in range(len(refs))])
        )
        res["cosine_bow_anchor"] = float(
            np.mean([cosine_to(be[i : i + 1], tgt[i])[0] for i in range(len(refs))])
        )
    if lm is not None:
        res["perplexity"] = float(
            np.nanmedian(perplexity(lm, [h if h.strip() else "." for h in hyps]))
        )
    if entities is not None:
        vals = [entity_recall(e, h) for e, h in zip(entities, hyps, strict=True)]
        res["entity_recall"] = float(np.nanmean(vals)) if any(e for e in entities) else float("nan")
    return res
