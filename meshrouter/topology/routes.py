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
  Every router forwards to its own children in X's tree.  As each node has
  exactly one parent, every node reachable from X receives a broadcast exactly
  once.  The tree does not depend on who asks, so it lives in the graph and is
  computed once for all routers sharing that graph (see ``route_graph``).
* **Control-plane unicast** (``next_hop_any``) uses every listed link in either
  direction, established or not, because gossip can flow on any handshaken
  connection; our own first hop is restricted to links *our* record lists,
  since those are the only connections we can actually send on.

A ``Routes`` is just (graph, local): creating one is O(1).  The two searches
from us (unicast and control-plane) run on first use and are cached here, so
a router that only forwards broadcasts never pays for them.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshrouter.names import PeerName
from meshrouter.topology.records import PeerRecord
from meshrouter.topology.route_graph import SHARED_ROUTE_GRAPHS, UNSEEN, RouteGraph


class Routes:
    """Route tables of one router for one records snapshot (immutable)."""

    __slots__ = (
        "_any_hops",
        "_hops",
        "_local_index",
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
        self._local_index = graph.index.get(local)
        self._hops: list[int] | None = None
        self._any_hops: list[int] | None = None
        self._reachable: frozenset[PeerName] | None = None
        self._unicast_table: dict[PeerName, PeerName] | None = None

    # -- unicast over symmetric established links ---------------------------------

    def next_hop(self, dst: PeerName) -> PeerName | None:
        """Neighbour to send data for ``dst`` to; None if unreachable or ``dst`` is us."""
        hops = self._unicast_hops()
        index = self.graph.index.get(dst)
        if hops is None or index is None or index == self._local_index:
            return None
        hop = hops[index]
        return None if hop == UNSEEN else self.graph.names[hop]

    def reachable(self) -> frozenset[PeerName]:
        """Peers reachable over symmetric links, including ourselves."""
        if self._reachable is None:
            hops = self._unicast_hops()
            names = self.graph.names
            reached = frozenset() if hops is None else frozenset(
                names[i] for i, hop in enumerate(hops) if hop != UNSEEN)
            self._reachable = reached | {self.local}
        return self._reachable

    def unicast_table(self) -> dict[PeerName, PeerName]:
        """Destination -> next hop for every reachable peer other than us (a copy)."""
        if self._unicast_table is None:
            hops = self._unicast_hops()
            names = self.graph.names
            me = self._local_index
            self._unicast_table = {} if hops is None else {
                names[i]: names[hop]
                for i, hop in enumerate(hops)
                if hop != UNSEEN and i != me
            }
        return dict(self._unicast_table)

    def neighbours(self) -> list[PeerName]:
        """Our symmetric (data-capable) neighbours, in name order."""
        me = self._local_index
        if me is None:
            return []
        names = self.graph.names
        return [names[i] for i in self.graph.symmetric[me]]

    def _unicast_hops(self) -> list[int] | None:
        hops = self._hops
        if hops is None and self._local_index is not None:
            hops = self._hops = self.graph.first_hops(self._local_index)
        return hops

    # -- control-plane unicast over all links ---------------------------------------

    def next_hop_any(self, dst: PeerName) -> PeerName | None:
        """Next hop for gossip unicast, over every listed link in either direction."""
        me = self._local_index
        index = self.graph.index.get(dst)
        if me is None or index is None or index == me:
            return None
        hops = self._any_hops
        if hops is None:
            hops = self._any_hops = self.graph.first_hops_any(me)
        hop = hops[index]
        return None if hop == UNSEEN else self.graph.names[hop]

    # -- broadcast trees --------------------------------------------------------------

    def broadcast_next_hops(self, origin: PeerName) -> list[PeerName]:
        """Our children in ``origin``'s broadcast tree (empty if none or unreachable).

        A new list each call (callers may modify it); the tree itself is shared.
        """
        me = self._local_index
        if me is None:
            return []
        if origin == self.local:
            return self.neighbours()  # the root's children are all its neighbours: no BFS
        tree = self.graph.broadcast_tree(origin)
        return [] if tree is None else list(tree[me])


def compute_routes(records: Mapping[PeerName, PeerRecord], local: PeerName) -> Routes:
    """Route tables for ``local`` over a snapshot of ``records``.

    The graph comes from the process-wide cache when another caller already
    built it for the same record set (hashing the records is the only O(N) step
    then).
    """
    graph, _ = SHARED_ROUTE_GRAPHS.get_or_build(records)
    return Routes(graph, local)
