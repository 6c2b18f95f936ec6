"""The dataplane Service with the memory datapath under MockClock."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from meshrouter.dataplane.core.evaluate import Packet
from meshrouter.dataplane.core.pipeline import ETH_TYPE_ARP
from meshrouter.endpoints.gossiper import CHANNEL
from meshrouter.endpoints.model import make_endpoint
from meshrouter.endpoints.requests import parse_attach
from meshrouter.endpoints.state import EndpointSet
from meshrouter.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    StateFileError,
    UnavailableError,
)
from meshrouter.names import PeerName
from meshrouter.node.service import ApiRequest, TopologyChange
from tests.endpoints.harness import LOCAL, make_service, run_with

OTHER = PeerName(0x0A0000000002)


def body(**fields: Any) -> ApiRequest:
    base: dict[str, Any] = {"container_id": "c1", "netns": "/proc/1/ns/net"}
    base.update(fields)
    return ApiRequest(path_params={}, body=base)


def routes_of(service: Any, ep_ip: str) -> list[str]:
    return [f.to_ofctl() for f in service.context.datapath.installed.values()
            if f"arp_tpa={ep_ip}" in f.to_ofctl()]


def arp_answer(datapath: Any, port: int, mac: str, ip: str, target: str) -> list[str]:
    packet = Packet(in_port=port, eth_src=mac, eth_dst="ff:ff:ff:ff:ff:ff", eth_type=ETH_TYPE_ARP,
                    arp_op=1, arp_sha=mac, arp_spa=ip, arp_tpa=target)
    return [e.packet.arp_sha for e in datapath.process(packet)]


def test_attach_allocates_makes_a_port_gossips_and_programs() -> None:
    service, datapath, ipam, storage = make_service()
    handlers = {(r.method, r.path): r.handler for r in service.api_routes()}
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        view = await handlers[("POST", "/attach")](body(name="web"))
        seen["view"] = view
        await trio.sleep(0.1)
        seen["again"] = await handlers[("POST", "/attach")](body(name="web"))
        two = await handlers[("POST", "/attach")](body(container_id="c2"))
        await trio.sleep(0.1)
        seen["answer"] = arp_answer(datapath, two["port"], two["mac"], two["ip"].split("/")[0],
                                    "10.40.0.2")
        seen["ps"] = await handlers[("GET", "/endpoints")](ApiRequest(path_params={}))
        seen["status"] = service.summary()

    run_with(service, scenario)
    view = seen["view"]
    assert view["ip"] == "10.40.0.2/16" and view["port"] == 1000
    assert seen["again"] == view and ipam.calls.count(("allocate", "c1")) == 1
    assert datapath.ports["c1"].mac == view["mac"]
    assert seen["answer"] == [view["mac"]]  # c2 gets c1's MAC from the flows
    assert [(r["container_id"], r["name"], r["local"]) for r in seen["ps"]] == [
        ("c1", "web", True), ("c2", "", True)]
    status = seen["status"]
    assert status["endpoints_local"] == 2 and status["health"] == "ok"
    assert status["flows"] == len(datapath.installed) > 0
    assert storage.load("endpoints") is not None


def test_conflicting_reattach_and_bad_requests_change_nothing() -> None:
    service, datapath, ipam, _ = make_service()
    errors: list[type[Exception]] = []

    async def scenario() -> None:
        await service.attach_container(parse_attach(body().body))
        for request in (body(netns="/other"), body(ip="10.40.0.9")):
            try:
                await service.attach_container(parse_attach(request.body))
            except ConflictError as exc:
                errors.append(type(exc))

    run_with(service, scenario)
    assert errors == [ConflictError, ConflictError]
    assert list(ipam.owners) == ["10.40.0.2"] and list(datapath.ports) == ["c1"]


@pytest.mark.parametrize("fields", [
    {"container_id": ""}, {"container_id": "a/b"}, {"netns": 3}, {"ip": "10.40.0"},
    {"ip": "fe80::1"}, {"ip": "10.40.0.0/16"}, {"mtu": 70000}, {"mtu": True},
    {"ifname": "x" * 16}, {"name": "n" * 300}, {"colour": "red"},
])
def test_bad_requests_are_invalid(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        parse_attach(body(**fields).body)


def test_failed_port_releases_the_address_and_leaves_nothing() -> None:
    service, datapath, ipam, _ = make_service()
    datapath.attach_error = UnavailableError("no such namespace /proc/1/ns/net")
    raised: list[Exception] = []

    async def scenario() -> None:
        try:
            await service.attach_container(parse_attach(body().body))
        except UnavailableError as exc:
            raised.append(exc)

    run_with(service, scenario)
    assert len(raised) == 1 and ipam.owners == {} and ipam.calls[-1] == ("release", "c1")
    assert service.table.live() == [] and datapath.ports == {} and service.attachments == {}


def test_claim_refused_takes_nothing_and_name_clash_is_a_conflict() -> None:
    service, datapath, ipam, _ = make_service()
    ipam.owners["10.40.0.7"] = "someone"
    service.table.receive(EndpointSet.of([make_endpoint(
        OTHER, "far", "02:00:00:00:00:09", "10.40.0.99", "db", 1)]), 0.0)
    errors: list[str] = []

    async def scenario() -> None:
        for fields in ({"ip": "10.40.0.7"}, {"ip": "192.168.1.1"}, {"name": "db"},
                       {"ip": "10.40.0.99"}):
            try:
                await service.attach_container(parse_attach(body(**fields).body))
            except (ConflictError, InvalidRequestError) as exc:
                errors.append(type(exc).__name__)

    run_with(service, scenario)
    assert errors == ["ConflictError", "InvalidRequestError", "ConflictError", "ConflictError"]
    assert ipam.owners == {"10.40.0.7": "someone"} and datapath.ports == {}


def test_no_ipam_needs_an_address() -> None:
    service, _, _, _ = make_service(with_ipam=False)
    seen: list[Any] = []

    async def scenario() -> None:
        with pytest.raises(InvalidRequestError):
            await service.attach_container(parse_attach(body().body))
        seen.append(await service.attach_container(parse_attach(body(ip="10.9.0.5/16").body)))

    run_with(service, scenario)
    assert seen[0]["ip"] == "10.9.0.5/16"


def test_detach_removes_endpoint_port_and_address() -> None:
    service, datapath, ipam, _ = make_service()
    seen: list[Any] = []

    async def scenario() -> None:
        await service.attach_container(parse_attach(body().body))
        await trio.sleep(0.1)
        seen.append(len(routes_of(service, "10.40.0.2")))
        seen.append(await service.detach_container("c1"))
        await trio.sleep(0.1)
        seen.append(len(routes_of(service, "10.40.0.2")))
        with pytest.raises(NotFoundError):
            await service.detach_container("c1")

    run_with(service, scenario)
    assert seen == [1, {"container_id": "c1", "released": ["10.40.0.2"]}, 0]
    assert datapath.ports == {} and ipam.owners == {} and service.table.live() == []


def test_restart_restores_ports_and_drops_vanished_ones() -> None:
    service, _, ipam, storage = make_service()

    async def first() -> None:
        await service.attach_container(parse_attach(body().body))
        await service.attach_container(parse_attach(body(container_id="c2").body))

    run_with(service, first)
    fresh = make_service(storage=storage, ipam=ipam)
    again, datapath2, _, _ = fresh
    original = datapath2.attach_port

    async def flaky(request: Any) -> Any:
        if request.container_id == "c2":
            raise UnavailableError("namespace is gone")
        return await original(request)

    datapath2.attach_port = flaky  # type: ignore[method-assign]

    async def nothing() -> None:
        await trio.sleep(0.1)

    run_with(again, nothing)
    assert list(again.attachments) == ["c1"] and list(datapath2.ports) == ["c1"]
    assert [e.container_id for e in again.table.live()] == ["c1"]
    assert list(ipam.owners.values()) == ["c1"]  # c2's address was released
    assert again.attachments["c1"].request == service.attachments["c1"].request


def test_corrupt_state_refuses_to_start() -> None:
    service, _, _, storage = make_service()
    storage.save("endpoints", b"\x93garbage")
    with pytest.raises(StateFileError):
        service.load()


def test_removed_peer_takes_its_endpoints_and_degraded_datapath_shows() -> None:
    service, datapath, _, _ = make_service()
    service.table.receive(EndpointSet.of([make_endpoint(
        OTHER, "far", "02:00:00:00:00:09", "10.40.0.99", "", 1)]), 0.0)
    seen: list[Any] = []

    async def scenario() -> None:
        service.on_topology_changed(TopologyChange(
            version=2, routes=service.context.topology.routes(), removed=(OTHER,)))
        await trio.sleep(0.1)
        datapath.fail("ovs-vswitchd exited")
        seen.append(service.summary())

    run_with(service, scenario)
    assert service.table.live() == []
    assert seen[0]["health"] == "degraded" and seen[0]["reason"] == "ovs-vswitchd exited"


def test_channel_is_registered() -> None:
    service, _, _, _ = make_service()
    assert service.context.gossip.stats is not None
    with pytest.raises(ValueError):
        service.context.gossip.add_channel(CHANNEL, service.gossiper)
    assert service.context.name == LOCAL


def test_peer_paths_say_direct_or_relayed_and_via_whom() -> None:
    from meshrouter.topology.routes import compute_routes
    from tests.topology.builders import graph_records

    a, b, c = LOCAL, OTHER, PeerName(0x0A0000000003)
    service, _, _, _ = make_service()
    service._routes = compute_routes(graph_records([a, b, c], [(a, b), (b, c)]), a)
    service.context.peer_address = lambda peer: "192.168.0.2" if peer == b else None
    rows = [(r["peer"][-2:], r["path"], r["via"][-2:], r["underlay"], r["programmed"])
            for r in service.peer_paths()]
    assert rows == [("02", "direct", "02", "192.168.0.2", True),
                    ("03", "relayed", "02", "192.168.0.2", True)]


def test_a_vanished_container_is_taken_out_everywhere() -> None:
    service, datapath, ipam, _ = make_service()
    datapath.on_port_lost = service.port_lost
    seen: list[Any] = []

    async def scenario() -> None:
        await service.attach_container(parse_attach(body().body))
        await service.attach_container(parse_attach(body(container_id="c2").body))
        service.context.gossip.neighbour_up(OTHER)  # to see the tombstone leave
        while service.context.gossip.pop_outgoing(OTHER) is not None:
            pass
        datapath.vanish("c1")
        seen.append(service.context.gossip.pop_outgoing(OTHER))
        await trio.sleep(0.1)
        seen.append(len(routes_of(service, "10.40.0.2")))

    run_with(service, scenario)
    assert [e.container_id for e in service.table.live()] == ["c2"]
    assert list(service.attachments) == ["c2"] and list(ipam.owners.values()) == ["c2"]
    broadcast, flows_for_c1 = seen
    assert broadcast is not None and broadcast.channel == CHANNEL
    tomb = EndpointSet.decode(broadcast.payload).get(LOCAL, "c1")
    assert tomb is not None and tomb.tombstone
    assert flows_for_c1 == 0
