"""Theory of operation: the user verbs of ``IpamCore`` -- allocate, claim, release.

An allocation first returns the address the container already has in the
subnet; otherwise it takes a free, acknowledged address of our own entries
(``Allocations.find_free``) and tops up the pool behind it.  With none at
hand, ``make_room`` (``room.py``) starts whatever gets one -- extending a
reservation, asking a peer for a donation -- and says why the request waits.
A claim of a given address takes it when it lies in an entry of ours
(``claim.py``), and otherwise waits for that.

A request that cannot be met at once -- no ring yet, a ring not yet compared
with a neighbour's after a start without state, a reservation waiting for its
heir's acknowledgement, no free space here -- stays *pending* with the reason
the user sees in ``status ipam``; the shell re-tries pending requests after
every change (``attempt``).  Only a range that is full for ``FULL_GRACE``
after the request is refused at once.  Nothing here blocks or sleeps.

This is a mixin of ``IpamCore`` (``core.py``), which owns the state declared
below; it is split out so the core reads as the coordination of the ring,
gossip and tick, and this module as what one request goes through.
"""

from __future__ import annotations

import random

from meshrouter.errors import (
    IpamConflictError,
    IpamError,
    IpamInvalidError,
    IpamUnavailableError,
)
from meshrouter.ipam import reasons
from meshrouter.ipam.address_range import AddressRange, format_address
from meshrouter.ipam.allocations import Allocations
from meshrouter.ipam.claim import claim_address
from meshrouter.ipam.donation import RANGE_FULL, Donations
from meshrouter.ipam.founding import FoundingMode
from meshrouter.ipam.founding_vote import FoundingVote
from meshrouter.ipam.majority import Majority
from meshrouter.ipam.outbox import Counters, Outbox
from meshrouter.ipam.pending import PendingRequests
from meshrouter.ipam.persistence import check_container
from meshrouter.ipam.reasons import UNSYNCED
from meshrouter.ipam.ring import Ring
from meshrouter.ipam.room import make_room
from meshrouter.names import PeerName

FULL_GRACE = 2.0  # a full range is refused this long after the request (fresh notes)


class UserVerbs:
    """Allocate, claim, release and retry (see the module docstring)."""

    me: PeerName
    range: AddressRange
    mode: FoundingMode
    ring: Ring | None
    synced: bool
    left: bool
    founding: FoundingVote
    pending: PendingRequests
    counters: Counters
    out: Outbox
    local: Allocations
    majority: Majority
    donations: Donations

    def _not_ready(self, key: tuple[str, str, int, int], container: str, kind: str,
                   subnet: tuple[int, int], address: int | None, now: float) -> bool:
        """Park the request while there is no ring, or it is not the current one yet."""
        if self.ring is not None and self.synced:
            return False
        reason = UNSYNCED if self.ring is not None else self._no_ring_reason()
        self.pending.wait(key, container, kind, subnet, address, now, reason)
        return True

    def allocate(self, container: str, subnet: tuple[int, int] | None, now: float,
                 *, refuse: bool = True) -> int | None:
        """An address for ``container`` (the one it has in the subnet, if any).

        Returns None when the request must wait; its reason is in ``pending``.
        Raises IpamUnavailableError when the range is full (``refuse``: the
        caller's own attempt; retries of the tick leave the request waiting).
        """
        check_container(container)
        if self.left:
            raise IpamConflictError("this router has left its cluster (reset) and is stopping")
        start, end = subnet if subnet is not None else (self.range.start, self.range.end)
        for address in self.local.by_container.get(container, []):
            if start <= address < end:
                return address
        key = (container, "allocate", start, end)
        if self._not_ready(key, container, "allocate", (start, end), None, now):
            return None
        assert self.ring is not None
        found = self.local.find_free(self.ring, start, end)
        if found is not None:
            self._record(container, found)
            self.local.refill(self.ring, start, end, self.majority.unreachable_since,
                              self.local.track_acks(self.ring, now))
            return found
        reason = self._make_room(start, end, now)
        waiting = self.pending.get(key)
        if (refuse and reason == RANGE_FULL and waiting is not None
                and now - waiting.since >= FULL_GRACE):
            # Nothing anyone does can free an address (short of a release):
            # say so now rather than after the caller's whole wait.  The grace
            # lets the peers' published free counts catch up (a tick).
            self.pending.pop(key, None)
            raise IpamUnavailableError(f"no address for {container}: {reason}")
        self.pending.wait(key, container, "allocate", (start, end), None, now, reason)
        return None

    def claim(self, container: str, address: int, now: float) -> bool:
        """Give ``container`` this very address; False when it must wait."""
        check_container(container)
        if not self.range.usable(address):
            raise IpamInvalidError(f"{format_address(address)} is not usable in {self.range}")
        user = self.local.user_of.get(address)
        if user == container:
            return True
        if user is not None:
            raise IpamConflictError(f"{format_address(address)} is already allocated to {user}")
        key = (container, "claim", address, address + 1)
        if self._not_ready(key, container, "claim", (address, address + 1), address, now):
            return False
        ring = self.ring
        assert ring is not None
        if claim_address(ring, self.me, self.local, address, self.out) is not None:
            self._record(container, address)
            return True
        self.pending.wait(key, container, "claim", (address, address + 1), address, now,
                          reasons.ack_reason(ring, ring.entry_at(address).token, now,
                                             self.majority))
        return False

    def release(self, container: str, address: int | None = None) -> list[int]:
        """Free the container's addresses (or one of them); return what was freed."""
        freed = self.local.release(container, address, self.ring)
        self.cancel(container)
        self.counters.releases += len(freed)
        return freed

    def lookup(self, container: str) -> list[int]:
        return list(self.local.by_container.get(container, []))

    def cancel(self, container: str) -> None:
        """Forget pending requests of a container whose caller gave up."""
        self.pending.cancel(container)

    def attempt(self, now: float) -> list[tuple[str, int]]:
        """Retry every pending request; return the (container, address) now met."""
        done: list[tuple[str, int]] = []
        for key, request in list(self.pending.items()):
            if request.kind == "allocate":
                address = self.allocate(request.container, request.subnet, now, refuse=False)
                if address is not None:
                    done.append((request.container, address))
            else:
                assert request.address is not None
                try:
                    if self.claim(request.container, request.address, now):
                        self.pending.pop(key, None)
                        done.append((request.container, request.address))
                except IpamError as exc:
                    request.reason = str(exc)
        return done

    def _record(self, container: str, address: int) -> None:
        self.local.record(container, address)
        self.counters.allocations += 1
        self.pending.met(container, address)

    def _make_room(self, start: int, end: int, now: float,
                   rng: random.Random | None = None) -> str:
        """Start whatever gets us a free address in [start, end); return the reason."""
        assert self.ring is not None
        waiting = sum(1 for p in self.pending.values()
                      if p.kind == "allocate" and p.subnet == (start, end))
        return make_room(self.ring, self.local, self.donations, self.majority, waiting,
                         start, end, now, rng)

    def _no_ring_reason(self) -> str:
        return reasons.no_ring_reason(self.founding.paxos, self.mode)
