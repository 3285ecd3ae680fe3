"""Iterative correction (in the manner of vec2text) and the hybrid inverter.

Every corrector re-embeds the current hypothesis and proposes a better one, keeping a proposal
only when its cosine to the target is higher; the text and cosine after every step are recorded.

- :class:`TrainedCorrector` is vec2text's corrector: a soft prompt computed from the target
  embedding, the hypothesis' embedding and their difference, then the hypothesis as text
  (``Draft: <hypothesis>``), and the LLM trained with the LM loss to write the target text.
  Its training drafts are corrupted copies of the training texts (words dropped, replaced and
  swapped), or hypotheses of a base inverter when given: generating those for a whole corpus
  is what vec2text does, and costs an inverter run per text.
- :class:`GuidedCorrector` refines by guided decoding seeded with the hypothesis ("rewrite this
  sentence: <hypothesis>", candidates scored by cosine to the target); no training.
- :class:`HybridInverter` lets a trained soft-prefix inverter propose (beam search, several
  hypotheses), re-ranks the proposals by cosine to the target and corrects the best one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .embedders import Embedder, check_embeddings, cosine_to
from .guided import GuidedInverter, InversionResult
from .trained import InverterConfig, SoftPrefixInverter, SoftPromptModel

#: The hypothesis as the corrector reads it, between the soft prompt and the corrected text.
DRAFT_TEMPLATE = "Draft: {draft}\n"


def corrupt_text(
    text: str,
    rng: np.random.Generator,
    vocabulary: Sequence[str],
    *,
    drop: float = 0.15,
    replace: float = 0.15,
    swap: float = 0.5,
    keep: float = 0.1,
) -> str:
    """A noisy copy of ``text`` standing in for an inverter's hypothesis: each word dropped with
    probability ``drop`` or replaced by a random ``vocabulary`` word with ``replace``, then one
    adjacent pair swapped with probability ``swap``; with probability ``keep`` the text itself
    (so that the corrector also learns to leave a right hypothesis alone)."""
    words = text.split()
    if rng.random() < keep or not words:
        return text
    out = []
    for w in words:
        r = rng.random()
        if r < drop:
            continue
        out.append(vocabulary[int(rng.integers(len(vocabulary)))] if r < drop + replace else w)
    if not out:
        out = [words[int(rng.integers(len(words)))]]
    if len(out) > 1 and rng.random() < swap:
        i = int(rng.integers(len(out) - 1))
        out[i], out[i + 1] = out[i + 1], out[i]
    return " ".join(out)


class TrainedCorrector(SoftPromptModel):
    """vec2text's corrector: (target, hypothesis, target - hypothesis) embeddings -> soft prompt,
    then ``Draft: <hypothesis>``, then the LLM writes the corrected text.

    Trained, saved, resumed and refused exactly like :class:`SoftPrefixInverter` (same
    :class:`InverterConfig`, checkpoint files and fingerprints; ``kind`` ``trained-corrector``).

    Examples:
        >>> corr = TrainedCorrector(lm, embedder, InverterConfig())  # doctest: +SKIP
        >>> corr.fit(texts, out="runs/corrector", steps=500)  # doctest: +SKIP
        >>> corr.correct(embedder.embed(["A man plays a guitar."])[0], "man guitar a",
        ...              steps=3)  # doctest: +SKIP
    """

    KIND = "trained-corrector"

    def __init__(self, lm: Any, embedder: Embedder, config: InverterConfig | None = None) -> None:
        super().__init__(lm, embedder, config)
        self._drafts: list[str] | None = None
        self._vocabulary: list[str] = []

    def _input_dim(self) -> int:
        return 3 * self.embedder.dim

    def features(self, targets: np.ndarray, hypotheses: np.ndarray) -> torch.Tensor:
        """``[b, 3 * dim]``: the unit target, the unit hypothesis embedding and their difference."""
        t = torch.nn.functional.normalize(torch.as_tensor(targets, dtype=torch.float32), dim=-1)
        h = torch.nn.functional.normalize(torch.as_tensor(hypotheses, dtype=torch.float32), dim=-1)
        return torch.cat([t, h, t - h], dim=-1)

    def fit(
        self,
        texts: Sequence[str],
        out: str | Path,
        steps: int,
        *,
        drafts: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> TrainedCorrector:
        """Train like :meth:`SoftPromptModel.fit`. ``drafts`` (one per text, e.g. a base
        inverter's hypotheses) are used for half of the rows of every batch; the others get
        :func:`corrupt_text` copies (a function of the seed and the step, so a resumed run sees
        the same drafts)."""
        texts = list(texts)
        if drafts is not None and len(drafts) != len(texts):
            raise ValueError(
                f"{len(drafts)} drafts for {len(texts)} texts: pass one draft per "
                "text, or none to train on corrupted copies"
            )
        self._drafts = None if drafts is None else list(drafts)
        self._vocabulary = sorted({w for t in texts for w in t.split()})
        return super().fit(texts, out, steps, **kwargs)

    def _corpus_fingerprint(self, texts: list[str]) -> str:
        h = hashlib.sha256(super()._corpus_fingerprint(texts).encode())
        if self._drafts is not None:
            h.update("\x00".join(self._drafts).encode())
        return h.hexdigest()

    def _batch_loss(
        self, step: int, idx: np.ndarray, texts: list[str], vectors: np.ndarray
    ) -> torch.Tensor:
        rng = np.random.default_rng([self.config.seed, step, 1])
        drafts = [
            self._drafts[i]
            if self._drafts is not None and rng.random() < 0.5
            else corrupt_text(texts[i], rng, self._vocabulary)
            for i in idx
        ]
        hyp = check_embeddings(self.embedder.embed(drafts), self.embedder)
        return self.loss(
            self.features(vectors[idx], hyp),
            [texts[i] for i in idx],
            [DRAFT_TEMPLATE.format(draft=d) for d in drafts],
        )

    @torch.inference_mode()
    def propose(
        self,
        target: np.ndarray,
        hypothesis: str,
        *,
        num_return: int = 4,
        max_new_tokens: int = 40,
        hypothesis_vector: np.ndarray | None = None,
    ) -> list[str]:
        """``num_return`` corrections of ``hypothesis`` towards ``target`` ``[dim]`` (beam
        search, best first); ``hypothesis_vector`` ``[dim]``: its embedding, when known."""
        tgt = check_embeddings(target, self.embedder)
        if hypothesis_vector is None:
            hypothesis_vector = self.embedder.embed([hypothesis or "."])
        hyp = check_embeddings(hypothesis_vector, self.embedder)
        prefix = self.prefix(self.features(tgt, hyp).to(self.device)).to(self.lm.dtype)
        ctx = torch.tensor(
            [self._context_ids(DRAFT_TEMPLATE.format(draft=hypothesis))], device=self.device
        )
        head = torch.cat(
            [self._head(prefix), self.model.get_input_embeddings()(ctx).to(prefix.dtype)], dim=1
        )
        return self._generate(
            head, num_beams=num_return, num_return=num_return, max_new_tokens=max_new_tokens
        )

    def correct(
        self,
        target: Any,
        hypothesis: str,
        steps: int = 3,
        *,
        num_return: int = 4,
        max_new_tokens: int = 40,
    ) -> InversionResult:
        """``steps`` rounds from ``hypothesis``: propose ``num_return`` corrections, keep the one
        closest to ``target`` when it beats the current text. ``history[i]`` is the best after
        step ``i`` (step 0 is the hypothesis itself)."""
        t0 = time.time()
        tgt = check_embeddings(target, self.embedder)[0]
        text, vec = hypothesis, self.embedder.embed([hypothesis or "."])[0]
        cos = float(cosine_to(vec[None], tgt)[0])
        history = [(0, text, cos)]
        for step in range(1, steps + 1):
            props = [
                p
                for p in dict.fromkeys(
                    self.propose(
                        tgt,
                        text,
                        num_return=num_return,
                        max_new_tokens=max_new_tokens,
                        hypothesis_vector=vec,
                    )
                )
                if p.strip()
            ]
            if props:
                vectors = self.embedder.embed(props)
                scores = cosine_to(vectors, tgt)
                best = int(np.argmax(scores))
                if scores[best] > cos:
                    text, cos, vec = props[best], float(scores[best]), vectors[best]
            history.append((step, text, cos))
        return InversionResult(text, cos, history, time.time() - t0)

    def refine(
        self, target: Any, first: InversionResult, steps: int = 3, **kwargs: Any
    ) -> InversionResult:
        """``first`` (any inverter's result for ``target``) followed by ``steps`` corrections:
        the history goes on from ``first``'s last step and the time includes ``first``'s."""
        fixed = self.correct(target, first.text, steps, **kwargs)
        last = first.history[-1][0] if first.history else 0
        history = first.history + [(last + s, t, c) for s, t, c in fixed.history[1:]]
        return InversionResult(fixed.text, fixed.cosine, history, first.seconds + fixed.seconds)


class GuidedCorrector:
    """Refine hypotheses towards a target embedding by guided rewriting.

    Args:
        guided: the :class:`GuidedInverter` that rewrites (its embedder scores).
        steps: correction steps.
    """

    def __init__(self, guided: GuidedInverter, steps: int = 2) -> None:
        self.guided, self.steps = guided, steps

    def correct(self, target: Any, hypothesis: str, steps: int | None = None) -> InversionResult:
        """``steps`` rewrite rounds from ``hypothesis``; ``history[i]`` is the best after step i
        (step 0 is the hypothesis itself)."""
        return self.guided.invert(
            target, seed=hypothesis, rounds=self.steps if steps is None else steps
        )


class HybridInverter:
    """The trained inverter proposes, guided decoding re-ranks and refines.

    Args:
        trained: a fitted :class:`SoftPrefixInverter`.
        guided: a :class:`GuidedInverter` over the same embedder.
        proposals: hypotheses from the trained inverter's beam search, re-ranked by cosine.
        steps: guided correction steps after the re-ranking.
    """

    def __init__(
        self,
        trained: SoftPrefixInverter,
        guided: GuidedInverter,
        *,
        proposals: int = 4,
        steps: int = 1,
    ) -> None:
        if trained.embedder.fingerprint != guided.embedder.fingerprint:
            raise ValueError(
                f"the trained inverter inverts {trained.embedder.name} but the guided one scores "
                f"with {guided.embedder.name}: build both on the same embedder"
            )
        self.trained, self.guided = trained, guided
        self.proposals, self.steps = proposals, steps

    def invert(self, target: Any, steps: int | None = None) -> InversionResult:
        """Reconstruct one embedding ``target`` ``[dim]``; ``history[0]`` is the re-ranked
        proposal, ``history[i]`` the best after correction step ``i``."""
        t0 = time.time()
        tgt = check_embeddings(target, self.guided.embedder)
        props = self.trained.invert(tgt, num_beams=self.proposals, num_return=self.proposals)[0]
        props = [p for p in dict.fromkeys(props) if p.strip()] or ["."]
        cos = cosine_to(self.guided.embedder.embed(props), tgt[0])
        seed = props[int(np.argmax(cos))]
        res = self.guided.invert(tgt[0], seed=seed, rounds=self.steps if steps is None else steps)
        res.seconds = time.time() - t0
        return res
