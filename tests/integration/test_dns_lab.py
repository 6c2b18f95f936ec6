"""Built-in DNS in the namespace lab, driven through the CLI (issue 10's integration test).

Three hosts, each a network namespace running ``meshrouter launch peer --datapath
ovs`` with its DNS server on the host's addresses.  A container reaches its
host's DNS server the way the demo does it (Weave's "expose"): host 1's own
namespace is attached to the mesh like a container, so it has an overlay
address, and the client container's resolver names that address through
``/etc/netns/<ns>/resolv.conf`` (``ip netns exec`` bind-mounts it).  The test
checks, with ``dig``:

* a container on host 1 resolves a name registered (``attach --name``) on host 2
  and reaches it by that name (``ping web`` through the configured resolver);
* with a second container for ``web`` (``dns-add web <id>`` on host 3),
  repeated queries return both addresses, in varying order, on every host;
* ``detach`` takes the container's records out of every host's answers, and
  with both gone the name is NXDOMAIN everywhere.

The domain is not the default ``mesh.local``: hosts whose nsswitch has
``mdns4_minimal [NOTFOUND=return]`` would never ask DNS for a ``.local`` name,
and that is a fact of this machine, not of meshrouter.  Upstream forwarding is
pointed at a dead loopback port so no query ever leaves the lab.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.lab import Container, Host, Lab, RouterInHost, sh

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

DOMAIN = "meshlab.test"
RANGE = "10.77.0.0/16"
NETNS_ETC = Path("/etc/netns")
QUERIES = 20


def _wait(predicate: Callable[[], bool], seconds: float, what: str,
          last: Callable[[], object] | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    seen = f"; last seen: {last()!r}" if last is not None else ""
    raise AssertionError(f"timed out after {seconds} s waiting for {what}{seen}")


@pytest.fixture
def resolv_dirs(lab: Lab) -> Iterator[list[Path]]:
    """``/etc/netns/<ns>`` directories this test writes; removed even on failure
    (the lab removes namespaces, not these)."""
    if shutil.which("dig") is None:
        pytest.skip("dig is not installed (apt-get install dnsutils)")
    made: list[Path] = []
    try:
        yield made
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)
        left = [str(p) for p in made if p.exists()]
        assert not left, f"left behind: {left}"


def _dig(ns: str, server: str, name: str) -> tuple[str, list[str]]:
    """(status, A addresses in the order given) of one UDP query from inside ``ns``."""
    out = sh("ip", "netns", "exec", ns, "dig", f"@{server}", f"{name}.{DOMAIN}", "A",
             "+noall", "+comments", "+answer", "+tries=1", "+time=2", check=False)
    status = "NO-ANSWER"
    for line in out.splitlines():
        if "status:" in line:
            status = line.split("status:", 1)[1].split(",", 1)[0].strip()
    addresses = [line.split()[-1] for line in out.splitlines()
                 if line and not line.startswith(";") and line.split()[3:4] == ["A"]]
    return status, addresses


def _router_args(h: Host) -> list[str]:
    return ["--datapath", "ovs", "--datapath-type", "netdev", "--underlay-dev", "ul0",
            "--ovs-db", str(h.base / "router" / "ovs" / "run" / "db.sock"),
            "--ipalloc-range", RANGE, "--dns-domain", f"{DOMAIN}.",
            "--dns-listen", "0.0.0.0:53", "--dns-upstream", "127.0.0.1:9",
            "--heartbeat-interval", "0.5", "--heartbeat-timeout", "2"]


def _attach(router: RouterInHost, container_id: str, netns: str, *extra: str) -> str:
    """``meshrouter attach ... --json``; the address from IPAM."""
    out = json.loads(router.cli("attach", container_id, netns, *extra, "--json"))
    return str(out["ip"]).split("/")[0]


def _peers(router: RouterInHost) -> int:
    try:
        return int(json.loads(router.cli("status", "--json", check=False) or "{}")
                   .get("peers", 0))
    except ValueError:
        return 0


def test_names_resolve_balance_and_go_away_across_hosts(lab: Lab,
                                                        resolv_dirs: list[Path]) -> None:
    h1, h2, h3 = (lab.add_host() for _ in range(3))
    r1 = h1.launch_router(extra=_router_args(h1))
    r2 = h2.launch_router(f"{h1.ip}:6783", extra=_router_args(h2))
    r3 = h3.launch_router(f"{h1.ip}:6783", extra=_router_args(h3))
    routers = {1: r1, 2: r2, 3: r3}
    _wait(lambda: all(_peers(r) == 3 for r in routers.values()), 60, "a mesh of 3")

    # host 1 on the overlay (its DNS server's address for containers); the client
    dns_ip = _attach(r1, f"dns-{h1.ns}", h1.ns)
    client = lab.add_container(h1)
    etc = NETNS_ETC / client.ns
    resolv_dirs.append(etc)
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text(
        f"nameserver {dns_ip}\nsearch {DOMAIN}\noptions timeout:1 attempts:2\n")
    client.ip = _attach(r1, client.name, client.ns)
    web2: Container = lab.add_container(h2)
    web2.ip = _attach(r2, web2.name, web2.ns, "--name", "web")
    web3: Container = lab.add_container(h3)
    web3.ip = _attach(r3, web3.name, web3.ns, "--name", "api")

    def from_client(name: str) -> tuple[str, list[str]]:
        return _dig(client.ns, dns_ip, name)

    # 1. resolved on host 1, registered on host 2, reached by that name
    _wait(lambda: from_client("web") == ("NOERROR", [web2.ip]), 60,
          "host 1's DNS to answer web with the container of host 2",
          lambda: from_client("web"))

    def ping_by_name() -> bool:
        done = subprocess.run(["ip", "netns", "exec", client.ns, "ping", "-c1", "-W1", "web"],
                              capture_output=True, text=True, timeout=20, check=False)
        return done.returncode == 0 and f"({web2.ip})" in done.stdout

    _wait(ping_by_name, 60, "`ping web` from host 1 to reach host 2's container")

    # 2. a second container for web, registered by container ID on host 3
    r3.cli("dns-add", "web", web3.name)
    both = {web2.ip, web3.ip}

    def every_host(name: str) -> list[tuple[str, list[str]]]:
        """The answer of each host's own server, asked from inside that host."""
        return [_dig(h.ns, "127.0.0.1", name) for h in (h1, h2, h3)]

    _wait(lambda: all(s == "NOERROR" and set(a) == both and len(a) == 2
                      for s, a in every_host("web")), 60,
          "every host to answer web with both containers", lambda: every_host("web"))
    answers = [from_client("web") for _ in range(QUERIES)]
    assert all(s == "NOERROR" and sorted(a) == sorted(both) for s, a in answers), answers
    orders = {tuple(a) for _, a in answers}
    assert len(orders) == 2, f"{QUERIES} answers all in one order: {orders}"
    assert from_client("api") == ("NOERROR", [web3.ip])

    # 3. detach takes a container's records out of every host's answers
    r2.cli("detach", web2.name)
    _wait(lambda: every_host("web") == [("NOERROR", [web3.ip])] * 3, 60,
          "web to leave every host's answers with its container", lambda: every_host("web"))
    assert from_client("web") == ("NOERROR", [web3.ip])
    r3.cli("detach", web3.name)
    _wait(lambda: all(s == "NXDOMAIN" for s, _ in every_host("web") + every_host("api")), 60,
          "web and api to be NXDOMAIN on every host",
          lambda: every_host("web") + every_host("api"))
    assert from_client("web")[0] == "NXDOMAIN"
    for router in routers.values():  # the API agrees: no live address (or not found)
        assert router.cli("dns-lookup", "web", check=False).strip() == ""
