"""``ReachHints``: the walk towards us answers exactly as the plain search from us.

The oracle is ``limbo.unreachable`` (and a plain BFS written in
``test_limbo_proof``); hints are kept across random change sequences with
removals, as ``Topology`` keeps them, so stale hints are exercised too.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.names import PeerName
from meshrouter.topology.limbo import unreachable
from meshrouter.topology.peer_map import PeerMap
from meshrouter.topology.reach import NO_LEVEL, ReachHints
from meshrouter.topology.records import PeerRecord

from .builders import P, conn, graph_records, make_topology, record, records_from_links
from .test_limbo_proof import reachable_from

KINDS = ["none", "none", "sym", "sym", "sym", "one_way", "unestablished"]


def _links(pairs: dict[tuple[int, int], str]) -> dict[tuple[int, int], bool]:
    links: dict[tuple[int, int], bool] = {}
    for (a, b), kind in pairs.items():
        if kind == "sym":
            links[(a, b)] = links[(b, a)] = True
        elif kind == "one_way":
            links[(a, b)] = True
        elif kind == "unestablished":
            links[(a, b)] = True
            links[(b, a)] = False
    return links


def _hints(records: dict[PeerName, PeerRecord], local: PeerName) -> ReachHints:
    hints = ReachHints(local)
    for held in records.values():
        hints.written(None, held)
    return hints


def _listers(records: dict[PeerName, PeerRecord]) -> dict[PeerName, set[PeerName]]:
    found: dict[PeerName, set[PeerName]] = {}
    for name, held in records.items():
        for c in held.connections:
            found.setdefault(c.peer, set()).add(name)
    return found


@settings(deadline=None, max_examples=300)
@given(st.data())
def test_answers_equal_the_search_over_random_change_sequences(data: st.DataObject) -> None:
    """As ``Topology`` uses it: each step rewires a few pairs and adds or drops a
    record, the names at risk are the arrivals and the names that lost a lister
    (plus any others), and what is found unreachable is dropped."""
    size = data.draw(st.integers(2, 12))
    names = list(range(1, size + 1))
    pairs = {(a, b): data.draw(st.sampled_from(KINDS)) for a in names for b in names if a < b}
    local = P(data.draw(st.sampled_from(names)))
    records = {local: records_from_links(names, _links(pairs))[local]}
    hints = _hints(records, local)
    for _ in range(data.draw(st.integers(1, 10))):
        for pair in data.draw(st.lists(st.sampled_from(sorted(pairs)), max_size=4)):
            pairs[pair] = data.draw(st.sampled_from(KINDS))
        present = {int(name) for name in records}
        present ^= set(data.draw(st.lists(st.sampled_from(names), max_size=3)))
        present.add(int(local))
        live = {pair: kind for pair, kind in pairs.items() if set(pair) <= present}
        after = records_from_links(sorted(present), _links(live))
        lost = {peer for peer, was in _listers(records).items()
                if not was <= _listers(after).get(peer, set())}
        arrived = set(after) - set(records)
        for name in set(records) | set(after):
            if records.get(name) != after.get(name):
                hints.written(records.get(name), after.get(name))
        records = after
        targets = arrived | lost | set(data.draw(st.lists(st.sampled_from(sorted(records)))))
        targets.discard(local)  # as _settle does (the plain search never "finds" us)
        expected = unreachable(records, local, set(targets))
        assert hints.unreachable(records, local, targets, arrived) == expected
        for name in expected:  # as Topology drops them
            hints.written(records.pop(name), None)
        assert reachable_from(records, local) == set(records)


@settings(deadline=None, max_examples=200)
@given(st.data())
def test_a_proof_is_a_path(data: st.DataObject) -> None:
    """Hints may say anything: a successful proof still means every target is reachable."""
    size = data.draw(st.integers(2, 10))
    names = list(range(1, size + 1))
    pairs = {(a, b): data.draw(st.sampled_from(KINDS)) for a in names for b in names if a < b}
    records = records_from_links(names, _links(pairs))
    local = P(data.draw(st.sampled_from(names)))
    hints = ReachHints(local)
    for name in names:
        hints._levels[P(name)] = data.draw(st.sampled_from([0, 1, 2, 3, NO_LEVEL]))
    targets = set(data.draw(st.lists(st.sampled_from(sorted(records)), max_size=5)))
    if hints.prove(records, local, targets):
        assert targets <= reachable_from(records, local)


def _ring(size: int) -> dict[PeerName, PeerRecord]:
    nodes = list(range(1, size + 1))
    return graph_records(nodes, [(i, i % size + 1) for i in nodes]
                         + [(i, (i + 1) % size + 1) for i in nodes])


def test_a_cut_link_with_a_detour_is_proven_by_a_walk_not_a_search() -> None:
    records = _ring(30)
    hints = _hints(records, P(1))
    assert hints.search(records, P(1), None) == []
    assert hints.level(P(16)) == 8
    # 15 and 16 drop their link: both stay reachable through 14 and 17.
    records[P(15)] = record(15, connections=[conn(13), conn(14), conn(17)])
    records[P(16)] = record(16, connections=[conn(14), conn(17), conn(18)])
    assert hints.unreachable(records, P(1), {P(15), P(16)}) == []
    assert (hints.proofs, hints.searches) == (1, 0)


def test_a_record_cut_off_is_found_by_the_search() -> None:
    records = graph_records([1, 2, 3, 4], [(1, 2), (2, 3), (3, 4)])
    hints = _hints(records, P(1))
    hints.search(records, P(1), None)
    dropped = record(2, connections=[conn(1)])  # 2 drops 3: 3 and 4 are cut off
    hints.written(records[P(2)], dropped)
    records[P(2)] = dropped
    assert hints.unreachable(records, P(1), {P(3)}) == [P(3), P(4)]
    assert (hints.proofs, hints.searches) == (0, 1)
    assert hints.level(P(3)) == NO_LEVEL  # the search refreshed the hints


def test_a_walk_may_cross_its_own_level_when_the_link_below_went() -> None:
    """We dropped our link to 2: its hint (1) is now too low, yet it is proven
    through 3, at the same level, and placed one below it."""
    records = graph_records([1, 2, 3], [(1, 2), (1, 3), (2, 3)])
    hints = _hints(records, P(1))
    hints.search(records, P(1), None)
    records[P(1)] = record(1, connections=[conn(3)])
    records[P(2)] = record(2, connections=[conn(3)])
    assert hints.unreachable(records, P(1), {P(2)}) == []
    assert hints.level(P(2)) == 2


def test_arrivals_listed_only_by_each_other_are_proven_in_turn() -> None:
    records = graph_records([1, 2, 3, 4], [(1, 2), (2, 3), (3, 4)])
    hints = _hints(records, P(1))
    hints.search(records, P(1), {P(2)})
    del hints._levels[P(3)], hints._levels[P(4)]  # as if they had just arrived
    assert hints.prove(records, P(1), [P(4), P(3)])
    assert (hints.level(P(3)), hints.level(P(4))) == (2, 3)


def test_an_arrival_nobody_lists_is_unreachable_without_a_search() -> None:
    records = graph_records([1, 2, 3], [(1, 2), (2, 3)])
    hints = _hints(records, P(1))
    hints.search(records, P(1), None)
    # 4 arrives listing 3, which does not list it yet; 3 also drops nothing.
    records[P(4)] = record(4, connections=[conn(3)])
    hints.written(None, records[P(4)])
    assert hints.listers(P(4)) == 0 and hints.listers(P(3)) == 2
    assert hints.unreachable(records, P(1), {P(4)}, {P(4)}) == [P(4)]
    assert (hints.proofs, hints.searches) == (1, 0)


def test_a_held_record_nobody_lists_any_more_takes_what_it_alone_listed_along() -> None:
    """Only an *arrival* nobody lists is all that a change cut off: a held record
    that lost its last lister may have been the only way to others."""
    records = records_from_links([1, 2, 3, 4], {(1, 2): True, (2, 1): True, (2, 3): True,
                                                (3, 4): True})
    hints = _hints(records, P(1))
    hints.search(records, P(1), None)
    dropped = record(2, connections=[conn(1)])
    hints.written(records[P(2)], dropped)
    records[P(2)] = dropped
    assert hints.listers(P(3)) == 0
    assert hints.unreachable(records, P(1), {P(3)}) == [P(3), P(4)]


def test_arrivals_listing_each_other_only_are_found_by_the_search() -> None:
    records = graph_records([1, 2], [(1, 2)])
    records.update(graph_records([3, 4], [(3, 4)]))
    hints = _hints(records, P(1))
    assert hints.unreachable(records, P(1), {P(3), P(4)}, {P(3), P(4)}) == [P(3), P(4)]
    assert (hints.proofs, hints.searches) == (0, 1)


def test_topology_settles_an_evicting_join_by_walks() -> None:
    """A peer that swaps one link for another, in a mesh where both ends of the
    dropped link keep other neighbours, needs no search from us."""
    topo = make_topology(1)
    ring = _ring(12)
    topo.set_local_connections(ring[P(1)].connections)
    topo.apply(PeerMap({name: r for name, r in ring.items() if name != P(1)}), random.Random(0))
    searches = topo._reach.searches
    moved = record(6, version=2, connections=[conn(4), conn(5), conn(8), conn(9)])
    nine = record(9, version=2, connections=[conn(6), conn(7), conn(8), conn(10), conn(11)])
    topo.apply(PeerMap.of(moved, nine), random.Random(0))
    assert len(topo) == 12
    assert topo._reach.searches == searches
    assert topo._reach.proofs >= 1
