"""Theory of operation: a host's desired flow table as a pure function.

``build_flows(FlowInputs)`` turns (local ports, live endpoints, routes, the
peers' datapath IDs, the neighbours' underlay addresses, the local peer) into
the complete table of ``pipeline`` (read its docstring for the tables).  Same
inputs, same flows, in the same order (``flow.sort_key`` gives the rendering
order); no clock, no I/O.

Choices that make the table safe and its deltas small:

* **Anti-spoofing at ingress.**  A container port gets exactly two entry
  flows: ARP whose Ethernet source, sender MAC and sender IP are its own, and
  IPv4 whose Ethernet and IP sources are its own.  Anything else from a port
  (another source, IPv6, LLDP) hits CLASSIFY's drop.  Tunnelled traffic was
  checked by the sending host and is trusted.
* **ARP never leaves the host.**  Every ARP request for a known endpoint IP
  is answered in place; requests for unknown IPs are dropped, never flooded.
* **Per-endpoint flows name the owner, not the path.**  FORWARD maps a remote
  MAC to the owner's unicast VNI and jumps to ROUTE, which has one flow per
  reachable peer (the next hop's underlay address).  A route change rewrites
  ROUTE only; an endpoint change adds/deletes two flows (ARP + FORWARD).
* **Relays** re-tunnel unicast VNIs that are not ours toward the next hop,
  after clearing in_port (OVS skips output to the ingress port, lab pitfall
  P2) and decrementing the inner TTL, which bounds any transient loop while
  routers disagree.
* **Broadcast and multicast** follow the origin's spanning tree: the origin
  sends one copy to each neighbour, every host delivers to its ports and
  forwards to its children in that origin's tree.
* **Only reachable owners.**  Endpoints of peers we have no route to are left
  out, so their MACs and IPs are dropped here rather than black-holed later.
* **Conflicts** (two live endpoints claiming one MAC or one IP) would make two
  flows with one key; the winner is deterministic (ours first, then the
  smallest (owner, container)), and the losers are counted in ``conflicts``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from meshrouter.dataplane.core.flow import (
    Action,
    ArpReply,
    ClearInPort,
    DecTtl,
    Flow,
    GotoTable,
    Match,
    Output,
    OutputInPort,
    SetTunnelDst,
    SetTunnelId,
)
from meshrouter.dataplane.core.pipeline import (
    ETH_TYPE_ARP,
    ETH_TYPE_IP,
    MULTICAST_BIT_MAC,
    TUNNEL_PORT,
    Category,
    Table,
    cookie,
)
from meshrouter.dataplane.core.vni import broadcast_vni, unicast_vni
from meshrouter.endpoints.model import Endpoint
from meshrouter.names import PeerName

PRIORITY_MISS = 0
PRIORITY_BROADCAST = 50
PRIORITY_EXACT = 100
ARP_REQUEST = 1


class RouteSource(Protocol):
    """The part of ``topology.routes.Routes`` the flow table needs."""

    def next_hop(self, dst: PeerName) -> PeerName | None: ...

    def broadcast_next_hops(self, origin: PeerName) -> list[PeerName]: ...

    def reachable(self) -> frozenset[PeerName]: ...


@dataclass(frozen=True, slots=True)
class PortInfo:
    """A local container port: its switch port number and own MAC and IP."""

    container_id: str
    port: int
    mac: str
    ip: str


@dataclass(frozen=True, slots=True)
class FlowInputs:
    """Everything the table depends on (and nothing else)."""

    local: PeerName
    ports: Sequence[PortInfo]
    endpoints: Iterable[Endpoint]
    """Live endpoints of every owner; the local owner's are taken from ``ports``."""
    routes: RouteSource
    peer_ids: Mapping[PeerName, int]
    """Datapath ID of every known peer (``vni.assign_ids``), the local one included."""
    underlay: Mapping[PeerName, str]
    """Underlay IPv4 address of each neighbour (the tunnel destination)."""


@dataclass(slots=True)
class FlowTable:
    """A built table: the flows in order, and what was left out and why."""

    flows: list[Flow]
    conflicts: list[str] = field(default_factory=list)
    unroutable: list[PeerName] = field(default_factory=list)
    """Reachable peers whose next hop has no known underlay address."""


def endpoint_object(owner: PeerName, container_id: str) -> int:
    """The 32-bit object key in an endpoint flow's cookie."""
    return zlib.crc32(owner.to_bytes(6, "big") + container_id.encode())


def build_flows(inputs: FlowInputs) -> FlowTable:
    """The complete desired flow table of ``inputs.local``."""
    out: list[Flow] = []
    conflicts: list[str] = []
    local = inputs.local
    routes = inputs.routes
    ids = inputs.peer_ids
    reachable = routes.reachable()
    ports = sorted(inputs.ports, key=lambda p: p.port)
    base = cookie(Category.BASE)

    for table in Table:
        out.append(Flow(table, PRIORITY_MISS, Match(), (), base))
    out.append(Flow(Table.CLASSIFY, PRIORITY_EXACT, Match(in_port=TUNNEL_PORT),
                    (GotoTable(Table.TUNNEL_IN),), base))
    my_id = ids.get(local)
    if my_id is not None:
        out.append(Flow(Table.TUNNEL_IN, PRIORITY_EXACT,
                        Match(dl_type=ETH_TYPE_IP, tun_id=unicast_vni(my_id)),
                        (GotoTable(Table.DELIVER),), base))

    # -- endpoints: local ports first, so they win any conflict ---------------------
    by_mac: dict[str, tuple[PeerName, str]] = {}
    by_ip: dict[str, tuple[PeerName, str]] = {}
    for p in ports:
        c = cookie(Category.PORT, p.port)
        out.append(Flow(Table.CLASSIFY, PRIORITY_EXACT,
                        Match(in_port=p.port, dl_type=ETH_TYPE_ARP, dl_src=p.mac,
                              arp_spa=p.ip, arp_sha=p.mac),
                        (GotoTable(Table.ARP),), c))
        out.append(Flow(Table.CLASSIFY, PRIORITY_EXACT,
                        Match(in_port=p.port, dl_type=ETH_TYPE_IP, dl_src=p.mac, nw_src=p.ip),
                        (GotoTable(Table.FORWARD),), c))
        if _claim(by_mac, p.mac, (local, p.container_id), conflicts):
            out.append(Flow(Table.FORWARD, PRIORITY_EXACT, Match(dl_dst=p.mac),
                            (Output(p.port),), c))
            out.append(Flow(Table.DELIVER, PRIORITY_EXACT, Match(dl_dst=p.mac),
                            (Output(p.port),), c))
        if _claim(by_ip, p.ip, (local, p.container_id), conflicts):
            out.append(_arp_responder(p.mac, p.ip, c))

    remote = sorted((e for e in inputs.endpoints
                     if e.owner != local and not e.tombstone and e.owner in reachable
                     and e.owner in ids),
                    key=lambda e: e.key)
    for e in remote:
        c = cookie(Category.ENDPOINT, endpoint_object(e.owner, e.container_id))
        if _claim(by_mac, e.mac, e.key, conflicts):
            out.append(_remote_forward(e.mac, unicast_vni(ids[e.owner]), c))
        if _claim(by_ip, e.ip, e.key, conflicts):
            out.append(_arp_responder(e.mac, e.ip, c))

    # -- per peer: route, relay, broadcast trees -------------------------------------
    unroutable: list[PeerName] = []
    group = Match(dl_type=ETH_TYPE_IP, dl_dst=MULTICAST_BIT_MAC, dl_dst_mask=MULTICAST_BIT_MAC)
    local_copies: tuple[Action, ...] = tuple(Output(p.port) for p in ports)
    for peer in sorted(reachable):
        peer_id = ids.get(peer)
        if peer == local or peer_id is None:
            continue
        hop = routes.next_hop(peer)
        address = None if hop is None else inputs.underlay.get(hop)
        c = cookie(Category.ROUTE, peer_id)
        if address is None:
            unroutable.append(peer)
        else:
            vni = unicast_vni(peer_id)
            out.append(Flow(Table.ROUTE, PRIORITY_EXACT, Match(tun_id=vni),
                            (SetTunnelDst(address), Output(TUNNEL_PORT)), c))
            out.append(Flow(Table.TUNNEL_IN, PRIORITY_EXACT,
                            Match(dl_type=ETH_TYPE_IP, tun_id=vni),
                            (ClearInPort(), DecTtl(), GotoTable(Table.ROUTE)), c))
        children = _tunnel_copies(routes.broadcast_next_hops(peer), inputs.underlay)
        if children:
            children = (ClearInPort(), DecTtl(), *children)
        out.append(Flow(Table.TUNNEL_IN, PRIORITY_BROADCAST,
                        Match(dl_type=ETH_TYPE_IP, dl_dst=MULTICAST_BIT_MAC,
                              dl_dst_mask=MULTICAST_BIT_MAC, tun_id=broadcast_vni(peer_id)),
                        local_copies + children, cookie(Category.BROADCAST, peer_id)))
    mine: tuple[Action, ...] = ()
    if my_id is not None:
        mine = _tunnel_copies(routes.broadcast_next_hops(local), inputs.underlay)
        if mine:
            mine = (SetTunnelId(broadcast_vni(my_id)), *mine)
    out.append(Flow(Table.FORWARD, PRIORITY_BROADCAST, group, local_copies + mine,
                    cookie(Category.BROADCAST, my_id or 0)))
    return FlowTable(out, conflicts, unroutable)


# The per-endpoint flows are memoised: they are immutable values of their
# arguments, so a rebuild after one change reuses the other ~10,000 objects,
# and ``delta.diff`` recognises them by identity instead of comparing fields.
@lru_cache(maxsize=1 << 17)
def _remote_forward(mac: str, vni: int, c: int) -> Flow:
    return Flow(Table.FORWARD, PRIORITY_EXACT, Match(dl_dst=mac),
                (SetTunnelId(vni), GotoTable(Table.ROUTE)), c)


@lru_cache(maxsize=1 << 17)
def _arp_responder(mac: str, ip: str, c: int) -> Flow:
    return Flow(Table.ARP, PRIORITY_EXACT,
                Match(dl_type=ETH_TYPE_ARP, arp_op=ARP_REQUEST, arp_tpa=ip),
                (ArpReply(mac=mac, ip=ip), OutputInPort()), c)


def _tunnel_copies(children: Iterable[PeerName], underlay: Mapping[PeerName, str]
                   ) -> tuple[Action, ...]:
    actions: list[Action] = []
    for child in sorted(children):
        address = underlay.get(child)
        if address is not None:
            actions += [SetTunnelDst(address), Output(TUNNEL_PORT)]
    return tuple(actions)


def _claim(seen: dict[str, tuple[PeerName, str]], value: str, key: tuple[PeerName, str],
           conflicts: list[str]) -> bool:
    holder = seen.get(value)
    if holder is None:
        seen[value] = key
        return True
    conflicts.append(f"{value} claimed by {key[1]} on {key[0]:012x} and {holder[1]} "
                     f"on {holder[0]:012x}")
    return False
