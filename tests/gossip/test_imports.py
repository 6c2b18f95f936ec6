"""The gossip core is sans-IO: no event loop, sockets, clock or global randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import meshrouter.gossip

FORBIDDEN = {"trio", "socket", "time", "random", "asyncio", "os", "select", "selectors"}
PACKAGE = Path(meshrouter.gossip.__file__).parent


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and (
        node.test.id == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.Module) -> list[str]:
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if _type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def test_gossip_modules_import_no_io() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) == 5
    for path in modules:
        imported = set(_runtime_imports(ast.parse(path.read_text())))
        assert not imported & FORBIDDEN, f"{path.name} imports {imported & FORBIDDEN}"
        assert all(name in {"meshrouter", "__future__", "collections", "contextlib",
                            "dataclasses", "hashlib", "typing"} for name in imported), (
            f"{path.name} imports {sorted(imported)}"
        )
