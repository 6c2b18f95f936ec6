"""Routes: deterministic unicast BFS and exactly-once broadcast trees."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.names import PeerName
from meshrouter.topology.records import PeerRecord
from meshrouter.topology.routes import compute_routes

from .builders import (
    NAMED_GRAPHS,
    P,
    conn,
    distances,
    graph_records,
    random_graphs,
    record,
    records_from_links,
    symmetric_adjacency,
)

PROPERTY = settings(deadline=None, max_examples=200)


# -- hand-built topologies ------------------------------------------------------------


def test_line_next_hops() -> None:
    records = graph_records(*NAMED_GRAPHS["line"])
    routes = compute_routes(records, P(1))
    assert routes.unicast_table() == {2: 2, 3: 2, 4: 2, 5: 2, 6: 2}
    middle = compute_routes(records, P(3))
    assert middle.unicast_table() == {1: 2, 2: 2, 4: 4, 5: 4, 6: 4}
    assert middle.next_hop(P(3)) is None
    assert routes.reachable() == frozenset(range(1, 7))


def test_ring_takes_the_shorter_way_and_ties_go_to_the_lower_name() -> None:
    records = graph_records(*NAMED_GRAPHS["ring"])  # 1-2-3-4-5-6-7-8-1
    routes = compute_routes(records, P(1))
    assert routes.unicast_table() == {2: 2, 3: 2, 4: 2, 5: 2, 6: 8, 7: 8, 8: 8}
    # 5 is 4 hops both ways; its parent is its lower-named neighbour 4, reached via 2.


def test_star_routes_through_the_hub() -> None:
    records = graph_records(*NAMED_GRAPHS["star"])
    leaf = compute_routes(records, P(5))
    assert leaf.unicast_table() == {1: 1, 2: 1, 3: 1, 4: 1, 6: 1, 7: 1}
    hub = compute_routes(records, P(1))
    assert hub.unicast_table() == {n: n for n in range(2, 8)}
    assert hub.broadcast_next_hops(P(1)) == [2, 3, 4, 5, 6, 7]
    assert hub.broadcast_next_hops(P(4)) == [2, 3, 5, 6, 7]
    assert leaf.broadcast_next_hops(P(4)) == []


def test_partial_mesh_next_hops() -> None:
    records = graph_records(*NAMED_GRAPHS["partial_mesh"])
    routes = compute_routes(records, P(1))
    assert routes.unicast_table() == {2: 2, 3: 3, 4: 2, 5: 3, 6: 2, 7: 3, 8: 3, 9: 3}


def test_partitioned_destinations_are_unreachable() -> None:
    records = graph_records(*NAMED_GRAPHS["partitioned"])
    routes = compute_routes(records, P(1))
    assert routes.next_hop(P(2)) == 2
    assert routes.next_hop(P(4)) is None
    assert routes.next_hop(P(7)) is None
    assert routes.next_hop(P(99)) is None
    assert routes.reachable() == frozenset({1, 2, 3})
    assert routes.broadcast_next_hops(P(4)) == []
    assert routes.broadcast_next_hops(P(99)) == []


def test_asymmetric_or_unestablished_links_are_ignored_for_unicast() -> None:
    links = {
        (1, 2): True, (2, 1): True,
        (2, 3): True,                     # 3 does not list 2
        (1, 4): True, (4, 1): False,      # 4 lists 1 but not established
        (3, 4): True, (4, 3): True,
    }
    records = records_from_links([1, 2, 3, 4], links)
    routes = compute_routes(records, P(1))
    assert routes.next_hop(P(2)) == 2
    assert routes.next_hop(P(3)) is None
    assert routes.next_hop(P(4)) is None
    assert routes.reachable() == frozenset({1, 2})
    assert routes.neighbours() == [2]
    # Control-plane unicast uses every link we list, and any link others list.
    assert routes.next_hop_any(P(3)) == 2
    assert routes.next_hop_any(P(4)) == 4  # we list 4 (not established): direct


def test_next_hop_any_uses_only_links_we_list_as_our_first_hop() -> None:
    links = {(2, 1): True, (2, 3): True, (1, 3): False}  # 2 lists us; we only list 3
    records = records_from_links([1, 2, 3], links)
    routes = compute_routes(records, P(1))
    assert routes.next_hop_any(P(3)) == 3
    assert routes.next_hop_any(P(2)) == 3  # via 3, reverse of 2's listing
    assert routes.next_hop_any(P(1)) is None
    assert routes.next_hop_any(P(77)) is None
    assert routes.next_hop(P(2)) is None


def test_local_without_a_record_and_unknown_peers() -> None:
    records = {P(2): record(2, connections=[conn(1), conn(3)])}
    routes = compute_routes(records, P(1))
    assert routes.reachable() == frozenset({1})
    assert routes.unicast_table() == {}
    assert routes.broadcast_next_hops(P(1)) == []


def test_broadcast_next_hops_returns_a_fresh_list_and_caches() -> None:
    records = graph_records(*NAMED_GRAPHS["full_mesh"])
    routes = compute_routes(records, P(1))
    hops = routes.broadcast_next_hops(P(1))
    hops.append(P(42))
    assert routes.broadcast_next_hops(P(1)) == [2, 3, 4, 5, 6]
    assert routes.broadcast_next_hops(P(2)) == []  # in a full mesh the origin reaches all
    table = routes.unicast_table()
    table.clear()
    assert routes.unicast_table()


def test_routes_is_a_snapshot() -> None:
    records = graph_records(*NAMED_GRAPHS["line"])
    routes = compute_routes(records, P(1))
    records.clear()
    assert routes.next_hop(P(6)) == 2
    assert routes.next_hop_any(P(6)) == 2


# -- broadcast delivery simulation ------------------------------------------------------


def simulate_broadcast(records: Mapping[PeerName, PeerRecord], origin: PeerName) -> Counter[int]:
    """Every node forwards using its own Routes; count receptions per node."""
    routes = {name: compute_routes(records, name) for name in records}
    adjacency = symmetric_adjacency(records)
    received: Counter[int] = Counter()
    queue = deque([origin])
    forwarded = {origin}
    while queue:
        node = queue.popleft()
        for child in routes[node].broadcast_next_hops(origin):
            assert child in adjacency[node], "forwarded over a non-symmetric link"
            received[child] += 1
            if child not in forwarded:
                forwarded.add(child)
                queue.append(child)
    return received


def assert_exactly_once(records: Mapping[PeerName, PeerRecord]) -> None:
    adjacency = symmetric_adjacency(records)
    for origin in records:
        reachable = set(distances(adjacency, origin))
        received = simulate_broadcast(records, origin)
        assert dict(received) == {n: 1 for n in reachable - {origin}}, origin


@pytest.mark.parametrize("graph", sorted(NAMED_GRAPHS))
def test_broadcast_reaches_every_reachable_node_exactly_once(graph: str) -> None:
    assert_exactly_once(graph_records(*NAMED_GRAPHS[graph]))


def assert_unicast_consistent(records: Mapping[PeerName, PeerRecord]) -> None:
    """Hop-by-hop forwarding with each node's own table follows a shortest path."""
    adjacency = symmetric_adjacency(records)
    routes = {name: compute_routes(records, name) for name in records}
    for src in records:
        dist = distances(adjacency, src)
        assert routes[src].reachable() == frozenset(dist)
        for dst in records:
            if dst == src:
                assert routes[src].next_hop(dst) is None
                continue
            if dst not in dist:
                assert routes[src].next_hop(dst) is None
                continue
            node, hops = src, 0
            while node != dst:
                nxt = routes[node].next_hop(dst)
                assert nxt is not None and nxt in adjacency[node]
                node, hops = PeerName(nxt), hops + 1
            assert hops == dist[dst]


@pytest.mark.parametrize("graph", sorted(NAMED_GRAPHS))
def test_unicast_forwarding_follows_shortest_paths(graph: str) -> None:
    assert_unicast_consistent(graph_records(*NAMED_GRAPHS[graph]))


@PROPERTY
@given(random_graphs())
def test_random_graphs_broadcast_exactly_once(records: dict[PeerName, PeerRecord]) -> None:
    assert_exactly_once(records)


@PROPERTY
@given(random_graphs())
def test_random_graphs_unicast_is_consistent(records: dict[PeerName, PeerRecord]) -> None:
    assert_unicast_consistent(records)


@PROPERTY
@given(random_graphs(), st.data())
def test_next_hop_any_reaches_destinations_over_listed_links(
        records: dict[PeerName, PeerRecord], data: st.DataObject) -> None:
    local = data.draw(st.sampled_from(sorted(records)))
    routes = compute_routes(records, local)
    listed = {n: {c.peer for c in r.connections} for n, r in records.items()}
    undirected: dict[int, set[int]] = {n: set() for n in records}
    for n, peers in listed.items():
        for p in peers:
            if n != local and p == local:
                continue
            undirected[n].add(p)
            undirected[p].add(n)
    dist = distances(undirected, local)
    for dst in records:
        hop = routes.next_hop_any(dst)
        if dst == local or dst not in dist:
            assert hop is None
        else:
            assert hop in listed[local]
            assert distances(undirected, hop).get(dst) == dist[dst] - 1


def test_a_large_limited_mesh_routes_agree_with_a_plain_bfs() -> None:
    """1000 peers with 16 neighbours each: every unicast hop of one router and
    20 broadcast trees of every router checked against BFS distances computed
    here.  (How fast routes are built is measured by bench/topology_routes.py.)"""
    n = 1000
    edges = {(i, (i + k) % n + 1) for i in range(1, n + 1) for k in (1, 7, 31, 127, 251, 400,
                                                                   12, 99)}
    records = graph_records(range(1, n + 1), [(a, b) for a, b in edges if a != b])
    adjacency = symmetric_adjacency(records)
    dist = distances(adjacency, 1)
    assert len(dist) == n  # the oracle's own premise: the mesh is connected
    routes = compute_routes(records, P(1))
    assert routes.reachable() == frozenset(dist)
    from_hop = {hop: distances(adjacency, hop) for hop in adjacency[1]}
    assert routes.next_hop(P(1)) is None
    for dst in range(2, n + 1):
        hop = routes.next_hop(P(dst))
        assert hop in from_hop and from_hop[hop][dst] == dist[dst] - 1, (dst, hop)
    everyone = {name: compute_routes(records, name) for name in records}
    for origin in range(1, n + 1, 50):
        from_origin = distances(adjacency, origin)
        parent: dict[int, int] = {}
        for node, node_routes in everyone.items():
            for child in node_routes.broadcast_next_hops(P(origin)):
                assert child in adjacency[node], (origin, node, child)
                assert from_origin[child] == from_origin[node] + 1, (origin, node, child)
                assert child not in parent, f"{child} hears {origin}'s broadcast twice"
                parent[child] = node
        assert set(parent) == set(range(1, n + 1)) - {origin}, origin
