"""Theory of operation: one router's allocations and the free space it may use.

``Allocations`` holds what this router handed out (container -> addresses and
the reverse map), the *floors* (per entry token, the first address a router
restarted without its data may hand out again) and what this incarnation
itself reserved.  It answers the allocator's questions against the current
ring, which it is given on each call (the ring is replaced on adoption, load
and reset): which addresses are free and acknowledged, how many, and how to
extend a reservation so that a pool of acknowledged addresses stays ahead of
demand.  Ring edits it makes are reported through the shared ``Outbox``.

A reservation whose acknowledgement has not come within ``ACK_PATIENCE`` (its
heir is slow or out of reach, or the split that made the entry can never
settle -- its donor was reclaimed by a peer that did not know the split) is
*overdue*: extensions go to our other entries first, so space donated to us
meanwhile is reserved and used instead of waiting behind the stuck one
(campaign seed 165).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

from meshrouter.errors import IpamConflictError
from meshrouter.ipam.address_range import AddressRange
from meshrouter.ipam.outbox import Outbox
from meshrouter.ipam.ring import Ring
from meshrouter.ipam.ring_records import Entry
from meshrouter.names import PeerName

MAX_ADDRESSES_PER_CONTAINER = 64
ACK_PATIENCE = 5.0  # a reservation unacknowledged this long is overdue


class Allocations:
    """Local allocations, floors and the pool; see the module docstring."""

    def __init__(self, me: PeerName, address_range: AddressRange, pool: int,
                 out: Outbox) -> None:
        self.me = me
        self.range = address_range
        self.pool = pool
        self.out = out
        self.by_container: dict[str, list[int]] = {}
        self.user_of: dict[int, str] = {}
        self.floor: dict[int, int] = {}  # token -> first address we may hand out
        self.written: dict[int, int] = {}  # token -> highest reservation this incarnation wrote
        self._hint: dict[int, int] = {}
        # token -> (since when, reservation) we wait for the heir's acknowledgement
        self._ack_wait: dict[int, tuple[float, int]] = {}

    # ------------------------------------------------------------------ records

    def record(self, container: str, address: int) -> None:
        addresses = self.by_container.setdefault(container, [])
        if len(addresses) >= MAX_ADDRESSES_PER_CONTAINER:
            raise IpamConflictError(
                f"container {container} already has {len(addresses)} addresses")
        addresses.append(address)
        self.user_of[address] = container
        self.out.dirty = True

    def release(self, container: str, address: int | None, ring: Ring | None) -> list[int]:
        """Free the container's addresses (or one of them); return what was freed."""
        addresses = self.by_container.get(container, [])
        freed = [a for a in addresses if address is None or a == address]
        for a in freed:
            addresses.remove(a)
            del self.user_of[a]
            if ring is not None:
                token = ring.entry_at(a).token
                self._hint[token] = min(self._hint.get(token, a), a)
        if not addresses:
            self.by_container.pop(container, None)
        if freed:
            self.out.dirty = True
        return freed

    def clear(self) -> None:
        self.by_container.clear()
        self.user_of.clear()

    def restore(self, by_container: dict[str, list[int]], floors: dict[int, int],
                ring: Ring | None) -> None:
        """Take what a state file held (``persistence.load``)."""
        self.by_container = by_container
        self.user_of = {a: c for c, addresses in by_container.items() for a in addresses}
        self.floor = floors
        if ring is not None:
            self.written = {e.token: e.reserved for e, _ in ring.owned_by(self.me)}

    def holds_addresses_in(self, start: int, end: int) -> bool:
        return any(start <= address < end for address in self.user_of)

    def foreign(self, ring: Ring) -> set[int]:
        """Our allocations that the ring puts under another owner (never expected)."""
        return {a for a in self.user_of if ring.entry_at(a).owner != self.me}

    # ------------------------------------------------------------------ floors

    def raise_floors(self, ring: Ring) -> None:
        """A reservation of our own entry that this incarnation did not write
        (nor loaded from its state file) was made by an earlier incarnation,
        which may have handed out anything in it."""
        for entry, _end in ring.owned_by(self.me):
            floor = ring.reclaim_floor(entry.token)
            known = max(self.written.get(entry.token, entry.token),
                        self.floor.get(entry.token, entry.token))
            if floor > known:
                self.floor[entry.token] = floor

    def note_written(self, ring: Ring, token: int) -> None:
        written = ring.entries[token].reserved
        self.written[token] = max(self.written.get(token, token), written)

    # ------------------------------------------------------------------ free space

    def usable_end(self, ring: Ring, entry: Entry) -> int:
        if entry.frozen:
            return min(entry.reserved, ring.range_end(entry.token))
        return ring.effective_reserved(entry.token)

    def free_addresses(self, ring: Ring, start: int, end: int) -> Iterator[int]:
        """Acknowledged, unallocated, usable addresses of ours in [start, end), in order.

        Each entry's scan starts at its hint (everything below it was taken when
        last looked at; a release lowers it), so allocating is not quadratic.
        """
        for entry, _entry_end in ring.owned_by(self.me):
            token = entry.token
            hint = self._hint.get(token, token)
            low = max(token, start, self.floor.get(token, token), hint)
            high = min(self.usable_end(ring, entry), end)
            for address in range(low, high):
                if address not in self.user_of and self.range.usable(address):
                    yield address

    def find_free(self, ring: Ring, start: int, end: int) -> int | None:
        address = next(self.free_addresses(ring, start, end), None)
        if address is not None:
            token = ring.entry_at(address).token
            if start <= self._hint.get(token, token):
                # Only a scan that began at the hint proves the addresses below
                # this one taken; a subnet search may have skipped free ones.
                self._hint[token] = address + 1
        return address

    def pool_size(self, ring: Ring) -> int:
        """The pool kept ahead of demand: ``pool``, but at most an eighth of an
        equal share of the range, so that small ranges are not tied up in
        pools (16 per peer would be a quarter of a /26 shared by three)."""
        owners = len({e.owner for e in ring.entries.values() if not e.frozen}) or 1
        return max(1, min(self.pool, self.range.size // (8 * owners)))

    def available(self, ring: Ring, start: int, end: int) -> int:
        """Acknowledged, unallocated addresses in [start, end) (capped at the pool)."""
        count = 0
        pool = self.pool_size(ring)
        for _address in self.free_addresses(ring, start, end):
            count += 1
            if count >= pool:
                break
        return count

    def track_acks(self, ring: Ring, now: float) -> set[int]:
        """Note which of our reservations wait for their acknowledgement, and
        since when; return the tokens of the overdue ones (``ACK_PATIENCE``)."""
        waiting: dict[int, tuple[float, int]] = {}
        lost: set[int] = set()
        for entry, _end in ring.owned_by(self.me):
            if entry.frozen:
                continue
            if ring.split_lost(entry.token):
                lost.add(entry.token)  # no ack can ever come: overdue at once
                continue
            if entry.reserved <= self.usable_end(ring, entry):
                continue
            since, reserved = self._ack_wait.get(entry.token, (now, entry.reserved))
            # A new reservation (grown since) starts its own wait.
            waiting[entry.token] = (since, reserved) if reserved == entry.reserved else (
                now, entry.reserved)
        self._ack_wait = waiting
        return lost | {token for token, (since, _r) in waiting.items()
                       if now - since >= ACK_PATIENCE}

    def refill(self, ring: Ring, start: int, end: int, avoid: Collection[PeerName] = (),
               overdue: Collection[int] = ()) -> None:
        """Keep a pool of acknowledged addresses ahead of demand."""
        if self.available(ring, start, end) < max(1, self.pool_size(ring) // 2):
            self.extend(ring, start, end, 0, avoid, overdue)

    def extend(self, ring: Ring, start: int, end: int, want: int = 0,
               avoid: Collection[PeerName] = (), overdue: Collection[int] = ()) -> int | None:
        """Ask for more reservation in [start, end) -- the pool, or ``want`` addresses
        when that many requests wait -- and return the entry's token.

        Entries whose heir is in ``avoid`` (unreachable: no ack soon) or whose
        token is in ``overdue`` (waited too long for an ack) are tried last, so
        that space donated to us is reserved while they wait.
        """
        stuck: int | None = None
        for entry, entry_end in ring.owned_by(self.me):
            if entry.frozen or entry.reserved >= min(entry_end, end) or entry_end <= start:
                continue
            if entry.token in overdue or (avoid and ring.heir(entry.token) in avoid):
                stuck = entry.token if stuck is None else stuck
                continue
            if entry.reserved > self.usable_end(ring, entry) and entry.reserved > start:
                return entry.token  # already asked; waiting for the ack
            target = max(entry.reserved, start, self.floor.get(entry.token, entry.token))
            step = max(self.pool_size(ring), want)
            ring.extend(entry.token, min(target + step, entry_end), self.me)
            self.note_written(ring, entry.token)
            self.out.changed()
            return entry.token
        if stuck is not None:
            return self._extend_one(ring, stuck, start, end, want)
        return None

    def _extend_one(self, ring: Ring, token: int, start: int, end: int, want: int) -> int:
        entry = ring.entries[token]
        if not (entry.reserved > self.usable_end(ring, entry) and entry.reserved > start):
            target = max(entry.reserved, start, self.floor.get(token, token))
            step = max(self.pool_size(ring), want)
            ring.extend(token, min(target + step, ring.range_end(token)), self.me)
            self.note_written(ring, token)
            self.out.changed()
        return token

    def free_count(self, ring: Ring | None) -> int:
        """Usable, unallocated addresses in our unfrozen entries (lost splits
        left out: nobody can use or give them)."""
        if ring is None:
            return 0
        total = 0
        counted: set[int] = set()
        for entry, end in ring.owned_by(self.me):
            if entry.frozen or ring.split_lost(entry.token):
                continue  # (a lost split is nobody's to give while it is lost)
            counted.add(entry.token)
            low = self.floor.get(entry.token, entry.token)
            size = end - low
            if low <= self.range.start < end:
                size -= 1
            if low < self.range.end <= end:
                size -= 1
            total += max(0, size)
        in_use = sum(1 for a in self.user_of if ring.entry_at(a).token in counted)
        return max(0, total - in_use)
