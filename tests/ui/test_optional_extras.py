"""Optional pieces install cleanly (issue 13, item 6): the router's own imports
are all declared dependencies, every optional feature names its extra, and a
missing optional package is one line with the install command, not a traceback."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_third_party_import_of_the_router_is_a_declared_dependency() -> None:
    declared = {requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    missing: list[str] = []
    for path in sorted((ROOT / "meshrouter").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "meshrouter":
                    continue
                dists = {d.lower().replace("_", "-") for d in providers.get(top, [top])}
                if not dists & declared:
                    missing.append(f"{path.relative_to(ROOT)}: {name} ({', '.join(sorted(dists))})")
    assert missing == []


def test_each_optional_extra_is_named_where_it_is_needed() -> None:
    extras = set(PYPROJECT["project"]["optional-dependencies"]) - {"test"}
    assert {"sim", "bench"} <= extras
    sources = "\n".join(p.read_text() for d in ("meshrouter", "sim")
                        for p in (ROOT / d).rglob("*.py"))
    assert "meshrouter[sim]" in sources


def test_sim_plot_without_matplotlib_says_how_to_install_it(tmp_path: Path) -> None:
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text('import sys\nsys.modules["matplotlib"] = None\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hide), str(ROOT)]))
    result = subprocess.run(
        [sys.executable, "-m", "meshrouter.cli", "sim", "--peers", "2",
         "--plot", str(tmp_path / "plot.png")],
        capture_output=True, text=True, timeout=60, env=env, check=False, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "pip install 'meshrouter[sim]'" in result.stderr
    assert not (tmp_path / "plot.png").exists()
