"""The host's overlay address (``meshrouter expose``) in the namespace lab: the
DNS address containers reach by default.

Two hosts run ``meshrouter launch peer --datapath ovs`` with the DNS defaults
(no ``--dns-listen``).  Nobody exposes anything by hand: once a container's
attach has founded the address ring, each router exposes its host by itself
(``mr-expose``, an address from IPAM) and its DNS server listens there.  The
test then checks, from inside a container on host 1, against the nameserver
host 1's router *reports* (``status dns --json``):

* a name registered on host 2 resolves (dig), and ``ping web`` reaches it by
  name (the container's resolv.conf names the reported address: ``attach``
  writes no resolv.conf, as documented);
* the container reaches its host on that address (ping);
* a restart of host 1's router keeps the same address, and DNS answers there;
* ``meshrouter hide`` takes the address away and releases it (the server no
  longer answers there, IPAM no longer holds it), and it stays hidden across a
  restart; ``meshrouter expose --ip`` gives the host the address asked for.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.lab import Container, Host, Lab, RouterInHost, sh
from tests.integration.test_dns_lab import DOMAIN, _attach, _dig, _peers, _wait, resolv_dirs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]
__all__ = ["resolv_dirs"]  # the fixture, shared with test_dns_lab

RANGE = "10.78.0.0/16"
NETNS_ETC = Path("/etc/netns")

def _args(host: Host) -> list[str]:
    """OVS in the host, the DNS defaults (no --dns-listen): the router exposes by itself."""
    return ["--datapath", "ovs", "--datapath-type", "netdev", "--underlay-dev", "ul0",
            "--ovs-db", str(host.base / "router" / "ovs" / "run" / "db.sock"),
            "--ipalloc-range", RANGE, "--dns-domain", f"{DOMAIN}.",
            "--dns-upstream", "127.0.0.1:9",
            "--heartbeat-interval", "0.5", "--heartbeat-timeout", "2"]


def _launch(host: Host, *peers: str) -> RouterInHost:
    return host.launch_router(*peers, extra=_args(host))


def _json(router: RouterInHost, *args: str) -> dict[str, object]:
    try:
        out = json.loads(router.cli(*args, check=False) or "{}")
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def _nameserver(router: RouterInHost) -> str:
    return str(_json(router, "status", "dns", "--json").get("nameserver") or "")


def _address_in_own_space(router: RouterInHost) -> str:
    """An address in the middle of the largest range this router owns: `expose --ip`
    may claim only there (an address in another peer's space is claimed on that peer)."""
    me = _json(router, "status", "--json")["name"]
    rows = [row for row in _json(router, "status", "ipam", "--json")["peers"] if row["peer"] == me]
    assert rows, f"{me} owns no space"
    spans = [tuple(int(ipaddress.ip_address(a)) for a in text.split("-"))
             for text in rows[0]["ranges"]]
    first, last = max(spans, key=lambda span: span[1] - span[0])
    return str(ipaddress.ip_address(first + (last - first) // 2))


def _host_addresses(host: Host) -> str:
    return sh("ip", "-n", host.ns, "-4", "-o", "addr", "show", "dev", "mr-expose", check=False)


def _ping(ns: str, target: str) -> bool:
    done = subprocess.run(["ip", "netns", "exec", ns, "ping", "-c1", "-W1", target],
                          capture_output=True, text=True, timeout=20, check=False)
    return done.returncode == 0


def test_containers_resolve_through_the_exposed_host_address(
        lab: Lab, resolv_dirs: list[Path]) -> None:
    h1, h2 = lab.add_host(), lab.add_host()
    r1 = _launch(h1)
    r2 = _launch(h2, f"{h1.ip}:6783")
    _wait(lambda: _peers(r1) == 2 and _peers(r2) == 2, 60, "a mesh of 2")
    assert _nameserver(r1) == ""  # no ring yet: exposing never founds one

    web: Container = lab.add_container(h2)
    web.ip = _attach(r2, web.name, web.ns, "--name", "web")  # founds the ring
    _wait(lambda: bool(_nameserver(r1)) and bool(_nameserver(r2)), 60,
          "both routers to expose their host and name it for containers",
          lambda: (_json(r1, "status", "dns", "--json"), _json(r1, "report")))
    nameserver = _nameserver(r1)
    expose1 = _json(r1, "status", "expose", "--json")
    assert expose1["state"] == "exposed" and str(expose1["address"]).startswith(nameserver + "/")
    assert f"inet {expose1['address']}" in _host_addresses(h1)
    # an endpoint like any container's, known on both hosts
    hosts = {row["container_id"]: row["ip"] for row in json.loads(r2.cli("ps", "--json"))
             if str(row["container_id"]).startswith("host-")}
    assert hosts[str(expose1["container_id"])] == nameserver and len(hosts) == 2

    client = lab.add_container(h1)
    client.ip = _attach(r1, client.name, client.ns)
    etc = NETNS_ETC / client.ns
    resolv_dirs.append(etc)
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text(
        f"nameserver {nameserver}\nsearch {DOMAIN}\noptions timeout:1 attempts:2\n")

    def from_client(name: str) -> tuple[str, list[str]]:
        return _dig(client.ns, nameserver, name)

    # a name registered on host 2, through host 1's default address, then by name
    _wait(lambda: from_client("web") == ("NOERROR", [web.ip]), 60,
          "host 1's exposed DNS address to answer web", lambda: from_client("web"))
    _wait(lambda: _ping(client.ns, "web"), 60, "`ping web` from host 1's container")
    assert _ping(client.ns, nameserver)  # the container reaches its host

    # a restart keeps the address; DNS answers there again
    assert r1.stop() == 0
    r1 = _launch(h1)
    _wait(lambda: _nameserver(r1) == nameserver, 60, "the same address after a restart",
          lambda: _json(r1, "status", "dns", "--json"))
    _wait(lambda: from_client("web") == ("NOERROR", [web.ip]), 60,
          "DNS at the exposed address after a restart", lambda: from_client("web"))

    # hide: gone from the host, not answered, the address released; stays hidden
    hidden = json.loads(r1.cli("hide", "--json"))
    assert hidden["released"] == [expose1["address"]] and hidden["state"] == "hidden"
    assert _host_addresses(h1) == "" and _nameserver(r1) == ""
    assert from_client("web")[0] == "NO-ANSWER"
    assert r1.cli("ipam", "lookup", str(hidden["container_id"]), check=False).strip() == ""
    assert r1.stop() == 0
    r1 = _launch(h1)
    _wait(lambda: _peers(r1) == 2, 60, "host 1 back in the mesh")
    time.sleep(3)  # time enough to expose by itself, were hide forgotten
    assert _nameserver(r1) == "" and _host_addresses(h1) == ""

    # expose with an address: that one, and DNS answers there
    wanted = _address_in_own_space(r1)
    assert r1.cli("expose", "--ip", f"{wanted}/16").strip() == f"{wanted}/16"
    _wait(lambda: _dig(client.ns, wanted, "web") == ("NOERROR", [web.ip]), 60,
          "DNS at the address given to expose", lambda: _dig(client.ns, wanted, "web"))
    assert _nameserver(r1) == wanted
