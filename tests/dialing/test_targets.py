from __future__ import annotations

import random

from meshrouter.dialing.backoff import BackoffPolicy
from meshrouter.dialing.targets import HOLD_LIMIT, TargetState, TargetTable
from meshrouter.names import PeerName

A = "10.0.0.1:6783"
B = "10.0.0.2:6783"
P = PeerName(0x0200000000AA)


def test_direct_targets_are_due_immediately() -> None:
    table = TargetTable()
    table.add_direct([B, A], now=5.0)
    assert table.due(5.0) == [A, B]
    assert table.direct_addresses() == [A, B]


def test_failure_schedules_jittered_backoff_and_says_why() -> None:
    table = TargetTable(BackoffPolicy())
    table.add_direct([A], now=0.0)
    table.dial_started(A)
    assert table.due(0.0) == []
    table.dial_failed(A, 0.0, "dial failed: Connection refused", random.Random(1))
    target = table.get(A)
    assert target is not None and target.state is TargetState.RETRYING
    assert 1.0 <= target.next_attempt < 3.0
    assert target.info.startswith("dial failed: Connection refused; retry in")
    assert table.next_wakeup() == target.next_attempt
    assert table.due(target.next_attempt) == [A]


def test_successive_failures_grow_the_delay() -> None:
    table = TargetTable(BackoffPolicy())
    table.add_direct([A], now=0.0)
    rng = random.Random(3)
    now = 0.0
    delays = []
    for _ in range(6):
        table.dial_started(A)
        table.dial_failed(A, now, "refused", rng)
        target = table.get(A)
        assert target is not None
        delays.append(target.next_attempt - now)
        now = target.next_attempt
    bases = [BackoffPolicy().base_interval(n) for n in range(1, 7)]
    assert all(b / 2 <= d < 1.5 * b for d, b in zip(delays, bases, strict=True))


def test_permanent_errors_are_not_retried() -> None:
    table = TargetTable()
    table.add_direct([A], now=0.0)
    table.dial_started(A)
    table.dial_failed(A, 0.0, "connection to self", random.Random(0), retryable=False)
    target = table.get(A)
    assert target is not None and target.state is TargetState.FAILED
    assert table.due(1e9) == []
    assert "will not retry" in target.info


def test_long_lived_connection_resets_backoff() -> None:
    policy = BackoffPolicy()
    table = TargetTable(policy)
    table.add_direct([A], now=0.0)
    rng = random.Random(0)
    for _ in range(5):
        table.dial_started(A)
        table.dial_failed(A, 0.0, "refused", rng)
    table.dial_started(A)
    table.established(A, P, now=100.0)
    table.peer_disconnected(P, now=100.0 + policy.reset_after + 1, reason="EOF", rng=rng)
    target = table.get(A)
    assert target is not None and target.failures == 1
    assert target.next_attempt - (100.0 + policy.reset_after + 1) < 3.0


def test_forget_keeps_live_connection_but_drops_idle_target() -> None:
    table = TargetTable()
    table.add_direct([A, B], now=0.0)
    table.dial_started(A)
    table.established(A, P, now=1.0)
    assert table.forget([A, B, "10.9.9.9:6783"]) == ["10.9.9.9:6783"]
    assert A in table and B not in table
    assert table.direct_addresses() == []


def test_discovered_targets_are_replaced() -> None:
    table = TargetTable()
    table.set_discovered({A: (P, 0.0, 3), B: (PeerName(2), 0.5, 0)}, now=0.0)
    assert table.due(0.0) == [A]
    assert set(table.due(0.5)) == {A, B}
    table.set_discovered({B: (PeerName(2), 0.0, 0)}, now=1.0)
    assert A not in table and B in table


def test_targets_of_connected_peers_are_skipped() -> None:
    table = TargetTable()
    table.add_direct([A], now=0.0)
    table.dial_started(A)
    table.established(A, P, now=1.0)
    table.peer_disconnected(P, now=2.0, reason="EOF", rng=random.Random(0))
    table.skip_connected({P}, now=2.5)
    target = table.get(A)
    assert target is not None and target.state is TargetState.ESTABLISHED
    assert table.due(1e9) == []


def test_statuses_report_next_attempt() -> None:
    table = TargetTable()
    table.add_direct([A], now=0.0)
    table.dial_started(A)
    table.dial_failed(A, 0.0, "refused", random.Random(0))
    (status,) = table.statuses(now=0.5)
    assert status.state == "retrying" and status.next_attempt_in is not None
    assert status.attempts == 1


def test_lower_priority_is_dialled_first_among_equally_due() -> None:
    table = TargetTable()
    table.set_discovered({A: (P, 0.0, 5), B: (PeerName(2), 0.0, 1)}, now=0.0)
    assert table.due(0.0) == [B, A]


def test_a_lost_neighbour_lingers_after_the_topology_forgets_it() -> None:
    """A partition that isolates us makes the topology forget every peer beyond it;
    the address of a neighbour we just lost is kept (and redialled with backoff)
    for ``linger`` seconds, so a re-split network that puts it back on our side
    reconnects us. A never-connected suggestion is still dropped at once."""
    rng = random.Random(0)
    table = TargetTable(BackoffPolicy(), linger=100.0)
    table.set_discovered({A: (P, 0.0, 0), B: (PeerName(2), 0.0, 0)}, now=0.0)
    table.dial_started(A)
    table.established(A, P, now=1.0)
    table.peer_disconnected(P, now=10.0, reason="heartbeat timeout", rng=rng)
    table.set_discovered({}, now=11.0)  # the topology forgot both peers
    assert A in table and B not in table
    due_at = table.get(A).next_attempt  # type: ignore[union-attr]
    assert table.due(due_at) == [A]  # still redialled
    table.dial_started(A)
    table.dial_failed(A, now=due_at, reason="unreachable", rng=rng)
    table.set_discovered({}, now=109.0)
    assert A in table
    assert table.due(110.0) == [] and A not in table  # lingered 100 s after the loss


def test_a_lingering_neighbour_suggested_again_stays_and_reconnects() -> None:
    rng = random.Random(0)
    table = TargetTable(BackoffPolicy(), linger=100.0)
    table.set_discovered({A: (P, 0.0, 0)}, now=0.0)
    table.dial_started(A)
    table.established(A, P, now=1.0)
    table.peer_disconnected(P, now=10.0, reason="heartbeat timeout", rng=rng)
    table.set_discovered({}, now=11.0)
    table.set_discovered({A: (P, 0.0, 0)}, now=50.0)  # the mesh knows it again
    assert table.due(500.0) == [A]  # suggested: no longer bound by the linger
    table.dial_started(A)
    table.established(A, P, now=501.0)
    assert table.get(A).lost_at is None  # type: ignore[union-attr]


def test_an_inbound_handshake_holds_dials_to_its_host_until_it_ends() -> None:
    """Most likely the peer behind the target is dialling us: dialling back now
    would make a duplicate connection (module docstring).  Holds count: two
    inbound handshakes from one host need two releases."""
    table = TargetTable()
    table.set_discovered({A: (P, 0.0, 0), B: (PeerName(2), 0.5, 0)}, now=0.0)
    table.hold("10.0.0.1:41000")
    table.hold("10.0.0.1:41001")
    assert table.due(1.0) == [B]  # another host is not held
    table.dial_started(B)
    assert table.next_wakeup() == HOLD_LIMIT  # a held target wakes us at its hold's end
    table.release("10.0.0.1:41000")
    assert table.due(1.0) == []
    table.release("10.0.0.1:41001")
    assert table.due(1.0) == [A]
    assert table.next_wakeup() == 0.0


def test_a_target_waits_at_most_the_hold_limit() -> None:
    """Handshakes from its host that follow one another (a stranger at a peer's
    address) cannot keep a target from being dialled."""
    table = TargetTable()
    table.set_discovered({A: (P, 2.0, 0)}, now=0.0)
    table.hold("10.0.0.1:41000")
    assert table.due(2.0 + HOLD_LIMIT - 0.1) == []
    assert table.due(2.0 + HOLD_LIMIT) == [A]


def test_a_hold_matches_the_host_of_an_ipv6_address() -> None:
    v6 = "[fd00::1]:6783"
    table = TargetTable()
    table.add_direct([v6, A], now=0.0)
    table.hold("[fd00::1]:50000")
    assert table.due(0.0) == [A]
    table.release("[fd00::1]:50000")
    assert table.due(0.0) == [A, v6]
