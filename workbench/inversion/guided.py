"""Zero-shot inversion by embedder-guided decoding (in the manner of ZSInvert): the LLM proposes
next tokens, the embedder scores every candidate continuation by cosine to the target, a beam
keeps the best; then rounds of "rewrite this sentence" refinement seeded with the best text.

Two things make it work on a CPU:
- candidates of a step are embedded in one batch, and the LLM decodes all beams at once with a
  KV cache (beams always have the same length, so no padding);
- a *keyword prior*: every whole-word token of the LLM's vocabulary is embedded once (cached on
  disk per embedder and tokenizer), and the words closest to the target join the LLM's top-k
  as candidates at every step, so content words the LLM would not propose can still be chosen.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import WorkbenchError
from ..models import hooks
from ..settings import cache_dir
from .embedders import Embedder, check_embeddings, cosine_to

#: The user message of the first round and of every rewrite round.
WRITE_PROMPT = "Write one sentence."
REWRITE_PROMPT = "Rewrite this sentence: {text}"


@dataclass
class InversionResult:
    """One inversion: the text, its cosine to the target and the best text after each round.

    Attributes:
        text: the reconstruction.
        cosine: cosine of its embedding to the target.
        history: ``[(round, text, cosine)]``, round 0 is the first decode (or the seed).
        seconds: wall time.
    """

    text: str
    cosine: float
    history: list[tuple[int, str, float]] = field(default_factory=list)
    seconds: float = 0.0


def _prompt_ids(tokenizer: Any, message: str) -> list[int]:
    """Token ids of ``message`` as a user turn (chat template when the tokenizer has one)."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": message}], add_generation_prompt=True, tokenize=True
        )
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)
    ids = tokenizer(message + "\n", add_special_tokens=True)["input_ids"]
    eos = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    return [i for i in ids if i != eos] if ids and ids[-1] == eos else list(ids)


class KeywordPrior:
    """Embeddings of the LLM vocabulary's whole-word tokens under an embedder.

    Attributes:
        token_ids: ``[w]`` LLM token ids of the words (tokens that start a word).
        words: ``[w]`` the words.
        vectors: ``[w, dim]`` their embeddings, unit norm.
    """

    def __init__(
        self, lm: Any, embedder: Embedder, *, max_words: int = 30000, cache: bool = True
    ) -> None:
        tok = lm.tokenizer
        ids, words = [], []
        vocab = tok.get_vocab()
        # byte-level BPE / SentencePiece mark word starts; WordPiece marks continuations (##)
        wordpiece = not any(p.startswith(("Ġ", "▁")) for p in vocab)
        for piece, tid in sorted(vocab.items(), key=lambda kv: kv[1]):
            if wordpiece:
                starts_word = not piece.startswith("##")
            else:
                starts_word = piece.startswith(("Ġ", "▁"))
            word = piece if wordpiece else piece[1:]
            if (
                starts_word
                and re.fullmatch(r"[A-Za-z][a-z]+|[A-Z]{2,}|\d+", word)
                and len(word) >= 2
            ):
                ids.append(tid)
                words.append(word)
            if len(ids) >= max_words:
                break
        self.token_ids = np.array(ids, dtype=np.int64)
        self.words = words
        key = hashlib.sha256(
            f"{embedder.fingerprint}:{lm.tokenizer_fingerprint()}:{chr(0).join(words)}".encode()
        ).hexdigest()[:24]
        path = cache_dir() / "inversion" / f"keywords-{key}.npy"
        if cache and path.exists():
            vec = np.load(path, allow_pickle=False)
        else:
            vec = embedder.embed(words) if words else np.zeros((0, embedder.dim), np.float32)
            vec = vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
            if cache:
                from ..artifacts import atomic_write

                atomic_write(path, lambda f: np.save(f, vec.astype(np.float32), allow_pickle=False))
        self.vectors = vec.astype(np.float32)

    def top(self, target: np.ndarray, k: int) -> np.ndarray:
        """LLM token ids of the ``k`` words closest to ``target`` ``[dim]``."""
        if k <= 0 or not len(self.token_ids):
            return np.zeros(0, dtype=np.int64)
        sims = self.vectors @ (target / max(float(np.linalg.norm(target)), 1e-12))
        k = min(k, len(sims))
        return self.token_ids[np.argpartition(-sims, k - 1)[:k]]


class GuidedInverter:
    """Invert embeddings with an LLM guided by the embedder (no training).

    Args:
        lm: a decoder ``LoadedModel`` that proposes tokens.
        embedder: the embedder of the targets (scores candidates).
        beam_width: beams kept per step.
        top_k: LLM proposals per beam and step.
        keywords: keyword-prior words added as candidates per step (0 turns the prior off).
        max_tokens: tokens per decode.
        lm_weight: weight of the mean token log-probability (fluency) in the beam score
            ``cosine + lm_weight * mean_logprob``.
        rewrite_rounds: "rewrite this sentence" rounds after the first decode.
        rewrite_top_k: LLM proposals per beam in rewrite rounds (they follow the seed closely).
        prior_words: vocabulary words embedded for the keyword prior (the first ones by token
            id, i.e. the most frequent for BPE vocabularies; embedded once, cached on disk).
        select: how a decode's answer is picked among its beams and finished texts: ``score``
            (the beam score, cosine + lm_weight * mean log-probability; what
            benchmarks/INVERSION.md measured) or ``cosine`` (ZSInvert's rule: the highest
            cosine, fluent or not).

    Examples:
        >>> inv = GuidedInverter(load_model("smollm2-135m"), ModelEmbedder("minilm-l6"))  # doctest: +SKIP
        >>> inv.invert(target).text  # doctest: +SKIP
    """

    def __init__(
        self,
        lm: Any,
        embedder: Embedder,
        *,
        beam_width: int = 3,
        top_k: int = 5,
        keywords: int = 10,
        max_tokens: int = 24,
        lm_weight: float = 0.03,
        rewrite_rounds: int = 1,
        rewrite_top_k: int | None = None,
        prior_words: int = 30000,
        select: str = "score",
    ) -> None:
        if lm.kind != "decoder":
            raise WorkbenchError(
                f"{lm.name} is an encoder: guided decoding needs a decoder LLM "
                "(e.g. smollm2-135m) to propose tokens"
            )
        for name, value in (
            ("beam_width", beam_width),
            ("top_k", top_k),
            ("max_tokens", max_tokens),
        ):
            if value < 1:
                raise ValueError(f"{name}={value}: must be at least 1")
        self.lm, self.embedder = lm, embedder
        self.beam_width, self.top_k, self.keywords = beam_width, top_k, keywords
        self.max_tokens, self.lm_weight = max_tokens, lm_weight
        self.rewrite_rounds = rewrite_rounds
        self.rewrite_top_k = rewrite_top_k if rewrite_top_k is not None else top_k
        if select not in ("score", "cosine"):
            raise ValueError(f"select={select!r}: use 'score' or 'cosine'")
        self.prior_words, self.select = prior_words, select
        self._prior: KeywordPrior | None = None

    @property
    def prior(self) -> KeywordPrior:
        """The keyword prior over the LLM's vocabulary, built on first use."""
        if self._prior is None:
            self._prior = KeywordPrior(self.lm, self.embedder, max_words=self.prior_words)
        return self._prior

    def invert(
        self, target: Any, *, seed: str | None = None, rounds: int | None = None
    ) -> InversionResult:
        """Reconstruct the text of one embedding ``target`` ``[dim]``.

        Args:
            target: the embedding.
            seed: a starting hypothesis (skips the first free decode; its rewrite rounds follow).
            rounds: rewrite rounds (default ``rewrite_rounds``).

        Raises:
            EmbeddingInputError: wrong dimension (the expected one is named), NaN or zero vector.
        """
        t0 = time.time()
        tgt = check_embeddings(target, self.embedder)
        if len(tgt) != 1:
            raise ValueError(f"invert takes one embedding, got {len(tgt)}: use invert_many")
        tgt = tgt[0]
        rounds = self.rewrite_rounds if rounds is None else rounds
        history: list[tuple[int, str, float]] = []
        if seed is not None and seed.strip():
            best = (seed, float(cosine_to(self.embedder.embed([seed]), tgt)[0]))
        else:
            best = self.decode(tgt, WRITE_PROMPT, self.top_k)
        history.append((0, best[0], best[1]))
        for r in range(1, rounds + 1):
            cand = self.decode(tgt, REWRITE_PROMPT.format(text=best[0]), self.rewrite_top_k)
            if cand[1] > best[1]:
                best = cand
            history.append((r, best[0], best[1]))
        return InversionResult(best[0], best[1], history, time.time() - t0)

    def invert_many(self, targets: Any, **kwargs: Any) -> list[InversionResult]:
        """:meth:`invert` for each row of ``targets`` ``[n, dim]``."""
        x = check_embeddings(targets, self.embedder)
        return [self.invert(v, **kwargs) for v in x]

    @torch.inference_mode()
    def decode(self, target: np.ndarray, message: str, top_k: int) -> tuple[str, float]:
        """One guided beam search after the prompt ``message``: ``(text, cosine)`` of the best
        text by ``cosine + lm_weight * mean_logprob`` among every beam and finished text."""
        lm, tok = self.lm, self.lm.tokenizer
        device = lm.device
        eos = {i for i in (tok.eos_token_id, tok.sep_token_id) if i is not None}
        prompt = torch.tensor([_prompt_ids(tok, message)], device=device)
        out = lm.model(**hooks.forward_inputs(lm, prompt, module=lm.model, use_cache=True))
        cache = out.past_key_values
        logp = torch.log_softmax(out.logits[:, -1].float(), -1)  # [beams, vocab]
        beams: list[list[int]] = [[]]
        sums = np.zeros(1)
        keywords = self.prior.top(target, self.keywords) if self.keywords else np.zeros(0, int)
        best: tuple[float, str, float] = (-np.inf, "", -1.0)  # score, text, cosine
        seen: dict[str, float] = {}
        for _ in range(self.max_tokens):
            top = torch.topk(logp, min(top_k, logp.shape[-1]), dim=-1).indices.cpu().numpy()
            cands: list[tuple[int, int, str, float]] = []  # beam, token, text, logprob sum
            lp = logp.cpu().numpy()
            for b, seq in enumerate(beams):
                options = dict.fromkeys(top[b].tolist() + keywords.tolist())
                for t in options:
                    new = seq + [int(t)]
                    text = tok.decode(new, skip_special_tokens=True).split("\n")[0].strip()
                    cands.append((b, int(t), text, sums[b] + lp[b, t]))
            texts = list(dict.fromkeys(c[2] for c in cands if c[2] and c[2] not in seen))
            if texts:
                for text, cos in zip(
                    texts, cosine_to(self.embedder.embed(texts), target), strict=True
                ):
                    seen[text] = float(cos)
            scored = []
            for b, t, text, s in cands:
                if not text:
                    continue
                n = len(beams[b]) + 1
                score = seen[text] + self.lm_weight * s / n
                if t in eos or "\n" in tok.decode([t]):  # a sentence ends at eos or newline
                    key = score if self.select == "score" else seen[text]
                    if key > best[0]:
                        best = (key, text, seen[text])
                    continue
                scored.append((score, b, t, text, s))
            scored.sort(key=lambda c: -c[0])
            chosen, texts_kept = [], set()
            for c in scored:
                if c[3] in texts_kept:
                    continue
                texts_kept.add(c[3])
                chosen.append(c)
                if len(chosen) == self.beam_width:
                    break
            if not chosen:
                break
            if self.select == "score":
                top_key, top_text = chosen[0][0], chosen[0][3]
            else:
                top_text = max((c[3] for c in chosen), key=lambda x: seen[x])
                top_key = seen[top_text]
            if top_key > best[0]:
                best = (top_key, top_text, seen[top_text])
            idx = torch.tensor([c[1] for c in chosen], device=device)
            cache.reorder_cache(idx)
            beams = [beams[c[1]] + [c[2]] for c in chosen]
            sums = np.array([c[4] for c in chosen])
            step = torch.tensor([[c[2]] for c in chosen], device=device)
            length = prompt.shape[1] + len(beams[0])
            att = torch.ones(len(chosen), length, dtype=torch.long, device=device)
            out = lm.model(
                input_ids=step, attention_mask=att, past_key_values=cache, use_cache=True
            )
            cache = out.past_key_values
            logp = torch.log_softmax(out.logits[:, -1].float(), -1)
        return best[1], best[2]


def invert_texts(inverter: GuidedInverter, texts: Sequence[str], **kwargs: Any) -> list[str]:
    """Embed ``texts`` and invert them: a convenience for demos and tests."""
    return [r.text for r in inverter.invert_many(inverter.embedder.embed(texts), **kwargs)]
