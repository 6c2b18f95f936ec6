"""Per-link topology deltas: building, applying, wire form, merge laws, and what
a Topology sends and accepts.

The oracle for "the delta leads to the right record" is always the owner's own
record at that version, built by the owner (``Topology.set_local_connections``)
or written out in the test -- never ``apply_delta`` itself.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.codec import pack, unpack
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName
from meshrouter.topology.deltas import (
    RecordDelta,
    apply_delta,
    delta_from_wire,
    delta_to_wire,
    dominates,
    make_delta,
    record_check,
)
from meshrouter.topology.peer_map import PeerMap
from meshrouter.topology.records import PeerRecord, record_to_wire
from meshrouter.topology.topology import Topology
from tests.conftest import assert_merge_laws, assert_reencodes, decoded_or_none

from .builders import conn, record

PROPERTY = settings(max_examples=60, deadline=None)


def owner(name: int = 1, uid: int = 100) -> Topology:
    return Topology(local_name=PeerName(name), nickname=f"host{name}", uid=uid,
                    listen_port=6783, rng=random.Random(name), short_id=name)


def history(changes: list[set[int]]) -> list[PeerRecord]:
    """Records of peer 1 after each change: ``changes[i]`` are the peers whose
    link is toggled (added if absent, removed if present) at step ``i``."""
    topo = owner()
    links: set[int] = set()
    versions = [topo.local_record]
    for toggled in changes:
        links ^= toggled
        topo.set_local_connections([conn(p) for p in links])
        versions.append(topo.local_record)
    return versions


link_toggles = st.lists(st.sets(st.integers(2, 40), min_size=1, max_size=3), min_size=1,
                        max_size=12)


# -- building and applying -------------------------------------------------------------------


@PROPERTY
@given(link_toggles, st.data())
def test_a_delta_from_any_version_it_covers_leads_to_the_owners_record(
        changes: list[set[int]], data: st.DataObject) -> None:
    versions = history(changes)
    latest = versions[-1]
    since = data.draw(st.integers(0, len(versions) - 2))
    delta = make_delta(latest, versions[since].version)
    if delta is None:
        return  # the log does not reach back that far, or the delta is not worth it
    assert delta.base <= versions[since].version < delta.version == latest.version
    # Every holder of a version in [base, latest) gets exactly the owner's record.
    for held in versions:
        if delta.base <= held.version < delta.version:
            assert apply_delta(held, delta) == latest
        else:
            assert apply_delta(held, delta) is None


def test_one_new_link_in_a_big_record_is_one_link_on_the_wire() -> None:
    topo = owner()
    topo.set_local_connections([conn(p) for p in range(2, 202)])
    before = topo.local_record
    topo.set_local_connections([conn(p) for p in range(2, 203)])
    delta = make_delta(topo.local_record, before.version)
    assert delta is not None
    assert delta.changed == (conn(202),) and delta.removed == () and delta.header is None
    assert (delta.base, delta.version) == (before.version, before.version + 1)
    update = topo.own_update_since(before.version)
    assert update.records == {} and update.delta_list() == [delta]
    # The whole record is ~200 links; the delta about one (written out: the
    # ten fields with the one connection).
    expected = pack([[1, 100, before.version, before.version + 1, None, None, None,
                      [[202, conn(202).address, True, True]], [], record_check(
                          topo.local_record)]])
    assert update.encode() == expected
    assert len(expected) * 50 < len(PeerMap.of(topo.local_record).encode())


def test_the_log_reaches_back_across_a_burst_of_changes_by_merging_old_steps() -> None:
    # A peer joining a full mesh changes its record once per new link, many
    # times between two of its broadcasts: the delta since its last broadcast
    # must still be a delta, not the whole record.
    topo = owner()
    links = [conn(p) for p in range(2, 42)]
    topo.set_local_connections(links)
    before = topo.local_record
    for p in range(42, 54):  # twelve more links, one change each
        links.append(conn(p))
        topo.set_local_connections(links)
    latest = topo.local_record
    assert latest.version == before.version + 12
    delta = make_delta(latest, before.version)
    assert delta is not None
    assert delta.changed == tuple(conn(p) for p in range(42, 54)) and delta.removed == ()
    assert apply_delta(before, delta) == latest


def test_merging_old_steps_keeps_the_newest_exact() -> None:
    # Every peer that gains one link broadcasts a delta since its previous
    # version: that must stay one link, however long the record's history.
    topo = owner()
    links = [conn(p) for p in range(2, 12)]
    topo.set_local_connections(links)
    for p in range(12, 40):
        before = topo.local_record
        links.append(conn(p))
        topo.set_local_connections(links)
        delta = make_delta(topo.local_record, before.version)
        assert delta is not None and delta.changed == (conn(p),), p


def test_a_removed_link_and_a_header_change_travel_in_the_delta() -> None:
    topo = owner()
    others = [conn(p) for p in range(10, 16)]
    topo.set_local_connections([conn(2), conn(3), conn(4), *others])
    base = topo.local_record
    topo.set_local_connections([conn(2), conn(4, established=False), *others])
    topo.set_listen_port(7000)
    latest = topo.local_record
    delta = make_delta(latest, base.version)
    assert delta is not None
    assert delta.removed == (3,)
    assert delta.changed == (conn(4, established=False),)
    assert delta.header == ("host1", 1, 7000)
    assert apply_delta(base, delta) == latest


def test_a_base_with_other_content_is_refused_by_the_check() -> None:
    versions = history([{2}, {3}])
    delta = make_delta(versions[2], versions[1].version)
    assert delta is not None
    impostor = replace(versions[1], nickname="someone else")  # same name, UID and version
    assert apply_delta(impostor, delta) is None
    other_incarnation = replace(versions[1], uid=101)
    assert apply_delta(other_incarnation, delta) is None
    assert apply_delta(versions[1], replace(delta, check=delta.check ^ 1)) is None


def test_no_delta_when_the_log_does_not_reach_or_the_delta_is_too_big() -> None:
    versions = history([{p} for p in range(2, 30)])
    latest = versions[-1]
    assert make_delta(latest, 0) is None  # older than the log
    assert make_delta(latest, latest.version) is None  # nothing to send
    received = record(1, version=latest.version, uid=100, short_id=1,
                      connections=latest.connections, nickname="host1")
    assert received == latest
    assert make_delta(received, latest.version - 1) is None  # a decoded copy: no log
    # Every link the record has changed: the whole record is no bigger.
    replaced = history([{2, 3}, {2, 3, 4, 5}])
    assert make_delta(replaced[-1], replaced[1].version) is None
    # Three of four links changed is still a delta: its receivers hold the base
    # (a digest showed it, or our last broadcast brought it), and a joiner's
    # record, which mostly grows by more than half between two broadcasts, went
    # whole to every peer several times.
    grown = history([{2}, {3, 4, 5}])
    delta = make_delta(grown[-1], grown[1].version)
    assert delta is not None and [c.peer for c in delta.changed] == [3, 4, 5]


def test_re_issuing_above_a_competing_copy_clears_the_log() -> None:
    topo = owner()
    topo.set_local_connections([conn(2)])
    topo.set_local_connections([conn(2), conn(3)])
    before = topo.local_record
    rival = replace(before, version=before.version + 5, nickname="old incarnation")
    topo.apply(PeerMap.of(rival), random.Random(0))
    ours = topo.local_record
    assert ours.version == rival.version + 1
    assert make_delta(ours, before.version) is None
    assert topo.own_update_since(before.version) == PeerMap.of(ours)


# -- wire form -------------------------------------------------------------------------------


def sample_delta() -> RecordDelta:
    versions = history([{2, 3, 5, 6, 7, 8}, {4}, {3}])
    delta = make_delta(versions[-1], versions[1].version)
    assert delta is not None
    return delta


def test_delta_wire_roundtrip_and_records_keep_their_old_bytes() -> None:
    delta = sample_delta()
    assert delta_from_wire(unpack(pack(delta_to_wire(delta)))) == delta
    two, three = record(2, connections=[conn(3)]), record(3, connections=[conn(2)])
    # Without deltas, a map is the plain array of whole records it always was.
    assert PeerMap.of(two, three).encode() == pack([record_to_wire(two), record_to_wire(three)])
    mixed = PeerMap.of_deltas(delta, records={two.name: two})
    assert PeerMap.decode(mixed.encode()) == mixed


@pytest.mark.parametrize(
    ("index", "value", "message"),
    [
        (2, 9, "not below"),                 # base >= version
        (4, None, "partly present"),         # header half there (short_id set below)
        (7, [[3, "a", True, True], [2, "b", True, True]], "sorted"),
        (7, [[1, "a", True, True]], "itself"),
        (8, [5, 4], "sorted distinct"),
        (8, [1], "its owner"),
        (8, [2], "both changes and removes"),
        (9, 1 << 64, "outside"),
        (1, -1, "outside"),
    ],
)
def test_non_canonical_or_invalid_deltas_are_refused(index: int, value: Any,
                                                     message: str) -> None:
    wire: list[Any] = [1, 100, 3, 5, None, None, None, [[2, "10.0.0.2:6783", True, True]],
                       [4], 7]
    if index == 4:
        wire[5] = 3  # a short ID without nickname and port
    wire[index] = value
    with pytest.raises(MalformedMessageError, match=message):
        delta_from_wire(wire)


@PROPERTY
@given(st.lists(st.none() | st.booleans() | st.integers(-2, 2**64 - 1) | st.text(max_size=3)
                | st.lists(st.integers(0, 9), max_size=3), min_size=10, max_size=10))
def test_arbitrary_ten_field_items_are_refused_or_reencode(fields: list[Any]) -> None:
    decoded = decoded_or_none(PeerMap.decode, pack([fields]))
    if decoded is not None:
        assert_reencodes(PeerMap.decode, PeerMap.encode, decoded)


# -- merge laws ------------------------------------------------------------------------------


@st.composite
def maps_with_deltas(draw: st.DrawFn) -> PeerMap:
    """Records and deltas of two peers (names 1 and 2) with small version ranges,
    so that containment, ties and records reaching deltas all occur."""
    records: dict[PeerName, PeerRecord] = {}
    deltas: list[RecordDelta] = []
    for name in draw(st.sets(st.sampled_from([1, 2]))):
        if draw(st.booleans()):
            records[PeerName(name)] = record(
                name, version=draw(st.integers(1, 5)), uid=draw(st.sampled_from([7, 8])))
        for _ in range(draw(st.integers(0, 3))):
            base = draw(st.integers(0, 4))
            deltas.append(RecordDelta(
                name=PeerName(name), uid=draw(st.sampled_from([7, 8])), base=base,
                version=draw(st.integers(base + 1, 5)), header=None,
                changed=(conn(draw(st.sampled_from([3, 4]))),), removed=(),
                check=draw(st.integers(0, 2))))
    return PeerMap.of_deltas(*deltas, records=records)


@PROPERTY
@given(maps_with_deltas(), maps_with_deltas(), maps_with_deltas())
def test_merge_with_deltas_keeps_the_crdt_laws(a: PeerMap, b: PeerMap, c: PeerMap) -> None:
    assert_merge_laws(a, b, c)


@PROPERTY
@given(maps_with_deltas(), maps_with_deltas())
def test_merge_keeps_exactly_the_undominated_deltas(a: PeerMap, b: PeerMap) -> None:
    """Written out: a delta survives iff no record reaches it and no other delta
    serves all its receivers at least as far (equal ranges: greater bytes win)."""
    result = a.copy()
    result.merge(b)
    every = {d for m in (a, b) for held in m.deltas.values() for d in held}
    for delta in every:
        held = result.records.get(delta.name)
        reached = held is not None and (held.version, held.uid) >= (delta.version, delta.uid)
        covered = any(
            o.uid == delta.uid and o.base <= delta.base and o.version >= delta.version
            and ((o.base, o.version) != (delta.base, delta.version)
                 or pack(delta_to_wire(o)) > pack(delta_to_wire(delta)))
            for o in every if o != delta and o.name == delta.name)
        assert (delta in result.deltas.get(delta.name, frozenset())) == (
            not reached and not covered)


def test_dominates_is_a_strict_order_on_examples() -> None:
    d = sample_delta()
    wider = replace(d, base=d.base - 1)
    assert dominates(wider, d) and not dominates(d, wider)
    assert not dominates(d, d)
    assert not dominates(replace(d, uid=d.uid + 1), d)


# -- Topology: applying, refusing, repairing -------------------------------------------------


FAR = [conn(p) for p in range(20, 30)]  # links to peers the receiver never hears of


def peer_of(topo: Topology) -> Topology:
    """A second router (name 9) that holds ``topo``'s current records."""
    other = owner(9, uid=900)
    other.set_local_connections([conn(1)])
    other.apply(topo.peer_map, random.Random(0))
    return other


def test_a_broadcast_delta_moves_the_receivers_copy_forward() -> None:
    topo = owner()
    topo.set_local_connections([conn(9), *FAR])
    receiver = peer_of(topo)
    sent_at = topo.local_record.version
    topo.set_local_connections([conn(9), conn(5), *FAR])
    topo.set_local_connections([conn(9), conn(5), conn(6), *FAR])
    update = topo.own_update_since(sent_at)
    assert update.records == {} and len(update.delta_list()) == 1
    version = receiver.version
    changed = receiver.apply(PeerMap.decode(update.encode()), random.Random(0))
    assert receiver.record(PeerName(1)) == topo.local_record
    assert changed == PeerMap.of(topo.local_record)
    assert receiver.version == version + 1 and receiver.deltas_applied == 1
    # Again: nothing new, nothing counted.
    assert receiver.apply(update, random.Random(0)) is None
    assert receiver.version == version + 1 and receiver.deltas_unusable == 0


def test_a_delta_without_its_base_is_counted_and_repaired_by_digest() -> None:
    topo = owner()
    topo.set_local_connections([conn(9), *FAR])
    receiver = peer_of(topo)
    held = receiver.record(PeerName(1))
    topo.set_local_connections([conn(9), conn(5), *FAR])
    skipped_to = topo.local_record.version
    topo.set_local_connections([conn(9), conn(5), conn(6), *FAR])
    update = topo.own_update_since(skipped_to)  # the receiver missed the broadcast before
    version = receiver.version
    assert receiver.apply(update, random.Random(0)) is None
    assert receiver.record(PeerName(1)) == held
    assert receiver.deltas_unusable == 1
    assert receiver.version == version + 1  # so that the shell runs a repair round
    # The repair: the owner answers the receiver's digest with a delta from the
    # version the receiver holds, which it can apply.
    answer = topo.newer_than(receiver.full_digest())
    assert answer is not None and answer.records == {}
    (delta,) = answer.delta_list()
    assert delta.base <= held.version if held is not None else False
    receiver.apply(answer, random.Random(0))
    assert receiver.record(PeerName(1)) == topo.local_record


def test_digest_answers_are_whole_records_where_the_base_is_missing() -> None:
    topo = owner()
    topo.set_local_connections([conn(9)])
    stranger = owner(9, uid=900)
    answer = topo.newer_than(stranger.full_digest())
    assert answer is not None
    assert answer.records == {PeerName(1): topo.local_record} and answer.deltas == {}
    # Another incarnation of ours held: whole as well.
    stranger.apply(PeerMap.of(replace(topo.local_record, uid=99, version=1)), random.Random(0))
    again = topo.newer_than(stranger.full_digest())
    assert again is not None and PeerName(1) in again.records


def test_a_delta_of_our_own_name_that_would_win_makes_us_reissue() -> None:
    topo = owner()
    topo.set_local_connections(FAR)
    topo.set_local_connections([conn(2), *FAR])
    ours = topo.local_record
    echo = make_delta(ours, ours.version - 1)
    assert echo is not None
    assert topo.apply(PeerMap.of_deltas(echo), random.Random(0)) is None  # our own, echoed
    assert topo.local_record is ours
    rival = replace(echo, version=ours.version + 3, check=0)
    topo.apply(PeerMap.of_deltas(rival), random.Random(0))
    assert topo.local_record.version == ours.version + 4


@PROPERTY
@given(st.data())
def test_routers_exchanging_deltas_in_any_order_with_losses_converge_after_repair(
        data: st.DataObject) -> None:
    """Every node keeps a link to node 1 (so all stay reachable) and toggles others;
    each change is broadcast as ``own_update_since(last sent)`` to every other
    node, delivered in a drawn order, some lost.  Then digest answers (deltas or
    whole records) are exchanged until nothing changes: every node must hold
    exactly each owner's own record."""
    names = list(range(1, data.draw(st.integers(3, 6)) + 1))
    nodes = {n: owner(n, uid=n * 10) for n in names}
    links = {n: {1} - {n} for n in names}
    links[1] = set(names) - {1}
    sent = {n: 0 for n in names}
    queue: list[tuple[int, bytes]] = []

    def change(node: int) -> None:
        # FAR links (to peers nobody hears of) make deltas worth sending.
        nodes[node].set_local_connections([conn(p) for p in links[node]] + FAR)
        update = nodes[node].own_update_since(sent[node])
        sent[node] = nodes[node].local_record.version
        queue.extend((dst, update.encode()) for dst in names if dst != node)

    for node in names:
        change(node)
    for _ in range(data.draw(st.integers(0, 12))):
        node = data.draw(st.sampled_from(names[1:]))
        peer = data.draw(st.sampled_from([p for p in names[1:] if p != node] or [1]))
        if peer != 1:
            links[node] ^= {peer}
            change(node)
        while queue and data.draw(st.booleans()):
            dst, payload = queue.pop(data.draw(st.integers(0, len(queue) - 1)))
            if not data.draw(st.booleans()):  # lost
                continue
            nodes[dst].apply(PeerMap.decode(payload), random.Random(0))
    for _ in range(len(names) + 2):  # anti-entropy rounds: every pair, both ways
        for a in names:
            for b in names:
                answer = nodes[a].newer_than(nodes[b].full_digest()) if a != b else None
                if answer is not None:
                    nodes[b].apply(PeerMap.decode(answer.encode()), random.Random(0))
    for node in nodes.values():
        assert node.records() == [nodes[n].local_record for n in names]


def test_the_next_broadcast_is_an_exact_delta_however_many_changes_came_since() -> None:
    # A joiner of a full mesh: its record gains a link per new connection,
    # dozens between two broadcasts.  The version the next broadcast starts
    # from stays a step boundary, so the broadcast carries exactly the links
    # added since (not a whole record), and so does an answer to a neighbour
    # that holds the last broadcast version.
    topo = owner()
    links = [conn(p) for p in range(2, 30)]
    topo.set_local_connections(links)
    for burst in (range(30, 45), range(45, 75)):
        base = topo.local_record.version
        topo.own_update_since(1)  # we broadcast now: the next one starts at ``base``
        for p in burst:
            links.append(conn(p))
            topo.set_local_connections(links)
        update = topo.own_update_since(base)
        assert not update.records, "a whole record"
        (delta,) = update.delta_list()
        assert delta.base == base and delta.changed == tuple(conn(p) for p in burst)
