"""How a client verb talks to the router: one API call, and any failure as one
line on stderr with exit status 1.

Kept free of trio, rich and the router so that every client verb starts fast.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn
from urllib.parse import quote

import click

from meshrouter.addresses import (
    DEFAULT_API_PORT,
    format_host_port,
    normalise_peer_address,
    parse_host_port,
)
from meshrouter.api.client import ApiClient
from meshrouter.errors import ApiError, ConfigError

# A waiting IPAM verb may take its --wait; the HTTP call allows that much more.
WAIT_MARGIN = 10.0


def fail(message: str) -> NoReturn:
    """Print ``meshrouter: error: message`` and exit 1 (what every verb does on failure)."""
    click.echo(f"meshrouter: error: {message}", err=True)
    sys.exit(1)


def client(ctx: click.Context) -> ApiClient:
    """A client of the API named by ``--api`` / ``MESHROUTER_API``."""
    address = ctx.find_root().obj
    try:
        host, port = parse_host_port(address, DEFAULT_API_PORT, what="--api")
    except ConfigError as exc:
        fail(str(exc))
    return ApiClient(format_host_port(host, port))


def call(
    ctx: click.Context,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    wait: float = 0.0,
) -> Any:
    """The decoded JSON answer to one request; a request that may wait ``wait``
    seconds on the router gets that much longer before the client gives up."""
    api = client(ctx)
    try:
        return api.request(method, path, body, timeout=max(api.timeout, wait + WAIT_MARGIN))
    except ApiError as exc:
        fail(str(exc))


def check_peers(peers: tuple[str, ...]) -> list[str]:
    """``HOST[:PORT]`` arguments, normalised; a bad one is a usage error (exit 2)."""
    try:
        return [normalise_peer_address(p) for p in peers]
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


def path_part(text: str) -> str:
    """``text`` quoted as one segment of a URL path."""
    return quote(text, safe="")
