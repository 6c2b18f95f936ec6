"""Theory of operation: the set of peer records as gossip data.

``PeerMap`` is the GossipData of the ``topology`` channel: a map from peer name
to that peer's record.  Merging keeps, per name, the record with the greatest
precedence (see ``records``), so merge is a per-key maximum: commutative,
associative and idempotent.  ``merge`` returns exactly the records that won,
the *delta*, which is all a receiver relays: one changed record costs O(size
of that record) per hop, never the whole map.

The same class carries full state (a new connection's heal path), deltas and
anti-entropy replies; they differ only in how many records they hold.

It also carries per-link ``RecordDelta``s (see ``deltas``): a change to a
known peer's connections travels as the links that changed, not as the whole
record.  Per peer, the deltas held are the maximal ones under ``dominates``
that no held record reaches, so merge stays a join (commutative, associative,
idempotent).  The wire form is one msgpack array: records (seven fields each,
sorted by name) then deltas (ten fields each, in canonical order).  A map
without deltas thus encodes exactly as the whole-record form did.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from meshrouter.codec import DEFAULT_MAX_SIZE, expect, pack, unpack
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName, check_peer_name
from meshrouter.topology.deltas import (
    DELTA_FIELDS,
    RecordDelta,
    delta_from_wire,
    maximal,
    record_reaches,
)
from meshrouter.topology.records import (
    MAX_UINT64,
    PeerRecord,
    encode_record_bytes,
    record_beats,
    record_from_wire,
)

MAX_RECORDS = 100_000
EMPTY: frozenset[RecordDelta] = frozenset()


class PeerMap:
    """Peer records by name, and per-link deltas of peers' records; merge keeps
    the winner per name (a record) and the undominated deltas."""

    __slots__ = ("deltas", "records")

    def __init__(self, records: Mapping[PeerName, PeerRecord] | None = None,
                 deltas: Mapping[PeerName, frozenset[RecordDelta]] | None = None) -> None:
        """``deltas`` must already be reduced (``deltas.maximal``) against ``records``."""
        self.records: dict[PeerName, PeerRecord] = dict(records) if records else {}
        self.deltas: dict[PeerName, frozenset[RecordDelta]] = (
            {name: held for name, held in deltas.items() if held} if deltas else {})

    @classmethod
    def of_deltas(cls, *deltas: RecordDelta,
                  records: Mapping[PeerName, PeerRecord] | None = None) -> PeerMap:
        """A map holding ``records`` and the undominated ones of ``deltas``."""
        by_name: dict[PeerName, list[RecordDelta]] = {}
        for delta in deltas:
            by_name.setdefault(delta.name, []).append(delta)
        held = dict(records) if records else {}
        return cls(held, {name: maximal(ds, held.get(name)) for name, ds in by_name.items()})

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
        deltas = self.delta_list()
        parts = [_array_header(len(records) + len(deltas))]
        parts.extend(encode_record_bytes(records[name]) for name in sorted(records))
        parts.extend(delta.encode() for delta in deltas)
        return b"".join(parts)

    def delta_list(self) -> list[RecordDelta]:
        """Every delta held, in canonical order (by name, base, version, bytes)."""
        return sorted((d for held in self.deltas.values() for d in held), key=_delta_order)

    @classmethod
    def decode(cls, data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> PeerMap:
        """Decode untrusted bytes; raises only ``MalformedMessageError``."""
        raw = expect(unpack(data, max_size=max_size), list, "peer map")
        if len(raw) > MAX_RECORDS:
            raise MalformedMessageError(
                f"peer map has {len(raw)} records and deltas, more than {MAX_RECORDS}")
        records: dict[PeerName, PeerRecord] = {}
        deltas: list[RecordDelta] = []
        for item in raw:
            if type(item) is list and len(item) == DELTA_FIELDS:
                deltas.append(delta_from_wire(item))
                continue
            record = record_from_wire(item)
            if record.name in records:
                raise MalformedMessageError(f"peer map repeats peer {record.name:012x}")
            records[record.name] = record
        if not deltas:
            return cls(records)
        return cls.of_deltas(*deltas, records=records)

    def merge(self, other: PeerMap) -> PeerMap | None:
        """Merge ``other`` into self in place; return the records that won, or None."""
        won: dict[PeerName, PeerRecord] = {}
        mine = self.records
        my_deltas = self.deltas
        for name, record in other.records.items():
            current = mine.get(name)
            if current is None or record_beats(record, current):
                mine[name] = record
                won[name] = record
                held = my_deltas.get(name)
                if held is not None:
                    kept = frozenset(d for d in held if not record_reaches(record, d))
                    if kept:
                        my_deltas[name] = kept
                    else:
                        del my_deltas[name]
        won_deltas: dict[PeerName, frozenset[RecordDelta]] = {}
        for name, theirs in other.deltas.items():
            held = my_deltas.get(name, EMPTY)
            if theirs <= held:
                continue
            result = maximal(held | theirs, mine.get(name))
            new = result - held
            if new:
                won_deltas[name] = new
            if result:
                my_deltas[name] = result
            else:
                my_deltas.pop(name, None)
        if not won and not won_deltas:
            return None
        return PeerMap(won, won_deltas)

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
        return PeerMap(self.records, self.deltas)

    def get(self, name: PeerName) -> PeerRecord | None:
        return self.records.get(name)

    def names(self) -> list[PeerName]:
        """Peer names in ascending order."""
        return sorted(self.records)

    def __len__(self) -> int:
        """Number of whole records (deltas not counted)."""
        return len(self.records)

    def __bool__(self) -> bool:
        """True if it holds anything, records or deltas: the gossip core tests a
        delta's truth to decide whether there is something to send."""
        return bool(self.records) or bool(self.deltas)

    def __contains__(self, name: object) -> bool:
        return name in self.records

    def __iter__(self) -> Iterator[PeerRecord]:
        """Records in ascending name order."""
        return (self.records[name] for name in sorted(self.records))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PeerMap):
            return NotImplemented
        return self.records == other.records and self.deltas == other.deltas

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = [f"{r.name:012x}@v{r.version}" for r in self]
        shown += [f"{d.name:012x}@v{d.base}->v{d.version}" for d in self.delta_list()]
        return f"PeerMap({', '.join(shown)})"


def _delta_order(delta: RecordDelta) -> tuple[int, int, int, int, bytes]:
    return (delta.name, delta.uid, delta.base, delta.version, delta.encode())


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
