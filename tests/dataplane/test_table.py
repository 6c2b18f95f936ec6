"""The flow table: exact flows for a small case, deltas, and what the flows deliver."""

from __future__ import annotations

from pathlib import Path

from meshrouter.dataplane.core.delta import apply, diff, index
from meshrouter.dataplane.core.evaluate import CompiledTable
from meshrouter.dataplane.core.flow import sort_key
from meshrouter.dataplane.core.table import FlowInputs, PortInfo, build_flows
from meshrouter.endpoints.model import make_endpoint
from meshrouter.names import PeerName
from meshrouter.topology.routes import compute_routes
from tests.dataplane.harness import (
    arp_request,
    build_world,
    ip_packet,
    make_containers,
)
from tests.topology.builders import graph_records

A, B, C = PeerName(1), PeerName(2), PeerName(3)
LINE = graph_records([1, 2, 3], [(1, 2), (2, 3)])
C1 = PortInfo("c1", 1000, "02:40:00:00:00:01", "10.40.0.1")
E3 = make_endpoint(C, "c3", "02:40:00:00:00:03", "10.40.0.3", "", 1)
IDS = {A: 1, B: 2, C: 3}

# Host A of the line A - B - C: one local port, one endpoint on C (reached via B).
EXPECTED_A = (Path(__file__).parent / "golden_line_a.txt").read_text().splitlines()


def inputs_a(**changes: object) -> FlowInputs:
    base = {"local": A, "ports": [C1], "endpoints": [E3], "routes": compute_routes(LINE, A),
            "peer_ids": IDS, "underlay": {B: "192.168.0.2"}}
    base.update(changes)
    return FlowInputs(**base)  # type: ignore[arg-type]


def test_exact_flows_of_a_small_line() -> None:
    table = build_flows(inputs_a())
    assert [f.to_ofctl() for f in sorted(table.flows, key=sort_key)] == EXPECTED_A
    assert table.conflicts == [] and table.unroutable == []


def test_same_inputs_same_table() -> None:
    assert build_flows(inputs_a()).flows == build_flows(inputs_a()).flows


def test_one_endpoint_change_is_a_small_delta() -> None:
    before = build_flows(inputs_a()).flows
    e4 = make_endpoint(C, "c4", "02:40:00:00:00:04", "10.40.0.4", "", 1)
    after = build_flows(inputs_a(endpoints=[E3, e4])).flows
    delta = diff(before, after)
    assert delta.deletes == ()
    assert sorted(f.table for f in delta.adds) == [10, 20]
    table = index(before)
    apply(table, delta)
    assert table == index(after)
    back = diff(after, before)
    assert len(back.deletes) == 2 and back.adds == ()
    assert diff(after, after).is_empty()


def test_route_change_rewrites_route_flows_only() -> None:
    before = build_flows(inputs_a()).flows
    after = build_flows(inputs_a(underlay={B: "192.168.9.9"})).flows
    delta = diff(before, after)
    assert {f.table for f in delta.adds} <= {20, 30, 50} and delta.deletes == ()
    assert all("192.168.9.9" in f.to_ofctl() for f in delta.adds)


def test_unreachable_owner_and_missing_underlay_are_left_out() -> None:
    alone = graph_records([1, 2, 3], [(2, 3)])
    table = build_flows(inputs_a(routes=compute_routes(alone, A)))
    assert not any("10.40.0.3" in f.to_ofctl() for f in table.flows)
    table = build_flows(inputs_a(underlay={}))
    assert table.unroutable == [B, C]
    assert not any(f.table == 50 and f.priority > 0 for f in table.flows)


def test_conflicting_claims_keep_the_local_port() -> None:
    thief = make_endpoint(C, "c9", C1.mac, C1.ip, "", 5)
    table = build_flows(inputs_a(endpoints=[E3, thief]))
    assert len(table.conflicts) == 2
    assert [f for f in table.flows if "c9" in str(f)] == []
    CompiledTable(table.flows)  # no duplicate keys left


def test_two_hosts_ping_and_arp() -> None:
    containers = make_containers({1: 2, 2: 1})
    a, a2, b = containers
    _, fabric = build_world([1, 2], [(1, 2)], containers)
    reply = fabric.carry(a.host, arp_request(a, b.ip))
    assert [(d.host, d.port) for d in reply.deliveries] == [(a.host, a.port)]
    answer = reply.deliveries[0].packet
    assert (answer.arp_op, answer.arp_sha, answer.arp_spa, answer.eth_dst) == (
        2, b.mac, b.ip, a.mac)
    for dst in (a2, b):
        got = fabric.carry(a.host, ip_packet(a, dst.mac, dst.ip))
        assert [(d.host, d.port) for d in got.deliveries] == [(dst.host, dst.port)]
    spoofed = fabric.carry(a.host, ip_packet(a, b.mac, b.ip, src_mac=a2.mac))
    assert spoofed.deliveries == []
    wrong_ip = fabric.carry(a.host, ip_packet(a, b.mac, b.ip, src_ip="10.99.0.1"))
    assert wrong_ip.deliveries == []
    unknown = fabric.carry(a.host, ip_packet(a, "02:99:00:00:00:01", b.ip))
    assert unknown.deliveries == []
    unknown_arp = fabric.carry(a.host, arp_request(a, "10.99.0.1"))
    assert unknown_arp.deliveries == []


def test_relay_over_a_line_decrements_ttl_once_per_relay() -> None:
    containers = make_containers({1: 1, 3: 1})
    a, c = containers
    _, fabric = build_world([1, 2, 3], [(1, 2), (2, 3)], containers)
    got = fabric.carry(a.host, ip_packet(a, c.mac, c.ip))
    assert [(d.host, d.path) for d in got.deliveries] == [(C, (A, B, C))]
    assert got.deliveries[0].packet.ttl == 63
    assert got.lost == [] and got.loops == []
