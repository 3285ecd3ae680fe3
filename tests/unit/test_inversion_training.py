"""The training recipe of the trained inverter and corrector on tiny random models: bf16 autocast
on CPU, gradient accumulation, resume equality with the held-out evaluation log, real
hypotheses cached for the corrector, ``hf:`` specs and the ``invert train`` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_inversion_trained import TEXTS  # the same eight sentences

from workbench.data import load_dataset, parse_hf_spec
from workbench.errors import DatasetNotFoundError, UnknownDatasetError, WorkbenchError
from workbench.inversion.correction import HYPOTHESES_FILE, TrainedCorrector, cached_hypotheses
from workbench.inversion.embedders import ModelEmbedder
from workbench.inversion.trained import InverterConfig, SoftPrefixInverter, read_eval_log

HELD = ["a bird sings", "the sun is hot"]
SMALL = InverterConfig(prefix_length=2, hidden=16, batch_size=2, lr=3e-3, max_tokens=12)
TIMING = {"seconds_per_step", "eval_seconds"}


@pytest.fixture(scope="module")
def embedder(tiny_bert):
    return ModelEmbedder(tiny_bert, pooling="mean")


def test_bf16_autocast_on_cpu(tiny_llama, embedder, tmp_path):
    config = InverterConfig(**{**SMALL.__dict__, "precision": "bf16"})
    bf = SoftPrefixInverter(tiny_llama, embedder, config)
    fp = SoftPrefixInverter(tiny_llama, embedder, SMALL)  # the same seed: the same weights
    vec = torch.from_numpy(embedder.embed(TEXTS[:4]))
    with bf.autocast():
        assert torch.is_autocast_enabled("cpu")
        low = float(bf.loss(vec, TEXTS[:4]).detach())
    with fp.autocast():
        assert not torch.is_autocast_enabled("cpu")
        full = float(fp.loss(vec, TEXTS[:4]).detach())
    assert low != full and abs(low - full) < 0.05 * full  # bf16 matmuls, the same loss to ~1%
    bf.fit(TEXTS, tmp_path / "bf", steps=3, checkpoint_every=10, progress=False)
    assert len(bf.losses_) == 3 and np.isfinite(bf.losses_).all()
    assert all(p.dtype == torch.float32 for p in bf.parameters())  # master weights stay fp32
    meta = json.loads((tmp_path / "bf" / "inverter.json").read_text())
    assert meta["config"]["precision"] == "bf16" and len(meta["step_seconds"]) == 3
    with pytest.raises(WorkbenchError, match="precision='fp32' or 'bf16'"):
        InverterConfig(precision="fp16")
    with pytest.raises(WorkbenchError, match="grad_accum=1 or more"):
        InverterConfig(grad_accum=0)


@pytest.mark.parametrize("cls", [SoftPrefixInverter, TrainedCorrector])
def test_resume_equals_uninterrupted_with_eval_log(tiny_llama, embedder, tmp_path, cls):
    config = InverterConfig(**{**SMALL.__dict__, "grad_accum": 2, "precision": "bf16"})
    kw = {"held_out": HELD, "eval_every": 2, "eval_max_tokens": 4, "progress": False}
    full = cls(tiny_llama, embedder, config).fit(TEXTS, tmp_path / "a", 5, checkpoint_every=2, **kw)
    part = cls(tiny_llama, embedder, config)
    part.fit(TEXTS, tmp_path / "b", 5, checkpoint_every=2, stop_after=3, **kw)
    # interrupted after step 3: the checkpoint is at 3, the log holds steps 0 and 2
    assert [r["step"] for r in read_eval_log(tmp_path / "b")] == [0, 2]
    resumed = cls(tiny_llama, embedder, config)
    resumed.fit(TEXTS, tmp_path / "b", 5, checkpoint_every=2, **kw)
    assert resumed.losses_ == full.losses_ and len(full.losses_) == 5
    a, b = read_eval_log(tmp_path / "a"), read_eval_log(tmp_path / "b")
    assert [r["step"] for r in a] == [0, 2, 4, 5]
    assert [{k: v for k, v in r.items() if k not in TIMING} for r in a] == [
        {k: v for k, v in r.items() if k not in TIMING} for r in b
    ]
    record = a[-1]
    assert {"bleu", "token_f1", "cosine", "exact_match", "train_loss"} <= record.keys()
    assert record["n_held_out"] == 2 and record["seconds_per_step"] > 0
    assert record["train_loss"] == pytest.approx(full.losses_[-1], abs=1e-6)  # only step 5
    assert a[0]["train_loss"] is None  # before training
    if cls is TrainedCorrector:
        assert {"draft_bleu", "draft_token_f1", "draft_cosine"} <= record.keys()
    # a damaged log keeps the records before the damage, with a warning
    (tmp_path / "a" / "eval.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in a[:2]) + '{"step": 4, "bl'
    )
    with pytest.warns(UserWarning, match="damaged after record 2"):
        assert read_eval_log(tmp_path / "a") == a[:2]
    # grad_accum: each optimizer step reads batch_size * grad_accum rows
    assert len(full._batch_indices(0, len(TEXTS))) == 4


def test_corrector_trains_on_real_hypotheses(tiny_llama, embedder, tmp_path, monkeypatch):
    calls: list[list[str]] = []

    def make(part: list[str]) -> list[str]:
        calls.append(part)
        return [" ".join(reversed(t.split())) for t in part]

    path = tmp_path / HYPOTHESES_FILE
    hyps = cached_hypotheses(TEXTS, path, make, source="reverse", chunk=3, progress=False)
    assert hyps == [" ".join(reversed(t.split())) for t in TEXTS] and len(calls) == 3
    # a torn last line (an interrupted run) is made again, nothing else
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:5]) + '\n{"text": "tor')
    calls.clear()
    again = cached_hypotheses(TEXTS, path, make, source="reverse", chunk=3, progress=False)
    assert again == hyps and [len(c) for c in calls] == [3, 1]
    calls.clear()
    cached_hypotheses(TEXTS, path, make, source="another", chunk=8, progress=False)
    assert [len(c) for c in calls] == [8]  # another source starts over

    corr = TrainedCorrector(tiny_llama, embedder, SMALL)
    corr.fit(TEXTS, tmp_path / "c", steps=2, drafts=hyps, progress=False)
    vectors, seen = embedder.embed(TEXTS), []
    embed = embedder.embed
    monkeypatch.setattr(embedder, "embed", lambda d: seen.extend(d) or embed(d))
    corr._batch_loss(0, np.arange(4), TEXTS, vectors)
    assert seen == hyps[:4]  # real_fraction 1.0: every row reads its real hypothesis
    with pytest.raises(ValueError, match="real_fraction"):
        TrainedCorrector(tiny_llama, embedder, SMALL).fit(
            TEXTS, tmp_path / "d", 1, drafts=hyps, real_fraction=2.0, progress=False
        )


def test_hf_spec_parsing_streaming_and_offline_error(tmp_path, monkeypatch):
    assert parse_hf_spec("imdb") == ("imdb", None, "train")
    assert parse_hf_spec("imdb:test[:10]") == ("imdb", None, "test[:10]")
    assert parse_hf_spec("wikitext:wikitext-2-raw-v1") == ("wikitext", "wikitext-2-raw-v1", "train")
    assert parse_hf_spec("a/b:cfg:validation") == ("a/b", "cfg", "validation")
    assert parse_hf_spec("a/b::dev") == ("a/b", None, "dev")
    with pytest.raises(UnknownDatasetError, match="hf:NAME:CONFIG:SPLIT"):
        parse_hf_spec("a:b:c:d")
    # a local JSONL through the `json` builder: offline, streamed, stopped after `limit` rows
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    ds = load_dataset("hf:json", data_files=str(data), streaming=True, limit=3)
    assert ds.texts == TEXTS[:3]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("hf:workbench-no-such/dataset:cfg:train")
    message = str(e.value)
    assert "\n" not in message and "configuration 'cfg'" in message
    assert "HF_HUB_OFFLINE=1" in message and "pass that file" in message


def test_cli_train_txt_bf16_eval_and_hypotheses(tiny_llama, tiny_bert, tmp_path):
    from typer.testing import CliRunner

    from workbench.cli.main import app

    data = tmp_path / "texts.txt"
    data.write_text("\n".join(TEXTS + HELD) + "\n")  # one text per line, no header
    common = ["--data", str(data), "--embedder", str(tiny_bert.source), "--pooling", "mean"]
    common += ["--model", str(tiny_llama.source), "--steps", "2", "--batch-size", "2"]
    common += ["--hidden", "8", "--prefix-length", "1", "--max-tokens", "6"]
    common += ["--eval-size", "2", "--eval-every", "1"]
    r = CliRunner().invoke(
        app,
        ["invert", "train", *common, "--out", str(tmp_path / "inv"), "--precision", "bf16"]
        + ["--grad-accum", "2"],
    )
    assert r.exit_code == 0, r.output
    assert "10 texts" not in r.output and "8 texts (2 held out)" in r.output
    assert [x["step"] for x in read_eval_log(tmp_path / "inv")] == [0, 1, 2]
    assert "held-out at step 2: BLEU" in r.output
    meta = json.loads((tmp_path / "inv" / "inverter.json").read_text())
    assert meta["config"]["precision"] == "bf16" and meta["config"]["grad_accum"] == 2
    r = CliRunner().invoke(
        app,
        ["invert", "train", *common, "--out", str(tmp_path / "corr"), "--kind", "corrector"]
        + ["--hypotheses", str(tmp_path / "inv")],
    )
    assert r.exit_code == 0, r.output
    lines = (tmp_path / "corr" / HYPOTHESES_FILE).read_text().splitlines()
    assert len(lines) == 1 + len(TEXTS + HELD)  # the key, then every text's hypothesis
    assert "draft_cosine" in read_eval_log(tmp_path / "corr")[-1]
    r = CliRunner().invoke(
        app, ["invert", "train", *common[:-4], "--eval-size", "6", "--out", str(tmp_path / "x")]
    )
    assert isinstance(r.exception, WorkbenchError) and "--eval-every 0" in str(r.exception)
    r = CliRunner().invoke(
        app, ["invert", "train", *common, "--out", str(tmp_path / "y"), "--stream"]
    )
    assert isinstance(r.exception, WorkbenchError) and "hf: datasets only" in str(r.exception)


def test_corrector_batched_eval_equals_one_by_one(tiny_llama, embedder):
    # held-out corrections decode left-padded drafts of different lengths together: the same
    # greedy texts as correcting each draft alone
    corr = TrainedCorrector(tiny_llama, embedder, SMALL)
    texts, drafts = ["the cat sat on the mat today", "a dog"], ["cat mat the on sat big", "dog"]
    corr._eval_drafts = drafts
    vectors = embedder.embed(texts)
    alone = [
        corr.propose(v, d, num_return=1, max_new_tokens=6)[0]
        for v, d in zip(vectors, drafts, strict=True)
    ]
    assert corr._eval_hypotheses(texts, vectors, 6) == alone
