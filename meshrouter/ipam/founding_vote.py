"""Theory of operation: founding the ring by consensus (``--ipalloc-init consensus``).

Until a ring exists, routers in consensus mode run single-decree Paxos
(``paxos.py``) over the ``ipam`` gossip channel; the decided value is the set
of founders, and every founder computes the same ring from it
(``Ring.found``, salted with the decided proposal so that two clusters
founded apart differ).  Founding is lazy, as in Weave: a router proposes only
once a request waits (or it was primed), so a router started alone and later
connected to a cluster has not founded one of its own.  Proposals are retried
after ``PROPOSE_RETRY`` x (1..2) seconds, jittered by ``rng``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from meshrouter.codec import pack
from meshrouter.ipam.address_range import AddressRange
from meshrouter.ipam.paxos import Paxos
from meshrouter.ipam.ring import Ring
from meshrouter.names import PeerName

PROPOSE_RETRY = 5.0


@dataclass(slots=True)
class VoteStep:
    ring: Ring | None  # the ring the vote decided, if it did
    changed: bool  # our knowledge of the vote changed: broadcast it
    proposed_at: float | None


def advance(paxos: Paxos, address_range: AddressRange, quorum: int, now: float,
            rng: random.Random | None, wanted: bool, proposed_at: float | None) -> VoteStep:
    """One step of the vote; ``wanted`` when a request waits for the ring."""
    changed = paxos.think()
    ring = _decided(paxos, address_range)
    if ring is not None:
        return VoteStep(ring, changed, proposed_at)
    if not wanted:
        return VoteStep(None, changed, proposed_at)
    electors = {name for name, _uid in paxos.knowledge.claims}
    retry_due = proposed_at is None or (
        rng is not None and now - proposed_at >= PROPOSE_RETRY * (1 + rng.random())
    )
    if len(electors) >= quorum and retry_due and rng is not None:
        paxos.propose(tuple(sorted(electors)))
        proposed_at = now
        paxos.think()
        changed = True
        ring = _decided(paxos, address_range)
    return VoteStep(ring, changed, proposed_at)


def _decided(paxos: Paxos, address_range: AddressRange) -> Ring | None:
    decided = paxos.consensus()
    if decided is None:
        return None
    proposal, members = decided
    salt = pack([proposal.round, list(proposal.proposer)])
    return Ring.found(address_range.start, address_range.end,
                      [PeerName(m) for m in members], salt)
