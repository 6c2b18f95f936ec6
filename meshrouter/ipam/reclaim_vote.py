"""Theory of operation: a reclaim is a proposal a majority accepts first.

An heir that may reclaim an entry (``reclaim.py``: its owner out of reach for
the reclaim delay, our majority held as long, the entry's heirs kept in
reach) no longer writes the reclaim from its own reachability view: that view
lags a partition by the heartbeat timeout, and a reclaim decided in that
window counts the far side as reachable (campaign seed 135: 02 reclaimed the
entry of 03, who was down, two seconds after a split, counting the other
side's peers; 03 came back on that side with its old ring, both sides then
counted 03's addresses, and the other side reclaimed 02's entry and handed
out what 02 was using).

Instead the heir *proposes* the reclaim (``ReclaimTarget``: the entry's
token, owner and version, and the floor it would freeze it at) to every ring
owner it believes it reaches, and writes it only when owners of a **strict
majority of the live addresses** (counting itself) have *accepted* it within
``PROPOSAL_TIMEOUT`` -- answers are fresh round trips, sent after the
decision, so a peer across an unnoticed partition simply does not answer.
The entry's previous heirs since its owner went out of reach must be among
the acceptors (``required``): one of them may have acknowledged a larger
reservation just before it was cut off (the residual window of ``reclaim.py``),
and it checks the floor against what it knows itself.  Like a Paxos prepare,
each acceptor checks the proposal against its own ring (the owner is out of
its reach too, the entry is the one it knows, no reservation it knows is above
the floor) and *promises*, until it sees the reclaim's result in its ring,
the proposer abandons it, or the promise lapses (below), not to accept a
conflicting reclaim -- one of the proposer's own entries, or of the same
entry by another peer -- nor to propose one, nor to acknowledge the entry
beyond the floor.

Why two conflicting reclaims cannot both be written: each needs acceptors
owning more than half of the live addresses, and addresses are conserved
(``majority.py``), so the two sets share an acceptor; whichever proposal it
answered second it refused, unless it had already seen the first one's result
-- and then its ring, which it gossips to its side, already shows the entry
frozen, and the second proposer's stale view of it is refused by the version
check.  Promises live in memory, so they must not block for ever when a
proposer dies between accepts and write: a promise lapses once its proposer
has been reachable for the reclaim delay (at least ``PROMISE_REACHABLE``)
without the result arriving -- a live proposer's write is broadcast at once; a
restarted one forgot its vote; and the delay is far longer than the heartbeat
timeout, the longest a partitioned proposer still looks reachable -- and in
any case after ``PROMISE_LIMIT`` reclaim delays.  While the proposer is
reachable the promise costs nothing (nobody reclaims a reachable peer's
entries), at most a delay of another heir's reclaim of the same entry.
The residual assumption:
a partition that separates a written reclaim from an acceptor heals, or
gossip carries the result across, within ``PROMISE_LIMIT`` reclaim delays.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from meshrouter.ipam.address_range import format_address
from meshrouter.ipam.majority import live_share
from meshrouter.ipam.messages import (
    RECLAIM_ABANDON,
    RECLAIM_ACCEPT,
    RECLAIM_PROPOSE,
    RECLAIM_REFUSE,
    ReclaimMessage,
    ReclaimTarget,
)
from meshrouter.ipam.outbox import Outbox
from meshrouter.ipam.ring import FREEZE_BUMP, Ring
from meshrouter.names import PeerName, format_peer_name

PROPOSAL_TIMEOUT = 2.0  # answers must come within this, or the proposal is abandoned
PROPOSAL_RETRY = 5.0  # a proposal that failed is not made again for this long
PROMISE_REACHABLE = 30.0  # a promise lapses after its proposer was reachable this long
# (or the reclaim delay, if longer)
PROMISE_LIMIT = 10.0  # ... and in any case after this many reclaim delays
MAX_PROMISES = 4096  # bounded memory whatever proposers send


@dataclass(slots=True)
class Proposal:
    """Our open proposal for one entry."""

    target: ReclaimTarget
    started: float
    required: frozenset[PeerName]
    accepted: set[PeerName] = field(default_factory=set)
    refused: dict[PeerName, str] = field(default_factory=dict)


@dataclass(slots=True)
class Promise:
    """What we promised a proposer that asked us to accept ``target``."""

    proposer: PeerName
    target: ReclaimTarget
    since: float
    reachable_since: float | None = None


def result_seen(ring: Ring, target: ReclaimTarget) -> bool:
    """Does ``ring`` show the entry reclaimed (or superseded by a later reclaim
    or ``rmpeer``, which bump the version by the freeze bump too)?"""
    entry = ring.entries.get(target.token)
    return entry is not None and entry.version >= target.version + FREEZE_BUMP


class ReclaimVotes:
    """Both sides of the reclaim vote for one router; see the module docstring."""

    def __init__(self, me: PeerName, reclaim_after: float, out: Outbox) -> None:
        self.me = me
        self.reclaim_after = reclaim_after
        self.out = out
        self.proposals: dict[int, Proposal] = {}
        self.promises: dict[tuple[PeerName, int], Promise] = {}
        self.retry_at: dict[int, float] = {}
        self.last_refusal: dict[int, str] = {}  # token -> why its last proposal failed

    # ------------------------------------------------------------------ proposer

    def blocked(self, token: int, owner: PeerName, now: float) -> bool:
        """May we not propose a reclaim of the entry at ``token`` right now?"""
        if token in self.proposals or now < self.retry_at.get(token, -1e18):
            return True
        return self.conflict(self.me, token, owner) is not None

    def propose(self, ring: Ring, target: ReclaimTarget, required: set[PeerName],
                reachable: AbstractSet[PeerName], now: float) -> None:
        """Ask every owner we believe we reach to accept ``target``."""
        required = required - {self.me}
        self.proposals[target.token] = Proposal(target, now, frozenset(required))
        message = ReclaimMessage(RECLAIM_PROPOSE, target).encode()
        for owner in sorted((ring.owners() & reachable) | required):
            if owner not in (self.me, target.owner):
                self.out.unicasts.append((owner, message))

    def _accepted(self, src: PeerName, target: ReclaimTarget,
                  ring: Ring) -> ReclaimTarget | None:
        """Count an acceptance; the target once it carries the vote."""
        proposal = self.proposals.get(target.token)
        if proposal is None or proposal.target != target:
            return None  # an answer to a proposal we abandoned
        proposal.accepted.add(src)
        voters = proposal.accepted | {self.me}
        if not proposal.required <= voters:
            return None
        reached, total = live_share(ring, voters)
        if 2 * reached <= total:
            return None
        return target

    def settle(self, target: ReclaimTarget, now: float, written: bool) -> None:
        """The vote carried ``target``: close the proposal (abandoned when the
        ring moved on meanwhile and the reclaim was not written)."""
        proposal = self.proposals.get(target.token)
        if proposal is None or proposal.target != target:
            return
        if written:
            del self.proposals[target.token]
            self.last_refusal.pop(target.token, None)
        else:
            self._fail(proposal, now, "the entry changed while the vote ran")

    def _fail(self, proposal: Proposal, now: float, why: str) -> None:
        """Give a proposal up: release those who promised, retry later."""
        target = proposal.target
        self.proposals.pop(target.token, None)
        self.retry_at[target.token] = now + PROPOSAL_RETRY
        self.last_refusal[target.token] = why
        message = ReclaimMessage(RECLAIM_ABANDON, target).encode()
        for peer in sorted(proposal.accepted):
            self.out.unicasts.append((peer, message))

    # ------------------------------------------------------------------ acceptor

    def conflict(self, proposer: PeerName, token: int, owner: PeerName) -> str | None:
        """The promise (or our own open proposal) that a reclaim of the entry at
        ``token`` (owned by ``owner``) by ``proposer`` would conflict with."""
        for promised_to, promised_token in self.promises:
            if promised_token == token and promised_to != proposer:
                return f"it accepted a reclaim of that entry by {format_peer_name(promised_to)}"
            if promised_to == owner:
                return (f"it accepted a reclaim by {format_peer_name(owner)}, "
                        "whose entries may not be reclaimed meanwhile")
        if proposer != self.me:
            for proposal in self.proposals.values():
                if proposal.target.token == token or proposal.target.owner == proposer:
                    return "it proposes a conflicting reclaim itself"
        return None

    def _judge(self, ring: Ring | None, synced: bool, src: PeerName, target: ReclaimTarget,
               reachable: AbstractSet[PeerName]) -> str:
        """Why we refuse ``src``'s proposal ("" to accept)."""
        if ring is None or not synced:
            return "it is still learning the address ring"
        if target.owner == self.me:
            return "it is the owner, and alive"
        if target.owner in reachable:
            return "it reaches the owner"
        entry = ring.entries.get(target.token)
        if entry is not None:
            if entry.frozen or entry.owner != target.owner or entry.version > target.version:
                return "its ring has a newer version of the entry"
            if ring.reclaim_floor(target.token) > target.floor:
                return "it knows a larger reservation of the entry"
        conflict = self.conflict(src, target.token, target.owner)
        if conflict is not None:
            return conflict
        if (src, target.token) not in self.promises and len(self.promises) >= MAX_PROMISES:
            return "it holds too many promises"
        return ""

    def promised_floor(self, token: int) -> int | None:
        """The lowest floor we promised for the entry at ``token`` (we must not
        acknowledge its owner beyond it), or None."""
        floors = [p.target.floor for (_, t), p in self.promises.items() if t == token]
        return min(floors) if floors else None

    def describe(self, now: float) -> dict[str, Any]:
        """The ``status ipam`` section: open votes, failed ones, promises held."""
        return {
            "proposing": [
                {"owner": format_peer_name(p.target.owner), "entry": format_address(p.target.token),
                 "accepted": sorted(format_peer_name(n) for n in p.accepted),
                 "waiting_s": round(now - p.started, 3)}
                for p in self.proposals.values()
            ],
            "failed": [{"entry": format_address(token), "why": why}
                       for token, why in sorted(self.last_refusal.items())[:5]],
            "promises": len(self.promises),
        }

    # ------------------------------------------------------------------ both

    def on_message(self, ring: Ring | None, synced: bool, src: PeerName,
                   message: ReclaimMessage, reachable: AbstractSet[PeerName],
                   now: float) -> ReclaimTarget | None:
        """Handle a vote message; returns a target of ours that the vote carried
        (the caller writes the reclaim, after checking the ring still matches)."""
        target = message.target
        if message.kind == RECLAIM_PROPOSE:
            why = self._judge(ring, synced, src, target, reachable)
            if why:
                answer = ReclaimMessage(RECLAIM_REFUSE, target, why)
            else:
                self.promises[(src, target.token)] = Promise(src, target, now)
                answer = ReclaimMessage(RECLAIM_ACCEPT, target)
            self.out.unicasts.append((src, answer.encode()))
        elif message.kind == RECLAIM_ABANDON:
            promise = self.promises.get((src, target.token))
            if promise is not None and promise.target == target:
                del self.promises[(src, target.token)]
        elif message.kind == RECLAIM_ACCEPT and ring is not None:
            return self._accepted(src, target, ring)
        elif message.kind == RECLAIM_REFUSE:
            proposal = self.proposals.get(target.token)
            if proposal is not None and proposal.target == target:
                proposal.refused[src] = message.reason
                if src in proposal.required:
                    self._fail(proposal, now, f"peer {format_peer_name(src)} refused: "
                                              f"{message.reason}")
        return None

    def tick(self, ring: Ring, now: float, reachable: AbstractSet[PeerName]) -> None:
        """Abandon proposals without a vote in time; let promises lapse."""
        for proposal in list(self.proposals.values()):
            if now - proposal.started >= PROPOSAL_TIMEOUT:
                refused = "; ".join(f"{format_peer_name(p)}: {why}"
                                    for p, why in sorted(proposal.refused.items())[:3])
                self._fail(proposal, now, "no majority accepted in time"
                           + (f" ({refused})" if refused else ""))
        for key, promise in list(self.promises.items()):
            if promise.proposer in reachable:
                if promise.reachable_since is None:
                    promise.reachable_since = now
            else:
                promise.reachable_since = None
            if (result_seen(ring, promise.target)
                    or now - promise.since >= PROMISE_LIMIT * self.reclaim_after
                    or (promise.reachable_since is not None
                        and now - promise.reachable_since
                        >= max(PROMISE_REACHABLE, self.reclaim_after))):
                del self.promises[key]
        for token in [t for t, at in self.retry_at.items() if now >= at]:
            del self.retry_at[token]
