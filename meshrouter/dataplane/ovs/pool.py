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
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from pyroute2 import IPRoute

from meshrouter.dataplane import netlink
from meshrouter.dataplane.ovs.bridges import parse_json_table
from meshrouter.dataplane.ovs.tools import OvsToolError, OvsTools
from meshrouter.errors import UnavailableError

log = logging.getLogger(__name__)

SPARE_KEY = "meshrouter-spare"
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
        self.made = 0
        self.taken = 0

    def wanted(self) -> bool:
        return len(self.spares) + len(self.making) < self.size

    def ofports(self) -> set[int]:
        return {s.ofport for s in self.spares} | self.making

    def take(self, mtu: int) -> Spare | None:
        for i, spare in enumerate(self.spares):
            if spare.mtu == mtu:
                self.taken += 1
                return self.spares.pop(i)
        return None

    def status(self) -> dict[str, int]:
        return {"spare_ports": len(self.spares), "spares_made": self.made,
                "spares_taken": self.taken}


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
