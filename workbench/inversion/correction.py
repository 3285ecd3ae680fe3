"""Iterative correction (in the manner of vec2text) and the hybrid inverter.

Every corrector re-embeds the current hypothesis and proposes a better one, keeping a proposal
only when its cosine to the target is higher; the text and cosine after every step are recorded.

- :class:`TrainedCorrector` is vec2text's corrector: a soft prompt computed from the target
  embedding, the hypothesis' embedding and their difference, then the hypothesis as text
  (``Draft: <hypothesis>``), and the LLM trained with the LM loss to write the target text.
  Its training drafts are corrupted copies of the training texts (words dropped, replaced and
  swapped), or real hypotheses when given (vec2text's recipe): a base inverter's or guided
  decoding's texts for the whole corpus, made once by :func:`cached_hypotheses` and cached
  in the checkpoint folder (an inverter run per text, resumable).
- :class:`GuidedCorrector` refines by guided decoding seeded with the hypothesis ("rewrite this
  sentence: <hypothesis>", candidates scored by cosine to the target); no training.
- :class:`HybridInverter` lets a trained soft-prefix inverter propose (beam search, several
  hypotheses), re-ranks the proposals by cosine to the target and corrects the best one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..artifacts import atomic_write
from .embedders import Embedder, check_embeddings, cosine_to
from .guided import GuidedInverter, InversionResult
from .trained import EVAL_BATCH, InverterConfig, SoftPrefixInverter, SoftPromptModel

#: The hypothesis as the corrector reads it, between the soft prompt and the corrected text.
DRAFT_TEMPLATE = "Draft: {draft}\n"
#: Real hypotheses for corrector training, cached in its checkpoint folder.
HYPOTHESES_FILE = "hypotheses.jsonl"


def cached_hypotheses(
    texts: Sequence[str],
    path: str | Path,
    make: Callable[[list[str]], list[str]],
    *,
    source: str,
    chunk: int = 64,
    progress: bool = True,
) -> list[str]:
    """One hypothesis per text, ``make(texts[a:b])`` chunk by chunk, cached in the JSONL
    ``path``: a key line (the corpus' sha256 and ``source``), then one line per text, appended
    and fsynced as they come. A rerun reads what is there (a torn last line is dropped) and makes
    only the missing ones; a file of another corpus or ``source`` is started over. An empty
    hypothesis is stored as ``"."``.

    Args:
        texts: the corpus ``[n]``.
        path: the cache file (e.g. ``<checkpoint>/hypotheses.jsonl``).
        make: texts -> as many hypotheses (a base inverter run on their embeddings).
        source: what ``make`` is (an inverter checkpoint's sha256, ``guided:<fingerprints>``).
        chunk: texts per call of ``make`` (and per fsync).
        progress: show a progress bar.
    """
    from tqdm.auto import tqdm

    texts, path = list(texts), Path(path)
    key = {
        "corpus": hashlib.sha256("\x00".join(texts).encode()).hexdigest(),
        "source": source,
        "n": len(texts),
    }
    done: list[str] = []
    lines = path.read_text().splitlines() if path.exists() else []
    try:
        ours = bool(lines) and json.loads(lines[0]) == {"key": key}
    except json.JSONDecodeError:
        ours = False
    if ours:
        for line in lines[1 : len(texts) + 1]:
            try:
                done.append(str(json.loads(line)["text"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                break  # a torn last line: made again
    if not ours or len(lines) != len(done) + 1:
        head = "".join(json.dumps(x) + "\n" for x in [{"key": key}, *({"text": t} for t in done)])
        atomic_write(path, lambda f: f.write(head), mode="w")
    with (
        path.open("a") as f,
        tqdm(total=len(texts), initial=len(done), disable=not progress, desc="hypotheses") as bar,
    ):
        for a in range(len(done), len(texts), chunk):
            part = texts[a : a + chunk]
            made = [h.strip() or "." for h in make(part)]
            if len(made) != len(part):
                raise ValueError(f"{len(made)} hypotheses for {len(part)} texts: make one per text")
            f.write("".join(json.dumps({"text": h}) + "\n" for h in made))
            f.flush()
            os.fsync(f.fileno())
            done += made
            bar.update(len(part))
    return done


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
        self._real_fraction = 1.0
        self._eval_drafts: list[str] | None = None
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
        real_fraction: float = 1.0,
        held_out_drafts: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> TrainedCorrector:
        """Train like :meth:`SoftPromptModel.fit`.

        Args:
            texts: training corpus (the texts the corrector learns to write).
            out: checkpoint folder (resumed when it holds this run).
            steps: total optimizer steps.
            drafts: real hypotheses, one per text (a base inverter's or guided decoding's, see
                :func:`cached_hypotheses`); without them every draft is a
                :func:`corrupt_text` copy (a function of the seed and the step, so a resumed
                run sees the same drafts).
            real_fraction: with ``drafts``, the share of rows that get their real draft (the
                others a corrupted copy); 1.0 is vec2text's recipe.
            held_out_drafts: drafts of the ``held_out`` texts for the evaluation (default:
                seeded corrupted copies); each is corrected once, greedily.
            **kwargs: :meth:`SoftPromptModel.fit`'s.
        """
        texts = list(texts)
        for given, want, what in (
            (drafts, texts, "texts"),
            (held_out_drafts, kwargs.get("held_out") or [], "held-out texts"),
        ):
            if given is not None and len(given) != len(want):
                raise ValueError(
                    f"{len(given)} drafts for {len(want)} {what}: pass one draft per "
                    "text, or none to train on corrupted copies"
                )
        if not 0.0 <= real_fraction <= 1.0:
            raise ValueError(f"real_fraction is {real_fraction}: pass a share from 0 to 1")
        self._drafts = None if drafts is None else list(drafts)
        self._real_fraction = real_fraction
        self._eval_drafts = None if held_out_drafts is None else list(held_out_drafts)
        self._vocabulary = sorted({w for t in texts for w in t.split()})
        return super().fit(texts, out, steps, **kwargs)

    def _corpus_fingerprint(self, texts: list[str]) -> str:
        h = hashlib.sha256(super()._corpus_fingerprint(texts).encode())
        if self._drafts is not None:
            h.update("\x00".join(self._drafts).encode())
            if self._real_fraction != 0.5:  # 0.5 was the only mix before real_fraction
                h.update(f"real_fraction={self._real_fraction}".encode())
        return h.hexdigest()

    def _held_out_drafts(self, texts: list[str]) -> list[str]:
        if self._eval_drafts is not None and len(self._eval_drafts) == len(texts):
            return self._eval_drafts
        rng = np.random.default_rng([self.config.seed, 2**31])  # never a training step's
        vocab = self._vocabulary or sorted({w for t in texts for w in t.split()})
        return [corrupt_text(t, rng, vocab) for t in texts]

    def evaluate_held_out(
        self, texts: list[str], vectors: np.ndarray, *, max_new_tokens: int = 40
    ) -> dict[str, float]:
        """:meth:`SoftPromptModel.evaluate_held_out` of one greedy correction of each held-out
        draft, with the drafts' own ``draft_bleu``, ``draft_token_f1`` and ``draft_cosine``."""
        from .metrics import evaluate

        res = super().evaluate_held_out(texts, vectors, max_new_tokens=max_new_tokens)
        before = evaluate(texts, self._held_out_drafts(texts), self.embedder, targets=vectors)
        res.update({f"draft_{k}": before[k] for k in ("bleu", "token_f1", "cosine")})
        return res

    def _eval_hypotheses(
        self, texts: list[str], vectors: np.ndarray, max_new_tokens: int
    ) -> list[str]:
        drafts = self._held_out_drafts(texts)
        out: list[str] = []
        for a in range(0, len(texts), EVAL_BATCH):
            chunk = drafts[a : a + EVAL_BATCH]
            head, mask = self._correction_inputs(
                vectors[a : a + EVAL_BATCH], chunk, self.embedder.embed(chunk)
            )
            out += self._generate(
                head, mask=mask, num_beams=1, num_return=1, max_new_tokens=max_new_tokens
            )
        return out

    def _correction_inputs(
        self, targets: np.ndarray, drafts: list[str], draft_vectors: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Input embeddings ``[b, p, d_model]`` (soft prompt, BOS, ``Draft: ...``; left-padded)
        and their attention mask ``[b, p]`` for correcting ``drafts`` towards ``targets``."""
        tgt = check_embeddings(targets, self.embedder)
        hyp = check_embeddings(draft_vectors, self.embedder)
        head = self._head(self.prefix(self.features(tgt, hyp).to(self.device)).to(self.lm.dtype))
        emb = self.model.get_input_embeddings()
        rows = [
            torch.cat(
                [
                    head[i],
                    emb(
                        torch.tensor(
                            self._context_ids(DRAFT_TEMPLATE.format(draft=d)), device=self.device
                        )
                    ).to(head.dtype),
                ]
            )
            for i, d in enumerate(drafts)
        ]
        width = max(len(r) for r in rows)
        inputs = head.new_zeros(len(rows), width, head.shape[-1])
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=self.device)
        for i, r in enumerate(rows):
            inputs[i, width - len(r) :] = r
            mask[i, width - len(r) :] = 1
        return inputs, mask

    def _batch_loss(
        self, step: int, idx: np.ndarray, texts: list[str], vectors: np.ndarray
    ) -> torch.Tensor:
        rng = np.random.default_rng([self.config.seed, step, 1])
        drafts = [
            self._drafts[i]
            if self._drafts is not None and rng.random() < self._real_fraction
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
        if hypothesis_vector is None:
            hypothesis_vector = self.embedder.embed([hypothesis or "."])
        head, _ = self._correction_inputs(target, [hypothesis], hypothesis_vector)
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
