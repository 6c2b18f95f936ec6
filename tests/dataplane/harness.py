"""Build hosts, containers and their flow tables over a topology graph (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from meshrouter.dataplane.core.evaluate import CompiledTable, Packet
from meshrouter.dataplane.core.fabric import Fabric
from meshrouter.dataplane.core.pipeline import ETH_TYPE_ARP, ETH_TYPE_IP, FIRST_CONTAINER_PORT
from meshrouter.dataplane.core.table import FlowInputs, FlowTable, PortInfo, build_flows
from meshrouter.dataplane.core.vni import assign_ids
from meshrouter.endpoints.model import Endpoint, make_endpoint
from meshrouter.names import PeerName
from meshrouter.topology.routes import compute_routes
from tests.topology.builders import graph_records


@dataclass(frozen=True)
class Container:
    host: PeerName
    cid: str
    port: int
    mac: str
    ip: str


def underlay_ip(host: int) -> str:
    return f"192.168.{(host >> 8) & 255}.{host & 255}"


def make_containers(counts: Mapping[int, int]) -> list[Container]:
    out: list[Container] = []
    serial = 0
    for host in sorted(counts):
        for i in range(counts[host]):
            serial += 1
            out.append(Container(PeerName(host), f"c{host}-{i}", FIRST_CONTAINER_PORT + i,
                                 f"02:40:00:00:{serial >> 8:02x}:{serial & 255:02x}",
                                 f"10.40.{serial >> 8}.{serial & 255}"))
    return out


def endpoints_of(containers: Iterable[Container]) -> list[Endpoint]:
    return [make_endpoint(c.host, c.cid, c.mac, c.ip, "", 1) for c in containers]


def build_world(nodes: list[int], edges: list[tuple[int, int]], containers: list[Container]
                ) -> tuple[dict[PeerName, FlowTable], Fabric]:
    records = graph_records(nodes, edges)
    ids = assign_ids(records)
    endpoints = endpoints_of(containers)
    adjacency: dict[PeerName, set[PeerName]] = {PeerName(n): set() for n in nodes}
    for a, b in edges:
        adjacency[PeerName(a)].add(PeerName(b))
        adjacency[PeerName(b)].add(PeerName(a))
    tables: dict[PeerName, FlowTable] = {}
    for n in nodes:
        host = PeerName(n)
        routes = compute_routes(records, host)
        ports = [PortInfo(c.cid, c.port, c.mac, c.ip) for c in containers if c.host == host]
        underlay = {peer: underlay_ip(peer) for peer in adjacency[host]}
        tables[host] = build_flows(FlowInputs(host, ports, endpoints, routes, ids, underlay))
    fabric = Fabric(
        {h: CompiledTable(t.flows) for h, t in tables.items()},
        {PeerName(n): underlay_ip(n) for n in nodes},
        lambda a, b: b in adjacency[a],
    )
    return tables, fabric


def ip_packet(src: Container, dst_mac: str, dst_ip: str, *, src_mac: str | None = None,
              src_ip: str | None = None, tag: str = "") -> Packet:
    return Packet(in_port=src.port, eth_src=src_mac or src.mac, eth_dst=dst_mac,
                  eth_type=ETH_TYPE_IP, ip_src=src_ip or src.ip, ip_dst=dst_ip, payload=tag)


def arp_request(src: Container, target_ip: str) -> Packet:
    return Packet(in_port=src.port, eth_src=src.mac, eth_dst="ff:ff:ff:ff:ff:ff",
                  eth_type=ETH_TYPE_ARP, arp_op=1, arp_sha=src.mac, arp_spa=src.ip,
                  arp_tpa=target_ip)
