"""Theory of operation: the routing graph of one records snapshot, shared by fingerprint.

Routes are a pure function of the record set and of which router asks (see
``routes``).  Everything that does not depend on the asker lives here, built
once per distinct record set:

* the **symmetric adjacency**: per peer, the peers it is linked to by a
  connection *both* ends list as established (data links), as a list indexed
  by the peer's process-wide slot (``route_slots``) of tuples sorted by name;
* the **any-direction adjacency**: every listed link in either direction,
  established or not (gossip links); built lazily on the first
  ``next_hop_any`` because data forwarding never needs it;
* **BFS trees**, one per root, as distance arrays (``route_trees``): the
  broadcast tree of every origin and the unicast tree of every asking router
  follow the same rule, so one array serves both.  Computed when first asked,
  and only the ``max_trees`` most recently used roots are kept (LRU).

A graph is usually *derived* from the asking router's previous one: only the
links of records that changed are looked at (the caller may say which records
it wrote, sparing a scan of all of them), unchanged neighbour tuples are
reused, and a graph with no data link changed shares its parent's adjacency
and trees outright.

Trees are not rebuilt per graph either.  A graph that lacks a root's tree
first patches the one its own lineage last had (up to ``MAX_TREE_AGE``
versions back) by its journal of changed slots, else asks ``SHARED_TREES``
(``tree_store``: the latest tree of that root anywhere in the process, patched
by the slots whose tuples differ, or a BFS when too many do).

A graph never changes once built (its tree cache aside, which only memoises),
so any number of routers may share it.  ``SHARED_ROUTE_GRAPHS`` is a small
process-wide LRU (``snapshot_cache``) from a record-set fingerprint (see
``records.records_fingerprint``) to its graph.  In the in-process simulator a
thousand routers holding identical records thus share one graph; in
production a single router runs per process and the caches merely hold its own
latest graphs and trees.  Single-threaded use is assumed (no locks).
Fingerprints are 128 bits, so two different record sets sharing a graph by
accident is not a practical concern.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Collection, Mapping

from meshrouter.errors import ConfigError
from meshrouter.names import PeerName
from meshrouter.topology.records import PeerRecord, records_fingerprint
from meshrouter.topology.route_slots import SlotRegistry, registry_for
from meshrouter.topology.route_trees import (
    parent_of,
    patch_from_before,
)
from meshrouter.topology.snapshot_cache import FingerprintCache
from meshrouter.topology.tree_store import SHARED_TREES, worth_patching

DEFAULT_MAX_TREES = 64
DEFAULT_MAX_GRAPHS = 16

UNSEEN = -1
_EMPTY: frozenset[PeerName] = frozenset()

Edits = dict[int, tuple[int, ...]]
"""Slot -> its neighbour tuple before one derivation changed it."""

MAX_TREE_AGE = 32
"""Versions of a router's adjacency an inherited tree may lag behind: the
length of each graph's edit journal."""


class RouteGraph:
    """Immutable adjacency of one record set, plus lazily computed BFS trees."""

    __slots__ = (
        "_any",
        "_generation",
        "_inherited",
        "_journal",
        "_member_set",
        "_names",
        "_records",
        "_trees",
        "fingerprint",
        "max_trees",
        "registry",
        "symmetric",
    )
    registry: SlotRegistry

    def __init__(self, records: Mapping[PeerName, PeerRecord], fingerprint: int | None = None,
                 *, max_trees: int = DEFAULT_MAX_TREES, parent: RouteGraph | None = None,
                 changed: Collection[PeerName] | None = None) -> None:
        """Build from a snapshot of ``records`` (the mapping is copied, records are immutable).

        ``fingerprint`` must be ``records_fingerprint(records.values())``; pass
        it when already known (``Topology`` maintains it) to skip the hashing.
        ``parent``, a graph of an earlier version of the same records (typically
        the asking router's previous one), lets us look only at the links of
        records that changed; the result is identical either way.  ``changed``,
        with a parent, names every record that may differ from the parent's (a
        superset is fine): the caller knows what it wrote, which spares an O(N)
        scan per derived graph.
        """
        if max_trees < 1:
            raise ConfigError("a route graph must be able to hold at least one tree")
        self._records = dict(records)
        self.fingerprint = (records_fingerprint(self._records.values())
                            if fingerprint is None else fingerprint)
        self.max_trees = max_trees
        self._any: list[tuple[int, ...]] | None = None
        self._names: list[PeerName] | None = None
        self._member_set: frozenset[PeerName] | None = None
        if parent is not None and not parent.registry.roomy_for(len(self._records)):
            parent = None  # churn filled the numbering: start afresh (registry_for)
        derived = None if parent is None else _derive(parent, self._records, changed)
        self._generation = 0
        self._inherited: dict[int, tuple[int, array[int]]] = {}
        self._journal: tuple[tuple[int, Edits], ...] = ()
        if derived is None:
            self.registry = registry_for(len(self._records))
            self.symmetric = _symmetric_adjacency(self._records, self.registry)
            self._trees: OrderedDict[int, array[int]] = OrderedDict()
            return
        assert parent is not None
        self.registry = parent.registry
        self.symmetric, same_names, edits = derived
        if same_names:  # never mutated once computed: share
            self._names = parent._names
            self._member_set = parent._member_set
        if self.symmetric is parent.symmetric:
            # Trees depend on the symmetric adjacency alone: the parent's are
            # ours too -- shared, not copied.
            self._trees = parent._trees
            self._generation = parent._generation
            self._inherited = parent._inherited
            self._journal = parent._journal
            return
        # Other links: the parent's trees (and what it inherited, while recent)
        # become starting points to patch from, and the journal says which
        # slots changed since each was exact.
        self._trees = OrderedDict()
        self._generation = generation = parent._generation + 1
        oldest = generation - MAX_TREE_AGE
        self._journal = (*parent._journal[1 - MAX_TREE_AGE:], (generation, edits))
        inherited = {root: entry for root, entry in parent._inherited.items()
                     if entry[0] >= oldest}
        for root, dist in parent._trees.items():
            inherited[root] = (parent._generation, dist)
        if len(inherited) > max_trees:  # the newest are the closest to patch from
            newest = sorted(inherited.items(), key=lambda item: item[1][0])[-max_trees:]
            inherited = dict(newest)
        self._inherited = inherited

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, name: object) -> bool:
        return name in self._records

    @property
    def names(self) -> list[PeerName]:
        """The peers with a record, in name order."""
        if self._names is None:
            self._names = sorted(self._records)
        return self._names

    def members(self) -> frozenset[PeerName]:
        """The peers with a record, as a set (shared while the names do not change)."""
        if self._member_set is None:
            self._member_set = frozenset(self._records)
        return self._member_set

    def slot_of(self, name: PeerName) -> int | None:
        """The slot of a peer that has a record here; None otherwise."""
        return self.registry.index.get(name) if name in self._records else None

    def name_of(self, slot: int) -> PeerName:
        return self.registry.names[slot]

    def links(self) -> dict[PeerName, tuple[PeerName, ...]]:
        """Each peer's symmetric neighbours by name (for tests and tools)."""
        names, index = self.registry.names, self.registry.index
        return {name: tuple(names[s] for s in self.neighbour_slots(index[name]))
                for name in self.names}

    def neighbour_slots(self, slot: int) -> tuple[int, ...]:
        symmetric = self.symmetric
        return symmetric[slot] if slot < len(symmetric) else ()

    # -- trees --------------------------------------------------------------------------

    def distances(self, root: int) -> array[int]:
        """BFS distances from the peer in slot ``root`` (``INF`` where unreachable)."""
        trees = self._trees
        dist = trees.get(root)
        if dist is None:
            earlier = self._inherited.get(root)
            dist = None if earlier is None else self._patch_inherited(*earlier)
            if dist is None:
                dist = SHARED_TREES.distances(self.registry, self.symmetric, root)
            else:
                SHARED_TREES.remember_patched(self.registry, self.symmetric, root, dist)
            trees[root] = dist
            if len(trees) > self.max_trees:
                trees.popitem(last=False)
        else:
            trees.move_to_end(root)
        return dist

    def _patch_inherited(self, generation: int, dist: array[int]) -> array[int] | None:
        """A tree exact for our lineage's ``generation``, patched to this graph by
        the journal (each changed slot's tuple at that generation: the "before"
        of its earliest edit since); None when the journal no longer reaches
        back that far or too much changed.  No adjacency is compared: the
        journal is exact, so this costs the changed region only."""
        journal = self._journal
        if not journal or journal[0][0] > generation + 1:
            return None
        before: Edits = {}
        for edited_at, edits in reversed(journal):  # newest first: earliest wins
            if edited_at <= generation:
                break
            before.update(edits)
        if not worth_patching(len(before), len(self.symmetric)):
            return None
        return patch_from_before(dist, self.symmetric, before)

    def broadcast_tree(self, origin: PeerName) -> dict[PeerName, tuple[PeerName, ...]] | None:
        """``origin``'s tree as each node's children (nodes without any left out);
        None if ``origin`` has no record.  For tests and tools: routers ask
        ``Routes.broadcast_next_hops``, which never builds the whole map."""
        root = self.slot_of(origin)
        if root is None:
            return None
        dist = self.distances(root)
        names = self.registry.names
        tree: dict[PeerName, list[PeerName]] = {}
        for name in self.names:
            slot = self.registry.index[name]
            up = parent_of(dist, self.symmetric, slot)
            if up is not None:
                tree.setdefault(names[up], []).append(name)
        return {name: tuple(kids) for name, kids in sorted(tree.items())}

    def cached_tree_origins(self) -> list[PeerName]:
        """Roots whose trees this graph currently holds, least recently used first."""
        return [self.registry.names[slot] for slot in self._trees]

    # -- control-plane unicast (per asking router; the caller caches the result) -------

    def first_hops_any(self, source: int) -> list[int]:
        """Per slot, the first hop from ``source`` over every listed link.

        Our own first hop is restricted to links ``source``'s record lists:
        those are the only connections it can actually send on.  Levels are
        walked in name order and a node's first discoverer is its parent, as
        for the trees.
        """
        adjacency = self._any
        if adjacency is None:
            adjacency = self._any = _any_adjacency(self._records, self.registry)
        registry = self.registry
        record = self._records[registry.names[source]]
        listed = sorted({
            conn.peer for conn in record.connections
            if conn.peer in self._records and conn.peer != record.name
        })
        hops = [UNSEEN] * len(adjacency)
        hops[source] = source
        frontier = [registry.index[peer] for peer in listed]
        for node in frontier:
            hops[node] = node
        key = registry.names.__getitem__
        while frontier:
            following: list[int] = []
            for node in frontier:
                via = hops[node]
                for peer in adjacency[node]:
                    if hops[peer] == UNSEEN:
                        hops[peer] = via
                        following.append(peer)
            following.sort(key=key)
            frontier = following
        return hops


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


def _established(records: Mapping[PeerName, PeerRecord], name: PeerName) -> frozenset[PeerName]:
    record = records.get(name)
    return _EMPTY if record is None else record.established_peers()


def _symmetric_adjacency(records: Mapping[PeerName, PeerRecord],
                         registry: SlotRegistry) -> list[tuple[int, ...]]:
    """Per slot, the name-sorted neighbour slots over links both ends list as established."""
    ordered = sorted(records)
    slot = registry.slot
    slots = [slot(name) for name in ordered]  # in name order: a fresh registry follows it
    adjacency: list[tuple[int, ...]] = [()] * (max(slots) + 1 if slots else 0)
    index = registry.index
    for name, at in zip(ordered, slots, strict=True):
        neighbours = sorted(peer for peer in records[name].established_peers()
                            if name in _established(records, peer))
        if neighbours:
            adjacency[at] = registry.intern(tuple([index[peer] for peer in neighbours]))
    return adjacency


# Above this share of changed records (and this many), patching a parent graph
# stops paying off.
_MAX_DERIVED_CHANGE = 0.25
_MIN_DERIVED_CHANGE = 8


def _derive(parent: RouteGraph, records: Mapping[PeerName, PeerRecord],
            hint: Collection[PeerName] | None,
            ) -> tuple[list[tuple[int, ...]], bool, Edits] | None:
    """The symmetric adjacency of ``records`` patched from ``parent``'s (``parent.symmetric``
    itself when no data link changed), whether the names are the parent's, and
    each edited slot's tuple in the parent (the journal entry); None if too
    much changed (then it is built from scratch).

    A link's state depends on its two ends' records only, so only links a
    changed record lists or stops listing as established can change.
    """
    before = parent._records
    if hint is None:
        changed = [name for name, record in records.items() if before.get(name) is not record]
        changed.extend(before.keys() - records.keys())
    else:
        changed = [name for name in hint if before.get(name) is not records.get(name)]
    if len(changed) > max(_MIN_DERIVED_CHANGE, _MAX_DERIVED_CHANGE * len(records)):
        return None
    added_names = sorted(name for name in changed if name not in before)
    same_names = not added_names and all(name in records for name in changed)
    registry = parent.registry
    for name in added_names:
        registry.slot(name)
    edits: dict[int, tuple[set[int], set[int]]] = {}  # slot -> (links gained, links lost)
    seen: set[tuple[PeerName, PeerName]] = set()
    index = registry.index
    for name in changed:
        for peer in _established(before, name) ^ _established(records, name):
            pair = (name, peer) if name < peer else (peer, name)
            if pair in seen:
                continue
            seen.add(pair)
            was = peer in _established(before, name) and name in _established(before, peer)
            now = peer in _established(records, name) and name in _established(records, peer)
            if was != now:
                a, b = index[name], index[peer]
                edits.setdefault(a, (set(), set()))[0 if now else 1].add(b)
                edits.setdefault(b, (set(), set()))[0 if now else 1].add(a)
    size = max((index[name] for name in added_names), default=-1) + 1
    if not edits and size <= len(parent.symmetric):
        return parent.symmetric, same_names, {}
    adjacency = list(parent.symmetric)
    if size > len(adjacency):
        adjacency.extend([()] * (size - len(adjacency)))
    key = registry.names.__getitem__
    old_tuples: Edits = {}
    for slot, (gained, lost) in edits.items():
        old_tuples[slot] = previous = adjacency[slot]
        neighbours = (set(previous) - lost) | gained
        adjacency[slot] = registry.intern(tuple(sorted(neighbours, key=key))) if neighbours else ()
    return adjacency, same_names, old_tuples


def _any_adjacency(records: Mapping[PeerName, PeerRecord],
                   registry: SlotRegistry) -> list[tuple[int, ...]]:
    """Per slot, the name-sorted neighbour slots over every listed link, in either direction."""
    found: dict[PeerName, set[PeerName]] = {}
    for name, record in records.items():
        mine = found.setdefault(name, set())
        for conn in record.connections:
            peer = conn.peer
            if peer == name or peer not in records:
                continue  # self-loop or unknown peer
            mine.add(peer)
            found.setdefault(peer, set()).add(name)
    index = registry.index
    adjacency: list[tuple[int, ...]] = [()] * (max((index[n] for n in found), default=-1) + 1)
    for name, peers in found.items():
        adjacency[index[name]] = tuple([index[peer] for peer in sorted(peers)])
    return adjacency
