"""The topology core imports no IO, clock or global randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import meshrouter.topology
from tests.conftest import runtime_imports

FORBIDDEN = {"trio", "socket", "time", "random", "asyncio", "os", "subprocess", "threading",
             "selectors"}
PACKAGE_DIR = Path(meshrouter.topology.__file__).parent


@pytest.mark.parametrize("path", sorted(PACKAGE_DIR.glob("*.py")), ids=lambda p: p.name)
def test_module_is_sans_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    assert not runtime_imports(tree) & FORBIDDEN
    assert ast.get_docstring(tree), "every core module starts with its theory of operation"
