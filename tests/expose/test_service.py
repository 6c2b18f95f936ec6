"""The expose Service on the real dataplane service (memory datapath, fake
IPAM and DNS) under MockClock: expose/hide verbs and API, the automatic
exposure and its conditions, restarts, a lost port, bad input."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing

from meshrouter.dataplane.memory import MemoryDatapath
from meshrouter.endpoints.service import DataplaneService
from meshrouter.errors import ConflictError, InvalidRequestError, UnavailableError
from meshrouter.expose.service import STATE_KEY, ExposeService
from meshrouter.expose.state import IFNAME, ExposeState
from meshrouter.gossip.core import GossipCore
from meshrouter.node.datapath import NullDatapath
from meshrouter.node.service import ApiRequest, ServiceBase, ServiceContext
from meshrouter.storage import MemoryStorage
from meshrouter.topology.topology import Topology
from tests.endpoints.harness import LOCAL, FakeIpam

HOST = "host-0a0000000001"


class Ipam(FakeIpam):
    """FakeIpam with the status the expose service reads (is there a ring?)."""

    def __init__(self, ready: bool = True) -> None:
        super().__init__()
        self.ready = ready

    def status(self) -> dict[str, object]:
        return {"state": "ready" if self.ready else "idle (founded at the first allocation)"}


class OvsLike(MemoryDatapath):
    kind = "ovs-netdev"


class FakeDns(ServiceBase):
    name = "dns"

    def __init__(self, wants: bool = True) -> None:
        self.exposed: str | None = None
        self.told: list[str | None] = []
        self.wants = wants

    def wants_host_address(self) -> bool:
        return self.wants

    async def set_exposed(self, cidr: str | None) -> None:
        self.exposed = cidr.split("/")[0] if cidr else None
        self.told.append(cidr)


class Host:
    """One router's services on a hand-built context (one incarnation)."""

    def __init__(self, *, storage: MemoryStorage | None = None, ipam: Ipam | None = None,
                 datapath: Any = None, dns: FakeDns | None = None, auto: bool = True) -> None:
        self.storage = storage if storage is not None else MemoryStorage()
        self.ipam = ipam if ipam is not None else Ipam()
        self.datapath = datapath if datapath is not None else OvsLike()
        self.dns = dns if dns is not None else FakeDns()
        self.dataplane = DataplaneService(ipam_wait=1.0)
        self.expose = ExposeService(auto=auto)
        services: list[Any] = [self.dataplane, self.ipam, self.dns, self.expose]
        rng = random.Random(1)

        async def drain(_: float) -> None:
            return None

        context = ServiceContext(
            name=LOCAL, uid=1, nickname="h1", label="h1", gossip=GossipCore(LOCAL),
            storage=self.storage, rng=rng,
            topology=Topology(local_name=LOCAL, nickname="h1", uid=1, listen_port=6783, rng=rng),
            datapath=self.datapath, reachable=lambda: {LOCAL}, peer_address=lambda p: None,
            stop_router=lambda: None, leave_mesh=lambda: None, drain_gossip=drain,
            services=lambda: services)
        for service in (self.dataplane, self.ipam, self.dns, self.expose):
            service.attach(context)
        self.api = {(r.method, r.path): r.handler for r in self.expose.api_routes()}

    def run(self, body: Any) -> None:
        async def main() -> None:
            self.dataplane.load()
            self.expose.load()
            async with trio.open_nursery() as nursery:
                await nursery.start(self.datapath.run)
                await nursery.start(self.dataplane.run)
                await nursery.start(self.expose.run)
                await body()
                nursery.cancel_scope.cancel()

        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

    def owner_of(self, address: str) -> str | None:
        return self.ipam.owners.get(address)


def request(body: dict[str, Any] | None = None) -> ApiRequest:
    return ApiRequest(path_params={}, body=body or {})


def test_expose_attaches_the_host_namespace_as_an_endpoint_and_tells_dns() -> None:
    host = Host(auto=False)
    seen: dict[str, Any] = {}

    async def body() -> None:
        await trio.sleep(3)  # auto=False: nothing happens by itself
        seen["before"] = host.expose.summary()
        seen["told before"] = list(host.dns.told)
        seen["exposed"] = await host.api[("POST", "/expose")](request())
        seen["again"] = await host.api[("POST", "/expose")](request())
        seen["status"] = await host.api[("GET", "/status/expose")](request())

    host.run(body)
    assert seen["before"]["state"] == "not exposed" and seen["told before"] == []
    assert seen["exposed"]["state"] == "exposed"
    assert seen["exposed"]["address"] == "10.40.0.2/16" == seen["again"]["address"]
    assert seen["status"] == seen["again"]
    assert host.ipam.calls.count(("allocate", HOST)) == 1
    port = host.datapath.requests[HOST]
    assert (port.ifname, port.netns, port.cidr) == (IFNAME, "/proc/self/ns/net", "10.40.0.2/16")
    # an endpoint like any other: gossiped table, flows
    assert [(e.container_id, e.ip) for e in host.dataplane.table.live()] == [(HOST, "10.40.0.2")]
    assert host.dns.told == ["10.40.0.2/16"]
    assert ExposeState.decode(host.storage.load(STATE_KEY) or b"") == ExposeState(
        "exposed", "10.40.0.2/16", None)


def test_hide_detaches_releases_the_address_and_is_remembered() -> None:
    host = Host()
    seen: dict[str, Any] = {}

    async def body() -> None:
        await host.expose.expose(None)
        seen["hidden"] = await host.api[("DELETE", "/expose")](request())
        seen["again"] = await host.expose.hide()
        await trio.sleep(20)  # automatic exposure would have happened by now

    host.run(body)
    assert seen["hidden"]["released"] == ["10.40.0.2"] and seen["hidden"]["state"] == "hidden"
    assert seen["hidden"]["pending"] is False
    assert seen["again"]["released"] == []
    assert host.owner_of("10.40.0.2") is None and HOST not in host.datapath.ports
    assert host.dataplane.table.live() == [] and host.dns.told[-1] is None
    # a restart keeps it hidden
    again = Host(storage=host.storage, ipam=host.ipam)

    async def later() -> None:
        await trio.sleep(20)

    again.run(later)
    assert HOST not in again.datapath.ports and again.expose.summary()["state"] == "hidden"


def test_expose_with_an_address_claims_it_and_a_different_one_is_a_conflict() -> None:
    host = Host(auto=False)
    seen: dict[str, Any] = {}

    async def body() -> None:
        seen["view"] = await host.api[("POST", "/expose")](request({"ip": "10.40.0.77/16"}))
        for bad in ({"ip": "10.40.0.78/16"},):
            try:
                await host.api[("POST", "/expose")](request(bad))
            except ConflictError as exc:
                seen["conflict"] = str(exc)
        for bad in ({"ip": "10.40.0.78"}, {"ip": "nope/3"}, {"nic": "x"}):
            with pytest.raises(InvalidRequestError):
                await host.api[("POST", "/expose")](request(bad))

    host.run(body)
    assert seen["view"]["address"] == "10.40.0.77/16"
    assert host.ipam.calls == [("claim", HOST)]
    assert "already exposed as 10.40.0.77/16" in seen["conflict"]
    assert host.owner_of("10.40.0.78") is None


def test_automatic_exposure_waits_for_a_ring_and_needs_ovs_and_default_dns() -> None:
    ipam = Ipam(ready=False)
    host = Host(ipam=ipam)
    seen: dict[str, Any] = {}

    async def body() -> None:
        await trio.sleep(10)
        seen["waiting"] = (dict(host.ipam.owners), host.expose.summary()["state"])
        seen["pending"] = host.expose.summary()["pending"]
        ipam.ready = True  # someone founded the ring (a container's attach)
        await trio.sleep(2)
        seen["exposed"] = host.expose.summary()

    host.run(body)
    assert seen["waiting"] == ({}, "not exposed")  # never the request that founds a ring
    assert seen["pending"] is True and seen["exposed"]["pending"] is False
    assert seen["exposed"]["state"] == "exposed" and seen["exposed"]["mode"] == "auto"
    assert host.dns.told == ["10.40.0.2/16"]

    for other in (Host(datapath=MemoryDatapath()), Host(dns=FakeDns(wants=False)),
                  Host(auto=False)):
        async def idle() -> None:
            await trio.sleep(10)

        other.run(idle)
        assert other.datapath.ports == {} and other.ipam.owners == {}, other.datapath.kind
        assert other.expose.summary()["pending"] is False  # meshrouter-cni must not wait


def test_a_restart_keeps_the_address_and_a_lost_port_comes_back_with_it() -> None:
    host = Host(auto=False)

    async def body() -> None:
        await host.expose.expose(None)

    host.run(body)
    # The next incarnation's datapath has no port: the dataplane restores it
    # from its state, with the same address, and DNS is told again.
    again = Host(storage=host.storage, ipam=host.ipam, auto=False)
    seen: dict[str, Any] = {}

    async def later() -> None:
        await trio.sleep(2)
        seen["after restart"] = again.expose.summary()["address"]
        again.dataplane.port_lost(HOST)  # `ip link del mr-expose`: address released
        seen["lost"] = again.owner_of("10.40.0.2")
        await trio.sleep(6)
        seen["back"] = again.expose.summary()["address"]

    again.run(later)
    assert seen == {"after restart": "10.40.0.2/16", "lost": None, "back": "10.40.0.2/16"}
    # DNS keeps its listener through the gap (same address): told once
    assert again.owner_of("10.40.0.2") == HOST and again.dns.told == ["10.40.0.2/16"]


def test_an_address_taken_while_down_is_replaced_by_a_new_one() -> None:
    host = Host()

    async def body() -> None:
        await host.expose.expose(None)

    host.run(body)
    ipam = host.ipam
    ipam.release(HOST, None)
    ipam.owners["10.40.0.2"] = "someone-else"
    fresh = MemoryStorage()
    fresh.save(STATE_KEY, host.storage.load(STATE_KEY) or b"")  # no dataplane state
    again = Host(storage=fresh, ipam=ipam)
    seen: dict[str, Any] = {}

    async def later() -> None:
        await trio.sleep(8)
        seen["now"] = again.expose.summary()

    again.run(later)
    assert seen["now"]["address"] == "10.40.0.3/16" and seen["now"]["error"] == ""


def test_no_datapath_says_why_and_a_failing_attach_is_retried() -> None:
    host = Host(datapath=NullDatapath(), auto=False)

    async def body() -> None:
        with pytest.raises(UnavailableError, match="--datapath ovs"):
            await host.expose.expose(None)

    host.run(body)
    assert host.ipam.owners == {}  # the address taken for the attempt was given back
    flaky = Host()
    flaky.datapath.attach_error = UnavailableError("vswitchd is restarting")
    seen: dict[str, Any] = {}

    async def later() -> None:
        await trio.sleep(0.5)
        seen["error"] = flaky.expose.summary()["error"]
        await trio.sleep(10)
        seen["then"] = flaky.expose.summary()

    flaky.run(later)
    assert "vswitchd is restarting" in seen["error"]
    assert seen["then"]["state"] == "exposed" and seen["then"]["error"] == ""
