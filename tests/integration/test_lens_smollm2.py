"""Logit lens, tuned lens and Patchscopes on the bundled SmolLM2-135M (real weights)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.inversion import LogitLens, Patchscope, TunedLens, lens_report

pytestmark = pytest.mark.slow


def _ud_texts(shared_dir):
    path = shared_dir / "data/ud_english_ewt/en_ewt-ud-dev.conllu"
    if not path.is_file():
        pytest.skip(f"{path} is missing: the tuned-lens test trains on UD English sentences")
    import workbench as wb

    return [t for t in wb.load_dataset(str(path)).texts if 5 <= len(t.split()) <= 25]


def test_logit_lens_finds_paris_late(smollm2):
    res = LogitLens(smollm2).run("The capital of France is", k=5, target=" Paris")
    rank = res.target_rank[:, -1]  # after "is", per layer 0..30
    assert res.top_tokens[-1][-1][0] == " Paris" and rank[-1] == 1
    assert (rank[-3:] <= 10).all(), rank  # measured: 7, 3, 1 at layers 28-30
    assert np.median(rank[:20]) > 100, rank  # measured: thousands before layer 24


def test_tuned_lens_beats_logit_lens_at_middle_layers(smollm2, shared_dir):
    texts = _ud_texts(shared_dir)
    train, held = texts[:-100], texts[-20:]  # the held-out sentences are never trained on
    tuned = TunedLens(smollm2, layers=[10, 15, 20]).fit(
        train[:64],
        steps=2,
        init_texts=64,
        max_length=20,
        tokens_per_step=16,
        lr=1e-4,
        progress=False,
    )
    rep = lens_report(smollm2, held, tuned, max_length=20, progress=False)
    t = rep.table.set_index("layer")
    print(rep.to_markdown())
    for layer in (10, 15, 20):
        assert t.loc[layer, "kl_tuned"] < 0.5 * t.loc[layer, "kl_logit"], t
        assert t.loc[layer, "ppl_tuned"] < t.loc[layer, "ppl_logit"], t
    assert t.loc[30, "kl_logit"] == pytest.approx(0.0, abs=1e-4)


def test_patchscope_reads_back_a_city(smollm2):
    scope = Patchscope(smollm2)  # "cat -> cat; 1135 -> 1135; hello -> hello; ? ->"
    plain = smollm2.tokenizer.decode(scope.generate(scope.target_ids, max_new_tokens=6))
    results = scope.run_layers("I visited Paris", [3, 6, 10, 15, 22], position=-1, max_new_tokens=6)
    for r in results:
        print(r.layer, repr(r.source_token), repr(r.text))
    # measured: " Paris;" at layers 1-12, then " hello;" (the prompt's own last example) from 15
    assert plain.strip().startswith("hello")
    by_layer = {r.layer: r.description for r in results}
    assert "Paris" in by_layer[6] and "Paris" in by_layer[10], by_layer
    # patched into an early layer, a later layer's state is read back too (measured: layers 2-22)
    cross = scope.run("I visited Paris", layer=14, position=-1, target_layer=3, max_new_tokens=6)
    print("14 -> 3", repr(cross.text))
    assert "Paris" in cross.description
