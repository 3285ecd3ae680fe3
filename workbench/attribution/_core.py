"""Layer integrated gradients on the input embeddings (captum), shared by every verb: tokenising
with offsets, the reference input, a forward that stops at a residual layer, and the result."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..activations.pooling import apply_template
from ..errors import ContextLengthError, TargetTokenError, WorkbenchError
from ..models import hook_names, hooks


class AttributionInputError(WorkbenchError, ValueError):
    """Input an attribution cannot use: an empty text, a probe without linear weights, a model
    of the wrong kind, or a bad option."""


class TokenIndexError(WorkbenchError, IndexError):
    """A token position outside the text's tokens."""


@dataclass(frozen=True)
class Attribution:
    """Per-token attribution of one scalar output.

    Attributes:
        text: the model input (the text inside its template, if any).
        tokens: ``[n_tokens]`` token strings.
        offsets: ``[n_tokens, 2]`` character spans in ``text`` (``(0, 0)`` for special tokens).
        scores: ``[n_tokens]`` attributions (summed over ``d_model``); they add up to
            ``output - baseline_output - delta``.
        target: what was attributed, in words (``"logit(' Paris') - logit(' London')"``).
        output: the attributed scalar on the text.
        baseline_output: the same scalar on the reference input (text tokens replaced by
            ``baseline_token``, special tokens kept).
        delta: captum's convergence delta, ``scores.sum() - (output - baseline_output)``.
        n_steps: integration steps.
        baseline_token: the reference token.
        kept_first: whether the first token was kept in the reference (its score is then 0).
        method: ``layer_integrated_gradients`` (on the input embeddings).
    """

    text: str
    tokens: list[str]
    offsets: np.ndarray
    scores: np.ndarray
    target: str
    output: float
    baseline_output: float
    delta: float
    n_steps: int
    baseline_token: str
    kept_first: bool = False
    method: str = "layer_integrated_gradients"

    @property
    def total(self) -> float:
        """Sum of the scores."""
        return float(self.scores.sum())

    @property
    def relative_delta(self) -> float:
        """``|delta| / |output - baseline_output|``: completeness error as a fraction."""
        return abs(self.delta) / max(abs(self.output - self.baseline_output), 1e-12)

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` tokens with the largest absolute score."""
        order = np.argsort(-np.abs(self.scores))[:k]
        return [(self.tokens[i], float(self.scores[i])) for i in order]

    def to_frame(self) -> Any:
        """A DataFrame: position, token, start, end, score."""
        import pandas as pd

        return pd.DataFrame(
            {
                "position": np.arange(len(self.tokens)),
                "token": self.tokens,
                "start": self.offsets[:, 0],
                "end": self.offsets[:, 1],
                "score": self.scores,
            }
        )


@dataclass
class Encoded:
    """One tokenised model input: ``ids`` ``[1, n]``, offsets ``[n, 2]``, specials ``[n]``."""

    text: str
    text_start: int
    text_length: int
    ids: torch.Tensor
    offsets: np.ndarray
    special: np.ndarray
    tokens: list[str]


def encode(lm: Any, text: str, template: str | None = None) -> Encoded:
    """Tokenise ``text`` (inside ``template``) as extraction does, with offsets."""
    if not isinstance(text, str) or not text.strip():
        raise AttributionInputError(f"text {text!r} is empty: pass a non-empty string")
    model_input, start = apply_template(template, text)
    enc = lm.tokenizer(
        model_input,
        add_special_tokens=True,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    ids = enc["input_ids"]
    if len(ids) > lm.max_length:
        raise ContextLengthError(
            f"the text is {len(ids)} tokens, longer than {lm.name}'s context of {lm.max_length}: "
            "shorten it (attribution does not truncate)"
        )
    return Encoded(
        text=model_input,
        text_start=start,
        text_length=len(text),
        ids=torch.tensor([ids], device=lm.device),
        offsets=np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2),
        special=np.asarray(enc["special_tokens_mask"], dtype=bool),
        tokens=lm.tokenizer.convert_ids_to_tokens(ids),
    )


def single_token(lm: Any, token: str | int, what: str = "target") -> int:
    """The id of ``token`` (a string that must be one token, or an id)."""
    if isinstance(token, int | np.integer):
        if not 0 <= int(token) < len(lm.tokenizer):
            raise TargetTokenError(
                f"{what} id {token} is outside the vocabulary 0..{len(lm.tokenizer) - 1}"
            )
        return int(token)
    ids = lm.tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = lm.tokenizer.convert_ids_to_tokens(ids)
        raise TargetTokenError(
            f"{what} {token!r} is {len(ids)} tokens for {lm.name}'s tokenizer ({pieces}): it must "
            "be exactly one token — try it with or without a leading space, another case, or "
            "pass a token id"
        )
    return int(ids[0])


def baseline_id(lm: Any, token: str | int | None) -> int:
    """The reference token: ``token`` if given, else pad, unk or eos (the first that exists)."""
    if token is not None:
        return single_token(lm, token, "baseline_token")
    tok = lm.tokenizer
    for candidate in (tok.pad_token_id, tok.unk_token_id, tok.eos_token_id):
        if candidate is not None:
            return int(candidate)
    raise AttributionInputError(
        f"{lm.name}'s tokenizer has no pad, unk or eos token to use as the reference: pass "
        "baseline_token='...'"
    )


def check_position(position: int, n_tokens: int, what: str = "position") -> int:
    """``position`` (negative from the end) as an index in ``0..n_tokens-1``."""
    if not -n_tokens <= position < n_tokens:
        raise TokenIndexError(
            f"{what} {position} is outside the text, which has {n_tokens} tokens: use "
            f"{-n_tokens}..{n_tokens - 1} (negative counts from the end)"
        )
    return position % n_tokens


def model_inputs(lm: Any, ids: torch.Tensor) -> dict[str, Any]:
    """Keyword arguments of the base model for unpadded ``ids`` ``[batch, n]``."""
    return hooks.forward_inputs(lm, ids)


def hidden_at(lm: Any, layer: int) -> tuple[int, Callable[[torch.Tensor], torch.Tensor]]:
    """The resolved layer and a function ``ids [batch, n] -> hidden_states[layer] [batch, n, d]``
    that runs the base model only up to that layer."""
    (resolved,) = hook_names.normalize_layers(int(layer), lm.n_layers, lm.name)
    name = hook_names.resid_hook(resolved, lm.n_layers, lm.final_norm)

    def forward(ids: torch.Tensor) -> torch.Tensor:
        with hooks.read(lm, [name]) as seen, hooks.stop_after(lm, name):
            hooks.run(lm.base_model, model_inputs(lm, ids))
        return seen[name]

    return resolved, forward


def integrate(
    lm: Any,
    enc: Encoded,
    forward: Callable[[torch.Tensor], torch.Tensor],
    *,
    target: str,
    baseline_token: str | int | None,
    n_steps: int,
    internal_batch_size: int | None,
    method: str,
    keep_first: bool | None = None,
) -> Attribution:
    """Layer integrated gradients of ``forward`` (``ids [batch, n] -> [batch]``) on the input
    embeddings, from the reference input to ``enc``.

    The reference replaces every non-special token by the baseline token. With ``keep_first``
    (default: for decoders whose first token is not a special token, e.g. SmolLM2, which adds no
    BOS) the first token is kept too: it is the attention sink of a causal model, and moving it
    makes the path so non-linear that integration does not converge (SmolLM2, 64 steps:
    relative delta 7.2 with it moved, 0.001 with it kept)."""
    from ..data._tables import require

    attr_mod = require("captum.attr", "attribution")
    if n_steps < 2:
        raise AttributionInputError(f"n_steps={n_steps}: use at least 2 (32-128 is usual)")
    if internal_batch_size is not None and internal_batch_size < 1:
        raise AttributionInputError(f"internal_batch_size={internal_batch_size} must be >= 1")
    ref_id = baseline_id(lm, baseline_token)
    fixed = enc.special.copy()
    if keep_first is None:
        keep_first = lm.kind == "decoder" and not bool(enc.special[0])
    if keep_first:
        fixed[0] = True
    special = torch.as_tensor(fixed, device=enc.ids.device)[None]
    baseline = torch.where(special, enc.ids, torch.full_like(enc.ids, ref_id))
    lig = attr_mod.LayerIntegratedGradients(forward, lm.model.get_input_embeddings())
    with hooks.eval_mode(lm.model):
        with torch.enable_grad():
            attributions, delta = lig.attribute(
                enc.ids,
                baselines=baseline,
                n_steps=n_steps,
                method=method,
                internal_batch_size=internal_batch_size,
                return_convergence_delta=True,
            )
        with torch.no_grad():
            out = forward(enc.ids).float()
            ref = forward(baseline).float()
    scores = attributions.detach().float().sum(dim=-1)[0].cpu().numpy()
    result = Attribution(
        text=enc.text,
        tokens=list(enc.tokens),
        offsets=enc.offsets,
        scores=scores,
        target=target,
        output=float(out[0]),
        baseline_output=float(ref[0]),
        delta=float(delta.detach().reshape(-1)[0]),
        n_steps=n_steps,
        baseline_token=lm.tokenizer.convert_ids_to_tokens(ref_id),
        kept_first=bool(keep_first),
    )
    if result.relative_delta > 0.05:
        warnings.warn(
            f"integrated gradients did not converge for {enc.text[:60]!r}: the scores miss the "
            f"attributed change ({result.output - result.baseline_output:+.3f}) by "
            f"{result.delta:+.3f} ({100 * result.relative_delta:.0f}%); raise n_steps (e.g. "
            f"n_steps={4 * n_steps}) until attribution.relative_delta is small",
            stacklevel=3,
        )
    return result
