"""steer / CausalCheck on tiny random decoders: hooks, exactness of the edit, effect and KL."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.errors import LayerOutOfRangeError, PoolingError
from workbench.probing import CausalCheck, steer

DECODERS = ["tiny_llama", "tiny_gpt2"]
PROMPTS = ["the city of paris is in france", "rome is in italy"]


@pytest.fixture(params=DECODERS)
def lm(request):
    return request.getfixturevalue(request.param)


def _direction(lm, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=lm.d_model)


def _unit(lm, seed: int = 0) -> torch.Tensor:
    d = torch.from_numpy(_direction(lm, seed)).float()
    return d / d.norm()


def _batch(lm):
    """Left-padded batch of two prompts of different lengths: ``input_ids``, ``attention_mask``."""
    ids = lm.tokenizer(PROMPTS, add_special_tokens=True)["input_ids"]
    width = max(len(x) for x in ids)
    input_ids = torch.zeros((len(ids), width), dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for b, row in enumerate(ids):
        input_ids[b, width - len(row) :] = torch.tensor(row)
        mask[b, width - len(row) :] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def _forward(lm, batch):
    with torch.inference_mode():
        return lm.model(**batch, output_hidden_states=True, use_cache=False)


def _n_hooks(lm) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in lm.model.modules())


@pytest.mark.parametrize("layer", [0, 2])
def test_hooks_removed_after_exit_and_exception(lm, layer):
    batch = _batch(lm)
    _forward(lm, batch)  # transformers installs its own (permanent) recording hooks on first use
    before = _n_hooks(lm)
    with steer(lm, layer, _direction(lm), alpha=1.0, attention_mask=batch["attention_mask"]):
        assert _n_hooks(lm) == before + 1
        _forward(lm, batch)
    assert _n_hooks(lm) == before
    with pytest.raises(RuntimeError, match="boom"):
        with steer(lm, layer, _direction(lm), alpha=1.0, attention_mask=batch["attention_mask"]):
            _forward(lm, batch)
            raise RuntimeError("boom")
    assert _n_hooks(lm) == before


def test_alpha_zero_is_bitwise_identity(lm):
    batch = _batch(lm)
    base = _forward(lm, batch).logits
    for layer in range(lm.n_layers):
        with steer(lm, layer, _direction(lm), alpha=0.0, attention_mask=batch["attention_mask"]):
            steered = _forward(lm, batch).logits
        assert torch.equal(base, steered)


def _expected_positions(mask: torch.Tensor, positions) -> torch.Tensor:
    """Reference selection, written row by row."""
    out = torch.zeros_like(mask, dtype=torch.bool)
    for b in range(mask.shape[0]):
        real = torch.nonzero(mask[b]).flatten().tolist()
        chosen = (
            real
            if positions == "all"
            else [real[-1]]
            if positions == "last"
            else [real[k] for k in positions]
        )
        out[b, chosen] = True
    return out


@pytest.mark.parametrize("positions", ["all", "last", [0, -2]])
def test_add_changes_hidden_state_by_alpha_u_at_chosen_positions_only(lm, positions):
    batch = _batch(lm)
    mask = batch["attention_mask"]
    base = _forward(lm, batch).hidden_states
    u, alpha = _unit(lm), 3.0
    want = _expected_positions(mask, positions)
    # 0 (input of block 0) .. n-1 (output of the last block but one)
    for layer in range(lm.n_layers):
        with steer(lm, layer, u.numpy(), alpha=alpha, positions=positions, attention_mask=mask):
            steered = _forward(lm, batch).hidden_states
        diff = steered[layer] - base[layer]  # [batch, pos, d_model]
        torch.testing.assert_close(diff[want], (alpha * u).expand(int(want.sum()), -1))
        assert torch.equal(diff[~want], torch.zeros_like(diff[~want]))
        for earlier in range(layer):
            assert torch.equal(steered[earlier], base[earlier])


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_ablate_projects_the_direction_out(lm, layer):
    batch = _batch(lm)
    mask = batch["attention_mask"]
    real = mask.bool()
    base = _forward(lm, batch).hidden_states[layer]
    u = base[real].mean(0)  # a direction the states share, so there is something to remove
    u = u / u.norm()
    with steer(lm, layer, u, mode="ablate", positions="all", attention_mask=mask):
        h = _forward(lm, batch).hidden_states[layer]
    scale = float((base[real] @ u).abs().max())
    assert scale > 0.01
    torch.testing.assert_close(h[real] @ u, torch.zeros(int(real.sum())), atol=1e-5 * scale, rtol=0)
    assert torch.equal(h[~real], base[~real])  # padding untouched


def test_causal_check_effect_and_kl(lm):
    check = CausalCheck(lm, unrelated=("the weather today is", "my favourite food is"))
    table = check.run(PROMPTS, {1: _direction(lm), -2: _direction(lm, 2)}, alphas=(-2, 0, 2))
    assert list(table.columns[:6]) == [
        "layer",
        "alpha",
        "mode",
        "mean_logit_diff",
        "delta_vs_alpha0",
        "kl_unrelated",
    ]
    assert sorted(set(table["layer"])) == [1, lm.n_layers - 1]
    at_zero = table[table["alpha"] == 0]
    assert (at_zero["kl_unrelated"] == 0).all() and (at_zero["delta_vs_alpha0"] == 0).all()
    assert (table[table["alpha"] != 0]["kl_unrelated"] > 0).all()
    assert (table["resid_norm"] > 0).all()
    np.testing.assert_allclose(table["alpha_abs"], table["alpha"] * table["resid_norm"])
    assert len(check.per_text) == len(table) * len(PROMPTS)

    ablated = check.run(PROMPTS, {1: _direction(lm)}, mode="ablate", positions="last")
    assert len(ablated) == 1 and np.isnan(ablated["alpha"].iloc[0])
    assert ablated["kl_unrelated"].iloc[0] > 0

    absolute = check.run(PROMPTS, {1: _direction(lm)}, alphas=(1.0,), scale="absolute")
    assert absolute["alpha_abs"].iloc[0] == 1.0


def test_multi_token_target_is_refused(tiny_llama):
    with pytest.raises(ValueError, match="'xyzzyqwv'.*single token"):
        CausalCheck(tiny_llama, targets=(" true", "xyzzyqwv"))


def test_encoder_is_refused(tiny_bert):
    with pytest.raises(ValueError, match="decoder"):
        CausalCheck(tiny_bert)


def test_final_norm_layer_is_refused(lm):
    n = lm.n_layers
    for layer in (n, -1):
        with pytest.raises(LayerOutOfRangeError, match=f"final norm.*steer layer {n - 1}"):
            with steer(lm, layer, _direction(lm)):
                pass
    with pytest.raises(LayerOutOfRangeError, match="final norm"):
        CausalCheck(lm).run(PROMPTS, {n: _direction(lm)})
    with pytest.raises(LayerOutOfRangeError, match="does not exist"):
        with steer(lm, n + 1, _direction(lm)):
            pass


def test_bad_positions_and_shapes(lm):
    batch = _batch(lm)
    with pytest.raises(PoolingError, match="positions='first'"):
        with steer(lm, 1, _direction(lm), positions="first"):
            pass
    with pytest.raises(PoolingError, match="position 50 does not exist"):
        with steer(lm, 1, _direction(lm), positions=[50], attention_mask=batch["attention_mask"]):
            _forward(lm, batch)
    with pytest.raises(ValueError, match=r"expected \[d_model\]"):
        with steer(lm, 1, np.ones(lm.d_model + 1)):
            pass
    with pytest.raises(ValueError, match="mode='scale'"):
        with steer(lm, 1, _direction(lm), mode="scale"):
            pass
