"""Theory of operation: who is reachable, and whether we are in the majority.

Only a peer that reaches a *strict majority* of the owners of live (unfrozen)
space may acknowledge reservations or donate, and only one that has been in
such a majority without a gap for the whole reclaim delay may reclaim: of two
sides of a partition at most one has a majority, so a cut-off minority can
neither take space from the others nor let its members grow theirs.
``Majority`` keeps, from the reachable set each tick brings, since when each
ring owner has been unreachable and since when we have been in the majority.
"""

from __future__ import annotations

from meshrouter.ipam.ring import Ring
from meshrouter.names import PeerName


class Majority:
    """Reachability of ring owners and our majority clock; see the module docstring."""

    def __init__(self, me: PeerName, reclaim_after: float) -> None:
        self.me = me
        self.reclaim_after = reclaim_after
        self.unreachable_since: dict[PeerName, float] = {}
        self.reachable: set[PeerName] = set()
        self.since: float | None = None  # in the majority without a gap since
        self._last_tick: float | None = None

    def track(self, now: float, reachable: set[PeerName], ring: Ring | None) -> None:
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
        """Can we reach a strict majority of the peers that own live space?"""
        voters = {e.owner for e in ring.entries.values() if not e.frozen}
        reachable = self.reachable | {self.me}
        return 2 * len(voters & reachable) > len(voters)

    def held_for_reclaim(self, now: float) -> bool:
        """In the majority, without a gap, for the whole reclaim delay."""
        return self.since is not None and now - self.since >= self.reclaim_after

    def unreachable_for(self, owner: PeerName, now: float) -> float | None:
        since = self.unreachable_since.get(owner)
        return None if since is None else now - since
