"""The soft-prefix inverter on tiny random models: loss goes down, resume equals an
uninterrupted run, foreign checkpoints are refused, the hybrid and the CLI run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workbench.errors import EmptyDatasetError
from workbench.inversion.correction import HybridInverter
from workbench.inversion.embedders import EmbeddingInputError, ModelEmbedder
from workbench.inversion.guided import GuidedInverter
from workbench.inversion.trained import (
    CheckpointMismatchError,
    InverterConfig,
    SoftPrefixInverter,
)

TEXTS = ["the cat sat on the mat", "a dog barked loudly", "paris is in france",
         "the city of london", "numbers like twelve", "she reads a book",
         "rain falls in spain", "he plays the guitar"]
SMALL = InverterConfig(prefix_length=2, hidden=16, batch_size=4, lr=3e-3, max_tokens=12)


@pytest.fixture(scope="module")
def embedder(tiny_bert):
    return ModelEmbedder(tiny_bert, pooling="mean")


def test_loss_decreases(tiny_llama, embedder, tmp_path):
    # A random tiny LLM predicts nearly uniformly (loss ~ ln 30522 = 10.33) and, frozen, can be
    # steered only a little through two soft-prompt vectors: a deterministic drop of ~0.11.
    inv = SoftPrefixInverter(tiny_llama, embedder, InverterConfig(**{**SMALL.__dict__,
                                                                     "lr": 3e-2}))
    inv.fit(TEXTS, tmp_path / "ck", steps=40, checkpoint_every=100, progress=False)
    first, last = np.mean(inv.losses_[:4]), np.mean(inv.losses_[-4:])
    assert last < first - 0.08
    meta = json.loads((tmp_path / "ck" / "inverter.json").read_text())
    assert meta["step"] == 40 and meta["model_fingerprint"] == tiny_llama.weights_fingerprint
    assert meta["embedder_fingerprint"] == embedder.fingerprint
    out = inv.invert(embedder.embed(TEXTS[:2]), max_new_tokens=5)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    many = inv.invert(embedder.embed(TEXTS[:1]), num_return=2, max_new_tokens=4)
    assert len(many) == 1 and len(many[0]) == 2


@pytest.mark.parametrize("lora_rank", [0, 2])
def test_resume_equals_uninterrupted(tiny_llama, embedder, tmp_path, lora_rank):
    config = InverterConfig(**{**SMALL.__dict__, "lora_rank": lora_rank})
    full = SoftPrefixInverter(tiny_llama, embedder, config)
    full.fit(TEXTS, tmp_path / "a", steps=6, checkpoint_every=2, progress=False)
    part = SoftPrefixInverter(tiny_llama, embedder, config)
    part.fit(TEXTS, tmp_path / "b", steps=6, checkpoint_every=2, progress=False, stop_after=3)
    assert json.loads((tmp_path / "b" / "inverter.json").read_text())["step"] == 3
    resumed = SoftPrefixInverter(tiny_llama, embedder, config)  # a fresh process, in effect
    resumed.fit(TEXTS, tmp_path / "b", steps=6, checkpoint_every=2, progress=False)
    assert resumed.losses_ == full.losses_
    a, b = full.trainable_state(), resumed.trainable_state()
    assert a.keys() == b.keys() and any(k.startswith("lora.") for k in a) == (lora_rank > 0)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    loaded = SoftPrefixInverter.load(tmp_path / "b", tiny_llama, embedder)
    for k, v in loaded.trainable_state().items():
        torch.testing.assert_close(v, a[k], rtol=0, atol=0)
    # the shared LLM is never changed by LoRA training
    assert tiny_llama.weights_fingerprint == resumed.identity()["model_fingerprint"]


def test_foreign_checkpoint_refused(tiny_llama, tiny_gpt2, tiny_bert, embedder, tmp_path):
    inv = SoftPrefixInverter(tiny_llama, embedder, SMALL)
    inv.fit(TEXTS, tmp_path / "ck", steps=1, progress=False)
    other = ModelEmbedder(tiny_bert, layer=1, pooling="mean")
    with pytest.raises(CheckpointMismatchError) as e:
        SoftPrefixInverter.load(tmp_path / "ck", tiny_llama, other)
    assert embedder.fingerprint in str(e.value) and other.fingerprint in str(e.value)
    with pytest.raises(CheckpointMismatchError) as e:
        SoftPrefixInverter.load(tmp_path / "ck", tiny_gpt2, embedder)
    assert tiny_llama.weights_fingerprint in str(e.value)
    assert tiny_gpt2.weights_fingerprint in str(e.value)
    with pytest.raises(CheckpointMismatchError, match="another training run"):
        SoftPrefixInverter(tiny_llama, embedder, SMALL).fit(TEXTS[:3], tmp_path / "ck", steps=2,
                                                            progress=False)


def test_trained_bad_input(tiny_llama, embedder, tmp_path):
    inv = SoftPrefixInverter(tiny_llama, embedder, SMALL)
    with pytest.raises(EmptyDatasetError, match=r"rows \[1\]"):
        inv.fit(["ok", ""], tmp_path / "x", steps=1, progress=False)
    with pytest.raises(EmbeddingInputError, match="dimension 32"):
        inv.invert(np.ones((1, 384)))
    with pytest.raises(EmbeddingInputError, match="NaN"):
        inv.invert(np.full((1, 32), np.nan))
    with pytest.raises(FileNotFoundError, match="inverter.json"):
        SoftPrefixInverter.load(tmp_path / "nothing", tiny_llama, embedder)


def test_hybrid(tiny_llama, embedder, tmp_path):
    inv = SoftPrefixInverter(tiny_llama, embedder, SMALL)
    inv.fit(TEXTS, tmp_path / "ck", steps=2, progress=False)
    g = GuidedInverter(tiny_llama, embedder, beam_width=2, top_k=3, keywords=3, max_tokens=5,
                       prior_words=500)
    res = HybridInverter(inv, g, proposals=2, steps=1).invert(embedder.embed([TEXTS[0]])[0])
    assert len(res.history) == 2 and res.history[1][2] >= res.history[0][2]


def test_cli_run_and_train(tiny_llama, tiny_bert, tmp_path):
    from typer.testing import CliRunner

    from workbench.cli.main import app

    llm, enc = str(tiny_llama.source), str(tiny_bert.source)
    data = tmp_path / "texts.csv"
    data.write_text("text\n" + "\n".join(TEXTS) + "\n")
    r = CliRunner().invoke(app, ["invert", "train", "--data", str(data), "--out",
                                 str(tmp_path / "ck"), "--embedder", enc, "--pooling", "mean",
                                 "--model", llm, "--steps", "2", "--batch-size", "2",
                                 "--hidden", "8", "--prefix-length", "1"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["invert", "run", "the cat", "--embedder", enc, "--pooling",
                                 "mean", "--model", llm, "--method", "trained", "--checkpoint",
                                 str(tmp_path / "ck"), "--max-tokens", "4"])
    assert r.exit_code == 0, r.output
    assert "cosine" in r.output
