"""Over random topologies, the flows deliver exactly the allowed packets.

The oracle is a plain BFS over the generated edges (it never calls the route
code or the flow builder): two containers may talk iff their hosts are in one
connected component; a unicast arrives once, at the right port, along a path
without repeated hosts; a broadcast reaches every other container of the
component once; spoofed or unknown-destination packets arrive nowhere.
"""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.dataplane.core.evaluate import Packet
from meshrouter.dataplane.core.pipeline import ETH_TYPE_IP
from tests.dataplane.harness import (
    Container,
    arp_request,
    build_world,
    ip_packet,
    make_containers,
)


def components(nodes: list[int], edges: list[tuple[int, int]]) -> dict[int, int]:
    adjacency: dict[int, set[int]] = {n: set() for n in nodes}
    for a, b in edges:
        adjacency[a].add(b)
        adjacency[b].add(a)
    label: dict[int, int] = {}
    for start in nodes:
        if start in label:
            continue
        label[start] = start
        queue = deque([start])
        while queue:
            node = queue.popleft()
            for nxt in adjacency[node]:
                if nxt not in label:
                    label[nxt] = start
                    queue.append(nxt)
    return label


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[int], list[tuple[int, int]], dict[int, int]]:
    n = draw(st.integers(1, 6))
    nodes = [10 + 7 * i for i in range(n)]
    pairs = [(a, b) for i, a in enumerate(nodes) for b in nodes[i + 1:]]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True)) if pairs else []
    counts = {node: draw(st.integers(0, 2)) for node in nodes}
    return nodes, edges, counts


def broadcast(src: Container) -> Packet:
    return Packet(in_port=src.port, eth_src=src.mac, eth_dst="ff:ff:ff:ff:ff:ff",
                  eth_type=ETH_TYPE_IP, ip_src=src.ip, ip_dst="255.255.255.255")


@settings(max_examples=60, deadline=None)
@given(worlds())
def test_flows_deliver_exactly_the_allowed_packets(
        world: tuple[list[int], list[tuple[int, int]], dict[int, int]]) -> None:
    nodes, edges, counts = world
    containers = make_containers(counts)
    _, fabric = build_world(nodes, edges, containers)
    label = components(nodes, edges)
    for s in containers:
        peers = [d for d in containers if d != s and label[d.host] == label[s.host]]
        for d in containers:
            if d == s:
                continue
            allowed = label[d.host] == label[s.host]
            got = fabric.carry(s.host, ip_packet(s, d.mac, d.ip))
            assert got.loops == [] and got.lost == []
            expected = [(d.host, d.port)] if allowed else []
            assert [(x.host, x.port) for x in got.deliveries] == expected
            for x in got.deliveries:
                assert len(set(x.path)) == len(x.path)
                assert x.packet.ttl == 64 - max(0, len(x.path) - 2)
            arp = fabric.carry(s.host, arp_request(s, d.ip))
            replies = [(x.host, x.port, x.packet.arp_sha) for x in arp.deliveries]
            assert replies == ([(s.host, s.port, d.mac)] if allowed else [])
            spoofed = fabric.carry(s.host, ip_packet(s, d.mac, d.ip, src_mac=d.mac))
            assert spoofed.deliveries == []
        got = fabric.carry(s.host, broadcast(s))
        assert got.loops == [] and got.lost == []
        assert sorted((x.host, x.port) for x in got.deliveries) == sorted(
            (d.host, d.port) for d in peers)
        stranger = fabric.carry(s.host, ip_packet(s, "02:77:00:00:00:01", "10.77.0.1"))
        assert stranger.deliveries == []
