"""The one way to touch a model's activations: read, write and stop at named hook points.

Every user of hooks (extraction, attribution, steering, Patchscopes, the lenses, the embedders)
goes through these context managers, which register PyTorch hooks on enter and remove them in
``finally``. Hook points are named as in :mod:`workbench.models.hook_names`
(``hook_embed``, ``blocks.{l}.hook_resid_post``, ``blocks.{l}.hook_attn_out``, ...) and found
by ``LoadedModel.hook_module``.

>>> with read(lm, ["blocks.3.hook_resid_post"]) as seen, stop_after(lm, "blocks.3.hook_resid_post"):
...     run(lm.base_model, forward_inputs(lm, ids))                          # doctest: +SKIP
>>> seen["blocks.3.hook_resid_post"].shape  # [batch, pos, d_model]          # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..errors import LayerOutOfRangeError, PoolingError
from . import hook_names

Positions = str | Sequence[int]


class StopForward(Exception):
    """Raised by :func:`stop_after` once the forward has passed its hook point; :func:`run`
    catches it, so the rest of the model is skipped."""


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """``module.eval()`` inside the context; its training flag is restored after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def accepts(module: nn.Module, arg: str) -> bool:
    """Whether ``module.forward`` takes keyword ``arg``."""
    return arg in inspect.signature(module.forward).parameters


def forward_inputs(
    lm: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    module: nn.Module | None = None,
    use_cache: bool = False,
) -> dict[str, Any]:
    """Keyword arguments of ``module`` (default the base model) for ``input_ids`` ``[batch, pos]``.

    - ``attention_mask`` ``[batch, pos]`` (default: every token is real);
    - ``position_ids`` count real tokens only (``cumsum(mask) - 1``), so left and right padding
      give the same vectors, where the model takes them;
    - ``token_type_ids`` zeros only where the model has a segment embedding (BERT's
      ``type_vocab_size``): GPT-2 also accepts them but embeds them with its token embedding;
    - ``use_cache`` as given (off by default), where the model takes it.
    """
    module = lm.base_model if module is None else module
    device = lm.device
    input_ids = input_ids.to(device)
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(device)
    kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask}
    if accepts(module, "position_ids"):
        kwargs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)
    segments = int(getattr(lm.config, "type_vocab_size", None) or 0)
    if segments and accepts(module, "token_type_ids"):
        kwargs["token_type_ids"] = torch.zeros_like(input_ids)
    if accepts(module, "use_cache"):
        kwargs["use_cache"] = use_cache
    return kwargs


def run(module: nn.Module, inputs: dict[str, Any], **extra: Any) -> Any:
    """``module(**inputs, **extra)``, or None when a :func:`stop_after` hook stopped it."""
    try:
        return module(**inputs, **extra)
    except StopForward:
        return None


def first_tensor(output: Any) -> torch.Tensor:
    """The hidden states of a module output: the tensor, or the first item of a tuple/ModelOutput."""
    if isinstance(output, torch.Tensor):
        return output
    return output[0]


def _hidden_input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    return args[0] if args else kwargs["hidden_states"]


@contextmanager
def read(
    lm: Any,
    names: Sequence[str],
    fn: Callable[[str, torch.Tensor], None] | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Read hook points in every forward run inside the context.

    Args:
        lm: a ``LoadedModel``.
        names: hook point names.
        fn: called as ``fn(name, hidden [batch, pos, d_model])`` when the forward passes each
            point; without it the yielded dict keeps the latest tensor per name.

    Yields:
        ``{name: [batch, pos, d_model]}`` (filled only when ``fn`` is None).
    """
    seen: dict[str, torch.Tensor] = {}
    record = fn if fn is not None else seen.__setitem__
    handles: list[Any] = []

    def pre(name: str) -> Any:
        def hook(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            record(name, _hidden_input(args, kwargs))

        return hook

    def post(name: str) -> Any:
        def hook(mod: nn.Module, args: Any, output: Any) -> None:
            record(name, first_tensor(output))

        return hook

    try:
        for name in names:
            module, where = lm.hook_module(name)
            if where == "input":
                handles.append(module.register_forward_pre_hook(pre(name), with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(post(name)))
        yield seen
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def write(lm: Any, name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace the hidden states at hook point ``name`` by ``fn(hidden)`` in every forward run
    inside the context.

    The hook is registered first among the module's hooks, so everything downstream (later hooks,
    ``output_hidden_states``, :func:`read`) sees the new value.

    Args:
        lm: a ``LoadedModel``.
        name: a hook point name.
        fn: ``[batch, pos, d_model] -> [batch, pos, d_model]``.
    """
    module, where = lm.hook_module(name)

    def pre(mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args:
            return (fn(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}

    def post(mod: nn.Module, args: Any, output: Any) -> Any:
        if isinstance(output, torch.Tensor):
            return fn(output)
        if isinstance(output, tuple):
            return (fn(output[0]), *output[1:])
        raise TypeError(
            f"the output of {name} is a {type(output).__name__}, which cannot be written: "
            "expected a tensor or a tuple whose first item is the hidden states"
        )

    if where == "input":
        handle = module.register_forward_pre_hook(pre, with_kwargs=True, prepend=True)
    else:
        handle = module.register_forward_hook(post, prepend=True)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def stop_after(lm: Any, name: str) -> Iterator[None]:
    """Stop every forward run inside the context once it has passed hook point ``name``
    (raises :class:`StopForward`, which :func:`run` catches).

    Enter it after the :func:`read` or :func:`write` contexts of the same point, so their hooks
    run first.
    """
    module, where = lm.hook_module(name)

    def stop(*_: Any) -> None:
        raise StopForward

    if where == "input":
        handle = module.register_forward_pre_hook(stop, with_kwargs=True)
    else:
        handle = module.register_forward_hook(stop)
    try:
        yield
    finally:
        handle.remove()


# -- steering: add a direction to (or project it out of) the residual stream ----------------------

STEER_MODES = ("add", "ablate")


class Steering:
    """The live state of one :func:`steer` context: where, what and how much.

    Attributes:
        layer: residual layer (``0..n_layers``, hidden-state index) being modified.
        direction: unit vector ``[d_model]`` (float32, on the model's device).
        alpha: added multiple of ``direction`` (``add``; absolute units of the residual stream).
        mode: ``"add"`` or ``"ablate"``.
        positions: ``"all"``, ``"last"`` or token indices among each row's real tokens.
        attention_mask: ``[batch, pos]`` mask of the *next* forward pass, or None (no padding).
            Set it before each padded forward so positions count real tokens only.
    """

    def __init__(
        self, layer: int, direction: torch.Tensor, alpha: float, mode: str, positions: Positions
    ) -> None:
        self.layer = layer
        self.direction = direction
        self.alpha = float(alpha)
        self.mode = mode
        self.positions = positions
        self.attention_mask: torch.Tensor | None = None
        self.calls = 0

    def select(self, batch: int, length: int, device: torch.device) -> torch.Tensor:
        """Boolean ``[batch, pos]`` of the positions to modify."""
        if self.attention_mask is None:
            mask = torch.ones((batch, length), dtype=torch.bool, device=device)
        else:
            mask = self.attention_mask.to(device=device, dtype=torch.bool)
            if tuple(mask.shape) != (batch, length):
                raise ValueError(
                    f"steering at layer {self.layer}: attention_mask has shape {tuple(mask.shape)} "
                    f"but the hidden states are [batch={batch}, pos={length}]; set "
                    "steering.attention_mask to the mask of the forward pass being run (generation "
                    "with a KV cache is not supported: pass the full sequence)"
                )
        return position_mask(mask, self.positions)

    def apply(self, hidden: torch.Tensor) -> torch.Tensor:
        """``hidden`` ``[batch, pos, d_model]`` with the direction added or projected out."""
        if hidden.dim() != 3:
            raise ValueError(
                f"steering expects residual states [batch, pos, d_model], got {tuple(hidden.shape)}"
            )
        self.calls += 1
        sel = self.select(hidden.shape[0], hidden.shape[1], hidden.device)[..., None]
        u = self.direction.to(hidden.device)
        if self.mode == "add":
            steered = hidden + (self.alpha * u).to(hidden.dtype)
        else:
            h = hidden.float()
            steered = (h - (h @ u)[..., None] * u).to(hidden.dtype)
        return torch.where(sel, steered, hidden)


def position_mask(mask: torch.Tensor, positions: Positions) -> torch.Tensor:
    """``[batch, pos]`` selection of ``positions`` from a real-token ``mask`` (any padding side):
    ``"all"``, ``"last"`` or indices among each row's real tokens (negative from the end)."""
    if isinstance(positions, str):
        if positions == "all":
            return mask
        if positions == "last":
            return mask & (mask.cumsum(-1) == mask.sum(-1, keepdim=True))
        raise PoolingError(
            f"positions={positions!r}: use 'all', 'last' or a list of token indices (counted "
            "among each text's real tokens; negative from the end)"
        )
    rank = mask.long().cumsum(-1) - 1  # index of each real token among its row's real tokens
    n_real = mask.long().sum(-1, keepdim=True)
    out = torch.zeros_like(mask)
    for k in positions:
        k = int(k)
        index = n_real + k if k < 0 else torch.full_like(n_real, k)
        bad = (index < 0) | (index >= n_real)
        if bad.any():
            shortest = int(n_real[bad].min())
            raise PoolingError(
                f"position {k} does not exist in a sequence of {shortest} tokens: positions count "
                "the real tokens of each prompt (0-based, negative from the end); use "
                "positions='last' or indices valid for every prompt"
            )
        out |= mask & (rank == index)
    return out


def check_positions(positions: Positions) -> Positions:
    """``positions`` validated: ``"all"``, ``"last"`` or a non-empty list of ints."""
    if isinstance(positions, str):
        if positions not in ("all", "last"):
            raise PoolingError(
                f"positions={positions!r}: use 'all', 'last' or a list of token indices"
            )
        return positions
    try:
        out = [int(p) for p in positions]
    except (TypeError, ValueError):
        raise PoolingError(
            f"positions={positions!r}: use 'all', 'last' or a list of int token indices"
        ) from None
    if not out:
        raise PoolingError("positions=[] selects nothing: use 'all', 'last' or token indices")
    return out


def residual_layer(lm: Any, layer: int, what: str = "layer", verb: str = "steer") -> int:
    """``layer`` normalised to ``0..n_layers``, refusing the final norm's output, which is not
    the residual stream and which only the unembedding reads (``what`` and ``verb`` word the
    error: "target layer", "patch")."""
    (resolved,) = hook_names.normalize_layers(int(layer), lm.n_layers, lm.name)
    if resolved == lm.n_layers and lm.final_norm:
        raise LayerOutOfRangeError(
            f"{what} {layer} of {lm.name} is the output of its final norm (hidden_states"
            f"[{lm.n_layers}]), not the residual stream, and nothing after it but the unembedding "
            f"reads it: {verb} layer {lm.n_layers - 1} (the output of the last block but one) or "
            f"lower; layers 0..{lm.n_layers - 1} are residual"
        )
    return resolved


@contextmanager
def steer(
    lm: Any,
    layer: int,
    unit: torch.Tensor,
    alpha: float = 1.0,
    mode: str = "add",
    positions: Positions = "all",
    attention_mask: torch.Tensor | None = None,
) -> Iterator[Steering]:
    """Modify the residual stream at ``layer`` in every forward pass run inside the context.

    ``add``: ``h += alpha * unit`` at the chosen positions; ``ablate``: ``h -= (h . unit) unit``.
    A :func:`write` at the layer's hook point; ``workbench.probing.steer`` is the public verb,
    which also takes probes and unnormalised directions.

    Args:
        lm: a ``LoadedModel``.
        layer: residual layer (hidden-state index, negative from the end; not the final norm's).
        unit: unit vector ``[d_model]``.
        alpha: multiple of ``unit`` to add (absolute units of the residual stream).
        mode: ``"add"`` or ``"ablate"``.
        positions: ``"all"``, ``"last"`` or indices among each row's real tokens.
        attention_mask: ``[batch, pos]`` of the forward to come, when it is padded.

    Yields:
        The ``Steering`` state (``attention_mask`` can be changed between forwards).
    """
    if mode not in STEER_MODES:
        raise ValueError(f"mode={mode!r}: use one of {list(STEER_MODES)}")
    resolved = residual_layer(lm, layer)
    state = Steering(resolved, unit.float().to(lm.device), alpha, mode, check_positions(positions))
    state.attention_mask = attention_mask
    with write(lm, hook_names.resid_hook(resolved, lm.n_layers, lm.final_norm), state.apply):
        yield state


__all__ = [
    "STEER_MODES",
    "Steering",
    "StopForward",
    "accepts",
    "check_positions",
    "eval_mode",
    "first_tensor",
    "forward_inputs",
    "position_mask",
    "read",
    "residual_layer",
    "run",
    "steer",
    "stop_after",
    "write",
]
