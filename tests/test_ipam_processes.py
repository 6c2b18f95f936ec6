"""IPAM with real ``meshrouter launch peer`` processes on 127.0.0.1: allocations
on three routers survive kill -9 and restart; two separately founded clusters
refuse each other with a message saying what to do, and an empty router joins;
a range that overlaps a host route is refused."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import RouterFleet, RouterProcess, wait_until
from tests.test_processes import _full_mesh, cli, run_cli

pytestmark = pytest.mark.processes

RANGE = "198.18.47.0/24"  # benchmarking range: never routed on a test host


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
        "launch", "peer", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0",
        "--data-dir", str(tmp_path / "d"), "--ipalloc-range", "127.1.0.0/16",
    )
    assert result.returncode == 1
    assert "overlaps the host's route to 127.0.0.0/8" in result.stderr
    bad = run_cli(
        "launch", "peer", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0",
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
        "launch", "peer", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0",
        "--data-dir", str(d.data_dir), *_ipam(),
    )
    assert result.returncode == 1
    assert "IPAM state file is corrupt" in result.stderr, result.stderr
