"""``OvsDatapath``: the ``Datapath`` on Open vSwitch, supervised so it never gives up.

This half answers the ``Datapath`` protocol (apply, attach, detach, announce,
health, status); its other half, ``supervision.py`` (a mixin), connects to OVS,
recovers it after any fault and checks it periodically.  ``run`` never raises
for a datapath fault; ``apply`` records the desired table even when OVS is down
and the recovery installs it.

All changes to OVS are serialised by one lock, so an apply never interleaves with
a recovery's full replace -- except the making of spare ports (``pool.py``),
which runs beside it under its own lock: a slow AF_XDP port add must not hold
up the flows of the attach that used the last spare.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import trio

from meshrouter.dataplane import netlink
from meshrouter.dataplane.ovs import announce, flowsync, pool, portio, ports
from meshrouter.dataplane.ovs.daemons import OwnDaemons
from meshrouter.dataplane.ovs.settings import VXLAN_OVERHEAD, OvsSettings
from meshrouter.dataplane.ovs.supervision import Supervision
from meshrouter.dataplane.ovs.tools import OvsTools
from meshrouter.dataplane.ovs.tunnelcache import TunnelCache
from meshrouter.errors import MeshError, UnavailableError
from meshrouter.node.datapath import DatapathHealth, LocalPort, PortRequest

log = logging.getLogger(__name__)


class OvsDatapath(Supervision):
    """The OVS driver shell (see the module docstring)."""

    def __init__(
        self, settings: OvsSettings, *, on_port_lost: Callable[[str], None] | None = None
    ) -> None:
        # the state both halves use is declared in ``Supervision``
        self.settings = settings
        self.kind = "ovs" if settings.datapath_type == "auto" else f"ovs-{settings.datapath_type}"
        self.on_port_lost = on_port_lost
        self._lock = trio.Lock()
        self._tools = None
        self._daemons = None
        self._dp_type = None
        self._netns_path = None
        self._underlay = None
        self._vswitchd_pid = None
        self._ready = False
        self._reason = "not started"
        self._desired = {}
        self._have_desired = False
        self._installed = None
        self._tunnels = TunnelCache(settings.phy_bridge)
        self._render_cache = flowsync.RenderCache()
        self._flows = flowsync.FlowSync(settings.bridge, timeout=settings.tool_timeout)
        self._ports = {}
        self._port_io = {}
        self._lost = []
        self._faults = []
        self._applies = []
        self.recoveries = 0
        self.last_apply = {}
        self._spares = pool.SpareKeeper(settings.port_pool)
        self._arp_sock = None
        self._nursery: trio.Nursery | None = None
        self._io = portio.PortIo(settings.port_io, cpu_mask=settings.pmd_cpu_mask)
        self.attach_marks: dict[str, list[tuple[str, float]]] = {}
        """Per container, the last attach's steps (CLOCK_MONOTONIC): its latency breakdown."""

    # -- Datapath protocol ----------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with self._lock:
                await self._recover()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._spares.keep, pool.Switch(
                    ready=lambda: self._ready, tools=self._need_ready,
                    used_ofports=lambda: {p.port for p in self._ports.values()},
                    mtu=self._container_mtu, port_io=self._io.wanted, on_xdp=self._io.result,
                    bridge=self.settings.bridge, netns=lambda: self._netns_path,
                    xdp_mode=self.settings.xdp_mode))
                task_status.started()
                await self._supervise()
        finally:
            with trio.CancelScope(shield=True):
                await self._shutdown()

    async def apply(self, flows: Sequence[Any]) -> None:
        self._spares.busy()
        async with self._lock:
            # rendering thousands of new flows takes long enough to stall the
            # router's event loop: a worker thread (under the lock: one cache user)
            desired = await trio.to_thread.run_sync(
                flowsync.desired_table, flows, self._render_cache)
            self._desired = desired
            self._have_desired = True
            if not self._ready:
                return  # installed by the recovery; health() says why not now
            try:
                await self._sync()
            except Exception as exc:  # a switch fault is health, not the caller's error
                if not isinstance(exc, MeshError):
                    log.exception("flow apply failed")
                self._degrade(f"flow apply failed: {exc}")

    async def attach_port(self, request: PortRequest) -> LocalPort:
        marks: list[tuple[str, float]] = []

        def mark(step: str) -> None:
            marks.append((step, time.monotonic()))

        self._spares.busy()
        async with self._lock:
            mark("datapath lock")
            existing = ports.check_request(request, self._ports)
            tools = self._need_ready()
            if existing is not None:
                alive = await netlink.in_netns(
                    self._netns_path, lambda: netlink.link_exists(existing.host_ifname))
                if alive:
                    return existing
                await ports.detach(tools, existing.host_ifname, self._netns_path)
                del self._ports[existing.container_id]
            used = {p.port for p in self._ports.values()} | self._spares.pool.ofports()
            ofport = request.extra.get("ofport")
            mtu = request.mtu or self._container_mtu()
            spare = self._spares.take(mtu) if ofport is None else None
            if spare is not None:
                mark("took a spare port")
                port = await ports.attach_spare(
                    tools, bridge=self.settings.bridge, request=request, spare=spare,
                    switch_netns=self._netns_path, mark=mark)
                if self._nursery is not None:
                    self._nursery.start_soon(ports.relabel, tools, self.settings.bridge, port)
                else:
                    await ports.relabel(tools, self.settings.bridge, port)
                return self._attached(port, spare.io, marks)
            ofport = pool.pick_ofport(ofport, used)
            self._spares.pool.reserved.add(ofport)  # the keeper picks around it meanwhile
            try:
                port, io = await ports.attach(
                    tools, bridge=self.settings.bridge, request=request, mtu=mtu,
                    ofport=ofport, port_io=self._io.wanted(), switch_netns=self._netns_path,
                    mark=mark, xdp_mode=self.settings.xdp_mode, on_xdp=self._io.result)
            finally:
                self._spares.pool.reserved.discard(ofport)
            return self._attached(port, io, marks)

    def _attached(self, port: LocalPort, io: str, marks: list[tuple[str, float]]) -> LocalPort:
        self._ports[port.container_id] = port
        self._port_io[port.container_id] = io
        if len(self.attach_marks) >= 64:
            self.attach_marks.pop(next(iter(self.attach_marks)))
        self.attach_marks[port.container_id] = marks
        return port

    async def announce(self, endpoints: Sequence[tuple[str, str]],
                       skip: str | None = None) -> int:
        """Gratuitous ARP for ``endpoints`` (mac, ip) to every local container
        (but ``skip``); see ``announce.py``.  Returns the frames sent."""
        targets = [p.host_ifname for cid, p in self._ports.items() if cid != skip]
        if not targets or not endpoints or not self._ready:
            return 0
        if self._arp_sock is None:
            try:
                self._arp_sock = await netlink.in_netns(self._netns_path, announce.open_socket)
            except (MeshError, OSError) as exc:  # the switch's namespace vanished
                log.debug("announcement skipped: %s", exc)
                return 0
        return announce.send_garps(self._arp_sock, targets, endpoints)

    async def detach_port(self, container_id: str) -> None:
        async with self._lock:
            port = self._ports.get(container_id)
            if port is None:
                return
            tools = self._need_ready()
            await ports.detach(tools, port.host_ifname, self._netns_path)
            self._ports.pop(container_id, None)
            self._port_io.pop(container_id, None)

    def health(self) -> DatapathHealth:
        return DatapathHealth(ok=self._ready, reason=self._reason)

    def status(self) -> dict[str, Any]:
        ios = set(self._port_io.values())
        underlay = self._underlay
        return {
            "type": self.kind,
            "bridge": self.settings.bridge,
            "flows": len(self._installed) if self._installed is not None else 0,
            "flows_desired": len(self._desired),
            "health": "ok" if self._ready else "degraded",
            "reason": self._reason,
            "daemons": "own" if self._daemons is not None else "external",
            "db_socket": self._tools.db_socket if self._tools else None,
            "ports": len(self._ports),
            **self._spares.pool.status(),
            "port_io": {
                "underlay": underlay.io if underlay else None,
                "containers": sorted(ios),
                "next": self._io.wanted(),
                "why": self._io_why(),
                "threads": self._threads({underlay.io if underlay else None, *ios}),
            },
            "underlay": underlay.underlay.dev if underlay and underlay.underlay else None,
            "container_mtu": self._container_mtu_or_none(),
            "recoveries": self.recoveries,
            "lost_ports": list(self._lost[-10:]),
            "recent_faults": list(self._faults),
            "recent_applies": list(self._applies),
            "flow_channel": self._flows.status(),
        }

    # -- extras ----------------------------------------------------------------------

    async def resync(self) -> None:
        """Re-install the whole table (``replace-flows``) as after an OVS restart:
        for an operator who suspects the switch, and to measure the full path."""
        async with self._lock:
            self._installed = None
            if self._ready and self._have_desired:
                try:
                    await self._sync()
                except MeshError as exc:
                    self._degrade(f"flow apply failed: {exc}")

    def ports(self) -> dict[str, LocalPort]:
        return dict(self._ports)

    @property
    def tools(self) -> OvsTools | None:
        return self._tools

    @property
    def daemons(self) -> OwnDaemons | None:
        return self._daemons

    # -- internals -------------------------------------------------------------------

    def _need_ready(self) -> OvsTools:
        if not self._ready or self._tools is None:
            raise UnavailableError(f"the OVS datapath is degraded: {self._reason}")
        return self._tools

    def _threads(self, ios_in_use: set[str | None]) -> str:
        """Who polls our ports: AF_PACKET ports always vswitchd's main thread."""
        port_io = self._io.wanted() if "afxdp" in ios_in_use else "afpacket"
        if port_io == "afxdp-pmd" and self._leaves_pmd_alone():
            return "PMD with the host OVS's own settings"
        return portio.threads(port_io, self.settings.pmd_cpu_mask,
                              self.settings.pmd_max_sleep_us, self._io.cpus)

    def _io_why(self) -> str:
        underlay = self._underlay.underlay if self._underlay is not None else None
        return portio.with_mtu_note(self._io.why(), self._io.wanted(), {
            "underlay": underlay.mtu if underlay else None,
            "container": self._container_mtu_or_none()})

    def _container_mtu_or_none(self) -> int | None:
        if self.settings.container_mtu is not None:
            return self.settings.container_mtu
        if self._underlay is not None and self._underlay.underlay is not None:
            return self._underlay.underlay.mtu - VXLAN_OVERHEAD
        return None

    def _container_mtu(self) -> int:
        return self._container_mtu_or_none() or 1500 - VXLAN_OVERHEAD
