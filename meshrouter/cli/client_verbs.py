"""Client verbs about the mesh: connect, forget, status, report, stop.

Each is one API call; tables are drawn by ``render.py``, which is imported only
when a table is printed (``--json`` and ``report`` never load rich).
"""

from __future__ import annotations

import json
from typing import Any

import click

from meshrouter.cli.api_call import call, check_peers, client
from meshrouter.errors import ApiError

STATUS_SECTIONS = ("peers", "connections", "targets", "ipam", "dns", "dataplane", "expose")


@click.command()
@click.argument("peers", nargs=-1, required=True)
@click.option("--replace", is_flag=True, help="Forget all other direct peers first.")
@click.pass_context
def connect(ctx: click.Context, peers: tuple[str, ...], replace: bool) -> None:
    """Add direct peers (HOST[:PORT]) to a running router."""
    result = call(ctx, "POST", "/connect", {"peers": check_peers(peers), "replace": replace})
    for address in result["connecting"]:
        click.echo(f"connecting to {address}")


@click.command()
@click.argument("peers", nargs=-1, required=True)
@click.pass_context
def forget(ctx: click.Context, peers: tuple[str, ...]) -> None:
    """Stop redialling direct peers (live connections stay until they break)."""
    result = call(ctx, "POST", "/forget", {"peers": check_peers(peers)})
    for address in result["unknown"]:
        click.echo(f"not a direct peer: {address}", err=True)


@click.command()
@click.argument("what", required=False, type=click.Choice(STATUS_SECTIONS))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--graph", "graph", metavar="FILE.svg", help="Write the mesh picture to FILE.svg.")
@click.pass_context
def status(ctx: click.Context, what: str | None, as_json: bool, graph: str | None) -> None:
    """Show the router's status: summary or one section.

    WHAT: peers, connections, targets, ipam, dns, dataplane or expose.
    """
    if graph is not None:
        from meshrouter.cli.ops_verbs import save_graph

        save_graph(ctx, graph)
        click.echo(f"mesh picture written to {graph}")
        return
    data = call(ctx, "GET", "/status" if what is None else f"/status/{what}")
    if what == "peers":
        _add_data_paths(ctx, data)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    from meshrouter.cli.render import print_status

    print_status(what, data)


@click.command()
@click.pass_context
def report(ctx: click.Context) -> None:
    """Print the router's full report as JSON."""
    click.echo(json.dumps(call(ctx, "GET", "/report"), indent=2, sort_keys=True))


@click.command()
@click.pass_context
def stop(ctx: click.Context) -> None:
    """Stop the running router."""
    call(ctx, "POST", "/stop", {})
    click.echo("router stopping")


def _add_data_paths(ctx: click.Context, peers: list[dict[str, Any]]) -> None:
    """Per peer, whether the data path is direct or relayed (and via whom), from
    the dataplane service when the router runs one."""
    try:
        rows = client(ctx).request("GET", "/status/dataplane/peers")
    except ApiError:
        return  # no dataplane service (or an older router): the table goes without
    paths = {row["peer"]: row for row in rows}
    for peer in peers:
        peer["data_path"] = paths.get(peer["name"])
