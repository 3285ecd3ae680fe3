"""The logit lens: read every layer's residual stream through the model's own final norm and
unembedding, as if the network stopped there (nostalgebraist 2020).

``LogitLens(lm).run(prompt)`` gives, for every residual layer ``0..n_layers`` (hidden-state
indices, as everywhere in the workbench) and every position, the top-k next tokens with their
probabilities, the entropy, and the rank and probability of a chosen target token. At the last
layer the lens *is* the model: ``hidden_states[n]`` is already normalised, so the lens applies only
the unembedding and its top-k equal the model's own logits exactly. ``TunedLens``
(``tuned.py``) shares ``run`` and the result type.

>>> from workbench.lens import LogitLens                                   # doctest: +SKIP
>>> res = LogitLens(lm).run("The capital of France is", k=5, target=" Paris")  # doctest: +SKIP
>>> res.target_rank[:, -1]     # rank of " Paris" after the last token, per layer  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from ..attribution._core import single_token
from ..errors import ContextLengthError, ModelStructureError, PoolingError, TargetTokenError
from ..models import hook_names, hooks

#: Names of a base model's final norm in the common architectures (Llama/Qwen/Mistral ``norm``,
#: GPT-2 ``ln_f``, OPT ``final_layer_norm``, Mamba ``norm_f``, Phi ``final_layernorm``).
FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "norm_f", "final_layernorm")


def require_decoder(lm: Any, what: str) -> nn.Module:
    """Refuse encoders: a lens reads next-token distributions, which only a causal LM has.

    Returns:
        The decoder's unembedding (LM head).
    """
    unembed = _output_embeddings(lm) if getattr(lm, "kind", None) == "decoder" else None
    if unembed is None:
        raise ModelStructureError(
            f"{what} needs a decoder with an unembedding (LM head): "
            f"{getattr(lm, 'name', lm)!r} is {getattr(lm, 'kind', 'not a LoadedModel')!r} and "
            "predicts no next token — load a causal LM such as 'smollm2-135m'"
        )
    return unembed


def _output_embeddings(lm: Any) -> nn.Module | None:
    get = getattr(lm.model, "get_output_embeddings", None)
    return get() if callable(get) else None


def final_norm_module(lm: Any) -> nn.Module | None:
    """The base model's final norm (applied after the last block), or None if it has none.

    Found by name (``FINAL_NORM_NAMES``) among the base model's children, else as its only child
    whose class name contains ``Norm``.
    """
    if not lm.final_norm:
        return None
    children = dict(lm.base_model.named_children())
    for name in FINAL_NORM_NAMES:
        if name in children:
            return children[name]
    norms = [m for m in children.values() if "norm" in type(m).__name__.lower()]
    if len(norms) == 1:
        return norms[0]
    raise ModelStructureError(
        f"{lm.name}: cannot find the final norm among the base model's children "
        f"{list(children)} (looked for {list(FINAL_NORM_NAMES)} or a single *Norm module); the "
        "logit lens needs it to read intermediate layers"
    )


def target_token_id(lm: Any, target: str | int) -> int:
    """The vocabulary id of ``target``: an id, or a string that is exactly one token (shared with
    the attribution verbs, so both refuse a multi-token target with the same message)."""
    return single_token(lm, target, what="target")


def decode_tokens(tokenizer: Any, ids: Iterable[int]) -> list[str]:
    """One readable string per token id (``" Paris"``, not ``"ĠParis"``)."""
    return [tokenizer.decode([int(i)]) for i in ids]


def encode_prompt(lm: Any, prompt: str) -> list[int]:
    """Token ids of one prompt (with the tokenizer's special tokens), checked for length."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise PoolingError(f"prompt {prompt!r} is empty: give some text to read the layers of")
    ids = lm.tokenizer(prompt, add_special_tokens=True)["input_ids"]
    if len(ids) > lm.max_length:
        raise ContextLengthError(
            f"the prompt is {len(ids)} tokens, longer than {lm.name}'s context of "
            f"{lm.max_length}: shorten it"
        )
    return list(ids)


def check_position(position: int, n_tokens: int, what: str = "position") -> int:
    """``position`` (negative from the end) normalised to ``0..n_tokens-1``."""
    if not -n_tokens <= int(position) < n_tokens:
        raise PoolingError(
            f"{what} {position} is outside the text: it has {n_tokens} tokens, positions "
            f"0..{n_tokens - 1} (or -{n_tokens}..-1 from the end)"
        )
    return int(position) % n_tokens


@torch.no_grad()
def hidden_states(
    lm: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, ...]:
    """All residual layers of the base model: ``n_layers + 1`` tensors ``[batch, pos, d_model]``
    (no unembedding runs)."""
    with hooks.eval_mode(lm.model):
        out = lm.base_model(
            **hooks.forward_inputs(lm, input_ids, attention_mask), output_hidden_states=True
        )
    return tuple(out.hidden_states)


@dataclass
class LensResult:
    """Top-k next tokens read at every (layer, position) of one prompt.

    Attributes:
        prompt: the text read.
        lens: ``"logit"`` or ``"tuned"``.
        model: the model's name.
        input_ids: ``[positions]`` token ids of the prompt.
        input_tokens: ``[positions]`` their strings.
        layers: ``[layers]`` residual layer indices (``0..n_layers``).
        top_ids: ``[layers, positions, k]`` token ids, most probable first.
        top_probs: ``[layers, positions, k]`` their probabilities.
        top_tokens: ``[layers][positions][k]`` their strings.
        entropy: ``[layers, positions]`` entropy of the lens distribution (nats).
        target: the target token string (None when no target was given).
        target_id: its id.
        target_rank: ``[layers, positions]`` 1-based rank of the target (1 = top), or None.
        target_prob: ``[layers, positions]`` its probability, or None.
    """

    prompt: str
    lens: str
    model: str
    input_ids: np.ndarray
    input_tokens: list[str]
    layers: np.ndarray
    top_ids: np.ndarray
    top_probs: np.ndarray
    top_tokens: list[list[list[str]]]
    entropy: np.ndarray
    target: str | None = None
    target_id: int | None = None
    target_rank: np.ndarray | None = None
    target_prob: np.ndarray | None = None

    @property
    def k(self) -> int:
        """How many top tokens are kept per cell."""
        return int(self.top_ids.shape[-1])

    def top1(self) -> list[list[str]]:
        """``[layers][positions]`` the most probable token at each cell (a grid to plot)."""
        return [[cell[0] for cell in row] for row in self.top_tokens]

    def to_frame(self) -> Any:
        """Tidy table: one row per (layer, position, rank) with token, probability and the
        target's rank/probability at that cell."""
        import pandas as pd

        rows = []
        for li, layer in enumerate(self.layers):
            for p, tok in enumerate(self.input_tokens):
                for r in range(self.k):
                    row = {
                        "layer": int(layer),
                        "position": p,
                        "input_token": tok,
                        "rank": r + 1,
                        "token": self.top_tokens[li][p][r],
                        "prob": float(self.top_probs[li, p, r]),
                        "entropy": float(self.entropy[li, p]),
                    }
                    if self.target_rank is not None and self.target_prob is not None:
                        row["target_rank"] = int(self.target_rank[li, p])
                        row["target_prob"] = float(self.target_prob[li, p])
                    rows.append(row)
        return pd.DataFrame(rows)


class LogitLens:
    """Decode any residual layer with the model's final norm and unembedding.

    Args:
        lm: a decoder ``LoadedModel`` (any architecture the workbench loads).

    Examples:
        >>> lens = LogitLens(lm)                                                # doctest: +SKIP
        >>> res = lens.run("The capital of France is", k=5, target=" Paris")    # doctest: +SKIP
        >>> res.top_tokens[-1][-1]       # the model's own top-5 after the prompt  # doctest: +SKIP
    """

    name = "logit"

    def __init__(self, lm: Any) -> None:
        self.unembed = require_decoder(lm, type(self).__name__)
        self.lm = lm
        self.norm = final_norm_module(lm)

    # -- decoding ----------------------------------------------------------------------------------

    def transform(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """The state the unembedding reads for ``layer``: identity for the logit lens."""
        return hidden

    def logits(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """Next-token logits ``[..., vocab]`` from residual states ``[..., d_model]`` of ``layer``
        (``0..n_layers``; the last layer is already normalised and only unembedded)."""
        h = self.transform(hidden, layer)
        if layer != self.lm.n_layers and self.norm is not None:
            h = self.norm(h)
        return self.unembed(h).float()

    def log_probs(self, hidden: torch.Tensor, layer: int) -> torch.Tensor:
        """``log_softmax`` of :meth:`logits`, ``[..., vocab]``."""
        return self.logits(hidden, layer).log_softmax(-1)

    # -- the verb ----------------------------------------------------------------------------------

    @torch.no_grad()
    def run(
        self,
        prompt: str,
        k: int = 5,
        target: str | int | None = None,
        layers: str | int | Sequence[int] = "all",
    ) -> LensResult:
        """Read ``prompt`` at every layer and position.

        Args:
            prompt: the text (tokenised with the tokenizer's special tokens).
            k: how many top tokens to keep per cell.
            target: a token (a string that is one token, e.g. ``" Paris"``, or an id) whose rank
                and probability to report at every cell.
            layers: ``"all"``, an int, a list or ``"10:20"`` (hidden-state indices, negative from
                the end).

        Returns:
            ``LensResult`` with arrays ``[layers, positions, k]``.
        """
        lm = self.lm
        vocab = int(cast(torch.Tensor, self.unembed.weight).shape[0])  # [vocab, d_model]
        if not 1 <= int(k) <= vocab:
            raise ValueError(f"k={k}: keep between 1 and the vocabulary size {vocab} tokens")
        chosen = hook_names.normalize_layers(layers, lm.n_layers, lm.name)
        target_id = None if target is None else target_token_id(lm, target)
        ids = encode_prompt(lm, prompt)
        states = hidden_states(lm, torch.tensor([ids]))
        top_ids, top_probs, entropy, ranks, probs = [], [], [], [], []
        with hooks.eval_mode(lm.model):
            for layer in chosen:
                logp = self.log_probs(states[layer][0], layer)  # [pos, vocab]
                p = logp.exp()
                val, idx = p.topk(int(k), dim=-1)
                top_ids.append(idx.cpu().numpy())
                top_probs.append(val.cpu().numpy())
                entropy.append((-(p * logp).nan_to_num().sum(-1)).cpu().numpy())
                if target_id is not None:
                    t = logp[:, target_id]
                    ranks.append((logp > t[:, None]).sum(-1).cpu().numpy() + 1)
                    probs.append(t.exp().cpu().numpy())
        tid = np.stack(top_ids)
        top_tokens = [[decode_tokens(lm.tokenizer, cell) for cell in row] for row in tid]
        return LensResult(
            prompt=prompt,
            lens=self.name,
            model=lm.name,
            input_ids=np.asarray(ids),
            input_tokens=decode_tokens(lm.tokenizer, ids),
            layers=np.asarray(chosen),
            top_ids=tid,
            top_probs=np.stack(top_probs),
            top_tokens=top_tokens,
            entropy=np.stack(entropy),
            target=None if target_id is None else lm.tokenizer.decode([target_id]),
            target_id=target_id,
            target_rank=np.stack(ranks) if ranks else None,
            target_prob=np.stack(probs) if probs else None,
        )


def logit_lens(
    lm: Any,
    prompt: str,
    k: int = 5,
    target: str | int | None = None,
    layers: str | int | Sequence[int] = "all",
) -> LensResult:
    """``LogitLens(lm).run(...)`` in one call."""
    return LogitLens(lm).run(prompt, k=k, target=target, layers=layers)


__all__ = ["LensResult", "LogitLens", "TargetTokenError", "logit_lens"]
