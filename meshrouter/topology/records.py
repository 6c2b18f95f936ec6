"""Theory of operation: the peer record, the unit of the topology CRDT.

Every router owns exactly one record: its name, nickname, per-process UID, a
version it bumps on every change, its 12-bit short ID, the TCP port it listens
on, and the connections it currently has.  Only the owner edits its record; all
other routers hold copies and replace a copy only by one that *wins*.

Who wins is a total order (``PeerRecord.precedence``): higher version, then
higher UID (a restarted process), then having a short ID, and finally the
encoded bytes themselves.  The last component matters only for records that
should never exist (same name, version and UID, different content, e.g. after a
bug or a name clash), but it makes the merge a plain "maximum", hence
commutative, associative and idempotent whatever arrives.

The wire form is a msgpack list per record and a list per connection.  Decoding
validates every field, caps every size and raises only ``MalformedMessageError``
so one bad peer closes one connection and nothing else.  Connections are kept
sorted by peer with at most one per peer: a canonical form, so that equal
records encode to equal bytes.  Decoded records are shared process-wide (a
weak intern table), because a thousand simulated routers otherwise each hold
their own copy of every record.

Each record also has a 128-bit fingerprint (blake2b of its canonical bytes,
cached on the record).  The XOR of the fingerprints of a set of records is an
order-independent fingerprint of the set that can be updated in O(1) when one
record is added, replaced or removed; ``Topology`` keeps one so that routers
holding identical record sets can share the routes derived from them.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from meshrouter.codec import expect, pack
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PEER_NAME_MAX, SHORT_ID_COUNT, PeerName, check_peer_name

MAX_CONNECTIONS_PER_RECORD = 10_000
MAX_NICKNAME_LEN = 255
MAX_ADDRESS_LEN = 128
MAX_UINT64 = (1 << 64) - 1
MAX_PORT = 65_535

_RECORD_FIELDS = 7
_CONNECTION_FIELDS = 4


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    """One connection as its owner sees it.

    ``address`` is the remote end's "ip:port" as the owner saw it: the address
    it dialled if ``outbound``, else the remote's source address.  Discovery
    uses only the IP part of inbound addresses (the port is ephemeral).
    ``established`` means the owner considers the link usable for data; routes
    only use links that both ends list as established.
    """

    peer: PeerName
    address: str
    outbound: bool
    established: bool


@dataclass(frozen=True, slots=True, weakref_slot=True)
class PeerRecord:
    """A router's self-description, replicated to every router in the mesh."""

    name: PeerName
    nickname: str
    uid: int
    version: int
    short_id: int | None
    listen_port: int
    connections: tuple[ConnectionRecord, ...]
    # Cache of the canonical encoding (not part of the value): records are
    # immutable, and full-state gossip re-encodes the same records constantly.
    _encoded: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _established: frozenset[PeerName] | None = field(
        default=None, init=False, repr=False, compare=False)
    _fingerprint: int | None = field(default=None, init=False, repr=False, compare=False)
    # Recent history of this record's lineage (see ``deltas``): not part of the
    # value, and any true history is as good as another, so shared records may
    # carry whichever one their first builder knew.
    _log: tuple[tuple[int, frozenset[int]], ...] = field(
        default=(), init=False, repr=False, compare=False)

    def precedence(self) -> tuple[int, int, bool, bytes]:
        """The total order merges use: the greater record wins.

        The encoded bytes as the last component break ties between records that
        agree on version, UID and short-ID presence but differ in content, so
        every replica picks the same one whatever order copies arrive in.
        """
        return (self.version, self.uid, self.short_id is not None, encode_record_bytes(self))

    def established_peers(self) -> frozenset[PeerName]:
        """Names of peers this record lists as established, never its own (cached:
        routes use it for every record at every recomputation)."""
        peers = self._established
        if peers is None:
            peers = frozenset(
                c.peer for c in self.connections if c.established and c.peer != self.name)
            object.__setattr__(self, "_established", peers)
        return peers

    def connected_peers(self) -> frozenset[PeerName]:
        """Names of all peers this record lists, in any state."""
        return frozenset(c.peer for c in self.connections)


def record_log(record: PeerRecord) -> tuple[tuple[int, frozenset[int]], ...]:
    """The record's change log: ``(from_version, changed)`` steps, newest first
    (see ``deltas``); empty when its history is unknown."""
    return record._log


def set_record_log(record: PeerRecord, log: tuple[tuple[int, frozenset[int]], ...]) -> None:
    """Attach a change log (not part of the record's value; see ``deltas``)."""
    object.__setattr__(record, "_log", log)


def record_beats(candidate: PeerRecord, current: PeerRecord) -> bool:
    """True if ``candidate`` should replace ``current`` (same name) in a merge.

    Equivalent to ``candidate.precedence() > current.precedence()`` but only
    encodes the records when the cheap components tie and the records differ.
    """
    if candidate is current:
        return False
    new_key = (candidate.version, candidate.uid, candidate.short_id is not None)
    old_key = (current.version, current.uid, current.short_id is not None)
    if new_key != old_key:
        return new_key > old_key
    if candidate == current:
        return False
    return encode_record_bytes(candidate) > encode_record_bytes(current)


def normalize_connections(connections: Iterable[ConnectionRecord],
                          owner: PeerName) -> tuple[ConnectionRecord, ...]:
    """Canonical connection tuple: sorted by peer, one per peer, none to ``owner``.

    Two connections to the same peer can coexist briefly (before the duplicate
    tie-break closes one); the record keeps the most useful one: established
    first, then outbound (its address is a dialable listen address), then the
    greater address so the choice is deterministic.
    """
    best: dict[PeerName, ConnectionRecord] = {}
    for conn in connections:
        if conn.peer == owner:
            continue
        held = best.get(conn.peer)
        if held is None or _connection_rank(conn) > _connection_rank(held):
            best[conn.peer] = conn
    return tuple(best[peer] for peer in sorted(best))


def _connection_rank(conn: ConnectionRecord) -> tuple[bool, bool, str]:
    return (conn.established, conn.outbound, conn.address)


def connection_to_wire(conn: ConnectionRecord) -> list[Any]:
    """The msgpack-able list form of one connection."""
    return [conn.peer, conn.address, conn.outbound, conn.established]


def record_to_wire(record: PeerRecord) -> list[Any]:
    """The msgpack-able list form of one record."""
    return [
        record.name,
        record.nickname,
        record.uid,
        record.version,
        record.short_id,
        record.listen_port,
        [connection_to_wire(c) for c in record.connections],
    ]


def encode_record_bytes(record: PeerRecord) -> bytes:
    """Canonical msgpack bytes of one record (also the last tiebreak of precedence).

    Computed once per record object and cached on it.
    """
    encoded = record._encoded
    if encoded is None:
        encoded = pack(record_to_wire(record))
        object.__setattr__(record, "_encoded", encoded)
    return encoded


FINGERPRINT_BYTES = 16


def record_fingerprint(record: PeerRecord) -> int:
    """128-bit hash of the record's canonical bytes (cached on the record).

    Equal records have equal fingerprints whatever object holds them, so sets
    of records can be compared by XOR-ing these (see ``records_fingerprint``).
    """
    fingerprint = record._fingerprint
    if fingerprint is None:
        digest = hashlib.blake2b(encode_record_bytes(record), digest_size=FINGERPRINT_BYTES)
        fingerprint = int.from_bytes(digest.digest(), "big")
        object.__setattr__(record, "_fingerprint", fingerprint)
    return fingerprint


def records_fingerprint(records: Iterable[PeerRecord]) -> int:
    """Order-independent fingerprint of a set of records: XOR of their fingerprints.

    XOR makes adding and removing a record the same O(1) update, which is what
    lets ``Topology`` maintain it incrementally.  Two different sets collide
    with probability about 2**-128.
    """
    combined = 0
    for record in records:
        combined ^= record_fingerprint(record)
    return combined


def _bounded_int(value: Any, upper: int, what: str) -> int:
    number: int = expect(value, int, what)
    if not 0 <= number <= upper:
        raise MalformedMessageError(f"{what} {number} is outside 0..{upper}")
    return number


def _bounded_str(value: Any, max_len: int, what: str) -> str:
    text: str = expect(value, str, what)
    if len(text) > max_len:
        raise MalformedMessageError(f"{what} of length {len(text)} exceeds {max_len}")
    return text


# Decoded records, shared process-wide by (name, version, uid).  A thousand
# simulated routers decode the same records over and over; sharing one object
# per distinct record turns O(routers x records x links) objects into
# O(records x links), and a record already known is checked field by field
# against the wire instead of being rebuilt.  Weak values: a record lives only
# as long as some router holds it.
_INTERNED: weakref.WeakValueDictionary[tuple[int, int, int], PeerRecord] = (
    weakref.WeakValueDictionary())


def record_from_wire(value: Any) -> PeerRecord:
    """Validate and build one record from its list form.

    Connections must already be canonical (strictly increasing peers, none to
    the owner): our encoder always produces that, so anything else is a bug or
    an attack, and accepting it would let two encodings mean one record.
    """
    if type(value) is list and len(value) == _RECORD_FIELDS:
        key = (value[0], value[3], value[2])
        if type(key[0]) is int and type(key[1]) is int and type(key[2]) is int:
            known = _INTERNED.get(key)
            # Re-packing is type-exact (True, 1 and 1.0 pack differently) and runs
            # in C, so equal bytes mean exactly this valid record.
            if known is not None and pack(value) == encode_record_bytes(known):
                return known
    record = _record_from_wire_checked(value)
    _INTERNED[(record.name, record.version, record.uid)] = record
    return record


def _record_from_wire_checked(value: Any) -> PeerRecord:
    fields = expect(value, list, "peer record")
    if len(fields) != _RECORD_FIELDS:
        raise MalformedMessageError(
            f"peer record has {len(fields)} fields, expected {_RECORD_FIELDS}")
    name = check_peer_name(fields[0])
    nickname = _bounded_str(fields[1], MAX_NICKNAME_LEN, "nickname")
    uid = _bounded_int(fields[2], MAX_UINT64, "UID")
    version = _bounded_int(fields[3], MAX_UINT64, "version")
    short_id_value = fields[4]
    short_id = (None if short_id_value is None
                else _bounded_int(short_id_value, SHORT_ID_COUNT - 1, "short ID"))
    listen_port = _bounded_int(fields[5], MAX_PORT, "listen port")
    connections = connections_from_wire(fields[6], name)
    return PeerRecord(
        name=name,
        nickname=nickname,
        uid=uid,
        version=version,
        short_id=short_id,
        listen_port=listen_port,
        connections=connections,
    )


def connections_from_wire(value: Any, owner: PeerName) -> tuple[ConnectionRecord, ...]:
    """Validate a list of connections in canonical form (strictly increasing
    peers, none to ``owner``), as records and deltas carry them."""
    raw_connections = expect(value, list, "connections")
    if len(raw_connections) > MAX_CONNECTIONS_PER_RECORD:
        raise MalformedMessageError(
            f"peer record lists {len(raw_connections)} connections, "
            f"more than {MAX_CONNECTIONS_PER_RECORD}")
    connections = []
    previous = -1
    for raw in raw_connections:
        # Inline checks: this loop runs once per link of every record decoded.
        if type(raw) is not list or len(raw) != _CONNECTION_FIELDS:
            raise MalformedMessageError(
                f"connection has {len(raw) if type(raw) is list else 'no'} fields, "
                f"expected {_CONNECTION_FIELDS}")
        peer, address, outbound, established = raw
        if type(peer) is not int or not 0 <= peer <= PEER_NAME_MAX:
            raise MalformedMessageError(f"invalid peer name {peer!r:.40} in connection")
        if type(address) is not str or len(address) > MAX_ADDRESS_LEN:
            raise MalformedMessageError(
                f"connection address must be a string of at most {MAX_ADDRESS_LEN} characters")
        if type(outbound) is not bool:
            raise MalformedMessageError("connection outbound flag must be a boolean")
        if type(established) is not bool:
            raise MalformedMessageError("connection established flag must be a boolean")
        if peer <= previous:
            raise MalformedMessageError("connections are not sorted by peer or repeat a peer")
        if peer == owner:
            raise MalformedMessageError("peer record lists a connection to itself")
        previous = peer
        connections.append(ConnectionRecord(PeerName(peer), address, outbound, established))
    return tuple(connections)
