"""Every shipped spec (probes/*.toml) runs its probes without a ConvergenceWarning.

Each spec runs end to end on a few rows of its real data (its own model, layers, probes, folds,
controls, MDL and generalisation), without the bootstrap, figures, random-weights baseline and
causal check (they fit no probe). ``run_spec`` turns every warning raised by the fits into a
note of ``summary.json``; scikit-learn's and the batched solver's ConvergenceWarning must not be
among them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPECS = sorted((REPO / "probes").glob("*.toml"))
#: rows per spec: enough for every fold to hold both classes (sentences for ud_upos)
LIMITS = {"ud_upos": 12, "world_places_latlon": 150}

pytestmark = [pytest.mark.slow, pytest.mark.shared]


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_shipped_spec_fits_converge(path, tmp_path, shared_dir):
    from workbench.probing import load_spec, run_spec

    spec = load_spec(path)
    out = run_spec(
        spec,
        overrides={
            "outputs.dir": str(tmp_path / path.stem),
            "outputs.figures": False,
            "dataset.limit": LIMITS.get(path.stem, 120),
            "evaluation.n_boot": 0,
            "evaluation.random_weights": False,
            "causal": None,
        },
        progress=False,
    )
    notes = json.loads((out / "summary.json").read_text())["notes"]
    assert not [n for n in notes if "converge" in n.lower()], notes
