"""Theory of operation: donations, asking for space and giving it.

A router with no free space in the range a request wants asks one reachable
owner for some (a ``SpaceMessage`` unicast), chosen at random weighted by the
free count the owner publishes in its note, and waits ``DONATION_RETRY``
before asking again.  A donor splits its own entry and gives the top of its
largest unreserved range (at most half of its free space); the recipient may
use it once the donor's heir has acknowledged the split (``ring.py``).  A
peer that cannot give answers with a denial, remembered ``DENIAL_MEMORY``
seconds so that we ask somebody else.
"""

from __future__ import annotations

import random

from meshrouter.ipam.allocations import Allocations
from meshrouter.ipam.messages import SPACE_DENIED, SPACE_REQUEST, SpaceMessage
from meshrouter.ipam.outbox import Counters, Outbox
from meshrouter.ipam.ring import Entry, Ring
from meshrouter.names import PeerName, format_peer_name

DONATION_RETRY = 2.0
DENIAL_MEMORY = 10.0


class Donations:
    """Both sides of donation for one router; see the module docstring."""

    def __init__(self, me: PeerName, allocations: Allocations, counters: Counters,
                 out: Outbox) -> None:
        self.me = me
        self.allocations = allocations
        self.counters = counters
        self.out = out
        self._asked: dict[PeerName, float] = {}
        self._denied: dict[PeerName, float] = {}

    # ------------------------------------------------------------------ donor

    def on_request(self, ring: Ring | None, src: PeerName, message: SpaceMessage,
                   may_give: bool) -> None:
        """Answer a request: a donation (a ring edit, broadcast) or a denial."""
        if ring is None or not may_give or not self.donate(ring, src, message.start,
                                                           message.end):
            self.out.unicasts.append(
                (src, SpaceMessage(SPACE_DENIED, message.start, message.end).encode()))

    def on_denied(self, src: PeerName, now: float) -> None:
        self._denied[src] = now
        self._asked.pop(src, None)

    def donate(self, ring: Ring, recipient: PeerName, start: int, end: int) -> bool:
        """Give ``recipient`` up to half of our unreserved space inside [start, end)."""
        if recipient == self.me:
            return False
        floor = self.allocations.floor
        free = self.allocations.free_count(ring)
        best: tuple[int, Entry, int] | None = None
        for entry, entry_end in ring.owned_by(self.me):
            if entry.frozen:
                continue
            low = max(entry.reserved, start, entry.token + 1, floor.get(entry.token, 0))
            room = min(entry_end, end) - low
            if room > 0 and (best is None or room > best[0]):
                best = (room, entry, entry_end)
        if best is None or free < 2:
            return False
        room, entry, entry_end = best
        give = max(1, min(room, free) // 2)
        low = max(entry.reserved, start, entry.token + 1, floor.get(entry.token, 0))
        split_at = max(low, min(entry_end, end) - give)
        ring.donate(entry.token, split_at, recipient, self.me)
        self.counters.donations_given += 1
        self.out.changed()
        return True

    # ------------------------------------------------------------------ recipient

    def ask(self, ring: Ring, start: int, end: int, now: float, reachable: set[PeerName],
            rng: random.Random | None) -> str:
        """Ask a peer for space in [start, end) unless one was asked lately; the reason."""
        for donor, asked_at in list(self._asked.items()):
            if now - asked_at < DONATION_RETRY:
                return f"asked peer {format_peer_name(donor)} for space {now - asked_at:.1f}s ago"
            del self._asked[donor]
        candidates: list[tuple[PeerName, int]] = []
        for owner in sorted(ring.owners()):
            if owner == self.me or owner not in reachable:
                continue
            if now - self._denied.get(owner, -1e18) < DENIAL_MEMORY:
                continue
            note = ring.notes.get(owner)
            has_space = any(
                not e.frozen and e.token < end and entry_end > start
                for e, entry_end in ring.owned_by(owner)
            )
            if has_space and note is not None and note.free > 1:
                candidates.append((owner, note.free))
        if not candidates:
            return "no reachable peer has free space in the range"
        if rng is None:
            return "looking for a peer with free space"
        total = sum(w for _, w in candidates)
        pick = rng.random() * total
        donor = candidates[-1][0]
        for owner, weight in candidates:
            pick -= weight
            if pick < 0:
                donor = owner
                break
        self._asked[donor] = now
        self.counters.donations_asked += 1
        self.out.unicasts.append((donor, SpaceMessage(SPACE_REQUEST, start, end).encode()))
        return f"asked peer {format_peer_name(donor)} for space"
