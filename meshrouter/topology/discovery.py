"""Theory of operation: dial candidates, derived once per record set.

To make the mesh full, a router dials every known peer it has no connection
to.  Where to reach peer P is written in *other* peers' records: every
connection to P that a record lists carries P's IP as its owner saw it, which
with P's advertised listen port is a listen address; and the address of an
outbound connection is exactly where its owner dialled P, a listen address
even behind a port mapping.  Inbound ports are ephemeral and never used.

None of this depends on who asks, so ``DialAddresses`` collects, once per
record set, the sorted addresses of every peer; a router then only leaves out
itself and the peers it is already connected to.  Like route graphs it is
shared by record-set fingerprint (see ``snapshot_cache``): parsing every
address of every record costs milliseconds at a thousand peers, and every
simulated router wants the result after every topology change.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Container, Mapping

from meshrouter.names import PeerName
from meshrouter.topology.records import MAX_PORT, PeerRecord
from meshrouter.topology.snapshot_cache import FingerprintCache

DEFAULT_MAX_ADDRESS_BOOKS = 16


class DialAddresses:
    """Per known peer, the "ip:port" addresses other records suggest dialling it at."""

    __slots__ = ("_by_peer", "fingerprint")

    def __init__(self, records: Mapping[PeerName, PeerRecord], fingerprint: int) -> None:
        """Scan every connection of ``records`` (not retained); ``fingerprint`` is the
        set's ``records_fingerprint``, kept only to identify the snapshot."""
        self.fingerprint = fingerprint
        found: dict[PeerName, set[str]] = {}
        for owner, record in records.items():
            for conn in record.connections:
                peer = conn.peer
                if peer == owner:
                    continue
                target = records.get(peer)
                if target is None:
                    continue
                parsed = _parse_host_port(conn.address)
                if parsed is None:
                    continue
                host, port = parsed
                addresses = found.get(peer)
                if addresses is None:
                    addresses = found[peer] = set()
                if target.listen_port:
                    addresses.add(f"{host}:{target.listen_port}")
                if conn.outbound and port:
                    addresses.add(f"{host}:{port}")
        self._by_peer: list[tuple[PeerName, tuple[str, ...]]] = [
            (peer, tuple(sorted(found[peer]))) for peer in sorted(found) if found[peer]
        ]

    def candidates(self, local: PeerName,
                   connected: Container[PeerName]) -> list[tuple[PeerName, str]]:
        """(peer, address) pairs for every peer but ``local`` and those in ``connected``,
        sorted by peer, then address."""
        return [
            (peer, address)
            for peer, addresses in self._by_peer
            if peer != local and peer not in connected
            for address in addresses
        ]


SHARED_DIAL_ADDRESSES: FingerprintCache[DialAddresses] = FingerprintCache(
    DEFAULT_MAX_ADDRESS_BOOKS)
"""The process-wide cache ``Topology.discovery_candidates`` uses."""


@functools.lru_cache(maxsize=65_536)
def _parse_host_port(address: str) -> tuple[str, int] | None:
    """Split "ip:port" or "[ipv6]:port" into (canonical host text, port); None if it is
    not a usable literal address.  The host text is ready to append ":port" to.

    Cached: an address book is rebuilt for every record set, and each rebuild
    parses every link's address again (a 100-peer simulated join spent 39 s of
    its profile here, 3.1 million calls)."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or len(port_text) > 5:
        return None
    port = int(port_text)
    if port > MAX_PORT:
        return None
    canonical = _canonical_host(host)
    return None if canonical is None else (canonical, port)


@functools.lru_cache(maxsize=16_384)
def _canonical_host(host: str) -> str | None:
    """Canonical IP literal (IPv6 in brackets), or None; cached because every peer's
    IP appears in the records of all its neighbours."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return None  # a bare IPv6 address is ambiguous with its port
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.is_unspecified:
        return None
    return f"[{ip}]" if ip.version == 6 else str(ip)
