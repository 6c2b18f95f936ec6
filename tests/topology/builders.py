"""Helpers to build peer names, records, topologies and small graphs for the topology tests."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TypeVar

from hypothesis import strategies as st

from meshrouter.names import PeerName
from meshrouter.topology.records import ConnectionRecord, PeerRecord
from meshrouter.topology.topology import Topology

K = TypeVar("K", bound=int)

# A directed "link": owner lists peer, with the established flag.
DirectedLinks = Mapping[tuple[int, int], bool]


def P(n: int) -> PeerName:
    return PeerName(n)


def make_topology(name: int = 1, *, short_id: int | None = None, uid: int = 100,
                  seed: int = 0) -> Topology:
    """Router ``name``'s topology, its short ID its own name unless given."""
    return Topology(local_name=PeerName(name), nickname=f"host{name}", uid=uid,
                    listen_port=6783, rng=random.Random(seed),
                    short_id=short_id if short_id is not None else name)


def address_of(name: int, port: int = 6783) -> str:
    return f"10.{(name >> 16) & 255}.{(name >> 8) & 255}.{name & 255}:{port}"


def conn(peer: int, *, established: bool = True, outbound: bool = True,
         address: str | None = None) -> ConnectionRecord:
    return ConnectionRecord(
        peer=PeerName(peer),
        address=address if address is not None else address_of(peer),
        outbound=outbound,
        established=established,
    )


def record(name: int, *, version: int = 1, uid: int = 1, short_id: int | None = None,
           connections: Iterable[ConnectionRecord] = (), nickname: str | None = None,
           listen_port: int = 6783) -> PeerRecord:
    return PeerRecord(
        name=PeerName(name),
        nickname=nickname if nickname is not None else f"host{name}",
        uid=uid,
        version=version,
        short_id=short_id if short_id is not None else name % 4096,
        listen_port=listen_port,
        connections=tuple(sorted(connections, key=lambda c: c.peer)),
    )


def records_from_links(nodes: Iterable[int], links: DirectedLinks) -> dict[PeerName, PeerRecord]:
    """Records for ``nodes`` where (a, b) -> established means a lists b."""
    by_owner: dict[int, list[ConnectionRecord]] = {n: [] for n in nodes}
    for (a, b), established in links.items():
        by_owner[a].append(conn(b, established=established, outbound=a < b))
    return {PeerName(n): record(n, connections=cs) for n, cs in by_owner.items()}


def symmetric_links(edges: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bool]:
    links: dict[tuple[int, int], bool] = {}
    for a, b in edges:
        links[(a, b)] = True
        links[(b, a)] = True
    return links


def graph_records(nodes: Iterable[int], edges: Iterable[tuple[int, int]]
                  ) -> dict[PeerName, PeerRecord]:
    return records_from_links(nodes, symmetric_links(edges))


def symmetric_adjacency(records: Mapping[PeerName, PeerRecord]) -> dict[int, set[int]]:
    """Reference: undirected adjacency over links both ends list as established."""
    est = {n: {c.peer for c in r.connections if c.established} for n, r in records.items()}
    return {n: {p for p in peers if p in est and n in est[p]} for n, peers in est.items()}


def distances(adjacency: Mapping[K, set[K]], source: K) -> dict[K, int]:
    dist = {source: 0}
    queue = deque([source])
    while queue:
        node = queue.popleft()
        for nxt in adjacency.get(node, ()):
            if nxt not in dist:
                dist[nxt] = dist[node] + 1
                queue.append(nxt)
    return dist


@st.composite
def random_graphs(draw: st.DrawFn) -> dict[PeerName, PeerRecord]:
    names = sorted(draw(st.sets(st.integers(1, 2**48 - 1), min_size=1, max_size=12)))
    links: dict[tuple[int, int], bool] = {}
    kinds = st.sampled_from(["none", "none", "sym", "sym", "sym", "one_way", "unestablished"])
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            kind = draw(kinds)
            if kind == "sym":
                links[(a, b)] = links[(b, a)] = True
            elif kind == "one_way":
                links[(a, b) if draw(st.booleans()) else (b, a)] = True
            elif kind == "unestablished":
                links[(a, b)] = True
                links[(b, a)] = False
    return records_from_links(names, links)


LINE = (list(range(1, 7)), [(i, i + 1) for i in range(1, 6)])
RING = (list(range(1, 9)), [(i, i % 8 + 1) for i in range(1, 9)])
STAR = (list(range(1, 8)), [(1, i) for i in range(2, 8)])
PARTIAL_MESH = (
    list(range(1, 10)),
    [(1, 2), (1, 3), (2, 3), (2, 4), (3, 5), (4, 5), (4, 6), (5, 7), (6, 7), (6, 8),
     (7, 9), (8, 9), (3, 9)],
)
FULL_MESH = (list(range(1, 7)), [(a, b) for a in range(1, 7) for b in range(a + 1, 7)])
PARTITIONED = (list(range(1, 8)), [(1, 2), (2, 3), (3, 1), (4, 5), (5, 6)])  # 7 isolated
NAMED_GRAPHS = {
    "line": LINE,
    "ring": RING,
    "star": STAR,
    "partial_mesh": PARTIAL_MESH,
    "full_mesh": FULL_MESH,
    "partitioned": PARTITIONED,
}
