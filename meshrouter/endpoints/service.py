"""The dataplane Service: container attach/detach, the endpoints channel, the flows.

The trio shell around ``EndpointTable`` and ``build_flows``.  It owns the local
container ports (what was attached here), keeps the endpoint replica in
gossip, and after every change -- an attach or detach, an endpoint learned
from gossip, a topology change -- recomputes the *whole* desired flow table
(a pure function) and hands it to ``context.datapath.apply``; the datapath
sends only the difference.  Recomputations are rate-limited, not delayed: a
change after a quiet spell is applied at once, and the changes of a burst
(a mesh forming) that arrive within ``flow_delay`` of the last table, or
while it is being applied, cost one more table.  Endpoints learned from
gossip are announced to our containers once their flows are in
(``timings``), and every attach and learn leaves a timed record
(``GET /status/dataplane/timings``) for the attach-latency benchmark.

Attach is all-or-nothing: the request is validated first, then the address
is taken from the IPAM service (allocated, or the given one claimed), then
the port is made; a failure at any step undoes the earlier ones, also when
the request is cancelled.  Our entries and the port requests are saved
before the change is broadcast, so a restarted router re-creates (idempotently)
the ports it had and never forgets an endpoint a peer has learned.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import trio
import trio.lowlevel

from meshrouter.dataplane.core.flow import Flow
from meshrouter.dataplane.core.table import FlowInputs, PortInfo, build_flows
from meshrouter.dataplane.core.vni import assign_ids
from meshrouter.endpoints.attach_checks import check_ip_free, check_name_free, fresh_mac
from meshrouter.endpoints.collaborators import AddressService, NameRegistry, take_address
from meshrouter.endpoints.gossiper import CHANNEL, EndpointsGossiper
from meshrouter.endpoints.model import Endpoint
from meshrouter.endpoints.requests import AttachRequest, parse_attach
from meshrouter.endpoints.saved_ports import SavedPort, decode_state, encode_state
from meshrouter.endpoints.table import EndpointTable
from meshrouter.endpoints.timings import MAX_ANNOUNCE, Record, Timings
from meshrouter.endpoints.views import endpoint_rows, peer_rows
from meshrouter.errors import (
    ConflictError,
    MeshError,
    NotFoundError,
    ProtocolError,
    StateFileError,
)
from meshrouter.names import PeerName, format_peer_name
from meshrouter.node.datapath import LocalPort, PortRequest
from meshrouter.node.service import (
    ApiRequest,
    ApiRoute,
    ServiceBase,
    ServiceContext,
    TopologyChange,
)
from meshrouter.topology.routes import Routes

log = logging.getLogger(__name__)

STATE_KEY = "endpoints"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A container port of ours: what was asked, what the datapath made."""

    request: PortRequest
    port: LocalPort
    ip: str
    prefix: int
    from_ipam: bool


class DataplaneService(ServiceBase):
    """Attaches containers, gossips endpoints and programs the datapath."""

    name = "dataplane"

    def __init__(self, *, ipam_wait: float = 30.0, flow_delay: float = 0.02) -> None:
        """``flow_delay``: the least time between two recomputations (a burst of
        topology changes while a mesh forms costs one table per ``flow_delay``,
        not one per change); a change after a quiet spell does not wait."""
        self.ipam_wait = ipam_wait
        self.flow_delay = flow_delay
        self.attachments: dict[str, Attachment] = {}
        self.flows: list[Flow] = []
        self.conflicts: list[str] = []
        self.unroutable: list[PeerName] = []
        self.recomputes = 0
        self._routes: Routes | None = None
        self._ids: tuple[object, dict[PeerName, int]] | None = None
        self._wakeup = trio.Event()
        self._lock = trio.Lock()
        self._loaded: list[tuple[PortRequest, str, int, bool]] = []
        self._pending: tuple[PortRequest, str, int, bool] | None = None
        self._last_table = -math.inf
        self._announce: list[tuple[Endpoint, Record]] = []
        self.timings = Timings()

    # -- life cycle --------------------------------------------------------------------

    def attach(self, context: ServiceContext) -> None:
        super().attach(context)
        self.table = EndpointTable(context.name)
        self.gossiper = EndpointsGossiper(self.table, trio.current_time, self._on_gossip)
        context.gossip.add_channel(CHANNEL, self.gossiper)
        # A container whose namespace vanishes leaves the mesh (and its address).
        context.datapath.on_port_lost = self.port_lost

    def load(self) -> None:
        blob = self.context.storage.load(STATE_KEY)
        if blob is None:
            return
        table, ports = decode_state(blob)
        try:
            self.table.load(table)
        except (ProtocolError, ValueError, TypeError) as exc:
            raise StateFileError(f"endpoints state is corrupt: {exc}") from None
        for p in ports:
            request = PortRequest(p.container_id, p.netns, p.ifname, p.mac,
                                  f"{p.ip}/{p.prefix}", None, p.mtu)
            self._loaded.append((request, p.ip, p.prefix, p.from_ipam))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self._restore_ports()
        while True:
            await self._recompute()
            await self._wakeup.wait()
            pause = self._last_table + self.flow_delay - trio.current_time()
            if pause > 0:
                await trio.sleep(pause)
            else:
                await trio.lowlevel.checkpoint()  # coalesce this tick's changes
            self._wakeup = trio.Event()

    async def _restore_ports(self) -> None:
        """Re-create the ports of before a restart; drop those that cannot be."""
        async with self._lock:
            await self._restore_ports_locked()

    async def _restore_ports_locked(self) -> None:
        for request, ip, prefix, from_ipam in self._loaded:
            try:
                port = await self.context.datapath.attach_port(request)
            except MeshError as exc:
                log.warning("%s: container %s not restored: %s", self.context.label,
                            request.container_id, exc)
                self._forget_local(request.container_id, from_ipam, ip)
                continue
            self.attachments[request.container_id] = Attachment(request, port, ip, prefix,
                                                                from_ipam)
        own = self.table.own()
        for cid in [c for c in own if c not in self.attachments]:
            self._forget_local(cid, False, own[cid].ip)
        self._loaded = []
        self._commit()

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

    # -- attach / detach -----------------------------------------------------------------

    def _names(self) -> NameRegistry | None:
        """The DNS service, when this router runs one (``attach --name``)."""
        found: NameRegistry | None = self.context.service("dns", "unregister_container")
        return found

    def _ipam(self) -> AddressService | None:
        found: AddressService | None = self.context.service("ipam", "allocate")
        return found

    async def attach_container(self, request: AttachRequest) -> dict[str, Any]:
        """Attach (idempotent for the same container); undo everything on failure."""
        async with self._lock:
            existing = self.attachments.get(request.container_id)
            if existing is not None:
                return self._check_same(existing, request)
            check_name_free(self.table.live(), self.context.name, request.container_id,
                            request.name)
            record = self.timings.begin("attach", request.container_id, self.context.name,
                                        time.monotonic(), "request")
            ip, prefix, from_ipam = await take_address(self._ipam(), request, self.ipam_wait)
            record.marks.append(("address", time.monotonic()))
            announced = False
            try:
                live = self.table.live()
                check_ip_free(live, self.context.name, request.container_id, ip)
                mac = fresh_mac(live, self.context.name, request.container_id)
                port_request = PortRequest(request.container_id, request.netns, request.ifname,
                                           mac, f"{ip}/{prefix}", None, request.mtu)
                # The endpoint goes out before the port is made, so the peers'
                # flow deltas overlap our veth and OVS work; a frame reaching us
                # meanwhile finds no port and is dropped, as for any unknown MAC.
                self.table.put_local(request.container_id, mac, ip, request.name)
                self._pending = (port_request, ip, prefix, from_ipam)
                self._commit()
                announced = True
                record.marks.append(("saved and broadcast", time.monotonic()))
                port = await self.context.datapath.attach_port(port_request)
            except BaseException:
                # synchronous: runs even when we are being cancelled
                self._pending = None
                if announced:  # take it back everywhere (a tombstone)
                    self.table.remove_local(request.container_id)
                    self._commit()
                if from_ipam:
                    self._release(request.container_id, ip)
                raise
            record.marks += self.context.datapath.attach_marks.get(request.container_id, [])
            record.marks.append(("port ready", time.monotonic()))
            attachment = Attachment(port_request, port, ip, prefix, from_ipam)
            self.attachments[request.container_id] = attachment
            self._pending = None  # saved already, with the endpoint
            # The new port's flows are in the switch before attach answers, so a
            # container started right after can send at once (no coalescing wait).
            await self._recompute(record)
            record.marks.append(("local flows applied", time.monotonic()))
            await self._send_announce([(mac, ip)], skip=request.container_id)
            record.marks.append(("announced here", time.monotonic()))
            names = self._names()
            if request.name and names is not None:
                try:
                    names.register(request.container_id, request.name, ip)
                except MeshError as exc:  # the attachment stands; the name is reported
                    log.warning("%s: name %s for %s not registered: %s", self.context.label,
                                request.name, request.container_id, exc)
            return self._view(attachment)

    async def detach_container(self, container_id: str) -> dict[str, Any]:
        async with self._lock:
            attachment = self.attachments.get(container_id)
            if attachment is None:
                raise NotFoundError(f"container {container_id} is not attached here")
            await self.context.datapath.detach_port(container_id)
            del self.attachments[container_id]
            released = self._forget_local(container_id, attachment.from_ipam, attachment.ip)
            self._commit()
            return {"container_id": container_id, "released": released}

    def port_lost(self, container_id: str) -> None:
        """The datapath found a port gone (its namespace was deleted): the
        endpoint goes everywhere and its address is released.  Synchronous, so
        a datapath can call it from any task (wire it as ``on_port_lost``)."""
        attachment = self.attachments.pop(container_id, None)
        if attachment is None:
            return
        log.warning("%s: container %s vanished; its endpoint is removed", self.context.label,
                    container_id)
        self._forget_local(container_id, attachment.from_ipam, attachment.ip)
        self._commit()

    def _release(self, container_id: str, ip: str) -> list[str]:
        ipam = self._ipam()
        if ipam is None:
            return []
        try:
            return ipam.release(container_id, ip)
        except MeshError as exc:  # the address was not ours any more: nothing to give back
            log.info("%s: release of %s for %s: %s", self.context.label, ip, container_id, exc)
            return []

    def _forget_local(self, container_id: str, from_ipam: bool, ip: str) -> list[str]:
        self.table.remove_local(container_id)
        names = self._names()
        if names is not None:  # detached or vanished: its names go everywhere too
            names.unregister_container(container_id)
        return self._release(container_id, ip) if from_ipam else []

    def _check_same(self, existing: Attachment, request: AttachRequest) -> dict[str, Any]:
        asked = (request.netns, request.ifname)
        if asked != (existing.request.netns, existing.request.ifname) or (
                request.ip is not None and str(request.ip) != existing.ip):
            raise ConflictError(
                f"container {request.container_id} is already attached "
                f"({existing.request.netns} {existing.request.ifname} {existing.ip}); "
                "detach it first to change it")
        return self._view(existing)

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

    def _view(self, a: Attachment) -> dict[str, Any]:
        return {"container_id": a.request.container_id, "mac": a.port.mac,
                "ip": f"{a.ip}/{a.prefix}", "port": a.port.port, "ifname": a.request.ifname,
                "host_ifname": a.port.host_ifname, "mtu": a.port.mtu,
                "host": format_peer_name(self.context.name)}

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

    # -- API -------------------------------------------------------------------------

    def api_routes(self) -> list[ApiRoute]:
        return [
            ApiRoute("POST", "/attach", self._api_attach),
            ApiRoute("DELETE", "/attach/{container_id}", self._api_detach),
            ApiRoute("GET", "/endpoints", self._api_endpoints),
            ApiRoute("GET", "/status/dataplane", self._api_status),
            ApiRoute("GET", "/status/dataplane/peers", self._api_peers),
            ApiRoute("GET", "/status/dataplane/timings", self._api_timings),
        ]

    async def _api_attach(self, request: ApiRequest) -> Any:
        return await self.attach_container(parse_attach(request.body))

    async def _api_detach(self, request: ApiRequest) -> Any:
        return await self.detach_container(request.path_params["container_id"])

    async def _api_endpoints(self, request: ApiRequest) -> Any:
        return self.endpoints()

    async def _api_status(self, request: ApiRequest) -> Any:
        return self.summary()

    async def _api_peers(self, request: ApiRequest) -> Any:
        return self.peer_paths()

    async def _api_timings(self, request: ApiRequest) -> Any:
        """Recent attaches and learned endpoints, step by step (CLOCK_MONOTONIC)."""
        return self.timings.view()


def body_of(data: Mapping[str, Any]) -> ApiRequest:
    """An ApiRequest with a JSON body (for callers that are not the HTTP server)."""
    return ApiRequest(path_params={}, body=data)
