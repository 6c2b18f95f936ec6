"""Client verbs about container addresses: ``ipam allocate|claim|release|lookup``,
``rmpeer`` and ``reset``.

Verbs that may wait on the router (``--wait``) give the HTTP call that much
longer, so the router's own timeout and its reason reach the user.
"""

from __future__ import annotations

import click

from meshrouter.cli.api_call import call, path_part
from meshrouter.errors import ConfigError
from meshrouter.names import parse_peer_name

WAIT = click.option(
    "--wait",
    type=click.FloatRange(0, 3600),
    default=30.0,
    show_default=True,
    help="Seconds the router may wait for space before it answers with the reason.",
)


def _address(text: str) -> str:
    """An address argument as a path segment; a /PREFIX suffix is accepted and ignored."""
    return path_part(text.split("/")[0])


@click.group()
def ipam() -> None:
    """Allocate, claim, release and look up container addresses."""


@ipam.command("allocate")
@click.argument("container")
@click.option("--subnet", help="Allocate inside this CIDR (part of the range).")
@WAIT
@click.pass_context
def ipam_allocate(ctx: click.Context, container: str, subnet: str | None, wait: float) -> None:
    """Give CONTAINER an address (the one it has, if any)."""
    path = f"/ip/{path_part(container)}" + (f"/{subnet}" if subnet else "") + f"?wait={wait:g}"
    click.echo(call(ctx, "POST", path, wait=wait)["address"])


@ipam.command("claim")
@click.argument("container")
@click.argument("address")
@WAIT
@click.pass_context
def ipam_claim(ctx: click.Context, container: str, address: str, wait: float) -> None:
    """Give CONTAINER this very ADDRESS."""
    path = f"/ip/{path_part(container)}/{_address(address)}?wait={wait:g}"
    click.echo(call(ctx, "PUT", path, wait=wait)["address"])


@ipam.command("release")
@click.argument("container")
@click.argument("address", required=False)
@click.pass_context
def ipam_release(ctx: click.Context, container: str, address: str | None) -> None:
    """Free CONTAINER's addresses (or just ADDRESS)."""
    path = f"/ip/{path_part(container)}" + (f"/{_address(address)}" if address else "")
    for freed in call(ctx, "DELETE", path)["released"]:
        click.echo(f"released {freed}")


@ipam.command("lookup")
@click.argument("container")
@click.pass_context
def ipam_lookup(ctx: click.Context, container: str) -> None:
    """Print CONTAINER's addresses."""
    for address in call(ctx, "GET", f"/ip/{path_part(container)}")["addresses"]:
        click.echo(address)


@click.command()
@click.argument("name")
@click.pass_context
def rmpeer(ctx: click.Context, name: str) -> None:
    """Take over the address space of peer NAME, which is gone for good."""
    try:
        parse_peer_name(name)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    result = call(ctx, "DELETE", f"/peer/{path_part(name)}")
    click.echo(f"took over {result['addresses_taken']} addresses of {name}")


@click.command()
@click.pass_context
def reset(ctx: click.Context) -> None:
    """Hand this router's address space to a live peer, then stop the router."""
    result = call(ctx, "DELETE", "/peer")
    heir = result["handed_to"]
    click.echo(f"address space handed to {heir}" if heir else "no address space to hand over")
    click.echo("router stopping")
