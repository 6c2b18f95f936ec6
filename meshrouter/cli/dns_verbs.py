"""Client verbs about names: ``dns-add``, ``dns-remove`` and ``dns-lookup``."""

from __future__ import annotations

import ipaddress

import click

from meshrouter.cli.api_call import call, path_part


@click.command("dns-add")
@click.argument("name")
@click.argument("target")
@click.pass_context
def dns_add(ctx: click.Context, name: str, target: str) -> None:
    """Register a name for an address or a container.

    TARGET is an IP address, or a container ID (its addresses from IPAM).
    """
    try:
        ipaddress.ip_address(target)
        body = {"name": name, "address": target}
    except ValueError:
        body = {"name": name, "container_id": target}
    result = call(ctx, "POST", "/dns", body)
    click.echo(f"{result['name']} {' '.join(result['addresses'])}")


@click.command("dns-remove")
@click.argument("name")
@click.argument("address", required=False)
@click.pass_context
def dns_remove(ctx: click.Context, name: str, address: str | None) -> None:
    """Remove this router's records of a name.

    Only the record of ADDRESS, if given.
    """
    query = f"?address={path_part(address)}" if address else ""
    result = call(ctx, "DELETE", f"/dns/{path_part(name)}{query}")
    click.echo(f"removed {result['removed']} record(s)")


@click.command("dns-lookup")
@click.argument("name")
@click.pass_context
def dns_lookup(ctx: click.Context, name: str) -> None:
    """Print the live addresses of a name.

    One address per line.
    """
    for address in call(ctx, "GET", f"/dns/{path_part(name)}")["addresses"]:
        click.echo(address)
