"""Client verbs about the host's own overlay address: ``expose`` and ``hide``.

``expose`` gives the host an address on the overlay (``mr-expose``), so the
host reaches containers and containers reach the host -- its DNS server among
others: ``status dns`` then names that address for containers.  ``hide``
takes it away and releases the address.  Containers attached with
``meshrouter attach`` keep their own resolv.conf: point it at the address
``status dns`` prints (CNI containers are given it by meshrouter-cni).
"""

from __future__ import annotations

import json
from typing import Any

import click

from meshrouter.cli.api_call import call

# Exposing may wait for an address (IPAM) and for OVS, as attach does.
EXPOSE_WAIT = 40.0


@click.command()
@click.option("--ip", "ip", help="The host's address in CIDR form (default: one from IPAM).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def expose(ctx: click.Context, ip: str | None, as_json: bool) -> None:
    """Give this host an address on the overlay.

    Prints the address; idempotent.  The router's DNS server listens there too.
    """
    body: dict[str, Any] = {} if ip is None else {"ip": ip}
    result = call(ctx, "POST", "/expose", body, wait=EXPOSE_WAIT)
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    click.echo(result["address"])


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def hide(ctx: click.Context, as_json: bool) -> None:
    """Take this host off the overlay and release its address.

    Remembered across restarts (the router does not expose the host again by itself).
    """
    result = call(ctx, "DELETE", "/expose", wait=EXPOSE_WAIT)
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    released = result.get("released") or []
    click.echo(f"hidden; released {', '.join(released)}" if released else "hidden")
