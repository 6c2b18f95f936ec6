"""Theory of operation: the DNS records CRDT carried on the gossip channel ``dns``.

A record says "peer O publishes NAME -> ADDRESS (for CONTAINER)".  Its identity
is the key (name, address, container) under its owner O; its value is a
``Stamp`` (version, tombstone).  Only the owner edits its records and stamps
every edit with the next value of its own counter, so the versions of one owner
are ordered without any clock: merge keeps, per key, the higher (version,
tombstone) pair.  No wall clock of another host is ever compared (Weave's 900 s
clock-skew rule broke peering).

A removal is a tombstone (a new version with the flag set), so it travels like
any other change and beats the older live copy everywhere.  Tombstones are
collected by their owner alone: it raises its *floor*, and every holder drops the
owner's records at or below the floor and refuses such records later, so a stale
copy arriving from a peer that was away can never resurrect a collected record.
Before raising its floor the owner re-stamps its live records below it (see
``core.py``), so nothing live is lost.

State = {owner: (floor, {key: stamp})}; merge: floor = max, stamps = per-key max,
then records at or below the floor are dropped.  That is a join semilattice
(commutative, associative, idempotent; property-tested).  A delta has the same
type and holds only what was new, so one change costs one record per message.

Each owner's records also keep an order-independent 128-bit fingerprint (XOR of
hashes of (key, stamp) and of the floor), updated in O(1) per change, so the
anti-entropy digests of ``digest.py`` compare owners without listing records.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from meshrouter.codec import expect, pack, unpack
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName, check_peer_name

from .names import is_canonical

MAX_ENCODED = 8 * 1024 * 1024
MAX_RECORDS = 200_000
MAX_CONTAINER_LEN = 128
MAX_VERSION = (1 << 63) - 1
_RECORD_FIELDS = 5


@dataclass(frozen=True, slots=True, order=True)
class RecordKey:
    """What a record names; unique per owner.  ``container`` is "" for a record
    added by address (``dns-add NAME IP``)."""

    name: str
    address: int
    container: str = ""


@dataclass(frozen=True, slots=True)
class Stamp:
    """A record's value: the owner's counter at the edit, and whether it is a deletion."""

    version: int
    tombstone: bool = False

    def beats(self, other: Stamp) -> bool:
        """Total order: higher version; at equal version the tombstone (only
        possible after an owner lost its state; the owner then re-asserts)."""
        return (self.version, self.tombstone) > (other.version, other.tombstone)


def _hash(owner: int, key: RecordKey | None, value: int, flag: bool) -> int:
    hasher = hashlib.blake2b(digest_size=16)
    if key is None:
        hasher.update(pack([owner, value]))
    else:
        hasher.update(pack([owner, key.name, key.address, key.container, value, flag]))
    return int.from_bytes(hasher.digest(), "big")


@dataclass(slots=True)
class OwnerRecords:
    """One owner's records as held by some router; ``max_version`` is the highest
    version seen for this owner (records and floor), which only ever grows."""

    floor: int = 0
    records: dict[RecordKey, Stamp] = field(default_factory=dict)
    max_version: int = 0

    def __post_init__(self) -> None:
        top = max((s.version for s in self.records.values()), default=0)
        self.max_version = max(self.max_version, self.floor, top)

    def copy(self) -> OwnerRecords:
        return OwnerRecords(self.floor, dict(self.records), self.max_version)

    def live(self) -> Iterator[tuple[RecordKey, Stamp]]:
        return ((k, s) for k, s in self.records.items() if not s.tombstone)


class DnsRecords:
    """The ``dns`` channel's gossip data: full state or a delta (same type)."""

    __slots__ = ("_fingerprints", "owners")

    def __init__(self, owners: dict[PeerName, OwnerRecords] | None = None) -> None:
        # Canonical form: an owner with neither floor nor records is not held.
        self.owners: dict[PeerName, OwnerRecords] = {
            o: h for o, h in (owners or {}).items() if h.floor or h.records}
        self._fingerprints: dict[PeerName, int] = {}

    # ------------------------------------------------------------ queries

    def __len__(self) -> int:
        return sum(len(o.records) for o in self.owners.values())

    def __bool__(self) -> bool:
        return bool(self.owners)

    def get(self, owner: PeerName, key: RecordKey) -> Stamp | None:
        held = self.owners.get(owner)
        return None if held is None else held.records.get(key)

    def floor(self, owner: PeerName) -> int:
        held = self.owners.get(owner)
        return 0 if held is None else held.floor

    def fingerprint(self, owner: PeerName) -> int:
        """Order-independent fingerprint of one owner's floor and records (cached)."""
        cached = self._fingerprints.get(owner)
        if cached is not None:
            return cached
        held = self.owners.get(owner)
        value = 0
        if held is not None:
            value = _hash(owner, None, held.floor, False)
            for key, stamp in held.records.items():
                value ^= _hash(owner, key, stamp.version, stamp.tombstone)
        self._fingerprints[owner] = value
        return value

    # ------------------------------------------------------------ edits

    def put(self, owner: PeerName, key: RecordKey, stamp: Stamp) -> bool:
        """Merge one record; True if it changed our state."""
        held = self.owners.get(owner)
        if held is None:
            held = self.owners[owner] = OwnerRecords()
        if stamp.version <= held.floor:
            return False
        current = held.records.get(key)
        if current is not None and not stamp.beats(current):
            return False
        held.records[key] = stamp
        held.max_version = max(held.max_version, stamp.version)
        self._fingerprints.pop(owner, None)
        return True

    def raise_floor(self, owner: PeerName, floor: int) -> bool:
        """Raise one owner's floor, dropping its records at or below it."""
        held = self.owners.get(owner)
        if floor <= (0 if held is None else held.floor):
            return False
        if held is None:
            held = self.owners[owner] = OwnerRecords()
        held.floor = floor
        held.max_version = max(held.max_version, floor)
        held.records = {k: s for k, s in held.records.items() if s.version > floor}
        self._fingerprints.pop(owner, None)
        return True

    def drop_owner(self, owner: PeerName) -> bool:
        self._fingerprints.pop(owner, None)
        return self.owners.pop(owner, None) is not None

    def merge(self, other: DnsRecords) -> DnsRecords | None:
        """Merge ``other`` into ``self`` in place (never mutating ``other``);
        return exactly what was new (floors raised, records that won), or None."""
        delta: dict[PeerName, OwnerRecords] = {}
        for owner, theirs in other.owners.items():
            new_floor = theirs.floor if self.raise_floor(owner, theirs.floor) else 0
            won = {key: stamp for key, stamp in theirs.records.items()
                   if self.put(owner, key, stamp)}
            if new_floor or won:
                delta[owner] = OwnerRecords(new_floor, won)
            held = self.owners.get(owner)
            if held is not None and not held.records and not held.floor:
                del self.owners[owner]
        return DnsRecords(delta) if delta else None

    def copy(self) -> DnsRecords:
        return DnsRecords({owner: held.copy() for owner, held in self.owners.items()})

    def only(self, owners: set[PeerName]) -> DnsRecords:
        """A copy of the records of ``owners`` alone."""
        return DnsRecords({o: h.copy() for o, h in self.owners.items() if o in owners})

    # ------------------------------------------------------------ wire

    def to_wire(self) -> list[Any]:
        return [
            [owner, held.floor,
             [[k.name, k.address, k.container, s.version, s.tombstone]
              for k, s in sorted(held.records.items())]]
            for owner, held in sorted(self.owners.items())
        ]

    def encode(self) -> bytes:
        return pack(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> DnsRecords:
        """Untrusted bytes -> records; raises only MalformedMessageError."""
        return cls.from_wire(unpack(data, max_size=MAX_ENCODED))

    @classmethod
    def from_wire(cls, value: Any) -> DnsRecords:
        owners_list: list[Any] = expect(value, list, "dns records")
        owners: dict[PeerName, OwnerRecords] = {}
        total = 0
        for entry in owners_list:
            fields: list[Any] = expect(entry, list, "dns owner")
            if len(fields) != 3:
                raise MalformedMessageError("dns owner: expected [owner, floor, records]")
            owner = check_peer_name(fields[0])
            if owner in owners:
                raise MalformedMessageError(f"dns owner {owner:012x} listed twice")
            floor = _version(fields[1], "dns floor", minimum=0)
            rows: list[Any] = expect(fields[2], list, "dns records of an owner")
            total += len(rows)
            if total > MAX_RECORDS:
                raise MalformedMessageError(f"more than {MAX_RECORDS} dns records")
            records: dict[RecordKey, Stamp] = {}
            for row in rows:
                key, stamp = _record(row)
                if stamp.version <= floor:
                    raise MalformedMessageError("dns record at or below its owner's floor")
                if key in records:
                    raise MalformedMessageError(f"dns record {key.name} listed twice")
                records[key] = stamp
            owners[owner] = OwnerRecords(floor, records)
        return cls(owners)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DnsRecords):
            return NotImplemented
        return self.to_wire() == other.to_wire()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"DnsRecords({self.to_wire()!r})"


def _version(value: Any, what: str, *, minimum: int) -> int:
    number: int = expect(value, int, what)
    if not minimum <= number <= MAX_VERSION:
        raise MalformedMessageError(f"{what} {number} out of range")
    return number


def _record(row: Any) -> tuple[RecordKey, Stamp]:
    fields: list[Any] = expect(row, list, "dns record")
    if len(fields) != _RECORD_FIELDS:
        raise MalformedMessageError(f"dns record: expected {_RECORD_FIELDS} fields")
    name: str = expect(fields[0], str, "dns record name")
    if not is_canonical(name):
        raise MalformedMessageError(f"dns record name {name[:80]!r} is not a canonical name")
    address: int = expect(fields[1], int, "dns record address")
    if not 0 <= address <= 0xFFFF_FFFF:
        raise MalformedMessageError(f"dns record address {address} is not IPv4")
    container: str = expect(fields[2], str, "dns record container")
    if len(container) > MAX_CONTAINER_LEN:
        raise MalformedMessageError("dns record container ID too long")
    version = _version(fields[3], "dns record version", minimum=1)
    tombstone: bool = expect(fields[4], bool, "dns record tombstone")
    return RecordKey(name, address, container), Stamp(version, tombstone)
