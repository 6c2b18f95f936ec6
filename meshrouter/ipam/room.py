"""Theory of operation: what a request does when no address is at hand.

``IpamCore.allocate`` first looks for a free, acknowledged address in our own
entries.  When there is none, ``make_room`` starts whatever gets one and
returns the reason the request waits, in this order:

1. Extend a reservation of ours by the number of waiting requests
   (``Allocations.extend``) and wait for the entry's heir to acknowledge it.
2. If the heir is unreachable, or the acknowledgement is overdue
   (``ACK_PATIENCE``: a slow heir, or a split that can never settle), ask a
   peer for a donation *meanwhile* -- space donated while one entry is stuck
   is reserved before it, so the request does not wait behind it.
3. With no space of ours to extend, ask a peer for a donation
   (``Donations.ask``), whose answer says which peer was asked, or why none
   could be.
"""

from __future__ import annotations

import random

from meshrouter.ipam import reasons
from meshrouter.ipam.allocations import Allocations
from meshrouter.ipam.donation import Donations
from meshrouter.ipam.majority import Majority
from meshrouter.ipam.ring import Ring


def make_room(ring: Ring, local: Allocations, donations: Donations, majority: Majority,
              want: int, start: int, end: int, now: float,
              rng: random.Random | None) -> str:
    """Start whatever gets us a free address in [start, end) for ``want`` waiting
    requests; return the reason they wait ("ready" when an address is at hand)."""
    if local.available(ring, start, end) > 0:
        return "ready"
    overdue = local.track_acks(ring, now)
    token = local.extend(ring, start, end, want, majority.unreachable_since, overdue)
    if token is None:
        return donations.ask(ring, start, end, now, majority.reachable, rng)
    waiting = reasons.ack_reason(ring, token, now, majority)
    heir = ring.heir(token)
    if heir not in majority.unreachable_since and token not in overdue:
        return waiting
    asked = donations.ask(ring, start, end, now, majority.reachable, rng)
    return f"{waiting}; meanwhile {asked}"
