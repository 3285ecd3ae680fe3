"""Causal checks of probe directions: steer the residual stream and read the model's own output.

A probe that decodes "true vs false" from layer ``l`` shows the information is *there*; whether the
model *uses* it is a different question. ``steer`` adds ``alpha * u`` to (or projects ``u`` out of)
the residual stream at one layer during a forward pass; ``CausalCheck`` measures what that does to
``log P(" True") - log P(" False")`` after a prompt, and what it costs elsewhere (KL divergence of
next-token distributions on unrelated prompts).

>>> from workbench.probing import CausalCheck, steer                    # doctest: +SKIP
>>> table = CausalCheck(lm).run(texts, {12: direction}, alphas=(-0.1, 0, 0.1))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from ..errors import ContextLengthError
from ..models import hooks
from ..models.hooks import Positions, Steering, check_positions, eval_mode, residual_layer
from ._directions import unit_direction

MODES = hooks.STEER_MODES
SCALES = ("norm", "absolute")

#: Neutral prompts whose next-token distributions should not move when a "truth" direction is
#: steered: the side effect is measured as KL divergence on them.
UNRELATED_PROMPTS = (
    "The weather today is",
    "My favourite food is",
    "She opened the door and",
    "The best way to learn a language is",
    "Once upon a time there was a",
    "To make a cup of tea, first",
    "The train to the airport leaves at",
    "He picked up the guitar and",
)


def _unit(direction: Any, d_model: int, where: str = "direction") -> torch.Tensor:
    return torch.from_numpy(unit_direction(direction, d_model, where=where)).float()


@contextmanager
def steer(
    lm: Any,
    layer: int,
    direction: Any,
    alpha: float = 1.0,
    mode: str = "add",
    positions: Positions = "all",
    attention_mask: torch.Tensor | None = None,
) -> Iterator[Steering]:
    """Modify the residual stream at ``layer`` in every forward pass run inside the context.

    ``add``: ``h += alpha * u`` at the chosen positions, with ``u = direction / |direction|``;
    ``alpha`` is in absolute units of the residual stream here (``CausalCheck`` scales it by the
    stream's norm). ``ablate``: ``h -= (h . u) u`` (``alpha`` is ignored).

    The hook is registered first among the module's hooks, so everything downstream (later hooks,
    ``output_hidden_states``, extraction) sees the steered stream, and it is removed in ``finally``
    (``workbench.models.hooks.steer``, which this normalises the direction for).

    Args:
        lm: a decoder or encoder ``LoadedModel``.
        layer: residual layer as in ``hidden_states``: 0 is the input of block 0 (``hook_embed``),
            ``l`` in ``1..n-1`` the output of block ``l-1``; negative counts from the end. Layer
            ``n`` is refused when it is the final norm's output (steer ``n-1``).
        direction: ``[d_model]`` (numpy or torch; ``[1, d_model]`` is accepted) or a fitted probe.
        alpha: multiple of the unit direction to add.
        mode: ``"add"`` or ``"ablate"``.
        positions: ``"all"`` real tokens, ``"last"`` real token, or indices among each row's real
            tokens (negative from the end).
        attention_mask: ``[batch, pos]`` of the forward to come, when it is padded (any side);
            or set ``steering.attention_mask`` before each forward.

    Yields:
        The ``Steering`` state (``attention_mask`` can be changed between forwards).

    Examples:
        >>> with steer(lm, 12, direction, alpha=40.0, positions="last"):  # doctest: +SKIP
        ...     logits = lm.model(**enc).logits
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: use one of {list(MODES)}")
    residual_layer(lm, layer)
    with hooks.steer(
        lm, layer, _unit(direction, lm.d_model), alpha, mode, positions, attention_mask
    ) as state:
        yield state


class CausalCheck:
    """Does the model *use* a probe direction? Steer it and read the model's own answer.

    For each layer and alpha, ``alpha * u`` is added to the residual stream (or ``u`` projected
    out) while the model reads ``template`` filled with each text; the effect is the change in
    ``log P(targets[0]) - log P(targets[1])`` at the prompt's last token, and the side effect the
    mean KL divergence ``KL(p_base || p_steered)`` of the next-token distributions after
    ``unrelated`` prompts (steered the same way).

    Alpha is in units of the residual stream's norm: with ``scale="norm"`` (default) it is
    multiplied by the mean L2 norm of the residual stream at that layer over the real tokens of
    the templated texts (first token excluded: it is often an attention sink whose norm is many
    times the others'), so alphas compare across layers; ``scale="absolute"`` adds ``alpha * u``
    as is. Useful alphas are small: on SmolLM2-135M the true-minus-false class-mean difference is
    about 2% of the norm, ``alpha = ±0.1`` moves the answer by a few tenths of a nat at a KL of
    ~0.04 on unrelated prompts, and ``|alpha| >= 1`` overwrites the stream (KL of several nats).

    Args:
        lm: a decoder ``LoadedModel`` (the full model with its LM head runs).
        template: prompt with ``{text}`` once; the answer is read after its last token.
        targets: two strings that are single tokens of the tokenizer (``(" True", " False")``).
        unrelated: prompts for the side effect.

    Examples:
        >>> check = CausalCheck(lm)                                              # doctest: +SKIP
        >>> table = check.run(texts, {12: probe.directions_[0]}, alphas=(-0.1, 0, 0.1))  # doctest: +SKIP
        >>> table[["layer", "alpha", "delta_vs_alpha0", "kl_unrelated"]]          # doctest: +SKIP
        >>> check.per_text                                                        # doctest: +SKIP
    """

    def __init__(
        self,
        lm: Any,
        template: str = "{text} This statement is",
        targets: Sequence[str] = (" True", " False"),
        unrelated: Sequence[str] = UNRELATED_PROMPTS,
    ) -> None:
        if getattr(lm, "kind", None) != "decoder":
            raise ValueError(
                f"CausalCheck needs a decoder with an LM head: {getattr(lm, 'name', lm)!r} is "
                f"{getattr(lm, 'kind', 'not a LoadedModel')!r}, which predicts no next token — "
                "load a causal LM (e.g. 'smollm2-135m'); steer() itself works on encoders"
            )
        if template.count("{text}") != 1:
            raise ValueError(
                f"template={template!r} must contain '{{text}}' exactly once, e.g. "
                "'{text} This statement is'"
            )
        if len(targets) != 2:
            raise ValueError(f"targets={targets!r}: give two strings, e.g. (' True', ' False')")
        if not unrelated:
            raise ValueError("unrelated=() leaves nothing to measure the side effect on")
        self.lm = lm
        self.template = template
        self.targets = tuple(targets)
        self.unrelated = tuple(unrelated)
        self.target_ids = tuple(self._single_token(t) for t in self.targets)
        self.per_text: Any = None

    def _single_token(self, target: str) -> int:
        ids = self.lm.tokenizer(target, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            pieces = self.lm.tokenizer.convert_ids_to_tokens(ids)
            raise ValueError(
                f"target {target!r} is {len(ids)} tokens for {self.lm.name}'s tokenizer "
                f"({pieces}): each target must be a single token — try another spelling (with or "
                "without a leading space, other case) or other answer words"
            )
        return int(ids[0])

    # -- forward passes ----------------------------------------------------------------------------

    def _encode(self, prompts: Sequence[str]) -> list[list[int]]:
        ids = self.lm.tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
        limit = self.lm.max_length
        long_rows = [(i, len(x)) for i, x in enumerate(ids) if len(x) > limit]
        if long_rows:
            raise ContextLengthError(
                f"{len(long_rows)} prompts are longer than {self.lm.name}'s context of {limit} "
                f"tokens (row, tokens): {long_rows[:10]}; shorten the texts"
            )
        if any(len(x) == 0 for x in ids):
            raise ValueError("a prompt tokenises to no tokens: drop empty texts")
        return ids

    def _batches(
        self, ids: list[list[int]], batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Left-padded ``(input_ids, attention_mask)`` ``[b, t]``: the last column is every
        row's last real token."""
        pad = self.lm.tokenizer.pad_token_id
        pad = 0 if pad is None else int(pad)
        for start in range(0, len(ids), batch_size):
            rows = ids[start : start + batch_size]
            width = max(len(r) for r in rows)
            input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for b, r in enumerate(rows):
                input_ids[b, width - len(r) :] = torch.tensor(r, dtype=torch.long)
                mask[b, width - len(r) :] = 1
            yield input_ids.to(self.lm.device), mask.to(self.lm.device)

    def _forward(
        self,
        ids: list[list[int]],
        batch_size: int,
        steering: Steering | None = None,
        norm_layers: Sequence[int] = (),
    ) -> tuple[torch.Tensor, dict[int, float]]:
        """Next-token log-probabilities ``[n, vocab]`` at the last token, and the mean residual
        norm (real tokens but the first) at ``norm_layers``."""
        model = self.lm.model
        kwargs: dict[str, Any] = {}
        if hooks.accepts(model, "logits_to_keep"):
            kwargs["logits_to_keep"] = 1
        out: list[torch.Tensor] = []
        sums = dict.fromkeys(norm_layers, 0.0)
        count = 0
        for input_ids, mask in self._batches(ids, batch_size):
            inputs = hooks.forward_inputs(self.lm, input_ids, mask, module=model)
            if steering is not None:
                steering.attention_mask = mask
            result = model(**inputs, output_hidden_states=bool(norm_layers), **kwargs)
            out.append(result.logits[:, -1].float().log_softmax(-1))
            if norm_layers:
                keep = mask.bool() & (mask.cumsum(-1) > 1)  # real tokens but each row's first
                if not keep.any():
                    keep = mask.bool()
                count += int(keep.sum())
                for layer in norm_layers:
                    norms = result.hidden_states[layer].float().norm(dim=-1)
                    sums[layer] += float(norms[keep].sum())
        return torch.cat(out), {layer: s / max(count, 1) for layer, s in sums.items()}

    # -- the verb ----------------------------------------------------------------------------------

    def run(
        self,
        texts: Sequence[str],
        directions: Mapping[int, Any],
        alphas: Sequence[float] = (-0.2, -0.1, 0, 0.1, 0.2),
        mode: str = "add",
        positions: Positions = "all",
        batch_size: int = 8,
        scale: str = "norm",
    ) -> Any:
        """Steer each ``(layer, direction)`` at each alpha and measure effect and side effect.

        Args:
            texts: statements, each put into ``template``.
            directions: ``{layer: [d_model]}`` (unit-normalised here), e.g. a probe's
                ``directions_[0]`` or a difference of class means.
            alphas: multiples of the direction (``add``), in units of the layer's residual norm
                with ``scale="norm"``; ignored by ``ablate``, which gives one row per layer with
                ``alpha`` NaN.
            mode: ``"add"`` or ``"ablate"``.
            positions: ``"all"``, ``"last"`` or indices among each prompt's real tokens; the
                unrelated prompts are steered at the same positions.
            batch_size: prompts per forward pass.
            scale: ``"norm"`` (alpha in units of the layer's mean residual norm) or
                ``"absolute"``.

        Returns:
            A ``pandas.DataFrame`` with one row per ``(layer, alpha)``: ``layer, alpha, mode,
            mean_logit_diff, delta_vs_alpha0, kl_unrelated, alpha_abs, resid_norm``.
            ``delta_vs_alpha0`` is the mean change from the unsteered model. Per-text values
            (``layer, alpha, mode, text_index, logit_diff, base_logit_diff, delta``) are left in
            ``self.per_text``.
        """
        import pandas as pd

        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: use one of {list(MODES)}")
        if scale not in SCALES:
            raise ValueError(f"scale={scale!r}: use one of {list(SCALES)}")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be positive")
        texts = list(texts)
        if not texts:
            raise ValueError("no texts given: pass a non-empty list of statements")
        if not directions:
            raise ValueError("directions is empty: pass {layer: direction}")
        positions = check_positions(positions)
        units: dict[int, torch.Tensor] = {}
        for layer, direction in directions.items():
            resolved = residual_layer(self.lm, layer)
            if resolved in units:
                raise ValueError(f"layer {layer} is given twice (as {resolved})")
            units[resolved] = _unit(direction, self.lm.d_model, f"directions[{layer}]")
        steps: list[float] = [float("nan")] if mode == "ablate" else [float(a) for a in alphas]
        if not steps:
            raise ValueError("alphas=() is empty: pass e.g. (-0.1, 0, 0.1)")

        prompt_ids = self._encode([self.template.replace("{text}", t) for t in texts])
        unrelated_ids = self._encode(self.unrelated)
        t0, t1 = self.target_ids
        rows: list[dict[str, Any]] = []
        per_text: list[pd.DataFrame] = []
        with eval_mode(self.lm.model), torch.inference_mode():
            base_lp, norms = self._forward(
                prompt_ids, batch_size, norm_layers=sorted(units) if scale == "norm" else ()
            )
            base_diff = (base_lp[:, t0] - base_lp[:, t1]).cpu().numpy().astype(np.float64)
            base_unrelated, _ = self._forward(unrelated_ids, batch_size)
            for layer, u in units.items():
                norm = norms.get(layer, 1.0)
                for alpha in steps:
                    alpha_abs = 0.0 if np.isnan(alpha) else alpha * norm
                    with steer(self.lm, layer, u, alpha_abs, mode, positions) as steering:
                        lp, _ = self._forward(prompt_ids, batch_size, steering)
                        lp_unrel, _ = self._forward(unrelated_ids, batch_size, steering)
                    diff = (lp[:, t0] - lp[:, t1]).cpu().numpy().astype(np.float64)
                    kl = (base_unrelated.exp() * (base_unrelated - lp_unrel)).sum(-1)
                    rows.append(
                        {
                            "layer": layer,
                            "alpha": alpha,
                            "mode": mode,
                            "mean_logit_diff": float(diff.mean()),
                            "delta_vs_alpha0": float((diff - base_diff).mean()),
                            "kl_unrelated": float(kl.clamp(min=0).mean()),
                            "alpha_abs": alpha_abs if mode == "add" else float("nan"),
                            "resid_norm": norms.get(layer, float("nan")),
                        }
                    )
                    per_text.append(
                        pd.DataFrame(
                            {
                                "layer": layer,
                                "alpha": alpha,
                                "mode": mode,
                                "text_index": np.arange(len(texts)),
                                "logit_diff": diff,
                                "base_logit_diff": base_diff,
                                "delta": diff - base_diff,
                            }
                        )
                    )
        self.per_text = pd.concat(per_text, ignore_index=True)
        return pd.DataFrame(rows)
