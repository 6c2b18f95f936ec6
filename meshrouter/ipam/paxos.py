"""Theory of operation: single-decree Paxos over gossip, to found the IP allocation ring.

The peers that start an empty allocation ring must agree on exactly one value:
the sorted tuple of peer names that will share the address range.  If two peers
founded two different rings they would hand out the same addresses twice, so
this is a consensus problem, solved as in Weave Net's ``ipam/paxos``.

There are no request/response messages.  Every node keeps a ``Knowledge``: for
each node it has heard of, that node's ``Claims`` (the highest proposal it
promised, the proposal it accepted and the value it accepted under it).  Nodes
gossip their whole knowledge; a receiver merges it (a CRDT: per node, the
higher promise and the higher accepted proposal win, so merge is commutative,
associative and idempotent and gossip may be lost, duplicated or reordered)
and then ``think()``s, which only ever changes the node's *own* claims:

1. Promise: adopt the highest proposal anyone has promised.  This plays the
   part of Paxos phase 1b: by raising its promise to P a node promises never
   to accept anything below P, and its claims, gossiped with the promise,
   report what it had accepted so far.
2. Accept: if our promise is P and P's proposer has accepted a value under P,
   accept that same value under P (phase 2b).
3. Propose: if our promise is our own proposal P and a quorum of peers have
   promised P, choose the value (phase 2a): the value of the highest proposal
   any of those peers accepted, or our own candidate if they accepted nothing.
   The proposer accepts it first; that acceptance is the "accept request" the
   others see in rule 2.

Why it is safe (at most one value is ever chosen, i.e. accepted by a quorum):

* Claims are monotone.  A node's promise and accepted proposal only ever grow,
  and it never accepts below its promise.  So any gossiped snapshot of a node
  that shows ``promise == P`` also shows everything it accepted before it
  promised P (its accepted may since have become P, never anything else), and
  merging two snapshots of one node gives the later one.
* Quorums intersect.  Suppose value v was chosen under P0 and P > P0 is the
  next proposal whose proposer gathers a quorum of promises.  Some peer is in
  both quorums; it accepted P0 before promising P (after promising P it would
  have refused P0), so the proposer sees an accepted proposal >= P0.
* Values are carried forward.  The proposer picks the value of the highest
  accepted proposal below P that it sees; by induction over proposals every
  accepted proposal in [P0, P) carries v, so P carries v too.  A proposer picks
  its value once per proposal and never changes it, so all acceptances of one
  proposal carry one value.

A node is identified by ``(peer name, process uid)``.  Promises live only in
memory, so a restarted peer comes back under a new uid with no promises rather
than pretending to remember some.  Quorums are therefore counted in distinct
*peer names*, so that the old and the new incarnation of one peer never vote
twice, and when choosing a value the proposer also looks at what the older
incarnations of its promisers accepted.  What remains is Paxos' usual
requirement of stable storage: a peer that restarts and promises before the
claims of its previous incarnation have reached the proposer can, in theory,
let a second value be chosen.  The shell keeps that window small by merging
its peers' knowledge before it proposes or thinks.

Liveness needs what Paxos always needs: eventually one proposer that is not
overtaken.  Competing proposers may pre-empt each other; the shell retries
``propose`` after a randomised delay while ``consensus()`` is still None.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from meshrouter.codec import DEFAULT_MAX_SIZE, expect, pack, unpack
from meshrouter.errors import ConfigError, MalformedMessageError
from meshrouter.names import check_peer_name

NodeId = tuple[int, int]
"""(peer name, process uid): a restarted process is a new node with no promises."""

Value = tuple[int, ...]
"""What is agreed on: the sorted peer names that found the ring."""

MAX_NODES = 4096
MAX_VALUE_NAMES = 4096
UID_LIMIT = 1 << 64
ROUND_LIMIT = 1 << 63


@dataclass(frozen=True, order=True, slots=True)
class Proposal:
    """A proposal number; ordered by round, then proposer, so no two proposers tie."""

    round: int
    proposer: NodeId


@dataclass(frozen=True, slots=True)
class Claims:
    """What one node has claimed; every field only ever grows at that node."""

    promise: Proposal | None = None
    accepted: Proposal | None = None
    value: Value | None = None


NO_CLAIMS = Claims()


def _precedes(a: Proposal | None, b: Proposal | None) -> bool:
    """``a < b`` with None (nothing promised or accepted) below every proposal."""
    if b is None:
        return False
    return a is None or a < b


def _higher(a: Proposal | None, b: Proposal | None) -> Proposal | None:
    return b if _precedes(a, b) else a


def _larger_value(a: Value | None, b: Value | None) -> Value | None:
    """Deterministic tie-break so merge stays commutative even on inconsistent input."""
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def merge_claims(mine: Claims, theirs: Claims) -> Claims:
    """Combine two snapshots of one node's claims; returns ``mine`` itself if nothing won.

    Because a node's claims are monotone, the per-field maximum of two of its
    snapshots is simply the later snapshot.  The value travels with the accepted
    proposal it was accepted under.
    """
    promise = _higher(mine.promise, theirs.promise)
    if _precedes(mine.accepted, theirs.accepted):
        accepted, value = theirs.accepted, theirs.value
    elif _precedes(theirs.accepted, mine.accepted):
        accepted, value = mine.accepted, mine.value
    else:
        accepted, value = mine.accepted, _larger_value(mine.value, theirs.value)
    if promise == mine.promise and accepted == mine.accepted and value == mine.value:
        return mine
    return Claims(promise, accepted, value)


@dataclass(slots=True)
class Knowledge:
    """The gossiped CRDT: every known node's claims."""

    claims: dict[NodeId, Claims] = field(default_factory=dict)

    def merge(self, other: Knowledge) -> bool:
        """Merge ``other`` into self in place (never mutating it); True if anything changed."""
        changed = False
        mine = self.claims
        for node, theirs in list(other.claims.items()):
            current = mine.get(node)
            if current is None:
                mine[node] = theirs
                changed = True
                continue
            merged = merge_claims(current, theirs)
            if merged is not current:
                mine[node] = merged
                changed = True
        return changed

    def copy(self) -> Knowledge:
        """An independent copy (Claims are immutable, so sharing them is safe)."""
        return Knowledge(dict(self.claims))

    def highest_round(self) -> int:
        """The highest round anyone has promised or accepted (0 if none)."""
        highest = 0
        for claims in self.claims.values():
            for proposal in (claims.promise, claims.accepted):
                if proposal is not None and proposal.round > highest:
                    highest = proposal.round
        return highest

    def encode(self) -> bytes:
        """msgpack list of ``[name, uid, promise, accepted, value]``, sorted by node id.

        A proposal is ``[round, name, uid]`` or nil; sorting makes equal
        knowledge encode to equal bytes.
        """
        return pack([_claims_to_wire(node, self.claims[node]) for node in sorted(self.claims)])

    @classmethod
    def decode(cls, data: bytes, max_size: int = DEFAULT_MAX_SIZE) -> Knowledge:
        """Decode untrusted bytes; raises only ``MalformedMessageError``."""
        raw = expect(unpack(data, max_size=max_size), list, "paxos knowledge")
        if len(raw) > MAX_NODES:
            raise MalformedMessageError(
                f"paxos knowledge has {len(raw)} nodes, more than {MAX_NODES}"
            )
        claims: dict[NodeId, Claims] = {}
        for item in raw:
            node, node_claims = _claims_from_wire(item)
            if node in claims:
                raise MalformedMessageError(
                    f"paxos knowledge repeats node {node[0]:012x}/{node[1]}"
                )
            claims[node] = node_claims
        return cls(claims)


def _proposal_to_wire(proposal: Proposal | None) -> list[int] | None:
    if proposal is None:
        return None
    return [proposal.round, proposal.proposer[0], proposal.proposer[1]]


def _claims_to_wire(node: NodeId, claims: Claims) -> list[Any]:
    return [
        node[0],
        node[1],
        _proposal_to_wire(claims.promise),
        _proposal_to_wire(claims.accepted),
        None if claims.value is None else list(claims.value),
    ]


def _bounded(value: Any, limit: int, what: str) -> int:
    number: int = expect(value, int, what)
    if not 0 <= number < limit:
        raise MalformedMessageError(f"{what} {number} out of range [0, {limit})")
    return number


def _node_from_wire(name: Any, uid: Any) -> NodeId:
    return (int(check_peer_name(name)), _bounded(uid, UID_LIMIT, "paxos node uid"))


def _proposal_from_wire(raw: Any, what: str) -> Proposal | None:
    if raw is None:
        return None
    fields = expect(raw, list, what)
    if len(fields) != 3:
        raise MalformedMessageError(f"{what} has {len(fields)} fields, expected 3")
    return Proposal(_bounded(fields[0], ROUND_LIMIT, f"{what} round"),
                    _node_from_wire(fields[1], fields[2]))


def _value_from_wire(raw: Any) -> Value | None:
    if raw is None:
        return None
    names = expect(raw, list, "paxos value")
    if len(names) > MAX_VALUE_NAMES:
        raise MalformedMessageError(
            f"paxos value has {len(names)} names, more than {MAX_VALUE_NAMES}"
        )
    return tuple(int(check_peer_name(name)) for name in names)


def _claims_from_wire(raw: Any) -> tuple[NodeId, Claims]:
    fields = expect(raw, list, "paxos claims")
    if len(fields) != 5:
        raise MalformedMessageError(f"paxos claims have {len(fields)} fields, expected 5")
    node = _node_from_wire(fields[0], fields[1])
    promise = _proposal_from_wire(fields[2], "paxos promise")
    accepted = _proposal_from_wire(fields[3], "paxos accepted proposal")
    value = _value_from_wire(fields[4])
    if (accepted is None) != (value is None):
        raise MalformedMessageError("paxos claims: a value needs an accepted proposal and back")
    # A correct node never accepts above its promise; refusing such claims keeps
    # the invariant that the proposer relies on when it reads promisers' claims.
    if _precedes(promise, accepted):
        raise MalformedMessageError("paxos claims: accepted proposal above the promise")
    return node, Claims(promise, accepted, value)


class Paxos:
    """One participant: acceptor always, proposer after ``propose``.

    Sans-IO: the shell gossips ``knowledge`` whenever ``think()`` returns True,
    feeds received knowledge to ``merge`` and then calls ``think()``.
    """

    __slots__ = ("_candidate", "knowledge", "me", "quorum")

    def __init__(self, me: NodeId, quorum: int) -> None:
        if quorum < 1:
            raise ConfigError(f"paxos quorum must be at least 1, not {quorum}")
        self.me = me
        self.quorum = quorum
        # Our own (empty) entry is present from the start so peers learn we exist.
        self.knowledge = Knowledge({me: NO_CLAIMS})
        self._candidate: Value | None = None

    @property
    def claims(self) -> Claims:
        """Our own claims as they stand in our knowledge."""
        return self.knowledge.claims.get(self.me, NO_CLAIMS)

    def _set_claims(self, claims: Claims) -> None:
        self.knowledge.claims[self.me] = claims

    def propose(self, value: tuple[int, ...]) -> None:
        """Start a proposal above every round seen, promising it ourselves.

        ``value`` is only a candidate: if any promiser turns out to have
        accepted something, that value is carried forward instead.  Call
        ``think()`` (and gossip) afterwards, as after any change.
        """
        proposal = Proposal(self.knowledge.highest_round() + 1, self.me)
        self._candidate = tuple(value)
        self._set_claims(replace(self.claims, promise=proposal))

    def merge(self, other: Knowledge) -> bool:
        """Merge received gossip; True if our knowledge changed."""
        return self.knowledge.merge(other)

    def think(self) -> bool:
        """Apply the three rules until nothing changes; True if OUR claims changed.

        Only our own claims are ever modified, so a True result is exactly
        when the caller has something new to gossip.
        """
        before = self.claims
        while self._think_once():
            pass
        return self.claims != before

    def _think_once(self) -> bool:
        ours = self.claims
        highest = ours.promise
        for claims in self.knowledge.claims.values():
            highest = _higher(_higher(highest, claims.promise), claims.accepted)
        if highest != ours.promise:
            self._set_claims(replace(ours, promise=highest))
            return True
        promise = ours.promise
        if promise is None or ours.accepted == promise:
            return False
        if promise.proposer == self.me:
            chosen = self._value_to_propose(promise)
            if chosen is not None:
                self._set_claims(Claims(promise, promise, chosen))
                return True
            return False
        proposer = self.knowledge.claims.get(promise.proposer)
        if proposer is not None and proposer.accepted == promise and proposer.value is not None:
            self._set_claims(Claims(promise, promise, proposer.value))
            return True
        return False

    def _supporters(self, proposal: Proposal) -> set[int]:
        """Peer names with some incarnation that promised or accepted ``proposal``."""
        return {
            node[0]
            for node, claims in self.knowledge.claims.items()
            if claims.promise == proposal or claims.accepted == proposal
        }

    def _value_to_propose(self, proposal: Proposal) -> Value | None:
        """Our value for ``proposal`` once a quorum promised it, else None.

        The value of the highest proposal below ``proposal`` that any
        incarnation of a promiser accepted, or our candidate if none did.
        """
        supporters = self._supporters(proposal)
        if len(supporters) < self.quorum:
            return None
        best: Proposal | None = None
        best_value: Value | None = None
        for node, claims in self.knowledge.claims.items():
            accepted = claims.accepted
            if node[0] not in supporters or accepted is None or not accepted < proposal:
                continue
            if _precedes(best, accepted):
                best, best_value = accepted, claims.value
            elif accepted == best:
                best_value = _larger_value(best_value, claims.value)
        return best_value if best_value is not None else self._candidate

    def consensus(self) -> tuple[Proposal, tuple[int, ...]] | None:
        """The chosen (proposal, value) as far as we know, or None.

        Chosen means a quorum of peer names accepted the same proposal.  If we
        see several (all carrying the same value, by safety) the highest wins.
        """
        acceptors: dict[Proposal, set[int]] = {}
        values: dict[Proposal, Value] = {}
        for node, claims in self.knowledge.claims.items():
            if claims.accepted is None or claims.value is None:
                continue
            acceptors.setdefault(claims.accepted, set()).add(node[0])
            values[claims.accepted] = max(values.get(claims.accepted, claims.value), claims.value)
        decided = [p for p, names in acceptors.items() if len(names) >= self.quorum]
        if not decided:
            return None
        best = max(decided)
        return best, values[best]

    def votes(self) -> tuple[int, int]:
        """(peers that promised or accepted our current promise, quorum), for status."""
        promise = self.claims.promise
        if promise is None:
            return 0, self.quorum
        return len(self._supporters(promise)), self.quorum

    def is_proposing(self) -> bool:
        """True while our promise is our own proposal."""
        promise = self.claims.promise
        return promise is not None and promise.proposer == self.me
