"""IPAM under pressure with real processes (issue 12): four routers share a /24
(``--ipalloc-init consensus=4``); 250 allocations fired at once at one router all
succeed with distinct addresses -- the other routers donate their free space,
pool addresses included -- and once the range is full the next request is
refused at once, saying so.  Throughput figures: ``bench/ipam_pressure.py``."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.procs import RouterFleet, RouterProcess, wait_until

pytestmark = pytest.mark.processes

RANGE = "198.18.52.0/24"  # benchmarking range: never routed on a test host
BURST = 250
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[RouterFleet]:
    routers = RouterFleet(tmp_path)
    try:
        yield routers
    finally:
        routers.stop_all()


def _mesh(routers: list[RouterProcess]) -> bool:
    for router in routers:
        status = router.get("/status")
        if status["peers"] != len(routers) or status["connections"] != len(routers) - 1:
            return False
    return True


async def _burst(router: RouterProcess, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        return list(await asyncio.gather(*(
            client.post(f"http://{router.api}/ip/burst-{i}?wait=60", headers=JSON)
            for i in range(count)
        )))


def test_a_burst_at_one_router_gets_every_free_address_of_the_cluster(
    fleet: RouterFleet,
) -> None:
    extra = ["--ipalloc-range", RANGE, "--ipalloc-init", "consensus=4"]
    first = fleet.launch("p0", extra=extra)
    routers = [first] + [fleet.launch(f"p{i}", [first.listen], extra=extra) for i in (1, 2, 3)]
    wait_until(lambda: _mesh(routers), 60, "full mesh", *routers)

    started = time.monotonic()
    responses = asyncio.run(_burst(first, BURST))
    took = time.monotonic() - started
    failures = [(r.status_code, r.text) for r in responses if r.status_code != 200]
    assert failures == [], failures[:3]
    addresses = [r.json()["address"] for r in responses]
    assert len(set(addresses)) == BURST
    network = ipaddress.ip_network(RANGE)
    assert all(ipaddress.ip_interface(a).ip in network for a in addresses)
    print(f"\n{BURST} concurrent allocations at one of 4 routers on a /24: {took:.1f}s")

    # 254 usable addresses: 4 more fit, then the range is full.
    more = []
    for i in range(4):
        response = first.post(f"/ip/more-{i}?wait=30", None)
        assert response.status_code == 200, response.text
        more.append(response.json()["address"])
    assert len(set(addresses) | set(more)) == 254

    started = time.monotonic()
    with httpx.Client(timeout=60) as client:
        refused = client.post(f"http://{first.api}/ip/too-many?wait=30", headers=JSON)
    waited = time.monotonic() - started
    assert refused.status_code == 503, refused.text
    assert "the range is full" in refused.json()["error"], refused.text
    assert waited < 5.0, f"refused after {waited:.1f}s instead of at once"
    status = first.get("/status/ipam")
    assert status["allocated"] == 254 and status["pending"] == []
    assert {row["free"] for row in status["peers"]} == {0}
