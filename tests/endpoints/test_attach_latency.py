"""Attach latency (issue 9): early broadcast, announcements, rate-limited recompute, records."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import trio

from meshrouter.codec import unpack
from meshrouter.dataplane.memory import MemoryDatapath
from meshrouter.endpoints.gossiper import CHANNEL
from meshrouter.endpoints.model import make_endpoint
from meshrouter.endpoints.requests import parse_attach
from meshrouter.endpoints.state import EndpointSet
from meshrouter.endpoints.timings import MAX_ANNOUNCE, Timings, to_announce
from meshrouter.errors import UnavailableError
from meshrouter.names import PeerName
from meshrouter.node.datapath import LocalPort, PortRequest
from tests.endpoints.harness import LOCAL, make_service, run_with

OTHER = PeerName(0x0A0000000002)
MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def ep(cid: str, mac: str, ip: str, version: int, owner: PeerName = OTHER,
       tombstone: bool = False) -> Any:
    return make_endpoint(owner, cid, mac, ip, "", version, tombstone=tombstone)


# -- the pure choice of what to announce ------------------------------------------


def test_to_announce_takes_new_and_moved_endpoints_of_others_only() -> None:
    held = ep("moved", MAC_A, "10.40.0.5", 1)
    same = ep("same", MAC_B, "10.40.0.6", 1)
    dead = ep("revived", MAC_A, "10.40.0.7", 1, tombstone=True)
    known = {held.key: held, same.key: same, dead.key: dead}
    delta = [
        ep("new", MAC_A, "10.40.0.4", 1),                 # new: yes
        ep("moved", MAC_B, "10.40.0.5", 2),               # other MAC: yes
        ep("same", MAC_B, "10.40.0.6", 2),                # re-stamped, same MAC/IP: no
        ep("revived", MAC_A, "10.40.0.7", 2),             # was a tombstone: yes
        ep("gone", "", "", 3, tombstone=True),            # a deletion: no
        ep("mine", MAC_A, "10.40.0.8", 1, owner=LOCAL),   # ours: no
    ]
    picked = [e.container_id for e in to_announce(delta, LOCAL, known)]
    assert picked == ["new", "moved", "revived"]


def test_to_announce_skips_a_merge_larger_than_the_cap() -> None:
    many = [ep(f"c{i}", MAC_A, f"10.40.1.{i}", 1) for i in range(MAX_ANNOUNCE + 1)]
    assert to_announce(many, LOCAL, {}) == []
    assert len(to_announce(many[:MAX_ANNOUNCE], LOCAL, {})) == MAX_ANNOUNCE


def test_timings_give_each_step_its_own_duration() -> None:
    timings = Timings(limit=2)
    record = timings.begin("attach", "c1", LOCAL, 10.0, "request")
    record.marks += [("address", 10.004), ("port", 10.0105)]
    timings.begin("learn", "c2", OTHER, 11.0, "received")
    timings.begin("learn", "c3", OTHER, 12.0, "received")  # the oldest goes
    views = timings.view()
    assert [v["container_id"] for v in views] == ["c2", "c3"]
    record_view = record.view()
    assert [(s["step"], s["ms"]) for s in record_view["steps"]] == [
        ("request", 0.0), ("address", 4.0), ("port", 6.5)]
    assert record_view["total_ms"] == 10.5 and record_view["owner"].endswith("00:01")


# -- the service ------------------------------------------------------------------


class Recording(MemoryDatapath):
    """Memory datapath that notes what the mesh knew when a port was asked for,
    and every announcement with the flows installed at that moment."""

    def __init__(self) -> None:
        super().__init__()
        self.service: Any = None
        self.at_attach: list[Any] = []
        self.announced: list[tuple[list[tuple[str, str]], str | None, int]] = []

    async def attach_port(self, request: PortRequest) -> LocalPort:
        entry = self.service.table.get_local(request.container_id)
        blob = self.service.context.storage.load("endpoints")
        saved = blob is not None and request.container_id in [
            row[0] for row in unpack(blob)["ports"]]  # the port request, for a restart
        message = self.service.context.gossip.pop_outgoing(OTHER)
        sent = (message is not None and message.channel == CHANNEL and
                EndpointSet.decode(message.payload).get(LOCAL, request.container_id))
        self.at_attach.append((entry is not None, saved, bool(sent)))
        return await super().attach_port(request)

    async def announce(self, endpoints: Sequence[tuple[str, str]],
                       skip: str | None = None) -> int:
        arp_flows = sum(1 for f in self.installed.values() for _, ip in endpoints
                        if re.search(rf"arp_tpa={re.escape(ip)}\b", f.to_ofctl()))
        self.announced.append((list(endpoints), skip, arp_flows))
        return len(endpoints)


def make_recording() -> tuple[Any, Recording, Any]:
    datapath = Recording()
    service, _, ipam, _ = make_service(datapath=datapath)
    datapath.service = service
    return service, datapath, ipam


def test_the_endpoint_is_saved_and_sent_before_the_port_is_made() -> None:
    service, datapath, _ = make_recording()
    service.context.gossip.neighbour_up(OTHER)

    async def scenario() -> None:
        while service.context.gossip.pop_outgoing(OTHER) is not None:
            pass
        await service.attach_container(parse_attach({"container_id": "c1", "netns": "/x"}))

    run_with(service, scenario)
    assert datapath.at_attach == [(True, True, True)]


def test_a_failed_port_takes_the_early_endpoint_back_everywhere() -> None:
    service, datapath, ipam = make_recording()
    datapath.attach_error = UnavailableError("no such namespace")

    async def scenario() -> None:
        try:
            await service.attach_container(parse_attach({"container_id": "c1", "netns": "/x"}))
        except UnavailableError:
            pass

    run_with(service, scenario)
    entry = service.table.state.get(LOCAL, "c1")
    assert entry is not None and entry.tombstone  # a tombstone went out, not silence
    assert ipam.owners == {} and service.attachments == {}


def reach_other(service: Any) -> None:
    """A topology where OTHER is a direct neighbour at 192.168.0.2."""
    from meshrouter.topology.routes import compute_routes
    from tests.topology.builders import graph_records

    service._routes = compute_routes(graph_records([LOCAL, OTHER], [(LOCAL, OTHER)]), LOCAL)
    service.context.peer_address = lambda peer: "192.168.0.2" if peer == OTHER else None


def test_endpoints_learned_are_announced_after_their_flows_are_in() -> None:
    service, datapath, _ = make_recording()
    reach_other(service)
    far = ep("far", MAC_A, "10.40.0.99", 1)
    unreachable = ep("lost", MAC_B, "10.40.0.98", 1, owner=PeerName(0x0A0000000009))

    async def scenario() -> None:
        await service.attach_container(parse_attach({"container_id": "c1", "netns": "/x"}))
        await trio.sleep(0.1)
        datapath.announced.clear()
        service.gossiper.on_broadcast(OTHER, EndpointSet.of([far, unreachable]))
        await trio.sleep(0.1)
        # the same endpoint again, re-stamped: nothing new to tell
        service.gossiper.on_broadcast(OTHER, EndpointSet.of([ep("far", MAC_A, "10.40.0.99", 2)]))
        await trio.sleep(0.1)

    run_with(service, scenario)
    assert datapath.announced == [([(MAC_A, "10.40.0.99")], None, 1)]
    learned = [r for r in service.timings.view() if r["kind"] == "learn"]
    assert [s["step"] for s in learned[0]["steps"]] == [
        "endpoint received", "flow table built", "flows applied", "announced"]


def test_a_local_attach_is_announced_to_the_other_local_ports() -> None:
    service, datapath, _ = make_recording()

    async def scenario() -> None:
        await service.attach_container(parse_attach({"container_id": "c1", "netns": "/x"}))

    run_with(service, scenario)
    mac = service.attachments["c1"].port.mac
    assert datapath.announced == [([(mac, "10.40.0.2")], "c1", 1)]
    steps = [s["step"] for s in service.timings.view()[0]["steps"]]
    assert steps[:3] == ["request", "address", "saved and broadcast"]
    assert steps[-3:] == ["flow table built", "local flows applied", "announced here"]


def test_a_change_after_a_quiet_spell_does_not_wait_for_flow_delay() -> None:
    datapath = MemoryDatapath()
    service, _, _, _ = make_service(datapath=datapath)
    service.flow_delay = 5.0
    seen: list[int] = []

    async def scenario() -> None:
        await trio.sleep(10)  # quiet
        before = service.recomputes
        service.gossiper.on_broadcast(OTHER, EndpointSet.of([ep("a", MAC_A, "10.40.0.9", 1)]))
        await trio.sleep(0.01)
        seen.append(service.recomputes - before)       # applied at once
        service.gossiper.on_broadcast(OTHER, EndpointSet.of([ep("b", MAC_B, "10.40.0.10", 1)]))
        service.gossiper.on_broadcast(OTHER, EndpointSet.of([ep("c", "02:00:00:00:00:0c",
                                                                "10.40.0.11", 1)]))
        await trio.sleep(1)
        seen.append(service.recomputes - before)       # the burst waits for the limit
        await trio.sleep(5)
        seen.append(service.recomputes - before)       # ... and then costs one table

    run_with(service, scenario)
    assert seen == [1, 1, 2]
