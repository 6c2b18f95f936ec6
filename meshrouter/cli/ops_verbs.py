"""Operator verbs: ``explain SRC DST`` and the picture behind ``status --graph FILE.svg``.

Both are API clients like every other verb: ``explain`` asks ``GET /explain``
and prints the layer walk; ``save_graph`` asks ``GET /graph/facts`` and draws
the SVG here with the pure ``meshrouter.ui.graph`` (no trio, no rich), then
writes it atomically (a temporary file renamed over the target).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click

from meshrouter.cli.api_call import call, fail

MARK = {True: "ok  ", False: "FAIL", None: "--  "}


@click.command()
@click.argument("src")
@click.argument("dst")
@click.option("--json", "as_json", is_flag=True, help="Print the walk as JSON.")
@click.pass_context
def explain(ctx: click.Context, src: str, dst: str, as_json: bool) -> None:
    """Walk the layers between two containers; name the first that fails.

    Why can't container SRC reach DST?  SRC and DST are container names, IDs
    (or unique ID prefixes) or IP addresses.  Layers: endpoints, route, flows,
    dns, policy.  Exit status 1 when a layer fails.
    """
    result = call(ctx, "GET", "/explain?" + urlencode({"src": src, "dst": dst}))
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        click.echo(render_explain(result))
    if result.get("failing"):
        sys.exit(1)


def render_explain(result: dict[str, Any]) -> str:
    """The walk as text: one line per layer, then the verdict."""
    lines = []
    for entry in result.get("layers", []):
        lines.append(f"{MARK.get(entry.get('ok'), '?   ')} {entry.get('layer', ''):<10} "
                     f"{entry.get('detail', '')}")
    failing = result.get("failing")
    lines.append("")
    lines.append(f"first failing layer: {failing}" if failing else str(result.get("verdict", "")))
    return "\n".join(lines)


def save_graph(ctx: click.Context, path: str) -> None:
    """``status --graph FILE.svg``: the router's mesh picture written to ``path``."""
    from meshrouter.ui.graph import render_svg

    facts = call(ctx, "GET", "/graph/facts")
    if not isinstance(facts, dict):
        fail("the API answered GET /graph/facts with something that is not an object")
    svg = render_svg(facts)
    target = Path(path)
    try:
        handle, temporary = tempfile.mkstemp(prefix=".graph-", suffix=".svg", dir=target.parent)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(svg)
        os.replace(temporary, target)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        fail(f"cannot write {path}: {exc.strerror or exc}")
    click.echo(f"wrote the picture of {len(facts.get('peers', []))} peers to {path}")
