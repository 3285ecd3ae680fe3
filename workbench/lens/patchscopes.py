"""Patchscopes (Ghandeharioun et al. 2024): let the model describe one of its own hidden states.

The residual state of (source prompt, layer ``l``, position ``t``) replaces the residual state of
a *target* prompt at layer ``l*`` and the position of a placeholder, and the model continues the
target prompt greedily. With the default identity few-shot prompt
``"cat -> cat; 1135 -> 1135; hello -> hello; ? ->"`` the model is asked to repeat what the
placeholder ``?`` holds, so the continuation reads out the patched state in words.

Works for any decoder the workbench loads (the patch is a hook on the block found by module path,
registered for the prompt's forward pass only and removed in ``finally``; generation continues
from the KV cache, so the patched state is read by every generated token's attention).

>>> from workbench.lens import Patchscope                                # doctest: +SKIP
>>> Patchscope(lm).run("The capital of France is Paris", layer=12, position=-1).description  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import PoolingError
from ..models import hook_names, hooks
from .logit import check_position, decode_tokens, encode_prompt, hidden_states, require_decoder

#: The identity few-shot prompt: the model continues ``? ->`` with what the placeholder holds.
IDENTITY_PROMPT = "cat -> cat; 1135 -> 1135; hello -> hello; ? ->"
#: Where a description stops (the identity prompt separates its examples with ``;``).
STOP_STRINGS = (";", "\n")


@dataclass
class PatchscopeResult:
    """One patched generation.

    Attributes:
        source: the source prompt; ``source_tokens`` its tokens.
        layer, position: where the state was read (hidden-state index, token index).
        source_token: the token at ``position``.
        target_prompt, target_layer, target_position: where it was written.
        generated_ids: ``[new_tokens]`` greedy continuation of the target prompt.
        text: the continuation as text; ``description``: it up to the first stop string.
    """

    source: str
    source_tokens: list[str]
    layer: int
    position: int
    source_token: str
    target_prompt: str
    target_layer: int
    target_position: int
    generated_ids: list[int]
    text: str
    description: str


class Patchscope:
    """Read hidden states by patching them into a target prompt and generating.

    Args:
        lm: a decoder ``LoadedModel``.
        target_prompt: the prompt the state is patched into (default ``IDENTITY_PROMPT``).
        placeholder: the text whose last token receives the state (its last occurrence in
            ``target_prompt``); ignored when ``target_position`` is given.
        target_position: token index in the target prompt to patch (negative from the end).
        stop: strings that end the description.

    Examples:
        >>> scope = Patchscope(lm)                                            # doctest: +SKIP
        >>> res = scope.run("Paris", layer=10, position=-1, target_layer=10)   # doctest: +SKIP
        >>> res.description                                                   # doctest: +SKIP
    """

    def __init__(
        self,
        lm: Any,
        target_prompt: str = IDENTITY_PROMPT,
        placeholder: str = "?",
        target_position: int | None = None,
        stop: Sequence[str] = STOP_STRINGS,
    ) -> None:
        require_decoder(lm, "Patchscope")
        self.lm = lm
        self.target_prompt = target_prompt
        self.target_ids = encode_prompt(lm, target_prompt)
        if target_position is None:
            target_position = _placeholder_position(lm, target_prompt, placeholder)
        self.target_position = check_position(
            target_position, len(self.target_ids), "target_position"
        )
        self.stop = tuple(stop)

    # -- generation --------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        ids: Sequence[int],
        max_new_tokens: int = 10,
        patch: tuple[int, int, torch.Tensor] | None = None,
    ) -> list[int]:
        """Greedy continuation of ``ids``; ``patch = (layer, position, state [d_model])`` replaces
        that residual state during the prompt's forward pass."""
        lm = self.lm
        model = lm.model
        eos = lm.tokenizer.eos_token_id
        input_ids = torch.tensor([list(ids)], device=lm.device)
        out_ids: list[int] = []
        with hooks.eval_mode(model):
            with _patched(lm, patch):
                out = model(**hooks.forward_inputs(lm, input_ids, module=model, use_cache=True))
            for _ in range(max_new_tokens):
                nxt = int(out.logits[0, -1].argmax())
                out_ids.append(nxt)
                if nxt == eos or self._stopped(out_ids):
                    break
                out = model(
                    input_ids=torch.tensor([[nxt]], device=lm.device),
                    past_key_values=out.past_key_values,
                    use_cache=True,
                )
        return out_ids

    def _stopped(self, ids: list[int]) -> bool:
        text = self.lm.tokenizer.decode(ids).lstrip()  # leading newlines start, not end, it
        return any(s in text for s in self.stop)

    def _describe(self, text: str) -> str:
        text = text.lstrip()
        cut = len(text)
        for s in self.stop:
            i = text.find(s)
            if i >= 0:
                cut = min(cut, i)
        return text[:cut].strip()

    # -- the verb ----------------------------------------------------------------------------------

    def run(
        self,
        source: str,
        layer: int,
        position: int = -1,
        target_layer: int | None = None,
        max_new_tokens: int = 10,
    ) -> PatchscopeResult:
        """Patch (``source``, ``layer``, ``position``) into the target prompt at ``target_layer``
        (default: the same layer) and generate.

        Args:
            source: the source prompt.
            layer: residual layer to read (hidden-state index ``0..n_layers``, negative from the
                end).
            position: token index in ``source`` (negative from the end; -1 = last token).
                Position 0 of a model without a BOS token (SmolLM2) is an attention sink: past
                the first blocks its state no longer says which token it is, so read a later
                position (e.g. ``"I visited Paris"``, -1, not ``"Paris"``, 0).
            target_layer: residual layer to write, ``0..n_layers-1`` (the last hidden state is
                the final norm's output and feeds only the unembedding).
            max_new_tokens: greedy tokens to generate at most.
        """
        lm = self.lm
        (src_layer,) = hook_names.normalize_layers(int(layer), lm.n_layers, lm.name)
        tgt_layer = _writable_layer(lm, src_layer if target_layer is None else int(target_layer))
        ids = encode_prompt(lm, source)
        pos = check_position(position, len(ids))
        state = hidden_states(lm, torch.tensor([ids]))[src_layer][0, pos]
        gen = self.generate(
            self.target_ids, max_new_tokens, patch=(tgt_layer, self.target_position, state)
        )
        text = lm.tokenizer.decode(gen)
        tokens = decode_tokens(lm.tokenizer, ids)
        return PatchscopeResult(
            source=source,
            source_tokens=tokens,
            layer=src_layer,
            position=pos,
            source_token=tokens[pos],
            target_prompt=self.target_prompt,
            target_layer=tgt_layer,
            target_position=self.target_position,
            generated_ids=gen,
            text=text,
            description=self._describe(text),
        )

    def run_layers(
        self,
        source: str,
        layers: str | Sequence[int] = "all",
        position: int = -1,
        target_layer: int | None = None,
        max_new_tokens: int = 10,
    ) -> list[PatchscopeResult]:
        """:meth:`run` at each source layer (the last, non-residual layer is skipped for
        ``layers="all"``); ``target_layer`` None patches each into the same layer."""
        n = self.lm.n_layers
        chosen = hook_names.normalize_layers(layers, n, self.lm.name)
        if isinstance(layers, str) and layers.strip().lower() == "all" and self.lm.final_norm:
            chosen = [x for x in chosen if x != n]
        return [self.run(source, x, position, target_layer, max_new_tokens) for x in chosen]


def _writable_layer(lm: Any, layer: int) -> int:
    return hooks.residual_layer(lm, layer, what="target layer", verb="patch")


def _placeholder_position(lm: Any, prompt: str, placeholder: str) -> int:
    """Index of the token covering the last character of the last ``placeholder`` in
    ``prompt``."""
    at = prompt.rfind(placeholder) if placeholder else -1
    if at < 0:
        raise PoolingError(
            f"placeholder {placeholder!r} does not occur in the target prompt {prompt!r}: put it "
            "where the state should go, or pass target_position="
        )
    char = at + len(placeholder) - 1
    enc = lm.tokenizer(prompt, add_special_tokens=True, return_offsets_mapping=True)
    for i, (start, end) in enumerate(enc["offset_mapping"]):
        if start <= char < end:
            return i
    raise PoolingError(
        f"no token of the target prompt covers the placeholder {placeholder!r} (offsets "
        f"{enc['offset_mapping']}): pass target_position= explicitly"
    )


@contextmanager
def _patched(lm: Any, patch: tuple[int, int, torch.Tensor] | None) -> Iterator[None]:
    """Replace the residual state at ``(layer, position)`` with ``state`` in the forward passes
    inside the context (a ``hooks.write``, removed on exit)."""
    if patch is None:
        yield
        return
    layer, position, state = patch

    def put(hidden: torch.Tensor) -> torch.Tensor:
        if hidden.dim() != 3 or hidden.shape[1] <= position:
            return hidden  # a cached single-token step: nothing at that position
        hidden = hidden.clone()
        hidden[:, position] = state.to(hidden.device, hidden.dtype)
        return hidden

    with hooks.write(lm, hook_names.resid_hook(layer, lm.n_layers, lm.final_norm), put):
        yield


__all__ = ["IDENTITY_PROMPT", "Patchscope", "PatchscopeResult"]
