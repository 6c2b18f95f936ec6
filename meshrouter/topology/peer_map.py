"""Theory of operation: the set of peer records as gossip data.

``PeerMap`` is the GossipData of the ``topology`` channel: a map from peer name
to that peer's record.  Merging keeps, per name, the record with the greatest
precedence (see ``records``), so merge is a per-key maximum: commutative,
associative and idempotent.  ``merge`` returns exactly the records that won,
the *delta*, which is all a receiver relays: one changed record costs O(size
of that record) per hop, never the whole map.

The same class carries full state (a new connection's heal path), deltas and
anti-entropy replies; they differ only in how many records they hold.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from meshrouter.codec import DEFAULT_MAX_SIZE, expect, pack, unpack
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName, check_peer_name
from meshrouter.topology.records import (
    MAX_UINT64,
    PeerRecord,
    encode_record_bytes,
    record_beats,
    record_from_wire,
)

MAX_RECORDS = 100_000


class PeerMap:
    """Peer records by name; merge keeps the winner per name."""

    __slots__ = ("records",)

    def __init__(self, records: Mapping[PeerName, PeerRecord] | None = None) -> None:
        self.records: dict[PeerName, PeerRecord] = dict(records) if records else {}

    @classmethod
    def of(cls, *records: PeerRecord) -> PeerMap:
        """Build a map from records (keyed by their own names)."""
        return cls({r.name: r for r in records})

    def encode(self) -> bytes:
        """msgpack list of records, sorted by name so equal maps give equal bytes.

        Built from each record's cached encoding: a msgpack array is its header
        followed by its elements' encodings, byte for byte.
        """
        records = self.records
        parts = [_array_header(len(records))]
        parts.extend(encode_record_bytes(records[name]) for name in sorted(records))
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> PeerMap:
        """Decode untrusted bytes; raises only ``MalformedMessageError``."""
        raw = expect(unpack(data, max_size=max_size), list, "peer map")
        if len(raw) > MAX_RECORDS:
            raise MalformedMessageError(f"peer map has {len(raw)} records, more than {MAX_RECORDS}")
        records: dict[PeerName, PeerRecord] = {}
        for item in raw:
            record = record_from_wire(item)
            if record.name in records:
                raise MalformedMessageError(f"peer map repeats peer {record.name:012x}")
            records[record.name] = record
        return cls(records)

    def merge(self, other: PeerMap) -> PeerMap | None:
        """Merge ``other`` into self in place; return the records that won, or None."""
        won: dict[PeerName, PeerRecord] = {}
        mine = self.records
        for name, record in other.records.items():
            current = mine.get(name)
            if current is None or record_beats(record, current):
                mine[name] = record
                won[name] = record
        return PeerMap(won) if won else None

    def digest(self) -> bytes:
        """Anti-entropy summary: msgpack ``{name: [version, uid]}``."""
        return encode_digest(self)

    def newer_than(self, digest: Mapping[PeerName, tuple[int, int]]) -> PeerMap | None:
        """Our records that a digest's owner lacks or holds at a lower (version, uid)."""
        newer = {
            name: record for name, record in self.records.items()
            if (held := digest.get(name)) is None or (record.version, record.uid) > held
        }
        return PeerMap(newer) if newer else None

    def lacks_from(self, digest: Mapping[PeerName, tuple[int, int]]) -> bool:
        """True if the digest lists a record we lack or hold at a lower (version, uid)."""
        mine = self.records
        for name, held in digest.items():
            record = mine.get(name)
            if record is None or (record.version, record.uid) < held:
                return True
        return False

    def copy(self) -> PeerMap:
        """A copy that can be merged into without touching self (records are immutable)."""
        return PeerMap(self.records)

    def get(self, name: PeerName) -> PeerRecord | None:
        return self.records.get(name)

    def names(self) -> list[PeerName]:
        """Peer names in ascending order."""
        return sorted(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, name: object) -> bool:
        return name in self.records

    def __iter__(self) -> Iterator[PeerRecord]:
        """Records in ascending name order."""
        return (self.records[name] for name in sorted(self.records))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PeerMap):
            return NotImplemented
        return self.records == other.records

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{r.name:012x}@v{r.version}" for r in self)
        return f"PeerMap({shown})"


def _array_header(length: int) -> bytes:
    """msgpack array header (fixarray, array 16 or array 32)."""
    if length <= 15:
        return bytes([0x90 | length])
    if length <= 0xFFFF:
        return b"\xdc" + length.to_bytes(2, "big")
    return b"\xdd" + length.to_bytes(4, "big")


def encode_digest(peer_map: PeerMap) -> bytes:
    """msgpack ``{name: [version, uid]}`` of every record in ``peer_map``."""
    return pack({name: [r.version, r.uid] for name, r in sorted(peer_map.records.items())})


def decode_digest(data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> dict[PeerName, tuple[int, int]]:
    """Decode an untrusted digest; raises only ``MalformedMessageError``."""
    raw = expect(unpack(data, max_size=max_size), dict, "topology digest")
    if len(raw) > MAX_RECORDS:
        raise MalformedMessageError(f"digest has {len(raw)} entries, more than {MAX_RECORDS}")
    digest: dict[PeerName, tuple[int, int]] = {}
    for key, value in raw.items():
        name = check_peer_name(key)
        pair = expect(value, list, "digest entry")
        if len(pair) != 2:
            raise MalformedMessageError(f"digest entry has {len(pair)} fields, expected 2")
        version = expect(pair[0], int, "digest version")
        uid = expect(pair[1], int, "digest UID")
        if not (0 <= version <= MAX_UINT64 and 0 <= uid <= MAX_UINT64):
            raise MalformedMessageError("digest version or UID out of range")
        digest[name] = (version, uid)
    return digest
