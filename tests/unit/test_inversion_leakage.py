"""The leakage report at scale on a tiny random Llama: over a store, resumable (a SIGKILL mid-run,
then a rerun that completes without redoing items), metadata checked on resume, entity recall
and the defence curve with bootstrap intervals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from workbench.artifacts import append_jsonl, read_jsonl
from workbench.errors import StoreSelectionError
from workbench.inversion.embedders import ModelEmbedder
from workbench.inversion.leakage import (
    ITEMS,
    LeakageMismatchError,
    leakage_report,
    propn_entities,
)
from workbench.inversion.metrics import bleu

TEXTS = [
    "the city of paris is in france",
    "a dog barked at Bob",
    "numbers like 12 are small",
    "Alice met Carol in Rome",
]
OPTS = {"beam_width": 2, "top_k": 2, "keywords": 2, "max_tokens": 4, "prior_words": 300}
KW = {"layers": [1, -1], "poolings": ["mean"], "noise": [0.0, 0.5], "ks": (1, 2), "n_boot": 200}


def _run(lm, out=None, texts=TEXTS, **kw):
    return leakage_report(lm, texts, guided=OPTS, out=out, progress=False, **{**KW, **kw})


def test_ci_columns_present_ordered_and_consistent(tiny_llama, tmp_path):
    rep = _run(tiny_llama, tmp_path / "a")
    metrics = ["bleu", "token_f1", "cosine", "cosine_bow_anchor", "entity_recall"]
    cols = list(rep.rows[0])
    for m in metrics:  # each metric is followed by its interval
        i = cols.index(m)
        assert cols[i + 1 : i + 3] == [f"{m}_low", f"{m}_high"]
    for r in rep.rows + rep.defence:
        for m in [c for c in r if f"{c}_low" in r]:
            if np.isfinite(r[m]):
                assert r[f"{m}_low"] <= r[m] + 1e-9 and r[m] <= r[f"{m}_high"] + 1e-9, m
    assert [(r["layer"], r["pooling"]) for r in rep.rows] == [(1, "mean"), (3, "mean")]
    assert [d["noise"] for d in rep.defence] == [0.0, 0.5]
    assert {"recall@1", "recall@1_low", "recall@2_high"} <= set(rep.defence[0])
    assert rep.defence[0]["recall@1"] == 1.0  # clean vectors find themselves
    # corpus BLEU from the stored sufficient statistics equals sacrebleu on the texts
    items = read_jsonl(tmp_path / "a" / ITEMS)
    hyps = [r["hypothesis"] for r in items if r["layer"] == 1 and r["noise"] == 0.0]
    assert rep.rows[0]["bleu"] == pytest.approx(bleu(TEXTS, hyps))
    # entity recall over the texts that have entities (default: capitalised non-initial words)
    assert 0 <= rep.rows[0]["entity_recall"] <= 1
    assert "[" in rep.to_markdown() and "Gaussian-noise defence" in rep.to_markdown()


def test_store_vectors_equal_the_embedder(tiny_llama, tmp_path):
    import workbench

    store = workbench.extract(
        tiny_llama, TEXTS, layers=[1, -1], pooling="mean", out=tmp_path / "s", progress=False
    )
    np.testing.assert_allclose(
        store.layer(1, "mean"), ModelEmbedder(tiny_llama, 1, "mean").embed(TEXTS), atol=1e-5
    )
    from_store = leakage_report(
        tiny_llama, store=store, guided=OPTS, progress=False, **{**KW, "noise": [0.0]}
    )
    from_texts = _run(tiny_llama, noise=[0.0])
    for a, b in zip(from_store.examples.values(), from_texts.examples.values(), strict=True):
        assert a == b
    with pytest.raises(StoreSelectionError, match="layers"):
        leakage_report(tiny_llama, store=store, layers=[2], guided=OPTS, progress=False)


def test_store_of_another_model_is_refused(tiny_llama, tiny_gpt2, tmp_path):
    import workbench

    store = workbench.extract(tiny_gpt2, TEXTS, layers=[1], out=tmp_path / "g", progress=False)
    with pytest.raises(LeakageMismatchError, match="not of"):
        leakage_report(tiny_llama, store=store, layers=[1], guided=OPTS, progress=False)


def test_metadata_mismatch_on_resume(tiny_llama, tmp_path):
    out = tmp_path / "m"
    _run(tiny_llama, out, noise=[0.0])
    with pytest.raises(LeakageMismatchError, match=r"noise \[0.0\], not \[0.0, 0.5\]"):
        _run(tiny_llama, out)
    other = [TEXTS[0], "another text", *TEXTS[2:]]
    with pytest.raises(LeakageMismatchError, match="other text.*row 1"):
        _run(tiny_llama, out, texts=other, noise=[0.0])
    with pytest.raises(LeakageMismatchError, match="guided"):
        leakage_report(tiny_llama, TEXTS, out=out, progress=False, **{**KW, "noise": [0.0]})
    with pytest.raises(LeakageMismatchError, match="unknown inverter option"):
        leakage_report(tiny_llama, TEXTS, guided={"beams": 3}, progress=False)


_CHILD = """
import sys, time
from workbench.inversion import guided
from workbench.inversion.leakage import leakage_report
from workbench.models import load_model

slow = guided.GuidedInverter.invert
def invert(self, *a, **k):  # slow each item down so the parent can kill the run mid-way
    time.sleep(0.4)
    return slow(self, *a, **k)
guided.GuidedInverter.invert = invert
leakage_report(load_model(sys.argv[1]), {texts!r}, out=sys.argv[2], guided={opts!r},
               progress=False, **{kw!r})
"""


def test_resume_after_sigkill_completes_without_redoing(tiny_llama, tmp_path):
    out = tmp_path / "killed"
    script = _CHILD.format(texts=TEXTS, opts=OPTS, kw=KW)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script, tiny_llama.source, str(out)], env=env)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(read_jsonl(out / ITEMS)) < 3:
            assert proc.poll() is None, "the run ended before it could be interrupted"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    before = read_jsonl(out / ITEMS)
    total = len(TEXTS) * 3  # two layers clean, one noisy level at the defence layer
    assert 3 <= len(before) < total
    # a torn last line, as a kill mid-append leaves it, is dropped on resume
    with open(out / ITEMS, "a") as f:
        f.write('{"layer": 1, "pooling": "me')
    resumed = _run(tiny_llama, out)
    after = read_jsonl(out / ITEMS)
    assert len(after) == total  # each item exactly once
    assert after[: len(before)] == before  # finished items kept, not redone
    keys = {(r["layer"], r["pooling"], r["noise"], r["row"]) for r in after}
    assert len(keys) == total
    fresh = _run(tiny_llama, tmp_path / "fresh")
    assert resumed.examples == fresh.examples
    strip = [{k: v for k, v in r.items() if k != "seconds_per_text"} for r in resumed.rows]
    assert strip == [{k: v for k, v in r.items() if k != "seconds_per_text"} for r in fresh.rows]
    assert resumed.defence == fresh.defence


def test_jsonl_append_and_torn_tail(tmp_path):
    path = tmp_path / "x.jsonl"
    append_jsonl(path, [{"a": 1}, {"a": 2}])
    path.write_bytes(path.read_bytes() + b'{"a": 3')  # killed mid-append
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    assert read_jsonl(path, repair=True) == [{"a": 1}, {"a": 2}]
    append_jsonl(path, [{"a": 4}])
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}, {"a": 4}]
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(Exception, match="line 2 is not JSON"):
        read_jsonl(path)


def test_propn_entities_from_ud(shared_dir: Path):
    from workbench.data import load_dataset

    ds = load_dataset(str(shared_dir / "data/ud_english_ewt/en_ewt-ud-dev.conllu"), limit=40)
    ents = propn_entities(ds)
    assert ents is not None and len(ents) == len(ds.texts)
    for text, found, tags in zip(ds.texts, ents, ds.word_columns["upos"], strict=True):
        assert all(e in text or e.replace(" ", "") in text.replace(" ", "") for e in found)
        assert sum(len(e.split()) for e in found) == sum(t == "PROPN" for t in tags)
    assert any(len(e.split()) > 1 for found in ents for e in found)  # multi-word names


def test_report_json_roundtrip(tiny_llama, tmp_path):
    rep = _run(tiny_llama, noise=[0.0])
    data = json.loads(json.dumps(rep.to_dict()))
    assert "text_hashes" not in data["meta"] and data["rows"][0]["layer"] == 1


def test_cli_over_a_store_writes_report_and_figure(tiny_llama, tmp_path, capsys):
    import workbench
    from workbench.cli.main import main

    workbench.extract(
        tiny_llama, TEXTS, layers=[1, -1], pooling="mean", out=tmp_path / "s", progress=False
    )
    args = ["invert", "leakage", "--store", tmp_path / "s", "--model", tiny_llama.source,
            "--layers", "1,-1", "--n", "3", "--noise", "0,0.5", "--n-boot", "50",
            "--guided", "beam_width=2,top_k=2,keywords=2,max_tokens=4,prior_words=300",
            "--out", tmp_path / "o"]  # fmt: skip
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
        raise SystemExit(0)
    assert not info.value.code, capsys.readouterr().err
    assert len(read_jsonl(tmp_path / "o" / ITEMS)) == 3 * 3
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert [r["layer"] for r in report["rows"]] == [1, 3] and report["rows"][0]["n"] == 3
    png = (tmp_path / "o" / "leakage.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    with pytest.raises(SystemExit) as info:
        main(["invert", "leakage", "--model", str(tiny_llama.source)])
    assert info.value.code == 2 and "--data FILE or an activation store as --store DIR" in (
        capsys.readouterr().err
    )


def test_leakage_figure_draws_bands(tiny_llama):
    from workbench.viz import leakage_figure

    rep = _run(tiny_llama)
    fig = leakage_figure(rep.rows, rep.defence, title="tiny")
    left, right = fig.axes
    assert len(left.collections) >= 3 and len(right.collections) >= 4  # one CI band per line
    assert [t.get_text() for t in left.get_legend().get_texts()][:2] == ["token_f1", "cosine"]
