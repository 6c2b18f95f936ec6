"""Theory of operation: one endpoint entry and its wire form.

An endpoint is a container port as the mesh knows it: (owner peer, container
ID) identify it; MAC, IP and name describe it; ``version`` orders the owner's
edits; ``tombstone`` marks it removed.  Only the owner writes an entry, and
every write gets a version above every version the owner has used, so "higher
version wins" needs no clocks.  Entries are validated when decoded, because
they come from the network and end up in flow tables: a malformed MAC or IP
must be refused here, not by ``ovs-ofctl`` far away.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from meshrouter.codec import expect
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName, check_peer_name

MAX_CONTAINER_ID = 128
MAX_NAME = 253
MAX_VERSION = (1 << 63) - 1
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
EndpointKey = tuple[PeerName, str]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One container port of one owner peer (a tombstone keeps only the key)."""

    owner: PeerName
    container_id: str
    mac: str
    ip: str
    name: str
    version: int
    tombstone: bool = False

    @property
    def key(self) -> EndpointKey:
        return (self.owner, self.container_id)

    def rank(self) -> tuple[int, bool, str, str, str]:
        """Total order among entries of one key: higher version wins.

        The owner never reuses a version, so the tie-breaks only make merge
        deterministic (commutative) even if a buggy or restarted owner did:
        a tombstone beats a live entry, then the larger fields win.
        """
        return (self.version, self.tombstone, self.mac, self.ip, self.name)

    def to_wire(self) -> list[Any]:
        return [self.owner, self.container_id, self.mac, self.ip, self.name, self.version,
                self.tombstone]

    @classmethod
    def from_wire(cls, raw: Any) -> Endpoint:
        """Validate one decoded entry; raises MalformedMessageError."""
        items = expect(raw, list, "endpoint")
        if len(items) != 7:
            raise MalformedMessageError(f"endpoint has {len(items)} fields, expected 7")
        owner = check_peer_name(items[0])
        container_id = expect(items[1], str, "endpoint container id")
        mac = expect(items[2], str, "endpoint mac")
        ip = expect(items[3], str, "endpoint ip")
        name = expect(items[4], str, "endpoint name")
        version = expect(items[5], int, "endpoint version")
        tombstone = expect(items[6], bool, "endpoint tombstone")
        try:
            return make_endpoint(owner, container_id, mac, ip, name, version, tombstone)
        except ValueError as exc:
            raise MalformedMessageError(f"bad endpoint: {exc}") from None


def make_endpoint(owner: PeerName, container_id: str, mac: str, ip: str, name: str,
                  version: int, tombstone: bool = False) -> Endpoint:
    """A validated Endpoint (ValueError says which field is wrong).

    A tombstone carries no MAC, IP or name: they are cleared, which also keeps
    tombstones small on the wire.
    """
    check_container_id(container_id)
    if not 0 < version <= MAX_VERSION:
        raise ValueError(f"version {version} out of range")
    if tombstone:
        return Endpoint(owner, container_id, "", "", "", version, True)
    check_mac(mac)
    check_ip(ip)
    if len(name) > MAX_NAME:
        raise ValueError(f"name longer than {MAX_NAME} characters")
    return Endpoint(owner, container_id, mac, ip, name, version, False)


def check_container_id(container_id: str) -> None:
    if not 0 < len(container_id) <= MAX_CONTAINER_ID or not _CONTAINER_ID.match(container_id):
        raise ValueError(
            f"container id {container_id[:40]!r} must be 1..{MAX_CONTAINER_ID} letters, digits, "
            "'_', '.' or '-', starting with a letter or digit"
        )


def check_mac(mac: str) -> None:
    """A lower-case unicast MAC ``aa:bb:cc:dd:ee:ff`` (as ovs-ofctl prints them)."""
    if not _MAC.match(mac):
        raise ValueError(f"MAC {mac[:40]!r} is not lower-case aa:bb:cc:dd:ee:ff")
    if int(mac[:2], 16) & 1:
        raise ValueError(f"MAC {mac} is a group address")


def check_ip(ip: str) -> None:
    """A canonical dotted-quad IPv4 unicast address."""
    try:
        address = ipaddress.IPv4Address(ip)
    except ValueError:
        raise ValueError(f"IP {ip[:40]!r} is not an IPv4 address") from None
    if str(address) != ip or address.is_multicast or address.is_unspecified:
        raise ValueError(f"IP {ip} is not a canonical unicast address")


def mac_for(owner: PeerName, container_id: str, salt: int = 0) -> str:
    """A stable locally-administered unicast MAC for a container; pure."""
    digest = bytearray(hashlib.blake2b(
        owner.to_bytes(6, "big") + container_id.encode() + salt.to_bytes(4, "big"),
        digest_size=6).digest())
    digest[0] = (digest[0] | 0x02) & 0xFE
    return ":".join(f"{b:02x}" for b in digest)
