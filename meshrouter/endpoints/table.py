"""Theory of operation: one router's replica of the endpoint set.

The table wraps an ``EndpointSet`` with the rules that make it safe:

* **Only the owner edits.**  ``put_local``/``remove_local`` write entries of
  the local peer with versions from a counter kept above every version of
  ours ever seen (also those learned back from gossip after a restart).
  Each edit is queued as a one-entry delta for ``take_broadcast``.
* **The owner has the last word.**  When gossip brings an entry of ours that
  differs from what we hold (a stale copy from before a restart), the table
  re-asserts its own view with a higher version: the entry is re-stamped if
  the container is still ours, tombstoned if not.
* **Removed owners go everywhere.**  ``remove_owner`` (called when the
  topology garbage-collects a peer, which every router sees) drops all its
  entries and tombstones, and ignores gossip about it for ``REMOVED_MEMORY``
  seconds so a lagging neighbour cannot bring them back; a peer seen again in
  the topology is welcome at once.
* **Tombstones of a live owner** are collected by the owner raising its floor
  (see ``state``) once they outnumber its live entries (and at least
  ``COMPACT_MIN``): amortised O(1) re-stamped entries per removal.
* **Digests** are a 17-byte summary first (fingerprint of everything), then
  per owner (floor, max version, count, fingerprint): neighbours that agree
  settle in one tiny message, those that differ exchange only the owners
  that differ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from meshrouter.codec import expect, pack, unpack
from meshrouter.endpoints.model import Endpoint, make_endpoint
from meshrouter.endpoints.state import MAX_OWNERS, EndpointSet
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName, check_peer_name

SUMMARY_MARKER = b"S"
FULL_MARKER = b"F"
REMOVED_MEMORY = 600.0
MAX_REMOVED = 65_536
COMPACT_MIN = 64
MAX_DIGEST_BYTES = 8 * 1024 * 1024

OwnerDigest = tuple[int, int, int, bytes]
"""(floor, max version, entry count, 8-byte fingerprint) of one owner."""


class EndpointTable:
    """The local replica: owner-only edits, merge, removal, digests, persistence."""

    def __init__(self, local: PeerName) -> None:
        self.local = local
        self.state = EndpointSet()
        self._counter = 0
        self._outbox: EndpointSet | None = None
        self._removed: dict[PeerName, float] = {}
        self._owner_digests: dict[PeerName, OwnerDigest] = {}
        self.dirty = False
        """Our own entries changed since the last ``dump`` (the shell saves then)."""

    # -- reading -------------------------------------------------------------------

    def live(self) -> list[Endpoint]:
        """Every live (non-tombstone) entry."""
        return [e for e in self.state if not e.tombstone]

    def own(self) -> dict[str, Endpoint]:
        """Our live entries by container ID."""
        return {cid: e for cid, e in self.state.by_owner.get(self.local, {}).items()
                if not e.tombstone}

    def get_local(self, container_id: str) -> Endpoint | None:
        entry = self.state.get(self.local, container_id)
        return None if entry is None or entry.tombstone else entry

    def live_count(self) -> int:
        return sum(not e.tombstone for e in self.state)

    # -- owner edits -----------------------------------------------------------------

    def put_local(self, container_id: str, mac: str, ip: str, name: str) -> Endpoint:
        """Add or change our endpoint for ``container_id`` (ValueError on bad fields)."""
        current = self.get_local(container_id)
        if current is not None and (current.mac, current.ip, current.name) == (mac, ip, name):
            return current
        entry = make_endpoint(self.local, container_id, mac, ip, name, self._next_version())
        self._write_own(entry)
        return entry

    def remove_local(self, container_id: str) -> Endpoint | None:
        """Tombstone our endpoint; return the entry that was live, or None."""
        current = self.get_local(container_id)
        if current is None:
            return None
        self._write_own(make_endpoint(self.local, container_id, "", "", "",
                                      self._next_version(), tombstone=True))
        self._maybe_compact()
        return current

    def take_broadcast(self) -> EndpointSet | None:
        """Our edits since the last call, as one delta to broadcast."""
        out, self._outbox = self._outbox, None
        return out

    def _next_version(self) -> int:
        self._counter += 1
        return self._counter

    def _write_own(self, entry: Endpoint) -> None:
        self.state._store(entry)
        self._queue(entry)

    def _queue(self, entry: Endpoint) -> None:
        if self._outbox is None:
            self._outbox = EndpointSet()
        self._outbox._store(entry)
        self._owner_digests.pop(self.local, None)
        self.dirty = True

    def _maybe_compact(self) -> None:
        entries = self.state.by_owner.get(self.local, {})
        dead = sum(e.tombstone for e in entries.values())
        if dead < max(COMPACT_MIN, len(entries) - dead):
            return
        floor = self._counter + 1
        for entry in [e for e in entries.values() if not e.tombstone]:
            self._write_own(make_endpoint(self.local, entry.container_id, entry.mac, entry.ip,
                                          entry.name, self._next_version()))
        self.state.raise_floor(self.local, floor)
        if self._outbox is None:
            self._outbox = EndpointSet()
        self._outbox.raise_floor(self.local, floor)

    # -- gossip ----------------------------------------------------------------------

    def receive(self, data: EndpointSet, now: float) -> EndpointSet | None:
        """Merge data from a neighbour; return the delta to relay.

        Entries of removed owners are ignored; stale entries of our own are
        answered by re-asserting ours (queued for ``take_broadcast``).
        """
        incoming = data
        blocked = [o for o in data.by_owner if self._is_removed(o, now)]
        blocked += [o for o in data.floors if self._is_removed(o, now) and o not in blocked]
        if blocked:
            incoming = data.copy()
            for owner in blocked:
                incoming.drop_owner(owner)
        own_before = dict(self.state.by_owner.get(self.local, {}))
        contested = [e for e in incoming.by_owner.get(self.local, {}).values()
                     if self._contests(e, own_before.get(e.container_id))]
        delta = self.state.merge(incoming)
        if self.local in incoming.floors or contested:
            self._reassert_own(own_before, contested, incoming.floors.get(self.local, 0))
        if delta is None:
            return None
        for owner in set(delta.by_owner) | set(delta.floors):
            self._owner_digests.pop(owner, None)
        return delta

    def _contests(self, entry: Endpoint, ours: Endpoint | None) -> bool:
        """Is ``entry`` (of ours, from gossip) a copy that is not what we hold?

        Older copies lose the merge anyway, copies below our floor are dropped,
        and a deletion of something we do not hold live is agreement.
        """
        if entry == ours or entry.version < self.state.floors.get(self.local, 0):
            return False
        if ours is not None and entry.version < ours.version:
            return False
        return not (entry.tombstone and (ours is None or ours.tombstone))

    def _reassert_own(self, own_before: dict[str, Endpoint], contested: list[Endpoint],
                      floor: int) -> None:
        """Copies of our entries that are not ours (from before a restart): ours wins.

        The counter jumps above every version seen, then each contested entry
        is written again as we know it (re-stamped if live here, a tombstone
        if not); a floor raised by an earlier incarnation of us that dropped
        entries we still hold live gets them re-stamped above it.
        """
        self._counter = max([self._counter, floor, *(e.version for e in contested)])
        redo = {e.container_id for e in contested}
        redo |= {cid for cid, e in own_before.items()
                 if not e.tombstone and self.state.get(self.local, cid) is None}
        for cid in sorted(redo):
            before = own_before.get(cid)
            if before is not None and not before.tombstone:
                fixed = make_endpoint(self.local, cid, before.mac, before.ip, before.name,
                                      self._next_version())
            else:
                fixed = make_endpoint(self.local, cid, "", "", "", self._next_version(),
                                      tombstone=True)
            self._write_own(fixed)

    def remove_owner(self, owner: PeerName, now: float) -> int:
        """The topology forgot ``owner``: drop its entries; return how many were live."""
        if owner == self.local:
            return 0
        live = sum(not e.tombstone for e in self.state.by_owner.get(owner, {}).values())
        self.state.drop_owner(owner)
        self._owner_digests.pop(owner, None)
        self._removed[owner] = now
        if len(self._removed) > MAX_REMOVED:
            del self._removed[next(iter(self._removed))]
        return live

    def owners_seen(self, owners: Iterable[PeerName]) -> None:
        """These peers are in the topology again: accept their entries at once."""
        if self._removed:
            for owner in owners:
                self._removed.pop(owner, None)

    def _is_removed(self, owner: PeerName, now: float) -> bool:
        when = self._removed.get(owner)
        if when is None:
            return False
        if now - when > REMOVED_MEMORY:
            del self._removed[owner]
            return False
        return True

    # -- digests -----------------------------------------------------------------------

    def _owner_digest(self, owner: PeerName) -> OwnerDigest:
        cached = self._owner_digests.get(owner)
        if cached is None:
            entries = self.state.by_owner.get(owner, {})
            floor = self.state.floors.get(owner, 0)
            h = hashlib.blake2b(digest_size=8)
            h.update(floor.to_bytes(8, "big"))
            for cid in sorted(entries):
                e = entries[cid]
                h.update(pack(e.to_wire()))
            top = max((e.version for e in entries.values()), default=0)
            cached = (floor, top, len(entries), h.digest())
            self._owner_digests[owner] = cached
        return cached

    def _owners(self) -> list[PeerName]:
        owners = {o for o, entries in self.state.by_owner.items() if entries}
        return sorted(owners | set(self.state.floors))

    def summary(self) -> bytes:
        h = hashlib.blake2b(digest_size=16)
        for owner in self._owners():
            floor, top, count, fp = self._owner_digest(owner)
            h.update(pack([owner, floor, top, count, fp]))
        return SUMMARY_MARKER + h.digest()

    def full_digest(self) -> bytes:
        return FULL_MARKER + pack([[o, *self._owner_digest(o)] for o in self._owners()])

    def wants_full_digest(self, digest: bytes) -> bool:
        return digest[:1] == SUMMARY_MARKER and digest != self.summary()

    def newer_than(self, digest: bytes) -> EndpointSet | None:
        """What the digest's owner lacks: per owner that differs, the newer entries."""
        theirs = self._parse(digest)
        if theirs is None:
            return None
        out = EndpointSet()
        for owner in self._owners():
            ours = self._owner_digest(owner)
            other = theirs.get(owner)
            if other == ours:
                continue
            entries = self.state.by_owner.get(owner, {})
            if other is None:
                chosen = list(entries.values())
            else:
                chosen = [e for e in entries.values() if e.version > other[1]]
                if not chosen:
                    chosen = list(entries.values())  # repair: they miss an older one
            floor = self.state.floors.get(owner, 0)
            if floor and (other is None or other[0] < floor):
                out.floors[owner] = floor
            for entry in chosen:
                out._store(entry)
        return None if out.is_empty() else out

    def lacks_from(self, digest: bytes, now: float) -> bool:
        """True when the digest shows an owner's state we do not have."""
        theirs = self._parse(digest)
        if theirs is None:
            return digest[:1] == SUMMARY_MARKER and digest != self.summary()
        for owner, other in theirs.items():
            if self._is_removed(owner, now):
                continue
            ours = self._owner_digest(owner) if owner in self.state.by_owner or \
                owner in self.state.floors else None
            if ours is None:
                if other[2] or other[0]:
                    return True
                continue
            if other[0] > ours[0] or other[1] > ours[1]:
                return True
            if other[3] != ours[3] and other[1] == ours[1]:
                return True
        return False

    @staticmethod
    def _parse(digest: bytes) -> dict[PeerName, OwnerDigest] | None:
        """A full digest -> per-owner digests; None for a summary; raises on bad input."""
        if digest[:1] == SUMMARY_MARKER:
            if len(digest) != 17:
                raise MalformedMessageError("endpoints summary digest must be 17 bytes")
            return None
        if digest[:1] != FULL_MARKER:
            raise MalformedMessageError("endpoints digest has an unknown marker")
        rows = expect(unpack(digest[1:], max_size=MAX_DIGEST_BYTES), list, "endpoints digest")
        if len(rows) > MAX_OWNERS:
            raise MalformedMessageError(f"endpoints digest lists more than {MAX_OWNERS} owners")
        result: dict[PeerName, OwnerDigest] = {}
        for row in rows:
            items = expect(row, list, "endpoints digest row")
            if len(items) != 5:
                raise MalformedMessageError("endpoints digest row must have 5 fields")
            owner = check_peer_name(items[0])
            floor, top, count = (expect(v, int, "endpoints digest number") for v in items[1:4])
            fp = expect(items[4], bytes, "endpoints digest fingerprint")
            if min(floor, top, count) < 0 or len(fp) != 8:
                raise MalformedMessageError("endpoints digest row out of range")
            result[owner] = (floor, top, count, fp)
        return result

    # -- persistence ---------------------------------------------------------------------

    def dump(self) -> bytes:
        """Our own entries, floor and counter (others' entries are relearned)."""
        self.dirty = False
        own = self.state.by_owner.get(self.local, {})
        return pack({"counter": self._counter, "floor": self.state.floors.get(self.local, 0),
                     "entries": [e.to_wire() for e in own.values()]})

    def load(self, blob: bytes) -> None:
        """Restore ``dump`` output; raises MalformedMessageError on a corrupt blob."""
        raw: Any = expect(unpack(blob), dict, "endpoints state")
        counter = expect(raw.get("counter"), int, "endpoints counter")
        floor = expect(raw.get("floor", 0), int, "endpoints floor")
        entries = [Endpoint.from_wire(item)
                   for item in expect(raw.get("entries"), list, "endpoints entries")]
        if any(e.owner != self.local for e in entries) or counter < 0 or floor < 0:
            raise MalformedMessageError("endpoints state belongs to another peer")
        self.state.drop_owner(self.local)
        if floor:
            self.state.raise_floor(self.local, floor)
        for entry in entries:
            self.state._offer(entry)
        self._counter = max([counter, floor, *(e.version for e in entries)])
        self._owner_digests.pop(self.local, None)
