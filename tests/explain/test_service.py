"""``GET /explain`` facts from real routers (simulated network, memory datapaths):
the flows the dataplane service computed are the ones the walk checks."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from meshrouter.config import RouterConfig
from meshrouter.dataplane.memory import MemoryDatapath
from meshrouter.dns.service import DnsService
from meshrouter.dns.settings import DnsSettings
from meshrouter.endpoints.requests import AttachRequest
from meshrouter.endpoints.service import DataplaneService
from meshrouter.errors import InvalidRequestError
from meshrouter.explain.service import ExplainService
from meshrouter.names import PeerName
from meshrouter.node.assembly import standard_services
from meshrouter.node.router import Router
from meshrouter.node.service import ApiRequest
from sim.network import SimNetwork, SimTransport
from tests.node.harness import FAST, run_sim


def make(net: SimNetwork, index: int, peers: tuple[str, ...] = ()) -> Router:
    host = f"10.0.0.{index}"
    config = RouterConfig.from_flat(PeerName(0x0200_0000_0000 + index), f"host{index}",
                                    listen_host=host, listen_port=6783, initial_peers=peers,
                                    ipam=False, **FAST)
    rng = random.Random(index)
    return Router(config, transport=SimTransport(net, host, 6783), rng=rng,
                  datapath=MemoryDatapath(),
                  services=[*standard_services(config), DataplaneService(flow_delay=0.1),
                            DnsService(DnsSettings(enabled=False))],
                  key_factory=lambda: X25519PrivateKey.from_private_bytes(rng.randbytes(32)))


def services(router: Router) -> tuple[DataplaneService, ExplainService]:
    dataplane, explain = router.service("dataplane"), router.service("explain")
    assert isinstance(dataplane, DataplaneService) and isinstance(explain, ExplainService)
    return dataplane, explain


def test_explain_from_a_router_sees_its_flows_and_the_route() -> None:
    async def body(net: SimNetwork, nursery: trio.Nursery) -> None:
        a, b = make(net, 1), make(net, 2, ("10.0.0.1:6783",))
        for router in (a, b):
            await nursery.start(router.run)
        await trio.sleep(5)
        await services(a)[0].attach_container(
            AttachRequest("web0000000000001", "sim", ip=IPv4Address("10.32.0.2"), prefix=16,
                          name="web"))
        await services(b)[0].attach_container(
            AttachRequest("db00000000000001", "sim", ip=IPv4Address("10.32.0.3"), prefix=16,
                          name="db"))
        await trio.sleep(5)
        _, explain = services(a)
        result = explain.explain("web", "db")
        layers = {entry["layer"]: entry for entry in result["layers"]}
        assert result["failing"] is None, result
        assert layers["route"]["hops"] == ["02:00:00:00:00:01", "02:00:00:00:00:02"]
        assert layers["flows"]["ok"] is True
        assert layers["flows"]["hosts"] == ["host1(02:00:00:00:00:01)"]
        assert layers["dns"]["ok"] is True  # attach --name registered db in DNS
        assert layers["dns"]["detail"].startswith("db.") and "10.32.0.3" in layers["dns"]["detail"]

        # the record goes (removed on b, gossiped to a): the walk names the dns layer
        dns_b = b.service("dns")
        assert isinstance(dns_b, DnsService)
        dns_b.remove("db")
        await trio.sleep(5)
        assert explain.explain("web", "db")["failing"] == "dns"

        # the flow for db's MAC leaves a's table: the walk names the flows layer
        dataplane, _ = services(a)
        db_mac = result["dst"]["mac"]
        dataplane.flows = [f for f in dataplane.flows if f.match.dl_dst != db_mac]
        assert explain.explain("web", "db")["failing"] == "flows"

        answer = await explain.api_routes()[0].handler(
            ApiRequest(path_params={}, query={"src": "10.32.0.2", "dst": "nobody"}))
        assert answer["failing"] == "endpoints"
        with pytest.raises(InvalidRequestError):
            await explain.api_routes()[0].handler(ApiRequest(path_params={}, query={}))

    run_sim(body)
