"""The gossip core is sans-IO: no event loop, sockets, clock or global randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import meshrouter.gossip
from tests.conftest import runtime_imports

FORBIDDEN = {"trio", "socket", "time", "random", "asyncio", "os", "select", "selectors"}
ALLOWED = {"meshrouter", "__future__", "collections", "contextlib", "dataclasses", "hashlib",
           "struct", "typing"}
PACKAGE = Path(meshrouter.gossip.__file__).parent


def test_gossip_modules_import_no_io() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert {path.stem for path in modules} == {
        "__init__", "broadcast_hops", "broadcast_plan", "core", "digest_exchange",
        "interfaces", "outbox", "relay", "send_slots", "stats"}
    for path in modules:
        imported = runtime_imports(ast.parse(path.read_text()))
        assert not imported & FORBIDDEN, f"{path.name} imports {imported & FORBIDDEN}"
        assert imported <= ALLOWED, f"{path.name} imports {sorted(imported - ALLOWED)}"
