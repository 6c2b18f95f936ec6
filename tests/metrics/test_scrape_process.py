"""GET /metrics of a real router process: the Prometheus text format over HTTP,
parsed with the Prometheus parser; counters move when their events happen."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dnslib import DNSRecord

from tests.metrics.conventions import REQUIRED, check_conventions, parse, value
from tests.procs import RouterFleet, RouterProcess, wait_until

pytestmark = pytest.mark.processes


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[RouterFleet]:
    routers = RouterFleet(tmp_path)
    try:
        yield routers
    finally:
        routers.stop_all()


def scrape(router: RouterProcess) -> dict[str, Any]:
    response = httpx.get(f"http://{router.api}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def test_metrics_of_a_running_router(fleet: RouterFleet) -> None:
    a = fleet.launch("alpha")
    first = scrape(a)
    check_conventions(first)
    assert REQUIRED | {"meshrouter_ipam_addresses", "meshrouter_ipam_unreachable_ratio",
                       "meshrouter_ipam_pending_requests", "meshrouter_dns_responses"} <= set(first)

    dns = a.get("/status")["dns"]
    host, port = dns["listen"].rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        for _ in range(3):
            sock.sendto(DNSRecord.question("nothing-here." + dns["domain"], "A").pack(),
                        (host, int(port)))
            sock.recv(4096)
    b = fleet.launch("bravo", [a.listen])
    wait_until(lambda: len(a.get("/status/peers")) == 2, 20, "bravo joins", a, b)
    second = scrape(a)
    check_conventions(second)
    assert (value(second, "meshrouter_dns_responses_total", rcode="NXDOMAIN")
            == value(first, "meshrouter_dns_responses_total", rcode="NXDOMAIN") + 3)
    assert value(second, "meshrouter_connections", state="established") == 1
    assert value(second, "meshrouter_peers") == 2
