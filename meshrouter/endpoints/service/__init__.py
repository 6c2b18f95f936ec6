"""The dataplane Service: container attach/detach, the endpoints channel, the flows.

The trio shell around ``EndpointTable`` and ``build_flows``.  It owns the local
container ports (what was attached here); its base ``EndpointFlows``
(``flows.py``) keeps the endpoint replica in gossip and recomputes the flow
table after every change, rate-limited by the loop in ``run``.  This module
adds the life cycle, the attach and detach of containers and the API.

Attach is all-or-nothing: the request is validated first, then the address
is taken from the IPAM service (allocated, or the given one claimed), then
the port is made; a failure at any step undoes the earlier ones, also when
the request is cancelled.  Our entries and the port requests are saved
before the change is broadcast, so a restarted router re-creates (idempotently)
the ports it had and never forgets an endpoint a peer has learned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import trio
import trio.lowlevel

from meshrouter.endpoints.attach_checks import check_ip_free, check_name_free, fresh_mac
from meshrouter.endpoints.collaborators import AddressService, NameRegistry, take_address
from meshrouter.endpoints.gossiper import CHANNEL, EndpointsGossiper
from meshrouter.endpoints.requests import AttachRequest, parse_attach
from meshrouter.endpoints.saved_ports import decode_state
from meshrouter.endpoints.service.flows import STATE_KEY, Attachment, EndpointFlows
from meshrouter.endpoints.table import EndpointTable
from meshrouter.errors import (
    ConflictError,
    MeshError,
    NotFoundError,
    ProtocolError,
    StateFileError,
)
from meshrouter.names import format_peer_name
from meshrouter.node.datapath import PortRequest
from meshrouter.node.service import ApiRequest, ApiRoute, ServiceContext

__all__ = ["STATE_KEY", "Attachment", "DataplaneService", "body_of"]

log = logging.getLogger(__name__)


class DataplaneService(EndpointFlows):
    """Attaches containers, gossips endpoints and programs the datapath."""

    name = "dataplane"

    def __init__(self, *, ipam_wait: float = 30.0, flow_delay: float = 0.02) -> None:
        """``flow_delay``: the least time between two recomputations (a burst of
        topology changes while a mesh forms costs one table per ``flow_delay``,
        not one per change); a change after a quiet spell does not wait."""
        super().__init__(flow_delay=flow_delay)
        self.ipam_wait = ipam_wait
        self._lock = trio.Lock()
        self._loaded: list[tuple[PortRequest, str, int, bool]] = []

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

    # -- views -----------------------------------------------------------------------

    def _view(self, a: Attachment) -> dict[str, Any]:
        return {"container_id": a.request.container_id, "mac": a.port.mac,
                "ip": f"{a.ip}/{a.prefix}", "port": a.port.port, "ifname": a.request.ifname,
                "host_ifname": a.port.host_ifname, "mtu": a.port.mtu,
                "host": format_peer_name(self.context.name)}

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
