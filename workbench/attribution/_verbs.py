"""The attribution verbs: which input tokens drive a probe's score, an embedding similarity, or a
next-token logit. Each takes one text (or a list, attributed one by one) and returns an
``Attribution`` per text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..activations.pooling import default_pool_over, parse_poolings, pool, text_token_mask
from ._core import (
    Attribution,
    AttributionInputError,
    Encoded,
    check_position,
    encode,
    hidden_at,
    integrate,
    single_token,
)

# integrated-gradients defaults shared by the three verbs
_N_STEPS = 64
_INTERNAL_BATCH_SIZE = 16
_METHOD = "gausslegendre"


def _pooler(
    lm: Any, pooling: str, template: str | None, pool_over: str | None, enc: Encoded
) -> Any:
    """``hidden [batch, n, d] -> [batch, d]`` for ``pooling`` over the tokens it reads."""
    (p,) = parse_poolings(pooling, lm.sentence_pooling)
    if p.ragged:
        raise AttributionInputError(
            "pooling 'tokens' gives one vector per token: pick one with pooling='pos:K' (or "
            "mean/last/first/max)"
        )
    over = pool_over or default_pool_over(template)
    if over not in ("input", "text"):
        raise AttributionInputError(f"pool_over={over!r}: use 'input' or 'text'")
    n = enc.ids.shape[1]
    if over == "text":
        keep = text_token_mask([tuple(o) for o in enc.offsets], enc.text_start, enc.text_length)
    else:
        keep = [True] * n
    if p.kind == "pos":
        assert p.position is not None
        check_position(p.position, sum(keep), f"pooling {p.name!r} position")
    mask = torch.tensor([keep], device=enc.ids.device)

    def run(hidden: torch.Tensor) -> torch.Tensor:
        return pool(hidden, mask.expand(hidden.shape[0], -1), p)

    return run


def _linear(probe: Any, d_model: int, output: Any) -> tuple[torch.Tensor, float, str]:
    """Weight ``[d]``, bias and a name of the probe's scalar output."""
    if isinstance(probe, np.ndarray | torch.Tensor | list):
        from ..probing._directions import unit_direction  # probing loads scikit-learn

        w = unit_direction(probe, d_model, error=AttributionInputError)
        return torch.from_numpy(w).float(), 0.0, "projection on direction"
    coef = getattr(probe, "coef_", None)
    if coef is None:
        raise AttributionInputError(
            f"{type(probe).__name__} has no linear weights (coef_): attribute a fitted "
            "LogisticProbe, RidgeProbe or MassMeanProbe, or pass a direction vector [d_model]"
        )
    W = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    b = np.atleast_1d(np.asarray(getattr(probe, "intercept_", np.zeros(len(W))), np.float64))
    if W.shape[1] != d_model:
        raise AttributionInputError(
            f"the probe has {W.shape[1]} inputs but the model's d_model is {d_model}: use a probe "
            "fitted on this model's activations"
        )
    classes = np.asarray(
        getattr(probe, "classes_", [])
    ).tolist()  # plain values: 1, not np.int64(1)
    if len(W) == 1:
        k = 0
        name = f"probe logit of class {classes[1]!r}" if len(classes) == 2 else "probe output"
    elif output is None:
        names = classes or list(range(len(W)))
        raise AttributionInputError(
            f"the probe has {len(W)} outputs: pass output= one of {names[:20]} (a class label, "
            "or an output index for a regression probe)"
        )
    else:
        k = classes.index(output) if output in classes else int(output)
        if not 0 <= k < len(W):
            raise AttributionInputError(
                f"output={output!r} is not among the probe's outputs "
                f"{classes or list(range(len(W)))}"
            )
        name = f"probe score of {classes[k] if classes else k!r}"
    return torch.from_numpy(W[k]).float(), float(b[min(k, len(b) - 1)]), name


def _each(texts: str | Sequence[str], one: Any) -> Any:
    if isinstance(texts, str):
        return one(texts)
    texts = list(texts)
    if not texts:
        raise AttributionInputError("no texts given: pass a string or a non-empty list")
    return [one(t) for t in texts]


def attribute_probe(
    lm: Any,
    text: str | Sequence[str],
    probe: Any,
    layer: int,
    *,
    pooling: str = "last",
    output: Any = None,
    template: str | None = None,
    pool_over: str | None = None,
    baseline_token: str | int | None = None,
    keep_first: bool | None = None,
    n_steps: int = _N_STEPS,
    internal_batch_size: int | None = _INTERNAL_BATCH_SIZE,
    method: str = _METHOD,
) -> Attribution | list[Attribution]:
    """Which input tokens drive a linear probe's score at ``layer``.

    The model runs up to residual layer ``layer`` (the forward stops there), the hidden states
    are pooled as the probe's training data were, and the probe's decision value (logit, or
    regression output) is attributed to the input embeddings by layer integrated gradients.

    Args:
        lm: a ``LoadedModel``.
        text: one text or a list (each attributed separately).
        probe: a fitted ``LogisticProbe``/``MassMeanProbe``/``RidgeProbe`` (anything with
            ``coef_``/``intercept_``) or a direction ``[d_model]``.
        layer: residual layer (hidden-state index; negative from the end).
        pooling: ``last``, ``mean``, ``first``, ``max``, ``pos:K`` or ``native``.
        output: the class (or output index) to attribute for multi-output probes.
        template: as at extraction (``prompteol``, ``echo`` or a ``{text}`` string).
        pool_over: as at extraction (``input`` or ``text``).
        baseline_token: reference token for text tokens (default pad, unk or eos).
        keep_first: keep the first token in the reference (default: for decoders without a
            special first token, where it is the attention sink; see ``integrate``).
        n_steps: integration steps.
        internal_batch_size: integration steps per forward pass (bounds memory).
        method: captum's integration rule.

    Returns:
        An ``Attribution`` (a list for a list of texts).

    Examples:
        >>> attr = attribute_probe(lm, "The city of Paris is in France.", probe, layer=15)  # doctest: +SKIP
        >>> attr.top(3), attr.relative_delta  # doctest: +SKIP
    """
    w, b, name = _linear(probe, lm.d_model, output)
    resolved, run = hidden_at(lm, layer)

    def one(t: str) -> Attribution:
        enc = encode(lm, t, template)
        pooled = _pooler(lm, pooling, template, pool_over, enc)

        def forward(ids: torch.Tensor) -> torch.Tensor:
            return pooled(run(ids)) @ w.to(ids.device) + b

        return integrate(
            lm,
            enc,
            forward,
            target=f"{name} at layer {resolved} ({pooling})",
            baseline_token=baseline_token,
            n_steps=n_steps,
            internal_batch_size=internal_batch_size,
            method=method,
            keep_first=keep_first,
        )

    return _each(text, one)


def attribute_similarity(
    lm: Any,
    text_a: str,
    text_b: str,
    *,
    pooling: str | None = None,
    layer: int = -1,
    template: str | None = None,
    pool_over: str | None = None,
    baseline_token: str | int | None = None,
    keep_first: bool | None = None,
    n_steps: int = _N_STEPS,
    internal_batch_size: int | None = _INTERNAL_BATCH_SIZE,
    method: str = _METHOD,
) -> tuple[Attribution, Attribution]:
    """Which tokens of each text drive the cosine similarity of the two texts' embeddings.

    The tokens of ``text_a`` are attributed with ``text_b``'s embedding held fixed, then the
    other way round; each result's scores add up to ``cos(a, b) - cos(reference, other)``.

    Args:
        lm: a ``LoadedModel`` (sentence encoder or LLM).
        text_a: the first text.
        text_b: the second text.
        pooling: ``native`` (default for sentence-transformers models), ``mean`` (default
            otherwise), ``last``, ``first``, ``max`` or ``pos:K``.
        layer: residual layer of the embedding (default the last).
        template: as in ``attribute_probe``.
        pool_over: as in ``attribute_probe``.
        baseline_token: as in ``attribute_probe``.
        keep_first: as in ``attribute_probe``.
        n_steps: as in ``attribute_probe``.
        internal_batch_size: as in ``attribute_probe``.
        method: as in ``attribute_probe``.

    Returns:
        ``(attribution of text_a, attribution of text_b)``.
    """
    pooling = pooling or ("native" if lm.sentence_pooling else "mean")
    resolved, run = hidden_at(lm, layer)
    encs = [encode(lm, t, template) for t in (text_a, text_b)]
    poolers = [_pooler(lm, pooling, template, pool_over, e) for e in encs]
    with torch.no_grad():
        fixed = [p(run(e.ids))[0].detach().float() for p, e in zip(poolers, encs, strict=True)]
    out = []
    for i in (0, 1):
        other = fixed[1 - i]

        def forward(ids: torch.Tensor, i: int = i, other: torch.Tensor = other) -> torch.Tensor:
            e = poolers[i](run(ids))
            return torch.nn.functional.cosine_similarity(e, other[None].to(e.device), dim=-1)

        out.append(
            integrate(
                lm,
                encs[i],
                forward,
                target=f"cos({'a' if i == 0 else 'b'}, {'b' if i == 0 else 'a'}) at layer "
                f"{resolved} ({pooling})",
                baseline_token=baseline_token,
                n_steps=n_steps,
                internal_batch_size=internal_batch_size,
                method=method,
                keep_first=keep_first,
            )
        )
    return out[0], out[1]


def attribute_next_token(
    lm: Any,
    text: str | Sequence[str],
    target: str | int,
    foil: str | int | None = None,
    *,
    position: int = -1,
    template: str | None = None,
    baseline_token: str | int | None = None,
    keep_first: bool | None = None,
    n_steps: int = _N_STEPS,
    internal_batch_size: int | None = _INTERNAL_BATCH_SIZE,
    method: str = _METHOD,
) -> Attribution | list[Attribution]:
    """Which input tokens drive the logit of ``target`` as the token after ``position``, or
    the contrast ``logit(target) - logit(foil)``.

    Args:
        lm: a decoder ``LoadedModel`` (with its LM head).
        text: the prompt (or a list of prompts).
        target: the next token (one token, e.g. ``" Paris"``) or its id.
        foil: a contrasting token: the logit difference is attributed.
        position: the token whose next-token prediction is read (default the last).
        template: as in ``attribute_probe``.
        baseline_token: as in ``attribute_probe``.
        keep_first: as in ``attribute_probe``.
        n_steps: as in ``attribute_probe``.
        internal_batch_size: as in ``attribute_probe``.
        method: as in ``attribute_probe``.

    Returns:
        An ``Attribution`` (a list for a list of texts).

    Raises:
        TargetTokenError: ``target`` or ``foil`` is not exactly one token.
        TokenIndexError: ``position`` is outside the text's tokens.
    """
    if (
        lm.kind != "decoder"
        or not hasattr(lm.model, "get_output_embeddings")
        or lm.model.get_output_embeddings() is None
    ):
        raise AttributionInputError(
            f"{lm.name} is an {lm.kind} without a language-model head: next-token attribution "
            "needs a decoder (e.g. smollm2-135m); for encoders use attribute_similarity"
        )
    t_id = single_token(lm, target, "target")
    f_id = single_token(lm, foil, "foil") if foil is not None else None
    t_name = lm.tokenizer.convert_ids_to_tokens(t_id)
    name = f"logit({t_name!r})" + (
        f" - logit({lm.tokenizer.convert_ids_to_tokens(f_id)!r})" if f_id is not None else ""
    )

    def one(t: str) -> Attribution:
        enc = encode(lm, t, template)
        pos = check_position(position, enc.ids.shape[1])
        from ._core import model_inputs

        def forward(ids: torch.Tensor) -> torch.Tensor:
            logits = lm.model(**model_inputs(lm, ids)).logits[:, pos]
            value = logits[:, t_id]
            return value - logits[:, f_id] if f_id is not None else value

        return integrate(
            lm,
            enc,
            forward,
            target=f"{name} after token {pos}",
            baseline_token=baseline_token,
            n_steps=n_steps,
            internal_batch_size=internal_batch_size,
            method=method,
            keep_first=keep_first,
        )

    return _each(text, one)
