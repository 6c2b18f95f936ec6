"""Theory of operation: one router's IP address management, sans-IO.

``IpamCore`` coordinates this router's view of the ring (``ring.py``), the
founding vote while there is no ring yet (``founding_vote.py``), the local
allocations and pool (``allocations.py``), claims of a given address
(``claim.py``), donations (``donation.py``), the majority clock
(``majority.py``), the heir's acknowledgements and reclaims (``reclaim.py``)
and the vote on each reclaim (``reclaim_vote.py``), the state file
(``persistence.py``) and the reasons shown for waiting requests
(``reasons.py``); the user verbs -- allocate, claim, release and the retry of
waiting requests -- are its mixin ``UserVerbs`` (``verbs.py``).  The shell
feeds it gossip, unicasts, user requests and a periodic
``tick(now, reachable, rng)``; the core answers with state to broadcast
(``take_broadcast``), unicasts to send (``take_unicasts``) and a ``dirty``
flag that says the persisted blob (``dump``) is stale.

A request that cannot be met at once stays *pending* with the reason the user
sees in ``status ipam`` (``verbs.py``); the shell re-tries pending requests
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
from collections.abc import Set as AbstractSet
from typing import Any

from meshrouter.ipam import leaving, persistence, reasons, reclaim
from meshrouter.ipam.address_range import AddressRange
from meshrouter.ipam.allocations import Allocations
from meshrouter.ipam.donation import Donations, refusal
from meshrouter.ipam.founding import CONSENSUS, SEED, FoundingMode
from meshrouter.ipam.founding_vote import FoundingVote
from meshrouter.ipam.majority import Majority
from meshrouter.ipam.messages import SPACE_DENIED, SPACE_REQUEST, ReclaimMessage, decode_unicast
from meshrouter.ipam.outbox import Counters, Outbox
from meshrouter.ipam.pending import Pending, PendingRequests
from meshrouter.ipam.persistence import STATE_FORMAT
from meshrouter.ipam.reasons import UNSYNCED
from meshrouter.ipam.reclaim_vote import ReclaimVotes
from meshrouter.ipam.ring import Ring
from meshrouter.ipam.state import IpamState
from meshrouter.ipam.verbs import FULL_GRACE, UserVerbs
from meshrouter.names import PeerName

__all__ = ["FULL_GRACE", "POOL", "STARTUP_GRACE", "STATE_FORMAT", "UNSYNCED", "IpamCore",
           "Pending"]

POOL = 16
STARTUP_GRACE = 5.0


class IpamCore(UserVerbs):
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

    def status(self, now: float, reachable: AbstractSet[PeerName]) -> dict[str, Any]:
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

    # ------------------------------------------------------------------ leaving

    def rmpeer(self, name: PeerName, reachable: AbstractSet[PeerName]) -> int:
        """Take over every range of ``name``, which the operator says is gone."""
        taken = leaving.remove_peer(self.ring, self.me, name, reachable)
        if taken:
            self.out.changed()
        return taken

    def reset(self, reachable: AbstractSet[PeerName]) -> PeerName | None:
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

    def tick(self, now: float, reachable: AbstractSet[PeerName], rng: random.Random) -> None:
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
