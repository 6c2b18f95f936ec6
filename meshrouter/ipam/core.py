"""Theory of operation: one router's IP address management, sans-IO.

``IpamCore`` coordinates this router's view of the ring (``ring.py``), the
founding vote while there is no ring yet (``founding_vote.py``), the local
allocations and pool (``allocations.py``), claims of a given address
(``claim.py``), donations (``donation.py``), the majority clock
(``majority.py``), the heir's acknowledgements and reclaims (``reclaim.py``)
and the vote on each reclaim (``reclaim_vote.py``), the state file
(``persistence.py``) and the reasons shown for waiting requests
(``reasons.py``).  The shell feeds it gossip, unicasts,
user requests and a periodic ``tick(now, reachable, rng)``; the core answers
with state to broadcast (``take_broadcast``), unicasts to send
(``take_unicasts``) and a ``dirty`` flag that says the persisted blob
(``dump``) is stale.

A request that cannot be met at once -- no ring yet, a reservation waiting
for its heir's acknowledgement, no free space here -- stays *pending* with the
reason the user sees in ``status ipam``; the shell re-tries pending requests
after every change (``attempt``).  Nothing here blocks or sleeps.

Each tick does, in order: track which ring owners are unreachable (and since
when); advance founding; acknowledge the reservations we are heir of;
propose reclaims of the entries of owners unreachable for ``reclaim_after``
(written once a majority accepts, ``reclaim_vote.py``); keep a pool of
acknowledged addresses ahead of demand; ask a peer for space when we have
none; publish our free-address count.
"""

from __future__ import annotations

import random
from typing import Any

from meshrouter.errors import (
    IpamConflictError,
    IpamError,
    IpamInvalidError,
    IpamUnavailableError,
)
from meshrouter.ipam import leaving, persistence, reasons, reclaim
from meshrouter.ipam.address_range import AddressRange, format_address
from meshrouter.ipam.allocations import Allocations
from meshrouter.ipam.claim import claim_address
from meshrouter.ipam.donation import RANGE_FULL, Donations, refusal
from meshrouter.ipam.founding import CONSENSUS, SEED, FoundingMode
from meshrouter.ipam.founding_vote import FoundingVote
from meshrouter.ipam.majority import Majority
from meshrouter.ipam.messages import SPACE_DENIED, SPACE_REQUEST, ReclaimMessage, decode_unicast
from meshrouter.ipam.outbox import Counters, Outbox
from meshrouter.ipam.pending import Pending, PendingRequests
from meshrouter.ipam.persistence import STATE_FORMAT, check_container
from meshrouter.ipam.reasons import UNSYNCED
from meshrouter.ipam.reclaim_vote import ReclaimVotes
from meshrouter.ipam.ring import Ring
from meshrouter.ipam.room import make_room
from meshrouter.ipam.state import IpamState
from meshrouter.names import PeerName

__all__ = ["POOL", "STARTUP_GRACE", "STATE_FORMAT", "UNSYNCED", "IpamCore", "Pending"]

POOL = 16
STARTUP_GRACE = 5.0
FULL_GRACE = 2.0  # a full range is refused this long after the request (fresh notes)


class IpamCore:
    """Allocation state of one router; see the module docstring."""

    def __init__(
        self,
        me: PeerName,
        uid: int,
        address_range: AddressRange,
        mode: FoundingMode,
        *,
        reclaim_after: float,
        pool: int = POOL,
    ) -> None:
        self.me = me
        self.uid = uid
        self.range = address_range
        self.mode = mode
        self.reclaim_after = reclaim_after
        self.pool = max(1, pool)
        self.ring: Ring | None = None
        self.founding = FoundingVote(me, uid, mode, address_range)
        self.pending = PendingRequests()
        self.counters = Counters()
        self.out = Outbox()
        self.local = Allocations(me, address_range, self.pool, self.out)
        self.majority = Majority(me, reclaim_after)
        self.donations = Donations(me, self.local, self.counters, self.out)
        self.votes = ReclaimVotes(me, reclaim_after, self.out)
        # False after a start without a state file, until we have compared
        # notes with a neighbour (or STARTUP_GRACE passed with none): a router
        # that lost its data must not act on a ring it founded or learned
        # before hearing the cluster's current one.
        self.synced = False
        self.left = False  # after reset: ignore gossip until the router stops
        self.conflicting: set[int] = set()  # our addresses in another's entry (never expected)
        self._started_at: float | None = None
        self.primed = False  # found now, without waiting for a request

    # ------------------------------------------------------------------ views

    @property
    def allocations(self) -> dict[str, list[int]]:
        return self.local.by_container

    @property
    def user_of(self) -> dict[int, str]:
        return self.local.user_of

    @property
    def floor(self) -> dict[int, int]:
        return self.local.floor

    @property
    def dirty(self) -> bool:
        return self.out.dirty

    @dirty.setter
    def dirty(self, value: bool) -> None:
        self.out.dirty = value

    @property
    def cluster_id(self) -> str:
        return self.ring.cluster_id if self.ring is not None else ""

    def free_count(self) -> int:
        """Usable, unallocated addresses in our unfrozen entries."""
        return self.local.free_count(self.ring)

    def status(self, now: float, reachable: set[PeerName]) -> dict[str, Any]:
        return reasons.status(self, now, reachable)

    # ------------------------------------------------------------------ identity

    def start(self, now: float) -> None:
        """Found at once (seed mode) or join the vote (consensus mode)."""
        self._started_at = now
        if self.ring is not None:
            return
        if self.mode.kind == SEED and self.me in self.mode.seeds:
            self._adopt(Ring.found(self.range.start, self.range.end, self.mode.seeds))
        elif self.mode.kind == CONSENSUS:
            self.founding.join()
            self.out.broadcast = True

    # ------------------------------------------------------------------ gossip

    def state(self) -> IpamState:
        return IpamState(self.ring, self.founding.knowledge())

    def digest(self) -> bytes:
        if self.ring is not None:
            return b"r" + self.ring.fingerprint()
        return self.founding.digest()

    def receive(self, state: IpamState, now: float) -> IpamState | None:
        """Merge gossip; return what to relay (the whole state) or None.

        Raises ``ClusterMismatchError`` for a ring of another cluster or range.
        """
        if self.left:
            return None
        changed = False
        if state.ring is not None:
            self.synced = True
            if self.ring is None:
                if (state.ring.start, state.ring.end) != (self.range.start, self.range.end):
                    ours = Ring.found(self.range.start, self.range.end, [self.me])
                    ours.same_cluster(state.ring)
                self._adopt(state.ring.copy())
                changed = True
            else:
                changed = self.ring.merge(state.ring)
                if changed:
                    self.donations.landed(self.ring)
                    self.local.raise_floors(self.ring)
                    self.conflicting |= self.local.foreign(self.ring)
                    self.counters.conflicts = len(self.conflicting)
        elif state.paxos is not None and self.ring is None:
            changed = self.founding.merge(state.paxos)
            if changed and self.mode.kind == CONSENSUS:
                self._advance_founding(now, None)
        if changed:
            self.out.dirty = True
            return self.state().copy()
        return None

    def neighbour_digest(self, digest: bytes) -> None:
        """A neighbour showed its digest: without a ring, or with the very ring we
        hold, it has nothing to teach us (any other ring arrives in ``receive``)."""
        if not digest.startswith(b"r") or digest == self.digest():
            self.synced = True

    def take_broadcast(self) -> IpamState | None:
        """The state to broadcast if our own edits changed it since the last call."""
        if not self.out.broadcast:
            return None
        self.out.broadcast = False
        return self.state().copy()

    def take_unicasts(self) -> list[tuple[PeerName, bytes]]:
        out, self.out.unicasts = self.out.unicasts, []
        return out

    def on_unicast(self, src: PeerName, payload: bytes, now: float) -> None:
        message = decode_unicast(payload)
        if isinstance(message, ReclaimMessage):
            carried = self.votes.on_message(self.ring, self.synced and not self.left, src,
                                            message, self.majority.reachable, now)
            if carried is not None and self.ring is not None:
                self.votes.settle(carried, now, reclaim.commit(
                    self.ring, self.me, carried, now, self.counters, self.out))
        elif message.kind == SPACE_DENIED:
            self.donations.on_denied(src, now, message.reason, self.ring)
        elif message.kind == SPACE_REQUEST:
            why = refusal(self.ring, self.synced,
                          self.ring is not None and self.majority.holds(self.ring),
                          any(p.kind == "allocate" for p in self.pending.values()))
            self.donations.on_request(self.ring, src, message, why, self.majority.reachable)

    def _adopt(self, ring: Ring) -> None:
        """Take a ring as ours (founded here or learned from a peer)."""
        self.ring = ring
        self.founding.paxos = None
        self.out.changed()
        self.local.raise_floors(ring)

    # ------------------------------------------------------------------ user verbs

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
        for address in self.allocations.get(container, []):
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
        user = self.user_of.get(address)
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
        return list(self.allocations.get(container, []))

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

    # ------------------------------------------------------------------ leaving

    def rmpeer(self, name: PeerName, reachable: set[PeerName]) -> int:
        """Take over every range of ``name``, which the operator says is gone."""
        taken = leaving.remove_peer(self.ring, self.me, name, reachable)
        if taken:
            self.out.changed()
        return taken

    def reset(self, reachable: set[PeerName]) -> PeerName | None:
        """Hand every range we own to a live peer and forget our allocations.

        Returns the heir, or None when we own nothing.  Raises when there is
        space to hand over but no reachable peer to take it.
        """
        if self.ring is None:
            return None
        heir = leaving.hand_over(self.ring, self.me, reachable)
        if heir is not None:
            self.local.clear()
            self.pending.clear()
            self.out.changed()
        return heir

    def forget(self) -> None:
        """After ``reset``: drop the ring and everything else, so that this
        router, restarted, joins whichever cluster it is connected to."""
        self.ring = None
        self.founding.paxos = None
        self.local.clear()
        self.pending.clear()
        self.local.floor.clear()
        self.local.written.clear()
        self.synced = True
        self.out.dirty = True
        self.left = True

    # ------------------------------------------------------------------ tick

    def tick(self, now: float, reachable: set[PeerName], rng: random.Random) -> None:
        """Periodic and after-change work; see the module docstring."""
        if self.left:
            return
        if self._started_at is None:
            self._started_at = now
        self.majority.track(now, reachable, self.ring)
        if not self.synced and now - self._started_at >= STARTUP_GRACE:
            self.synced = True  # nobody to learn from: we are alone
        if self.ring is None:
            self._advance_founding(now, rng)
            self._refresh_reasons()
            return
        if not self.synced:
            self._refresh_reasons()
            return
        ring = self.ring
        reclaim.give_acks(ring, self.me, self.majority, self.local, self.votes, self.counters,
                          self.out)
        self.votes.tick(ring, now, self.majority.reachable)
        reclaim.reclaim(ring, self.me, now, self.majority, self.votes)
        overdue = self.local.track_acks(ring, now)
        if any(not e.frozen for e, _ in ring.owned_by(self.me)):
            self.local.refill(ring, self.range.start, self.range.end,
                              self.majority.unreachable_since, overdue)
        if ring.set_note(self.me, free=self.free_count()):
            self.out.changed()
        for request in self.pending.values():
            if request.kind == "allocate":
                request.reason = self._make_room(request.subnet[0], request.subnet[1], now, rng)
        self._refresh_reasons()

    def _advance_founding(self, now: float, rng: random.Random | None) -> None:
        step = self.founding.step(now, rng, bool(self.pending) or self.primed)
        if step is None:
            return
        if step.ring is not None:
            self.synced = True  # a ring just decided by a quorum is the current one
            self._adopt(step.ring)
        elif step.changed:
            self.out.broadcast = True

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

    def _refresh_reasons(self) -> None:
        if self.ring is not None and not self.synced:
            self.pending.explain(UNSYNCED)
        elif self.ring is None:
            self.pending.explain(self._no_ring_reason())

    # ------------------------------------------------------------------ persistence

    def dump(self) -> bytes:
        return persistence.dump(self.range, self.ring, self.allocations, self.floor)

    def load(self, blob: bytes) -> None:
        """Restore from ``dump``; raise StateFileError (never reset silently)."""
        saved = persistence.load(blob, self.range)
        self.ring = saved.ring
        if saved.ring is not None:
            self.founding.paxos = None
        self.local.restore(saved.allocations, saved.floors, saved.ring)
        self.synced = saved.ring is not None
