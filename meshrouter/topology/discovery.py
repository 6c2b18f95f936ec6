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
simulated router wants the result after every topology change.  A router whose
record set has no book yet derives one from its previous book by the records
replaced since (``DialCandidates``), counting only the connections each
replaced record added or dropped.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Container, Iterable, Iterator, Mapping

from meshrouter.names import PeerName
from meshrouter.topology.records import MAX_PORT, ConnectionRecord, PeerRecord
from meshrouter.topology.snapshot_cache import FingerprintCache

DEFAULT_MAX_ADDRESS_BOOKS = 16


Contribution = tuple[str, int]
"""What one listed connection says about its peer: the host (canonical IP text)
and, for an outbound connection, the port its owner dialled (else 0)."""


def _contributions(owner: PeerName, connections: Iterable[ConnectionRecord]
                   ) -> Iterator[tuple[PeerName, Contribution]]:
    for conn in connections:
        if conn.peer == owner:
            continue
        parsed = _parse_host_port(conn.address)
        if parsed is not None:
            host, port = parsed
            yield conn.peer, (host, port if conn.outbound else 0)


def _compose(contributions: Mapping[Contribution, int], listen_port: int) -> tuple[str, ...]:
    found: set[str] = set()
    for host, port in contributions:
        if listen_port:
            found.add(f"{host}:{listen_port}")
        if port:
            found.add(f"{host}:{port}")
    return tuple(sorted(found))


class DialAddresses:
    """Per known peer, the "ip:port" addresses other records suggest dialling it at.

    Kept as counted *contributions* per peer (every record that lists it adds
    its host, and the dialled port of an outbound link), whether or not the
    peer has a record; addresses are composed with the peer's listen port only
    when asked, and cached per peer.  So a book can be derived from the one of
    a previous record set by the names written since (``changed``, a superset
    is fine): subtract their old records' contributions, add their new ones'
    -- O(changed x degree) instead of a scan of every link (a 200-peer join
    spent a tenth of its CPU rebuilding books)."""

    __slots__ = ("_addresses", "_by_peer", "_contrib", "fingerprint")

    def __init__(self, records: Mapping[PeerName, PeerRecord], fingerprint: int, *,
                 parent: DialAddresses | None = None,
                 before: Mapping[PeerName, PeerRecord | None] | None = None) -> None:
        """Collect from ``records``; ``fingerprint`` is the set's
        ``records_fingerprint``, kept only to identify it.  With ``parent`` and
        ``before`` (every name whose record may differ from the parent's, with
        the record the parent's set held for it, None for none), derive from
        ``parent`` instead of scanning.

        The book keeps no records: a router's book outlives the record set it
        was made for, and holding that set's records kept every superseded
        record (and its connection list) alive per router -- the old records
        a derivation subtracts are handed in by the caller, who saw them
        replaced."""
        self.fingerprint = fingerprint
        self._by_peer: list[tuple[PeerName, tuple[str, ...]]] | None = None
        if parent is None or before is None:
            self._contrib: dict[PeerName, dict[Contribution, int]] = {}
            self._addresses: dict[PeerName, tuple[str, ...]] = {}
            for record in records.values():
                self._count(record.name, record.connections, 1, None)
            return
        self._contrib = dict(parent._contrib)
        self._addresses = dict(parent._addresses)
        copied: set[PeerName] = set()
        for name, old in before.items():
            new = records.get(name)
            if old is new:
                continue
            self._addresses.pop(name, None)  # its listen port may have changed
            if old is not None and new is not None:
                gone, came = _replaced(old.connections, new.connections)
                self._count(name, gone, -1, copied)
                self._count(name, came, 1, copied)
            elif old is not None:
                self._count(name, old.connections, -1, copied)
            elif new is not None:
                self._count(name, new.connections, 1, copied)

    def _count(self, owner: PeerName, connections: Iterable[ConnectionRecord], sign: int,
               copied: set[PeerName] | None) -> None:
        """Add (``sign`` 1) or take away (-1) what ``owner``'s ``connections``
        contribute; the per-peer tables of a derived book are copied before
        their first change (``copied``), since the parent's are shared."""
        contrib = self._contrib
        for peer, key in _contributions(owner, connections):
            counts = contrib.get(peer)
            if copied is not None and peer not in copied:
                counts = contrib[peer] = dict(counts) if counts is not None else {}
                copied.add(peer)
                self._addresses.pop(peer, None)
            elif counts is None:
                counts = contrib[peer] = {}
            total = counts.get(key, 0) + sign
            if total:
                counts[key] = total
            else:
                del counts[key]
                if not counts:  # a peer nobody lists any more leaves the book
                    del contrib[peer]

    def candidates(self, local: PeerName, connected: Container[PeerName],
                   records: Mapping[PeerName, PeerRecord]) -> list[tuple[PeerName, str]]:
        """(peer, address) pairs for every peer but ``local`` and those in ``connected``,
        sorted by peer, then address; ``records`` is the record set the book
        was made for (the caller's, equal by fingerprint), for listen ports."""
        by_peer = self._by_peer
        if by_peer is None:
            by_peer = self._by_peer = []
            addresses = self._addresses
            for peer in sorted(self._contrib):
                target = records.get(peer)
                if target is None:
                    continue
                composed = addresses.get(peer)
                if composed is None:
                    composed = addresses[peer] = _compose(self._contrib[peer], target.listen_port)
                if composed:
                    by_peer.append((peer, composed))
        return [
            (peer, address)
            for peer, addresses in by_peer
            if peer != local and peer not in connected
            for address in addresses
        ]


def _replaced(old: tuple[ConnectionRecord, ...], new: tuple[ConnectionRecord, ...]
              ) -> tuple[list[ConnectionRecord], list[ConnectionRecord]]:
    """The connections only ``old`` lists and those only ``new`` lists (records
    list one connection per peer).  A replaced record usually differs by a
    link or two, and counting only those spared re-counting every link of
    every replaced record (a fifth of the topology's time at 200 peers)."""
    if old is new:
        return [], []
    later = {conn.peer: conn for conn in new}
    gone: list[ConnectionRecord] = []
    came: list[ConnectionRecord] = []
    for conn in old:
        now = later.pop(conn.peer, None)
        if now is conn or now == conn:
            continue
        gone.append(conn)
        if now is not None:
            came.append(now)
    came.extend(later.values())
    return gone, came


SHARED_DIAL_ADDRESSES: FingerprintCache[DialAddresses] = FingerprintCache(
    DEFAULT_MAX_ADDRESS_BOOKS)
"""The process-wide cache ``Topology.discovery_candidates`` uses."""


class DialCandidates:
    """One router's dial candidates: the shared book of its record set (derived
    from its previous book by the names written since), and its own list
    cached until the record set changes."""

    __slots__ = ("_book", "_fingerprint", "_list", "_written")

    def __init__(self) -> None:
        self._book: DialAddresses | None = None
        self._written: dict[PeerName, PeerRecord | None] = {}
        self._list: list[tuple[PeerName, str]] | None = None
        self._fingerprint = 0

    def written(self, name: PeerName, previous: PeerRecord | None) -> None:
        """The record held for ``name`` was stored or dropped; ``previous`` is
        the one it replaced (None: none).  The first since our book was taken
        is the book's."""
        self._written.setdefault(name, previous)

    def candidates(self, records: Mapping[PeerName, PeerRecord], fingerprint: int,
                   local: PeerName) -> list[tuple[PeerName, str]]:
        """``DialAddresses.candidates`` for our records (a copy)."""
        if self._list is None or self._fingerprint != fingerprint:
            book = SHARED_DIAL_ADDRESSES.get(fingerprint)
            if book is None:
                parent = self._book
                book = DialAddresses(records, fingerprint, parent=parent,
                                     before=self._written if parent is not None else None)
                SHARED_DIAL_ADDRESSES.add(fingerprint, book)
            self._book, self._written = book, {}
            self._list = book.candidates(local, records[local].connected_peers(), records)
            self._fingerprint = fingerprint
        return list(self._list)


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
