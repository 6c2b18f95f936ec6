"""Real ``meshrouter launch peer`` processes on 127.0.0.1: mesh formation,
password refusal, SIGKILL detection, the HTTP API and the CLI client verbs."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import RouterFleet, RouterProcess, wait_until

pytestmark = pytest.mark.processes


def _full_mesh(routers: list[RouterProcess], size: int) -> bool:
    for router in routers:
        status = router.get("/status")
        if status["peers"] != size or status["connections"] != size - 1:
            return False
    return True


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[RouterFleet]:
    routers = RouterFleet(tmp_path)
    try:
        yield routers
    finally:
        routers.stop_all()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshrouter.cli", *args], capture_output=True, text=True, timeout=30
    )


def cli(api: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("--api", api, *args)


def test_three_processes_form_a_full_mesh_and_lose_a_killed_peer(fleet: RouterFleet) -> None:
    launched = time.monotonic()
    one = fleet.launch("one", password="mesh secret")
    two = fleet.launch("two", [one.listen], password="mesh secret")
    three = fleet.launch("three", [one.listen], password="mesh secret")
    took = wait_until(lambda: _full_mesh([one, two, three], 3), 30, "full mesh", one, two, three)
    print(
        f"\n3 processes reached a full mesh {took:.2f}s after the third API came up, "
        f"{time.monotonic() - launched:.2f}s after the first process was started"
    )

    for router in (one, two, three):
        peers = router.get("/status/peers")
        assert len(peers) == 3
        connections = [c for c in router.get("/status/connections") if c["state"] == "established"]
        assert len(connections) == 2
        assert all("encrypted" in c["info"] for c in connections)

    # A fourth router with the wrong password is refused, and both sides say why.
    four = fleet.launch("four", [one.listen], password="not the mesh secret")

    def refused_both_sides() -> bool:
        theirs = [c for c in four.get("/status/connections") if c["address"] == one.listen]
        ours = [c for c in one.get("/status/connections") if c["state"] == "failed"]
        return (
            bool(theirs)
            and "password" in theirs[0]["info"]
            and any("password" in c["info"] for c in ours)
        )

    wait_until(refused_both_sides, 20, "password refusal on both sides", one, four)
    (row,) = [c for c in four.get("/status/connections") if c["address"] == one.listen]
    assert row["state"] in ("retrying", "connecting")
    assert "differs" in row["info"]
    assert one.get("/status")["peers"] == 3

    # SIGKILL one router: the others drop it within the heartbeat timeout (2 s).
    three.kill()
    took = wait_until(lambda: _full_mesh([one, two], 2), 10, "killed peer removed", one, two)
    print(f"killed peer removed from the others' peer lists after {took:.2f}s")
    names = {p["nickname"] for p in one.get("/status/peers")}
    assert names == {"one", "two"}


def test_api_and_cli_verbs(fleet: RouterFleet, tmp_path: Path) -> None:
    one = fleet.launch("solo")
    report = one.get("/report")["router"]
    for key in (
        "name",
        "nickname",
        "uid",
        "version",
        "listen",
        "encryption",
        "cluster_id",
        "peers",
        "connections",
        "targets",
    ):
        assert key in report
    assert report["nickname"] == "solo" and report["encryption"] is False

    # Errors are JSON with a message and a 4xx code; the router keeps running.
    response = one.post("/connect", {"peers": ["not a host"]})
    assert response.status_code == 400 and "not a host name" in response.json()["error"]
    response = one.post("/connect", {"nope": 1})
    assert response.status_code == 400 and "peers" in response.json()["error"]
    import httpx

    bad = httpx.post(f"http://{one.api}/connect", content=b"{not json", timeout=5)
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]
    missing = httpx.get(f"http://{one.api}/nowhere", timeout=5)
    assert missing.status_code == 404 and missing.json()["status"] == 404

    # CLI client verbs.
    result = cli(one.api, "connect", "127.0.0.1:1")
    assert result.returncode == 0 and "connecting to 127.0.0.1:1" in result.stdout
    targets = cli(one.api, "status", "targets", "--json")
    assert targets.returncode == 0 and '"127.0.0.1:1"' in targets.stdout
    wait_until(
        lambda: any("Connection refused" in c["info"] for c in one.get("/status/connections")),
        10,
        "dial failure reported",
        one,
    )
    table = cli(one.api, "status", "connections")
    assert table.returncode == 0 and "127.0.0.1:1" in table.stdout and "retrying" in table.stdout
    result = cli(one.api, "forget", "127.0.0.1:1")
    assert result.returncode == 0
    summary = cli(one.api, "status")
    assert summary.returncode == 0 and "solo" in summary.stdout
    assert cli(one.api, "report").stdout.lstrip().startswith("{")
    bad_arg = cli(one.api, "connect", "bad:addr:x")
    assert bad_arg.returncode == 2 and "IPv6" in bad_arg.stderr

    # Persisted direct peers survive a restart of the data dir (forgotten ones don't).
    assert (one.data_dir / "peer-name").exists()

    stopped = cli(one.api, "stop")
    assert stopped.returncode == 0
    one.process.wait(timeout=10)
    assert one.process.returncode == 0
    unreachable = cli(one.api, "status")
    assert unreachable.returncode == 1
    assert unreachable.stderr.count("\n") == 1 and "cannot reach" in unreachable.stderr


def test_bad_launch_arguments_fail_with_one_clear_line(tmp_path: Path) -> None:
    result = run_cli("launch", "peer", "--listen", "127.0.0.1:99999", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "port must be a number" in result.stderr
    empty = tmp_path / "empty.pw"
    empty.write_text("\n")
    result = run_cli("launch", "peer", "--password-file", str(empty), "--data-dir", str(tmp_path))
    assert result.returncode == 1 and "is empty" in result.stderr


def test_port_in_use_fails_with_one_clear_line(fleet: RouterFleet, tmp_path: Path) -> None:
    running = fleet.launch("holder")
    result = run_cli(
        "launch",
        "peer",
        "--listen",
        running.listen,
        "--api",
        "127.0.0.1:0",
        "--data-dir",
        str(tmp_path / "second"),
    )
    assert result.returncode == 1
    assert f"cannot listen on {running.listen}" in result.stderr
    assert "Traceback" not in result.stderr


def test_name_is_stable_across_restarts(fleet: RouterFleet) -> None:
    first = fleet.launch("stable")
    name = first.get("/status")["name"]
    first.kill()
    again = fleet.launch("stable")
    assert again.get("/status")["name"] == name
