"""Theory of operation: one router's DNS records -- its own edits and everyone's copies.

``DnsCore`` holds the records CRDT of every owner and is the only writer of the
local router's own records.  Its rules:

* **Owner edits.**  ``add`` and ``remove*`` change our own records, stamping each
  with the next value of our counter, and queue the change as a delta for the
  shell to broadcast (one record per change, whatever else we hold).
* **The owner is authoritative** (as in Weave).  The truth about our records is
  ``_mine`` (the keys we publish as live); if gossip brings a copy of one of our
  records that contradicts it -- a stale incarnation's records after a restart
  without state, a resurrected record -- we re-stamp the truth above it.  The
  counter always moves past every version of ours ever seen, so it never goes
  back even when our state file is lost.
* **Tombstones are collected by their owner** by raising its floor (see
  ``records.py``).  Collection re-stamps our live records below the new floor,
  so it runs only once the tombstones to collect are at least as many as those
  records and the oldest is ``tombstone_ttl`` old (local time; never compared
  with another host's clock): its cost is paid for by the deletions it removes.
* **Reachability** only filters answers: records of unreachable owners stay held
  and are answered for again as soon as the owner is reachable.  An owner the
  topology no longer knows (garbage-collected) has its records dropped; owners
  not (yet) known are kept for a grace period, since DNS gossip can arrive
  before the topology record of its owner.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from meshrouter.codec import expect, pack, unpack
from meshrouter.errors import InvalidRequestError, MalformedMessageError, StateFileError
from meshrouter.names import PeerName, format_peer_name

from .names import format_ipv4
from .records import MAX_CONTAINER_LEN, DnsRecords, OwnerRecords, RecordKey, Stamp
from .view import NameView

MAX_OWN_RECORDS = 10_000
DEFAULT_TOMBSTONE_TTL = 1800.0
DEFAULT_UNKNOWN_GRACE = 60.0


class DnsCore:
    """Records of every owner, and the edits of the local one."""

    def __init__(
        self,
        local: PeerName,
        domain: str,
        *,
        tombstone_ttl: float = DEFAULT_TOMBSTONE_TTL,
        unknown_grace: float = DEFAULT_UNKNOWN_GRACE,
    ) -> None:
        self.local = local
        self.domain = domain
        self.tombstone_ttl = tombstone_ttl
        self.unknown_grace = unknown_grace
        self.records = DnsRecords()
        self.counter = 0
        self.dirty = False
        """Our own records changed since the last ``dump``."""
        self._mine: set[RecordKey] = set()
        self._tombstoned_at: dict[RecordKey, float] = {}
        self._outbox: DnsRecords | None = None
        self._reachable: frozenset[PeerName] = frozenset({local})
        self._unknown_since: dict[PeerName, float] = {}
        self._generation = 0
        self._view: NameView | None = None
        self._view_generation = -1

    # ------------------------------------------------------------ own edits

    def add(self, key: RecordKey, now: float) -> bool:
        """Publish ``key`` as ours; False if it already is."""
        if key in self._mine:
            return False
        if len(self._mine) >= MAX_OWN_RECORDS:
            raise InvalidRequestError(f"this router already publishes {MAX_OWN_RECORDS} names")
        if len(key.container) > MAX_CONTAINER_LEN:
            raise InvalidRequestError(f"container ID longer than {MAX_CONTAINER_LEN}")
        self._mine.add(key)
        self._tombstoned_at.pop(key, None)
        self._stamp(key, tombstone=False)
        return True

    def remove(self, match: Callable[[RecordKey], bool], now: float) -> list[RecordKey]:
        """Tombstone every live record of ours that ``match`` accepts."""
        gone = sorted(key for key in self._mine if match(key))
        for key in gone:
            self._mine.discard(key)
            self._tombstoned_at[key] = now
            self._stamp(key, tombstone=True)
        return gone

    def mine(self) -> list[RecordKey]:
        return sorted(self._mine)

    def _stamp(self, key: RecordKey, *, tombstone: bool) -> None:
        self.counter += 1
        stamp = Stamp(self.counter, tombstone)
        self.records.put(self.local, key, stamp)
        self._queue(DnsRecords({self.local: OwnerRecords(0, {key: stamp})}))
        self.dirty = True
        self._touch()

    def _queue(self, delta: DnsRecords) -> None:
        if self._outbox is None:
            self._outbox = delta
        else:
            self._outbox.merge(delta)

    @property
    def has_broadcast(self) -> bool:
        return self._outbox is not None

    def take_broadcast(self) -> DnsRecords | None:
        """Our own changes since the last call, for the shell to broadcast."""
        out, self._outbox = self._outbox, None
        return out

    def collect(self, now: float) -> bool:
        """Collect our old tombstones by raising our floor (see the module doc)."""
        held = self.records.owners.get(self.local) or OwnerRecords()
        for key in [k for k in self._tombstoned_at
                    if (s := held.records.get(k)) is None or not s.tombstone]:
            del self._tombstoned_at[key]
        old = [k for k, at in self._tombstoned_at.items() if now - at >= self.tombstone_ttl]
        if not old:
            return False
        floor = max(held.records[k].version for k in old)
        restamp = [k for k in sorted(self._mine)
                   if (s := held.records.get(k)) is not None and s.version <= floor]
        if len(old) < len(restamp) or floor <= held.floor:
            return False
        for key in restamp:
            self._stamp(key, tombstone=False)
        self.records.raise_floor(self.local, floor)
        self._queue(DnsRecords({self.local: OwnerRecords(floor, {})}))
        for key in [k for k in self._tombstoned_at
                    if (s := held.records.get(k)) is None or s.version <= floor]:
            del self._tombstoned_at[key]
        self.dirty = True
        self._touch()
        return True

    # ------------------------------------------------------------ gossip

    def receive(self, data: DnsRecords) -> DnsRecords | None:
        """Merge records from the network; return the delta (what was new)."""
        delta = self.records.merge(data)
        if delta is not None:
            self._touch()
        if self.local in data.owners:
            self._reassert()
        return delta

    def _reassert(self) -> None:
        """Re-stamp our truth above any contradicting copy of our own records."""
        held = self.records.owners.get(self.local) or OwnerRecords()
        self.counter = max(self.counter, held.max_version)
        for key in sorted(self._mine):
            stamp = held.records.get(key)
            if stamp is None or stamp.tombstone:
                self._stamp(key, tombstone=False)
        for key, stamp in sorted(held.records.items()):
            if not stamp.tombstone and key not in self._mine:
                self._tombstoned_at.setdefault(key, 0.0)
                self._stamp(key, tombstone=True)

    def own_records(self) -> DnsRecords | None:
        """A copy of our own records (tombstones and floor included), if any."""
        held = self.records.owners.get(self.local)
        return None if held is None else DnsRecords({self.local: held.copy()})

    def full_state(self) -> DnsRecords | None:
        return self.records if self.records else None

    # ------------------------------------------------------------ topology

    def set_reachable(self, reachable: frozenset[PeerName]) -> None:
        reachable = reachable | {self.local}
        if reachable != self._reachable:
            self._reachable = reachable
            self._touch()

    def forget_owner(self, owner: PeerName) -> bool:
        """Drop every record of ``owner`` (removed from the topology)."""
        if owner == self.local:
            return False
        self._unknown_since.pop(owner, None)
        dropped = self.records.drop_owner(owner)
        if dropped:
            self._touch()
        return dropped

    def sweep_unknown(self, known: Callable[[PeerName], bool], now: float) -> list[PeerName]:
        """Drop owners unknown to the topology for longer than the grace period."""
        dropped = []
        for owner in list(self.records.owners):
            if owner == self.local or known(owner):
                self._unknown_since.pop(owner, None)
                continue
            since = self._unknown_since.setdefault(owner, now)
            if now - since >= self.unknown_grace:
                self.forget_owner(owner)
                dropped.append(owner)
        return dropped

    # ------------------------------------------------------------ answers

    def _touch(self) -> None:
        self._generation += 1

    def view(self) -> NameView:
        """The answerable names (cached until records or reachability change)."""
        if self._view is None or self._view_generation != self._generation:
            pairs = [
                (key.name, key.address)
                for owner, held in self.records.owners.items() if owner in self._reachable
                for key, _stamp in held.live()
            ]
            self._view = NameView.build(self.domain, pairs, self._generation + 1)
            self._view_generation = self._generation
        return self._view

    def status(self) -> dict[str, list[dict[str, Any]]]:
        """Records by name: address, container, owner and state (live /
        unreachable / tombstone)."""
        names: dict[str, list[dict[str, Any]]] = {}
        for owner, held in sorted(self.records.owners.items()):
            for key, stamp in sorted(held.records.items()):
                state = "tombstone" if stamp.tombstone else (
                    "live" if owner in self._reachable else "unreachable")
                names.setdefault(key.name, []).append({
                    "address": format_ipv4(key.address),
                    "container": key.container,
                    "owner": format_peer_name(owner),
                    "version": stamp.version,
                    "state": state,
                })
        return dict(sorted(names.items()))

    # ------------------------------------------------------------ persistence

    def dump(self) -> bytes:
        """Our own records (tombstones included), counter and floor."""
        held = self.records.owners.get(self.local) or OwnerRecords()
        self.dirty = False
        return pack({
            "counter": self.counter,
            "floor": held.floor,
            "mine": [[k.name, k.address, k.container] for k in sorted(self._mine)],
            "records": DnsRecords({self.local: held}).to_wire(),
        })

    def load(self, blob: bytes, now: float) -> None:
        """Restore our own records; StateFileError if the file is unreadable."""
        try:
            value: dict[str, Any] = expect(unpack(blob), dict, "dns state")
            counter: int = expect(value["counter"], int, "dns counter")
            records = DnsRecords.from_wire(value["records"])
            mine = {RecordKey(expect(n, str, "name"), expect(a, int, "address"),
                              expect(c, str, "container"))
                    for n, a, c in expect(value["mine"], list, "dns mine")}
        except (MalformedMessageError, KeyError, TypeError, ValueError) as exc:
            raise StateFileError(f"DNS state file is unreadable ({exc}); remove it to start "
                                 "with no own DNS records") from None
        if set(records.owners) - {self.local}:
            raise StateFileError("DNS state file belongs to another peer name")
        self.records.merge(records)
        self.counter = max(counter, self.records.owners.get(
            self.local, OwnerRecords()).max_version)
        self._mine = mine
        held = self.records.owners.get(self.local) or OwnerRecords()
        for key, stamp in held.records.items():
            if stamp.tombstone:
                self._tombstoned_at[key] = now
        self._reassert()
        self._outbox = None  # the whole state goes out with the first digests
        self._touch()
