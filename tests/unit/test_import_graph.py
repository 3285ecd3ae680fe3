"""The package's import graph has no cycle, and every module imports on its own.

Edges are read from the source (``ast``): every ``import`` of a workbench module, at the top or
inside a function (a lazy import is still a dependency), except under ``if TYPE_CHECKING:``
(types only, never executed).
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import workbench

ROOT = Path(workbench.__file__).parent


def is_script(name: str) -> bool:
    """Modules that ``python -m`` or streamlit run as scripts: importing them runs them."""
    return name in ("workbench.__main__", "workbench.dashboard.app") or name.startswith(
        "workbench.dashboard.app_pages."
    )


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
IMPORTABLE = sorted(n for n in MODULES if not is_script(n))


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):
                for other in child.orelse:  # the else branch runs
                    visit(other)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    """``{module: {imported workbench module: line}}``."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in MODULES.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # ``from pkg import sub`` depends on the submodule when there is one.
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source
                    for alias in node.names
                ]
            for target in targets:
                while target and target not in MODULES:  # ``import a.b.c`` -> deepest module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_reader_sees_lazy_imports_and_skips_type_checking():
    graph = import_graph()
    assert "workbench.activations.ray_engine" in graph["workbench.activations.extract"]  # lazy
    assert "workbench.activations.extract" not in graph["workbench.activations.ray_engine"]
    assert "workbench.models.hooks" in graph["workbench.activations.extract"]
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}}) is None


def test_no_import_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    if cycle:
        steps = [f"{a} (line {graph[a][b]}) -> {b}" for a, b in zip(cycle, cycle[1:], strict=False)]
        pytest.fail(
            "import cycle: " + "; ".join(steps) + ". Move the shared code to a module "
            "both can import, or pass it in"
        )


# What each layer must not import (any module of those packages, lazily or not).
NOT_ABOVE = {
    # loading, hook names and the hooks layer: under everything that touches a model
    "models": {
        "activations",
        "probing",
        "inversion",
        "lens",
        "attribution",
        "projection",
        "evaluation",
        "viz",
        "dashboard",
        "cli",
    },
    # pure figure builders: results in, figures out
    "viz": {
        "models",
        "activations",
        "probing",
        "inversion",
        "lens",
        "attribution",
        "projection",
        "evaluation",
        "dashboard",
        "cli",
    },
}


@pytest.mark.parametrize("layer", sorted(NOT_ABOVE))
def test_lower_layers_import_no_higher_one(layer):
    graph = import_graph()
    for name, edges in graph.items():
        if name.split(".")[1:2] == [layer]:
            bad = sorted(t for t in edges if t.split(".")[1] in NOT_ABOVE[layer])
            assert not bad, f"{name} imports {bad}: {layer} sits below them"


@pytest.mark.parametrize("name", IMPORTABLE)
def test_every_module_imports_on_its_own(name):
    if name.startswith("workbench.dashboard"):
        pytest.importorskip("streamlit", reason="the dashboard extra is not installed")
    importlib.import_module(name)


def test_modules_import_in_a_fresh_interpreter_deepest_first():
    """Every module, in reverse name order (submodules before their packages), in a fresh process:
    an import that works only after another module was loaded first fails here."""
    names = [n for n in IMPORTABLE if not n.startswith("workbench.dashboard")]
    code = f"import importlib\nfor n in {names[::-1]!r}:\n    importlib.import_module(n)\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
