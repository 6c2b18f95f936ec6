"""Topology: our record, merges with our special cases, GC, discovery, anti-entropy."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.codec import pack
from meshrouter.errors import ConfigError, MalformedMessageError
from meshrouter.names import SHORT_ID_COUNT, PeerName
from meshrouter.topology.peer_map import PeerMap
from meshrouter.topology.records import ConnectionRecord, PeerRecord
from meshrouter.topology.route_graph import SHARED_ROUTE_GRAPHS
from meshrouter.topology.topology import MAX_LIMBO, Topology

from .builders import P, address_of, conn, make_topology, record


def rng() -> random.Random:
    return random.Random(7)


# -- construction and our own record -----------------------------------------------------


def test_initial_state() -> None:
    topo = make_topology(1, short_id=5)
    assert topo.local_record == PeerRecord(P(1), "host1", 100, 1, 5, 6783, ())
    assert topo.peer_map == PeerMap.of(topo.local_record)
    assert topo.records() == [topo.local_record]
    assert topo.version == 0


def test_short_id_is_picked_with_rng_when_not_given() -> None:
    a = Topology(local_name=P(1), nickname="a", uid=1, listen_port=1, rng=random.Random(3))
    b = Topology(local_name=P(1), nickname="a", uid=1, listen_port=1, rng=random.Random(3))
    assert a.local_record.short_id == b.local_record.short_id
    assert a.local_record.short_id is not None
    assert 0 <= a.local_record.short_id < SHORT_ID_COUNT


@pytest.mark.parametrize(
    "kwargs",
    [{"short_id": 4096}, {"short_id": -1}, {"uid": -1}, {"uid": 2**64},
     {"listen_port": 70000}, {"nickname": "x" * 300}],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"local_name": P(1), "nickname": "a", "uid": 1,
                               "listen_port": 6783, "rng": random.Random(0), **kwargs}
    with pytest.raises(ConfigError):
        Topology(**args)  # type: ignore[arg-type]


def test_set_local_connections_bumps_our_version_and_returns_our_record() -> None:
    topo = make_topology(1)
    delta = topo.set_local_connections([conn(3), conn(2, established=False)])
    assert delta is not None
    ours = topo.local_record
    assert delta == PeerMap.of(ours)
    assert ours.version == 2
    assert [c.peer for c in ours.connections] == [2, 3]
    assert topo.version == 1
    # Same set again (any order, with a self-connection that is dropped): no change.
    assert topo.set_local_connections([conn(2, established=False), conn(3), conn(1)]) is None
    assert topo.version == 1
    assert topo.local_record.version == 2
    delta = topo.set_local_connections([conn(2), conn(3)])  # 2 became established
    assert delta is not None and topo.local_record.version == 3 and topo.version == 2


# -- applying gossip ---------------------------------------------------------------------


def connected_pair() -> Topology:
    """Us (1) with an established link to 2; 2's record lists us."""
    topo = make_topology(1)
    topo.set_local_connections([conn(2)])
    topo.apply(PeerMap.of(record(2, connections=[conn(1)])), rng())
    return topo


def test_apply_merges_and_returns_the_delta() -> None:
    topo = connected_pair()
    version = topo.version
    newer = record(2, version=2, connections=[conn(1), conn(3)])
    third = record(3, connections=[conn(2)])
    delta = topo.apply(PeerMap.of(newer, third), rng())
    assert delta == PeerMap.of(newer, third)
    assert topo.version == version + 1
    assert topo.apply(PeerMap.of(newer, third), rng()) is None
    assert topo.apply(PeerMap.of(record(2, version=1, connections=[conn(1)])), rng()) is None
    assert topo.version == version + 1
    assert [r.name for r in topo.records()] == [1, 2, 3]


def test_older_incarnation_of_ourselves_makes_us_reassert() -> None:
    topo = connected_pair()
    ours = topo.local_record
    ghost = record(1, version=ours.version + 5, uid=99, connections=[conn(7)])
    delta = topo.apply(PeerMap.of(ghost), rng())
    assert topo.local_record == replace(ours, version=ours.version + 6)
    assert delta == PeerMap.of(topo.local_record)


def test_same_version_other_content_of_ourselves_makes_us_reassert() -> None:
    topo = connected_pair()
    ours = topo.local_record
    clash = replace(ours, nickname="impostor", uid=ours.uid - 1)  # would lose, still reassert
    delta = topo.apply(PeerMap.of(clash), rng())
    assert delta == PeerMap.of(replace(ours, version=ours.version + 1))


def test_copies_of_our_record_that_are_older_or_equal_change_nothing() -> None:
    topo = connected_pair()
    ours = topo.local_record
    version = topo.version
    assert topo.apply(PeerMap.of(ours), rng()) is None
    assert topo.apply(PeerMap.of(replace(ours, version=ours.version - 1, uid=5)), rng()) is None
    assert topo.local_record is ours and topo.version == version


def test_short_id_collision_with_a_lower_name_makes_us_repick() -> None:
    topo = make_topology(5, short_id=7)
    topo.set_local_connections([conn(3)])
    version = topo.local_record.version
    delta = topo.apply(PeerMap.of(record(3, short_id=7, connections=[conn(5)])), rng())
    ours = topo.local_record
    assert ours.short_id is not None and ours.short_id != 7
    assert ours.version == version + 1
    assert delta is not None and delta.records[P(5)] == ours and P(3) in delta


def test_short_id_collision_with_a_higher_name_keeps_ours() -> None:
    topo = make_topology(5, short_id=7)
    topo.set_local_connections([conn(9)])
    delta = topo.apply(PeerMap.of(record(9, short_id=7, connections=[conn(5)])), rng())
    assert topo.local_record.short_id == 7
    assert delta == PeerMap.of(record(9, short_id=7, connections=[conn(5)]))


def test_repick_avoids_every_short_id_in_use() -> None:
    topo = make_topology(4000, short_id=0)
    others = [record(n, short_id=n % SHORT_ID_COUNT, connections=[conn(4000)])
              for n in range(SHORT_ID_COUNT - 1)]
    topo.set_local_connections([conn(r.name) for r in others])
    topo.apply(PeerMap.of(*others), rng())
    assert topo.local_record.short_id == SHORT_ID_COUNT - 1
    full = make_topology(5000, short_id=0)
    everyone = [record(n, short_id=n, connections=[conn(5000)]) for n in range(SHORT_ID_COUNT)]
    full.set_local_connections([conn(r.name) for r in everyone])
    full.apply(PeerMap.of(*everyone), rng())
    assert full.local_record.short_id is None


def converge(topologies: dict[int, Topology], edges: list[tuple[int, int]]) -> int:
    """Exchange full state over every edge until nothing changes; return rounds."""
    for a, b in edges:
        topologies[a].set_local_connections(
            [*topologies[a].local_record.connections, conn(b)])
        topologies[b].set_local_connections(
            [*topologies[b].local_record.connections, conn(a)])
    for rounds in range(1, 100):
        changed = False
        for a, b in edges:
            for src, dst in ((a, b), (b, a)):
                if topologies[dst].apply(topologies[src].peer_map, rng()) is not None:
                    changed = True
        if not changed:
            return rounds
    raise AssertionError("did not converge")


def test_lowest_name_keeps_a_shared_short_id_across_a_mesh() -> None:
    names = [10, 3, 7, 25, 4]
    topologies = {n: make_topology(n, short_id=42, seed=n) for n in names}
    converge(topologies, [(10, 3), (3, 7), (7, 25), (25, 4)])
    maps = [t.peer_map for t in topologies.values()]
    assert all(m == maps[0] for m in maps)
    short_ids = {r.name: r.short_id for r in maps[0]}
    assert short_ids[P(3)] == 42
    assert len(set(short_ids.values())) == len(names)
    routes = [topologies[n].routes() for n in names]
    assert all(r.reachable() == frozenset(names) for r in routes)
    # Same records everywhere: one fingerprint, one shared graph.
    assert len({t.fingerprint for t in topologies.values()}) == 1
    assert all(r.graph is routes[0].graph for r in routes)


# -- garbage collection ------------------------------------------------------------------


def chain_topology() -> Topology:
    """Us (1) - 2 - 3 - 4, all records known."""
    topo = make_topology(1)
    topo.set_local_connections([conn(2)])
    topo.apply(PeerMap.of(
        record(2, connections=[conn(1), conn(3)]),
        record(3, connections=[conn(2), conn(4)]),
        record(4, connections=[conn(3)]),
    ), rng())
    assert [r.name for r in topo.records()] == [1, 2, 3, 4]
    topo.take_removed()
    return topo


def test_gc_after_a_peers_links_vanish() -> None:
    topo = chain_topology()
    version = topo.version
    delta = topo.apply(PeerMap.of(record(2, version=2, connections=[conn(1)])), rng())
    assert delta == PeerMap.of(record(2, version=2, connections=[conn(1)]))
    assert [r.name for r in topo.records()] == [1, 2]
    assert topo.take_removed() == [3, 4]
    assert topo.take_removed() == []
    assert topo.version == version + 1
    assert topo.routes().reachable() == frozenset({1, 2})


def test_gc_after_our_own_link_drops() -> None:
    topo = chain_topology()
    assert topo.set_local_connections([]) == PeerMap.of(topo.local_record)
    assert [r.name for r in topo.records()] == [1]
    assert topo.take_removed() == [2, 3, 4]


def test_one_way_listing_keeps_a_record() -> None:
    """Edges are followed from reachable records; the other end need not list back."""
    topo = chain_topology()
    topo.apply(PeerMap.of(record(3, version=2, connections=[conn(4)])), rng())
    assert [r.name for r in topo.records()] == [1, 2, 3, 4]
    topo.apply(PeerMap.of(record(2, version=2, connections=[conn(1)]),
                          record(4, version=2, connections=[conn(3)])), rng())
    assert [r.name for r in topo.records()] == [1, 2]


def test_garbage_collect_never_drops_us_and_is_idempotent() -> None:
    topo = chain_topology()
    assert topo.garbage_collect() == []
    topo.set_local_connections([])
    assert topo.garbage_collect() == []
    assert topo.records() == [topo.local_record]


def test_unreachable_arrival_is_parked_not_relayed_then_restored() -> None:
    topo = connected_pair()
    version = topo.version
    newcomer = record(9, connections=[conn(2)])
    assert topo.apply(PeerMap.of(newcomer), rng()) is None  # nobody we reach lists 9 yet
    assert P(9) not in topo and topo.version == version
    assert topo.take_removed() == []
    # 2's record now lists 9: the parked record comes back and is relayed with it.
    two = record(2, version=2, connections=[conn(1), conn(9)])
    delta = topo.apply(PeerMap.of(two), rng())
    assert delta == PeerMap.of(two, newcomer)
    assert P(9) in topo


def test_parked_record_is_superseded_by_a_newer_arrival() -> None:
    topo = connected_pair()
    topo.apply(PeerMap.of(record(9, version=3, connections=[conn(2)])), rng())
    topo.apply(PeerMap.of(record(9, version=2, connections=[conn(2)])), rng())
    topo.apply(PeerMap.of(record(2, version=2, connections=[conn(1), conn(9)])), rng())
    assert topo.record(P(9)) == record(9, version=3, connections=[conn(2)])


def test_limbo_is_bounded() -> None:
    topo = connected_pair()
    strays = [record(n) for n in range(1000, 1000 + MAX_LIMBO + 10)]
    assert topo.apply(PeerMap.of(*strays), rng()) is None
    assert len(topo._limbo) == MAX_LIMBO
    assert len(topo) == 2


def reachable_from(local: PeerName, records: Mapping[PeerName, PeerRecord]) -> set[PeerName]:
    """Oracle: a plain BFS from ``local`` over every listed connection (established
    or not) to peers that have a record."""
    seen = {local}
    queue = [local]
    while queue:
        for c in records[queue.pop()].connections:
            if c.peer in records and c.peer not in seen:
                seen.add(c.peer)
                queue.append(c.peer)
    return seen


@settings(deadline=None, max_examples=200)
@given(st.lists(st.tuples(st.integers(2, 8), st.integers(1, 3),
                          st.sets(st.tuples(st.integers(1, 8), st.booleans()), max_size=4)),
                max_size=12))
def test_records_are_always_exactly_the_reachable_set(
        updates: list[tuple[int, int, set[tuple[int, bool]]]]) -> None:
    """After every apply we hold exactly the records reachable from us, each the
    newest one received: checked against a model that keeps every record ever
    received (a dropped one may come back) and a BFS written here."""
    topo = make_topology(1)
    topo.set_local_connections([conn(2), conn(3)])
    received: dict[PeerName, PeerRecord] = {}
    for name, version, peers in updates:
        links = dict(sorted(peers))  # one connection per peer
        rec = record(name, version=version,
                     connections=[conn(p, established=e) for p, e in links.items() if p != name])
        held = received.get(P(name))
        if held is not None and held.version == version:
            rec = held  # one record per (name, version): the newest version wins
        topo.apply(PeerMap.of(rec), rng())
        if held is None or held.version <= version:
            received[P(name)] = rec
        model = {**received, P(1): topo.local_record}
        expected = {n: model[n] for n in reachable_from(P(1), model)}
        assert {r.name: r for r in topo.records()} == expected


# -- routes caching ----------------------------------------------------------------------


def test_routes_are_cached_until_the_records_change() -> None:
    SHARED_ROUTE_GRAPHS.clear()  # no other topology in this process holds these records
    topo = chain_topology()
    first = topo.routes()
    assert topo.routes() is first
    computed = topo.routes_computed
    topo.apply(PeerMap.of(record(3, connections=[conn(2), conn(4)])), rng())  # no change
    assert topo.routes() is first and topo.routes_computed == computed
    topo.set_local_connections([conn(2), conn(3)])
    second = topo.routes()
    assert second is not first and topo.routes_computed == computed + 1
    assert topo.routes() is second
    assert topo.routes_shared == 0


def test_routes_follow_the_records() -> None:
    topo = chain_topology()
    assert topo.routes().unicast_table() == {2: 2, 3: 2, 4: 2}


# -- discovery ---------------------------------------------------------------------------


def test_discovery_candidates() -> None:
    topo = make_topology(1)
    topo.set_local_connections([conn(2)])
    topo.apply(PeerMap.of(
        record(2, connections=[
            conn(1),
            conn(3, outbound=False, address="10.0.0.3:40000"),   # inbound: ephemeral port
            conn(4, outbound=True, address="10.0.0.4:7000"),     # we dialled 4 at :7000
            conn(5, outbound=False, address="[fd00::5]:5555"),
            conn(6, outbound=True, address="not-an-address"),
            conn(7, outbound=True, address="0.0.0.0:6783"),
        ]),
        record(3, connections=[conn(2)], listen_port=6783),
        record(4, connections=[conn(2)], listen_port=6783),
        record(5, connections=[conn(2), conn(6, outbound=False, address="192.168.1.6:1")],
               listen_port=7777),
        record(6, connections=[conn(2)], listen_port=6783),
        record(7, connections=[conn(2)], listen_port=0),
    ), rng())
    assert topo.discovery_candidates() == [
        (3, "10.0.0.3:6783"),
        (4, "10.0.0.4:6783"),
        (4, "10.0.0.4:7000"),
        (5, "[fd00::5]:7777"),
        (6, "192.168.1.6:6783"),
    ]
    # Once we have a connection record to a peer, it is no longer a candidate.
    topo.set_local_connections([conn(2), conn(3, established=False)])
    assert [p for p, _ in topo.discovery_candidates()] == [4, 4, 5, 6]


def test_no_candidates_when_fully_connected() -> None:
    topo = connected_pair()
    assert topo.discovery_candidates() == []
    assert address_of(2) == "10.0.0.2:6783"


# -- anti-entropy ------------------------------------------------------------------------


def test_digest_newer_than_and_lacks_from() -> None:
    a = chain_topology()
    b = make_topology(2)
    b.set_local_connections([conn(1), conn(3)])
    b.apply(PeerMap.of(record(3, version=5, connections=[conn(2), conn(4)])), rng())
    assert a.full_digest() == pack({
        1: [a.local_record.version, 100], 2: [1, 1], 3: [1, 1], 4: [1, 1]})
    # b's view: its own record (v2, uid 100) beats a's copy of 2 (v1 uid 1); 3 v5.
    assert a.lacks_from(b.full_digest())
    newer_for_a = b.newer_than(a.full_digest())
    assert newer_for_a is not None
    assert sorted(newer_for_a.records) == [2, 3]
    newer_for_b = a.newer_than(b.full_digest())
    assert newer_for_b is not None and sorted(newer_for_b.records) == [1, 4]
    assert b.lacks_from(a.full_digest())
    a.apply(newer_for_a, rng())
    b.apply(newer_for_b, rng())
    assert a.peer_map == b.peer_map
    assert not a.lacks_from(b.full_digest()) and not b.lacks_from(a.full_digest())
    assert a.newer_than(b.full_digest()) is None
    assert a.full_digest() == b.full_digest()
    # The summary of a few records: marker, bits, total, one bucket.
    assert a.digest() == b.digest() and len(a.digest()) == 2 + 16 + 4


def test_malformed_summary_digest_is_a_protocol_error() -> None:
    import pytest as _pytest

    from meshrouter.errors import MalformedMessageError as _Malformed

    with _pytest.raises(_Malformed):
        make_topology(2).wants_full_digest(b"\x01short")


@pytest.mark.parametrize("bad", [b"", b"\xc1", pack([1, 2]), pack({1: [1]}),
                                 pack({1: [1, -1]}), pack({-1: [1, 1]}), pack({1: [True, 1]}),
                                 pack({"x": [1, 1]})])
def test_malformed_digests_are_refused(bad: bytes) -> None:
    topo = make_topology(1)
    with pytest.raises(MalformedMessageError):
        topo.newer_than(bad)
    with pytest.raises(MalformedMessageError):
        topo.lacks_from(bad)


def test_connection_record_fields() -> None:
    c = ConnectionRecord(P(2), "10.0.0.2:6783", outbound=True, established=False)
    assert (c.peer, c.address, c.outbound, c.established) == (2, "10.0.0.2:6783", True, False)


def test_set_listen_port_bumps_version_and_returns_delta() -> None:
    import random as _random

    from meshrouter.names import PeerName as _PeerName
    from meshrouter.topology.topology import Topology as _Topology

    topo = _Topology(local_name=_PeerName(5), nickname="n", uid=1, listen_port=0,
                     rng=_random.Random(0))
    before = topo.local_record.version
    delta = topo.set_listen_port(7001)
    assert delta is not None and delta.records[_PeerName(5)].listen_port == 7001
    assert topo.local_record.version == before + 1
    assert topo.set_listen_port(7001) is None
