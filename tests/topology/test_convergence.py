"""Many Topologies relaying only deltas, delivered in arbitrary order, converge."""

from __future__ import annotations

import random
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.names import PeerName
from meshrouter.topology.peer_map import PeerMap
from meshrouter.topology.topology import Topology

from .builders import conn, distances


@st.composite
def connected_graphs(draw: st.DrawFn) -> tuple[list[int], set[tuple[int, int]]]:
    names = sorted(draw(st.sets(st.integers(1, 50), min_size=2, max_size=8)))
    edges: set[tuple[int, int]] = set()
    for i in range(1, len(names)):  # a random spanning tree keeps it connected
        edges.add((names[draw(st.integers(0, i - 1))], names[i]))
    extra = draw(st.lists(st.tuples(st.sampled_from(names), st.sampled_from(names)), max_size=8))
    edges |= {(min(a, b), max(a, b)) for a, b in extra if a != b}
    return names, edges


class Mesh:
    """Routers that flood deltas to their current neighbours; delivery order is chosen."""

    def __init__(self, names: list[int], adjacency: dict[int, set[int]]) -> None:
        self.wires = adjacency  # the TCP connections that exist (messages on them arrive)
        self.topologies = {
            n: Topology(local_name=PeerName(n), nickname=str(n), uid=n, listen_port=6783,
                        rng=random.Random(n), short_id=0)  # every short ID collides
            for n in names
        }
        self.links: dict[int, set[int]] = {n: set() for n in names}
        self.queue: deque[tuple[int, int, PeerMap]] = deque()
        self.rng = random.Random(0)

    def set_links(self, node: int, peers: set[int]) -> None:
        self.links[node] = set(peers)
        delta = self.topologies[node].set_local_connections(conn(p) for p in peers)
        if delta is not None:
            self.send(node, delta)

    def send(self, src: int, data: PeerMap) -> None:
        for dst in sorted(self.links[src]):
            self.queue.append((src, dst, data))

    def run(self, choose: st.DataObject) -> None:
        steps = 0
        while self.queue:
            steps += 1
            assert steps < 20_000
            index = choose.draw(st.integers(0, len(self.queue) - 1)) if steps < 50 else 0
            self.queue.rotate(-index)
            self.deliver_one()

    def deliver_one(self) -> None:
        src, dst, data = self.queue.popleft()
        if dst not in self.wires[src]:
            return  # connection gone: the message is lost with it
        delta = self.topologies[dst].apply(PeerMap.decode(data.encode()), self.rng)
        if delta is not None:
            self.send(dst, delta)


def assert_converged(mesh: Mesh, adjacency: dict[int, set[int]], *,
                     lowest_keeps_id: bool = True) -> None:
    for name, topo in mesh.topologies.items():
        component = set(distances(adjacency, name))
        assert set(topo.peer_map.records) == component
        reference = mesh.topologies[min(component)].peer_map
        assert topo.peer_map == reference
        assert topo.fingerprint == mesh.topologies[min(component)].fingerprint
        assert topo.routes().reachable() == frozenset(component)
        short_ids = [r.short_id for r in topo.records()]
        assert len(set(short_ids)) == len(short_ids)
        if lowest_keeps_id:
            lowest = topo.record(PeerName(min(component)))
            assert lowest is not None and lowest.short_id == 0


@settings(deadline=None, max_examples=100)
@given(connected_graphs(), st.data())
def test_delta_flooding_converges_and_partitions_are_collected(
        graph: tuple[list[int], set[tuple[int, int]]], choose: st.DataObject) -> None:
    names, edges = graph
    adjacency: dict[int, set[int]] = {n: set() for n in names}
    for a, b in edges:
        adjacency[a].add(b)
        adjacency[b].add(a)
    mesh = Mesh(names, adjacency)
    for node in choose.draw(st.permutations(names)):
        mesh.set_links(node, adjacency[node])
        # interleave: deliver a few messages between link setups
        for _ in range(choose.draw(st.integers(0, 3))):
            if mesh.queue:
                mesh.deliver_one()
    mesh.run(choose)
    assert_converged(mesh, adjacency)

    # Cut one edge; both ends notice; only deltas flow.
    a, b = choose.draw(st.sampled_from(sorted(edges)))
    adjacency[a].discard(b)
    adjacency[b].discard(a)
    mesh.set_links(a, adjacency[a])
    mesh.set_links(b, adjacency[b])
    mesh.run(choose)
    assert_converged(mesh, adjacency, lowest_keeps_id=False)
