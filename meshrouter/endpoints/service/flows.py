"""The dataplane Service's flow side: the endpoint replica and the flow table it programs.

``EndpointFlows`` is the base of ``DataplaneService`` (``__init__.py``, which
adds the life cycle, container attach/detach and the API).  It keeps the
endpoint replica in gossip and, after every change -- an attach or detach, an
endpoint learned from gossip, a topology change -- recomputes the *whole*
desired flow table (a pure function, ``build_flows``) and hands it to
``context.datapath.apply``; the datapath sends only the difference.
Recomputations are rate-limited, not delayed: a change after a quiet spell is
applied at once, and the changes of a burst (a mesh forming) that arrive
within ``flow_delay`` of the last table, or while it is being applied, cost
one more table (the loop is ``DataplaneService.run``).  Endpoints learned from
gossip are announced to our containers once their flows are in
(``timings``), and every attach and learn leaves a timed record
(``GET /status/dataplane/timings``) for the attach-latency benchmark.

Every edit of ours goes through ``_commit``: the table and the port requests
are saved in one atomic write before the change is broadcast.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio

from meshrouter.dataplane.core.flow import Flow
from meshrouter.dataplane.core.table import FlowInputs, PortInfo, build_flows
from meshrouter.dataplane.core.vni import assign_ids
from meshrouter.endpoints.gossiper import CHANNEL
from meshrouter.endpoints.model import Endpoint
from meshrouter.endpoints.saved_ports import SavedPort, encode_state
from meshrouter.endpoints.table import EndpointTable
from meshrouter.endpoints.timings import MAX_ANNOUNCE, Record, Timings
from meshrouter.endpoints.views import endpoint_rows, peer_rows
from meshrouter.errors import MeshError
from meshrouter.names import PeerName, format_peer_name
from meshrouter.node.datapath import LocalPort, PortRequest
from meshrouter.node.service import ServiceBase, TopologyChange
from meshrouter.topology.routes import Routes

# the service's logger: one name for the whole dataplane service
log = logging.getLogger("meshrouter.endpoints.service")

STATE_KEY = "endpoints"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A container port of ours: what was asked, what the datapath made."""

    request: PortRequest
    port: LocalPort
    ip: str
    prefix: int
    from_ipam: bool


class EndpointFlows(ServiceBase):
    """Gossips endpoints and programs the datapath (see the module docstring)."""

    table: EndpointTable  # made at ``attach``, when our name is known

    def __init__(self, *, flow_delay: float) -> None:
        self.flow_delay = flow_delay
        self.attachments: dict[str, Attachment] = {}
        self.flows: list[Flow] = []
        self.conflicts: list[str] = []
        self.unroutable: list[PeerName] = []
        self.recomputes = 0
        self._routes: Routes | None = None
        self._ids: tuple[object, dict[PeerName, int]] | None = None
        self._wakeup = trio.Event()
        self._pending: tuple[PortRequest, str, int, bool] | None = None
        self._last_table = -math.inf
        self._announce: list[tuple[Endpoint, Record]] = []
        self.timings = Timings()

    @property
    def forwarding_routes(self) -> Routes | None:
        """The routes the flow table follows (the last published; None before any)."""
        return self._routes

    def on_topology_changed(self, change: TopologyChange) -> None:
        self._routes = change.routes
        now = trio.current_time()
        for peer in change.removed:
            self.table.remove_owner(peer, now)
        self.table.owners_seen(change.routes.reachable())
        self.wake()

    def wake(self) -> None:
        self._wakeup.set()

    def _on_gossip(self, fresh: list[Endpoint]) -> None:
        now = time.monotonic()
        for entry in fresh[:MAX_ANNOUNCE - len(self._announce)]:
            record = self.timings.begin("learn", entry.container_id, entry.owner, now,
                                        "endpoint received")
            self._announce.append((entry, record))
        self._commit(save=False)  # re-assertions of ours go out at once

    # -- flows ---------------------------------------------------------------------------

    def desired_flows(self) -> list[Flow]:
        """The flow table for the current state (pure computation)."""
        routes = self._routes if self._routes is not None else self.context.topology.routes()
        local = self.context.name
        ids = self._peer_ids(routes)
        underlay = {}
        for peer in routes.neighbours():
            address = self.context.peer_address(peer)
            if address is not None:
                underlay[peer] = address
        ports = [PortInfo(cid, a.port.port, a.port.mac, a.ip)
                 for cid, a in sorted(self.attachments.items())]
        result = build_flows(FlowInputs(local, ports, self.table.live(), routes, ids, underlay))
        self.conflicts = result.conflicts
        self.unroutable = result.unroutable
        return result.flows

    def _peer_ids(self, routes: Routes) -> dict[PeerName, int]:
        graph = routes.graph
        if self._ids is None or self._ids[0] is not graph:
            self._ids = (graph, assign_ids([*graph.names, self.context.name]))
        return self._ids[1]

    async def _recompute(self, record: Record | None = None) -> None:
        fresh, self._announce = self._announce, []
        self.flows = self.desired_flows()
        self.recomputes += 1
        built = time.monotonic()
        for r in [record] if record else [r for _, r in fresh]:
            r.marks.append(("flow table built", built))
        try:
            await self.context.datapath.apply(self.flows)
        except MeshError as exc:  # the datapath says so in health(); it restores by itself
            log.warning("%s: flow apply failed: %s", self.context.label, exc)
        self._last_table = trio.current_time()
        if fresh:
            applied = time.monotonic()
            for _, record in fresh:
                record.marks.append(("flows applied", applied))
            # an unreachable owner's endpoint has no flows: telling containers its
            # MAC would only send their frames into a drop
            routes = self._routes if self._routes is not None else self.context.topology.routes()
            reachable = routes.reachable()
            fresh = [(e, r) for e, r in fresh if e.owner in reachable]
            await self._send_announce([(e.mac, e.ip) for e, _ in fresh])
            done = time.monotonic()
            for _, record in fresh:
                record.marks.append(("announced", done))

    async def _send_announce(self, endpoints: Sequence[tuple[str, str]],
                             skip: str | None = None) -> None:
        """Gratuitous ARP to our containers, if the datapath can (``timings``)."""
        try:
            await self.context.datapath.announce(endpoints, skip)
        except MeshError as exc:  # a courtesy: the containers' ARP retry still works
            log.info("%s: announcement failed: %s", self.context.label, exc)

    # -- saving and broadcasting ---------------------------------------------------------

    def _commit(self, *, save: bool = True) -> None:
        """Save our state, then broadcast our edits, then recompute the flows."""
        delta = self.table.take_broadcast()
        if save or delta is not None:
            self._save()
        if delta is not None:
            self.context.gossip.originate_broadcast(CHANNEL, delta)
        self.wake()

    def _save(self) -> None:
        """One atomic write of the table and the port requests -- those attached and
        the one being attached, whose endpoint is already out: a router that dies
        before it answers re-makes that port at start (attach is idempotent), so the
        endpoint its peers learned is never left without a port or a tombstone."""
        pending = [(p, ip, prefix, from_ipam) for p, ip, prefix, from_ipam in
                   ([self._pending] if self._pending is not None else [])
                   if p.container_id not in self.attachments]
        rows = [(a.request, a.ip, a.prefix, a.from_ipam) for a in self.attachments.values()]
        ports = [SavedPort(r.container_id, r.netns, r.ifname, r.mac, ip, prefix, r.mtu,
                           from_ipam)
                 for r, ip, prefix, from_ipam in rows + pending]
        self.context.storage.save(STATE_KEY, encode_state(self.table.dump(), ports))

    # -- views -----------------------------------------------------------------------

    def endpoints(self) -> list[dict[str, Any]]:
        """Every live endpoint in the mesh (``meshrouter ps``)."""
        return endpoint_rows(self.table.live(), self.context.name)

    def peer_paths(self) -> list[dict[str, Any]]:
        """Per reachable peer: is the data path direct or relayed, and via whom."""
        routes = self._routes if self._routes is not None else self.context.topology.routes()
        return peer_rows(routes, self.context.name, self._peer_ids(routes),
                         self.context.peer_address)

    def report(self) -> dict[str, Any] | None:
        summary = self.summary() or {}
        return {**summary, "peers": self.peer_paths(), "endpoints": self.endpoints()}

    def summary(self) -> dict[str, Any] | None:
        health = self.context.datapath.health()
        return {
            "endpoints_local": len(self.attachments),
            "endpoints_total": self.table.live_count(),
            "flows": len(self.flows),
            "conflicts": self.conflicts[:10],
            "unroutable_peers": [format_peer_name(p) for p in self.unroutable[:10]],
            "health": "ok" if health.ok else "degraded",
            "reason": health.reason,
            "datapath": self.context.datapath.status(),
        }
