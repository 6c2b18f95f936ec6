"""Theory of operation: what an attach must not collide with, checked against the table.

A name, an address and a MAC belong to one container mesh-wide.  Before an
attach takes a port, the dataplane service checks the live endpoints it knows
(its gossip replica) for another container -- here or on any peer -- holding
the same name or address, and picks a MAC no live endpoint uses (derived from
peer and container, re-salted on a collision).  The replica may lag a peer's
newest attach; these checks turn every collision we *can* see into a clear
``ConflictError`` instead of two containers answering for one address.  Pure.
"""

from __future__ import annotations

from collections.abc import Collection

from meshrouter.endpoints.model import Endpoint, mac_for
from meshrouter.errors import ConflictError
from meshrouter.names import PeerName, format_peer_name

MAX_MAC_TRIES = 8


def check_name_free(live: Collection[Endpoint], local: PeerName, container_id: str,
                    name: str | None) -> None:
    """``ConflictError`` when another container already uses ``name``."""
    if not name:
        return
    for e in live:
        if e.name == name and e.key != (local, container_id):
            raise ConflictError(f"name {name} is already used by container "
                                f"{e.container_id} on {format_peer_name(e.owner)}")


def check_ip_free(live: Collection[Endpoint], local: PeerName, container_id: str,
                  ip: str) -> None:
    """``ConflictError`` when another container already has address ``ip``."""
    for e in live:
        if e.ip == ip and e.key != (local, container_id):
            raise ConflictError(f"address {ip} is already used by container "
                                f"{e.container_id} on {format_peer_name(e.owner)}")


def fresh_mac(live: Collection[Endpoint], local: PeerName, container_id: str) -> str:
    """The container's MAC: derived from peer and container, re-salted on a collision."""
    taken = {e.mac for e in live}
    for salt in range(MAX_MAC_TRIES):
        mac = mac_for(local, container_id, salt)
        if mac not in taken:
            return mac
    raise ConflictError(f"no free MAC address for container {container_id}")
