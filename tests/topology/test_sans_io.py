"""The topology core imports no IO, clock or global randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import meshrouter.topology

FORBIDDEN = {"trio", "socket", "time", "random", "asyncio", "os", "subprocess", "threading",
             "selectors"}
PACKAGE_DIR = Path(meshrouter.topology.__file__).parent


def runtime_imports(tree: ast.Module) -> set[str]:
    """Top-level module names imported outside ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and ast.unparse(node.test) in {
                    "TYPE_CHECKING", "typing.TYPE_CHECKING"}:
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    visit([child])

    visit(tree.body)
    return found


@pytest.mark.parametrize("path", sorted(PACKAGE_DIR.glob("*.py")), ids=lambda p: p.name)
def test_module_is_sans_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    assert not runtime_imports(tree) & FORBIDDEN
    assert ast.get_docstring(tree), "every core module starts with its theory of operation"
