"""Theory of operation: one router's routes, a thin view of a shared ``RouteGraph``.

Data follows links that *both* ends list as established ("symmetric" links):
a link one side still believes in but the other has dropped must not carry
traffic.  On that graph:

* **Unicast** is a breadth-first search from us.  Each level is processed in
  name order and a node's parent is the first node that discovers it, i.e. its
  smallest-named neighbour one level closer to us.  Every router computes the
  same shortest-path tree from the same records, so hop-by-hop forwarding never
  loops on a stable topology.  The next hop to a destination is the first hop
  of its tree path.
* **Broadcast** from origin X uses X's tree built by the same rule from X.
  X writes that tree into its broadcast (``broadcast_plan``: our own tree is
  our unicast tree), so forwarders follow X's tree as X saw it; a broadcast
  without a plan is forwarded by each router to its own children in X's tree
  (``broadcast_next_hops``), which the datapath's broadcast flows use too.  As each node has
  exactly one parent, every node reachable from X receives a broadcast exactly
  once.  The tree does not depend on who asks, so it lives in the graph and is
  computed once for all routers sharing that graph (see ``route_graph``).
* **Control-plane unicast** (``next_hop_any``) uses every listed link in either
  direction, established or not, because gossip can flow on any handshaken
  connection; our own first hop is restricted to links *our* record lists,
  since those are the only connections we can actually send on.

Both tree rules are one rule, so a tree is one distance array
(``route_trees``): our unicast tree is the tree rooted at us, and a parent is
found from the distances when asked.  A ``Routes`` is just (graph, local):
creating one is O(1); our tree and the control-plane search run on first use
and are cached here, so a router that only forwards broadcasts never pays for
them.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping

from meshrouter.gossip.broadcast_plan import MAX_SUBTREE
from meshrouter.names import PeerName
from meshrouter.topology.broadcast_plans import plan_forests
from meshrouter.topology.records import PeerRecord
from meshrouter.topology.route_graph import SHARED_ROUTE_GRAPHS, UNSEEN, RouteGraph
from meshrouter.topology.route_trees import INF, children, parent_of, reached


class Routes:
    """Route tables of one router for one records snapshot (immutable)."""

    __slots__ = (
        "_any_hops",
        "_dist",
        "_local_slot",
        "_plans",
        "_reachable",
        "_unicast_table",
        "graph",
        "local",
    )

    def __init__(self, graph: RouteGraph, local: PeerName) -> None:
        """O(1): everything is either in the shared ``graph`` or computed on first use.

        ``local`` need not have a record in the graph; it is then isolated.
        """
        self.graph = graph
        self.local = local
        self._local_slot = graph.slot_of(local)
        self._dist: array[int] | None = None
        self._any_hops: list[int] | None = None
        self._reachable: frozenset[PeerName] | None = None
        self._unicast_table: dict[PeerName, PeerName] | None = None
        self._plans: dict[frozenset[PeerName], list[tuple[PeerName, bytes]]] | None = None

    # -- unicast over symmetric established links ---------------------------------

    def next_hop(self, dst: PeerName) -> PeerName | None:
        """Neighbour to send data for ``dst`` to; None if unreachable or ``dst`` is us."""
        dist = self._tree()
        slot = self.graph.slot_of(dst)
        if dist is None or slot is None or slot == self._local_slot:
            return None
        if slot >= len(dist) or dist[slot] == INF:
            return None
        adjacency = self.graph.symmetric
        while dist[slot] > 1:
            up = parent_of(dist, adjacency, slot)
            assert up is not None
            slot = up
        return self.graph.name_of(slot)

    def reachable(self) -> frozenset[PeerName]:
        """Peers reachable over symmetric links, including ourselves."""
        if self._reachable is None:
            dist = self._tree()
            graph = self.graph
            if dist is None:
                found: frozenset[PeerName] = frozenset()
            elif reached(dist) == len(graph):
                found = graph.members()  # the common case: one component, shared set
            else:
                names = graph.registry.names
                found = frozenset(names[slot] for slot, d in enumerate(dist) if d != INF)
            self._reachable = found | {self.local} if self.local not in found else found
        return self._reachable

    def unicast_table(self) -> dict[PeerName, PeerName]:
        """Destination -> next hop for every reachable peer other than us (a copy)."""
        if self._unicast_table is None:
            self._unicast_table = self._build_unicast_table()
        return dict(self._unicast_table)

    def _build_unicast_table(self) -> dict[PeerName, PeerName]:
        dist = self._tree()
        if dist is None:
            return {}
        adjacency = self.graph.symmetric
        names = self.graph.registry.names
        hop: dict[int, int] = {}
        for slot in sorted((s for s, d in enumerate(dist) if 0 < d < INF), key=dist.__getitem__):
            if dist[slot] == 1:
                hop[slot] = slot
            else:
                up = parent_of(dist, adjacency, slot)
                assert up is not None
                hop[slot] = hop[up]
        return {names[slot]: names[via] for slot, via in hop.items()}

    def neighbours(self) -> list[PeerName]:
        """Our symmetric (data-capable) neighbours, in name order."""
        me = self._local_slot
        if me is None:
            return []
        names = self.graph.registry.names
        return [names[slot] for slot in self.graph.neighbour_slots(me)]

    def _tree(self) -> array[int] | None:
        """Our own tree (distances from us); None when we have no record."""
        dist = self._dist
        if dist is None and self._local_slot is not None:
            dist = self._dist = self.graph.distances(self._local_slot)
        return dist

    # -- control-plane unicast over all links ---------------------------------------

    def next_hop_any(self, dst: PeerName) -> PeerName | None:
        """Next hop for gossip unicast, over every listed link in either direction."""
        me = self._local_slot
        slot = self.graph.slot_of(dst)
        if me is None or slot is None or slot == me:
            return None
        hops = self._any_hops
        if hops is None:
            hops = self._any_hops = self.graph.first_hops_any(me)
        hop = hops[slot] if slot < len(hops) else UNSEEN
        return None if hop == UNSEEN else self.graph.name_of(hop)

    # -- broadcast trees --------------------------------------------------------------

    def broadcast_next_hops(self, origin: PeerName) -> list[PeerName]:
        """Our children in ``origin``'s broadcast tree (empty if none or unreachable).

        A new list each call (callers may modify it); the tree itself is shared.
        """
        me = self._local_slot
        if me is None:
            return []
        if origin == self.local:
            return self.neighbours()  # the root's children are all its neighbours: no BFS
        root = self.graph.slot_of(origin)
        if root is None:
            return []
        graph = self.graph
        names = graph.registry.names
        return [names[slot] for slot in children(graph.distances(root), graph.symmetric, me)]

    def broadcast_plan(self, direct: frozenset[PeerName]) -> list[tuple[PeerName, bytes]] | None:
        """Our own broadcast tree as each child's forest (``PlansBroadcasts``):
        our unicast tree, with ``direct`` peers (whom we send to ourselves)
        made our children.  None when the mesh is too large for a plan's
        16-bit subtree sizes (the broadcast then goes unplanned).  Cached per
        ``direct`` set (in practice our links: one or two per version)."""
        plans = self._plans
        if plans is None:
            plans = self._plans = {}
        plan = plans.get(direct)
        if plan is None:
            if len(self.graph) >= MAX_SUBTREE:
                return None
            plan = plans[direct] = self._plan(direct)
        return list(plan)

    def _plan(self, direct: frozenset[PeerName]) -> list[tuple[PeerName, bytes]]:
        dist = self._tree()
        me = self._local_slot
        others = sorted(name for name in direct if name != self.local)
        if dist is None or me is None:
            return [(name, b"") for name in others]
        graph = self.graph
        slots, unreached = [], []
        for name in others:
            slot = graph.slot_of(name)
            if slot is None or slot >= len(dist) or dist[slot] == INF:
                unreached.append(name)
            else:
                slots.append(slot)
        planned = plan_forests(dist, graph.symmetric, me, graph.registry.names, slots, unreached)
        return [(PeerName(name), forest) for name, forest in planned]


def compute_routes(records: Mapping[PeerName, PeerRecord], local: PeerName) -> Routes:
    """Route tables for ``local`` over a snapshot of ``records``.

    The graph comes from the process-wide cache when another caller already
    built it for the same record set (hashing the records is the only O(N) step
    then).
    """
    graph, _ = SHARED_ROUTE_GRAPHS.get_or_build(records)
    return Routes(graph, local)
