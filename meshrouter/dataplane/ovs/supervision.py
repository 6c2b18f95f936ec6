"""Keeping the OVS switch in the desired state: connect, recover, probe, verify.

Theory of operation.  ``OvsDatapath.run()`` first calls ``_recover``: connect
(the system OVS, or our own daemons when none answers), set up the bridges,
reload the container ports OVS already has and install the desired flows.
Then ``_supervise`` loops: every ``probe_interval`` it checks the daemons
(pidfiles and /proc, no subprocess), and every ``verify_interval`` it counts
our flows in the switch and looks for container ports whose veth vanished
(their namespace was deleted).  Any fault -- vswitchd killed or restarted,
ovsdb unreachable, a tool timing out -- marks the datapath degraded with the
reason (``_degrade``) and makes the next probe run the whole (idempotent)
recovery: restart our daemons, re-create bridges, re-install the full flow
table atomically, warm the tunnel ARP cache (NOTES P3).  A recovery that keeps
failing is retried with backoff.  Nothing here raises out of ``run`` for a
datapath fault.

This is one half of ``OvsDatapath`` (a mixin): the other half, ``datapath.py``,
answers the ``Datapath`` protocol.  Both work on the same state, declared
below and set in ``OvsDatapath.__init__``, under the datapath's one lock.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from meshrouter.dataplane import netlink
from meshrouter.dataplane.ovs import flowsync, pool, portio, ports
from meshrouter.dataplane.ovs.bridges import UnderlayBridge, setup_integration
from meshrouter.dataplane.ovs.daemons import OwnDaemons, choose_ovs
from meshrouter.dataplane.ovs.settings import OvsSettings, choose_datapath_type
from meshrouter.dataplane.ovs.tools import OvsTools, pid_alive, read_pidfile
from meshrouter.dataplane.ovs.tunnelcache import TunnelCache
from meshrouter.errors import MeshError, UnavailableError
from meshrouter.node.datapath import LocalPort

# the datapath's logger: operators filter on one name for the whole driver
log = logging.getLogger("meshrouter.dataplane.ovs.datapath")


class Supervision:
    """Connection, recovery and supervision of the switch (see the module docstring)."""

    settings: OvsSettings
    kind: str
    on_port_lost: Callable[[str], None] | None
    recoveries: int
    last_apply: dict[str, Any]
    _lock: trio.Lock
    _tools: OvsTools | None
    _daemons: OwnDaemons | None
    _dp_type: str | None
    _netns_path: str | None
    _underlay: UnderlayBridge | None
    _vswitchd_pid: int | None
    _ready: bool
    _reason: str
    _desired: dict[str, str]
    _have_desired: bool
    _installed: dict[str, str] | None
    _tunnels: TunnelCache
    _flows: flowsync.FlowSync
    _ports: dict[str, LocalPort]
    _port_io: dict[str, str]
    _lost: list[str]
    _faults: list[str]
    _applies: list[dict[str, Any]]
    _spares: pool.SpareKeeper
    _arp_sock: socket.socket | None
    _io: portio.PortIo

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

    def _current_vswitchd(self) -> int | None:
        if self._daemons is not None:
            return self._daemons.pid("ovs-vswitchd")
        if self._tools is None:
            return None
        pid = read_pidfile(Path(self._tools.rundir) / "ovs-vswitchd.pid")
        return pid if pid is not None and pid_alive(pid) else None

    def _leaves_pmd_alone(self) -> bool:
        """PMD placement and sleep are switch-wide: we set them only on an OVS we
        started, or when the operator gave ``--pmd-cpu-mask``."""
        return self._daemons is None and self.settings.pmd_cpu_mask is None

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

    def _degrade(self, reason: str) -> None:
        if self._ready or reason != self._reason:
            log.warning("OVS datapath degraded: %s", reason)
            self._faults.append(reason)
            del self._faults[:-10]
        self._ready = False
        self._reason = reason
        self._installed = None

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
