"""Distance trees patched across views: always equal to a BFS from scratch, never stale."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.names import PeerName
from meshrouter.topology.records import PeerRecord
from meshrouter.topology.route_graph import RouteGraph
from meshrouter.topology.route_slots import SlotRegistry
from meshrouter.topology.route_trees import (
    INF,
    bfs_distances,
    children,
    differing_slots,
    patch_distances,
)
from meshrouter.topology.routes import Routes
from meshrouter.topology.tree_store import SHARED_TREES, TreeStore

from .builders import (
    P,
    conn,
    distances,
    graph_records,
    random_graphs,
    record,
    symmetric_adjacency,
)
from .reference_routes import reference_routes

PROPERTY = settings(deadline=None, max_examples=150)


def adjacency_of(edges: set[tuple[int, int]], size: int) -> list[tuple[int, ...]]:
    """Slot-indexed adjacency; slot order is name order here."""
    found: list[set[int]] = [set() for _ in range(size)]
    for a, b in edges:
        found[a].add(b)
        found[b].add(a)
    return [tuple(sorted(s)) for s in found]


def plain_distances(adjacency: list[tuple[int, ...]], root: int) -> list[int]:
    """Oracle: distances by a dict BFS (builders), INF where unreachable."""
    table = distances({i: set(n) for i, n in enumerate(adjacency)}, root)
    return [table.get(i, INF) for i in range(len(adjacency))]


edge_sets = st.integers(min_value=2, max_value=14).flatmap(lambda n: st.tuples(
    st.just(n),
    st.sets(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda e: e[0] < e[1]),
            max_size=3 * n),
    st.sets(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda e: e[0] < e[1]),
            max_size=6),
    st.integers(0, n - 1),
))


@PROPERTY
@given(edge_sets)
def test_a_patched_tree_equals_a_bfs_of_the_new_adjacency(
        case: tuple[int, set[tuple[int, int]], set[tuple[int, int]], int]) -> None:
    size, edges, toggled, root = case
    old = adjacency_of(edges, size)
    new = adjacency_of(edges ^ toggled, size)
    assert list(bfs_distances(old, root)) == plain_distances(old, root)
    changed = differing_slots(old, new)
    assert changed == sorted({s for e in toggled for s in e if old[s] != new[s]})
    patched = patch_distances(bfs_distances(old, root), old, new, changed)
    assert list(patched) == plain_distances(new, root)


def test_a_removal_that_lengthens_distances_cuts_and_reattaches_only_what_leaned_on_it() -> None:
    #  0 - 1 - 2 - 3        0 - 1   2 - 3
    #  |           |   ->   |           |
    #  4 --------- 5        4 --------- 5
    ring = adjacency_of({(0, 1), (1, 2), (2, 3), (3, 5), (5, 4), (4, 0)}, 6)
    cut = adjacency_of({(0, 1), (2, 3), (3, 5), (5, 4), (4, 0)}, 6)
    assert list(bfs_distances(ring, 0)) == [0, 1, 2, 3, 1, 2]
    assert list(patch_distances(bfs_distances(ring, 0), ring, cut, [1, 2])) == [0, 1, 4, 3, 1, 2]
    # A removal whose deeper end keeps another way one level up changes nothing.
    square = adjacency_of({(0, 1), (0, 2), (1, 3), (2, 3)}, 4)
    around = adjacency_of({(0, 1), (0, 2), (2, 3)}, 4)
    assert list(patch_distances(bfs_distances(square, 0), square, around, [1, 3])) == [0, 1, 1, 2]
    # Cut off entirely: unreachable.
    line = adjacency_of({(0, 1), (1, 2)}, 3)
    alone = adjacency_of({(1, 2)}, 3)
    assert list(patch_distances(bfs_distances(line, 0), line, alone, [0, 1])) == [0, INF, INF]


def test_children_are_the_neighbours_whose_first_closer_neighbour_we_are() -> None:
    #   0 - 1 - 3
    #    \- 2 -/     3's neighbours one level up are 1 and 2: its parent is 1
    adjacency = adjacency_of({(0, 1), (0, 2), (1, 3), (2, 3)}, 4)
    dist = bfs_distances(adjacency, 0)
    assert children(dist, adjacency, 0) == [1, 2]
    assert children(dist, adjacency, 1) == [3]
    assert children(dist, adjacency, 2) == []


# -- graphs of several views share one tree store --------------------------------------


@st.composite
def view_histories(draw: st.DrawFn) -> list[dict[PeerName, PeerRecord]]:
    """A random mesh and a few successive views of it: records change their links,
    peers appear (listing others) and disappear."""
    records = dict(draw(random_graphs()))
    views = [dict(records)]
    spare = 200
    for _ in range(draw(st.integers(1, 6))):
        names = sorted(records)
        action = draw(st.sampled_from(["relink", "relink", "appear", "disappear"]))
        if action == "appear":
            spare += 1
            peers = draw(st.lists(st.sampled_from(names), max_size=4, unique=True))
            records[P(spare)] = record(spare, connections=[conn(p) for p in sorted(peers)])
            for peer in peers:  # they list it back
                old = records[peer]
                records[peer] = replace(old, version=old.version + 1, connections=tuple(
                    sorted((*old.connections, conn(spare)), key=lambda c: c.peer)))
        elif action == "disappear" and len(names) > 2:
            del records[draw(st.sampled_from(names))]
        else:
            for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=3,
                                      unique=True)):
                peers = draw(st.lists(st.sampled_from(names), max_size=len(names), unique=True))
                records[name] = replace(records[name], version=records[name].version + 1,
                                        connections=tuple(conn(p, established=draw(st.booleans()))
                                                          for p in sorted(peers) if p != name))
        views.append(dict(records))
    return views


@settings(deadline=None, max_examples=50)
@given(view_histories(), view_histories(), st.randoms(use_true_random=False))
def test_two_routers_deriving_their_views_in_turn_always_get_exact_routes(
        first: list[dict[PeerName, PeerRecord]], second: list[dict[PeerName, PeerRecord]],
        rng: random.Random) -> None:
    """Each router derives each graph from its previous one; both share the tree
    store, so each router's trees are patched from the other's -- answers must
    match the reference at every step."""
    lineages: list[tuple[list[dict[PeerName, PeerRecord]], list[RouteGraph]]] = [
        (first, []), (second, [])]
    steps = [0] * len(first) + [1] * len(second)
    rng.shuffle(steps)
    for which in steps:
        views, graphs = lineages[which]
        view = views[len(graphs)]
        graph = RouteGraph(view, parent=graphs[-1] if graphs else None)
        graphs.append(graph)
        assert graph.links() == RouteGraph(view).links()
        for local in [*sorted(view)[:2], P(0)]:
            routes, expected = Routes(graph, local), reference_routes(view, local)
            for origin in sorted(view):
                assert routes.broadcast_next_hops(origin) == expected.broadcast_next_hops(origin)
            assert routes.reachable() == expected.reachable()
            assert routes.unicast_table() == expected.unicast_table()


def test_the_store_never_answers_for_another_adjacency() -> None:
    """A tree exact for one view is only ever patched into another's, never returned."""
    store = TreeStore()
    registry = SlotRegistry()
    ring = adjacency_of({(0, 1), (1, 2), (2, 3), (3, 0)}, 4)
    chord = adjacency_of({(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)}, 4)
    assert list(store.distances(registry, ring, 0)) == [0, 1, 2, 1]
    assert list(store.distances(registry, chord, 0)) == [0, 1, 1, 1]
    # Back: not the chord's (patched again, losing the chord lengthens a distance).
    assert list(store.distances(registry, ring, 0)) == [0, 1, 2, 1]
    assert (store.built, store.patched, store.reused) == (1, 2, 0)
    assert list(store.distances(registry, ring, 0)) == [0, 1, 2, 1]
    assert store.reused == 1
    # Another registry numbers peers differently: nothing carried over.
    assert list(store.distances(SlotRegistry(), chord, 2)) == [1, 1, 0, 1]
    assert store.built == 2


def test_graphs_of_different_views_in_one_process_keep_their_own_trees() -> None:
    base = {P(n): record(n, connections=[conn(m) for m in peers])
            for n, peers in {1: [2], 2: [1, 3], 3: [2, 4], 4: [3]}.items()}
    shortcut = dict(base)
    shortcut[P(1)] = record(1, version=2, connections=[conn(2), conn(4)])
    shortcut[P(4)] = record(4, version=2, connections=[conn(1), conn(3)])
    line, ring = RouteGraph(base), RouteGraph(shortcut)
    trees_before = SHARED_TREES.built + SHARED_TREES.patched
    for _ in range(2):  # alternate: each must get its own answer every time
        assert Routes(line, P(1)).unicast_table() == {2: 2, 3: 2, 4: 2}
        assert Routes(ring, P(1)).unicast_table() == {2: 2, 3: 2, 4: 4}
        assert Routes(line, P(3)).broadcast_next_hops(P(1)) == [4]
        assert Routes(ring, P(3)).broadcast_next_hops(P(1)) == []
    assert SHARED_TREES.built + SHARED_TREES.patched > trees_before  # the store was used
    assert symmetric_adjacency(shortcut)[1] == {2, 4}


# -- a router's own lineage: trees patched by the edit journal ------------------------


@settings(deadline=None, max_examples=60)
@given(st.integers(6, 24).flatmap(lambda n: st.tuples(
    st.just(n),
    st.sets(st.tuples(st.integers(1, n), st.integers(1, n)).filter(lambda e: e[0] < e[1]),
            max_size=3 * n),
    st.lists(st.tuples(st.integers(1, n), st.integers(1, n)).filter(lambda e: e[0] != e[1]),
             min_size=1, max_size=60),
    st.lists(st.integers(1, n), min_size=1, max_size=60),
)))
def test_a_tree_inherited_many_versions_back_is_patched_exactly(
        case: tuple[int, set[tuple[int, int]], list[tuple[int, int]], list[int]]) -> None:
    """One router's graphs, each derived from the previous by one toggled link, asked
    for a tree only now and then: every answer equals a BFS of that version."""
    size, edges, toggles, asks = case
    links = {(min(a, b), max(a, b)) for a, b in edges}
    graph = RouteGraph(graph_records(range(1, size + 1), links), max_trees=4)
    for step, (a, b) in enumerate(toggles):
        links ^= {(min(a, b), max(a, b))}
        view = graph_records(range(1, size + 1), links)
        graph = RouteGraph(view, parent=graph, changed=[P(a), P(b)], max_trees=4)
        root = asks[step % len(asks)]
        if step % 3 == 0:
            continue  # the tree is then several versions old when next asked
        expected = distances(symmetric_adjacency(view), root)
        got = graph.distances(graph.registry.index[P(root)])
        assert {graph.name_of(slot): d for slot, d in enumerate(got) if d != INF
                and graph.name_of(slot) in view} == expected
