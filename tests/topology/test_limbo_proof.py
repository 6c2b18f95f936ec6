"""``proven_reachable``: arrivals proven reachable by their listers alone, never wrongly.

The oracle is a plain BFS over listed connections written here, not ``unreachable``.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.names import PeerName
from meshrouter.topology.limbo import proven_reachable
from meshrouter.topology.peer_map import PeerMap
from meshrouter.topology.records import PeerRecord

from .builders import P, conn, make_topology, random_graphs, record


def reachable_from(records: Mapping[PeerName, PeerRecord], local: PeerName) -> set[PeerName]:
    seen = {local}
    queue = deque([local])
    while queue:
        held = records.get(queue.popleft())
        for c in held.connections if held is not None else ():
            if c.peer in records and c.peer not in seen:
                seen.add(c.peer)
                queue.append(c.peer)
    return seen


def test_an_arrival_listed_by_a_held_record_is_proven() -> None:
    records = {P(1): record(1, connections=[conn(2)]),
               P(2): record(2, connections=[conn(1), conn(3)]),
               P(3): record(3, connections=[conn(2)])}
    assert proven_reachable(records, P(1), {P(3)})


def test_a_chain_of_arrivals_is_proven_link_by_link() -> None:
    records = {P(1): record(1, connections=[conn(2)]),
               P(2): record(2, connections=[conn(1), conn(3)]),
               P(3): record(3, connections=[conn(2), conn(4)]),
               P(4): record(4, connections=[conn(3)])}
    assert proven_reachable(records, P(1), {P(3), P(4)})


def test_an_arrival_nobody_held_lists_is_not_proven() -> None:
    # 3 lists 2, but 2 does not list 3 (yet): 3 is unreachable from 1.
    records = {P(1): record(1, connections=[conn(2)]),
               P(2): record(2, connections=[conn(1)]),
               P(3): record(3, connections=[conn(2)])}
    assert not proven_reachable(records, P(1), {P(3)})


def test_arrivals_listing_only_each_other_are_not_proven() -> None:
    records = {P(1): record(1),
               P(3): record(3, connections=[conn(4)]),
               P(4): record(4, connections=[conn(3)])}
    assert not proven_reachable(records, P(1), {P(3), P(4)})


def test_an_unestablished_listing_is_no_proof() -> None:
    records = {P(1): record(1, connections=[conn(2)]),
               P(2): record(2, connections=[conn(1), conn(3, established=False)]),
               P(3): record(3, connections=[conn(2)])}
    assert not proven_reachable(records, P(1), {P(3)})  # the search decides instead


@settings(deadline=None, max_examples=300)
@given(random_graphs(), st.data())
def test_a_proof_is_never_wrong(records: dict[PeerName, PeerRecord], data: st.DataObject) -> None:
    """Whatever arrived, if the records held before were all reachable, a proof
    means every arrival is reachable."""
    names = sorted(records)
    local = data.draw(st.sampled_from(names))
    before = reachable_from(records, local)
    arrived = set(data.draw(st.lists(st.sampled_from(names), unique=True)))
    arrived.discard(local)
    # The precondition: every record held before the change (not arrived) is reachable.
    held_before = {n: r for n, r in records.items() if n not in arrived}
    if not reachable_from(held_before, local) >= set(held_before):
        return
    if proven_reachable(records, local, arrived):
        assert arrived <= before


def test_a_change_that_also_cuts_a_link_still_collects_what_it_cut_off() -> None:
    """The proof covers arrivals only: a record cut off in the same change is
    still searched for and dropped."""
    topo = make_topology(1)
    topo.set_local_connections([conn(2)])
    topo.apply(PeerMap.of(record(2, connections=[conn(1), conn(3)]),
                          record(3, connections=[conn(2)])), random.Random(0))
    assert P(3) in topo
    # 2 drops 3 and lists newcomer 4, in one message.
    topo.apply(PeerMap.of(record(2, version=2, connections=[conn(1), conn(4)]),
                          record(4, connections=[conn(2)])), random.Random(0))
    assert P(4) in topo
    assert P(3) not in topo
    assert topo.take_removed() == [P(3)]
