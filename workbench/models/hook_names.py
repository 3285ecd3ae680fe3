"""One activation naming scheme for every model (TransformerLens style).

Hook points:
    ``hook_embed``                   input of block 0 (embeddings, with positions/LayerNorm where the
                                     model adds them) = Hugging Face ``hidden_states[0]`` =
                                     TransformerLens's ``blocks.0.hook_resid_pre``
    ``blocks.{l}.hook_resid_post``   output of block ``l`` (the residual stream after it)
    ``blocks.{l}.hook_attn_out``     output of block ``l``'s attention, before the residual add
    ``blocks.{l}.hook_mlp_out``      output of block ``l``'s MLP, before the residual add
    ``ln_final.hook_normalized``     the base model's final, normalised state (decoders with a final
                                     norm: Llama ``norm``, GPT-2 ``ln_f``)

``blocks.{l}.hook_resid_pre`` (the input of block ``l``, as in TransformerLens) is accepted as
another name of the same tensor: ``hook_embed`` for ``l = 0``, else ``blocks.{l-1}.hook_resid_post``
(:func:`canonical`); stores and ``hook_points()`` list the canonical names only.

Layers index the residual stream the way Hugging Face's ``output_hidden_states`` does:
layer 0 is ``hook_embed``, layer ``l`` in ``1..n-1`` is ``blocks.{l-1}.hook_resid_post``, and layer
``n`` is ``ln_final.hook_normalized`` when the model has a final norm (as ``hidden_states[n]`` is),
else ``blocks.{n-1}.hook_resid_post``. Negative layers count from the end (-1 is layer n).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from ..errors import LayerOutOfRangeError, UnknownHookPointError, arg

EMBED = "hook_embed"
FINAL_NORM = "ln_final.hook_normalized"
COMPONENTS = ("resid_post", "attn_out", "mlp_out")
_BLOCK_RE = re.compile(r"^blocks\.(-?\d+)\.hook_(resid_post|attn_out|mlp_out|resid_pre)$")
_RESID_PRE_RE = re.compile(r"^blocks\.(-?\d+|\*)\.hook_resid_pre$")


def block_hook(block: int, component: str = "resid_post") -> str:
    """``blocks.{block}.hook_{component}``."""
    if component not in COMPONENTS:
        raise UnknownHookPointError(
            f"unknown block component {component!r}: valid components are {list(COMPONENTS)}"
        )
    return f"blocks.{block}.hook_{component}"


def parse_hook(name: str) -> tuple[int | None, str]:
    """``(block, component)`` of a hook name; block is None for ``hook_embed`` / final norm."""
    if name == EMBED:
        return None, "embed"
    if name == FINAL_NORM:
        return None, "final_norm"
    m = _BLOCK_RE.match(name)
    if not m:
        raise UnknownHookPointError(
            f"{name!r} is not a hook point name: use 'hook_embed', "
            "'blocks.{l}.hook_resid_post', 'blocks.{l}.hook_attn_out', 'blocks.{l}.hook_mlp_out', "
            "'blocks.{l}.hook_resid_pre' or 'ln_final.hook_normalized'"
        )
    return int(m.group(1)), m.group(2)


def canonical(name: str, n_blocks: int) -> str:
    """The canonical name of a hook point: ``blocks.{l}.hook_resid_pre`` (negative ``l`` counts
    from the end) becomes ``hook_embed`` or ``blocks.{l-1}.hook_resid_post``; others are
    returned unchanged.

    Raises:
        LayerOutOfRangeError: a ``resid_pre`` block outside ``-n_blocks..n_blocks-1``.
    """
    m = _RESID_PRE_RE.match(name)
    if m is None or m.group(1) == "*":
        return name
    block = int(m.group(1))
    if not -n_blocks <= block < n_blocks:
        raise LayerOutOfRangeError(
            f"block {block} does not exist: the model has blocks 0..{n_blocks - 1} "
            f"(negative down to {-n_blocks})"
        )
    block %= n_blocks
    return EMBED if block == 0 else block_hook(block - 1, "resid_post")


def normalize_layers(
    layers: str | int | Iterable[int], n_layers: int, model_name: str = "the model"
) -> list[int]:
    """Residual layer indices in ``0..n_layers`` from ``"all"``, an int, a list, or a string such
    as ``"0,5,-1"`` / ``"10:20"``; negative indices count from the end.

    Raises:
        LayerOutOfRangeError: an index outside ``-(n_layers+1)..n_layers``.
    """
    if isinstance(layers, str):
        text = layers.strip().lower()
        if text == "all":
            return list(range(n_layers + 1))
        out: list[int] = []
        for part in text.split(","):
            part = part.strip()
            if ":" in part:
                lo, _, hi = part.partition(":")
                start = _check_layer(_layer_int(lo, layers) if lo else 0, n_layers, model_name)
                # exclusive stop, as in a Python slice: "0:31" on a 30-block model is all layers
                high = _layer_int(hi, layers) if hi else None
                stop = (
                    n_layers + 1
                    if high is None or high == n_layers + 1
                    else _check_layer(high, n_layers, model_name)
                )
                out.extend(range(start, stop))
            elif part:
                out.append(_layer_int(part, layers))
        layers = out
    elif isinstance(layers, int):
        layers = [layers]
    resolved = [_check_layer(_layer_int(layer, layers), n_layers, model_name) for layer in layers]
    if not resolved:
        raise LayerOutOfRangeError(
            f"no layers selected: {model_name} has layers 0..{n_layers}; pass "
            + arg("layers='all' or a list", "--layers all or a list such as 0,10,-1")
        )
    return list(dict.fromkeys(resolved))


def _layer_int(value: object, given: object) -> int:
    """``value`` as a layer index: an int, an integral numpy int, or a string of one; anything
    else (``1.5``, ``"abc"``, ``True``) is refused rather than rounded."""
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    elif not isinstance(value, bool) and hasattr(value, "__index__"):
        return int(value.__index__())  # type: ignore[attr-defined]
    from ..errors import OptionError

    raise OptionError(
        f"layer {value!r} (in {arg('layers=', '--layers ')}{given!r}) is not an integer: pass "
        f"whole layer indices such as 'all', '0,10,-1', '5:20'{arg(' or [0, 10, -1]', '')}"
    )


def _check_layer(layer: int, n_layers: int, model_name: str) -> int:
    if -(n_layers + 1) <= layer <= n_layers:
        return layer % (n_layers + 1)
    raise LayerOutOfRangeError(
        f"layer {layer} does not exist: {model_name} has layers 0..{n_layers} (hidden_states; "
        f"negative indices down to {-(n_layers + 1)}) — pass "
        + arg("layers='all'", "--layers all")
        + " or a list within range"
    )


def resid_hook(layer: int, n_layers: int, final_norm: bool) -> str:
    """Hook name of residual layer ``layer`` (already normalised to ``0..n_layers``)."""
    if layer == 0:
        return EMBED
    if layer == n_layers and final_norm:
        return FINAL_NORM
    return block_hook(layer - 1, "resid_post")


def hook_layer(name: str, n_layers: int, final_norm: bool) -> int | None:
    """The residual layer index a hook name stands for, or None (attention/MLP outputs, and the
    raw last block output when a final norm follows it)."""
    block, component = parse_hook(name)
    if component == "embed":
        return 0
    if component == "final_norm":
        return n_layers
    if component == "resid_pre" and block is not None:
        return block
    if component == "resid_post" and block is not None:
        layer = block + 1
        if layer == n_layers and final_norm:
            return None
        return layer
    return None


def all_hook_points(
    n_layers: int, final_norm: bool, has_attn: bool = True, has_mlp: bool = True
) -> list[str]:
    """Every hook point of a model, in forward order."""
    names = [EMBED]
    for b in range(n_layers):
        if has_attn:
            names.append(block_hook(b, "attn_out"))
        if has_mlp:
            names.append(block_hook(b, "mlp_out"))
        names.append(block_hook(b, "resid_post"))
    if final_norm:
        names.append(FINAL_NORM)
    return names


def expand_hook_patterns(patterns: Sequence[str], available: Sequence[str]) -> list[str]:
    """Hook names from names or ``*`` patterns (``blocks.*.hook_mlp_out``), in forward order.

    Raises:
        UnknownHookPointError: a name or pattern that matches nothing.
    """
    chosen: set[str] = set()
    n_blocks = sum(1 for a in available if a.endswith(".hook_resid_post"))
    for pattern in patterns:
        if pattern == "blocks.*.hook_resid_pre":  # every block's input
            chosen.update(
                canonical(f"blocks.{b}.hook_resid_pre", n_blocks) for b in range(n_blocks)
            )
            continue
        pattern = canonical(pattern, n_blocks)
        regex = re.compile("^" + re.escape(pattern).replace(r"\*", r"[^.]+") + "$")
        matched = [a for a in available if regex.match(a)]
        if not matched:
            # Negative block indices: blocks.-1.hook_mlp_out.
            try:
                block, component = parse_hook(pattern)
            except UnknownHookPointError:
                block, component = None, ""
            if block is not None and -n_blocks <= block < 0:
                matched = [n for n in available if n == block_hook(block % n_blocks, component)]
        if not matched:
            sample = [a for a in available if a.startswith(("hook_", "blocks.0.", "ln_"))]
            raise UnknownHookPointError(
                f"hook point {pattern!r} matches nothing in this model; available are e.g. "
                f"{sample} ... (blocks 0..{sum(1 for a in available if 'resid_post' in a) - 1})"
            )
        chosen.update(matched)
    return [a for a in available if a in chosen]
