"""Real ``meshrouter launch peer`` processes on 127.0.0.1: mesh formation,
password refusal, a killed and a silent (stopped) peer, direct peers that
survive a restart, the HTTP API and the CLI client verbs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.procs import ADDRESSES_FILE, RouterFleet, RouterProcess, wait_until

pytestmark = pytest.mark.processes

MAX_DIRECT_PEERS = 1024  # the router's limit (meshrouter/node), restated as the oracle


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


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshrouter.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def cli(api: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("--api", api, *args)


def last_line(text: str) -> str:
    """The last line of stderr: the CLI's error, after any log lines."""
    return text.rstrip("\n").rsplit("\n", 1)[-1]


def table_row(table: str, text: str) -> list[str]:
    """The cells of the one row of a rich table that contains ``text``."""
    (line,) = [line.strip() for line in table.splitlines() if text in line]
    assert line.startswith("│") and line.endswith("│"), line
    return [cell.strip() for cell in line[1:-1].split("│")]


def direct_targets(router: RouterProcess) -> set[str]:
    return {t["address"] for t in router.get("/status/targets") if t["direct"]}


def connected_to(router: RouterProcess, other: RouterProcess) -> bool:
    name = other.get("/status")["name"]
    return any(
        c["peer"] == name and c["state"] == "established"
        for c in router.get("/status/connections")
    )


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

    # The status tables, as the CLI draws them.
    names = {r.nickname: r.get("/status")["name"] for r in (one, two, three)}
    peers_table = cli(two.api, "status", "peers")
    assert peers_table.returncode == 0 and "3 peers" in peers_table.stdout
    for nickname, name in names.items():
        row = table_row(peers_table.stdout, f" {nickname} ")
        assert row[:2] == [name, nickname]
        others = {n for k, n in names.items() if k != nickname}
        assert row[4] in ("", "direct")  # data path: all direct in a full mesh
        assert {link.split()[0].lstrip("<->") for link in row[5].split(", ")} == others
    targets_table = cli(two.api, "status", "targets")
    assert targets_table.returncode == 0
    assert table_row(targets_table.stdout, one.listen)[:4] == [
        one.listen, "direct", "established", names["one"]
    ]

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

    # SIGKILL one router: its sockets close, so the others see EOF at once and drop
    # it (the heartbeat timeout has its own test below, with a stopped process).
    three.kill()
    took = wait_until(lambda: _full_mesh([one, two], 2), 10, "killed peer removed", one, two)
    print(f"killed peer removed from the others' peer lists after {took:.2f}s")
    names_left = {p["nickname"] for p in one.get("/status/peers")}
    assert names_left == {"one", "two"}


def test_a_silent_peer_is_dropped_after_the_heartbeat_timeout(fleet: RouterFleet) -> None:
    """SIGSTOP keeps the peer's sockets open: nothing but the heartbeat timeout
    (2 s in tests/procs.py) can notice it."""
    one = fleet.launch("one")
    two = fleet.launch("two", [one.listen])
    wait_until(lambda: _full_mesh([one, two], 2), 20, "mesh of two", one, two)
    os.kill(two.process.pid, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        wait_until(
            lambda: one.get("/status")["connections"] == 0, 15, "silent peer dropped", one
        )
        took = time.monotonic() - stopped
        # The last message from two came at most one heartbeat interval (0.5 s)
        # before the stop, so the 2 s timeout cannot fire sooner than 1.5 s after it.
        assert took >= 1.4, f"dropped {took:.2f}s after SIGSTOP: not by the heartbeat timeout"
        assert re.search(r"closed: no message from the peer for [0-9.]+s \(heartbeat timeout\)",
                         one.log()), one.log()
        wait_until(lambda: one.get("/status")["peers"] == 1, 10, "silent peer forgotten", one)
        print(f"\nsilent peer dropped {took:.2f}s after SIGSTOP (heartbeat timeout 2 s)")
    finally:
        os.kill(two.process.pid, signal.SIGCONT)
        two.kill()


def test_api_and_cli_verbs(fleet: RouterFleet) -> None:
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
    bad = httpx.post(
        f"http://{one.api}/connect",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert bad.status_code == 400 and "JSON" in bad.json()["error"]
    missing = httpx.get(f"http://{one.api}/nowhere", timeout=5)
    assert missing.status_code == 404 and missing.json()["status"] == 404

    # CLI client verbs.
    result = cli(one.api, "connect", "127.0.0.1:1")
    assert result.returncode == 0 and "connecting to 127.0.0.1:1" in result.stdout
    targets = json.loads(cli(one.api, "status", "targets", "--json").stdout)
    assert [(t["address"], t["direct"]) for t in targets] == [("127.0.0.1:1", True)]
    wait_until(
        lambda: any("Connection refused" in c["info"] for c in one.get("/status/connections")),
        10,
        "dial failure reported",
        one,
    )
    table = cli(one.api, "status", "connections")
    assert table.returncode == 0
    assert table_row(table.stdout, "127.0.0.1:1")[:4] == ["->", "127.0.0.1:1", "", "retrying"]

    # report, by content: the same router the status and the peers list describe.
    status = one.get("/status")
    printed = cli(one.api, "report")
    assert printed.returncode == 0
    router = json.loads(printed.stdout)["router"]
    assert (router["name"], router["nickname"], router["listen"]) == (
        status["name"], "solo", one.listen
    )
    assert [p["name"] for p in router["peers"]] == [status["name"]]
    assert [(t["address"], t["direct"]) for t in router["targets"]] == [("127.0.0.1:1", True)]

    # forget, by its effect: the target is gone, and an unknown one is named.
    result = cli(one.api, "forget", "127.0.0.1:1", "127.0.0.1:2")
    assert result.returncode == 0 and result.stderr == "not a direct peer: 127.0.0.1:2\n"
    assert direct_targets(one) == set()
    summary = cli(one.api, "status")
    assert summary.returncode == 0 and "solo" in summary.stdout
    bad_arg = cli(one.api, "connect", "bad:addr:x")
    assert bad_arg.returncode == 2 and "IPv6" in bad_arg.stderr

    stopped = cli(one.api, "stop")
    assert stopped.returncode == 0
    one.process.wait(timeout=10)
    assert one.process.returncode == 0
    assert not (one.data_dir / ADDRESSES_FILE).exists()  # removed on a clean stop
    unreachable = cli(one.api, "status")
    assert unreachable.returncode == 1
    assert unreachable.stderr.count("\n") == 1 and "cannot reach" in unreachable.stderr


def test_bound_addresses_are_published_for_port_0(fleet: RouterFleet) -> None:
    router = fleet.launch("published")
    record: dict[str, Any] = json.loads((router.data_dir / ADDRESSES_FILE).read_text())
    assert set(record) == {"listen", "api", "pid"}
    assert record["pid"] == router.process.pid
    for key in ("listen", "api"):
        host, port = record[key].rsplit(":", 1)
        assert host == "127.0.0.1" and 0 < int(port) < 65536
    assert router.get("/status")["listen"] == record["listen"]
    assert f"mesh on {record['listen']}, API on {record['api']}" in router.log()
    assert not list(router.data_dir.glob(".addresses.json.tmp*"))


def test_restart_redials_persisted_direct_peers_but_not_forgotten_ones(
    fleet: RouterFleet,
) -> None:
    b = fleet.launch("b")
    c = fleet.launch("c")
    a = fleet.launch("a")
    assert cli(a.api, "connect", b.listen, c.listen).returncode == 0
    wait_until(lambda: connected_to(a, b) and connected_to(a, c), 20, "a dials b and c", a)
    forgot = cli(a.api, "forget", c.listen)
    assert forgot.returncode == 0 and forgot.stderr == ""
    assert direct_targets(a) == {b.listen}

    # kill -9: only what was persisted when connect/forget answered counts.
    a.kill()
    a = fleet.launch("a")  # same data dir, no peers given, a new port (b and c cannot dial it)
    wait_until(lambda: connected_to(a, b), 20, "restarted a redials its direct peer b", a, b)
    assert direct_targets(a) == {b.listen}


def test_connect_replace_and_the_direct_peer_limit(fleet: RouterFleet) -> None:
    x = fleet.launch("x", extra=["--no-discovery"])
    assert cli(x.api, "connect", "127.0.0.1:1", "127.0.0.1:2").returncode == 0
    assert direct_targets(x) == {"127.0.0.1:1", "127.0.0.1:2"}
    replaced = cli(x.api, "connect", "--replace", "127.0.0.1:3")
    assert replaced.returncode == 0 and replaced.stdout == "connecting to 127.0.0.1:3\n"
    assert direct_targets(x) == {"127.0.0.1:3"}

    too_many = [f"127.0.0.1:{10000 + i}" for i in range(MAX_DIRECT_PEERS)]  # +1 already there
    response = x.post("/connect", {"peers": too_many})
    assert response.status_code == 400
    assert f"at most {MAX_DIRECT_PEERS} direct peers" in response.json()["error"]
    refused = cli(x.api, "connect", *too_many)
    assert refused.returncode == 1
    assert refused.stderr == (
        f"meshrouter: error: at most {MAX_DIRECT_PEERS} direct peers are allowed\n"
    )
    assert direct_targets(x) == {"127.0.0.1:3"}
    # Exactly at the limit is fine.
    assert x.post("/connect", {"peers": too_many[:-1]}).status_code == 200
    assert len(direct_targets(x)) == MAX_DIRECT_PEERS


@pytest.mark.parametrize(
    "content", [b"\x93garbage", b"\x92\xa2ok\x03"], ids=["not-msgpack", "not-addresses"]
)
def test_a_corrupt_direct_peers_file_stops_the_start_with_one_line(
    tmp_path: Path, content: bytes
) -> None:
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    (data_dir / "direct-peers").write_bytes(content)
    result = run_cli(
        "launch", "peer", "--datapath", "none", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0",
        "--data-dir", str(data_dir), "--no-ipam", timeout=20,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    line = last_line(result.stderr)
    assert line.startswith("meshrouter: error: direct peers file is corrupt"), result.stderr
    assert (data_dir / "direct-peers").read_bytes() == content  # never silently reset


def test_bad_launch_arguments_fail_with_one_clear_line(tmp_path: Path) -> None:
    result = run_cli(
        "launch", "peer", "--datapath", "none", "--listen", "127.0.0.1:99999",
        "--data-dir", str(tmp_path),
    )
    assert result.returncode == 1
    assert "port must be a number" in result.stderr
    empty = tmp_path / "empty.pw"
    empty.write_text("\n")
    result = run_cli(
        "launch", "peer", "--datapath", "none", "--password-file", str(empty),
        "--data-dir", str(tmp_path),
    )
    assert result.returncode == 1 and "is empty" in result.stderr


def test_port_in_use_fails_with_one_clear_line(fleet: RouterFleet, tmp_path: Path) -> None:
    running = fleet.launch("holder")
    result = run_cli(
        "launch",
        "peer",
        "--datapath",
        "none",
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
