"""The README's CLI reference says what the CLI has: every command and every
`launch peer` option, and nothing that does not exist (issue 13, item 7)."""

from __future__ import annotations

import re
from pathlib import Path

import click

from meshrouter.cli import COMMANDS, main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end >= 0 else None]


def _table_after(text: str, marker: str) -> list[str]:
    """The first cells of the markdown table that follows ``marker``."""
    lines = text[text.index(marker) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    cells = [re.match(r"^\| (.+?) \|", line) for line in table[2:]]  # past header, rule
    return [cell.group(1) for cell in cells if cell is not None]


REFERENCE = _section("CLI reference")


def test_every_command_is_documented_and_every_documented_command_exists() -> None:
    cells = _table_after(REFERENCE, "| command |")
    documented = {
        part.strip("`").split()[0]
        for cell in cells
        for part in re.findall(r"`[^`]+`", cell)
    }
    assert set(COMMANDS) == documented


def _launch_peer_options() -> set[str]:
    ctx = click.Context(main)
    launch = main.get_command(ctx, "launch")
    assert isinstance(launch, click.Group)
    peer = launch.get_command(ctx, "peer")
    assert peer is not None
    names = {opt for p in peer.params if isinstance(p, click.Option) for opt in p.opts}
    return names - {"--help"}


def test_every_launch_option_is_documented_and_none_invented() -> None:
    cells = _table_after(REFERENCE, "`launch peer` options:")
    documented = {m for cell in cells for m in re.findall(r"--[a-z][a-z0-9-]*", cell)}
    assert _launch_peer_options() == documented
