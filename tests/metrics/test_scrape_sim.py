"""Metrics of routers over the simulated network (MockClock): the families are
there, follow the conventions, and counters move when what they count happens."""

from __future__ import annotations

import random
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from meshrouter.config import RouterConfig
from meshrouter.dns.service import DnsService
from meshrouter.dns.settings import DnsSettings
from meshrouter.metrics.service import MetricsService
from meshrouter.names import PeerName
from meshrouter.node.assembly import build_router
from meshrouter.node.datapath import NullDatapath
from meshrouter.node.router import Router
from sim.network import SimNetwork, SimTransport
from tests.metrics.conventions import REQUIRED, check_conventions, parse, value
from tests.node.harness import FAST, make_router, run_sim


class LoggingDatapath(NullDatapath):
    """A datapath whose status lists recent applies, as the OVS one does."""

    def __init__(self) -> None:
        self.applies: list[dict[str, Any]] = []

    def status(self) -> dict[str, Any]:
        return {"type": "test", "health": "ok", "recent_applies": list(self.applies[-5:])}


def scrape(router: Router) -> dict[str, Any]:
    metrics = router.service("metrics")
    assert isinstance(metrics, MetricsService)
    return parse(metrics.render().decode())


def test_families_follow_the_conventions_and_counters_move() -> None:
    async def body(net: SimNetwork, nursery: trio.Nursery) -> None:
        a = make_router(net, 1)
        b = make_router(net, 2, peers=("10.0.0.1:6783",))
        await nursery.start(a.run)
        before = scrape(a)
        check_conventions(before)
        assert REQUIRED <= set(before)
        assert value(before, "meshrouter_connections", state="established") == 0
        assert value(before, "meshrouter_peers") == 1

        await nursery.start(b.run)
        await trio.sleep(12)
        joined = scrape(a)
        check_conventions(joined)
        assert value(joined, "meshrouter_connections", state="established") == 1
        assert value(joined, "meshrouter_connections_established_total", direction="inbound") == 1
        assert value(joined, "meshrouter_peers") == 2
        assert value(joined, "meshrouter_peers_reachable") == 2
        assert (value(joined, "meshrouter_route_computations_total")
                > value(before, "meshrouter_route_computations_total"))
        assert (value(joined, "meshrouter_topology_changes_total")
                > value(before, "meshrouter_topology_changes_total"))
        for direction in ("sent", "received"):
            sent = value(joined, "meshrouter_gossip_messages_total",
                         channel="topology", direction=direction, kind="digest")
            size = value(joined, "meshrouter_gossip_bytes_total",
                         channel="topology", direction=direction, kind="digest")
            assert sent >= 1 and size > sent, (direction, sent, size)
        assert value(joined, "meshrouter_connection_terminations_total",
                     reason="closed_by_peer") == 0

        b.stop()
        await trio.sleep(8)
        left = scrape(a)
        assert value(left, "meshrouter_connections", state="established") == 0
        ended = sum(s.value for s in left["meshrouter_connection_terminations"].samples
                    if s.name.endswith("_total"))
        assert ended == 1
        assert value(left, "meshrouter_connection_terminations_total", reason="other") == 0

    run_sim(body)


def test_flow_apply_histogram_counts_the_datapath_applies() -> None:
    async def body(net: SimNetwork, nursery: trio.Nursery) -> None:
        datapath = LoggingDatapath()
        config = RouterConfig.from_flat(PeerName(0x0200_0000_0001), "host1",
                                        listen_host="10.0.0.1", listen_port=6783, **FAST)
        rng = random.Random(1)
        router = build_router(
            config, transport=SimTransport(net, "10.0.0.1", 6783), rng=rng, datapath=datapath,
            key_factory=lambda: X25519PrivateKey.from_private_bytes(rng.randbytes(32)))
        await nursery.start(router.run)
        empty = scrape(router)
        assert value(empty, "meshrouter_flow_apply_duration_seconds_count") == 0
        assert value(empty, "meshrouter_datapath_healthy", type="none") == 1
        datapath.applies += [{"kind": "full", "flow_mods": 9, "ms": 4.0},
                             {"kind": "delta", "flow_mods": 1, "ms": 300.0}]
        two = scrape(router)
        check_conventions(two)
        assert value(two, "meshrouter_flow_apply_duration_seconds_count") == 2
        assert value(two, "meshrouter_flow_apply_duration_seconds_sum") == 0.304
        assert value(two, "meshrouter_flow_apply_duration_seconds_bucket", le="0.005") == 1
        assert value(two, "meshrouter_flow_apply_duration_seconds_bucket", le="0.5") == 2
        assert value(scrape(router), "meshrouter_flow_apply_duration_seconds_count") == 2

    run_sim(body)


def test_dns_families_read_the_dns_service_counters() -> None:
    async def body(net: SimNetwork, nursery: trio.Nursery) -> None:
        config = RouterConfig.from_flat(PeerName(0x0200_0000_0001), "host1",
                                        listen_host="10.0.0.1", listen_port=6783, **FAST)
        rng = random.Random(1)
        dns = DnsService(DnsSettings(enabled=False))
        router = Router(config, transport=SimTransport(net, "10.0.0.1", 6783), rng=rng,
                        services=[dns, MetricsService()],
                        key_factory=lambda: X25519PrivateKey.from_private_bytes(rng.randbytes(32)))
        await nursery.start(router.run)
        dns.stats.responses.update({"NOERROR": 5, "NXDOMAIN": 2})
        dns.stats.dropped["client not allowed"] += 1
        families = scrape(router)
        check_conventions(families)
        assert value(families, "meshrouter_dns_responses_total", rcode="NOERROR") == 5
        assert value(families, "meshrouter_dns_responses_total", rcode="NXDOMAIN") == 2
        assert value(families, "meshrouter_dns_responses_total", rcode="SERVFAIL") == 0
        assert value(families, "meshrouter_dns_dropped_total", reason="client not allowed") == 1
        assert value(families, "meshrouter_dns_queries_total", type="A") == 0
        dns.stats.queries.update({"A": 3, "PTR": 1})
        families = scrape(router)
        assert value(families, "meshrouter_dns_queries_total", type="A") == 3
        assert value(families, "meshrouter_dns_queries_total", type="PTR") == 1

    run_sim(body)
