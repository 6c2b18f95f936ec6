"""Many GossipCores wired by the deterministic in-memory pump of harness.py."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.gossip.counter_set import CounterSet
from meshrouter.names import PeerName
from meshrouter.wire.messages import BroadcastMsg, DigestMsg

from .harness import CHANNEL, BfsRoutes, Graph, Mesh, connect, count_kinds, full_mesh, line, ring

GRAPHS = {
    "line": line(7),
    "ring": ring(8),
    "full_mesh": full_mesh(6),
}


def quiet_mesh(graph: Graph, **options: int) -> Mesh:
    mesh = Mesh(graph, **options)  # type: ignore[arg-type]
    greeting = mesh.pump()
    # Equal (empty) states: the greeting digests are answered by nothing.
    assert count_kinds(greeting) == {"DigestMsg": sum(len(p) for p in graph.values())}
    return mesh


@pytest.mark.parametrize("shape", sorted(GRAPHS))
def test_one_change_reaches_every_node_with_one_message_per_node(shape: str) -> None:
    graph = GRAPHS[shape]
    for origin in sorted(graph):
        mesh = quiet_mesh(graph)
        mesh.change(origin, "k", 1)
        delivered = mesh.pump()
        assert mesh.converged_to({"k": 1})
        # A spanning tree: exactly N-1 broadcasts, each node reached once.
        assert count_kinds(delivered) == {"BroadcastMsg": len(graph) - 1}
        receivers = sorted(dst for _src, dst, _msg in delivered)
        assert receivers == sorted(set(graph) - {origin})
        assert all(isinstance(m, BroadcastMsg) and m.src == origin for _s, _d, m in delivered)


@pytest.mark.parametrize("n", [2, 3, 5, 10, 25])
def test_full_mesh_change_costs_exactly_n_minus_one_messages(n: int) -> None:
    mesh = quiet_mesh(full_mesh(n))
    mesh.change(PeerName(1), "k", 1)
    delivered = mesh.pump()
    assert len(delivered) == n - 1
    assert mesh.converged_to({"k": 1})
    total_broadcasts = sum(
        core.stats.total("sent_messages", "broadcast") for core in mesh.cores.values()
    )
    assert total_broadcasts == n - 1


def test_concurrent_changes_each_cost_n_minus_one() -> None:
    graph = ring(6)
    mesh = quiet_mesh(graph)
    for node in sorted(graph):
        mesh.change(node, f"k{node}", int(node))
    delivered = mesh.pump()
    assert len(delivered) == len(graph) * (len(graph) - 1)
    assert mesh.converged_to({f"k{n}": int(n) for n in graph})


@pytest.mark.parametrize("shape", sorted(GRAPHS))
def test_gossip_mode_reaches_everyone_by_relaying_deltas(shape: str) -> None:
    mesh = quiet_mesh(GRAPHS[shape])
    origin = PeerName(1)
    delta = mesh.channels[origin].set("k", 1)
    assert delta is not None
    mesh.cores[origin].originate_gossip(CHANNEL, delta, mesh.rng)
    mesh.pump()
    assert mesh.converged_to({"k": 1})


@pytest.mark.parametrize("shape", sorted(GRAPHS))
def test_divergent_states_converge_through_the_connect_digests(shape: str) -> None:
    graph = GRAPHS[shape]
    initial = {node: {f"own{node}": 1, "shared": int(node)} for node in graph}
    mesh = Mesh(graph, initial=initial)
    delivered = mesh.pump()
    expected = {f"own{n}": 1 for n in graph} | {"shared": max(graph)}
    assert mesh.converged_to(expected)
    # No ping-pong: a digest with reply=True is never answered by a digest.
    digests = [m for _s, _d, m in delivered if isinstance(m, DigestMsg)]
    requests = [m for m in digests if not m.reply]
    assert len(requests) == sum(len(p) for p in graph.values())  # one per link end
    assert len(digests) - len(requests) <= len(requests)


def test_state_diverged_after_connecting_converges_through_periodic_digests() -> None:
    graph = ring(7)
    mesh = quiet_mesh(graph)
    for node in graph:  # changes nobody originated (e.g. lost while a link was down)
        mesh.channels[node].state.merge(CounterSet({f"lost{node}": int(node)}))
    expected = {f"lost{n}": int(n) for n in graph}
    rng = random.Random(11)
    for _round in range(50):
        for node in sorted(graph):
            mesh.cores[node].periodic(rng)
        mesh.pump()
        if mesh.converged_to(expected):
            break
    assert mesh.converged_to(expected)


def test_partition_heals_through_digests_of_the_new_link() -> None:
    left = line(3)
    right: Graph = {PeerName(n): set() for n in (4, 5, 6)}
    connect(right, PeerName(4), PeerName(5))
    connect(right, PeerName(5), PeerName(6))
    graph: Graph = left | right
    mesh = quiet_mesh(graph)
    mesh.change(PeerName(1), "left", 1)
    mesh.change(PeerName(6), "right", 1)
    mesh.pump()
    assert mesh.channels[PeerName(3)].state.get("right") is None
    # The link 3-4 comes up: routes are recomputed, then the heal path runs.
    connect(graph, PeerName(3), PeerName(4))
    for name, core in mesh.cores.items():
        core.set_routes(BfsRoutes(graph, name))
    mesh.cores[PeerName(3)].neighbour_up(PeerName(4))
    mesh.cores[PeerName(4)].neighbour_up(PeerName(3))
    mesh.pump()
    assert mesh.converged_to({"left": 1, "right": 1})


@st.composite
def connected_graphs(draw: st.DrawFn) -> Graph:
    n = draw(st.integers(min_value=2, max_value=9))
    graph: Graph = {PeerName(i): set() for i in range(1, n + 1)}
    for i in range(2, n + 1):  # a random spanning tree keeps it connected
        connect(graph, PeerName(i), PeerName(draw(st.integers(1, i - 1))))
    extra = draw(st.lists(st.tuples(st.integers(1, n), st.integers(1, n)), max_size=n))
    for a, b in extra:
        if a != b:
            connect(graph, PeerName(a), PeerName(b))
    return graph


@settings(deadline=None, max_examples=60)
@given(
    connected_graphs(),
    st.dictionaries(st.integers(1, 9), st.dictionaries(st.sampled_from("abc"), st.integers(0, 5))),
    st.integers(0, 2**32),
)
def test_any_connected_mesh_converges_to_the_merge_of_all_states(
    graph: Graph, states: dict[int, dict[str, int]], seed: int
) -> None:
    initial = {PeerName(n): s for n, s in states.items() if PeerName(n) in graph}
    mesh = Mesh(graph, initial=initial, seed=seed)
    mesh.pump()
    expected = CounterSet()
    for s in initial.values():
        expected.merge(CounterSet(s))
    assert mesh.converged_to(expected.as_dict())
    # Afterwards a single change still costs exactly N-1 messages.
    mesh.change(PeerName(1), "fresh", 1)
    assert len(mesh.pump()) == len(graph) - 1
