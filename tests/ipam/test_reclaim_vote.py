"""A reclaim is written only once a majority accepted it over fresh round trips
(campaign seed 135, small ranges; ``meshrouter/ipam/reclaim_vote.py``).

Seed 135's schedule, cut down to the peers and steps that matter and replayed on
``IpamCore``s with the harness's detection window (messages stop at once,
reachability lags).  In the seed, 02 reclaimed the entry of 03 (down) two
seconds after a split, counting the far side as reachable; 03 came back there
with its old ring, so both sides counted 03's addresses as theirs and both held
"a majority": 02's side reclaimed the entry of 02's heir 05, which made one of
its own peers 02's heir and let 02 extend, while 05's side reclaimed 02's entry
at the floor 05 knew -- the same addresses on both sides.  Here:

1. O is down.  Just before its heir R may reclaim it, a split {Z, R} | {Y, W}
   (Y is R's heir, Z is Y's); nobody notices yet.
2. In the window R's reclaim of O comes due; counting the far side, R has a
   majority.
3. The split is noticed; O restarts on the far side with its old ring.  That
   side counts O's addresses (39 of 64) and reclaims R's entry; {Z, R}, had R
   taken O's space, would count it too (36 of 62), reclaim Y's entry, become R's
   heir and let R extend into what the far side took.

With the vote, R's proposal reaches only Z (25 of 64 addresses with R): no
reclaim in the window.  The judge is the safety property itself
(``assert_safe``) after both sides fill up; skipping the acceptance step (the
reclaim written at once, as before) fails it.
"""

from __future__ import annotations

from meshrouter.ipam.core import IpamCore
from meshrouter.ipam.founding import parse_founding
from meshrouter.ipam.messages import (
    RECLAIM_ABANDON,
    RECLAIM_ACCEPT,
    RECLAIM_PROPOSE,
    RECLAIM_REFUSE,
    ReclaimMessage,
    ReclaimTarget,
    decode_unicast,
)
from meshrouter.ipam.outbox import Outbox
from meshrouter.ipam.reclaim_vote import ReclaimVotes
from meshrouter.names import PeerName, format_peer_name
from tests.ipam.harness import CoreNet, assert_safe

BASE = 0x5D0000000000
RECLAIM_AFTER = 5.0


def peer(i: int) -> PeerName:
    return PeerName(BASE + i)


def fill(net: CoreNet, core: IpamCore, prefix: str, rounds: int = 3) -> None:
    for r in range(rounds):
        for i in range(16):
            core.allocate(f"{prefix}{r}-{i}", None, net.now)
        net.settle(2.0, dt=0.25)


def restart(net: CoreNet, name: PeerName) -> None:
    """``name`` comes back from its state file (its old ring), a new process."""
    old = net.cores[name]
    new = IpamCore(name, old.uid + 1, net.range, old.mode, reclaim_after=RECLAIM_AFTER,
                   pool=4)
    new.load(old.dump())
    new.start(net.now)
    net.cores[name] = new
    net.down.discard(name)


def test_seed_135_a_reclaim_in_the_detection_window_is_not_written() -> None:
    # Founders in name order share a /26: Z [0,12), Y [12,25), R [25,38), O [38,51),
    # W [51,64).  Each one's heir is the one before it: O's is R, R's is Y, Y's is Z.
    z, y, r, o, w = (peer(i) for i in range(1, 6))
    names = [z, y, r, o, w]
    mode = parse_founding("seed=" + ",".join(format_peer_name(n) for n in names), 0)
    net = CoreNet(names, mode, cidr="10.32.0.0/26", reclaim_after=RECLAIM_AFTER, pool=2,
                  seed=1)
    net.settle(2.0)
    # 1. O goes down; just before R may reclaim it, a split {Z, R} | {Y, W}.
    net.down.add(o)
    net.settle(RECLAIM_AFTER - 0.5, dt=0.25)
    core_r = net.cores[r]
    assert core_r.counters.reclaims == 0
    side_b = {y: 1, o: 1, w: 1}
    net.noticed = dict(net.groups)
    net.groups.update(side_b)
    # 2. The window (shorter than a heartbeat timeout): R's reclaim of O comes due.
    #    Counting the far side it has 51 of 64 addresses; it reaches 25.
    net.settle(2.0, dt=0.25)
    window = core_r.counters.reclaims
    shown = core_r.status(net.now, net.believed(r))["reclaim_votes"]
    # The vote is open: only Z, on R's side, answered (25 of 64 addresses).
    assert window or [p["accepted"] for p in shown["proposing"]] == [[format_peer_name(z)]]
    # 3. Noticed; O restarts on the far side with its old ring: that side counts
    #    O's addresses (39 of 64), and so does {Z, R} if R took them (36 of 62).
    net.noticed = None
    restart(net, o)
    net.exchange_digests()
    net.settle(3 * RECLAIM_AFTER, dt=0.25)
    far = {name for name in side_b if net.cores[name].counters.reclaims}
    assert far, "the far side (a majority with O back) reclaims R's space"
    fill(net, core_r, "r")
    fill(net, net.cores[y], "y")
    fill(net, net.cores[o], "o")
    assert_safe(net)
    assert window == 0, "R reclaimed O's entry counting the far side"


# ---------------------------------------------------------------------- votes


def _target(owner: PeerName, token: int = 8, version: int = 3, floor: int = 10) -> ReclaimTarget:
    return ReclaimTarget(token, owner, version, floor)


def test_messages_round_trip_and_space_messages_still_decode() -> None:
    for kind in (RECLAIM_PROPOSE, RECLAIM_ACCEPT):
        message = ReclaimMessage(kind, _target(peer(3)))
        assert decode_unicast(message.encode()) == message
    refusal = ReclaimMessage(RECLAIM_REFUSE, _target(peer(3)), "it reaches the owner")
    assert decode_unicast(refusal.encode()) == refusal


def test_an_acceptor_refuses_a_conflicting_reclaim_until_it_sees_the_result() -> None:
    """Promise: after accepting R's reclaim of O, a reclaim of R's entries (or of
    O's entry by someone else) is refused until the ring shows R's reclaim."""
    net = CoreNet([peer(i) for i in range(1, 5)], parse_founding(
        "seed=" + ",".join(format_peer_name(peer(i)) for i in range(1, 5)), 0),
        cidr="10.32.0.0/26", reclaim_after=RECLAIM_AFTER)
    net.settle(1.0)
    acceptor = net.cores[peer(4)]
    ring = acceptor.ring
    assert ring is not None
    r, o, s = peer(1), peer(2), peer(3)
    entry_o = next(e for e, _ in ring.owned_by(o))
    entry_r = next(e for e, _ in ring.owned_by(r))
    votes = ReclaimVotes(peer(4), RECLAIM_AFTER, Outbox())
    of_o = ReclaimTarget(entry_o.token, o, entry_o.version, ring.reclaim_floor(entry_o.token))
    of_r = ReclaimTarget(entry_r.token, r, entry_r.version, ring.reclaim_floor(entry_r.token))

    def answer(src: PeerName, target: ReclaimTarget) -> str:
        votes.on_message(ring, True, src, ReclaimMessage(RECLAIM_PROPOSE, target), set(), 0.0)
        _dst, payload = votes.out.unicasts.pop()
        return decode_unicast(payload).kind

    assert answer(r, of_o) == RECLAIM_ACCEPT
    assert answer(s, of_r) == RECLAIM_REFUSE, "a reclaim of the proposer's own entries"
    assert answer(s, of_o) == RECLAIM_REFUSE, "the same entry by another peer"
    assert answer(r, of_o) == RECLAIM_ACCEPT, "the same proposer may ask again"
    # The acknowledgement it gives as an heir stays at the promised floor.
    assert votes.promised_floor(entry_o.token) == of_o.floor
    # Once its ring shows R's reclaim, the promise is over.
    assert ring.reclaim(entry_o.token, r)
    votes.tick(ring, 1.0, set())
    assert votes.promises == {}
    assert answer(s, of_r) == RECLAIM_ACCEPT


def test_an_acceptor_refuses_what_it_knows_better() -> None:
    net = CoreNet([peer(i) for i in range(1, 5)], parse_founding(
        "seed=" + ",".join(format_peer_name(peer(i)) for i in range(1, 5)), 0),
        cidr="10.32.0.0/26", reclaim_after=RECLAIM_AFTER)
    net.settle(1.0)
    ring = net.cores[peer(4)].ring
    assert ring is not None
    o = peer(2)
    entry = next(e for e, _ in ring.owned_by(o))
    floor = ring.reclaim_floor(entry.token)
    votes = ReclaimVotes(peer(4), RECLAIM_AFTER, Outbox())

    def answer(target: ReclaimTarget, reachable: set[PeerName]) -> str:
        votes.on_message(ring, True, peer(1), ReclaimMessage(RECLAIM_PROPOSE, target),
                         reachable, 0.0)
        message = decode_unicast(votes.out.unicasts.pop()[1])
        assert isinstance(message, ReclaimMessage)
        return message.reason

    assert answer(_target(o, entry.token, entry.version, floor), {o}) == "it reaches the owner"
    assert "newer version" in answer(_target(o, entry.token, entry.version - 1, floor)
                                     if entry.version else
                                     _target(peer(3), entry.token, entry.version, floor), set())
    assert "larger reservation" in answer(
        _target(o, entry.token, entry.version, floor - 1), set())
    assert answer(_target(o, entry.token, entry.version, floor), set()) == ""


def test_a_vote_carries_with_a_majority_of_addresses_and_every_required_heir() -> None:
    """Owners of more than half the live addresses, and every peer that was the
    entry's heir while its owner was away (it may have acknowledged more just
    before it was cut off -- the residual window ``reclaim.py`` had)."""
    names = [peer(i) for i in range(1, 6)]  # a /26 in fifths: 12, 13, 13, 13, 13
    net = CoreNet(names, parse_founding(
        "seed=" + ",".join(format_peer_name(n) for n in names), 0),
        cidr="10.32.0.0/26", reclaim_after=RECLAIM_AFTER)
    net.settle(1.0)
    me, o, a, b, h = peer(1), peer(2), peer(3), peer(4), peer(5)
    ring = net.cores[me].ring
    assert ring is not None
    entry = next(e for e, _ in ring.owned_by(o))
    target = ReclaimTarget(entry.token, o, entry.version, ring.reclaim_floor(entry.token))
    votes = ReclaimVotes(me, RECLAIM_AFTER, Outbox())
    votes.propose(ring, target, {h}, {me, a, b, h}, 0.0)
    asked = {dst for dst, _ in votes.out.unicasts}
    assert asked == {a, b, h}, "every reachable owner but the owner itself"
    accept = ReclaimMessage(RECLAIM_ACCEPT, target)
    assert votes.on_message(ring, True, a, accept, set(), 0.1) is None, "25 of 64"
    assert votes.on_message(ring, True, b, accept, set(), 0.1) is None, (
        "38 of 64, but the heir H has not answered")
    assert votes.on_message(ring, True, h, accept, set(), 0.1) == target
    # Without a required heir, the address majority alone carries it.
    votes = ReclaimVotes(me, RECLAIM_AFTER, Outbox())
    votes.propose(ring, target, set(), {me, a, b, h}, 0.0)
    assert votes.on_message(ring, True, a, accept, set(), 0.1) is None
    assert votes.on_message(ring, True, b, accept, set(), 0.1) == target
    # Unanswered in time: abandoned, the acceptors released, retried later.
    votes = ReclaimVotes(me, RECLAIM_AFTER, Outbox())
    votes.propose(ring, target, set(), {me, a, b, h}, 0.0)
    votes.on_message(ring, True, a, accept, set(), 0.1)
    votes.out.unicasts.clear()
    votes.tick(ring, 2.5, set())
    assert votes.proposals == {}
    assert [(dst, decode_unicast(p).kind) for dst, p in votes.out.unicasts] == [
        (a, RECLAIM_ABANDON)]
    assert votes.blocked(entry.token, o, 3.0) and not votes.blocked(entry.token, o, 8.0)


def test_a_promise_lapses_only_after_its_proposer_was_reachable_for_the_reclaim_delay() -> None:
    """A promise outlives the detection window (the proposer still looks
    reachable for up to a heartbeat timeout after a partition, far less than
    the reclaim delay), and lapses when a proposer that is reachable for the
    whole delay never wrote its reclaim (it restarted and forgot it), or after
    ``PROMISE_LIMIT`` reclaim delays whatever happens."""
    names = [peer(i) for i in range(1, 5)]
    net = CoreNet(names, parse_founding(
        "seed=" + ",".join(format_peer_name(n) for n in names), 0),
        cidr="10.32.0.0/26", reclaim_after=60.0)
    net.settle(1.0)
    ring = net.cores[peer(4)].ring
    assert ring is not None
    r, o = peer(1), peer(2)
    entry = next(e for e, _ in ring.owned_by(o))
    target = ReclaimTarget(entry.token, o, entry.version, ring.reclaim_floor(entry.token))
    propose = ReclaimMessage(RECLAIM_PROPOSE, target)
    votes = ReclaimVotes(peer(4), 60.0, Outbox())
    votes.on_message(ring, True, r, propose, set(), 0.0)
    assert list(votes.promises) == [(r, entry.token)]
    votes.tick(ring, 1.0, {r})
    votes.tick(ring, 45.0, {r})  # longer than any heartbeat timeout, shorter than the delay
    assert votes.promises, "lapsed while the proposer merely looked reachable"
    votes.tick(ring, 62.0, {r})
    assert not votes.promises, "a reachable proposer that never wrote: the promise lapses"
    votes.on_message(ring, True, r, propose, set(), 100.0)
    votes.tick(ring, 101.0, {r})
    votes.tick(ring, 150.0, set())  # out of reach again: the clock restarts
    votes.tick(ring, 200.0, {r})
    votes.tick(ring, 250.0, {r})
    assert votes.promises
    votes.tick(ring, 700.0, set())
    assert not votes.promises, "PROMISE_LIMIT reclaim delays"
