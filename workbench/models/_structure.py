"""Find a model's blocks, attention and MLP by module path (no per-architecture table)."""

from __future__ import annotations

import inspect

from torch import nn

from ..errors import ModelStructureError

# Names under which a block keeps its attention and its MLP, in order of preference. These are
# naming conventions shared by most Hugging Face architectures, not an architecture table: any
# block that uses one of them works, and `attn_path=` / `mlp_path=` override them.
ATTENTION_NAMES = ("self_attn", "attn", "attention", "self_attention", "mixer")
MLP_NAMES = ("mlp", "feed_forward", "ffn", "output")


def get_submodule(root: nn.Module, path: str) -> nn.Module:
    """``root.get_submodule(path)`` with an error that lists what is there."""
    try:
        return root.get_submodule(path) if path else root
    except AttributeError as exc:
        children = [name for name, _ in root.named_children()]
        raise ModelStructureError(
            f"module path {path!r} does not exist in {type(root).__name__}: {exc}. "
            f"Top-level children are {children}"
        ) from None


def module_lists(model: nn.Module) -> list[tuple[str, int]]:
    """Every ``nn.ModuleList`` in the model as ``(path, length)``."""
    return [(n, len(m)) for n, m in model.named_modules() if isinstance(m, nn.ModuleList)]


def find_blocks(
    model: nn.Module, n_layers: int | None, blocks_path: str | None = None
) -> tuple[str, nn.ModuleList]:
    """The list of transformer blocks, as ``(path, module_list)``.

    With ``blocks_path`` that path is used. Otherwise the blocks are the ``nn.ModuleList`` whose
    children share one class and whose length is the config's ``num_hidden_layers`` (or the
    longest such list when the config does not say).

    Raises:
        ModelStructureError: no list or several equally good ones; the message lists candidates.
    """
    if blocks_path is not None:
        blocks = get_submodule(model, blocks_path)
        if not isinstance(blocks, nn.ModuleList):
            raise ModelStructureError(
                f"blocks_path={blocks_path!r} is a {type(blocks).__name__}, not an nn.ModuleList; "
                f"ModuleLists in this model: {module_lists(model)}"
            )
        return blocks_path, blocks
    homogeneous = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, nn.ModuleList)
        and len(mod) > 0
        and len({type(child) for child in mod}) == 1
    ]
    if n_layers is not None:
        candidates = [(n, m) for n, m in homogeneous if len(m) == n_layers]
    else:
        longest = max((len(m) for _, m in homogeneous), default=0)
        candidates = [(n, m) for n, m in homogeneous if len(m) == longest]
    if len(candidates) > 1:
        # Prefer the outermost list: nested ModuleLists of equal length are rarely the blocks.
        depth = min(n.count(".") for n, _ in candidates)
        candidates = [(n, m) for n, m in candidates if n.count(".") == depth]
    if len(candidates) == 1:
        return candidates[0]
    found = module_lists(model)
    why = "several candidates" if candidates else "no candidate"
    raise ModelStructureError(
        f"cannot find the transformer blocks of {type(model).__name__} ({why}; the config says "
        f"{n_layers} layers). ModuleLists in the model: {found or 'none'}. "
        "Pass blocks_path='<path>' (e.g. 'model.layers', 'transformer.h', 'encoder.layer')"
    )


def find_child(block: nn.Module, names: tuple[str, ...], override: str | None) -> str | None:
    """Path (relative to a block) of its attention or MLP submodule, or None if absent."""
    if override is not None:
        get_submodule(block, override)
        return override
    children = dict(block.named_children())
    for name in names:
        if name in children:
            return name
    return None


def has_final_norm(base_model: nn.Module, blocks_path: str) -> bool:
    """Whether the base model normalises after its last block (Llama's ``norm``, GPT-2's
    ``ln_f``): then Hugging Face's last hidden state is the normalised one."""
    top = blocks_path.split(".")[0]
    for name, child in base_model.named_children():
        if name != top and "norm" in type(child).__name__.lower():
            return True
    return False


def sublayer_output(sublayer: nn.Module) -> str:
    """Path (relative to ``sublayer``) of the module whose output is the sublayer's own output,
    before the residual add: TransformerLens's ``hook_attn_out`` / ``hook_mlp_out``.

    Pre-LN blocks (Llama, GPT-2, Qwen, ...) add the residual in the block, so the attention or
    MLP module itself returns it (``""``). Where the sublayer adds the residual itself it ends in
    a module ``LayerNorm(dropout(branch(x)) + residual)`` (post-LN: BERT, RoBERTa, ELECTRA,
    DeBERTa, MPNet, MiniLM): one norm, one dropout and one other child, the branch. The dropout's
    output is the sublayer's own output (without a dropout: the branch's, when the forward takes
    the residual as a second input, as BERT's ``BertOutput(hidden_states, input_tensor)``).
    """
    for path, module in sublayer.named_modules():
        name = _residual_branch_end(module)
        if name is not None:
            return f"{path}.{name}" if path else name
    return ""


def _residual_branch_end(module: nn.Module) -> str | None:
    """The child whose output is the branch before ``norm(branch + residual)``, or None."""
    children = list(module.named_children())
    norms = [n for n, c in children if "norm" in type(c).__name__.lower()]
    drops = [n for n, c in children if isinstance(c, nn.Dropout)]
    others = [n for n, c in children if n not in norms and n not in drops]
    if len(norms) != 1 or len(drops) > 1 or len(others) != 1:
        return None
    if drops:
        return drops[0]
    params = inspect.signature(module.forward).parameters.values()
    required = [
        p
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return others[0] if len(required) == 2 else None
