"""Client verbs about containers: ``attach``, ``detach`` and ``ps``.

``attach`` asks the router to make a veth pair, put one end into the
container's network namespace with an address (from IPAM unless ``--ip``), and
program the datapath; ``detach`` undoes it and releases the address.
"""

from __future__ import annotations

import json
from typing import Any

import click

from meshrouter.cli.api_call import call, path_part

# An attach may wait for an address (IPAM) and for OVS; the client allows that.
ATTACH_WAIT = 40.0


@click.command()
@click.argument("container_id")
@click.argument("netns")
@click.option("--ip", "ip", help="Address in CIDR form (default: one from IPAM).")
@click.option("--name", help="DNS name to register (NAME.<domain>).")
@click.option("--ifname", default="eth0", show_default=True, help="Interface name inside.")
@click.option("--mtu", type=click.IntRange(576, 65000), help="MTU (default: underlay minus 50).")
@click.option("--json", "as_json", is_flag=True, help="Print the attachment as JSON.")
@click.pass_context
def attach(
    ctx: click.Context,
    container_id: str,
    netns: str,
    ip: str | None,
    name: str | None,
    ifname: str,
    mtu: int | None,
    as_json: bool,
) -> None:
    """Connect a container (its network namespace) to the mesh.

    CONTAINER_ID names it; NETNS is its network namespace: a name, a path or a PID.
    """
    body: dict[str, Any] = {"container_id": container_id, "netns": netns, "ifname": ifname}
    if ip is not None:
        body["ip"] = ip
    if name is not None:
        body["name"] = name
    if mtu is not None:
        body["mtu"] = mtu
    result = call(ctx, "POST", "/attach", body, wait=ATTACH_WAIT)
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    click.echo(f"{result['container_id']} {result['ip']} {result['mac']}")


@click.command()
@click.argument("container_id")
@click.pass_context
def detach(ctx: click.Context, container_id: str) -> None:
    """Disconnect a container and release its address."""
    result = call(ctx, "DELETE", f"/attach/{path_part(container_id)}", wait=ATTACH_WAIT)
    released = ", ".join(result.get("released") or []) or "no address"
    click.echo(f"{container_id} detached ({released} released)")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def ps(ctx: click.Context, as_json: bool) -> None:
    """List attached containers of the whole mesh.

    One row per container: ID, MAC, IP, name, host.
    """
    rows = call(ctx, "GET", "/endpoints")
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    from meshrouter.cli.render import print_endpoints

    print_endpoints(rows)
