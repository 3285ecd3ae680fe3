"""The package type-checks (mypy, basic level, configured in pyproject.toml) and the code lints
(ruff, including the docstring rules), so ``make test`` fails on a type or lint error.

mypy analyses torch, transformers and numpy on its first run (minutes on a loaded machine);
later runs reuse the incremental cache in ``.mypy_cache`` and take seconds."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)


def _ruff() -> str | None:
    """The ruff of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).with_name("ruff")
    return str(beside) if beside.is_file() else shutil.which("ruff")


def test_mypy_finds_no_errors_in_the_package():
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed: pip install -e '.[dev]'")
    result = _run([sys.executable, "-m", "mypy", "workbench"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_finds_no_lint_errors():
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed: pip install -e '.[dev]'")
    result = _run([ruff, "check", "workbench", "tests", "benchmarks"])
    assert result.returncode == 0, result.stdout + result.stderr
