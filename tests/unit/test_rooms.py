"""The framework's rooms: one concern a module, imports one way, none of the served code."""

import ast
from pathlib import Path

import pytest

from deploy.localstack import PROJECT

PACKAGE = PROJECT / "modelserver"
MODULES = sorted(PACKAGE.glob("*.py"))
# What a user serves: the framework never imports it, so removing or replacing it leaves the
# framework whole.
USER_CODE = {"registry", "algo", "digits", "server", "wsgi"}
MAX_LINES = 400


def imported(path: Path) -> set[str]:
    """The top-level names of what a module imports, and modelserver.X as "modelserver.X"."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "modelserver":  # from modelserver import answers, ...
                names.update(f"modelserver.{alias.name}" for alias in node.names)
    return names


def framework_imports() -> dict[str, set[str]]:
    return {
        f"modelserver.{path.stem}": {n for n in imported(path) if n.startswith("modelserver.")}
        for path in MODULES
        if path.stem != "__init__"
    }


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_each_module_opens_with_one_line_saying_what_it_owns(path):
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring, f"{path.name} has no docstring"
    assert len(docstring.splitlines()[0]) <= 100


@pytest.mark.parametrize("path", [*MODULES, PROJECT / "server.py"], ids=lambda path: path.name)
def test_no_module_of_the_service_is_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_the_framework_imports_nothing_a_user_serves(path):
    assert not {name.split(".")[0] for name in imported(path)} & USER_CODE


def test_the_framework_imports_run_one_way():
    graph = framework_imports()
    state: dict[str, str] = {}

    def visit(module: str, path: tuple[str, ...]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", "import cycle: " + " -> ".join((*path, module))
        state[module] = "open"
        for target in graph.get(module, ()):
            visit(target, (*path, module))
        state[module] = "done"

    for module in graph:
        visit(module, ())
    assert len(graph) >= 10  # the walk saw the package
