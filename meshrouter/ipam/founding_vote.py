"""Theory of operation: founding the ring by consensus (``--ipalloc-init consensus``).

Until a ring exists, routers in consensus mode run single-decree Paxos
(``paxos.py``) over the ``ipam`` gossip channel; the decided value is the set
of founders, and every founder computes the same ring from it
(``Ring.found``, salted with the decided proposal so that two clusters
founded apart differ).  Founding is lazy, as in Weave: a router proposes only
once a request waits (or it was primed), so a router started alone and later
connected to a cluster has not founded one of its own.  Proposals are retried
after ``PROPOSE_RETRY`` x (1..2) seconds, jittered by ``rng``.

``FoundingVote`` is one router's part in it while it has no ring: its Paxos
node (``None`` until it votes or hears a vote) and when it last proposed.
Observers and seed-mode non-members keep the vote's knowledge only to pass it
on; they never claim anything.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from meshrouter.codec import pack
from meshrouter.ipam.address_range import AddressRange
from meshrouter.ipam.founding import CONSENSUS, FoundingMode
from meshrouter.ipam.paxos import Claims, Knowledge, Paxos
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


class FoundingVote:
    """This router's part in the founding vote; see the module docstring."""

    def __init__(self, me: PeerName, uid: int, mode: FoundingMode,
                 address_range: AddressRange) -> None:
        self.node = (me, uid)
        self.mode = mode
        self.range = address_range
        self.paxos: Paxos | None = None
        self.proposed_at: float | None = None

    def join(self) -> None:
        """Consensus mode: take part in the vote (claiming nothing yet)."""
        self.paxos = Paxos(self.node, self.mode.quorum)
        self.paxos.knowledge.claims.setdefault(self.node, Claims(None, None, None))

    def knowledge(self) -> Knowledge | None:
        return self.paxos.knowledge if self.paxos is not None else None

    def digest(self) -> bytes:
        if self.paxos is None:
            return b""
        return b"p" + hashlib.sha256(self.paxos.knowledge.encode()).digest()[:16]

    def merge(self, knowledge: Knowledge) -> bool:
        """Merge a peer's knowledge of the vote; True if ours changed."""
        if self.paxos is None:
            self.paxos = Paxos(self.node, max(1, self.mode.quorum))
            if self.mode.kind != CONSENSUS:
                self.paxos.knowledge.claims.pop(self.node, None)
        return self.paxos.merge(knowledge)

    def step(self, now: float, rng: random.Random | None, wanted: bool) -> VoteStep | None:
        """One step of the vote (None when we take no part in one)."""
        if self.paxos is None or self.mode.kind != CONSENSUS:
            return None
        step = advance(self.paxos, self.range, self.mode.quorum, now, rng, wanted,
                       self.proposed_at)
        self.proposed_at = step.proposed_at
        return step
