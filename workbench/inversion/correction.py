"""Iterative correction (in the manner of vec2text) and the hybrid inverter.

Correction here re-embeds the current hypothesis and refines it by guided decoding seeded with
it ("rewrite this sentence: <hypothesis>", candidates scored by cosine to the target), keeping a
rewrite only when its cosine is higher; the text and cosine after every step are recorded. The
hybrid lets a trained soft-prefix inverter propose (beam search, several hypotheses), re-ranks
the proposals by cosine to the target and corrects the best one.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .embedders import check_embeddings, cosine_to
from .guided import GuidedInverter, InversionResult
from .trained import SoftPrefixInverter


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
        return self.guided.invert(target, seed=hypothesis,
                                  rounds=self.steps if steps is None else steps)


class HybridInverter:
    """The trained inverter proposes, guided decoding re-ranks and refines.

    Args:
        trained: a fitted :class:`SoftPrefixInverter`.
        guided: a :class:`GuidedInverter` over the same embedder.
        proposals: hypotheses from the trained inverter's beam search, re-ranked by cosine.
        steps: guided correction steps after the re-ranking.
    """

    def __init__(self, trained: SoftPrefixInverter, guided: GuidedInverter, *,
                 proposals: int = 4, steps: int = 1) -> None:
        if trained.embedder.fingerprint != guided.embedder.fingerprint:
            raise ValueError(
                f"the trained inverter inverts {trained.embedder.name} but the guided one scores "
                f"with {guided.embedder.name}: build both on the same embedder")
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
