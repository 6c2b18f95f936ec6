"""Theory of operation: the mergeable endpoint set (the ``endpoints`` gossip data).

State is, per owner peer, its entries keyed by container ID plus a *floor*:
the owner's promise that every entry of its own with a version below the
floor is obsolete.  Merge is a join, so it is commutative, associative and
idempotent (property-tested):

* floors merge by ``max``;
* per (owner, container) the entry of highest ``Endpoint.rank`` wins;
* entries below their owner's floor are dropped.

The floor is how tombstones of a *live* owner are collected safely: when its
tombstones pile up, the owner re-stamps its live entries above a new floor
and raises the floor in the same delta.  Every replica that learns the floor
then drops the tombstones *and* any stale live copy they were shadowing, so
nothing dead can come back.  Entries of a *removed* owner are dropped whole
by the table (see ``table``), not by merge.

The same class is the full state and a delta: a container start is a delta of
one entry (tens of bytes), so it costs O(N) bytes mesh-wide whatever the
number of containers running.
"""

from __future__ import annotations

from collections.abc import Iterator

from meshrouter.codec import expect, pack, unpack
from meshrouter.endpoints.model import Endpoint
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName, check_peer_name

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_ENTRIES = 200_000
MAX_OWNERS = 100_000


class EndpointSet:
    """Endpoints by owner and container ID, and per-owner floors."""

    __slots__ = ("by_owner", "floors")

    def __init__(self) -> None:
        self.by_owner: dict[PeerName, dict[str, Endpoint]] = {}
        self.floors: dict[PeerName, int] = {}

    @classmethod
    def of(cls, entries: list[Endpoint], floors: dict[PeerName, int] | None = None
           ) -> EndpointSet:
        """A set holding ``entries`` merged as if one by one (convenience for tests)."""
        result = cls()
        for owner, floor in (floors or {}).items():
            result.raise_floor(owner, floor)
        for entry in entries:
            result._offer(entry)
        return result

    # -- reading -------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(len(entries) for entries in self.by_owner.values())

    def __iter__(self) -> Iterator[Endpoint]:
        for entries in self.by_owner.values():
            yield from entries.values()

    def get(self, owner: PeerName, container_id: str) -> Endpoint | None:
        entries = self.by_owner.get(owner)
        return None if entries is None else entries.get(container_id)

    def is_empty(self) -> bool:
        return not self.floors and not any(self.by_owner.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EndpointSet):
            return NotImplemented
        mine = {owner: e for owner, e in self.by_owner.items() if e}
        theirs = {owner: e for owner, e in other.by_owner.items() if e}
        return mine == theirs and self.floors == other.floors

    def __repr__(self) -> str:
        return f"EndpointSet({sorted(self, key=lambda e: e.key)!r}, floors={self.floors!r})"

    # -- merging -------------------------------------------------------------------

    def merge(self, other: EndpointSet) -> EndpointSet | None:
        """Merge ``other`` into self (never mutating it); return what was new, or None."""
        delta = EndpointSet()
        for owner, floor in other.floors.items():
            if floor > self.floors.get(owner, 0):
                self.raise_floor(owner, floor)
                delta.floors[owner] = floor
        for entries in other.by_owner.values():
            for entry in entries.values():
                if self._offer(entry):
                    delta._store(entry)
        return None if delta.is_empty() else delta

    def raise_floor(self, owner: PeerName, floor: int) -> list[Endpoint]:
        """Set ``owner``'s floor (never lowering it); return the entries it dropped."""
        if floor <= self.floors.get(owner, 0):
            return []
        self.floors[owner] = floor
        entries = self.by_owner.get(owner, {})
        dropped = [e for e in entries.values() if e.version < floor]
        for entry in dropped:
            del entries[entry.container_id]
        return dropped

    def _offer(self, entry: Endpoint) -> bool:
        """Keep ``entry`` if it beats what we hold and is above its owner's floor."""
        if entry.version < self.floors.get(entry.owner, 0):
            return False
        current = self.get(entry.owner, entry.container_id)
        if current is not None and current.rank() >= entry.rank():
            return False
        self._store(entry)
        return True

    def _store(self, entry: Endpoint) -> None:
        self.by_owner.setdefault(entry.owner, {})[entry.container_id] = entry

    def drop_owner(self, owner: PeerName) -> int:
        """Forget every entry and the floor of ``owner``; return how many entries."""
        self.floors.pop(owner, None)
        return len(self.by_owner.pop(owner, {}))

    def copy(self) -> EndpointSet:
        result = EndpointSet()
        result.by_owner = {owner: dict(entries) for owner, entries in self.by_owner.items()}
        result.floors = dict(self.floors)
        return result

    # -- wire ----------------------------------------------------------------------

    def encode(self) -> bytes:
        return pack({
            "e": [entry.to_wire() for entry in self],
            "f": [[owner, floor] for owner, floor in self.floors.items()],
        })

    @classmethod
    def decode(cls, payload: bytes) -> EndpointSet:
        """Untrusted bytes -> EndpointSet; raises only MalformedMessageError.

        Duplicate keys inside one message merge (highest rank wins), so a
        decoded set is always a valid state.
        """
        raw = expect(unpack(payload, max_size=MAX_MESSAGE_BYTES), dict, "endpoints")
        entries = expect(raw.get("e", []), list, "endpoint entries")
        floors = expect(raw.get("f", []), list, "endpoint floors")
        if len(entries) > MAX_ENTRIES or len(floors) > MAX_OWNERS:
            raise MalformedMessageError(
                f"endpoints message with {len(entries)} entries and {len(floors)} floors "
                f"exceeds {MAX_ENTRIES}/{MAX_OWNERS}")
        result = cls()
        for item in floors:
            pair = expect(item, list, "endpoint floor")
            if len(pair) != 2:
                raise MalformedMessageError("endpoint floor must be [owner, floor]")
            owner = check_peer_name(pair[0])
            floor = expect(pair[1], int, "endpoint floor")
            if floor < 0 or floor > (1 << 63):
                raise MalformedMessageError(f"endpoint floor {floor} out of range")
            result.raise_floor(owner, floor)
        for item in entries:
            result._offer(Endpoint.from_wire(item))
        return result

