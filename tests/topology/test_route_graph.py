"""Shared route graphs: same answers as the from-scratch computation, sharing, LRU bounds."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.errors import ConfigError
from meshrouter.names import PeerName
from meshrouter.topology.peer_map import PeerMap
from meshrouter.topology.records import PeerRecord, records_fingerprint
from meshrouter.topology.route_graph import (
    DEFAULT_MAX_GRAPHS,
    DEFAULT_MAX_TREES,
    SHARED_ROUTE_GRAPHS,
    RouteGraph,
    RouteGraphCache,
)
from meshrouter.topology.routes import Routes, compute_routes

from .builders import (
    NAMED_GRAPHS,
    P,
    conn,
    graph_records,
    make_topology,
    random_graphs,
    record,
    records_from_links,
)
from .reference_routes import reference_routes

PROPERTY = settings(deadline=None, max_examples=150)
UNKNOWN = PeerName(0)  # random_graphs never draws 0


def assert_matches_reference(records: Mapping[PeerName, PeerRecord],
                             routes_for: Callable[[PeerName], Routes], *,
                             broadcasts_first: bool = False) -> None:
    """Every answer of every router equals the old per-router computation."""
    names = sorted(records)
    probes = [*names, UNKNOWN]
    for local in probes:
        expected = reference_routes(records, local)
        routes = routes_for(local)
        if broadcasts_first:
            for origin in probes:
                assert routes.broadcast_next_hops(origin) == expected.broadcast_next_hops(origin)
        assert routes.unicast_table() == expected.unicast_table()
        assert routes.reachable() == expected.reachable()
        assert routes.neighbours() == expected.neighbours()
        for dst in probes:
            assert routes.next_hop(dst) == expected.next_hop(dst), (local, dst)
            assert routes.next_hop_any(dst) == expected.next_hop_any(dst), (local, dst)
        for origin in probes:
            assert routes.broadcast_next_hops(origin) == expected.broadcast_next_hops(origin), (
                local, origin)


# -- equivalence with the from-scratch computation -------------------------------------------


@pytest.mark.parametrize("graph", sorted(NAMED_GRAPHS))
def test_named_graphs_match_the_reference(graph: str) -> None:
    records = graph_records(*NAMED_GRAPHS[graph])
    shared = RouteGraph(records)
    assert_matches_reference(records, lambda local: Routes(shared, local))


@PROPERTY
@given(random_graphs())
def test_random_graphs_match_the_reference(records: dict[PeerName, PeerRecord]) -> None:
    shared = RouteGraph(records)
    assert_matches_reference(records, lambda local: Routes(shared, local))
    # Trees first (they learn the components), and a tree cache that must evict.
    tiny = RouteGraph(records, max_trees=1)
    assert_matches_reference(records, lambda local: Routes(tiny, local), broadcasts_first=True)
    assert len(tiny.cached_tree_origins()) <= 1
    assert_matches_reference(records, lambda local: compute_routes(records, local))


@PROPERTY
@given(random_graphs())
def test_a_listed_peer_without_a_record_matches_the_reference(
        records: dict[PeerName, PeerRecord]) -> None:
    missing = min(records)
    partial = {name: r for name, r in records.items() if name != missing}
    shared = RouteGraph(partial)
    routes = Routes(shared, missing)
    expected = reference_routes(partial, missing)
    assert routes.reachable() == expected.reachable() == frozenset({missing})
    assert routes.unicast_table() == expected.unicast_table() == {}
    for name in [*records, UNKNOWN]:
        assert routes.next_hop_any(name) is expected.next_hop_any(name) is None
        assert routes.broadcast_next_hops(name) == expected.broadcast_next_hops(name) == []
    assert_matches_reference(partial, lambda local: Routes(shared, local))


@st.composite
def changed_graphs(draw: st.DrawFn) -> tuple[dict[PeerName, PeerRecord],
                                             dict[PeerName, PeerRecord]]:
    """A random graph and the same peers after some of them changed their links."""
    before = draw(random_graphs())
    names = sorted(before)
    after = dict(before)
    for name in draw(st.lists(st.sampled_from(names), max_size=4, unique=True)):
        peers = draw(st.lists(st.sampled_from(names), max_size=len(names), unique=True))
        connections = [conn(p, established=draw(st.booleans())) for p in peers if p != name]
        after[name] = replace(before[name], version=before[name].version + 1,
                              connections=tuple(sorted(connections, key=lambda c: c.peer)))
    return before, after


@PROPERTY
@given(changed_graphs())
def test_a_graph_derived_from_its_parent_equals_one_built_from_scratch(
        graphs: tuple[dict[PeerName, PeerRecord], dict[PeerName, PeerRecord]]) -> None:
    before, after = graphs
    parent = RouteGraph(before)
    for origin in before:  # the parent's learned trees may be shared only if still true
        parent.broadcast_tree(origin)
    derived = RouteGraph(after, parent=parent)
    scratch = RouteGraph(after)
    assert derived.fingerprint == scratch.fingerprint
    assert derived.names == scratch.names
    assert derived.links() == scratch.links()
    assert_matches_reference(after, lambda local: Routes(derived, local))
    # Told which records were written (as ``Topology`` tells it), the same graph.
    written = [name for name in after if after[name] is not before[name]]
    hinted = RouteGraph(after, parent=parent, changed=written)
    assert hinted.links() == scratch.links()
    assert_matches_reference(after, lambda local: Routes(hinted, local))


def test_a_derived_graph_shares_what_did_not_change() -> None:
    records = graph_records(*NAMED_GRAPHS["ring"])  # 1-2-...-8-1
    parent = RouteGraph(records)
    changed = dict(records)
    changed[P(5)] = replace(records[P(5)], version=2, connections=(conn(4),))  # drops 6
    derived = RouteGraph(changed, parent=parent)
    assert derived.registry is parent.registry
    untouched = [parent.slot_of(P(n)) for n in (1, 2, 3, 7, 8)]
    assert all(derived.symmetric[i] is parent.symmetric[i] for i in untouched)  # type: ignore[index]
    assert derived.links() == RouteGraph(changed).links()
    # A new peer gets a new slot: everything else is kept, nothing renumbered.
    grown = {**changed, P(9): record(9, connections=[conn(1)])}
    grown[P(1)] = replace(changed[P(1)], version=2,
                          connections=(*changed[P(1)].connections, conn(9)))
    bigger = RouteGraph(grown, parent=derived)
    assert all(bigger.symmetric[i] is derived.symmetric[i] for i in untouched[1:])  # type: ignore[index]
    assert bigger.links() == RouteGraph(grown).links()
    assert bigger.links()[P(9)] == (P(1),)


def test_a_change_without_a_new_data_link_shares_the_parents_trees() -> None:
    records = graph_records(*NAMED_GRAPHS["ring"])  # 1-2-...-8-1
    parent = RouteGraph(records)
    root = parent.slot_of(P(1))
    assert root is not None
    tree = parent.broadcast_tree(P(1))
    dist = parent.distances(root)
    # 3 lists 6 (6 does not list 3 back): records differ, data links do not.
    one_sided = dict(records)
    one_sided[P(3)] = replace(records[P(3)], version=2,
                              connections=(*records[P(3)].connections, conn(6)))
    derived = RouteGraph(one_sided, parent=parent)
    assert derived.fingerprint != parent.fingerprint
    assert derived.symmetric is parent.symmetric
    assert derived.distances(root) is dist
    assert derived.broadcast_tree(P(1)) == tree
    # 6 lists 3 back: a new data link, so nothing learned is shared.
    both = dict(one_sided)
    both[P(6)] = replace(records[P(6)], version=2,
                         connections=(conn(3), *records[P(6)].connections))
    linked = RouteGraph(both, parent=derived)
    assert linked.symmetric is not derived.symmetric
    assert linked.cached_tree_origins() == []
    assert linked.broadcast_tree(P(1)) != tree


def test_broadcast_trees_are_children_lists_of_one_full_bfs() -> None:
    records = graph_records(*NAMED_GRAPHS["partial_mesh"])
    graph = RouteGraph(records)
    tree = graph.broadcast_tree(P(1))
    # 1: {2, 3}; 2 -> 4; 3 -> 5, 9; 4 -> 6; 5 -> 7; 9 -> 8 (9 < ... 6 is at the same level)
    assert tree == {1: (2, 3), 2: (4,), 3: (5, 9), 4: (6,), 5: (7,), 9: (8,)}
    assert graph.broadcast_tree(P(99)) is None
    assert graph.cached_tree_origins() == [P(1)]  # one distance array, cached


# -- sharing between routers -------------------------------------------------------------------


def chain_records() -> list[PeerRecord]:
    return [record(2, connections=[conn(1), conn(3)]), record(3, connections=[conn(2)])]


def test_two_topologies_with_equal_records_share_one_graph() -> None:
    SHARED_ROUTE_GRAPHS.clear()
    a, b = make_topology(1), make_topology(1)
    for topo in (a, b):
        topo.set_local_connections([conn(2)])
        topo.apply(PeerMap.of(*chain_records()), random.Random(1))
    assert a.peer_map == b.peer_map and a.fingerprint == b.fingerprint
    routes_a, routes_b = a.routes(), b.routes()
    assert routes_a is not routes_b
    assert routes_a.graph is routes_b.graph
    assert (a.routes_computed, a.routes_shared) == (1, 0)
    assert (b.routes_computed, b.routes_shared) == (0, 1)
    assert routes_b.unicast_table() == {2: 2, 3: 2}
    # The same change reaches both: again one build, one hit.
    delta = a.set_local_connections([conn(2), conn(3)])
    assert delta is not None
    b.set_local_connections([conn(2), conn(3)])
    assert a.fingerprint == b.fingerprint
    assert a.routes().graph is b.routes().graph is not routes_a.graph
    assert (a.routes_computed, a.routes_shared) == (2, 0)
    assert (b.routes_computed, b.routes_shared) == (0, 2)


def test_routers_with_different_names_share_the_graph_of_the_same_records() -> None:
    SHARED_ROUTE_GRAPHS.clear()
    names = [1, 2, 3]
    topologies = {n: make_topology(n) for n in names}
    peers = {1: [2], 2: [1, 3], 3: [2]}
    for n, topo in topologies.items():
        topo.set_local_connections([conn(p) for p in peers[n]])
    for _ in range(3):  # full-state exchange along the chain until converged
        for a, b in ((1, 2), (2, 1), (2, 3), (3, 2)):
            topologies[b].apply(topologies[a].peer_map, random.Random(0))
    routes = {n: topologies[n].routes() for n in names}
    assert len({id(r.graph) for r in routes.values()}) == 1
    assert sum(t.routes_computed for t in topologies.values()) == 1
    assert sum(t.routes_shared for t in topologies.values()) == 2
    assert routes[1].unicast_table() == {2: 2, 3: 2}
    assert routes[3].unicast_table() == {1: 2, 2: 2}
    assert routes[2].broadcast_next_hops(P(1)) == [3]
    assert routes[1].broadcast_next_hops(P(1)) == [2]


def test_a_topology_derives_its_next_graph_and_keeps_its_routes_while_unchanged() -> None:
    SHARED_ROUTE_GRAPHS.clear()
    topo = make_topology(1)
    topo.set_local_connections([conn(2)])
    topo.apply(PeerMap.of(*chain_records()), random.Random(1))
    first = topo.routes()
    assert topo.set_listen_port(7000) is not None
    second = topo.routes()
    assert second is not first and topo.routes_computed == 2
    # The graph of the newer set was derived from the previous one (no link changed).
    assert second.graph.symmetric is first.graph.symmetric
    SHARED_ROUTE_GRAPHS.clear()
    assert topo.routes() is second  # held by the topology itself, no lookup needed
    assert topo.routes_computed == 2 and topo.routes_shared == 0


def test_compute_routes_uses_the_shared_cache() -> None:
    SHARED_ROUTE_GRAPHS.clear()
    records = graph_records(*NAMED_GRAPHS["star"])
    first = compute_routes(records, P(1))
    assert compute_routes(dict(records), P(3)).graph is first.graph
    assert len(SHARED_ROUTE_GRAPHS) == 1
    assert records_fingerprint(records.values()) in SHARED_ROUTE_GRAPHS


# -- bounds -----------------------------------------------------------------------------------


def ring_of(size: int, offset: int = 0) -> dict[PeerName, PeerRecord]:
    nodes = [offset + i for i in range(1, size + 1)]
    return graph_records(nodes, [(nodes[i], nodes[(i + 1) % size]) for i in range(size)])


def test_graph_cache_is_a_bounded_lru() -> None:
    cache = RouteGraphCache(max_graphs=3)
    graphs = [RouteGraph(ring_of(4, offset=10 * k)) for k in range(5)]
    for graph in graphs[:3]:
        cache.add(graph.fingerprint, graph)
    assert cache.get(graphs[0].fingerprint) is graphs[0]  # now the most recently used
    cache.add(graphs[3].fingerprint, graphs[3])
    assert len(cache) == 3
    assert graphs[1].fingerprint not in cache
    assert list(cache) == [graphs[2], graphs[0], graphs[3]]
    built, was_built = cache.get_or_build(ring_of(4, offset=40))
    assert was_built and built.fingerprint == graphs[4].fingerprint
    again, was_built = cache.get_or_build(ring_of(4, offset=40))
    assert again is built and not was_built
    assert list(cache) == [graphs[0], graphs[3], built]
    cache.max_entries = 1
    assert list(cache) == [built]
    with pytest.raises(ConfigError):
        cache.max_entries = 0
    cache.clear()
    assert len(cache) == 0 and cache.get(built.fingerprint) is None


def test_the_shared_cache_stays_bounded() -> None:
    SHARED_ROUTE_GRAPHS.clear()
    assert SHARED_ROUTE_GRAPHS.max_entries == DEFAULT_MAX_GRAPHS
    for k in range(DEFAULT_MAX_GRAPHS + 5):
        topo = make_topology(1)
        topo.set_local_connections([conn(p) for p in range(2, 3 + k)])
        topo.routes()
    assert len(SHARED_ROUTE_GRAPHS) == DEFAULT_MAX_GRAPHS


def test_broadcast_trees_are_a_bounded_lru_per_graph() -> None:
    records = ring_of(8)
    graph = RouteGraph(records, max_trees=3)
    for origin in (1, 2, 3, 4, 5):
        graph.broadcast_tree(P(origin))
    assert graph.cached_tree_origins() == [3, 4, 5]
    graph.broadcast_tree(P(3))
    assert graph.cached_tree_origins() == [4, 5, 3]
    graph.broadcast_tree(P(1))  # recomputed after eviction, same answer
    assert graph.cached_tree_origins() == [5, 3, 1]
    assert_matches_reference(records, lambda local: Routes(graph, local))
    assert len(graph.cached_tree_origins()) == 3
    with pytest.raises(ConfigError):
        RouteGraph(records, max_trees=0)


def test_default_tree_bound() -> None:
    n = DEFAULT_MAX_TREES + 10
    graph = RouteGraph(ring_of(n))
    for origin in range(1, n + 1):
        graph.broadcast_tree(P(origin))
    assert len(graph.cached_tree_origins()) == DEFAULT_MAX_TREES
    assert graph.cached_tree_origins()[-1] == n


# -- determinism ------------------------------------------------------------------------------


DETERMINISM_SCRIPT = """
import random
from meshrouter.names import PeerName
from meshrouter.topology.peer_map import PeerMap
from meshrouter.topology.records import ConnectionRecord
from meshrouter.topology.topology import Topology

rng = random.Random(5)
names = sorted(rng.sample(range(1, 1 << 48), 40))
links = {n: set() for n in names}
for n in names:
    for m in rng.sample(names, 4):
        if m != n:
            links[n].add(m)
            links[m].add(n)
topologies = {}
for i, n in enumerate(names):
    t = Topology(local_name=PeerName(n), nickname=f"h\\u00e9{i}", uid=i + 1, listen_port=6783,
                 rng=random.Random(i), short_id=i)
    t.set_local_connections(
        ConnectionRecord(PeerName(m), f"10.0.{names.index(m)}.1:{6783 + (m % 3)}",
                         outbound=n < m, established=(n + m) % 7 != 0)
        for m in sorted(links[n]))
    topologies[n] = t
for _ in range(3):
    for n in names:
        for m in sorted(links[n]):
            topologies[m].apply(topologies[n].peer_map, random.Random(0))
for n in names:
    r = topologies[n].routes()
    print(topologies[n].fingerprint, sorted(r.unicast_table().items()))
    print([r.broadcast_next_hops(PeerName(o)) for o in names])
    print([r.next_hop_any(PeerName(o)) for o in names])
    print(topologies[n].discovery_candidates())
"""


def test_results_do_not_depend_on_the_hash_seed() -> None:
    root = Path(__file__).resolve().parents[2]
    outputs = []
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}
        done = subprocess.run([sys.executable, "-c", DETERMINISM_SCRIPT], env=env,
                              capture_output=True, text=True, check=True, cwd=root)
        outputs.append(done.stdout)
    assert outputs[0] and outputs[0] == outputs[1] == outputs[2]


# -- scale ------------------------------------------------------------------------------------


def test_a_thousand_topologies_with_the_same_records_build_one_graph() -> None:
    SHARED_ROUTE_GRAPHS.clear()
    n = 1000
    edges = {(i, (i + k) % n + 1) for i in range(1, n + 1) for k in (1, 7, 31, 127, 251, 400,
                                                                   12, 99)}
    links = {}
    for a, b in edges:
        if a != b:
            links[(a, b)] = links[(b, a)] = True
    records = records_from_links(range(1, n + 1), links)
    # Topologies whose own records are exactly those records (version 2 after connecting).
    full = PeerMap({name: replace(r, version=2, nickname=f"host{name}", uid=100)
                    for name, r in records.items()})
    topologies = []
    for name in range(1, 41):
        topo = make_topology(name)
        own = full.records[P(name)]
        assert own.short_id == name
        topo.set_local_connections(own.connections)
        topo.apply(full, random.Random(0))
        assert topo.peer_map == full
        topologies.append(topo)
    routes = [t.routes() for t in topologies]
    assert len({id(r.graph) for r in routes}) == 1
    assert sum(t.routes_computed for t in topologies) == 1
    origin = P(500)
    children = {r.local: r.broadcast_next_hops(origin) for r in routes}
    expected = {local: reference_routes(full.records, local).broadcast_next_hops(origin)
                for local in children}
    assert children == expected
