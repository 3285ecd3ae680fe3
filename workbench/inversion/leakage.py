"""Leakage report: how much text the pooled hidden states of an LLM give away, per layer and
pooling, and a Gaussian-noise defence curve (reconstruction BLEU and retrieval recall@k against
the noise scale, as in vec2text's defence experiment).

Each (layer, pooling) is an embedder (``ModelEmbedder``); its vectors are inverted zero-shot by
guided decoding scored with that same embedder, so no inverter is trained per layer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EmptyDatasetError
from ..models.hook_names import normalize_layers
from .embedders import ModelEmbedder
from .guided import GuidedInverter
from .metrics import evaluate

_CAPITAL = re.compile(r"\b[A-Z][a-zA-Z]+\b")


def default_entities(text: str) -> list[str]:
    """Capitalised words that do not start the text: a crude stand-in for named entities when
    none are given (pass real ones, e.g. UD ``PROPN`` words, when you have them)."""
    found = [(m.start(), m.group()) for m in _CAPITAL.finditer(text)]
    first = re.search(r"\w", text)
    return [w for s, w in found if first is None or s != first.start()]


@dataclass
class LeakageReport:
    """Per-(layer, pooling) reconstruction metrics and the noise defence curve.

    Attributes:
        rows: ``[{"layer", "pooling", "bleu", "token_f1", "exact_match", "cosine",
            "cosine_bow_anchor", "entity_recall", "seconds_per_text"}]``.
        defence: ``[{"layer", "pooling", "noise", "bleu", "token_f1", "recall@1", ...}]``.
        examples: per (layer, pooling), the first reconstructions ``[(reference, text)]``.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    defence: list[dict[str, Any]] = field(default_factory=list)
    examples: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def to_markdown(self) -> str:
        """Both tables as Markdown."""

        def table(rows: list[dict[str, Any]]) -> str:
            if not rows:
                return "(none)\n"
            cols = list(rows[0])
            lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            for r in rows:
                lines.append(
                    "| "
                    + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values())
                    + " |"
                )
            return "\n".join(lines) + "\n"

        return (
            "## Reconstruction per layer and pooling\n\n"
            + table(self.rows)
            + "\n## Gaussian-noise defence\n\n"
            + table(self.defence)
        )


def add_noise(x: np.ndarray, scale: float, seed: int = 0) -> np.ndarray:
    """Unit-normalise rows of ``x`` ``[n, d]`` and add ``scale * N(0, 1)`` per dimension."""
    x = np.asarray(x, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    return (x + scale * rng.standard_normal(x.shape)).astype(np.float32)


def leakage_report(
    lm: Any,
    texts: Sequence[str],
    *,
    layers: Any = (-1,),
    poolings: Sequence[str] = ("mean",),
    entities: Sequence[Sequence[str]] | None = None,
    noise: Sequence[float] = (0.0, 0.01, 0.05, 0.1),
    defence_layer: int | None = None,
    defence_pooling: str | None = None,
    ks: Sequence[int] = (1, 5),
    guided: dict[str, Any] | None = None,
    progress: bool = True,
) -> LeakageReport:
    """Invert ``texts``' pooled hidden states of ``lm`` at each layer and pooling.

    Args:
        lm: a decoder ``LoadedModel`` (embeds the texts and proposes tokens).
        texts: the source texts (non-empty).
        layers: the layers to invert (``hidden_states`` indices).
        poolings: the poolings to invert (pooling names).
        entities: per text, named entities; default :func:`default_entities`.
        noise: noise scales of the defence curve (on unit-normalised vectors).
        defence_layer: the layer where the defence curve is measured (default: the first).
        defence_pooling: the pooling where the defence curve is measured (default: the first).
        ks: recall@k cut-offs (noisy vector against every clean one).
        guided: keyword arguments of :class:`GuidedInverter` (default: a fast setting).
        progress: show a progress bar.

    Raises:
        EmptyDatasetError: no texts or an empty text.
        LayerOutOfRangeError: a layer outside the model.
    """
    from tqdm.auto import tqdm

    from ..evaluation._metrics import retrieval_scores

    texts = list(texts)
    if not texts or any(not t.strip() for t in texts):
        raise EmptyDatasetError("leakage_report needs non-empty texts: drop the empty ones")
    layers = normalize_layers(layers, lm.n_layers, lm.name)
    ents = [default_entities(t) for t in texts] if entities is None else [list(e) for e in entities]
    opts = {
        "beam_width": 2,
        "top_k": 4,
        "keywords": 6,
        "max_tokens": 20,
        "rewrite_rounds": 0,
        "prior_words": 3000,
        **(guided or {}),
    }
    base = ModelEmbedder(lm, layer=layers[0], pooling=poolings[0])
    vectors = base.embed_layers(texts, layers, poolings)
    report = LeakageReport()
    combos = [(la, p) for la in layers for p in poolings]
    inverters: dict[tuple[int, str], GuidedInverter] = {}
    for la, p in tqdm(combos, disable=not progress, desc="leakage"):
        emb = ModelEmbedder(lm, layer=la, pooling=p)
        inv = inverters[(la, p)] = GuidedInverter(lm, emb, **opts)
        t0 = time.time()
        x = vectors[(la, emb.pooling.name)]
        hyps = [r.text for r in inv.invert_many(x)]
        row = {
            "layer": la,
            "pooling": p,
            **evaluate(texts, hyps, emb, targets=x, entities=ents),
            "seconds_per_text": (time.time() - t0) / len(texts),
        }
        report.rows.append(row)
        report.examples[f"{la}:{p}"] = list(zip(texts, hyps, strict=True))[:5]
    dl = (
        layers[0]
        if defence_layer is None
        else normalize_layers([defence_layer], lm.n_layers, lm.name)[0]
    )
    dp = poolings[0] if defence_pooling is None else defence_pooling
    inv = inverters.get((dl, dp)) or GuidedInverter(lm, ModelEmbedder(lm, dl, dp), **opts)
    clean = vectors.get((dl, inv.embedder.pooling.name))  # type: ignore[attr-defined]
    if clean is None:
        clean = inv.embedder.embed(texts)
    for scale in tqdm(list(noise), disable=not progress, desc="defence"):
        noisy = add_noise(clean, scale)
        hyps = [r.text for r in inv.invert_many(noisy)]
        m = evaluate(texts, hyps)
        rec = retrieval_scores(noisy, clean, np.arange(len(texts)), ks=ks)
        report.defence.append(
            {
                "layer": dl,
                "pooling": dp,
                "noise": float(scale),
                "bleu": m["bleu"],
                "token_f1": m["token_f1"],
                **rec,
            }
        )
    return report
