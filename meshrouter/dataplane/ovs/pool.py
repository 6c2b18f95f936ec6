"""Spare container ports, made before they are asked for.

Why: adding a port to the userspace switch is the slowest step of an attach
(issue 9's breakdown: 40-60 ms on AF_PACKET, 130-450 ms on AF_XDP, where
vswitchd loads an XDP program and maps a umem before ``ovs-vsctl`` returns).
None of it depends on the container.  So the datapath keeps ``size`` spares: a
veth pair in the switch's namespace (TX checksum offload already off on the
container end, NOTES P1), its host end already a port of the integration bridge
with a fixed OpenFlow number and the port I/O chosen (AF_XDP or the fallback).
An attach takes one: it moves the free end into the container and configures
it there, and relabels the OVS row with the container (a database-only write,
``--no-wait``); a background task makes the next spare.

Safety: a spare has no flows, so the integration bridge drops whatever it
sends (the table's default).  Spares are marked in OVS
(``external_ids:meshrouter-spare=<bridge>``); the datapath removes stale
ones at start (a crashed router's) and its own at stop, so none is left
behind.  A request with its own MTU or OpenFlow port number is made the
ordinary way.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import trio
from pyroute2 import IPRoute

from meshrouter.dataplane import netlink
from meshrouter.dataplane.core.pipeline import FIRST_CONTAINER_PORT, TUNNEL_PORT
from meshrouter.dataplane.ovs.bridges import add_port_with_io, parse_json_table
from meshrouter.dataplane.ovs.tools import OvsToolError, OvsTools
from meshrouter.errors import ConflictError, InvalidRequestError, UnavailableError

log = logging.getLogger(__name__)

SPARE_KEY = "meshrouter-spare"
MAX_OFPORT = 0xFEFF
POOL_QUIET = 0.3
"""Seconds without an attach or a flow apply before a spare is made."""


@dataclass(frozen=True, slots=True)
class Spare:
    """A ready port: ``host`` on the bridge at ``ofport``, ``free`` waiting for a container."""

    host: str
    free: str
    ofport: int
    mtu: int
    io: str


def spare_names() -> tuple[str, str]:
    """Fresh (host end, free end) names: ``mp``/``mq`` + 10 hex digits (<= 15 characters)."""
    token = secrets.token_hex(5)
    return f"mp{token}", f"mq{token}"


def make_link(host: str, free: str, mtu: int) -> None:
    """The spare's veth pair, in the calling thread's namespace (the switch's)."""
    for name in (host, free):
        netlink.delete_link(name)
    with IPRoute() as ip:
        ip.link("add", ifname=host, kind="veth", peer={"ifname": free})
        try:
            netlink.tx_checksum_off(free)
            index = ip.link_lookup(ifname=host)
            if not index:
                raise UnavailableError(f"veth {host} vanished")
            ip.link("set", index=index[0], mtu=mtu, state="up")
        except BaseException:
            netlink.delete_link(host)
            raise


def adopt(spec: netlink.VethSpec, spare: Spare,
          mark: Callable[[str], None] = lambda step: None) -> None:
    """Move the spare's free end into the container as ``spec`` says (switch's
    namespace); any failure deletes the pair."""
    spec.validate()
    with IPRoute() as ip:
        netlink.finish_veth(ip, spec, spare.host, spare.free, None, mark)


class PortPool:
    """The spares of one integration bridge (the datapath's shell fills it)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.spares: list[Spare] = []
        self.making: set[int] = set()
        """OpenFlow numbers of spares being made (not yet in ``spares``)."""
        self.reserved: set[int] = set()
        """OpenFlow numbers of ordinary ports being added (not spares)."""
        self.made = 0
        self.taken = 0

    def wanted(self) -> bool:
        return len(self.spares) + len(self.making) < self.size

    def ofports(self) -> set[int]:
        return {s.ofport for s in self.spares} | self.making | self.reserved

    def take(self, mtu: int) -> Spare | None:
        for i, spare in enumerate(self.spares):
            if spare.mtu == mtu:
                self.taken += 1
                return self.spares.pop(i)
        return None

    def status(self) -> dict[str, int]:
        return {"spare_ports": len(self.spares), "spares_made": self.made,
                "spares_taken": self.taken}


def next_ofport(used: set[int]) -> int:
    port = FIRST_CONTAINER_PORT
    while port in used:
        port += 1
    if port > MAX_OFPORT:
        raise UnavailableError("no free OpenFlow port number on the integration bridge")
    return port


def pick_ofport(requested: object, used: set[int]) -> int:
    """The OpenFlow number for a new port: the one asked for (checked), else the
    lowest free one from ``FIRST_CONTAINER_PORT``."""
    if requested is None:
        return next_ofport(used)
    if not isinstance(requested, int) or not 1 <= requested <= MAX_OFPORT:
        raise InvalidRequestError(f"invalid OpenFlow port number {requested!r}")
    if requested in used or requested == TUNNEL_PORT:
        raise ConflictError(f"OpenFlow port {requested} is already in use")
    return requested


async def remove(tools: OvsTools, host: str, switch_netns: str | None) -> None:
    """Take one spare out of OVS and delete its pair (never raises for a gone one)."""
    try:
        await tools.vsctl("--if-exists", "del-port", host)
    except OvsToolError as exc:
        log.warning("cannot remove spare port %s: %s", host, exc)
    await netlink.in_netns(switch_netns, lambda: netlink.delete_link(host))


async def remove_stale(tools: OvsTools, bridge: str, switch_netns: str | None,
                       keep: set[str]) -> int:
    """Spares of ``bridge`` in the database but not in ``keep`` (a crashed run's)."""
    text = await tools.vsctl("--format=json", "--columns=name,external_ids", "list", "Interface")
    stale = []
    for row in parse_json_table(text):
        ids = row.get("external_ids") or {}
        if isinstance(ids, dict) and ids.get(SPARE_KEY) == bridge and row["name"] not in keep:
            stale.append(str(row["name"]))
    for host in stale:
        await remove(tools, host, switch_netns)
    return len(stale)


@dataclass(frozen=True, slots=True)
class Switch:
    """What the keeper needs of the datapath, read at each use (it changes)."""

    ready: Callable[[], bool]
    tools: Callable[[], OvsTools]
    """The switch's tools; raises ``UnavailableError`` while degraded."""
    used_ofports: Callable[[], set[int]]
    mtu: Callable[[], int]
    port_io: Callable[[], str]
    on_xdp: Callable[[bool, str], None]
    bridge: str
    netns: Callable[[], str | None]
    xdp_mode: str = "generic"


class SpareKeeper:
    """Keeps ``PortPool.size`` spares made, beside the datapath's own lock."""

    def __init__(self, size: int) -> None:
        self.pool = PortPool(size)
        self.lock = trio.Lock()
        self.last_busy = -math.inf
        self._wake = trio.Event()
        self._checked = False

    def busy(self) -> None:
        """An attach or a flow apply is under way: spares wait (see ``keep``)."""
        self.last_busy = trio.current_time()

    def wake(self) -> None:
        self._wake.set()

    def take(self, mtu: int) -> Spare | None:
        spare = self.pool.take(mtu)
        if spare is not None:
            self.wake()
        return spare

    async def keep(self, switch: Switch) -> None:
        """Make spares while fewer than wanted (woken by a take or a recovery),
        once the switch has been quiet for ``POOL_QUIET``: adding an AF_XDP port
        stalls vswitchd's main loop for a few hundred ms, which must not land on
        the flows of the attach that just took a spare, nor of its peers'."""
        failures = 0
        while True:
            if not (switch.ready() and self.pool.wanted()):
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            quiet = trio.current_time() - self.last_busy
            if quiet < POOL_QUIET:
                await trio.sleep(POOL_QUIET - quiet)
                continue
            try:
                async with self.lock:
                    await self._make(switch)
                failures = 0
            except Exception as exc:  # a spare is an optimisation: log, back off, retry
                failures += 1
                log.warning("cannot make a spare port: %s", exc)
                await trio.sleep(min(30.0, 0.5 * 2 ** failures))

    async def sweep(self, tools: OvsTools, bridge: str, netns: str | None) -> None:
        """Once, at the first recovery: a crashed run's spares are ours to remove --
        before any attach is restored, since a port taken but not yet relabelled
        when the router died still looks like a spare (removing it takes the
        container's veth, and the restored attach makes a fresh one)."""
        if not self._checked:
            async with self.lock:
                await self._sweep(tools, bridge, netns)

    async def _sweep(self, tools: OvsTools, bridge: str, netns: str | None) -> None:
        if not self._checked:  # (the caller holds the lock)
            await remove_stale(tools, bridge, netns, {s.host for s in self.pool.spares})
            self._checked = True

    async def _make(self, switch: Switch) -> None:
        tools, netns, pool = switch.tools(), switch.netns(), self.pool
        await self._sweep(tools, switch.bridge, netns)
        ofport = next_ofport(switch.used_ofports() | pool.ofports())
        mtu = switch.mtu()
        host, free = spare_names()
        pool.making.add(ofport)
        try:
            await netlink.in_netns(netns, lambda: make_link(host, free, mtu))
            try:
                extra = [f"ofport_request={ofport}", f'external_ids:{SPARE_KEY}="{switch.bridge}"']
                io, row = await add_port_with_io(
                    tools, switch.bridge, host, switch.port_io(), extra, fresh=True,
                    xdp_mode=switch.xdp_mode, on_xdp=switch.on_xdp, mtu=mtu)
                if row.get("ofport") != ofport:
                    raise UnavailableError(f"spare {host} did not get ofport {ofport}: "
                                           f"{row.get('error') or 'missing'}")
            except BaseException:
                with trio.CancelScope(shield=True):
                    await remove(tools, host, netns)
                raise
            pool.spares.append(Spare(host, free, ofport, mtu, io))
            pool.made += 1
        finally:
            pool.making.discard(ofport)

    async def remove_all(self, tools: OvsTools, netns: str | None) -> None:
        """At stop: our spares go (their pairs would stay in the host's namespace)."""
        if not (self.pool.spares or self._checked):
            return
        async with self.lock:
            for spare in self.pool.spares:
                await remove(tools, spare.host, netns)
            self.pool.spares.clear()

