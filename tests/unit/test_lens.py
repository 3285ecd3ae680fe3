"""Logit lens, tuned lens and Patchscopes on tiny random decoders (Llama and GPT-2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workbench.errors import LayerOutOfRangeError, ModelStructureError, PoolingError
from workbench.lens.logit import LogitLens, TargetTokenError, logit_lens
from workbench.lens.patchscopes import Patchscope
from workbench.lens.tuned import (
    CHECKPOINT,
    CONFIG,
    LensCheckpointError,
    TunedLens,
    lens_report,
)

DECODERS = ["tiny_llama", "tiny_gpt2"]
PROMPT = "the city of paris is in france"
TEXTS = [
    "the cat sat on the mat and looked at the door",
    "rome is the capital of italy and a large city",
    "a small dog ran across the green field today",
    "she wrote a long letter to her old friend in london",
    "the train to the airport leaves at ten in the morning",
    "he picked up the guitar and played a quiet song",
    "we walked along the river until the sun went down",
    "my favourite food is bread with cheese and tomatoes",
]
HELD_OUT = ["the old man walked to the market in the rain", "a bird sang on the roof all day"]


@pytest.fixture(params=DECODERS)
def lm(request):
    return request.getfixturevalue(request.param)


def _ids(lm, text=PROMPT):
    return torch.tensor([lm.tokenizer(text, add_special_tokens=True)["input_ids"]])


# -- logit lens ------------------------------------------------------------------------------------


def test_last_layer_equals_model_logits(lm):
    res = LogitLens(lm).run(PROMPT, k=7)
    with torch.no_grad():
        logits = lm.model(_ids(lm)).logits[0].float()
    top = logits.softmax(-1).topk(7, dim=-1)
    assert res.top_ids.shape == (lm.n_layers + 1, logits.shape[0], 7)
    np.testing.assert_array_equal(res.top_ids[-1], top.indices.numpy())
    np.testing.assert_allclose(res.top_probs[-1], top.values.numpy(), rtol=1e-5, atol=1e-7)
    assert len(res.top_tokens) == lm.n_layers + 1 and len(res.top_tokens[0][0]) == 7
    assert res.top_tokens[-1][-1][0] == lm.tokenizer.decode([int(top.indices[-1, 0])])
    np.testing.assert_allclose(res.top_probs.sum(-1) <= 1 + 1e-5, True)


def test_intermediate_layer_is_norm_then_unembed(lm):
    res = LogitLens(lm).run(PROMPT, k=3, layers=[1])
    with torch.no_grad():
        h = lm.base_model(_ids(lm), output_hidden_states=True).hidden_states[1][0]
        names = dict(lm.base_model.named_children())
        norm = names.get("norm", names.get("ln_f"))
        expected = lm.model.get_output_embeddings()(norm(h)).topk(3, dim=-1).indices
    np.testing.assert_array_equal(res.top_ids[0], expected.numpy())
    assert list(res.layers) == [1]


def test_target_rank_and_prob(lm):
    res = LogitLens(lm).run(PROMPT, k=5, target="city")
    assert res.target_rank.shape == res.entropy.shape == (lm.n_layers + 1, len(res.input_ids))
    # where the target is the top token, its rank is 1 and its probability the top probability
    hit = res.top_ids[..., 0] == res.target_id
    assert (res.target_rank[hit] == 1).all() and (res.target_rank >= 1).all()
    top_is = np.argwhere(res.top_ids == res.target_id)
    for layer, pos, r in top_is:
        assert res.target_rank[layer, pos] == r + 1
        assert res.target_prob[layer, pos] == pytest.approx(res.top_probs[layer, pos, r], rel=1e-5)
    by_id = logit_lens(lm, PROMPT, k=5, target=res.target_id)
    np.testing.assert_array_equal(by_id.target_rank, res.target_rank)
    frame = res.to_frame()
    assert len(frame) == res.top_ids.size and {"target_rank", "token", "prob"} <= set(frame)


def test_lens_bad_input(tiny_llama, tiny_bert):
    lens = LogitLens(tiny_llama)
    with pytest.raises(TargetTokenError, match="2 tokens|3 tokens|tokens for"):
        lens.run(PROMPT, target="paris france")
    with pytest.raises(TargetTokenError, match="outside the vocabulary"):
        lens.run(PROMPT, target=10**9)
    with pytest.raises(LayerOutOfRangeError, match="layers 0..3"):
        lens.run(PROMPT, layers=[7])
    with pytest.raises(PoolingError, match="empty"):
        lens.run("   ")
    with pytest.raises(ModelStructureError, match="decoder"):
        LogitLens(tiny_bert)


# -- tuned lens ------------------------------------------------------------------------------------


def test_identity_init_equals_logit_lens(lm):
    tuned = TunedLens(lm)
    assert tuned.layers == list(range(lm.n_layers))
    a = LogitLens(lm).run(PROMPT, k=5, target="city")
    b = tuned.run(PROMPT, k=5, target="city")
    np.testing.assert_array_equal(a.top_ids, b.top_ids)
    np.testing.assert_allclose(a.top_probs, b.top_probs, rtol=1e-6)
    np.testing.assert_array_equal(a.target_rank, b.target_rank)
    assert b.lens == "tuned"


@pytest.mark.parametrize("init", ["identity", "lstsq"])
def test_training_lowers_kl(tiny_llama, init):
    before = lens_report(tiny_llama, HELD_OUT, TunedLens(tiny_llama), progress=False)
    tuned = TunedLens(tiny_llama).fit(
        TEXTS, steps=10, init=init, lr=3e-3, batch_size=4, tokens_per_step=32, progress=False
    )
    assert len(tuned.history_) == 10
    assert np.mean(tuned.history_[-3:]) < np.mean(tuned.history_[:3]) or init == "lstsq"
    after = lens_report(tiny_llama, HELD_OUT, tuned, progress=False)
    t = after.table.set_index("layer")
    # untrained, the tuned lens is the logit lens; trained, it is closer to the model's output
    np.testing.assert_allclose(before.table["kl_tuned"], before.table["kl_logit"], rtol=1e-6)
    mid = t.loc[1:2]
    assert (mid["kl_tuned"] < mid["kl_logit"]).all(), t
    assert t.loc[tiny_llama.n_layers, "kl_tuned"] == pytest.approx(0.0, abs=1e-5)
    assert after.n_tokens > 0 and after.ppl_model > 1


def test_save_load_round_trip_and_foreign_model(tiny_llama, tiny_gpt2, tmp_path):
    tuned = TunedLens(tiny_llama, layers=[1, 2]).fit(
        TEXTS, steps=3, batch_size=4, progress=False, out=tmp_path / "lens"
    )
    config = json.loads((tmp_path / "lens" / CONFIG).read_text())
    assert config["model"]["weights_fingerprint"] == tiny_llama.weights_fingerprint
    assert config["layers"] == [1, 2] and config["training"]["steps"] == 3
    loaded = TunedLens.load(tmp_path / "lens", tiny_llama)
    for key, value in tuned.translators.state_dict().items():
        assert torch.equal(value, loaded.translators.state_dict()[key])
    np.testing.assert_array_equal(tuned.run(PROMPT).top_probs, loaded.run(PROMPT).top_probs)
    with pytest.raises(LensCheckpointError) as info:
        TunedLens.load(tmp_path / "lens", tiny_gpt2)
    message = str(info.value)
    assert tiny_llama.weights_fingerprint in message and tiny_gpt2.weights_fingerprint in message
    with pytest.raises(LensCheckpointError, match="holds no tuned lens"):
        TunedLens.load(tmp_path, tiny_llama)


def test_interrupted_training_resumes_exactly(tiny_llama, tmp_path):
    kwargs = dict(batch_size=3, tokens_per_step=16, progress=False, checkpoint_every=2)
    straight = TunedLens(tiny_llama).fit(TEXTS, steps=6, **kwargs)
    first = TunedLens(tiny_llama).fit(TEXTS, steps=4, out=tmp_path, **kwargs)
    assert (tmp_path / CHECKPOINT).is_file() and len(first.history_) == 4
    resumed = TunedLens(tiny_llama).fit(TEXTS, steps=6, out=tmp_path, **kwargs)
    assert resumed.history_ == pytest.approx(straight.history_, rel=1e-5)
    for key, value in straight.translators.state_dict().items():
        torch.testing.assert_close(resumed.translators.state_dict()[key], value)
    with pytest.raises(LensCheckpointError, match="other options"):
        TunedLens(tiny_llama).fit(TEXTS, steps=8, out=tmp_path, **{**kwargs, "batch_size": 2})


def _hook_count(lm) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in lm.model.modules())


# -- Patchscopes -----------------------------------------------------------------------------------


def test_patchscope_identity_patch_reproduces_unpatched_run(lm):
    n_tokens = _ids(lm).shape[1]
    position = n_tokens - 2
    scope = Patchscope(lm, target_prompt=PROMPT, target_position=position)
    plain = scope.generate(scope.target_ids, max_new_tokens=6)
    LogitLens(lm).run(PROMPT)  # transformers installs its own output-recording hooks once
    hooks_before = _hook_count(lm)
    for layer in (0, 1, lm.n_layers - 1):
        res = scope.run(PROMPT, layer=layer, position=position, max_new_tokens=6)
        assert res.generated_ids == plain and res.target_layer == layer == res.layer
    # a foreign state does change what is read (the hook really writes)
    other = scope.run("rome is in italy and spain", layer=1, position=2, max_new_tokens=6)
    assert other.target_layer == 1
    assert _hook_count(lm) == hooks_before  # removed in finally


def test_patchscope_default_prompt_and_cross_layer(lm):
    scope = Patchscope(lm)  # identity prompt, placeholder "?"
    ids = scope.target_ids
    assert "?" in lm.tokenizer.decode([ids[scope.target_position]])
    res = scope.run("paris", layer=2, position=1, target_layer=1, max_new_tokens=4)
    assert (res.layer, res.target_layer) == (2, 1) and 1 <= len(res.generated_ids) <= 4
    assert res.source_token.strip() == "paris"
    assert len(scope.run_layers("paris", "all", position=1, max_new_tokens=2)) == lm.n_layers


def test_patchscope_bad_input(tiny_llama):
    scope = Patchscope(tiny_llama)
    with pytest.raises(PoolingError, match="outside the text"):
        scope.run("paris", layer=1, position=40)
    with pytest.raises(LayerOutOfRangeError, match="layers 0..3"):
        scope.run("paris", layer=9)
    with pytest.raises(LayerOutOfRangeError, match="final norm"):
        scope.run("paris", layer=1, target_layer=3)
    with pytest.raises(PoolingError, match="placeholder"):
        Patchscope(tiny_llama, target_prompt="no marker here", placeholder="?")
    with pytest.raises(PoolingError, match="target_position"):
        Patchscope(tiny_llama, target_prompt=PROMPT, target_position=99)


# -- command line ----------------------------------------------------------------------------------


def test_cli_lens_commands(tiny_llama, tmp_path):
    from typer.testing import CliRunner

    from workbench.cli.main import app

    runner = CliRunner()
    model = str(tiny_llama.source)
    data = tmp_path / "texts.csv"
    data.write_text("text\n" + "\n".join(TEXTS + HELD_OUT) + "\n")
    res = runner.invoke(
        app,
        [
            "lens",
            "logit",
            PROMPT,
            "--model",
            model,
            "--k",
            "2",
            "--target",
            "city",
            "--layers",
            "0,-1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "logit lens" in res.output and "rank" in res.output
    out = tmp_path / "lens"
    res = runner.invoke(
        app,
        [
            "lens",
            "train-tuned",
            "--model",
            model,
            "--dataset",
            str(data),
            "--out",
            str(out),
            "--steps",
            "2",
            "--holdout",
            "2",
            "--init-texts",
            "4",
            "--max-length",
            "12",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (out / CONFIG).is_file() and "tuned lens for" in res.output
    res = runner.invoke(app, ["lens", "report", "--lens", str(out), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["layer"] for r in rows] == [0, 1, 2, 3] and "kl_tuned" in rows[0]
    res = runner.invoke(
        app,
        [
            "lens",
            "patchscope",
            "paris",
            "--model",
            model,
            "--layer",
            "1,2",
            "--position",
            "1",
            "--max-new-tokens",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Patchscope" in res.output and "description" in res.output
