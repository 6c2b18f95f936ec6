"""Theory of operation: who is reachable, and whether we are in the majority.

Only a peer that reaches the owners of a *strict majority of the live
addresses* (the addresses of unfrozen entries) may acknowledge reservations or
donate, and only one that has been in such a majority without a gap for the
whole reclaim delay may reclaim: of two sides of a partition at most one has
a majority, so a cut-off minority can neither take space from the others nor
let its members grow theirs.  ``Majority`` keeps, from the reachable set each
tick brings, since when each ring owner has been unreachable and since when we
have been in the majority.

**Why addresses and not owners are counted.**  The votes must be a quantity
that no side of a partition can create on its own.  Owners are not: every
donation makes its recipient an owner, and donations made in the window
before a partition is noticed (the heartbeat timeout) added a voter on *both*
sides -- 6 owners split 3|3, each side donated once and counted 4 of 7, both
reclaimed, and an entry frozen by one side was acknowledged by the other
(campaign seed 3, small ranges; ``tests/ipam/test_partition_window.py``).
Addresses are conserved: the ring partitions the range, and a donation or a
transfer only moves addresses from their owner to another peer.  So, for any
address, the edits a side makes after the split move it only between that
side's peers or out of the side, never in; and the only edits that change the
live total, reclaims (freezing), need the majority already.  Hence, once each
side has merged what its own members know (anti-entropy, well within the
reclaim delay), the addresses one side counts as its own and those another
side counts as its own are disjoint sets of live addresses of the ring before
the split, minus what the majority froze since: at most one side can count
more than half.  A peer with a stale view may briefly believe otherwise; it
can then acknowledge or donate (the edits are harmless, see ``reclaim.py``)
but not reclaim, which needs the majority held, gap-free, for the whole delay.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from meshrouter.ipam.ring import Ring
from meshrouter.names import PeerName


def live_share(ring: Ring, names: AbstractSet[PeerName]) -> tuple[int, int]:
    """(live addresses owned by ``names``, live addresses) in ``ring``."""
    reached = total = 0
    for entry, end in ring.ordered():
        if entry.frozen:
            continue
        total += end - entry.token
        if entry.owner in names:
            reached += end - entry.token
    return reached, total


class Majority:
    """Reachability of ring owners and our majority clock; see the module docstring."""

    def __init__(self, me: PeerName, reclaim_after: float) -> None:
        self.me = me
        self.reclaim_after = reclaim_after
        self.unreachable_since: dict[PeerName, float] = {}
        self.reachable: AbstractSet[PeerName] = frozenset()
        self.since: float | None = None  # in the majority without a gap since
        # (token, owner) of entries whose heir was out of reach while the owner was
        self.heir_lost: set[tuple[int, PeerName]] = set()
        # (token, owner) -> every other peer that was the entry's heir while the
        # owner was unreachable: they must accept its reclaim (``reclaim_vote.py``)
        self.heirs_seen: dict[tuple[int, PeerName], set[PeerName]] = {}
        self._last_tick: float | None = None

    def track(self, now: float, reachable: AbstractSet[PeerName], ring: Ring | None) -> None:
        """Take this tick's reachable set; then restart the majority clock if needed."""
        owners = ring.owners() if ring is not None else set()
        for owner in owners:
            if owner == self.me or owner in reachable:
                self.unreachable_since.pop(owner, None)
            else:
                self.unreachable_since.setdefault(owner, now)
        for name in list(self.unreachable_since):
            if name not in owners:
                del self.unreachable_since[name]
        self.reachable = reachable
        # A peer back from a partition (or a pause) first has to catch up with
        # what the majority did meanwhile -- heirs may have changed -- so its
        # reclaim clock starts again; so does a long gap between ticks.
        gap = self._last_tick is not None and now - self._last_tick > self.reclaim_after / 2
        self._last_tick = now
        if ring is None or not self.holds(ring):
            self.since = None
        elif gap or self.since is None:
            self.since = now

    def holds(self, ring: Ring) -> bool:
        """Do the peers we reach (and we) own a strict majority of the live addresses?"""
        reached, total = live_share(ring, self.reachable | {self.me})
        return 2 * reached > total

    def track_heirs(self, ring: Ring) -> None:
        """Note the entries whose heir was out of our reach while their owner was.

        Checked every tick while an owner is unreachable (and forgotten when it
        is back): if at any point its entry's heir -- in our view -- was another
        unreachable peer, that heir may have acknowledged reservations we never
        heard of, and nobody on our side may reclaim the entry (``reclaim.py``).
        """
        lost: set[tuple[int, PeerName]] = set()
        seen: dict[tuple[int, PeerName], set[PeerName]] = {}
        for entry, _end in ring.ordered():
            if entry.owner == self.me or entry.frozen or entry.owner not in self.unreachable_since:
                continue
            key = (entry.token, entry.owner)
            heir = ring.heir(entry.token)
            if key in self.heir_lost or (heir is not None and heir != self.me
                                         and heir not in self.reachable):
                lost.add(key)
            heirs = seen[key] = self.heirs_seen.get(key, set())
            if heir is not None and heir != self.me:
                heirs.add(heir)
        self.heir_lost = lost
        self.heirs_seen = seen

    def heir_kept_in_reach(self, token: int, owner: PeerName) -> bool:
        """Has the entry's heir been us or a peer we reach, all the time its owner
        has been unreachable?  Only then do we know every acknowledgement the owner
        may be using (``reclaim.py``)."""
        return (token, owner) not in self.heir_lost

    def held_for_reclaim(self, now: float) -> bool:
        """In the majority, without a gap, for the whole reclaim delay."""
        return self.since is not None and now - self.since >= self.reclaim_after

    def unreachable_for(self, owner: PeerName, now: float) -> float | None:
        since = self.unreachable_since.get(owner)
        return None if since is None else now - since
