"""The soft-prefix inverter and the trained corrector on tiny random models: loss goes down,
resume equals an uninterrupted run, foreign checkpoints are refused, correction keeps the best
text, the hybrid and the CLI run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workbench.errors import EmptyDatasetError
from workbench.inversion.correction import (
    DRAFT_TEMPLATE,
    HybridInverter,
    TrainedCorrector,
    corrupt_text,
)
from workbench.inversion.embedders import EmbeddingInputError, ModelEmbedder, cosine_to
from workbench.inversion.guided import GuidedInverter
from workbench.inversion.trained import (
    CheckpointMismatchError,
    InverterConfig,
    SoftPrefixInverter,
)

TEXTS = [
    "the cat sat on the mat",
    "a dog barked loudly",
    "paris is in france",
    "the city of london",
    "numbers like twelve",
    "she reads a book",
    "rain falls in spain",
    "he plays the guitar",
]
SMALL = InverterConfig(prefix_length=2, hidden=16, batch_size=4, lr=3e-3, max_tokens=12)


@pytest.fixture(scope="module")
def embedder(tiny_bert):
    return ModelEmbedder(tiny_bert, pooling="mean")


def test_loss_decreases(tiny_llama, embedder, tmp_path):
    # A random tiny LLM predicts nearly uniformly (loss ~ ln 30522 = 10.33) and, frozen, can be
    # steered only a little through two soft-prompt vectors: a deterministic drop of ~0.11.
    inv = SoftPrefixInverter(tiny_llama, embedder, InverterConfig(**{**SMALL.__dict__, "lr": 3e-2}))
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


@pytest.mark.parametrize(
    ("cls", "lora_rank"), [(SoftPrefixInverter, 0), (SoftPrefixInverter, 2), (TrainedCorrector, 0)]
)
def test_resume_equals_uninterrupted(tiny_llama, embedder, tmp_path, cls, lora_rank):
    config = InverterConfig(**{**SMALL.__dict__, "lora_rank": lora_rank})
    full = cls(tiny_llama, embedder, config)
    full.fit(TEXTS, tmp_path / "a", steps=6, checkpoint_every=2, progress=False)
    part = cls(tiny_llama, embedder, config)
    part.fit(TEXTS, tmp_path / "b", steps=6, checkpoint_every=2, progress=False, stop_after=3)
    assert json.loads((tmp_path / "b" / "inverter.json").read_text())["step"] == 3
    resumed = cls(tiny_llama, embedder, config)  # a fresh process, in effect
    resumed.fit(TEXTS, tmp_path / "b", steps=6, checkpoint_every=2, progress=False)
    assert resumed.losses_ == full.losses_
    a, b = full.trainable_state(), resumed.trainable_state()
    assert a.keys() == b.keys() and any(k.startswith("lora.") for k in a) == (lora_rank > 0)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    loaded = cls.load(tmp_path / "b", tiny_llama, embedder)
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
        SoftPrefixInverter(tiny_llama, embedder, SMALL).fit(
            TEXTS[:3], tmp_path / "ck", steps=2, progress=False
        )


def test_corrupt_text_is_seeded_noise():
    vocab = ["alpha", "beta", "gamma"]
    text = "the cat sat on the mat today"
    a = [corrupt_text(text, np.random.default_rng([0, s]), vocab) for s in range(50)]
    b = [corrupt_text(text, np.random.default_rng([0, s]), vocab) for s in range(50)]
    assert a == b and all(t.strip() for t in a)
    assert 0 < sum(t == text for t in a) < 25  # mostly changed, sometimes kept
    assert any(w in vocab for t in a for w in t.split())  # replacements come from the vocabulary
    assert corrupt_text("one", np.random.default_rng(1), vocab, drop=1.0, keep=0.0) == "one"


def test_corrector_learns_and_corrects(tiny_llama, embedder, tmp_path):
    config = InverterConfig(**{**SMALL.__dict__, "lr": 3e-2})
    corr = TrainedCorrector(tiny_llama, embedder, config)
    assert corr.prefix.net[0].in_features == 3 * embedder.dim
    vectors, rows = embedder.embed(TEXTS), np.arange(len(TEXTS))

    def held_loss() -> float:  # one fixed batch of drafts (step 10**6 is never trained on)
        with torch.no_grad():
            return float(corr._batch_loss(10**6, rows, TEXTS, vectors))

    corr._vocabulary = sorted({w for t in TEXTS for w in t.split()})
    before = held_loss()
    corr.fit(TEXTS, tmp_path / "c", steps=40, checkpoint_every=100, progress=False)
    assert held_loss() < before - 0.03  # deterministic: 10.377 -> 10.331 on this tiny model
    meta = json.loads((tmp_path / "c" / "inverter.json").read_text())
    assert meta["kind"] == "trained-corrector" and meta["step"] == 40
    # the draft's tokens condition the text but are not scored
    ids, mask, labels = corr._encode_texts(["a dog"], [DRAFT_TEMPLATE.format(draft="dog a")])
    n_ctx = len(corr._context_ids(DRAFT_TEMPLATE.format(draft="dog a")))
    assert (labels[0, :n_ctx] == -100).all() and (labels[0, n_ctx:] == ids[0, n_ctx:]).all()
    target = embedder.embed([TEXTS[0]])[0]
    res = corr.correct(target, "mat the on", steps=2, num_return=2, max_new_tokens=5)
    assert [s for s, _, _ in res.history] == [0, 1, 2]
    cosines = [c for _, _, c in res.history]
    assert cosines == sorted(cosines) and res.cosine == cosines[-1]
    assert res.cosine == pytest.approx(
        float(cosine_to(embedder.embed([res.text or "."]), target)[0]), abs=1e-5
    )
    with pytest.raises(CheckpointMismatchError, match="trained-corrector"):
        SoftPrefixInverter.load(tmp_path / "c", tiny_llama, embedder)
    with pytest.raises(ValueError, match="one draft per text"):
        TrainedCorrector(tiny_llama, embedder, config).fit(
            TEXTS, tmp_path / "d", steps=1, drafts=["x"], progress=False
        )


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
    g = GuidedInverter(
        tiny_llama,
        embedder,
        beam_width=2,
        top_k=3,
        keywords=3,
        max_tokens=5,
        prior_words=500,
        polish="none",  # the history holds the seed and the one rewrite round, no polish entry
    )
    res = HybridInverter(inv, g, proposals=2, steps=1).invert(embedder.embed([TEXTS[0]])[0])
    assert len(res.history) == 2 and res.history[1][2] >= res.history[0][2]


def test_cli_run_and_train(tiny_llama, tiny_bert, tmp_path):
    from typer.testing import CliRunner

    from workbench.cli.main import app

    llm, enc = str(tiny_llama.source), str(tiny_bert.source)
    data = tmp_path / "texts.csv"
    data.write_text("text\n" + "\n".join(TEXTS) + "\n")
    r = CliRunner().invoke(
        app,
        [
            "invert",
            "train",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "ck"),
            "--embedder",
            enc,
            "--pooling",
            "mean",
            "--model",
            llm,
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--hidden",
            "8",
            "--prefix-length",
            "1",
            "--eval-every",
            "0",
        ],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        app,
        [
            "invert",
            "run",
            "the cat",
            "--embedder",
            enc,
            "--pooling",
            "mean",
            "--model",
            llm,
            "--method",
            "trained",
            "--checkpoint",
            str(tmp_path / "ck"),
            "--max-tokens",
            "4",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "cosine" in r.output
    r = CliRunner().invoke(
        app,
        [
            "invert",
            "train",
            "--kind",
            "corrector",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "corr"),
            "--embedder",
            enc,
            "--pooling",
            "mean",
            "--model",
            llm,
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--hidden",
            "8",
            "--prefix-length",
            "1",
            "--eval-every",
            "0",
        ],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(
        app,
        [
            "invert",
            "run",
            "the cat",
            "--embedder",
            enc,
            "--pooling",
            "mean",
            "--model",
            llm,
            "--method",
            "trained",
            "--checkpoint",
            str(tmp_path / "ck"),
            "--corrector",
            str(tmp_path / "corr"),
            "--steps",
            "1",
            "--max-tokens",
            "4",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "step 1: cos" in r.output


def test_long_training_texts_warn_once_with_token_counts(tiny_llama, embedder, tmp_path):
    import warnings

    from workbench.cli.main import main

    long_text = " ".join(["word"] * 40)
    texts = [*TEXTS, long_text]
    lengths = [len(tiny_llama.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    long = [n for n in lengths if n > SMALL.max_tokens]
    assert len(long) >= 1  # the corpus really holds texts beyond max_tokens
    inv = SoftPrefixInverter(tiny_llama, embedder, SMALL)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        inv.fit(texts, tmp_path / "ck", steps=2, checkpoint_every=100, progress=False)
    cut = [str(w.message) for w in seen if "max_tokens" in str(w.message)]
    assert len(cut) == 1, cut  # once per fit, not once per batch
    assert f"{len(long)} of {len(texts)} training texts" in cut[0]
    assert f"longest has {max(long)}" in cut[0] and "InverterConfig(max_tokens=...)" in cut[0]

    wide = InverterConfig(**{**SMALL.__dict__, "max_tokens": max(lengths)})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        SoftPrefixInverter(tiny_llama, embedder, wide).fit(
            texts, tmp_path / "wide", steps=1, progress=False
        )
    assert not [w for w in seen if "max_tokens" in str(w.message)]

    # under the CLI the warning names the flag
    data = tmp_path / "texts.csv"
    data.write_text("text\n" + "\n".join(texts) + "\n")
    with pytest.warns(UserWarning, match=r"raise --max-tokens"):
        main(
            [
                "invert",
                "train",
                "--data",
                str(data),
                "--out",
                str(tmp_path / "cli"),
                "--embedder",
                str(embedder.lm.source),
                "--pooling",
                "mean",
                "--model",
                str(tiny_llama.source),
                "--steps",
                "1",
                "--batch-size",
                "2",
                "--hidden",
                "8",
                "--prefix-length",
                "1",
                "--max-tokens",
                "4",
                "--eval-every",
                "0",
            ]
        )
