"""Paxos over gossip: the knowledge CRDT, its strict codec, and agreement under any schedule."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from meshrouter.codec import pack
from meshrouter.errors import ConfigError, MalformedMessageError
from meshrouter.ipam.paxos import (
    NO_CLAIMS,
    Claims,
    Knowledge,
    NodeId,
    Paxos,
    Proposal,
    merge_claims,
)

PROPERTY = settings(deadline=None, max_examples=150)
SCHEDULES = settings(deadline=None, max_examples=300)
BASE_NAME = 0x5A0000000000


# --- the knowledge CRDT ---------------------------------------------------------------

SMALL_IDS: list[NodeId] = [(1, 1), (1, 2), (2, 1), (3, 7)]
proposals = st.builds(Proposal, st.integers(0, 3), st.sampled_from(SMALL_IDS))
values = st.sampled_from([(1,), (1, 2), (2,), ()])


@st.composite
def claims(draw: st.DrawFn) -> Claims:
    """Claims a correct node could hold: accepted <= promise, value iff accepted."""
    promise = draw(st.none() | proposals)
    accepted = draw(st.none() | proposals)
    if accepted is not None and (promise is None or promise < accepted):
        promise, accepted = accepted, promise
    return Claims(promise, accepted, None if accepted is None else draw(values))


knowledges = st.dictionaries(st.sampled_from(SMALL_IDS), claims(), max_size=4).map(Knowledge)


def merged(*parts: Knowledge) -> Knowledge:
    result = Knowledge()
    for part in parts:
        result.merge(part)
    return result


@PROPERTY
@given(knowledges, knowledges)
def test_merge_is_commutative(a: Knowledge, b: Knowledge) -> None:
    assert merged(a, b) == merged(b, a)


@PROPERTY
@given(knowledges, knowledges, knowledges)
def test_merge_is_associative(a: Knowledge, b: Knowledge, c: Knowledge) -> None:
    left = merged(a, b)
    left.merge(c)
    right = b.copy()
    right.merge(c)
    assert merged(a, right) == left


@PROPERTY
@given(knowledges, knowledges)
def test_merge_is_idempotent_and_reports_change_exactly(a: Knowledge, b: Knowledge) -> None:
    target = a.copy()
    b_before = b.copy()
    changed = target.merge(b)
    assert changed == (target != a)
    assert b == b_before, "merge never mutates its argument"
    again = target.copy()
    assert not again.merge(b)
    assert not again.merge(again.copy())
    assert again == target


@PROPERTY
@given(claims(), claims())
def test_merged_claims_keep_accepted_at_or_below_promise(a: Claims, b: Claims) -> None:
    result = merge_claims(a, b)
    assert result.accepted is None or (result.promise is not None
                                       and result.accepted <= result.promise)
    assert (result.accepted is None) == (result.value is None)


def test_merge_carries_the_value_with_the_higher_accepted_proposal() -> None:
    low, high = Proposal(1, (1, 1)), Proposal(2, (2, 1))
    old = Claims(high, low, (1,))
    new = Claims(high, high, (2,))
    assert merge_claims(old, new) == new
    assert merge_claims(new, old) is new
    tie = Claims(high, high, (3,))
    assert merge_claims(new, tie) == merge_claims(tie, new) == tie


# --- the codec --------------------------------------------------------------------------

wire_ids = st.tuples(st.sampled_from([0, 1, 2**48 - 1]), st.sampled_from([0, 5, 2**64 - 1]))
wire_proposals = st.builds(Proposal, st.sampled_from([0, 1, 2**63 - 1]), wire_ids)


@st.composite
def wire_claims(draw: st.DrawFn) -> Claims:
    promise = draw(st.none() | wire_proposals)
    accepted = draw(st.none() | wire_proposals)
    if accepted is not None and (promise is None or promise < accepted):
        promise, accepted = accepted, promise
    value = None
    if accepted is not None:
        value = tuple(draw(st.lists(st.sampled_from([0, 7, 2**48 - 1]), max_size=4)))
    return Claims(promise, accepted, value)


@PROPERTY
@given(st.dictionaries(wire_ids, wire_claims(), max_size=5).map(Knowledge))
def test_decode_inverts_encode(knowledge: Knowledge) -> None:
    assert Knowledge.decode(knowledge.encode()) == knowledge


def test_encoding_is_exact_and_sorted_by_node() -> None:
    knowledge = Knowledge({
        (2, 9): NO_CLAIMS,
        (1, 2): Claims(Proposal(3, (4, 5)), Proposal(3, (4, 5)), (6, 7)),
    })
    assert knowledge.encode() == bytes([
        0x92,
        0x95, 0x01, 0x02, 0x93, 0x03, 0x04, 0x05, 0x93, 0x03, 0x04, 0x05, 0x92, 0x06, 0x07,
        0x95, 0x02, 0x09, 0xC0, 0xC0, 0xC0,
    ])


def _decodes_or_refuses(data: bytes) -> None:
    """Refused with MalformedMessageError only; accepted knowledge is knowledge we
    can gossip on: its encoding decodes to the same knowledge."""
    try:
        knowledge = Knowledge.decode(data)
    except MalformedMessageError:
        return
    assert Knowledge.decode(knowledge.encode()) == knowledge


@PROPERTY
@given(st.binary(max_size=200))
@example(pack([[1, 2, [4, 4, 5], [3, 4, 5], [6, 7]], [2, 9, None, None, None]]))
def test_garbage_bytes_raise_only_malformed(data: bytes) -> None:
    _decodes_or_refuses(data)


wire_atoms = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
              | st.text(max_size=3) | st.binary(max_size=3))
wire_shapes = st.recursive(wire_atoms, lambda inner: st.lists(inner, max_size=6), max_leaves=30)


@settings(deadline=None, max_examples=80)
@given(st.lists(st.lists(wire_shapes, min_size=5, max_size=5) | wire_shapes, max_size=4))
@example([[1, 2, [4, 4, 5], [3, 4, 5], [6, 7]]])
def test_wrongly_typed_structures_raise_only_malformed(raw: list[Any]) -> None:
    _decodes_or_refuses(pack(raw))


GOOD_PROPOSAL = [1, 2, 3]


@pytest.mark.parametrize(
    "raw",
    [
        {},
        "knowledge",
        [[1, 2, None, None]],
        [[1, 2, None, None, None, None]],
        [[2**48, 0, None, None, None]],
        [[-1, 0, None, None, None]],
        [[True, 0, None, None, None]],
        [[1, -1, None, None, None]],
        [[1, 1.0, None, None, None]],
        [[1, 2, [2**63, 2, 3], None, None]],
        [[1, 2, [-1, 2, 3], None, None]],
        [[1, 2, [1, 2], None, None]],
        [[1, 2, [1, 2, 3, 4], None, None]],
        [[1, 2, [1, 2**48, 3], None, None]],
        [[1, 2, GOOD_PROPOSAL, None, [5]]],
        [[1, 2, GOOD_PROPOSAL, GOOD_PROPOSAL, None]],
        [[1, 2, GOOD_PROPOSAL, GOOD_PROPOSAL, [2**48]]],
        [[1, 2, GOOD_PROPOSAL, GOOD_PROPOSAL, [False]]],
        [[1, 2, GOOD_PROPOSAL, GOOD_PROPOSAL, 5]],
        [[1, 2, GOOD_PROPOSAL, [2, 2, 3], [5]]],
        [[1, 2, None, GOOD_PROPOSAL, [5]]],
        [[1, 2, None, None, None], [1, 2, None, None, None]],
        [[1, 2, GOOD_PROPOSAL, GOOD_PROPOSAL, list(range(4097))]],
        [[n, 0, None, None, None] for n in range(4097)],
    ],
    ids=lambda raw: repr(raw)[:60],
)
def test_invalid_knowledge_is_refused(raw: Any) -> None:
    with pytest.raises(MalformedMessageError):
        Knowledge.decode(pack(raw))


def test_caps_are_inclusive_at_the_limit() -> None:
    raw = [[n, 0, GOOD_PROPOSAL, GOOD_PROPOSAL, list(range(4096))] if n == 0
           else [n, 2**64 - 1, [2**63 - 1, 2**48 - 1, 0], None, None] for n in range(4096)]
    knowledge = Knowledge.decode(pack(raw))
    assert len(knowledge.claims) == 4096
    assert knowledge.claims[(0, 0)].value == tuple(range(4096))


def test_oversized_bytes_are_refused_before_decoding() -> None:
    data = Knowledge({(1, 1): NO_CLAIMS}).encode()
    with pytest.raises(MalformedMessageError):
        Knowledge.decode(data, max_size=len(data) - 1)


# --- a deterministic gossip network -----------------------------------------------------


def make_nodes(k: int, quorum: int | None = None, first_uid: int = 100) -> list[Paxos]:
    quorum = k // 2 + 1 if quorum is None else quorum
    return [Paxos((BASE_NAME + i, first_uid + i), quorum) for i in range(k)]


def deliver(src: Paxos, dst: Paxos, via_wire: bool = False) -> bool:
    """dst receives src's whole knowledge and thinks; True if dst learned or claimed anything."""
    knowledge = Knowledge.decode(src.knowledge.encode()) if via_wire else src.knowledge.copy()
    learned = dst.merge(knowledge)
    claimed = dst.think()
    return learned or claimed


def exchange_until_quiet(nodes: list[Paxos], via_wire: bool = False) -> int:
    """Everyone gossips to everyone until nothing changes; returns the rounds it took."""
    for rounds in range(1, 50):
        changed = False
        for dst in nodes:
            for src in nodes:
                if src is not dst and deliver(src, dst, via_wire):
                    changed = True
        if not changed:
            return rounds
    raise AssertionError("gossip did not settle")


def chosen_values(incarnations: list[Paxos]) -> set[tuple[int, ...]]:
    """Ground truth from every incarnation's own claims: values a quorum of names accepted."""
    acceptors: dict[Proposal, set[int]] = defaultdict(set)
    accepted_values: dict[Proposal, set[tuple[int, ...]]] = defaultdict(set)
    for node in incarnations:
        own = node.claims
        if own.accepted is not None and own.value is not None:
            acceptors[own.accepted].add(node.me[0])
            accepted_values[own.accepted].add(own.value)
    chosen: set[tuple[int, ...]] = set()
    for proposal, names in acceptors.items():
        assert len(accepted_values[proposal]) == 1, "one proposal, one value"
        if len(names) >= incarnations[0].quorum:
            chosen |= accepted_values[proposal]
    return chosen


def test_quorum_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        Paxos((1, 1), 0)


def test_single_node_with_quorum_one_decides_alone() -> None:
    node = Paxos((BASE_NAME, 1), 1)
    assert node.consensus() is None
    assert node.votes() == (0, 1)
    node.propose((BASE_NAME,))
    assert node.is_proposing()
    assert node.think()
    assert node.consensus() == (Proposal(1, (BASE_NAME, 1)), (BASE_NAME,))
    assert node.votes() == (1, 1)
    assert not node.think()


def test_three_nodes_step_by_step() -> None:
    a, b, c = make_nodes(3)
    value = (a.me[0], b.me[0], c.me[0])
    a.propose(value)
    proposal = Proposal(1, a.me)
    assert a.claims == Claims(proposal, None, None)
    assert not a.think(), "one promise is no quorum of two"
    assert a.votes() == (1, 2)

    assert deliver(a, b)
    assert b.claims == Claims(proposal, None, None)
    assert not b.is_proposing()
    assert b.consensus() is None

    assert deliver(b, a)
    assert a.claims == Claims(proposal, proposal, value)
    assert a.votes() == (2, 2)
    assert a.consensus() is None, "only the proposer has accepted so far"

    assert deliver(a, b)
    assert b.claims == Claims(proposal, proposal, value)
    assert b.consensus() == (proposal, value)

    assert deliver(b, c)
    assert c.consensus() == (proposal, value)
    assert c.claims == Claims(proposal, proposal, value)
    assert not deliver(b, c)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_one_proposer_reaches_consensus_over_the_wire(k: int) -> None:
    nodes = make_nodes(k)
    value = tuple(node.me[0] for node in nodes)
    nodes[-1].propose(value)
    nodes[-1].think()
    exchange_until_quiet(nodes, via_wire=True)
    expected = (Proposal(1, nodes[-1].me), value)
    assert [node.consensus() for node in nodes] == [expected] * k


@pytest.mark.parametrize("proposers", [2, 3])
def test_simultaneous_proposers_agree_on_the_highest_proposal(proposers: int) -> None:
    nodes = make_nodes(5)
    for index in range(proposers):
        nodes[index].propose((index,))
        nodes[index].think()
    exchange_until_quiet(nodes)
    # Equal rounds: the proposer with the highest node id wins the tie.
    winner = nodes[proposers - 1]
    assert {node.consensus() for node in nodes} == {(Proposal(1, winner.me), (proposers - 1,))}


def test_a_later_proposal_carries_the_chosen_value_forward() -> None:
    nodes = make_nodes(3)
    nodes[0].propose((1,))
    exchange_until_quiet(nodes)
    first = nodes[0].consensus()
    assert first is not None
    nodes[2].propose((2,))
    assert nodes[2].is_proposing()
    exchange_until_quiet(nodes)
    second = nodes[2].consensus()
    assert second is not None
    assert second[0] == Proposal(2, nodes[2].me) and second[1] == (1,)
    assert chosen_values(nodes) == {(1,)}


def test_a_minority_of_promisers_does_not_get_the_proposer_to_accept() -> None:
    nodes = make_nodes(5)
    nodes[0].propose((1,))
    deliver(nodes[0], nodes[1])
    deliver(nodes[1], nodes[0])
    assert nodes[0].votes() == (2, 3)
    assert nodes[0].claims.accepted is None
    deliver(nodes[0], nodes[2])
    deliver(nodes[2], nodes[0])
    assert nodes[0].votes() == (3, 3)
    assert nodes[0].claims.accepted == Proposal(1, nodes[0].me)


def test_being_overtaken_ends_proposing() -> None:
    a, b, _ = make_nodes(3)
    a.propose((1,))
    b.propose((2,))
    assert a.is_proposing()
    assert deliver(b, a)
    assert not a.is_proposing()
    assert a.claims.promise == Proposal(1, b.me)
    a.propose((1,))
    assert a.claims.promise == Proposal(2, a.me), "a new proposal outbids every round seen"


# --- restarts ---------------------------------------------------------------------------


def test_a_restarted_node_carries_no_old_promises() -> None:
    a, b, c = make_nodes(3, quorum=3)
    a.propose((1,))
    deliver(a, b)
    assert b.claims.promise == Proposal(1, a.me)

    reborn = Paxos((b.me[0], b.me[1] + 1000), 3)
    assert reborn.claims == NO_CLAIMS
    assert not reborn.is_proposing()
    assert reborn.votes() == (0, 3)
    assert reborn.knowledge.claims == {reborn.me: NO_CLAIMS}

    # It learns the old incarnation's claims by gossip, under the old id only.
    reborn.merge(b.knowledge.copy())
    assert reborn.knowledge.claims[b.me].promise == Proposal(1, a.me)
    assert reborn.knowledge.claims[reborn.me] == NO_CLAIMS
    assert reborn.think()
    assert reborn.claims.promise == Proposal(1, a.me)

    # Both incarnations promised, but they are one peer: a has 2 votes of 3, not 3.
    deliver(reborn, a)
    assert a.votes() == (2, 3)
    assert a.claims.accepted is None
    deliver(a, c)
    deliver(c, a)
    assert a.claims.accepted == Proposal(1, a.me)


def test_what_an_old_incarnation_accepted_is_carried_forward() -> None:
    a, b, c = make_nodes(3)
    a.propose((1,))
    deliver(a, b)
    deliver(b, a)
    deliver(a, b)
    assert chosen_values([a, b, c]) == {(1,)}

    reborn_b = Paxos((b.me[0], b.me[1] + 1000), 2)
    # c hears only of b's old claims, not of a's.
    c.merge(Knowledge({b.me: b.claims}))
    c.propose((3,))
    deliver(c, reborn_b)
    deliver(reborn_b, c)
    assert c.votes() == (2, 2)
    assert c.claims.value == (1,), "b's old incarnation accepted (1,) below c's proposal"
    assert chosen_values([a, b, c, reborn_b]) == {(1,)}


# --- random schedules -------------------------------------------------------------------

propose_events = st.tuples(st.just("propose"), st.integers(0, 4))
deliver_events = st.tuples(st.just("deliver"), st.integers(0, 4), st.integers(0, 4))
partition_events = st.tuples(st.just("partition"), st.frozensets(st.integers(0, 4)))
heal_events = st.tuples(st.just("heal"))
gossip_round_events = st.tuples(st.just("gossip round"))
events = st.lists(
    st.one_of(propose_events, deliver_events, deliver_events, deliver_events,
              partition_events, heal_events, gossip_round_events, gossip_round_events),
    max_size=40,
)


@SCHEDULES
@given(st.sampled_from([1, 3, 5]), events)
def test_any_schedule_is_safe_and_settles_on_one_value(k: int, schedule: list[Any]) -> None:
    nodes = make_nodes(k)
    side: set[int] = set(range(k))  # nodes on the "A" side; the rest are cut off from it
    proposed: set[tuple[int, ...]] = set()
    seen: set[tuple[int, ...]] = set()

    def check_safety() -> None:
        for node in nodes:
            decided = node.consensus()
            if decided is not None:
                seen.add(decided[1])
        seen.update(chosen_values(nodes))
        assert len(seen) <= 1, f"two values chosen: {seen}"
        assert seen <= proposed, "only a proposed value can be chosen"

    for event in schedule:
        if event[0] == "propose":
            node = nodes[event[1] % k]
            value = (event[1] % k,)
            proposed.add(value)
            node.propose(value)
            node.think()
        elif event[0] == "deliver":
            src, dst = event[1] % k, event[2] % k
            if src != dst and (src in side) == (dst in side):
                deliver(nodes[src], nodes[dst])
        elif event[0] == "gossip round":
            for dst in range(k):
                for src in range(k):
                    if src != dst and (src in side) == (dst in side):
                        deliver(nodes[src], nodes[dst])
                        check_safety()
        elif event[0] == "partition":
            side = {i % k for i in event[1]}
        else:
            side = set(range(k))
        check_safety()

    exchange_until_quiet(nodes)
    check_safety()
    if proposed:
        outcomes = {node.consensus() for node in nodes}
        assert len(outcomes) == 1 and None not in outcomes, outcomes
    else:
        assert all(node.consensus() is None for node in nodes)
    assert not any(node.think() for node in nodes)
