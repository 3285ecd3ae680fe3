"""Poolings (which positions become a vector) and prompt templates for LLM embedders.

Every pooling is mask-aware and reads only real tokens, so left or right padding and the other
texts in a batch never change a vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import PoolingError

POOLING_NAMES = ("mean", "last", "first", "max", "tokens", "native", "pos:K")

#: Built-in prompt templates; ``{text}`` is replaced by the text.
TEMPLATES: dict[str, str] = {
    # PromptEOL (Jiang et al., 2023, "Scaling Sentence Embeddings with LLMs"): take the last token.
    "prompteol": 'This sentence : "{text}" means in one word:"',
    # Echo embeddings (Springer et al., 2024, "Repetition Improves Language Model Embeddings"):
    # the text twice; poolings read the second copy, whose tokens have seen the whole text.
    "echo": "Rewrite the sentence: {text}\nRewritten sentence: {text}",
}

#: Where poolings read: every real token of the model input, or only the tokens of the text
#: (its last copy when the template repeats it).
POOL_OVER = ("input", "text")


@dataclass(frozen=True)
class Pooling:
    """One pooling.

    Attributes:
        name: canonical name as written in manifests (``"mean"``, ``"pos:-2"``, ``"native"``).
        kind: ``mean``, ``max``, ``pos`` (one position), ``tokens`` (every token, ragged) or
            ``mean_sqrt_len``.
        position: index among the text's real tokens for ``pos`` (negative from the end).
        normalize: L2-normalise the pooled vector (sentence-transformers' Normalize).
    """

    name: str
    kind: str
    position: int | None = None
    normalize: bool = False

    @property
    def ragged(self) -> bool:
        """True for per-token storage (``tokens``)."""
        return self.kind == "tokens"

    @property
    def filename(self) -> str:
        """A file-name-safe form of ``name``."""
        return self.name.replace(":", "_").replace("-", "m")


def parse_poolings(
    spec: str | Sequence[str], sentence_pooling: dict[str, Any] | None = None
) -> list[Pooling]:
    """Poolings from ``"mean,last"`` or a list of names.

    Names: ``mean`` (mask-aware), ``last``/``first`` (last/first real token), ``max``,
    ``tokens`` (all tokens, stored ragged), ``pos:K`` (the K-th real token, negative from the
    end), ``native`` (a sentence-transformers model's own pooling and normalisation).

    Raises:
        PoolingError: an unknown name, or ``native`` for a model without a sentence-transformers
            pooling config.
    """
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    if not names:
        raise PoolingError(f"no pooling given: choose from {list(POOLING_NAMES)}")
    out: list[Pooling] = []
    for raw in names:
        name = raw.lower()
        if name == "mean":
            out.append(Pooling("mean", "mean"))
        elif name == "max":
            out.append(Pooling("max", "max"))
        elif name == "last":
            out.append(Pooling("last", "pos", -1))
        elif name == "first":
            out.append(Pooling("first", "pos", 0))
        elif name in ("tokens", "all"):
            out.append(Pooling("tokens", "tokens"))
        elif name.startswith("pos:"):
            try:
                k = int(name[4:])
            except ValueError:
                raise PoolingError(
                    f"pooling {raw!r}: the position must be an integer, e.g. 'pos:0' or 'pos:-2'"
                ) from None
            out.append(Pooling(f"pos:{k}", "pos", k))
        elif name == "native":
            if sentence_pooling is None:
                raise PoolingError(
                    "pooling 'native' is the pooling of a sentence-transformers model, and this "
                    "model has no sentence-transformers config: use 'mean', 'last' or a template"
                )
            mode = sentence_pooling["mode"]
            position = {"first": 0, "last": -1}.get(mode)
            kind = "pos" if position is not None else mode
            out.append(Pooling("native", kind, position, bool(sentence_pooling.get("normalize"))))
        else:
            raise PoolingError(f"unknown pooling {raw!r}: valid poolings are {list(POOLING_NAMES)}")
    unique: dict[str, Pooling] = {}
    for p in out:
        unique.setdefault(p.name, p)  # the first of each name, in order
    return list(unique.values())


def resolve_template(template: str | None) -> str | None:
    """A template string from a built-in name or a string containing ``{text}`` once."""
    if template is None or template == "":
        return None
    text = TEMPLATES.get(template.lower(), template)
    if text.count("{text}") not in (1, 2):
        raise PoolingError(
            f"template {template!r} must be a built-in name ({sorted(TEMPLATES)}) or a string "
            "containing '{text}' once (e.g. 'Summarise: \"{text}\" in one word:\"') or twice "
            "(echo style: poolings read the second copy)"
        )
    return text


def default_pool_over(template: str | None) -> str:
    """``"text"`` for echo-style templates (two copies), ``"input"`` otherwise."""
    return "text" if template is not None and template.count("{text}") == 2 else "input"


def apply_template(template: str | None, text: str) -> tuple[str, int]:
    """The model input for ``text`` and where the text's last copy starts inside it."""
    if template is None:
        return text, 0
    parts = template.split("{text}")
    model_input = text.join(parts)
    return model_input, len(model_input) - len(parts[-1]) - len(text)


def text_token_mask(offsets: list[tuple[int, int]], start: int, length: int) -> list[bool]:
    """Which tokens overlap the characters ``start:start+length`` (special tokens never do)."""
    end = start + length
    return [b > a and a < end and b > start for a, b in offsets]


def real_token_bounds(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First real position and number of real tokens per row; ``mask`` is ``[batch, pos]``.

    Real tokens are contiguous under left and right padding alike.
    """
    lengths = mask.sum(dim=1)
    first = mask.int().argmax(dim=1)
    return first, lengths


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """Pool ``hidden`` ``[batch, pos, d]`` over the real tokens of ``mask`` ``[batch, pos]``.

    Returns:
        ``[batch, d]`` in float32. A position beyond a text's length, or a row with no token in
        ``mask``, gives NaN (the caller counts these).
    """
    h = hidden.float()
    m = mask.bool()
    if pooling.kind in ("mean", "mean_sqrt_len"):
        summed = torch.where(m[..., None], h, 0.0).sum(dim=1)
        n = m.sum(dim=1, keepdim=True).clamp(min=1).float()
        out = summed / (n if pooling.kind == "mean" else n.sqrt())
    elif pooling.kind == "max":
        out = torch.where(m[..., None], h, float("-inf")).amax(dim=1)
    elif pooling.kind == "pos":
        assert pooling.position is not None
        first, lengths = real_token_bounds(m)
        k = pooling.position
        rel = torch.full_like(lengths, k) if k >= 0 else lengths + k
        valid = (rel >= 0) & (rel < lengths)
        idx = (first + rel.clamp(min=0)).clamp(max=h.shape[1] - 1)
        out = h[torch.arange(h.shape[0], device=h.device), idx]
        out = torch.where(valid[:, None], out, float("nan"))
    else:
        raise PoolingError(f"pooling {pooling.name!r} does not reduce to one vector per text")
    if pooling.kind in ("mean", "mean_sqrt_len", "max"):
        out = torch.where(m.any(dim=1)[:, None], out, float("nan"))  # no token to pool
    if pooling.normalize:
        out = torch.nn.functional.normalize(out, p=2.0, dim=-1)
    return out
