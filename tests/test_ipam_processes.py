"""IPAM with real ``meshrouter launch peer`` processes on 127.0.0.1: allocations
on three routers survive kill -9 and restart; two separately founded clusters
refuse each other with a message saying what to do, and an empty router joins;
a range that overlaps a host route is refused."""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.procs import RouterFleet, RouterProcess, wait_until
from tests.test_processes import _full_mesh, cli, run_cli

pytestmark = pytest.mark.processes

RANGE = "198.18.47.0/24"  # benchmarking range: never routed on a test host
JSON = {"Content-Type": "application/json"}  # the API refuses state changes without it


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[RouterFleet]:
    routers = RouterFleet(tmp_path)
    try:
        yield routers
    finally:
        routers.stop_all()


def _ipam(*extra: str) -> list[str]:
    return ["--ipalloc-range", RANGE, *extra]


def allocate(router: RouterProcess, container: str) -> str:
    result = cli(router.api, "ipam", "allocate", container, "--wait", "20")
    assert result.returncode == 0, result.stderr + router.log()
    return result.stdout.strip()


def lookup(router: RouterProcess, container: str) -> list[str]:
    result = cli(router.api, "ipam", "lookup", container)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_allocations_survive_kill_9_and_restart(fleet: RouterFleet) -> None:
    init = ["--ipalloc-init", "consensus=3"]
    one = fleet.launch("one", extra=_ipam(*init))
    two = fleet.launch("two", [one.listen], extra=_ipam(*init))
    three = fleet.launch("three", [one.listen], extra=_ipam(*init))
    wait_until(lambda: _full_mesh([one, two, three], 3), 30, "full mesh", one, two, three)

    started = time.monotonic()
    given: dict[str, list[str]] = {}
    for router in (one, two, three):
        given[router.nickname] = [allocate(router, f"{router.nickname}-{i}") for i in range(5)]
    print(f"\n15 allocations (incl. founding by consensus) took {time.monotonic() - started:.2f}s")
    everything = [a for addresses in given.values() for a in addresses]
    assert len(set(everything)) == 15, given
    assert all(a.startswith("198.18.47.") and a.endswith("/24") for a in everything)
    clusters = {r.get("/status/ipam")["cluster_id"] for r in (one, two, three)}
    assert len(clusters) == 1 and "" not in clusters

    two.kill()  # SIGKILL: no chance to flush anything
    two = fleet.launch("two", [one.listen, three.listen], extra=_ipam(*init))
    for i, address in enumerate(given["two"]):
        assert lookup(two, f"two-{i}") == [address]
    wait_until(lambda: _full_mesh([one, two, three], 3), 30, "mesh after restart", one, two)
    more = [allocate(two, f"two-more-{i}") for i in range(5)]
    assert not set(more) & set(everything)
    status = json.loads(cli(two.api, "status", "ipam", "--json").stdout)
    assert status["allocated"] == 10 and status["state"] == "ready"
    table = cli(two.api, "status", "ipam").stdout
    assert "Range:" in table and RANGE in table and "ranges per peer" in table


def test_separate_clusters_refuse_each_other_and_an_empty_router_joins(
    fleet: RouterFleet,
) -> None:
    x = fleet.launch("x", extra=_ipam("--ipalloc-init", "consensus=1"))
    y = fleet.launch("y", extra=_ipam("--ipalloc-init", "consensus=1"))
    allocate(x, "on-x")
    allocate(y, "on-y")
    x_cluster = x.get("/status/ipam")["cluster_id"]
    assert x_cluster and x_cluster != y.get("/status/ipam")["cluster_id"]

    assert cli(y.api, "connect", x.listen).returncode == 0

    def refused() -> bool:
        rows = y.get("/status/connections")
        return any("cluster" in row["info"] and "reset" in row["info"] for row in rows)

    wait_until(refused, 20, "cluster refusal on y", x, y)
    text = " ".join(row["info"] for row in y.get("/status/connections"))
    assert x_cluster in text
    assert y.get("/status")["connections"] == 0

    z = fleet.launch("z", [x.listen], extra=_ipam())  # empty ring, default founding
    wait_until(lambda: z.get("/status/ipam")["cluster_id"] == x_cluster, 20, "z joins", x, z)
    address = allocate(z, "on-z")  # needs a donation from x
    assert address != lookup(x, "on-x")[0]


def test_range_overlapping_a_host_route_is_refused(tmp_path: Path) -> None:
    result = run_cli(
        "launch", "peer", "--datapath", "none", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0",
        "--data-dir", str(tmp_path / "d"), "--ipalloc-range", "127.1.0.0/16",
    )
    assert result.returncode == 1
    assert "overlaps the host's route to 127.0.0.0/8" in result.stderr
    bad = run_cli(
        "launch", "peer", "--datapath", "none", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0",
        "--data-dir", str(tmp_path / "e"), "--ipalloc-init", "sometimes",
    )
    assert bad.returncode == 1 and "expected consensus[=N]" in bad.stderr


def _name(router: RouterProcess) -> str:
    return str(router.get("/status")["name"])


def test_waiting_request_says_why_then_reset_and_rmpeer(fleet: RouterFleet) -> None:
    init = ["--ipalloc-init", "consensus=3"]
    a = fleet.launch("a", extra=_ipam(*init))
    waiting = subprocess.Popen(
        [sys.executable, "-m", "meshrouter.cli", "--api", a.api, "ipam", "allocate", "w1",
         "--wait", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        def says_why() -> bool:
            pending = a.get("/status/ipam")["pending"]
            return bool(pending) and "awaiting consensus" in pending[0]["reason"]

        wait_until(says_why, 15, "a pending request with its reason", a)
        reason = a.get("/status/ipam")["pending"][0]["reason"]
        assert "of 2 votes" in reason, reason
        b = fleet.launch("b", [a.listen], extra=_ipam(*init))
        out, err = waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, err
    assert out.startswith("198.18.47.")

    c = fleet.launch("c", [a.listen], extra=_ipam(*init))
    allocate(c, "on-c")  # c joined the existing ring and got a donation
    refused = cli(a.api, "rmpeer", _name(b))
    assert refused.returncode == 1 and "is reachable" in refused.stderr

    c_name = _name(c)
    result = cli(c.api, "reset")
    assert result.returncode == 0 and "address space handed to" in result.stdout, result.stderr
    c.process.wait(timeout=10)
    c = fleet.launch("c", extra=_ipam(*init))  # same data dir, alone: it left the cluster
    assert c.get("/status/ipam")["cluster_id"] == ""
    wait_until(
        lambda: all(p["peer"] != c_name for p in a.get("/status/ipam")["peers"]), 15,
        "c's ranges handed over", a,
    )

    b_name = _name(b)
    b.kill()
    wait_until(lambda: a.get("/status")["peers"] == 1, 15, "b gone from a's topology", a)
    took = cli(a.api, "rmpeer", b_name)
    assert took.returncode == 0 and "took over" in took.stdout, took.stderr
    assert all(p["peer"] != b_name for p in a.get("/status/ipam")["peers"])


def test_corrupt_ipam_state_file_stops_the_router_with_a_clear_error(
    fleet: RouterFleet, tmp_path: Path
) -> None:
    d = fleet.launch("d", extra=_ipam("--ipalloc-init", "consensus=1"))
    allocate(d, "x")
    d.kill(signal.SIGTERM)
    (d.data_dir / "ipam").write_bytes(b"\x93garbage")
    result = run_cli(
        "launch", "peer", "--datapath", "none", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0",
        "--data-dir", str(d.data_dir), *_ipam(),
    )
    assert result.returncode == 1
    assert "IPAM state file is corrupt" in result.stderr, result.stderr


def api_error(router: RouterProcess, method: str, path: str) -> tuple[int, str]:
    """Status and message of a request that must fail (JSON error body)."""
    response = httpx.request(method, f"http://{router.api}{path}", headers=JSON, timeout=10)
    assert response.status_code >= 400, response.text
    body = response.json()
    assert body["status"] == response.status_code
    return response.status_code, str(body["error"])


def test_claim_release_subnet_and_lookup_through_the_cli_and_the_api(
    fleet: RouterFleet,
) -> None:
    r = fleet.launch("solo", extra=_ipam("--ipalloc-init", "consensus=1"))

    # claim: this very address; another container cannot have it; outside the range is invalid.
    claimed = cli(r.api, "ipam", "claim", "c1", "198.18.47.10/24", "--wait", "10")
    assert claimed.returncode == 0 and claimed.stdout == "198.18.47.10/24\n", claimed.stderr
    assert lookup(r, "c1") == ["198.18.47.10/24"]
    status, message = api_error(r, "PUT", "/ip/c2/198.18.47.10?wait=1")
    assert status == 409 and "198.18.47.10 is already allocated to c1" in message
    taken = cli(r.api, "ipam", "claim", "c2", "198.18.47.10", "--wait", "1")
    assert taken.returncode == 1
    assert taken.stderr == f"meshrouter: error: {message}\n"
    status, message = api_error(r, "PUT", "/ip/c2/10.1.2.3?wait=1")
    assert status == 400 and "10.1.2.3" in message

    # allocate inside a subnet of the range, through the CLI and the API.
    inside = cli(r.api, "ipam", "allocate", "c3", "--subnet", "198.18.47.128/25", "--wait", "10")
    assert inside.returncode == 0, inside.stderr
    address = ipaddress.ip_interface(inside.stdout.strip())
    assert address.network == ipaddress.ip_network(RANGE)
    assert address.ip in ipaddress.ip_network("198.18.47.128/25")
    response = httpx.post(
        f"http://{r.api}/ip/c4/198.18.47.192/26?wait=10", headers=JSON, timeout=15
    )
    assert response.status_code == 200, response.text
    assert ipaddress.ip_interface(response.json()["address"]).ip in ipaddress.ip_network(
        "198.18.47.192/26"
    )
    status, _ = api_error(r, "POST", "/ip/c4/10.9.0.0/24?wait=1")
    assert status == 400

    # release one address of a container: that one is free again, the other stays.
    first = allocate(r, "c5")
    assert cli(r.api, "ipam", "claim", "c5", "198.18.47.11").returncode == 0
    assert sorted(lookup(r, "c5")) == sorted([first, "198.18.47.11/24"])
    one = cli(r.api, "ipam", "release", "c5", "198.18.47.11/24")
    assert one.returncode == 0 and one.stdout == "released 198.18.47.11/24\n"
    assert lookup(r, "c5") == [first]
    again = cli(r.api, "ipam", "claim", "c6", "198.18.47.11", "--wait", "5")
    assert again.returncode == 0, again.stderr  # freed, so another container may claim it

    # release every address of a container: lookup is then 404 and the address is free.
    every = cli(r.api, "ipam", "release", "c1")
    assert every.returncode == 0 and every.stdout == "released 198.18.47.10/24\n"
    status, message = api_error(r, "GET", "/ip/c1")
    assert status == 404 and message == "container c1 has no address"
    gone = cli(r.api, "ipam", "lookup", "c1")
    assert gone.returncode == 1
    assert gone.stderr == "meshrouter: error: container c1 has no address\n"
    assert cli(r.api, "ipam", "claim", "c7", "198.18.47.10", "--wait", "5").returncode == 0
    status, _ = api_error(r, "DELETE", "/ip/nobody")
    assert status == 404
    status, _ = api_error(r, "DELETE", "/ip/c6/198.18.47.99")
    assert status == 404

    # wait: validated by the API (400) and by the CLI (usage error, exit 2).
    for wait, why in (("abc", "not a number"), ("-1", "wait must be 0..3600"),
                      ("3601", "wait must be 0..3600")):
        status, message = api_error(r, "POST", f"/ip/c8?wait={wait}")
        assert status == 400 and why in message, message
    usage = cli(r.api, "ipam", "allocate", "c8", "--wait", "-1")
    assert usage.returncode == 2 and "--wait" in usage.stderr
    assert api_error(r, "GET", "/ip/c8")[0] == 404  # none of those allocated anything


def test_a_request_that_cannot_be_met_in_time_is_503_with_the_reason(
    fleet: RouterFleet,
) -> None:
    lonely = fleet.launch("lonely", extra=_ipam("--ipalloc-init", "consensus=2"))
    status, message = api_error(lonely, "POST", "/ip/w1?wait=0.5")
    assert status == 503
    assert message.startswith("no address for w1 within 0.5s: ")
    assert "consensus" in message, message
    result = cli(lonely.api, "ipam", "allocate", "w2", "--wait", "0.5")
    assert result.returncode == 1
    line = result.stderr
    assert line.count("\n") == 1 and line.startswith(
        "meshrouter: error: no address for w2 within 0.5s: "
    ), line
    # The router gave up on both: nothing is left pending or allocated.
    status_ipam = lonely.get("/status/ipam")
    assert status_ipam["pending"] == [] and status_ipam["allocated"] == 0
