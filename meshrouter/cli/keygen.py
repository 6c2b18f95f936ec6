"""``meshrouter keygen FILE``: a random 256-bit mesh secret, mode 0600."""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from meshrouter.cli.api_call import fail
from meshrouter.errors import MeshError


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
def keygen(path: Path) -> None:
    """Write a random 256-bit mesh secret for --password-file.

    PATH is created with mode 0600 and never overwritten.
    """
    from meshrouter.wire.password import KEY_BYTES
    from meshrouter.wire.password import keygen as write_key

    try:
        write_key(path, secrets.token_bytes(KEY_BYTES))
    except MeshError as exc:
        fail(str(exc))
    click.echo(f"wrote a 256-bit secret to {path}; give it to every router with "
               f"--password-file {path}")
