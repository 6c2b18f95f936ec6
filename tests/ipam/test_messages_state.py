"""The ``ipam`` unicasts (``SpaceMessage``, ``ReclaimMessage``) and gossip data
(``IpamState``): codecs and merge."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from meshrouter.codec import pack, unpack
from meshrouter.errors import ClusterMismatchError, MalformedMessageError
from meshrouter.ipam.address_range import AddressRange
from meshrouter.ipam.messages import (
    RECLAIM_KINDS,
    RECLAIM_PROPOSE,
    RECLAIM_REFUSE,
    SPACE_DENIED,
    SPACE_REQUEST,
    ReclaimMessage,
    ReclaimTarget,
    SpaceMessage,
    decode_unicast,
)
from meshrouter.ipam.paxos import Claims, Knowledge, Proposal
from meshrouter.ipam.ring import Ack, Ring
from meshrouter.ipam.state import IpamState
from meshrouter.names import PeerName

PROPERTY = settings(deadline=None, max_examples=80)
FUZZ = settings(deadline=None, max_examples=200)
STRUCTURED_FUZZ = settings(deadline=None, max_examples=100)

RANGE = AddressRange.parse("10.32.0.0/24")
NAMES = [PeerName(0x5A0000000001 + i) for i in range(4)]


def _relayable_or_refused(decode: Callable[[bytes], Any], data: bytes) -> None:
    """Refused with MalformedMessageError only; what is accepted is a message this
    router can send on: its encoding decodes to the same message."""
    try:
        message = decode(data)
    except MalformedMessageError:
        return
    assert decode(message.encode()) == message


# Accepted wire forms, written out (not made by the encoders under test), so the fuzz
# properties below always meet their accepting branch.
SPACE_WIRE = pack([SPACE_DENIED, 1, 9, "full"])
RECLAIM_WIRE = pack([RECLAIM_REFUSE, 5, 0x5A0000000001, 3, 7, "busy"])
PAXOS_STATE_WIRE = pack([None, pack([[1, 2, [4, 4, 5], [3, 4, 5], [6, 7]]])])
A, B, C, D = NAMES


# --- strategies --------------------------------------------------------------------------


def _edit(draw: st.DrawFn, ring: Ring) -> None:
    """One edit a correct peer could make: extend, donate, reclaim, or its note."""
    entries = sorted(ring.entries.values(), key=lambda e: e.token)
    entry = draw(st.sampled_from(entries))
    end = ring.range_end(entry.token)
    op = draw(st.sampled_from(["extend", "donate", "reclaim", "note"]))
    if op == "extend" and not entry.frozen:
        ring.extend(entry.token, draw(st.integers(entry.token, end)), entry.owner)
    elif op == "donate" and not entry.frozen and max(entry.reserved, entry.token + 1) < end:
        split_at = draw(st.integers(max(entry.reserved, entry.token + 1), end - 1))
        ring.donate(entry.token, split_at, draw(st.sampled_from(NAMES)), entry.owner)
    elif op == "reclaim" and not entry.frozen:
        heir = ring.heir(entry.token)
        if heir is not None:
            ring.reclaim(entry.token, heir)
    elif op == "note":
        me = draw(st.sampled_from(NAMES))
        acks = {
            e.token: Ack(e.owner, e.version, e.reserved)
            for e in entries
            if e.owner != me and draw(st.booleans())
        }
        ring.set_note(me, free=draw(st.integers(0, 300)), acks=acks)


@st.composite
def ring_replicas(draw: st.DrawFn, count: int = 2) -> list[Ring]:
    """``count`` diverged copies of one cluster's ring (a shared history, then their own)."""
    seeds = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    base = Ring.found(RANGE.start, RANGE.end, seeds)
    for _ in range(draw(st.integers(0, 4))):
        _edit(draw, base)
    replicas = []
    for _ in range(count):
        ring = base.copy()
        for _ in range(draw(st.integers(0, 4))):
            _edit(draw, ring)
        replicas.append(ring)
    return replicas


NODES = [(int(NAMES[0]), 1), (int(NAMES[1]), 1), (int(NAMES[1]), 2), (int(NAMES[2]), 7)]
proposals = st.builds(Proposal, st.integers(0, 3), st.sampled_from(NODES))


@st.composite
def claims(draw: st.DrawFn) -> Claims:
    promise = draw(st.none() | proposals)
    accepted = draw(st.none() | proposals)
    if accepted is not None and (promise is None or promise < accepted):
        promise, accepted = accepted, promise
    value = None if accepted is None else draw(st.sampled_from([(int(A),), (int(A), int(B))]))
    return Claims(promise, accepted, value)


knowledges = st.dictionaries(st.sampled_from(NODES), claims(), max_size=4).map(Knowledge)


@st.composite
def states(draw: st.DrawFn) -> IpamState:
    kind = draw(st.sampled_from(["empty", "paxos", "ring"]))
    if kind == "ring":
        return IpamState(draw(ring_replicas(1))[0])
    if kind == "paxos":
        return IpamState(None, draw(knowledges))
    return IpamState()


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.text(max_size=8)
    | st.binary(max_size=8) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=4),
    max_leaves=30,
)


def _replace_leaf(draw: Callable[[st.SearchStrategy[Any]], Any], value: Any) -> Any:
    """``value`` (a wire structure) with one randomly chosen leaf swapped for junk."""
    if isinstance(value, list) and value and draw(st.integers(0, 4)) > 0:
        i = draw(st.integers(0, len(value) - 1))
        out = list(value)
        out[i] = _replace_leaf(draw, value[i])
        return out
    return draw(msgpack_values)


# --- SpaceMessage ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", [SPACE_REQUEST, SPACE_DENIED])
def test_space_message_round_trip_exact_bytes(kind: str) -> None:
    message = SpaceMessage(kind, RANGE.start, RANGE.end)
    data = message.encode()
    assert data == pack([kind, RANGE.start, RANGE.end])
    assert SpaceMessage.decode(data) == message


@PROPERTY
@given(st.sampled_from([SPACE_REQUEST, SPACE_DENIED]), st.integers(0, (1 << 32) - 1),
       st.integers(1, 1 << 32))
def test_space_message_round_trip(kind: str, start: int, size: int) -> None:
    end = min(start + size, 1 << 32)
    message = SpaceMessage(kind, start, end)
    assert SpaceMessage.decode(message.encode()) == message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"kind": "space?"}, "ipam message: expected"),
        (["space?", 1], "ipam message: expected 3 or 4 fields"),
        (["space?", 1, 2, "why", 4], "ipam message: expected 3 or 4 fields"),
        (["denied", 1, 2, 3], "reason: expected"),
        (["denied", 1, 2, "x" * 201], "ipam message: bad reason"),
        (["denied", 1, 2, "new\nline"], "ipam message: bad reason"),
        (["gimme", 1, 2], "unknown ipam message 'gimme'"),
        ([b"space?", 1, 2], "ipam message kind: expected"),
        (["space?", "1", 2], "start: expected"),
        (["space?", 1, True], "end: expected"),
        (["space?", 5, 5], "ipam message: bad address range"),
        (["space?", 6, 5], "ipam message: bad address range"),
        (["space?", -1, 5], "ipam message: bad address range"),
        (["denied", 0, (1 << 32) + 1], "ipam message: bad address range"),
    ],
)
def test_space_message_refuses_malformed(value: Any, message: str) -> None:
    with pytest.raises(MalformedMessageError) as caught:
        SpaceMessage.decode(pack(value))
    assert str(caught.value).startswith(message)


def test_space_message_refuses_oversized() -> None:
    with pytest.raises(MalformedMessageError, match="exceeds 512"):
        SpaceMessage.decode(pack(["space?", 1, 2, "x" * 600]))


def test_a_denial_carries_its_reason_exactly() -> None:
    message = SpaceMessage(SPACE_DENIED, 1, 2, "no majority")
    assert message.encode() == pack(["denied", 1, 2, "no majority"])
    assert SpaceMessage.decode(message.encode()) == message
    long = SpaceMessage(SPACE_DENIED, 1, 2, "y" * 300)
    assert SpaceMessage.decode(long.encode()).reason == "y" * 200


@FUZZ
@given(st.binary(max_size=64))
@example(SPACE_WIRE)
def test_space_message_random_bytes_only_malformed(data: bytes) -> None:
    _relayable_or_refused(SpaceMessage.decode, data)


@STRUCTURED_FUZZ
@given(msgpack_values)
@example([SPACE_REQUEST, 0, 1 << 32])
def test_space_message_random_structures_only_malformed(value: Any) -> None:
    _relayable_or_refused(SpaceMessage.decode, pack(value))


# --- ReclaimMessage ----------------------------------------------------------------------


def test_reclaim_messages_encode_exactly() -> None:
    target = ReclaimTarget(RANGE.start + 64, A, 7, RANGE.start + 70)
    propose = ReclaimMessage(RECLAIM_PROPOSE, target)
    assert propose.encode() == pack(["reclaim?", RANGE.start + 64, A, 7, RANGE.start + 70])
    refuse = ReclaimMessage(RECLAIM_REFUSE, target, "it reaches the owner")
    assert refuse.encode() == pack(["reclaim-", RANGE.start + 64, A, 7, RANGE.start + 70,
                                    "it reaches the owner"])
    assert decode_unicast(propose.encode()) == propose
    assert decode_unicast(refuse.encode()) == refuse
    # Space messages still decode as they always did, by both decoders.
    space = SpaceMessage(SPACE_REQUEST, RANGE.start, RANGE.end)
    assert decode_unicast(space.encode()) == space == SpaceMessage.decode(space.encode())
    # A protocol-4 decoder refuses the vote (hence the protocol bump).
    with pytest.raises(MalformedMessageError, match="expected 3 or 4 fields"):
        SpaceMessage.decode(propose.encode())


@PROPERTY
@given(st.sampled_from(RECLAIM_KINDS), st.integers(0, (1 << 32) - 1), st.sampled_from(NAMES),
       st.integers(0, (1 << 62) - 1), st.integers(0, 1 << 32),
       st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=200))
def test_reclaim_message_round_trip(kind: str, token: int, owner: PeerName, version: int,
                                    above: int, reason: str) -> None:
    floor = min(token + above, 1 << 32)
    message = ReclaimMessage(kind, ReclaimTarget(token, owner, version, floor), reason)
    assert decode_unicast(message.encode()) == message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["reclaim?", 1, 2, 3], "reclaim message: expected 5 or 6 fields"),
        (["reclaim?", 8, A, 0, 7], "reclaim floor 7 out of range"),
        (["reclaim?", 1 << 32, A, 0, 1 << 32], "reclaim token"),
        (["reclaim+", 8, "A", 0, 9], "invalid peer name"),
        (["reclaim+", 8, A, -1, 9], "reclaim version -1 out of range"),
        (["reclaim-", 8, A, 0, 9, "x" * 201], "ipam message: bad reason"),
        (["reclaim0", 8, A, 0, 9, 5], "reason: expected"),
        ([], "ipam message: empty"),
    ],
)
def test_reclaim_message_refuses_malformed(value: Any, message: str) -> None:
    with pytest.raises(MalformedMessageError) as caught:
        decode_unicast(pack(value))
    assert str(caught.value).startswith(message)


@FUZZ
@given(st.binary(max_size=64))
@example(SPACE_WIRE)
@example(RECLAIM_WIRE)
def test_unicast_random_bytes_only_malformed(data: bytes) -> None:
    _relayable_or_refused(decode_unicast, data)


@STRUCTURED_FUZZ
@given(st.sampled_from(RECLAIM_KINDS), st.lists(msgpack_values, max_size=6))
@example(RECLAIM_PROPOSE, [5, 0x5A0000000001, 3, 7])
def test_reclaim_random_fields_only_malformed(kind: str, rest: list[Any]) -> None:
    _relayable_or_refused(decode_unicast, pack([kind, *rest]))


# --- IpamState codec ---------------------------------------------------------------------


def test_empty_state_encodes_exactly() -> None:
    assert IpamState().encode() == pack([None, None])
    decoded = IpamState.decode(pack([None, None]))
    assert (decoded.ring, decoded.paxos) == (None, None)


def test_ring_state_encodes_exactly_and_round_trips() -> None:
    ring = Ring.found(RANGE.start, RANGE.end, [B, A])
    state = IpamState(ring)
    assert state.encode() == pack([ring.to_wire(), None])
    decoded = IpamState.decode(state.encode())
    assert decoded.ring == ring
    assert decoded.paxos is None
    assert decoded == state


def test_a_ring_drops_the_vote() -> None:
    knowledge = Knowledge({(int(A), 1): Claims()})
    ring = Ring.found(RANGE.start, RANGE.end, [A])
    assert IpamState(ring, knowledge).paxos is None
    assert IpamState(None, knowledge).paxos is knowledge


@PROPERTY
@given(states())
def test_state_round_trip(state: IpamState) -> None:
    data = state.encode()
    decoded = IpamState.decode(data)
    assert decoded == state
    assert decoded.encode() == data
    assert decoded.ring == state.ring
    assert (decoded.paxos is None) == (state.paxos is None)
    if state.paxos is not None:
        assert decoded.paxos == state.paxos


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"ring": None}, "ipam state: expected"),
        ([None], "ipam state: expected 2 fields"),
        ([None, None, None], "ipam state: expected 2 fields"),
        ([None, "knowledge"], "paxos: expected"),
        (["ring", None], "ring: expected"),
        ([[0, 1, "x", [], [], []], None], "ring: no entry at the start of the range"),
        ([None, pack([[1, 1, None, [1, 1, 1], [1]]])],
         "paxos claims: accepted proposal above the promise"),
    ],
)
def test_state_refuses_malformed(value: Any, message: str) -> None:
    with pytest.raises(MalformedMessageError) as caught:
        IpamState.decode(pack(value))
    assert str(caught.value).startswith(message)


@FUZZ
@given(st.binary(max_size=200))
@example(pack([None, None]))
@example(PAXOS_STATE_WIRE)
def test_state_random_bytes_only_malformed(data: bytes) -> None:
    _relayable_or_refused(IpamState.decode, data)


@STRUCTURED_FUZZ
@given(st.data())
def test_state_with_one_corrupted_field_only_malformed(data: st.DataObject) -> None:
    state = data.draw(states())
    wire = unpack(state.encode())
    if wire[1] is not None:
        wire[1] = pack(_replace_leaf(data.draw, unpack(wire[1])))
    else:
        wire = _replace_leaf(data.draw, wire)
    _relayable_or_refused(IpamState.decode, pack(wire))


# --- IpamState merge ---------------------------------------------------------------------


def test_merge_returns_the_whole_state_when_changed_and_none_when_not() -> None:
    ring = Ring.found(RANGE.start, RANGE.end, [A, B])
    mine = IpamState(ring.copy())
    theirs = ring.copy()
    theirs.extend(RANGE.start, RANGE.start + 8, A)
    delta = mine.merge(IpamState(theirs))
    assert delta is not None
    assert delta.ring == theirs
    assert delta.ring is not mine.ring
    assert mine.ring == theirs
    assert mine.merge(IpamState(theirs)) is None
    assert mine.merge(IpamState(ring)) is None, "an older state changes nothing"
    assert mine.ring == theirs


def test_merge_of_the_vote() -> None:
    mine = IpamState()
    knowledge = Knowledge({(int(A), 1): Claims(Proposal(1, (int(A), 1)))})
    delta = mine.merge(IpamState(None, knowledge))
    assert delta is not None and delta.paxos == knowledge
    assert mine.paxos == knowledge and mine.paxos is not knowledge
    assert mine.merge(IpamState(None, knowledge)) is None
    more = Knowledge({(int(B), 1): Claims(Proposal(1, (int(A), 1)))})
    delta = mine.merge(IpamState(None, more))
    assert delta is not None
    assert delta.paxos is not None and set(delta.paxos.claims) == {(int(A), 1), (int(B), 1)}


def test_merge_drops_the_vote_once_a_ring_exists() -> None:
    mine = IpamState(None, Knowledge({(int(A), 1): Claims()}))
    ring = Ring.found(RANGE.start, RANGE.end, [A])
    delta = mine.merge(IpamState(ring))
    assert delta is not None
    assert delta.ring == ring and delta.paxos is None
    assert mine.ring == ring and mine.paxos is None
    # The vote of a ringless peer is ignored from now on.
    assert mine.merge(IpamState(None, Knowledge({(int(B), 1): Claims()}))) is None
    assert mine.paxos is None


def test_merge_of_another_cluster_raises() -> None:
    mine = IpamState(Ring.found(RANGE.start, RANGE.end, [A]))
    with pytest.raises(ClusterMismatchError):
        mine.merge(IpamState(Ring.found(RANGE.start, RANGE.end, [B])))


@PROPERTY
@given(st.data())
def test_merge_never_mutates_its_argument(data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        first, second = data.draw(ring_replicas(2))
        mine, theirs = IpamState(first), IpamState(second)
    else:
        mine = IpamState(None, data.draw(knowledges))
        theirs = data.draw(states())
    before = theirs.encode()
    mine.merge(theirs)
    assert theirs.encode() == before
    # Nor do later edits of the merged state reach back into the argument.
    if mine.ring is not None:
        for entry in list(mine.ring.entries.values()):
            if not entry.frozen:
                mine.ring.extend(entry.token, mine.ring.range_end(entry.token), entry.owner)
        mine.ring.set_note(A, free=12345, acks={})
    if mine.paxos is not None:
        mine.paxos.claims[(int(D), 99)] = Claims()
    assert theirs.encode() == before


@PROPERTY
@given(ring_replicas(3))
def test_ring_state_merge_is_a_crdt(rings: list[Ring]) -> None:
    a, b, c = (IpamState(r) for r in rings)

    def merged(*parts: IpamState) -> IpamState:
        out = IpamState()
        for part in parts:
            out.merge(part)
        return out

    assert merged(a, b).encode() == merged(b, a).encode()
    left = merged(merged(a, b), c)
    right = merged(a, merged(b, c))
    assert left.encode() == right.encode()
    target = merged(a, b)
    snapshot = target.encode()
    assert target.merge(b) is None
    assert target.merge(target.copy()) is None
    assert target.encode() == snapshot


@PROPERTY
@given(ring_replicas(2))
def test_merge_reports_change_exactly(rings: list[Ring]) -> None:
    mine = IpamState(rings[0])
    before = mine.encode()
    delta = mine.merge(IpamState(rings[1]))
    if delta is None:
        assert mine.encode() == before
    else:
        assert mine.encode() != before
        assert delta.encode() == mine.encode()
        assert delta.ring is not mine.ring
