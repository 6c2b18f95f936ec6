# ruff: noqa: E501 - one registration per line in COMMANDS is the point
"""Command line: ``meshrouter launch peer`` runs a router; every other verb is a
client of a running router's HTTP API.

The group below only parses ``--api`` and dispatches; each command lives in the
module named in ``COMMANDS`` and is imported only when it runs (see
``lazy.py``), so a client verb starts without importing trio, the router or the
simulator.  To add a command: write it in its own module (or an existing one
that owns the same concern) and add one line to ``COMMANDS`` with its one-line
help.  ``launch.py`` is the only place that configures logging or calls
``trio.run``.
"""

from __future__ import annotations

import click

from meshrouter import __version__
from meshrouter.cli.lazy import LazyCommand, LazyGroup

DEFAULT_API = "127.0.0.1:6784"  # config.DEFAULT_API_PORT; literal here to keep start-up light

# name -> where the command lives, and the line `meshrouter --help` shows for it.
COMMANDS: dict[str, LazyCommand] = {
    "launch": LazyCommand(".launch:launch", "Run meshrouter services in the foreground."),
    "connect": LazyCommand(".client_verbs:connect", "Add direct peers (HOST[:PORT]) to a running router."),
    "forget": LazyCommand(".client_verbs:forget", "Stop redialling direct peers (live connections stay until they break)."),
    "status": LazyCommand(".client_verbs:status", "Show the router's status: summary or one section."),
    "report": LazyCommand(".client_verbs:report", "Print the router's full report as JSON."),
    "stop": LazyCommand(".client_verbs:stop", "Stop the running router."),
    "ipam": LazyCommand(".ipam_verbs:ipam", "Allocate, claim, release and look up container addresses."),
    "rmpeer": LazyCommand(".ipam_verbs:rmpeer", "Take over the address space of peer NAME, which is gone for good."),
    "reset": LazyCommand(".ipam_verbs:reset", "Hand this router's address space to a live peer, then stop the router."),
    "attach": LazyCommand(".container_verbs:attach", "Connect a container (its network namespace) to the mesh."),
    "detach": LazyCommand(".container_verbs:detach", "Disconnect a container and release its address."),
    "ps": LazyCommand(".container_verbs:ps", "List attached containers of the whole mesh."),
    "expose": LazyCommand(".expose_verbs:expose", "Give this host an address on the overlay."),
    "hide": LazyCommand(".expose_verbs:hide", "Take this host off the overlay and release its address."),
    "dns-add": LazyCommand(".dns_verbs:dns_add", "Register a name for an address or a container."),
    "dns-remove": LazyCommand(".dns_verbs:dns_remove", "Remove this router's records of a name."),
    "dns-lookup": LazyCommand(".dns_verbs:dns_lookup", "Print the live addresses of a name."),
    "explain": LazyCommand(".ops_verbs:explain", "Walk the layers between two containers; name the first that fails."),
    "demo": LazyCommand(".demo:demo", "Build a 3-host mesh in network namespaces and show what it does (root)."),
    "keygen": LazyCommand(".keygen:keygen", "Write a random 256-bit mesh secret for --password-file."),
    # The simulator is a plugin (an entry point of the ``sim`` package); named here so
    # that neither its import nor an entry-point scan is paid by any other command.
    "sim": LazyCommand("sim.cli:main", "Run N real routers in one process on a simulated clock and network."),
}


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--api",
    "api",
    envvar="MESHROUTER_API",
    default=DEFAULT_API,
    show_default=True,
    help="HOST:PORT of the router's API (client verbs; env MESHROUTER_API).",
)
@click.version_option(__version__, prog_name="meshrouter")
@click.pass_context
def main(ctx: click.Context, api: str) -> None:
    """meshrouter: a Weave-style overlay network for containers."""
    ctx.obj = api
