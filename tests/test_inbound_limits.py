"""Unauthenticated connections are bounded (issue 15, items 1 and 7): the pure
admission rule, and a real router flooded with idle connections under a low
open-file limit that keeps serving its API and writing its state."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshrouter.dialing.inbound_limits import InboundLimits, inbound_refusal, source_host
from tests.procs import RouterFleet, RouterProcess

LIMITS = InboundLimits(max_pending=4, per_source=2, max_sockets=10)


def test_source_host_of_v4_and_v6() -> None:
    assert source_host("10.0.0.1:6783") == "10.0.0.1"
    assert source_host("[::1]:6783") == "::1"


def test_admits_below_every_bound() -> None:
    assert inbound_refusal("10.0.0.1:1", pending=["10.0.0.2:5"], open_sockets=3,
                           limits=LIMITS) is None


def test_pending_cap_counts_every_waiting_connection() -> None:
    pending = ["10.0.0.2:1", "10.0.0.3:1", "10.0.0.4:1", "10.0.0.5:1"]
    reason = inbound_refusal("10.0.0.1:1", pending=pending, open_sockets=4, limits=LIMITS)
    assert reason == "too many inbound handshakes in progress (4)"
    assert inbound_refusal("10.0.0.1:1", pending=pending[:3], open_sockets=4,
                           limits=LIMITS) is None


def test_per_source_cap() -> None:
    pending = ["10.0.0.1:1", "10.0.0.1:2"]
    reason = inbound_refusal("10.0.0.1:3", pending=pending, open_sockets=2, limits=LIMITS)
    assert reason == "too many inbound handshakes from 10.0.0.1 (2)"
    assert inbound_refusal("10.0.0.9:3", pending=pending, open_sockets=2, limits=LIMITS) is None


def test_descriptor_budget() -> None:
    reason = inbound_refusal("10.0.0.1:1", pending=[], open_sockets=10, limits=LIMITS)
    assert reason is not None and "descriptor budget of 10" in reason
    assert inbound_refusal("10.0.0.1:1", pending=[], open_sockets=9, limits=LIMITS) is None
    unbounded = InboundLimits(max_pending=4, per_source=2, max_sockets=None)
    assert inbound_refusal("10.0.0.1:1", pending=[], open_sockets=10**6,
                           limits=unbounded) is None


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[RouterFleet]:
    routers = RouterFleet(tmp_path)
    try:
        yield routers
    finally:
        routers.stop_all()


@pytest.mark.processes
def test_idle_connection_flood_under_low_ulimit_does_not_kill_the_router(
    fleet: RouterFleet,
) -> None:
    # A connection limit above the open-file limit: only the descriptor budget
    # stands between the flood and the state file.
    router: RouterProcess = fleet.launch("flooded", nofile=128, extra=["--conn-limit", "1000"])
    host, port = router.listen.rsplit(":", 1)
    flood: list[socket.socket] = []
    try:
        for _ in range(400):  # more than the whole open-file limit
            try:
                # From many loopback sources, so the per-source cap does not
                # stop the flood before the descriptor budget does.
                source = (f"127.0.0.{2 + len(flood) // 16}", 0)
                flood.append(socket.create_connection((host, int(port)), timeout=2,
                                                      source_address=source))
            except OSError:
                break
        # At once, while every flood connection is still waiting for its handshake
        # deadline: the router answers its API and writes its state file.
        assert router.get("/status")["nickname"] == "flooded"
        allocated = router.post("/ip/flood-1", None)
        assert allocated.status_code == 200, allocated.text
        rows = router.get("/status/connections")
        refused = [r for r in rows if r["state"] == "failed"]
        assert refused and any("descriptor budget" in r["info"] or "handshakes" in r["info"]
                               for r in refused), rows[:5]
    finally:
        for sock in flood:
            sock.close()
    assert router.process.poll() is None, router.log()
    assert router.get("/ip/flood-1")["addresses"] == [allocated.json()["address"]]
