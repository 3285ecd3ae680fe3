"""Every research notebook runs top to bottom on the bundled models (small sizes), and a failing
cell fails the suite. Executed copies (with outputs) are saved under test-artifacts/notebooks."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
ARTIFACTS = ROOT / "test-artifacts" / "notebooks"

#: Small sizes for CI (each notebook documents its own full-size defaults).
SMALL = {
    "WB_NB_ROWS": "200",
    "WB_NB_PAIRS": "150",
    "WB_NB_LAYERS": "0,4,8,12,16,20,24,30",
    "WB_NB_SENTENCES": "3",
    "WB_NB_FAST": "1",
}


def test_notebooks_exist():
    names = {p.stem for p in NOTEBOOKS}
    assert {"01_quickstart", "02_geometry_of_truth", "03_space", "04_llm_as_embedder",
            "05_inversion"} <= names, names


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    runs = tmp_path_factory.getbasetemp() / "notebook-runs"  # shared by the notebooks
    for key, value in {**SMALL, "WB_NB_RUNS": str(runs), "HF_HUB_OFFLINE": "1",
                       "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    notebook = jupytext.read(path)
    client = nbclient.NotebookClient(
        notebook, timeout=1200, kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},
    )
    try:
        client.execute()
    finally:
        import nbformat

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, ARTIFACTS / f"{path.stem}.ipynb")
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert figures, f"{path.name} shows no figure"
