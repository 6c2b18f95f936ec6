"""``OvsDatapath``: the ``Datapath`` on Open vSwitch, supervised so it never gives up.

Life cycle.  ``run()`` connects (the system OVS, or our own daemons when none
answers), sets up the bridges and installs the desired flows, then supervises:
every ``probe_interval`` it checks the daemons (pidfiles and /proc, no
subprocess), and every ``verify_interval`` it counts our flows in the switch and
looks for container ports whose veth vanished (their namespace was deleted).
Any fault -- vswitchd killed or restarted, ovsdb unreachable, a tool timing out --
marks the datapath degraded with the reason and makes the next probe run the
whole (idempotent) recovery: restart our daemons, re-create bridges, re-install
the full flow table atomically, warm the tunnel ARP cache (NOTES P3).  ``run``
never raises for a datapath fault; ``apply`` records the desired table even when
OVS is down and installs it on recovery.

All changes to OVS are serialised by one lock, so an apply never interleaves with
a recovery's full replace -- except the making of spare ports (``pool.py``),
which runs beside it under its own lock: a slow AF_XDP port add must not hold
up the flows of the attach that used the last spare.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from meshrouter.dataplane import netlink
from meshrouter.dataplane.ovs import announce, flowsync, pool, portio, ports
from meshrouter.dataplane.ovs.bridges import UnderlayBridge, setup_integration
from meshrouter.dataplane.ovs.daemons import OwnDaemons, choose_ovs
from meshrouter.dataplane.ovs.settings import (
    VXLAN_OVERHEAD,
    OvsSettings,
    choose_datapath_type,
)
from meshrouter.dataplane.ovs.tools import OvsTools, pid_alive, read_pidfile
from meshrouter.dataplane.ovs.tunnelcache import TunnelCache
from meshrouter.errors import MeshError, UnavailableError
from meshrouter.node.datapath import DatapathHealth, LocalPort, PortRequest

log = logging.getLogger(__name__)

class OvsDatapath:
    """The OVS driver shell (see the module docstring)."""

    def __init__(
        self, settings: OvsSettings, *, on_port_lost: Callable[[str], None] | None = None
    ) -> None:
        self.settings = settings
        self.kind = "ovs" if settings.datapath_type == "auto" else f"ovs-{settings.datapath_type}"
        self.on_port_lost = on_port_lost
        self._lock = trio.Lock()
        self._tools: OvsTools | None = None
        self._daemons: OwnDaemons | None = None
        self._dp_type: str | None = None
        self._netns_path: str | None = None
        self._underlay: UnderlayBridge | None = None
        self._vswitchd_pid: int | None = None
        self._ready = False
        self._reason = "not started"
        self._desired: dict[str, str] = {}
        self._have_desired = False
        self._installed: dict[str, str] | None = None
        self._tunnels = TunnelCache(settings.phy_bridge)
        self._render_cache = flowsync.RenderCache()
        self._flows = flowsync.FlowSync(settings.bridge, timeout=settings.tool_timeout)
        self._ports: dict[str, LocalPort] = {}
        self._port_io: dict[str, str] = {}
        self._lost: list[str] = []
        self._faults: list[str] = []
        self._applies: list[dict[str, Any]] = []
        self.recoveries = 0
        self.last_apply: dict[str, Any] = {}
        self._spares = pool.SpareKeeper(settings.port_pool)
        self._arp_sock: socket.socket | None = None
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

    async def _supervise(self) -> None:
        next_verify = trio.current_time() + self.settings.verify_interval
        failures = 0
        while True:
            # a recovery that keeps failing (say, vswitchd crashing at start) is
            # retried with backoff up to 30 s, not every probe
            failures = 0 if self._ready else failures + 1
            pause = self.settings.probe_interval * (2 ** min(failures, 5) if failures else 1)
            await trio.sleep(min(pause, max(30.0, self.settings.probe_interval)))
            verify = trio.current_time() >= next_verify
            if verify:
                next_verify = trio.current_time() + self.settings.verify_interval
            async with self._lock:
                await self._probe(verify)

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

    def _degrade(self, reason: str) -> None:
        if self._ready or reason != self._reason:
            log.warning("OVS datapath degraded: %s", reason)
            self._faults.append(reason)
            del self._faults[:-10]
        self._ready = False
        self._reason = reason
        self._installed = None

    def _threads(self, ios_in_use: set[str | None]) -> str:
        """Who polls our ports: AF_PACKET ports always vswitchd's main thread."""
        port_io = self._io.wanted() if "afxdp" in ios_in_use else "afpacket"
        if port_io == "afxdp-pmd" and self._leaves_pmd_alone():
            return "PMD with the host OVS's own settings"
        return portio.threads(port_io, self.settings.pmd_cpu_mask,
                              self.settings.pmd_max_sleep_us, self._io.cpus)

    def _leaves_pmd_alone(self) -> bool:
        """PMD placement and sleep are switch-wide: we set them only on an OVS we
        started, or when the operator gave ``--pmd-cpu-mask``."""
        return self._daemons is None and self.settings.pmd_cpu_mask is None

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

    def _current_vswitchd(self) -> int | None:
        if self._daemons is not None:
            return self._daemons.pid("ovs-vswitchd")
        if self._tools is None:
            return None
        pid = read_pidfile(Path(self._tools.rundir) / "ovs-vswitchd.pid")
        return pid if pid is not None and pid_alive(pid) else None

    async def _connect(self) -> OvsTools:
        s = self.settings
        if self._netns_path is None and s.netns is not None:
            self._netns_path = netlink.resolve_netns(s.netns)
            self._tunnels.netns_path = self._netns_path
        if self._tools is None:
            self._tools, self._daemons = await choose_ovs(s)
        if self._daemons is not None:
            await self._daemons.start_ovsdb()
            if await self._daemons.start_vswitchd():
                self._daemons.restarts += 1
        elif not await self._tools.db_answers():
            raise UnavailableError(f"no ovsdb-server answers on {self._tools.db_socket}")
        if self._dp_type is None:
            self._dp_type = choose_datapath_type(s.datapath_type)
            self.kind = f"ovs-{self._dp_type}"
            log.info("OVS datapath type %s (%s)", self._dp_type,
                     "own daemons" if self._daemons else self._tools.db_socket)
        return self._tools

    async def _recover(self) -> None:
        """Bring everything to the desired state; never raises for an OVS fault."""
        try:
            tools = await self._connect()
            self._vswitchd_pid = self._current_vswitchd()
            if self._vswitchd_pid is None:
                raise UnavailableError("ovs-vswitchd is not running")
            assert self._dp_type is not None
            await self._io.probe(self._dp_type, lambda: tools.vsctl(
                "get", "Open_vSwitch", ".", "iface_types"))
            pmd = portio.pmd_other_config(self._io.wanted(), self.settings.pmd_cpu_mask,
                                          self.settings.pmd_max_sleep_us, self._io.cpus)
            if self._leaves_pmd_alone():
                pmd = []  # a host's own OVS: its operator's PMD settings stay as they are
            if pmd:  # before any PMD port, so its thread starts on the right core
                await tools.vsctl("set", "Open_vSwitch", ".", *pmd)
            if self._dp_type == "netdev" and self.settings.manage_underlay:
                if self._underlay is None:
                    self._underlay = UnderlayBridge(tools, self.settings, self._netns_path)
                await self._underlay.setup(self._io.wanted(), self.settings.xdp_mode,
                                           self._io.result)
            await setup_integration(tools, self.settings, self._dp_type)
            await self._reload_ports(tools)
            await self._spares.sweep(tools, self.settings.bridge, self._netns_path)
            self._installed = None
            self._tunnels.forget()
            if self._have_desired:
                await self._sync()
            # else: until the first apply, leave the switch as it is -- a restarted
            # router must not wipe a working table before it has the new one, which
            # then replaces it in one atomic swap
        except MeshError as exc:
            self._degrade(str(exc))
            return
        except Exception as exc:  # netlink, OS, a surprise from a tool: never out of run()
            log.exception("OVS recovery failed")
            self._degrade(f"{type(exc).__name__}: {exc}")
            return
        if not self._ready:
            self.recoveries += 1
            log.info("OVS datapath ready (%s, %d flows)", self.kind, len(self._desired))
        self._ready = True
        self._reason = ""
        self._spares.wake()

    async def _reload_ports(self, tools: OvsTools) -> None:
        found = await ports.load_ports(tools, self.settings.bridge)
        self._ports = {cid: port for cid, (port, _) in found.items()}
        for cid, (_, row) in found.items():
            self._port_io.setdefault(
                cid, "afxdp" if str(row.get("type", "")).startswith("afxdp") else "afpacket")
        await self._drop_lost(tools)

    async def _drop_lost(self, tools: OvsTools) -> None:
        """Ports whose veth is gone (namespace deleted under us): remove and report.
        The link list is the truth; OVS may keep a vanished netdev's ofport."""
        if not self._ports:
            return
        present = await netlink.in_netns(self._netns_path, netlink.link_names)
        for cid in [c for c, p in self._ports.items() if p.host_ifname not in present]:
            port = self._ports.pop(cid)
            await tools.vsctl("--if-exists", "del-port", port.host_ifname)
            self._port_io.pop(cid, None)
            self._lost.append(cid)
            log.warning("container %s lost its port %s (namespace gone?)", cid, port.host_ifname)
            if self.on_port_lost is not None:
                self.on_port_lost(cid)

    async def _sync(self) -> None:
        tools = self._tools
        assert tools is not None
        start = trio.current_time()
        # the native OpenFlow channel when it works, ovs-ofctl otherwise (flowsync)
        pushed = await self._flows.push(tools, self._desired, self._installed)
        self._installed = self._desired  # never mutated: apply builds a new dict
        self.last_apply = {"kind": pushed.kind, "flow_mods": pushed.flow_mods,
                           "channel": pushed.channel,
                           "ms": round((trio.current_time() - start) * 1000, 1)}
        self._applies.append(self.last_apply)
        del self._applies[:-5]
        if self._dp_type == "netdev":  # all lines: unresolved destinations are retried
            await self._tunnels.fill(tools, self._desired.values(),
                                     set_in_ovs=self.settings.manage_underlay)

    async def _probe(self, verify: bool) -> None:
        if self._ready:
            reason = self._fault()
            if reason:
                self._degrade(reason)
        if not self._ready:
            await self._recover()
            return
        if verify:
            await self._verify()

    def _fault(self) -> str:
        if self._daemons is not None and self._daemons.pid("ovsdb-server") is None:
            return "ovsdb-server died; restarting it"
        pid = self._current_vswitchd()
        if pid is None:
            return (f"ovs-vswitchd (pid {self._vswitchd_pid}) died"
                    + ("; restarting it" if self._daemons else "; waiting for it"))
        if pid != self._vswitchd_pid:
            return f"ovs-vswitchd restarted (pid {self._vswitchd_pid} -> {pid}); reinstalling"
        return ""

    async def _verify(self) -> None:
        tools = self._tools
        assert tools is not None
        try:
            count = await self._flows.count_ours(tools)  # native; ovs-ofctl as fallback
            if self._installed is not None and count != len(self._installed):
                log.warning("switch holds %d of our flows, expected %d: reinstalling",
                            count, len(self._installed))
                self._installed = None
                await self._sync()
            await self._drop_lost(tools)
        except Exception as exc:  # never out of run(): degrade and recover instead
            # a dying daemon shows first as a refused socket: name the daemon if so
            self._degrade(self._fault() or f"verification failed: {exc}")

    async def _shutdown(self) -> None:
        """Own daemons: give the underlay its address back, then stop them.  An
        external OVS keeps its bridges and flows (its owner manages it).  Spare
        ports go either way (they are ours, not the owner's)."""
        self._flows.close()
        if self._arp_sock is not None:
            self._arp_sock.close()
            self._arp_sock = None
        if self._tools is not None:
            with trio.move_on_after(10):
                await self._spares.remove_all(self._tools, self._netns_path)
        if self._daemons is None:
            return
        try:
            with trio.move_on_after(20):
                if self._underlay is not None:
                    await self._underlay.restore()
                await self._daemons.stop()
        except (MeshError, OSError) as exc:
            log.error("OVS shutdown incomplete: %s", exc)
        self._ready = False
        self._reason = "stopped"
