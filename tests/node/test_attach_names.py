"""``attach --name`` registers the name in DNS mesh-wide, and detach takes it
out everywhere: the dataplane and DNS services of real routers, assembled from
the config as ``launch peer`` does, over the simulated network."""

from __future__ import annotations

import trio

from meshrouter.config import DataplaneSettings
from meshrouter.dataplane.memory import MemoryDatapath
from meshrouter.dns.service import DnsService
from meshrouter.dns.settings import DnsSettings
from meshrouter.endpoints.service import DataplaneService, body_of
from meshrouter.node.router import Router
from sim.network import SimNetwork
from tests.node.harness import make_router, run_sim

FEATURES = dict(
    ipalloc_init="consensus=2",
    ipalloc_range="10.40.0.0/24",
    dataplane=DataplaneSettings(),
    dns=DnsSettings(enabled=False, overlay_networks=("10.40.0.0/24",)),
)


def dns(router: Router) -> DnsService:
    found = router.service("dns")
    assert isinstance(found, DnsService)
    return found


def dataplane(router: Router) -> DataplaneService:
    found = router.service("dataplane")
    assert isinstance(found, DataplaneService)
    return found


def test_attach_with_a_name_is_answered_everywhere_and_detach_removes_it() -> None:
    async def body(net: SimNetwork, nursery: trio.Nursery) -> None:
        a = make_router(net, 1, datapath=MemoryDatapath(), **FEATURES)
        b = make_router(net, 2, peers=("10.0.0.1:6783",), datapath=MemoryDatapath(),
                        **FEATURES)
        for router in (a, b):
            await nursery.start(router.run)
        await trio.sleep(3)
        attached = await dataplane(a)._api_attach(
            body_of({"container_id": "c1", "netns": "ns-c1", "name": "web"})
        )
        ip = attached["ip"].split("/")[0]
        await trio.sleep(2)
        assert dns(a).lookup("web") == [ip]
        assert dns(b).lookup("web.mesh.local.") == [ip]
        await dataplane(a).detach_container("c1")
        await trio.sleep(2)
        assert dns(a).lookup("web") == [] and dns(b).lookup("web") == []

    run_sim(body)


def test_a_vanished_namespace_takes_the_container_out_everywhere() -> None:
    # The datapath reports the lost port through on_port_lost, which the
    # dataplane service wires itself to when it is attached to the router.
    async def body(net: SimNetwork, nursery: trio.Nursery) -> None:
        datapath = MemoryDatapath()
        a = make_router(net, 1, datapath=datapath, **FEATURES)
        b = make_router(net, 2, peers=("10.0.0.1:6783",), datapath=MemoryDatapath(),
                        **FEATURES)
        for router in (a, b):
            await nursery.start(router.run)
        await trio.sleep(3)
        await dataplane(a)._api_attach(
            body_of({"container_id": "c9", "netns": "ns-c9", "name": "gone"})
        )
        await trio.sleep(2)
        assert [e["container_id"] for e in dataplane(b).endpoints()] == ["c9"]
        datapath.vanish("c9")
        await trio.sleep(2)
        assert dataplane(b).endpoints() == [] and dns(b).lookup("gone") == []
        ipam = a.service("ipam")
        assert ipam is not None and ipam.lookup("c9") == []  # type: ignore[attr-defined]

    run_sim(body)


def test_dns_add_by_container_id_uses_its_ipam_address() -> None:
    async def body(net: SimNetwork, nursery: trio.Nursery) -> None:
        a = make_router(net, 1, datapath=MemoryDatapath(), **dict(FEATURES,
                        ipalloc_init="consensus=1"))
        await nursery.start(a.run)
        ipam = a.service("ipam")
        assert ipam is not None
        address = await ipam.allocate("c5", None, 10)  # type: ignore[attr-defined]
        from meshrouter.node.service import ApiRequest

        answer = await dns(a)._api_add(ApiRequest({}, body={"name": "api", "container_id": "c5"}))
        assert answer["addresses"] == [address.split("/")[0]]
        assert dns(a).lookup("api") == [address.split("/")[0]]

    run_sim(body)
