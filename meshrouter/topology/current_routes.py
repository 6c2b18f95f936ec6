"""Theory of operation: the gossip core's route view, always for the topology as it is now.

The gossip core asks for next hops while it forwards.  A broadcast is forwarded
right after its delta was applied, so every peer forwards on the same (new)
tree as the origin computed: a change that alters the tree itself -- a link
going down -- still reaches the whole mesh.  ``Topology.routes()`` caches routes
per record set (shared between routers with the same view), so asking it on
every forward is cheap.  Data forwarding (the datapath) instead follows the
routes delivered by the topology-change signal, once per coalesced change.
"""

from __future__ import annotations

from meshrouter.names import PeerName
from meshrouter.topology.topology import Topology


class CurrentRoutes:
    """A ``RouteView`` (gossip/interfaces.py) reading ``topology`` at each call."""

    __slots__ = ("_topology",)

    def __init__(self, topology: Topology) -> None:
        self._topology = topology

    def next_hop_any(self, dst: PeerName) -> PeerName | None:
        return self._topology.routes().next_hop_any(dst)

    def broadcast_next_hops(self, origin: PeerName) -> list[PeerName]:
        return self._topology.routes().broadcast_next_hops(origin)

    def broadcast_plan(self, direct: frozenset[PeerName]) -> list[tuple[PeerName, bytes]] | None:
        """Our broadcast tree as it is now (``PlansBroadcasts``)."""
        return self._topology.routes().broadcast_plan(direct)

    def neighbours(self) -> list[PeerName]:
        """Our symmetric neighbours now (``ListsNeighbours``)."""
        return self._topology.routes().neighbours()
