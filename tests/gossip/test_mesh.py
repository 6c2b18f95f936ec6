"""Many GossipCores wired by the deterministic in-memory pump of harness.py."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.gossip.relay import fanout_size
from meshrouter.names import PeerName
from meshrouter.wire.messages import BroadcastMsg, DigestMsg, GossipMsg, Message
from tests.gossip.counter_set import CounterSet

from .harness import CHANNEL, BfsRoutes, Graph, Mesh, connect, count_kinds, full_mesh, line, ring

GRAPHS = {
    "line": line(7),
    "ring": ring(8),
    "full_mesh": full_mesh(6),
}


Delivered = list[tuple[PeerName, PeerName, Message]]


def converge_by_periodic_digests(
    mesh: Mesh, expected: Mapping[str, int], max_rounds: int = 200
) -> int:
    """Run anti-entropy rounds (every node's ``periodic``, then pump) until the
    mesh holds ``expected`` everywhere; return how many rounds that took."""
    for rounds in range(max_rounds + 1):
        if mesh.converged_to(expected):
            return rounds
        for node in sorted(mesh.graph):
            mesh.cores[node].periodic()
        mesh.pump()
    raise AssertionError(f"not converged after {max_rounds} rounds of periodic digests")


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


def assert_gossip_relay_shape(mesh: Mesh, origin: PeerName, delivered: Delivered) -> None:
    """Gossip relays only as gossip (never along a broadcast tree), always exactly
    the delta, by each node once -- when it was new to it -- to at most fanout
    neighbours, never back to the neighbour it first heard it from."""
    payload = CounterSet({"k": 1}).encode()
    assert all(
        isinstance(m, GossipMsg) and m.src == s and m.payload == payload for s, _d, m in delivered
    )
    learnt_from: dict[PeerName, PeerName] = {}
    sent_to: dict[PeerName, list[PeerName]] = {node: [] for node in mesh.graph}
    for src, dst, _msg in delivered:
        if dst != origin:  # the origin may hear it back; it is not new there
            learnt_from.setdefault(dst, src)
        sent_to[src].append(dst)
    for node, targets in sent_to.items():
        fanout = fanout_size(len(mesh.graph[node]), mesh.cores[node]._relayer.fanout)
        assert len(targets) == len(set(targets)) <= fanout
        assert learnt_from.get(node) not in targets
        assert node == origin or not targets or node in learnt_from


def originate_gossip(mesh: Mesh, origin: PeerName) -> Delivered:
    delta = mesh.channels[origin].set("k", 1)
    assert delta is not None
    mesh.cores[origin].originate_gossip(CHANNEL, delta)
    return mesh.pump()


@pytest.mark.parametrize("shape", sorted(GRAPHS))
def test_gossip_mode_reaches_everyone_by_relaying_deltas(shape: str) -> None:
    graph = GRAPHS[shape]
    # A fanout covering every neighbour makes the relay reach everyone whatever
    # the rng picks (line and ring: every node has at most 2 neighbours anyway).
    mesh = quiet_mesh(graph, fanout=max(len(p) for p in graph.values()))
    origin = PeerName(1)
    delivered = originate_gossip(mesh, origin)
    assert mesh.converged_to({"k": 1})
    assert_gossip_relay_shape(mesh, origin, delivered)
    # Each node relays once, to all but the neighbour it heard it from.
    assert len(delivered) == sum(len(p) for p in graph.values()) - (len(graph) - 1)


def test_gossip_relay_with_a_small_fanout_is_finished_by_periodic_digests() -> None:
    # Each node relays to 3 of its 11 neighbours: the relay may die out before
    # reaching everyone (Weave's gossip), and the anti-entropy digests finish it.
    graph = full_mesh(12)
    origin = PeerName(1)
    relay_alone_reached_all = []
    for seed in range(20):
        mesh = quiet_mesh(graph, seed=seed)
        delivered = originate_gossip(mesh, origin)
        assert_gossip_relay_shape(mesh, origin, delivered)
        relay_alone_reached_all.append(mesh.converged_to({"k": 1}))
        converge_by_periodic_digests(mesh, {"k": 1})
    assert any(relay_alone_reached_all) and not all(relay_alone_reached_all)


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
    converge_by_periodic_digests(mesh, {f"lost{n}": int(n) for n in graph})


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
    # The connect digests and the gossip relay of what they taught may leave a
    # node behind (a hub relays a delta to only some of its neighbours, and
    # those who already exchanged digests with it do not ask again): the
    # periodic digests are the backstop that finishes the job.
    converge_by_periodic_digests(mesh, expected.as_dict())
    # Afterwards a single change still costs exactly N-1 messages.
    mesh.change(PeerName(1), "fresh", 1)
    assert len(mesh.pump()) == len(graph) - 1
