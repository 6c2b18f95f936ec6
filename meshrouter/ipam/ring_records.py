"""Theory of operation: the records a ring is made of, and their wire form.

A ring (``ring.py``) is a range cut at tokens into ``Entry`` records, plus one
``Note`` per peer holding the ``Ack`` records it gave as an heir.  Each record
is immutable; the ring replaces a record to edit it, and merge compares
records by ``rank`` (version first, then a fixed tie-break), so any two
replicas pick the same record for a token or a peer.

The wire form is a msgpack list per record.  Every field a peer sends is
checked here -- types, bounds (tokens and reservations inside the range,
versions below ``MAX_VERSION``) and list sizes (``MAX_ENTRIES``,
``MAX_NOTES``) -- so a corrupt or hostile ring raises
``MalformedMessageError`` instead of reaching the allocator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshrouter.codec import expect
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName, check_peer_name

MAX_ENTRIES = 1 << 16
MAX_NOTES = 1 << 16
MAX_VERSION = 1 << 62


@dataclass(frozen=True, slots=True)
class Entry:
    """One range of the ring, from ``token`` up to the next token."""

    token: int
    owner: PeerName
    version: int
    reserved: int
    frozen: bool = False
    origin: tuple[int, int] | None = None

    def rank(self) -> tuple[Any, ...]:
        """Total order used by merge: version first, then a fixed tie-break."""
        return (
            self.version,
            self.frozen,
            self.owner,
            self.reserved,
            self.origin if self.origin is not None else (-1, -1),
        )


@dataclass(frozen=True, slots=True)
class Ack:
    """An heir's acknowledgement: it knows ``owner`` may use [token, reserved)."""

    owner: PeerName
    version: int
    reserved: int


@dataclass(frozen=True, slots=True)
class Note:
    """A peer's own line in the ring: free addresses and the acks it gave."""

    version: int = 0
    free: int = 0
    acks: dict[int, Ack] = field(default_factory=dict)

    def rank(self) -> tuple[Any, ...]:
        return (
            self.version,
            self.free,
            sorted((t, a.owner, a.version, a.reserved) for t, a in self.acks.items()),
        )


# ---------------------------------------------------------------------- wire


def entries_to_wire(entries: dict[int, Entry]) -> list[Any]:
    return [
        [e.token, e.owner, e.version, e.reserved, e.frozen,
         list(e.origin) if e.origin is not None else None]
        for _, e in sorted(entries.items())
    ]


def notes_to_wire(notes: dict[PeerName, Note]) -> list[Any]:
    return [
        [name, n.version, n.free,
         [[t, a.owner, a.version, a.reserved] for t, a in sorted(n.acks.items())]]
        for name, n in sorted(notes.items())
    ]


def entries_from_wire(value: Any, start: int, end: int) -> dict[int, Entry]:
    """The entries of a ring of [start, end); raises MalformedMessageError."""
    entries: dict[int, Entry] = {}
    for raw in checked_list(value, "entries", MAX_ENTRIES):
        item = expect(raw, list, "entry")
        if len(item) != 6:
            raise MalformedMessageError("entry: expected 6 fields")
        token = checked_int(item[0], "token", start, end)
        reserved = checked_int(item[3], "reserved", token, end + 1)
        frozen = expect(item[4], bool, "frozen")
        origin: tuple[int, int] | None = None
        if item[5] is not None:
            pair = expect(item[5], list, "origin")
            if len(pair) != 2:
                raise MalformedMessageError("origin: expected 2 fields")
            origin = (checked_int(pair[0], "origin token", start, end),
                      checked_int(pair[1], "origin version", 0, MAX_VERSION))
        if token in entries:
            raise MalformedMessageError(f"duplicate token {token}")
        entries[token] = Entry(
            token, checked_name(item[1]), checked_int(item[2], "version", 0, MAX_VERSION),
            reserved, frozen, origin,
        )
    return entries


def notes_from_wire(value: Any, start: int, end: int) -> dict[PeerName, Note]:
    """The notes of a ring of [start, end); raises MalformedMessageError."""
    notes: dict[PeerName, Note] = {}
    for raw in checked_list(value, "notes", MAX_NOTES):
        item = expect(raw, list, "note")
        if len(item) != 4:
            raise MalformedMessageError("note: expected 4 fields")
        acks: dict[int, Ack] = {}
        for raw_ack in checked_list(item[3], "acks", MAX_ENTRIES):
            a = expect(raw_ack, list, "ack")
            if len(a) != 4:
                raise MalformedMessageError("ack: expected 4 fields")
            t = checked_int(a[0], "ack token", start, end)
            acks[t] = Ack(checked_name(a[1]), checked_int(a[2], "ack version", 0, MAX_VERSION),
                          checked_int(a[3], "ack reserved", start, end + 1))
        name = checked_name(item[0])
        if name in notes:
            raise MalformedMessageError("duplicate note")
        notes[name] = Note(
            checked_int(item[1], "note version", 0, MAX_VERSION),
            checked_int(item[2], "free", 0, 1 << 33),
            acks,
        )
    return notes


def checked_int(value: Any, what: str, low: int, high: int) -> int:
    number: int = expect(value, int, what)
    if not low <= number < high:
        raise MalformedMessageError(f"{what} {number} out of range")
    return number


def checked_list(value: Any, what: str, cap: int) -> list[Any]:
    items: list[Any] = expect(value, list, what)
    if len(items) > cap:
        raise MalformedMessageError(f"{what}: more than {cap} items")
    return items


def checked_name(value: Any) -> PeerName:
    try:
        return check_peer_name(value)
    except (ValueError, TypeError) as exc:
        raise MalformedMessageError(f"bad peer name: {exc}") from None
