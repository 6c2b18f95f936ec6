"""The CLI's command registry (``meshrouter/cli/__init__.py``): every registered
command resolves and its help line is its own; ``--help`` imports no command,
and a client verb imports none of trio, the router, the API server, rich or the
simulator.  Start-up *time* is measured by ``bench/cli_startup.py``, not here."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from meshrouter.cli import COMMANDS, DEFAULT_API, main
from meshrouter.cli.lazy import LazyCommand, LazyGroup
from meshrouter.config import DEFAULT_API_PORT


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_registered_command_resolves_with_its_own_help_line(name: str) -> None:
    command = COMMANDS[name].load()
    assert isinstance(command, click.Command)
    assert command.get_short_help_str(limit=1000) == COMMANDS[name].help


def test_help_lists_every_registered_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    listed = result.stdout.split("Commands:\n", 1)[1]
    names = [line.split()[0] for line in listed.splitlines() if line.strip()]
    assert names == sorted(COMMANDS)


def test_an_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == 2 and "No such command 'frobnicate'" in result.stderr


def _group(lazy: dict[str, LazyCommand]) -> click.Group:
    @click.group(cls=LazyGroup, lazy=lazy)
    def group() -> None:
        """A test group."""

    return group


def test_a_missing_command_module_is_one_clear_error() -> None:
    group = _group({"gone": LazyCommand("no_such_package.cli:main", "Not installed.")})
    listing = CliRunner().invoke(group, ["--help"])
    assert listing.exit_code == 0 and "gone  Not installed." in listing.stdout
    result = CliRunner().invoke(group, ["gone"])
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: command 'gone' is not available: No module named 'no_such_package'\n"
    )


def test_an_unregistered_name_is_looked_up_among_plugin_entry_points(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @click.command()
    def hello() -> None:
        click.echo("hello from a plugin")

    class Entry:
        name = "hello"

        def load(self) -> click.Command:
            return hello

    asked: list[tuple[str, str]] = []

    def entry_points(*, group: str, name: str) -> list[Entry]:
        asked.append((group, name))
        return [Entry()] if name == "hello" else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    group = _group({})
    assert CliRunner().invoke(group, ["hello"]).stdout == "hello from a plugin\n"
    assert CliRunner().invoke(group, ["nope"]).exit_code == 2
    assert asked == [("meshrouter.commands", "hello"), ("meshrouter.commands", "nope")]


def test_the_default_api_address_is_the_configured_port() -> None:
    assert DEFAULT_API == f"127.0.0.1:{DEFAULT_API_PORT}"


PROBE = """
import sys
from meshrouter.cli import main
try:
    main(sys.argv[1:], prog_name="meshrouter")
except SystemExit:
    pass
print()
print("MODULES", " ".join(sorted(sys.modules)))
"""
HEAVY = ("trio", "sim", "httpx", "rich", "hypercorn", "starlette", "pyroute2", "cryptography",
         "meshrouter.node", "meshrouter.api.server", "meshrouter.cli.launch")


def loaded_modules(*argv: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60
    )
    marker = result.stdout.rindex("\nMODULES ")
    return set(result.stdout[marker:].split()[1:])


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_help_imports_no_command_module() -> None:
    modules = loaded_modules("--help")
    assert "meshrouter.cli" in modules  # the probe ran
    assert heavy(modules) == []
    assert not any(m.startswith("meshrouter.cli.") and m != "meshrouter.cli.lazy"
                   for m in modules), sorted(m for m in modules if m.startswith("meshrouter"))


@pytest.mark.parametrize(
    "argv",
    [
        ("--api", "127.0.0.1:1", "status"),
        ("--api", "127.0.0.1:1", "status", "peers", "--json"),
        ("--api", "127.0.0.1:1", "ipam", "allocate", "c1", "--wait", "0"),
    ],
    ids=["status", "status-json", "ipam-allocate"],
)
def test_a_client_verb_imports_only_what_it_needs(argv: tuple[str, ...]) -> None:
    modules = loaded_modules(*argv)
    assert "meshrouter.api.client" in modules  # the verb got as far as calling the API
    assert heavy(modules) == []


CLIENT_MODULES = sorted(
    {
        "meshrouter.cli" + entry.target.split(":")[0]
        for name, entry in COMMANDS.items()
        if entry.target.startswith(".") and name != "launch"
    }
)


@pytest.mark.parametrize("module", CLIENT_MODULES)
def test_every_client_verb_module_is_light(module: str) -> None:
    """A verb added later (its own module, one line in COMMANDS) is held to the
    same rule without a new test: only ``launch`` may import the router."""
    probe = f"import sys, {module}\nprint()\nprint('MODULES', ' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    modules = set(result.stdout[result.stdout.rindex("\nMODULES "):].split()[1:])
    assert module in modules
    assert heavy(modules) == []


def test_short_help_cuts_at_a_word_with_an_ellipsis() -> None:
    from meshrouter.cli.lazy import short_help

    assert short_help("Stop the router. It exits 0.", 40) == "Stop the router."
    assert short_help("Build a three-host mesh in namespaces", 22) == "Build a three-host..."
    assert short_help("Build a three-host mesh in namespaces", 20) == "Build a..."
    assert len(short_help("x " * 100, 30)) <= 30
