"""Theory of operation: whom a broadcast goes to next.

Two ways, one filter.  A *planned* broadcast (protocol 6, ``broadcast_plan``)
names our children itself: each with the forest below it, split from the plan
we received, or built from our own routes when we are the origin.  An
*unplanned* one (no routes yet at its origin, or a plan that failed to parse)
goes to our children in our own view of the origin's tree
(``RouteView.broadcast_next_hops``), with the origin's direct links
(``BroadcastsToLinks``) left out, since the origin sent it to those itself.

Either way a hop is never where the broadcast came from, the origin or us, and
one that is not a current neighbour is counted (``not_neighbour``) and skipped:
its subtree is left to anti-entropy.  A forwarded hop is counted as a relay.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from meshrouter.errors import ProtocolError
from meshrouter.gossip.broadcast_plan import split_forest
from meshrouter.gossip.interfaces import ListsNeighbours, PlansBroadcasts, RouteView
from meshrouter.gossip.outbox import Outbox
from meshrouter.gossip.stats import (
    DROP_MALFORMED_PLAN,
    DROP_NOT_NEIGHBOUR,
    KIND_BROADCAST,
    GossipStats,
)
from meshrouter.names import PeerName

Plan = list[tuple[PeerName, bytes]]


class BroadcastHops:
    """The next hops of broadcasts for one router (owned by its ``GossipCore``)."""

    def __init__(self, local: PeerName, outbox: Outbox, stats: GossipStats) -> None:
        self._local = local
        self._outbox = outbox
        self._stats = stats
        self._routes: RouteView | None = None
        self._neighbour_view: ListsNeighbours | None = None
        self._planner: PlansBroadcasts | None = None

    def set_routes(self, routes: RouteView) -> None:
        self._routes = routes
        self._neighbour_view = routes if isinstance(routes, ListsNeighbours) else None
        self._planner = routes if isinstance(routes, PlansBroadcasts) else None

    # -- planned --------------------------------------------------------------------

    def own_plan(self, direct: frozenset[PeerName]) -> Plan | None:
        """Our own broadcast's plan, or None when the routes cannot plan it."""
        return None if self._planner is None else self._planner.broadcast_plan(direct)

    def received_plan(self, channel: str, route: bytes | None) -> Plan | None:
        """The children a received broadcast's plan gives us, or None for an
        unplanned broadcast -- or a malformed plan (counted): the data is still
        good, so it is forwarded as if unplanned rather than lost."""
        if route is None:
            return None
        try:
            return split_forest(route)
        except ProtocolError:
            self._stats.record_drop(channel, DROP_MALFORMED_PLAN)
            return None

    def plan_hops(self, channel: str, origin: PeerName, plan: Plan,
                  came_from: PeerName | None) -> Iterator[tuple[PeerName, bytes]]:
        """The plan's children we can send to, each with its forest."""
        forests = dict(plan)
        for hop in self._sendable(channel, origin, forests, came_from):
            yield hop, forests[hop]

    # -- unplanned ------------------------------------------------------------------

    def tree_hops(self, channel: str, origin: PeerName, came_from: PeerName | None,
                  direct: frozenset[PeerName] | None = None) -> Iterator[PeerName]:
        """Current neighbours below us in our view of ``origin``'s tree.

        ``direct`` (``BroadcastsToLinks``): the peers the origin sends this
        broadcast to itself.  Our own broadcast goes to those as well as to our
        tree; a forwarder leaves them out of its children.  While views differ
        (a join), a forwarder whose view lacks one of the origin's new links
        took that peer for its child although the origin had already sent it
        the broadcast."""
        hops: Sequence[PeerName]
        if self._routes is None:
            hops = self._outbox.neighbours if origin == self._local else ()
        elif direct and came_from is not None and self._origin_reached_all(direct, origin,
                                                                           came_from):
            hops = ()  # our children, whatever the tree, all have it from the origin
        else:
            hops = self._routes.broadcast_next_hops(origin)
        if direct:
            if came_from is None:
                hops = [*hops, *(hop for hop in sorted(direct) if hop in self._outbox)]
            else:
                hops = [hop for hop in hops if hop not in direct]
        return self._sendable(channel, origin, hops, came_from)

    def _origin_reached_all(self, direct: frozenset[PeerName], origin: PeerName,
                            came_from: PeerName) -> bool:
        """True if the origin sent its broadcast itself to each of our neighbours
        (but the one it came from and the origin): our tree children are some of
        them, so the tree need not be computed -- in a full mesh, never."""
        view = self._neighbour_view
        if view is None:
            return False
        return all(peer in direct or peer == came_from or peer == origin
                   for peer in view.neighbours())

    # -- the one filter -------------------------------------------------------------

    def _sendable(self, channel: str, origin: PeerName, hops: Iterable[PeerName],
                  came_from: PeerName | None) -> Iterator[PeerName]:
        seen: set[PeerName] = set()
        for hop in hops:
            if hop in seen or hop == came_from or hop == origin or hop == self._local:
                continue
            seen.add(hop)
            if hop not in self._outbox:
                self._stats.record_drop(channel, DROP_NOT_NEIGHBOUR)
                continue
            if came_from is not None:
                self._stats.record_relay(channel, KIND_BROADCAST)
            yield hop
