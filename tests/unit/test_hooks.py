"""The hooks layer (``workbench.models.hooks``) on tiny random Llama, GPT-2 and BERT models.

Sublayer outputs are checked against the block's own arithmetic, recomputed by hand from the
model's modules: pre-LN blocks (Llama, GPT-2) add both sublayer outputs to the residual stream,
BERT's post-LN blocks compute ``LN2(mlp + LN1(attn + resid_pre))``.
"""

from __future__ import annotations

import pytest
import torch

from workbench.errors import LayerOutOfRangeError, UnknownHookPointError
from workbench.models import hook_names, hooks

TEXTS = ["The city of Paris is in France.", "Hi there", "one two three four five six seven"]


@pytest.fixture(scope="module", params=["llama", "gpt2", "bert"])
def tiny(request):
    return request.getfixturevalue(f"tiny_{request.param}")


def encode(lm, texts=TEXTS, side="right"):
    rows = [lm.tokenizer(t)["input_ids"] for t in texts]
    width = max(map(len, rows))
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for b, r in enumerate(rows):
        at = slice(0, len(r)) if side == "right" else slice(width - len(r), None)
        ids[b, at] = torch.tensor(r)
        mask[b, at] = 1
    return ids, mask


def no_hooks_left(lm) -> bool:
    return all(not (m._forward_hooks or m._forward_pre_hooks) for m in lm.model.modules())


def read_all(lm, names, ids, mask):
    with torch.inference_mode(), hooks.read(lm, names) as seen:
        hooks.run(lm.base_model, hooks.forward_inputs(lm, ids, mask))
    return {k: v.clone() for k, v in seen.items()}


def test_sublayer_outputs_recompose_the_block_output(tiny):
    ids, mask = encode(tiny)
    names = []
    for b in range(tiny.n_layers):
        names += [
            f"blocks.{b}.hook_resid_pre",
            f"blocks.{b}.hook_attn_out",
            f"blocks.{b}.hook_mlp_out",
            f"blocks.{b}.hook_resid_post",
        ]
    seen = read_all(tiny, names, ids, mask)
    real = mask.bool()
    for b, block in enumerate(tiny.blocks):
        pre, attn, mlp, post = (seen[n] for n in names[4 * b : 4 * b + 4])
        if type(tiny.model).__name__ == "BertModel":
            with torch.inference_mode():
                mid = block.attention.output.LayerNorm(attn + pre)
                want = block.output.LayerNorm(mlp + mid)
            # The sublayer outputs are not the post-LN states (the old, wrong reading).
            assert not torch.allclose(mlp[real], post[real], atol=1e-3)
            assert not torch.allclose(attn[real], mid[real], atol=1e-3)
        else:
            want = pre + attn + mlp
        torch.testing.assert_close(post[real], want[real], rtol=0, atol=1e-5)


def test_resid_pre_is_the_previous_block_output(tiny):
    ids, mask = encode(tiny)
    n = tiny.n_layers
    seen = read_all(
        tiny,
        [
            "hook_embed",
            "blocks.0.hook_resid_pre",
            "blocks.1.hook_resid_pre",
            "blocks.0.hook_resid_post",
        ],
        ids,
        mask,
    )
    assert torch.equal(seen["hook_embed"], seen["blocks.0.hook_resid_pre"])
    assert torch.equal(seen["blocks.0.hook_resid_post"], seen["blocks.1.hook_resid_pre"])
    assert hook_names.canonical("blocks.0.hook_resid_pre", n) == "hook_embed"
    assert hook_names.canonical("blocks.-1.hook_resid_pre", n) == f"blocks.{n - 2}.hook_resid_post"
    assert hook_names.hook_layer("blocks.2.hook_resid_pre", n, tiny.final_norm) == 2
    available = tiny.hook_points()
    assert "blocks.0.hook_resid_pre" not in available  # one name per tensor in stores
    assert hook_names.expand_hook_patterns(["blocks.*.hook_resid_pre"], available) == [
        "hook_embed",
        *(f"blocks.{b}.hook_resid_post" for b in range(n - 1)),
    ]
    with pytest.raises(LayerOutOfRangeError, match="blocks 0..2"):
        hook_names.canonical("blocks.3.hook_resid_pre", n)


def test_write_replaces_the_sublayer_output_before_the_residual_add(tiny):
    ids, mask = encode(tiny)
    names = ["blocks.1.hook_resid_pre", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post"]
    base = read_all(tiny, ["blocks.1.hook_attn_out"], ids, mask)["blocks.1.hook_attn_out"]
    with hooks.write(tiny, "blocks.1.hook_attn_out", torch.zeros_like):
        seen = read_all(tiny, [*names, "blocks.1.hook_attn_out"], ids, mask)
    assert no_hooks_left(tiny)
    assert base.abs().max() > 0 and seen["blocks.1.hook_attn_out"].abs().max() == 0
    pre, mlp, post = (seen[n] for n in names)
    block = tiny.blocks[1]
    with torch.inference_mode():
        if type(tiny.model).__name__ == "BertModel":
            want = block.output.LayerNorm(mlp + block.attention.output.LayerNorm(pre))
        else:
            want = pre + mlp  # the attention added nothing
    real = mask.bool()
    torch.testing.assert_close(post[real], want[real], rtol=0, atol=1e-5)


def test_stop_after_skips_the_rest_and_every_hook_is_removed(tiny):
    ids, mask = encode(tiny)
    calls = []
    last = tiny.blocks[-1].register_forward_hook(lambda *a: calls.append(1))
    try:
        with (
            torch.inference_mode(),
            hooks.read(tiny, ["blocks.0.hook_resid_post"]) as seen,
            hooks.stop_after(tiny, "blocks.0.hook_resid_post"),
        ):
            assert hooks.run(tiny.base_model, hooks.forward_inputs(tiny, ids, mask)) is None
    finally:
        last.remove()
    assert calls == [] and seen["blocks.0.hook_resid_post"].shape == (*ids.shape, tiny.d_model)
    assert no_hooks_left(tiny)

    with pytest.raises(RuntimeError, match="boom"):  # removed on an error too
        with hooks.read(tiny, ["hook_embed"]), hooks.write(tiny, "blocks.0.hook_mlp_out", abs):
            with hooks.stop_after(tiny, "blocks.1.hook_resid_post"):
                raise RuntimeError("boom")
    assert no_hooks_left(tiny)
    with pytest.raises(UnknownHookPointError):
        with hooks.read(tiny, ["hook_embed", "blocks.0.hook_nope"]):
            pass
    assert no_hooks_left(tiny)  # the hooks registered before the bad name are gone too


def test_forward_inputs_follow_the_mask_and_the_model(tiny):
    ids, mask = encode(tiny, side="left")
    inputs = hooks.forward_inputs(tiny, ids, mask)
    assert ("token_type_ids" in inputs) is (type(tiny.model).__name__ == "BertModel")
    assert inputs.get("use_cache", False) is False
    real = mask.bool()
    positions = inputs["position_ids"]
    for row in range(len(ids)):
        assert positions[row][real[row]].tolist() == list(range(int(real[row].sum())))
    # Left and right padding give the same states at real tokens.
    left = read_all(tiny, ["blocks.2.hook_resid_post"], ids, mask)["blocks.2.hook_resid_post"]
    r_ids, r_mask = encode(tiny, side="right")
    right = read_all(tiny, ["blocks.2.hook_resid_post"], r_ids, r_mask)["blocks.2.hook_resid_post"]
    torch.testing.assert_close(left[real], right[r_mask.bool()], rtol=0, atol=1e-5)


def test_eval_mode_restores_the_training_flag(tiny_gpt2):
    model = tiny_gpt2.model
    model.train()
    try:
        with hooks.eval_mode(model):
            assert not model.training
        assert model.training
        with pytest.raises(ValueError), hooks.eval_mode(model):
            raise ValueError
        assert model.training
    finally:
        model.eval()


def test_extract_stores_canonical_names_and_where_sublayers_are_read(tiny, tmp_path):
    import workbench

    store = workbench.extract(
        tiny,
        TEXTS,
        out=tmp_path / "run",
        progress=False,
        pooling="tokens",
        hook_points=["blocks.1.hook_resid_pre", "blocks.0.hook_mlp_out"],
    )
    assert store.hook_points == ["blocks.0.hook_mlp_out", "blocks.0.hook_resid_post"]
    identity = store.manifest["identity"]
    post_ln = type(tiny.model).__name__ == "BertModel"
    assert ("sublayer_paths" in identity) is post_ln
    if post_ln:
        assert identity["sublayer_paths"] == {
            "attn_out": "attention.output.dropout",
            "mlp_out": "output.dropout",
        }
    for row, text in enumerate(TEXTS):
        ids, mask = encode(tiny, [text])
        seen = read_all(tiny, ["blocks.0.hook_mlp_out", "blocks.1.hook_resid_pre"], ids, mask)
        want = torch.stack([seen["blocks.0.hook_mlp_out"][0], seen["blocks.1.hook_resid_pre"][0]])
        got = torch.as_tensor(store.token_states(row)).transpose(0, 1)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
