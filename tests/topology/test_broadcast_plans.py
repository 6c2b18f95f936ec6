"""The origin's broadcast plan: followed hop by hop, it is the broadcast tree.

Oracle: the pre-sharing reference routes (``reference_routes``), whose
per-forwarder trees each reachable peer receives a broadcast from exactly once.
Following the origin's plan the way forwarders do (``split_forest`` at each
hop) must give the very same (parent, child) pairs.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings

from meshrouter.gossip.broadcast_plan import encode_preorder, split_forest
from meshrouter.names import PeerName
from meshrouter.topology.records import PeerRecord
from meshrouter.topology.routes import compute_routes

from .builders import NAMED_GRAPHS, P, graph_records, random_graphs, symmetric_adjacency
from .reference_routes import reference_routes

PROPERTY = settings(deadline=None, max_examples=200)


def follow_plan(records: Mapping[PeerName, PeerRecord], origin: PeerName,
                direct: frozenset[PeerName] = frozenset()) -> list[tuple[int, int]]:
    """(sender, receiver) of every message, forwarding as the gossip core does."""
    plan = compute_routes(records, origin).broadcast_plan(direct)
    assert plan is not None
    sent: list[tuple[int, int]] = []
    pending = [(int(origin), child, forest) for child, forest in plan]
    while pending:
        sender, child, forest = pending.pop()
        sent.append((sender, int(child)))
        pending.extend((int(child), below, rest) for below, rest in split_forest(forest))
    return sorted(sent)


def reference_tree(records: Mapping[PeerName, PeerRecord],
                   origin: PeerName) -> list[tuple[int, int]]:
    routes = {name: reference_routes(records, name) for name in records}
    sent = []
    frontier = [origin]
    while frontier:
        node = frontier.pop()
        for child in routes[node].broadcast_next_hops(origin):
            sent.append((int(node), int(child)))
            frontier.append(child)
    return sorted(sent)


def assert_plans_are_the_trees(records: Mapping[PeerName, PeerRecord]) -> None:
    adjacency = symmetric_adjacency(records)
    for origin in records:
        sent = follow_plan(records, origin)
        assert sent == reference_tree(records, origin), origin
        receivers = [child for _, child in sent]
        assert len(receivers) == len(set(receivers)), "a peer is planned twice"
        assert all(child in adjacency[sender] for sender, child in sent)


@pytest.mark.parametrize("graph", sorted(NAMED_GRAPHS))
def test_plans_are_the_broadcast_trees(graph: str) -> None:
    assert_plans_are_the_trees(graph_records(*NAMED_GRAPHS[graph]))


@PROPERTY
@given(random_graphs())
def test_random_graphs_plans_are_the_broadcast_trees(
        records: dict[PeerName, PeerRecord]) -> None:
    assert_plans_are_the_trees(records)


def test_exact_plan_of_a_line_with_a_direct_peer_moved_under_the_origin() -> None:
    # 1 - 2 - 3 - 4 - 5, origin 1 sends to 3 itself (a link only its record lists yet).
    records = graph_records(range(1, 6), [(1, 2), (2, 3), (3, 4), (4, 5)])
    plan = compute_routes(records, P(1)).broadcast_plan(frozenset({P(3)}))
    assert plan == [(P(2), b""), (P(3), encode_preorder([(4, 2), (5, 1)]))]
    assert follow_plan(records, P(1), frozenset({P(3)})) == [(1, 2), (1, 3), (3, 4), (4, 5)]


def test_direct_peers_outside_the_graph_are_leaves_and_we_are_never_planned() -> None:
    records = graph_records(range(1, 4), [(1, 2), (2, 3)])
    plan = compute_routes(records, P(1)).broadcast_plan(frozenset({P(2), P(9), P(1)}))
    assert plan == [(P(2), encode_preorder([(3, 1)])), (P(9), b"")]


def test_a_router_without_a_record_plans_only_its_direct_peers() -> None:
    records = graph_records(range(1, 4), [(1, 2), (2, 3)])
    assert compute_routes(records, P(7)).broadcast_plan(frozenset({P(3), P(1)})) == [
        (P(1), b""), (P(3), b"")]


def test_plans_are_cached_per_direct_set_and_handed_out_as_copies() -> None:
    routes = compute_routes(graph_records(range(1, 4), [(1, 2), (2, 3)]), P(2))
    first = routes.broadcast_plan(frozenset())
    assert first is not None
    first.clear()
    assert routes.broadcast_plan(frozenset()) == [(P(1), b""), (P(3), b"")]
