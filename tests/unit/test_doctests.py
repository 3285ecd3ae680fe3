"""The ``Examples:`` blocks in the package's docstrings run and print what they say.

Examples that need a bundled model or a long computation are marked ``# doctest: +SKIP`` in
the docstring itself; everything else runs here, module by module.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import workbench

#: Streamlit scripts (they draw a page when imported) and the ``python -m`` entry point.
NOT_IMPORTABLE = ("workbench.__main__", "workbench.dashboard.app", "workbench.dashboard.app_pages")


def _modules() -> list[str]:
    names = ["workbench"]
    for info in pkgutil.walk_packages(workbench.__path__, prefix="workbench."):
        if not info.name.startswith(NOT_IMPORTABLE):
            names.append(info.name)
    return sorted(names)


def _with_examples(name: str) -> bool:
    spec = importlib.util.find_spec(name)
    origin = spec.origin if spec else None
    return bool(origin) and ">>>" in open(origin, encoding="utf-8").read()


MODULES = [m for m in _modules() if _with_examples(m)]


def test_every_module_with_examples_is_collected():
    assert len(MODULES) >= 20, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str):
    module = importlib.import_module(name)
    result = doctest.testmod(
        module,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        verbose=False,
        report=True,
    )
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
