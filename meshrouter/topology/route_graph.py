"""Theory of operation: the routing graph of one records snapshot, shared by fingerprint.

Routes are a pure function of the record set and of which router asks (see
``routes``).  Everything that does not depend on the asker lives here, built
once per distinct record set:

* the peers in name order and their dense indices (BFS uses lists, not dicts);
* the **symmetric adjacency**: per peer, the sorted indices of the peers it is
  linked to by a connection *both* ends list as established (data links);
* the **any-direction adjacency**: every listed link in either direction,
  established or not (gossip links), with its components' sizes; built lazily
  on the first ``next_hop_any`` because data forwarding never needs it;
* **broadcast trees**, one per origin, computed lazily by one full BFS from the
  origin.  Levels are scanned in name order and a node's parent is the first
  node that discovers it, i.e. its smallest-named neighbour one level closer to
  the origin: the same deterministic tree every router derives from the same
  records.  A tree is stored as, per node index, the tuple of that node's
  children's names (leaves share the empty tuple), so a router's forwarding
  decision is one list lookup.  Only the ``max_trees`` most recently used
  origins are kept (LRU) to bound memory.

While a BFS runs it learns the connected component of its origin; later BFSs
in that component stop as soon as all of it has been reached instead of
scanning the last level's links for nothing.

A graph derived from a parent whose data links are all unchanged (a record
changed, but only in a link one end lists so far, an address or a header --
half of all changes while a mesh forms) shares the parent's adjacency, tree
cache and components outright: trees depend on nothing else.

A graph never changes once built (its tree cache aside, which only memoises),
so any number of routers may share it.  ``SHARED_ROUTE_GRAPHS`` is a small
process-wide LRU (``snapshot_cache``) from a record-set fingerprint (see
``records.records_fingerprint``) to its graph.  In the in-process simulator a
thousand routers holding identical records thus share one adjacency and one
tree per origin; in production a single router runs per process and the cache
merely holds its own latest graphs.  Single-threaded use is assumed (no
locks).  Fingerprints are 128 bits, so two different record sets sharing a
graph by accident is not a practical concern.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence

from meshrouter.errors import ConfigError
from meshrouter.names import PeerName
from meshrouter.topology.records import PeerRecord, records_fingerprint
from meshrouter.topology.snapshot_cache import FingerprintCache

DEFAULT_MAX_TREES = 64
DEFAULT_MAX_GRAPHS = 16

UNSEEN = -1
_UNKNOWN_COMPONENT = -1

BroadcastTree = Sequence[tuple[PeerName, ...]]
"""Per node index, the names of that node's children in one origin's tree."""


class RouteGraph:
    """Immutable adjacency of one record set, plus lazily computed broadcast trees."""

    __slots__ = (
        "_any",
        "_any_component_size",
        "_component_of",
        "_component_sizes",
        "_records",
        "_trees",
        "fingerprint",
        "index",
        "max_trees",
        "names",
        "symmetric",
    )

    def __init__(self, records: Mapping[PeerName, PeerRecord], fingerprint: int | None = None,
                 *, max_trees: int = DEFAULT_MAX_TREES, parent: RouteGraph | None = None,
                 changed: Collection[PeerName] | None = None) -> None:
        """Build from a snapshot of ``records`` (the mapping is copied, records are immutable).

        ``fingerprint`` must be ``records_fingerprint(records.values())``; pass
        it when already known (``Topology`` maintains it) to skip the hashing.
        ``parent``, a graph of a record set with the same names (typically the
        asking router's previous one), lets us recompute only the adjacency of
        peers whose links may have changed instead of every link's; the result
        is identical either way.  ``changed``, with a parent, names every record
        that may differ from the parent's (a superset is fine): the caller knows
        what it wrote, which spares an O(N) scan per derived graph.
        """
        if max_trees < 1:
            raise ConfigError("a route graph must be able to hold at least one tree")
        self._records = dict(records)
        self.fingerprint = (records_fingerprint(self._records.values())
                            if fingerprint is None else fingerprint)
        self.max_trees = max_trees
        symmetric = None if parent is None else _derived_symmetric(parent, self._records, changed)
        if symmetric is None:
            names = sorted(self._records)
            self.names: list[PeerName] = names
            self.index: dict[PeerName, int] = {name: i for i, name in enumerate(names)}
            symmetric = _symmetric_adjacency(self._records, self.index)
        else:
            assert parent is not None
            self.names = parent.names  # same names: share the (never mutated) list and index
            self.index = parent.index
        self.symmetric: list[tuple[int, ...]] = symmetric
        self._any: list[tuple[int, ...]] | None = None
        self._any_component_size: list[int] | None = None
        self._trees: OrderedDict[int, list[tuple[PeerName, ...]]]
        self._component_of: list[int]
        self._component_sizes: list[int]
        if parent is not None and symmetric is parent.symmetric:
            # The records changed but no data link did (a link only one end
            # lists yet, an address, a header): trees and components depend on
            # the symmetric adjacency alone, so the parent's are ours too --
            # shared, not copied, by every graph of this adjacency.
            self._trees = parent._trees
            self._component_of = parent._component_of
            self._component_sizes = parent._component_sizes
        else:
            self._trees = OrderedDict()
            self._component_of = [_UNKNOWN_COMPONENT] * len(self.names)
            self._component_sizes = []

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.index

    # -- broadcast trees ----------------------------------------------------------------

    def broadcast_tree(self, origin: PeerName) -> BroadcastTree | None:
        """Children per node index in ``origin``'s tree; None if ``origin`` is unknown.

        Nodes the origin cannot reach have no children (and are nobody's child).
        """
        origin_index = self.index.get(origin)
        if origin_index is None:
            return None
        trees = self._trees
        tree = trees.get(origin_index)
        if tree is None:
            tree = self._build_tree(origin_index)
            trees[origin_index] = tree
            if len(trees) > self.max_trees:
                trees.popitem(last=False)
        else:
            trees.move_to_end(origin_index)
        return tree

    def cached_tree_origins(self) -> list[PeerName]:
        """Origins whose trees are currently held, least recently used first."""
        return [self.names[i] for i in self._trees]

    def _build_tree(self, origin_index: int) -> list[tuple[PeerName, ...]]:
        adjacency = self.symmetric
        names = self.names
        size = len(names)
        children: list[tuple[PeerName, ...]] = [()] * size
        seen = bytearray(size)
        seen[origin_index] = 1
        component = self._component_of[origin_index]
        remaining = (self._component_sizes[component] - 1
                     if component != _UNKNOWN_COMPONENT else size)
        reached = [origin_index]
        frontier = [origin_index]
        while frontier and remaining:
            following: list[int] = []
            for node in frontier:
                # No duplicates within one adjacency tuple, so filter first, mark after.
                kids = [n for n in adjacency[node] if not seen[n]]
                if kids:
                    for kid in kids:
                        seen[kid] = 1
                    children[node] = tuple([names[kid] for kid in kids])
                    following.extend(kids)
                    remaining -= len(kids)
                    if not remaining:
                        break
            following.sort()
            frontier = following
            reached.extend(following)
        if component == _UNKNOWN_COMPONENT:
            self._label_component(reached)
        return children

    def _label_component(self, members: list[int]) -> None:
        component = len(self._component_sizes)
        self._component_sizes.append(len(members))
        component_of = self._component_of
        for node in members:
            component_of[node] = component

    # -- unicast BFS (per asking router; the caller caches the result) -----------------

    def first_hops(self, source: int) -> list[int]:
        """Per node index, the first hop from ``source`` over symmetric links.

        ``UNSEEN`` for unreachable nodes; the source maps to itself.  Same tree
        rule as broadcast trees, so hop-by-hop forwarding follows one tree.
        """
        component = self._component_of[source]
        limit = self._component_sizes[component] if component != _UNKNOWN_COMPONENT else None
        hops = _first_hops(self.symmetric, source, self.symmetric[source], limit)
        if component == _UNKNOWN_COMPONENT:
            self._label_component([i for i, hop in enumerate(hops) if hop != UNSEEN])
        return hops

    def first_hops_any(self, source: int) -> list[int]:
        """Per node index, the first hop from ``source`` over every listed link.

        Our own first hop is restricted to links ``source``'s record lists:
        those are the only connections it can actually send on.
        """
        any_adjacency = self._any
        any_component_size = self._any_component_size
        if any_adjacency is None or any_component_size is None:
            any_adjacency = self._any = _any_adjacency(self._records, self.index)
            any_component_size = self._any_component_size = _component_sizes(any_adjacency)
        index = self.index
        record = self._records[self.names[source]]
        listed = sorted({
            i for conn in record.connections
            if (i := index.get(conn.peer)) is not None and i != source
        })
        # Our restricted first hop may reach less than our component, never more:
        # the component's size is a safe point to stop at, not a promise to reach.
        return _first_hops(any_adjacency, source, listed, any_component_size[source])


class RouteGraphCache(FingerprintCache[RouteGraph]):
    """Bounded LRU of route graphs by record-set fingerprint."""

    __slots__ = ()

    def __init__(self, max_graphs: int = DEFAULT_MAX_GRAPHS) -> None:
        super().__init__(max_graphs)

    def get_or_build(self, records: Mapping[PeerName, PeerRecord],
                     fingerprint: int | None = None) -> tuple[RouteGraph, bool]:
        """The graph of ``records``, shared if cached; also True if it had to be built."""
        if fingerprint is None:
            fingerprint = records_fingerprint(records.values())
        graph = self.get(fingerprint)
        if graph is not None:
            return graph, False
        graph = RouteGraph(records, fingerprint)
        self.add(fingerprint, graph)
        return graph, True


SHARED_ROUTE_GRAPHS = RouteGraphCache()
"""The process-wide cache every ``Topology`` and ``compute_routes`` use."""


def _symmetric_adjacency(records: Mapping[PeerName, PeerRecord],
                         index: Mapping[PeerName, int]) -> list[tuple[int, ...]]:
    """Sorted neighbour indices over links both ends list as established."""
    established = {name: record.established_peers() for name, record in records.items()}
    adjacency: list[tuple[int, ...]] = [()] * len(index)
    empty: frozenset[PeerName] = frozenset()
    get = established.get
    for name, peers in established.items():
        neighbours = [index[peer] for peer in peers if name in get(peer, empty)]
        if neighbours:
            neighbours.sort()
            adjacency[index[name]] = tuple(neighbours)
    return adjacency


# Above this share of changed records (and this many), patching a parent graph
# stops paying off.
_MAX_DERIVED_CHANGE = 0.25
_MIN_DERIVED_CHANGE = 8


def _derived_symmetric(parent: RouteGraph, records: Mapping[PeerName, PeerRecord],
                       hint: Collection[PeerName] | None) -> list[tuple[int, ...]] | None:
    """The symmetric adjacency of ``records`` patched from ``parent``'s; None if the
    names differ (indices would shift) or too much changed; ``parent.symmetric``
    itself when no data link changed.

    Peer A's neighbours depend on A's record and on the records of the peers A
    lists.  So only the changed records' owners and the peers a changed record
    lists as established (before or after the change) can have other
    neighbours; every other adjacency tuple is reused as is.
    """
    before = parent._records
    if hint is None:
        if records.keys() != before.keys():
            return None
        changed = [name for name, record in records.items() if before[name] is not record]
    else:
        # Names nobody wrote are in both or in neither, so the name sets are equal
        # when the sizes are and every written name is in both.
        if len(records) != len(before) or any(
                name not in records or name not in before for name in hint):
            return None
        changed = [name for name in hint if before[name] is not records[name]]
    if len(changed) > max(_MIN_DERIVED_CHANGE, _MAX_DERIVED_CHANGE * len(records)):
        return None
    affected = set(changed)
    for name in changed:
        affected |= before[name].established_peers()
        affected |= records[name].established_peers()
    adjacency = parent.symmetric  # copied on the first tuple that differs
    index = parent.index
    for name in affected:
        record = records.get(name)
        if record is None:
            continue  # listed but unknown
        neighbours = []
        for peer in record.established_peers():
            other = records.get(peer)
            if other is not None and name in other.established_peers():
                neighbours.append(index[peer])
        neighbours.sort()
        at = index[name]
        if adjacency[at] != tuple(neighbours):
            if adjacency is parent.symmetric:
                adjacency = list(adjacency)
            adjacency[at] = tuple(neighbours) if neighbours else ()
    return adjacency


def _any_adjacency(records: Mapping[PeerName, PeerRecord],
                   index: Mapping[PeerName, int]) -> list[tuple[int, ...]]:
    """Sorted neighbour indices over every listed link, in either direction."""
    neighbour_sets: list[set[int]] = [set() for _ in index]
    for name, record in records.items():
        a = index[name]
        mine = neighbour_sets[a]
        for conn in record.connections:
            b = index.get(conn.peer)
            if b is None or b == a:
                continue  # unknown peer or self-loop
            mine.add(b)
            neighbour_sets[b].add(a)
    return [tuple(sorted(s)) for s in neighbour_sets]


def _component_sizes(adjacency: Sequence[Sequence[int]]) -> list[int]:
    """Per node, the number of nodes in its connected component (itself included)."""
    size = len(adjacency)
    label = [UNSEEN] * size
    sizes: list[int] = []
    for start in range(size):
        if label[start] != UNSEEN:
            continue
        component = len(sizes)
        label[start] = component
        members = 1
        frontier = [start]
        while frontier:
            following: list[int] = []
            for node in frontier:
                kids = [n for n in adjacency[node] if label[n] == UNSEEN]
                for kid in kids:
                    label[kid] = component
                following.extend(kids)
            members += len(following)
            frontier = following
        sizes.append(members)
    return [sizes[component] for component in label]


def _first_hops(adjacency: Sequence[Sequence[int]], source: int, first_level: Sequence[int],
                limit: int | None) -> list[int]:
    """BFS from ``source`` whose first level is ``first_level`` (sorted); per node the
    index of the first hop on its tree path, ``UNSEEN`` if unreached.

    Levels are processed in index (= name) order and the first discoverer is
    the parent, so every router derives the same tree.  The source gets itself
    as "first hop" so that reachability is ``hop != UNSEEN``.  With ``limit``
    (the size of the source's component) the search stops once all are reached.
    """
    hops = [UNSEEN] * len(adjacency)
    hops[source] = source
    frontier = [n for n in first_level if hops[n] == UNSEEN]
    for node in frontier:
        hops[node] = node
    remaining = -1 if limit is None else limit - 1 - len(frontier)
    while frontier and remaining:
        following: list[int] = []
        for node in frontier:
            via = hops[node]
            kids = [n for n in adjacency[node] if hops[n] == UNSEEN]
            if kids:
                for kid in kids:
                    hops[kid] = via
                following.extend(kids)
                remaining -= len(kids)
                if not remaining:
                    break
        following.sort()
        frontier = following
    return hops
