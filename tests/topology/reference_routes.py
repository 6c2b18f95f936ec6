"""The route computation as it was before graphs were shared: each router builds its
own adjacency and BFS from scratch.  Kept verbatim (apart from names) as the
reference the shared ``RouteGraph``/``Routes`` must agree with exactly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from meshrouter.names import PeerName
from meshrouter.topology.records import PeerRecord

_UNSEEN = -1


class ReferenceRoutes:
    """Route tables of one router for one records snapshot (immutable)."""

    __slots__ = (
        "_any_adjacency",
        "_any_hops",
        "_broadcast_cache",
        "_hops",
        "_index",
        "_local_index",
        "_names",
        "_reachable",
        "_records",
        "_symmetric",
        "_unicast_table",
        "local",
    )

    def __init__(self, records: Mapping[PeerName, PeerRecord], local: PeerName) -> None:
        self.local = local
        self._records = dict(records)
        names = sorted(self._records.keys() | {local})
        self._names: list[PeerName] = names
        self._index: dict[PeerName, int] = {name: i for i, name in enumerate(names)}
        self._local_index = self._index[local]
        self._symmetric = _symmetric_adjacency(self._records, self._index, len(names))
        self._hops = _first_hops(self._symmetric, self._local_index)
        self._broadcast_cache: dict[PeerName, tuple[PeerName, ...]] = {}
        self._any_adjacency: list[tuple[int, ...]] | None = None
        self._any_hops: list[int] | None = None
        self._reachable: frozenset[PeerName] | None = None
        self._unicast_table: dict[PeerName, PeerName] | None = None

    # -- unicast over symmetric established links ---------------------------------

    def next_hop(self, dst: PeerName) -> PeerName | None:
        """Neighbour to send data for ``dst`` to; None if unreachable or ``dst`` is us."""
        index = self._index.get(dst)
        if index is None or index == self._local_index:
            return None
        hop = self._hops[index]
        return None if hop == _UNSEEN else self._names[hop]

    def reachable(self) -> frozenset[PeerName]:
        """Peers reachable over symmetric links, including ourselves."""
        if self._reachable is None:
            names = self._names
            self._reachable = frozenset(
                names[i] for i, hop in enumerate(self._hops) if hop != _UNSEEN
            ) | {self.local}
        return self._reachable

    def unicast_table(self) -> dict[PeerName, PeerName]:
        """Destination -> next hop for every reachable peer other than us (a copy)."""
        if self._unicast_table is None:
            names = self._names
            self._unicast_table = {
                names[i]: names[hop]
                for i, hop in enumerate(self._hops)
                if hop != _UNSEEN and i != self._local_index
            }
        return dict(self._unicast_table)

    def neighbours(self) -> list[PeerName]:
        """Our symmetric (data-capable) neighbours, in name order."""
        return [self._names[i] for i in self._symmetric[self._local_index]]

    # -- control-plane unicast over all links ---------------------------------------

    def next_hop_any(self, dst: PeerName) -> PeerName | None:
        """Next hop for gossip unicast, over every listed link in either direction."""
        index = self._index.get(dst)
        if index is None or index == self._local_index:
            return None
        if self._any_hops is None:
            self._any_adjacency = _any_adjacency(self._records, self._index, self.local)
            self._any_hops = _first_hops(self._any_adjacency, self._local_index)
        hop = self._any_hops[index]
        return None if hop == _UNSEEN else self._names[hop]

    # -- broadcast trees --------------------------------------------------------------

    def broadcast_next_hops(self, origin: PeerName) -> list[PeerName]:
        """Our children in ``origin``'s broadcast tree (empty if none or unreachable)."""
        cached = self._broadcast_cache.get(origin)
        if cached is None:
            cached = self._broadcast_children(origin)
            self._broadcast_cache[origin] = cached
        return list(cached)

    def _broadcast_children(self, origin: PeerName) -> tuple[PeerName, ...]:
        origin_index = self._index.get(origin)
        if origin_index is None:
            return ()
        adjacency = self._symmetric
        me = self._local_index
        names = self._names
        if origin_index == me:
            return tuple(names[i] for i in adjacency[me])
        # BFS from the origin until our level is fully discovered.
        dist = [_UNSEEN] * len(names)
        dist[origin_index] = 0
        frontier = [origin_index]
        level = 0
        while frontier and dist[me] == _UNSEEN:
            following: list[int] = []
            level += 1
            for node in frontier:
                for neighbour in adjacency[node]:
                    if dist[neighbour] == _UNSEEN:
                        dist[neighbour] = level
                        following.append(neighbour)
            frontier = following
        if dist[me] == _UNSEEN:
            return ()
        my_level = dist[me]
        children = []
        for neighbour in adjacency[me]:
            if dist[neighbour] != _UNSEEN:
                continue  # at our level or closer to the origin: not our child
            # Its parent is its smallest-named neighbour on our level.
            for candidate in adjacency[neighbour]:
                if dist[candidate] == my_level:
                    if candidate == me:
                        children.append(names[neighbour])
                    break
        return tuple(children)


def reference_routes(records: Mapping[PeerName, PeerRecord],
                     local: PeerName) -> ReferenceRoutes:
    """Route tables for ``local`` over a snapshot of ``records`` (copied)."""
    return ReferenceRoutes(records, local)


def _symmetric_adjacency(records: Mapping[PeerName, PeerRecord], index: Mapping[PeerName, int],
                         size: int) -> list[tuple[int, ...]]:
    """Sorted neighbour indices over links both ends list as established."""
    established = {name: frozenset(c.peer for c in record.connections if c.established)
                   for name, record in records.items()}
    adjacency: list[tuple[int, ...]] = [()] * size
    empty: frozenset[PeerName] = frozenset()
    get = established.get
    for name, peers in established.items():
        neighbours = [index[peer] for peer in peers if name in get(peer, empty)]
        neighbours.sort()
        adjacency[index[name]] = tuple(neighbours)
    return adjacency


def _any_adjacency(records: Mapping[PeerName, PeerRecord], index: Mapping[PeerName, int],
                   local: PeerName) -> list[tuple[int, ...]]:
    """Sorted neighbour indices over every listed link, either direction.

    Links touching ``local`` count only if our own record lists them.
    """
    neighbour_sets: list[set[int]] = [set() for _ in index]
    local_index = index[local]
    for name, record in records.items():
        a = index[name]
        for conn in record.connections:
            b = index.get(conn.peer)
            if b is None or b == a or b == local_index:
                continue  # unknown peer, self-loop, or a link to us that we do not list
            neighbour_sets[a].add(b)
            neighbour_sets[b].add(a)
    return [tuple(sorted(s)) for s in neighbour_sets]


def _first_hops(adjacency: Sequence[Sequence[int]], source: int) -> list[int]:
    """BFS from ``source``; per node the index of the first hop on its tree path.

    Levels are processed in index (= name) order and the first discoverer is
    the parent, so every router derives the same tree.  The source itself gets
    itself as "first hop" so that reachability is ``hop != _UNSEEN``.
    """
    hops = [_UNSEEN] * len(adjacency)
    hops[source] = source
    frontier = [source]
    first = True
    while frontier:
        following: list[int] = []
        for node in frontier:
            via = hops[node]
            for neighbour in adjacency[node]:
                if hops[neighbour] == _UNSEEN:
                    hops[neighbour] = neighbour if first else via
                    following.append(neighbour)
        following.sort()
        frontier = following
        first = False
    return hops
