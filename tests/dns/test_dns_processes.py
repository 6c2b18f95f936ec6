"""Two real ``meshrouter launch peer`` processes on 127.0.0.1: a name added on
one (with the CLI verb) is answered by the other's DNS server, over UDP and
TCP; removed, it is NXDOMAIN there; its owner killed, it is not answered."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import RouterFleet, RouterProcess, wait_until

pytest.importorskip("dns", reason="dnspython (in the test extra) is not installed")
import dns.message
import dns.query
import dns.rcode

pytestmark = [pytest.mark.processes, pytest.mark.timeout(120)]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[RouterFleet]:
    routers = RouterFleet(tmp_path)
    try:
        yield routers
    finally:
        routers.stop_all()


def cli(router: RouterProcess, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "meshrouter.cli", "--api", router.api, *args],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def dns_port(router: RouterProcess) -> int:
    status = router.get("/status/dns")
    assert status["serving"], status
    return int(status["listen"].rsplit(":", 1)[1])


def ask(port: int, name: str, *, tcp: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, "A")
    if tcp:
        return dns.query.tcp(query, "127.0.0.1", port=port, timeout=3)
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=3)


def addresses(reply: dns.message.Message) -> list[str]:
    return sorted(rd.address for rrset in reply.answer for rd in rrset)


def test_a_name_added_on_one_router_is_answered_by_the_other(fleet: RouterFleet) -> None:
    # Anti-entropy every 60 s: a change must arrive by its broadcast.
    one = fleet.launch("one", extra=["--gossip-interval", "60"])
    two = fleet.launch("two", [one.listen], extra=["--gossip-interval", "60"])
    wait_until(lambda: one.get("/status")["connections"] == 1, 20, "a connection", one, two)
    port = dns_port(one)
    assert cli(two, "dns-add", "web", "198.18.0.5").split() == ["web.mesh.local.",
                                                                "198.18.0.5"]

    def answered() -> bool:
        return addresses(ask(port, "web.mesh.local")) == ["198.18.0.5"]

    wait_until(answered, 10, "the name on one", one, two)
    assert addresses(ask(port, "WEB.mesh.local", tcp=True)) == ["198.18.0.5"]
    assert cli(one, "dns-lookup", "web").split() == ["198.18.0.5"]
    assert "web.mesh.local." in cli(one, "status", "dns")

    assert "removed 1 record" in cli(two, "dns-remove", "web")
    wait_until(lambda: ask(port, "web.mesh.local").rcode() == dns.rcode.NXDOMAIN, 10,
               "the removal on one", one, two)

    cli(two, "dns-add", "db", "198.18.0.6")
    wait_until(lambda: addresses(ask(port, "db.mesh.local")) == ["198.18.0.6"], 10,
               "db on one", one, two)
    two.kill()
    wait_until(lambda: ask(port, "db.mesh.local").rcode() == dns.rcode.NXDOMAIN, 10,
               "db unanswered once two is gone", one)
    rows = one.get("/status/dns")["records"]
    assert rows == {} or all(r["state"] != "live" for r in rows.get("db.mesh.local.", []))
