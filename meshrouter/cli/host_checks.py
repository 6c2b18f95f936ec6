"""What ``launch peer`` reads from the host before a router starts: the data
directory, the peer name kept in it, the password, and the host's routes (a
container range must not overlap them).

Each check fails with a ``ConfigError`` that says what to change, so a bad
start is one clear line instead of a router that misbehaves later.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from meshrouter.errors import ConfigError
from meshrouter.names import PeerName, format_peer_name, parse_peer_name, peer_name_from_seed
from meshrouter.storage import FileStorage, Storage

log = logging.getLogger("meshrouter")

PEER_NAME_KEY = "peer-name"

if TYPE_CHECKING:
    from meshrouter.config import IpamSettings


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/meshrouter")
    return Path.home() / ".local" / "state" / "meshrouter"


def open_data_dir(directory: Path) -> FileStorage:
    """The data directory as storage: created if missing, and writable."""
    storage = FileStorage(directory)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(
            f"data directory {directory} is not writable; choose another with --data-dir"
        )
    return storage


def _machine_seed() -> bytes:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id", "/sys/class/dmi/id/product_uuid"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text:
            return text.encode()
    return socket.gethostname().encode()


def resolve_peer_name(given: str | None, storage: Storage, data_dir: Path) -> PeerName:
    """--name wins; else the name stored in the data dir; else derive and store one.

    The derived name hashes the machine ID with the data directory's path, so it
    is stable across restarts and distinct for several routers on one host.
    """
    if given is not None:
        name = parse_peer_name(given)
        storage.save(PEER_NAME_KEY, format_peer_name(name).encode())
        return name
    stored = storage.load(PEER_NAME_KEY)
    if stored is not None:
        try:
            return parse_peer_name(stored.decode("ascii", "strict"))
        except (UnicodeDecodeError, ConfigError) as exc:
            raise ConfigError(
                f"stored peer name in {data_dir / PEER_NAME_KEY} is corrupt ({exc}); "
                "pass --name or remove the file"
            ) from None
    name = peer_name_from_seed(_machine_seed() + b"|" + str(data_dir.resolve()).encode())
    storage.save(PEER_NAME_KEY, format_peer_name(name).encode())
    return name


def read_password(password_file: Path | None) -> bytes | None:
    """The mesh password: from --password-file, else $MESHROUTER_PASSWORD, else none."""
    if password_file is not None:
        try:
            raw = password_file.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"cannot read --password-file {password_file}: {exc.strerror}"
            ) from None
        password = raw.rstrip(b"\r\n")
        if not password:
            raise ConfigError(f"--password-file {password_file} is empty")
        return password
    env = os.environ.get("MESHROUTER_PASSWORD")
    if env is not None:
        if not env:
            raise ConfigError("MESHROUTER_PASSWORD is set but empty")
        return env.encode()
    return None


def host_routes() -> list[str]:
    """Destinations of the host's IPv4 routes (main table, and local networks),
    except those through the exposed interface: the host's own overlay address
    (``meshrouter expose``) stays across a restart of the router and its route to
    the range is ours, not a clash."""
    from pyroute2 import IPRoute

    from meshrouter.expose.state import IFNAME as EXPOSE_IFNAME

    found: list[str] = []
    with IPRoute() as ipr:
        ours = set(ipr.link_lookup(ifname=EXPOSE_IFNAME))
        for table in (254, 255):
            for route in ipr.get_routes(family=socket.AF_INET, table=table):
                if route.get_attr("RTA_OIF") in ours:
                    continue
                dst, length = route.get_attr("RTA_DST"), route["dst_len"]
                if dst and 0 < length < 32:
                    found.append(f"{dst}/{length}")
    return found


def check_ipalloc_range(settings: IpamSettings) -> None:
    """Refuse a range that is not a CIDR or that overlaps a route of this host."""
    from meshrouter.ipam.address_range import AddressRange, overlapping_route

    address_range = AddressRange.parse(settings.range)
    try:
        routes = host_routes()
    except OSError as exc:
        log.warning("cannot read the host's routes to check --ipalloc-range: %s", exc)
        return
    clash = overlapping_route(address_range.network, routes)
    if clash is not None:
        raise ConfigError(
            f"--ipalloc-range {address_range} overlaps the host's route to {clash}; "
            "containers would shadow (or be shadowed by) that network. Choose another range "
            "with --ipalloc-range"
        )


DESCRIPTOR_RESERVE = 64


def mesh_socket_budget() -> int | None:
    """How many mesh sockets the router may hold: the open-file limit minus a
    reserve (at least 64, or an eighth of the limit) for its state files, its
    API, OVS tools and DNS, so unauthenticated connections can never starve them."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return None
    return max(8, soft - max(DESCRIPTOR_RESERVE, soft // 8))
