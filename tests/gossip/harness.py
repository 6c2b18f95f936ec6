"""A deterministic in-memory mesh of GossipCore instances for tests.

Routes come from a plain BFS over the test graph (neighbours visited in sorted
order), the same rule the topology package uses, so broadcast trees are
consistent across nodes.  ``pump`` moves messages round-robin (sorted senders,
sorted receivers, one message per link per round) through the real wire codec
until every send slot is empty, and logs every delivery.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Mapping

from meshrouter.gossip.core import GossipCore
from meshrouter.names import PeerName
from meshrouter.wire.messages import (
    Message,
    decode_message,
    encode_message,
)
from tests.gossip.counter_set import CounterSetChannel

CHANNEL = "counters"
Graph = dict[PeerName, set[PeerName]]


def bfs_parents(graph: Graph, root: PeerName) -> dict[PeerName, PeerName | None]:
    parents: dict[PeerName, PeerName | None] = {root: None}
    queue = deque([root])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph[node]):
            if nxt not in parents:
                parents[nxt] = node
                queue.append(nxt)
    return parents


class BfsRoutes:
    """RouteView of node ``me`` over a fixed graph."""

    def __init__(self, graph: Graph, me: PeerName) -> None:
        self.graph = graph
        self.me = me
        self._mine = bfs_parents(graph, me)

    def next_hop_any(self, dst: PeerName) -> PeerName | None:
        if dst not in self._mine or dst == self.me:
            return None
        node = dst
        while self._mine[node] != self.me:
            parent = self._mine[node]
            assert parent is not None
            node = parent
        return node

    def broadcast_next_hops(self, origin: PeerName) -> list[PeerName]:
        parents = bfs_parents(self.graph, origin)
        return sorted(node for node, parent in parents.items() if parent == self.me)


def line(n: int) -> Graph:
    graph: Graph = {PeerName(i): set() for i in range(1, n + 1)}
    for i in range(1, n):
        connect(graph, PeerName(i), PeerName(i + 1))
    return graph


def ring(n: int) -> Graph:
    graph = line(n)
    connect(graph, PeerName(n), PeerName(1))
    return graph


def full_mesh(n: int) -> Graph:
    graph: Graph = {PeerName(i): set() for i in range(1, n + 1)}
    for a in graph:
        for b in graph:
            if a < b:
                connect(graph, a, b)
    return graph


def connect(graph: Graph, a: PeerName, b: PeerName) -> None:
    graph[a].add(b)
    graph[b].add(a)


def kind(msg: Message) -> str:
    return type(msg).__name__


class Mesh:
    def __init__(
        self,
        graph: Graph,
        *,
        initial: Mapping[PeerName, Mapping[str, int]] | None = None,
        seed: int = 0,
        fanout: int | None = None,
        connect_now: bool = True,
    ) -> None:
        self.graph = graph
        self.rng = random.Random(seed)
        self.cores: dict[PeerName, GossipCore] = {}
        self.channels: dict[PeerName, CounterSetChannel] = {}
        self.log: list[tuple[PeerName, PeerName, Message]] = []
        for name in sorted(graph):
            core = GossipCore(name, rng=self.rng, fanout=fanout)  # one rng: a seed replays
            channel = CounterSetChannel((initial or {}).get(name))
            core.add_channel(CHANNEL, channel)
            core.set_routes(BfsRoutes(graph, name))
            self.cores[name] = core
            self.channels[name] = channel
        if connect_now:
            self.connect_all()

    def connect_all(self) -> None:
        for name in sorted(self.graph):
            for peer in sorted(self.graph[name]):
                self.cores[name].neighbour_up(peer)

    def pump(self, max_rounds: int = 10_000) -> list[tuple[PeerName, PeerName, Message]]:
        """Deliver until quiet; return what was delivered in this call."""
        start = len(self.log)
        for _ in range(max_rounds):
            moved = False
            for src in sorted(self.cores):
                for dst in sorted(self.graph[src]):
                    msg = self.cores[src].pop_outgoing(dst)
                    if msg is None:
                        continue
                    moved = True
                    wire = decode_message(encode_message(msg))
                    assert wire == msg
                    self.log.append((src, dst, wire))
                    self.cores[dst].handle(src, wire)
            if not moved:
                return self.log[start:]
        raise AssertionError("mesh did not go quiet")

    def change(self, node: PeerName, name: str, value: int) -> None:
        delta = self.channels[node].set(name, value)
        assert delta is not None
        self.cores[node].originate_broadcast(CHANNEL, delta)

    def states(self) -> dict[PeerName, dict[str, int]]:
        return {name: ch.state.as_dict() for name, ch in self.channels.items()}

    def converged_to(self, expected: Mapping[str, int]) -> bool:
        return all(state == dict(expected) for state in self.states().values())


def count_kinds(entries: Iterable[tuple[PeerName, PeerName, Message]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _src, _dst, msg in entries:
        counts[kind(msg)] = counts.get(kind(msg), 0) + 1
    return counts
