"""The repository's datasets/ folder holds cards, not code: it must never shadow `import datasets`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FOLDER = REPO / "datasets"

_PROBE = """
import json, sys
sys.path.insert(0, {root!r})
try:
    import datasets
except ImportError:
    print(json.dumps({{"import_error": True}}))
else:
    print(json.dumps({{"file": getattr(datasets, "__file__", None)}}))
"""


def _import_datasets(*extra_paths: Path) -> dict[str, object]:
    """Run `import datasets` in a fresh interpreter with cwd and sys.path[0] = the repo root."""
    # extra paths go right after the repo root (which the probe puts first), before site-packages
    code = "import sys\n" + "".join(f"sys.path.insert(0, {str(p)!r})\n" for p in extra_paths)
    code += _PROBE.format(root=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _inside_folder(file: object) -> bool:
    return isinstance(file, str) and Path(file).resolve().is_relative_to(FOLDER.resolve())


def test_folder_is_not_a_python_package() -> None:
    assert FOLDER.is_dir()
    assert not (FOLDER / "__init__.py").exists()
    assert not list(FOLDER.rglob("*.py")), "datasets/ holds cards and data files, not code"


def test_import_datasets_is_not_the_folder() -> None:
    result = _import_datasets()
    # no module file from the folder: ImportError, the real library, or at most a code-less
    # namespace package (which loses to any installed `datasets`, see the next test)
    assert result.get("import_error") or not _inside_folder(result.get("file"))


def test_an_installed_datasets_wins_over_the_folder(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "datasets").mkdir(parents=True)
    (site / "datasets" / "__init__.py").write_text("")
    result = _import_datasets(site)  # placed right *after* the repo root on sys.path
    assert result.get("file") == str(site / "datasets" / "__init__.py")


def test_installed_huggingface_datasets_is_what_imports() -> None:
    """With Hugging Face `datasets` installed (the `all` extra), `import datasets` from the repo
    root is that library, never the folder."""
    import importlib.util

    spec = importlib.util.find_spec("datasets")
    if spec is None or spec.origin is None or _inside_folder(spec.origin):
        import pytest

        pytest.skip("Hugging Face `datasets` is not installed (pip install 'workbench[hf]')")
    result = _import_datasets()
    assert result.get("file") == spec.origin
    assert not _inside_folder(result.get("file"))
