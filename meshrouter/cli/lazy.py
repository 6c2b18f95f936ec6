"""A click group whose commands are imported only when they run.

Why: a client verb such as ``meshrouter status`` is started once per question
(and the CNI plugin of a later issue once per container), so it must not pay
for importing trio, the router or the simulator.  Each command is registered by
name with the dotted path of the object that implements it and the one-line
help that ``meshrouter --help`` shows, so even the help screen imports no
command module.  ``tests/test_cli_registry.py`` checks that every registered
line matches its command's own help and that every path resolves.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

import click

PLUGIN_GROUP = "meshrouter.commands"


class LazyCommand(NamedTuple):
    """Where a command lives (``"package.module:attribute"``, or ``".module:attribute"``
    inside ``meshrouter.cli``) and the help line ``meshrouter --help`` shows for it."""

    target: str
    help: str

    def load(self) -> click.Command:
        module_name, _, attribute = self.target.partition(":")
        if module_name.startswith("."):
            module_name = "meshrouter.cli" + module_name
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is not a click command")
        return command


class LazyGroup(click.Group):
    """A ``click.Group`` that imports a registered command on first use.

    Names not registered are looked up, only then, among the entry points of
    installed packages (group ``meshrouter.commands``), so a third-party plugin
    still works without an entry-point scan on every start.
    """

    def __init__(self, *args: object, lazy: dict[str, LazyCommand], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is not None:
            return command
        entry = self.lazy.get(cmd_name)
        if entry is not None:
            try:
                command = entry.load()
            except ImportError as exc:
                raise click.ClickException(
                    f"command {cmd_name!r} is not available: {exc}"
                ) from None
        else:
            command = _plugin_command(cmd_name)
            if command is None:
                return None
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the registered help lines: imports nothing."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            loaded = self.commands.get(name)
            if loaded is not None:
                if loaded.hidden:
                    continue
                rows.append((name, loaded.get_short_help_str(limit)))
            else:
                line = short_help(self.lazy[name].help, limit)
                rows.append((name, line))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def short_help(text: str, limit: int) -> str:
    """``text``'s first sentence, cut at a word to ``limit`` characters with ``...``
    (what click does for loaded commands; its helper is private from click 8.5)."""
    words = text.split("\n\n", 1)[0].split()
    first = " ".join(words)
    end = first.find(". ")
    if end >= 0:
        first = first[: end + 1]
    if len(first) <= limit:
        return first
    cut = first[: max(0, limit - 3)]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:") + "..."


def _plugin_command(name: str) -> click.Command | None:
    """A command an installed package registers under ``meshrouter.commands``."""
    from importlib.metadata import entry_points

    for entry in entry_points(group=PLUGIN_GROUP, name=name):
        try:
            command = entry.load()
        except Exception as exc:  # a broken plugin must not break the CLI
            import logging

            logging.getLogger("meshrouter").debug("plugin command %s unavailable: %s", name, exc)
            return None
        if isinstance(command, click.Command):
            return command
    return None
