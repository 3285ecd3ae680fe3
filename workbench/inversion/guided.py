"""Zero-shot inversion by embedder-guided decoding (in the manner of ZSInvert, Zhang, Morris &
Shmatikov 2025): the LLM proposes next tokens, the embedder scores every candidate continuation
by cosine to the target, a beam keeps the best; then rounds of "write a sentence similar to this"
refinement seeded with the best text, until a CPU budget is spent; last, a word-deletion polish.

What makes it work on a CPU:
- candidates of a step are embedded in one batch, and the LLM decodes all beams at once with a
  KV cache (beams always have the same length, so no padding);
- the search scores candidates with a bfloat16 copy of the embedder where the CPU (or GPU) has
  bfloat16 arithmetic (2x faster here, rank correlation 0.9999 with float32); every answer and
  every cosine reported is re-scored by the embedder itself;
- a *keyword prior*: every whole-word token of the LLM's vocabulary is embedded once (cached on
  disk per embedder and tokenizer), and the words closest to the target join the LLM's top-k
  as candidates at every step, so content words the LLM would not propose can still be chosen;
- every result carries its *trace*, the best text after each round with the CPU seconds spent,
  so one run gives the whole quality-against-budget curve.
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
REWRITE_PROMPT = "Write a sentence similar to this: {text}"


@dataclass
class InversionResult:
    """One inversion: the text, its cosine to the target and the best text after each round.

    Attributes:
        text: the reconstruction.
        cosine: cosine of its embedding to the target.
        history: ``[(round, text, cosine)]``, round 0 is the first decode (or the seed).
        seconds: wall time.
        trace: ``[(cpu_seconds, text, cosine)]``: the best text so far after each round and
            the CPU seconds (this process) spent by then; read it with :meth:`at_budget`.
    """

    text: str
    cosine: float
    history: list[tuple[int, str, float]] = field(default_factory=list)
    seconds: float = 0.0
    trace: list[tuple[float, str, float]] = field(default_factory=list)

    def at_budget(self, cpu_seconds: float) -> tuple[str, float]:
        """``(text, cosine)`` the run had reached within ``cpu_seconds`` of CPU time (the first
        entry of the trace when even that took longer)."""
        done = [t for t in self.trace if t[0] <= cpu_seconds] or self.trace[:1]
        if not done:
            return self.text, self.cosine
        return done[-1][1], done[-1][2]


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
    """Embeddings of the LLM vocabulary's whole-word tokens under an embedder, and of the
    whole words of ``extra_tokenizer``'s WordPiece vocabulary (e.g. the embedder's own) and
    ``extra_words`` (e.g. common English words that are several tokens).

    Attributes:
        token_ids: ``[w]`` LLM token ids of the words (tokens that start a word; -1 for a word
            from ``extra_tokenizer`` that is no single LLM token).
        words: ``[w]`` the words.
        vectors: ``[w, dim]`` their embeddings, unit norm.
    """

    def __init__(
        self,
        lm: Any,
        embedder: Embedder,
        *,
        max_words: int = 30000,
        cache: bool = True,
        extra_tokenizer: Any = None,
        extra_words: Sequence[str] = (),
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
        more = [
            *(_whole_words(extra_tokenizer) if extra_tokenizer is not None else []),
            *extra_words,
        ]
        if more:  # more whole words (no LLM token id: -1)
            known = set(words)
            for word in more:
                if word not in known:
                    known.add(word)
                    ids.append(-1)
                    words.append(word)
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

    def _closest(self, target: np.ndarray, k: int, mask: np.ndarray | None = None) -> np.ndarray:
        """Indices of the ``k`` words closest to ``target`` ``[dim]`` (among ``mask``), best first."""
        sims = self.vectors @ (target / max(float(np.linalg.norm(target)), 1e-12))
        if mask is not None:
            sims = np.where(mask, sims, -np.inf)
        k = min(k, int(np.isfinite(sims).sum()))
        if k <= 0:
            return np.zeros(0, dtype=np.int64)
        idx = np.argpartition(-sims, k - 1)[:k]
        return idx[np.argsort(-sims[idx])]

    def top(self, target: np.ndarray, k: int) -> np.ndarray:
        """LLM token ids of the ``k`` single-token words closest to ``target`` ``[dim]``."""
        return self.token_ids[self._closest(target, k, self.token_ids >= 0)]

    def top_words(self, target: np.ndarray, k: int) -> list[str]:
        """The ``k`` words closest to ``target`` ``[dim]``, best first."""
        return [self.words[i] for i in self._closest(target, k)]


def common_words(n: int) -> list[str]:
    """The ``n`` most frequent lower-case English words by ``wordfreq`` (none when it is not
    installed: ``pip install workbench[inversion]``)."""
    if n <= 0:
        return []
    try:
        import wordfreq
    except ImportError:
        return []
    return [w for w in wordfreq.top_n_list("en", n) if re.fullmatch(r"[a-z]{2,}", w)]


def _whole_words(tokenizer: Any) -> list[str]:
    """Whole alphabetic words of a WordPiece vocabulary (BERT-style: continuations start with
    ``##``), in id order; none for byte-level BPE or SentencePiece vocabularies, whose words the
    LLM's own list already covers."""
    vocab = tokenizer.get_vocab()
    if any(p.startswith(("Ġ", "▁")) for p in vocab) or not any(p.startswith("##") for p in vocab):
        return []
    return [
        p
        for p, _ in sorted(vocab.items(), key=lambda kv: kv[1])
        if re.fullmatch(r"[A-Za-z][a-z]+|[A-Z]{2,}", p) and len(p) >= 2
    ]


class GuidedInverter:
    """Invert embeddings with an LLM guided by the embedder (no training).

    Args:
        lm: a decoder ``LoadedModel`` that proposes tokens (any decoder ``load_model`` loads).
        embedder: the embedder of the targets (scores candidates): any :class:`Embedder`.
        beam_width: beams kept per step.
        top_k: LLM proposals per beam and step.
        keywords: keyword-prior words added as candidates per step (0 turns the prior off).
        max_tokens: tokens per decode.
        lm_weight: weight of the mean token log-probability (fluency) in the beam score
            ``cosine + lm_weight * mean_logprob``.
        rewrite_rounds: "write a sentence similar to this" rounds after the first decode (the
            most; ``budget`` may stop earlier).
        rewrite_top_k: LLM proposals per beam in rewrite rounds (they follow the seed closely).
        prior_words: vocabulary words embedded for the keyword prior (the first ones by token
            id, i.e. the most frequent for BPE vocabularies; embedded once, cached on disk).
        select: how a decode's answer is picked among its beams and finished texts: ``score``
            (the beam score, cosine + lm_weight * mean log-probability) or ``cosine``
            (ZSInvert's rule: the highest cosine).
        budget: CPU seconds (this process) per inversion: the search stops when they are spent,
            mid-round if need be, keeping the best text found (None: no limit).
        patience: a decode stops after this many steps without a better text.
        polish: the last step, while it raises the cosine: ``delete`` (drop one word at a
            time), ``edit`` (also substitute and insert the ``edit_words`` words closest to the
            target, from :attr:`prior`) or ``none``.
        polish_share: the share of ``budget`` kept for the polish.
        edit_words: words tried at every position by the ``edit`` polish.
        common_words: frequent English words (``wordfreq``) added to the polish's vocabulary.
        search_dtype: ``auto`` (bfloat16 where the hardware has it, for a :class:`ModelEmbedder`
            and the LLM), ``float32`` (off) or ``bfloat16``.

    Examples:
        >>> inv = GuidedInverter(load_model("smollm2-135m"), ModelEmbedder("minilm-l6"))  # doctest: +SKIP
        >>> inv.invert(target).text  # doctest: +SKIP
    """

    def __init__(
        self,
        lm: Any,
        embedder: Embedder,
        *,
        beam_width: int = 4,
        top_k: int = 16,
        keywords: int = 8,
        max_tokens: int = 32,
        lm_weight: float = 0.03,
        rewrite_rounds: int = 8,
        rewrite_top_k: int | None = None,
        prior_words: int = 30000,
        select: str = "cosine",
        budget: float | None = 30.0,
        patience: int = 8,
        polish: str = "edit",
        polish_share: float = 0.25,
        edit_words: int = 8,
        common_words: int = 50000,
        search_dtype: str = "auto",
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
            ("patience", patience),
        ):
            if value < 1:
                raise ValueError(f"{name}={value}: must be at least 1")
        if select not in ("score", "cosine"):
            raise ValueError(f"select={select!r}: use 'score' or 'cosine'")
        if search_dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"search_dtype={search_dtype!r}: use auto, float32 or bfloat16")
        self.lm, self.embedder = lm, embedder
        self.beam_width, self.top_k, self.keywords = beam_width, top_k, keywords
        self.max_tokens, self.lm_weight = max_tokens, lm_weight
        self.rewrite_rounds = rewrite_rounds
        self.rewrite_top_k = rewrite_top_k if rewrite_top_k is not None else top_k
        self.prior_words, self.select = prior_words, select
        if polish not in ("none", "delete", "edit"):
            raise ValueError(f"polish={polish!r}: use none, delete or edit")
        if budget is not None and not budget > 0:
            raise ValueError(f"budget={budget!r}: give CPU seconds above 0, or None for no limit")
        if not 0 <= polish_share < 1:
            raise ValueError(f"polish_share={polish_share!r}: must be in [0, 1)")
        self.budget, self.patience, self.polish = budget, patience, polish
        self.polish_share, self.edit_words = polish_share, edit_words
        self.common_words = common_words
        self.search_dtype = search_dtype
        self._prior: KeywordPrior | None = None
        self._fast: tuple[Any, Embedder] | None = None
        self._polish_cost = 0.0

    @property
    def prior(self) -> KeywordPrior:
        """The keyword prior, built on first use: the LLM's whole-word tokens (proposed during
        decoding), and for the ``edit`` polish also the whole words of the embedder's tokenizer
        where it has its own WordPiece vocabulary and the ``common_words`` most frequent English
        words (``wordfreq``, when installed), which reach words of several LLM tokens."""
        if self._prior is None:
            extra = getattr(getattr(self.embedder, "lm", None), "tokenizer", None)
            self._prior = KeywordPrior(
                self.lm,
                self.embedder,
                max_words=self.prior_words,
                extra_tokenizer=extra,
                extra_words=common_words(self.common_words),
            )
        return self._prior

    def _search_models(self) -> tuple[Any, Embedder]:
        """The (LLM, scorer) the search runs with: bfloat16 copies where asked and possible."""
        if self._fast is None:
            lm, scorer = self.lm, self.embedder
            if _use_bf16(self.search_dtype, lm.device):
                if lm.dtype == torch.float32:
                    lm = lm.with_dtype(torch.bfloat16)
                with_dtype = getattr(scorer, "with_dtype", None)
                if with_dtype is not None:
                    scorer = with_dtype(torch.bfloat16)
            self._fast = (lm, scorer)
        return self._fast

    def _exact(self, texts: Sequence[str], target: np.ndarray) -> dict[str, float]:
        """``{text: cosine}`` by the embedder itself (the search's winners re-scored)."""
        texts = list(dict.fromkeys(t for t in texts if t.strip())) or ["."]
        return dict(
            zip(texts, map(float, cosine_to(self.embedder.embed(texts), target)), strict=True)
        )

    def invert(
        self,
        target: Any,
        *,
        seed: str | None = None,
        rounds: int | None = None,
        budget: float | None = None,
    ) -> InversionResult:
        """Reconstruct the text of one embedding ``target`` ``[dim]``.

        Args:
            target: the embedding.
            seed: a starting hypothesis (skips the first free decode; its rewrite rounds follow).
            rounds: rewrite rounds at most (default ``rewrite_rounds``).
            budget: CPU seconds the search may spend (default ``budget``).

        Raises:
            EmbeddingInputError: wrong dimension (the expected one is named), NaN or zero vector.
        """
        t0, c0 = time.time(), time.process_time()
        tgt = check_embeddings(target, self.embedder)
        if len(tgt) != 1:
            raise ValueError(f"invert takes one embedding, got {len(tgt)}: use invert_many")
        tgt = tgt[0]
        rounds = self.rewrite_rounds if rounds is None else rounds
        budget = self.budget if budget is None else budget
        history: list[tuple[int, str, float]] = []
        trace: list[tuple[float, str, float]] = []

        def spent() -> float:
            return time.process_time() - c0

        def record(r: int, best: tuple[str, float]) -> None:
            history.append((r, best[0], best[1]))
            trace.append((spent(), best[0], best[1]))

        end = None if budget is None else c0 + budget
        share = self.polish_share if self.polish != "none" else 0.0

        def round_deadline() -> float | None:
            """Rounds leave the polish its share of what remains of the budget."""
            if end is None:
                return None
            now = time.process_time()
            return now + (1 - share) * max(0.0, end - now)

        # every text re-scored so far; each round rewrites the best one not rewritten yet, so a
        # round that finds nothing better does not repeat itself
        if seed is not None and seed.strip():
            pool = self._exact([seed], tgt)
        else:
            first = self.decode(tgt, WRITE_PROMPT, self.top_k, deadline=round_deadline())
            pool = self._exact(first, tgt)
        best = max(pool.items(), key=lambda kv: kv[1])
        record(0, best)
        rewritten: set[str] = set()
        r = 0
        while True:  # blocks of rounds, each followed by a polish, while the budget lasts
            deadline = round_deadline()
            while r < rounds:
                fresh = [kv for kv in pool.items() if kv[0] not in rewritten]
                if not fresh or (deadline is not None and time.process_time() >= deadline):
                    break
                r += 1
                source = max(fresh, key=lambda kv: kv[1])[0]
                rewritten.add(source)
                prompt = REWRITE_PROMPT.format(text=source)
                pool.update(
                    self._exact(
                        self.decode(tgt, prompt, self.rewrite_top_k, deadline=deadline), tgt
                    )
                )
                best = max(pool.items(), key=lambda kv: kv[1])
                record(r, best)
            if self.polish != "none":
                polished = self._polish(best, tgt, end)
                if polished[1] > best[1]:
                    best = polished
                    pool[best[0]] = best[1]
                    record(r, best)
            more = r < rounds and any(t not in rewritten for t in pool)
            if not more or end is None or end - time.process_time() < 0.05 * (budget or 0.0):
                break
        return InversionResult(best[0], best[1], history, time.time() - t0, trace)

    def _polish(
        self, best: tuple[str, float], target: np.ndarray, deadline: float | None = None
    ) -> tuple[str, float]:
        """Word edits, the best one at a time, while one raises the cosine (and CPU time is left
        before ``deadline``, a ``time.process_time()`` value): deletions, and for ``edit`` the
        substitution or insertion of the words closest to the target. The search's scorer ranks
        the edits; the embedder itself re-scores the best few and decides."""
        _, scorer = self._search_models()
        words = best[0].split()
        vocab: list[str] = []
        if self.polish == "edit" and self.edit_words > 0:
            vocab = self.prior.top_words(target, self.edit_words)
        # CPU seconds per candidate in the last pass (of any call): a pass that would overrun
        # the budget is not started
        per_text = self._polish_cost
        while len(words) > 1:
            cands = [" ".join(words[:i] + words[i + 1 :]) for i in range(len(words))]
            for w in vocab:
                for i in range(len(words) + 1):
                    cands.append(" ".join([*words[:i], w, *words[i:]]))
                    if i < len(words) and words[i] != w:
                        cands.append(" ".join([*words[:i], w, *words[i + 1 :]]))
            cands = list(dict.fromkeys(cands))
            now = time.process_time()
            if deadline is not None and now + per_text * len(cands) >= deadline:
                break
            approx = cosine_to(scorer.embed(cands), target)
            top = [cands[j] for j in np.argsort(-approx)[:4]]
            text, cos = max(self._exact(top, target).items(), key=lambda kv: kv[1])
            per_text = self._polish_cost = (time.process_time() - now) / len(cands)
            if cos <= best[1]:
                break
            best, words = (text, cos), text.split()
        return best

    def invert_many(self, targets: Any, **kwargs: Any) -> list[InversionResult]:
        """:meth:`invert` for each row of ``targets`` ``[n, dim]``."""
        x = check_embeddings(targets, self.embedder)
        return [self.invert(v, **kwargs) for v in x]

    @torch.inference_mode()
    def decode(
        self,
        target: np.ndarray,
        message: str,
        top_k: int,
        keep: int = 4,
        deadline: float | None = None,
    ) -> list[str]:
        """One guided beam search after the prompt ``message``: the ``keep`` best texts (by the
        search's scorer, with ``select``) among every beam and finished text, best first. It
        stops early at ``deadline`` (a ``time.process_time()`` value)."""
        lm, scorer = self._search_models()
        tok = lm.tokenizer
        device = lm.device
        eos = {i for i in (tok.eos_token_id, tok.sep_token_id) if i is not None}
        prompt = torch.tensor([_prompt_ids(tok, message)], device=device)
        out = lm.model(**hooks.forward_inputs(lm, prompt, module=lm.model, use_cache=True))
        # transformers 5 renamed past_key_values to cache (the old name warns)
        cache_arg = "cache" if hooks.accepts(lm.model, "cache") else "past_key_values"
        cache = out[cache_arg]
        logp = torch.log_softmax(out.logits[:, -1].float(), -1)  # [beams, vocab]
        beams: list[list[int]] = [[]]
        sums = np.zeros(1)
        keywords = self.prior.top(target, self.keywords) if self.keywords else np.zeros(0, int)
        found: dict[str, float] = {}  # text -> key (score or cosine) of texts offered as answers
        seen: dict[str, float] = {}  # text -> the scorer's cosine
        best_key, stale = -np.inf, 0
        step_cost = 0.0  # CPU seconds of the last step: a step that would overrun is not started
        for _ in range(self.max_tokens):
            now = time.process_time()
            if deadline is not None and now + step_cost >= deadline and found:
                break
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
                for text, cos in zip(texts, cosine_to(scorer.embed(texts), target), strict=True):
                    seen[text] = float(cos)
            scored = []
            for b, t, text, s in cands:
                if not text:
                    continue
                n = len(beams[b]) + 1
                score = seen[text] + self.lm_weight * s / n
                key = score if self.select == "score" else seen[text]
                if t in eos or "\n" in tok.decode([t]):  # a sentence ends at eos or newline
                    found[text] = max(found.get(text, -np.inf), key)
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
            for c in chosen:
                key = c[0] if self.select == "score" else seen[c[3]]
                found[c[3]] = max(found.get(c[3], -np.inf), key)
            step_best = max(found.values())
            stale = 0 if step_best > best_key else stale + 1
            best_key = max(best_key, step_best)
            if stale >= self.patience:
                break
            idx = torch.tensor([c[1] for c in chosen], device=device)
            cache.reorder_cache(idx)
            beams = [beams[c[1]] + [c[2]] for c in chosen]
            sums = np.array([c[4] for c in chosen])
            step = torch.tensor([[c[2]] for c in chosen], device=device)
            length = prompt.shape[1] + len(beams[0])
            att = torch.ones(len(chosen), length, dtype=torch.long, device=device)
            out = lm.model(input_ids=step, attention_mask=att, use_cache=True, **{cache_arg: cache})
            cache = out[cache_arg]
            logp = torch.log_softmax(out.logits[:, -1].float(), -1)
            step_cost = time.process_time() - now
        ranked = sorted(found, key=lambda x: -found[x])
        return ranked[:keep] or [tok.decode(beams[0], skip_special_tokens=True).strip() or "."]


def _use_bf16(search_dtype: str, device: torch.device) -> bool:
    """Whether the search runs in bfloat16: asked for, or ``auto`` on hardware with bfloat16
    arithmetic (CUDA, or a CPU with AVX512-BF16 / AMX as oneDNN reports)."""
    if search_dtype != "auto":
        return search_dtype == "bfloat16"
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def invert_texts(inverter: GuidedInverter, texts: Sequence[str], **kwargs: Any) -> list[str]:
    """Embed ``texts`` and invert them: a convenience for demos and tests."""
    return [r.text for r in inverter.invert_many(inverter.embedder.embed(texts), **kwargs)]
