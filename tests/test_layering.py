"""The import direction of DESIGN.md, checked by parsing every module.

Sans-IO cores may not import trio, sockets, clocks or the random module's
functions; nothing in meshrouter/ may import sim/ or tests/; sim/ may not
import tests/; and no module imports from a higher layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Layer of each module prefix (longest prefix wins).  Higher may import lower.
LAYERS: dict[str, int] = {
    "meshrouter.errors": 0,
    "meshrouter.names": 0,
    "meshrouter.codec": 0,
    "meshrouter.addresses": 0,
    "meshrouter": 0,  # the package __init__ (version only)
    "meshrouter.wire": 1,
    "meshrouter.gossip": 1,
    "meshrouter.topology": 1,
    "meshrouter.dialing": 1,
    "meshrouter.ipam": 1,
    "meshrouter.dns": 1,
    "meshrouter.endpoints": 1,
    "meshrouter.dataplane.core": 1,
    "meshrouter.dataplane.openflow": 1,
    "meshrouter.config": 1,
    "meshrouter.storage": 2,
    "meshrouter.node.transport": 2,
    "meshrouter.node.service": 2,
    "meshrouter.node.datapath": 2,
    "meshrouter.node": 3,
    # Each feature package = sans-IO core modules + one trio ``service`` shell.
    "meshrouter.ipam.service": 3,
    "meshrouter.endpoints.service": 3,
    "meshrouter.dns.service": 3,
    "meshrouter.expose": 1,
    "meshrouter.expose.service": 3,
    "meshrouter.metrics": 3,
    "meshrouter.metrics.reasons": 1,
    "meshrouter.metrics.events": 1,
    "meshrouter.metrics.histogram": 1,
    "meshrouter.ui": 3,
    "meshrouter.ui.graph": 1,
    "meshrouter.ui.page": 1,
    "meshrouter.explain": 3,
    "meshrouter.explain.core": 1,
    "meshrouter.api": 3,
    "meshrouter.dns.server": 3,
    "meshrouter.dataplane": 3,
    "meshrouter.cli": 4,
    "meshrouter.demo": 4,
    "meshrouter.cni": 4,
    "meshrouter.__main__": 4,  # python -m meshrouter: the CLI
}
CORE_PREFIXES = (
    "meshrouter.errors",
    "meshrouter.names",
    "meshrouter.codec",
    "meshrouter.addresses",
    "meshrouter.wire",
    "meshrouter.gossip",
    "meshrouter.topology",
    "meshrouter.dialing",
    "meshrouter.ipam",
    "meshrouter.dataplane.core",
    "meshrouter.dataplane.openflow",
    "meshrouter.endpoints",
    "meshrouter.config",
    "meshrouter.metrics.reasons",
    "meshrouter.metrics.events",
    "meshrouter.metrics.histogram",
    "meshrouter.ui.graph",
    "meshrouter.ui.page",
    "meshrouter.explain.core",
    "meshrouter.expose",
)
CORE_EXCLUDED = (
    "meshrouter.dns.server",
    "meshrouter.dns.service",
    "meshrouter.expose.service",
    "meshrouter.ipam.service",
    "meshrouter.endpoints.service",
)
FORBIDDEN_IN_CORES = {
    "trio",
    "socket",
    "time",
    "asyncio",
    "selectors",
    "threading",
    "anyio",
    "subprocess",
    "secrets",
    "pyroute2",
    "httpx",
    "starlette",
    "hypercorn",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int | None:
    best: tuple[int, int] | None = None
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > best[0]:
                best = (len(prefix), layer)
    return None if best is None else best[1]


def _is_core(module: str) -> bool:
    if any(module == p or module.startswith(p + ".") for p in CORE_EXCLUDED):
        return False
    if module == "meshrouter.dns" or module.startswith("meshrouter.dns."):
        return True
    return any(module == p or module.startswith(p + ".") for p in CORE_PREFIXES)


def _imports(tree: ast.AST, module: str) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((name, node.lineno))
            found += [(f"{name}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _python_files(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py"))


MODULES = _python_files("meshrouter")


def test_there_are_modules_to_check() -> None:
    assert len(MODULES) > 10


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_flow_down(path: Path) -> None:
    module = _module_name(path)
    tree = ast.parse(path.read_text(), str(path))
    own_layer = _layer(module)
    assert own_layer is not None, f"{module} has no layer in LAYERS"
    for name, line in _imports(tree, module):
        top = name.split(".")[0]
        assert top not in ("sim", "tests"), f"{module}:{line} imports {name}"
        if top == "meshrouter":
            layer = _layer(name)
            if layer is not None and name != "meshrouter.__version__":
                assert layer <= own_layer, (
                    f"{module} (L{own_layer}):{line} imports {name} (L{layer})"
                )
        if _is_core(module):
            assert top not in FORBIDDEN_IN_CORES, f"sans-IO core {module}:{line} imports {name}"


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if _is_core(_module_name(p))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_cores_use_random_only_as_a_type(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "random":
                assert node.attr == "Random", (
                    f"{path}:{node.lineno} uses random.{node.attr}; take an rng argument instead"
                )
            if node.value.id in ("os", "time") and node.attr in ("urandom", "time", "monotonic"):
                raise AssertionError(f"{path}:{node.lineno} reads {node.value.id}.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module == "random":
            assert all(a.name == "Random" for a in node.names), f"{path}:{node.lineno}"


@pytest.mark.parametrize("path", _python_files("sim"), ids=lambda p: str(p.relative_to(ROOT)))
def test_simulator_does_not_import_tests(path: Path) -> None:
    module = _module_name(path)
    for name, line in _imports(ast.parse(path.read_text()), module):
        assert name.split(".")[0] != "tests", f"{module}:{line} imports {name}"
