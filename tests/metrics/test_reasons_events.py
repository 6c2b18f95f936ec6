"""Pure parts of the metrics: reason labels, connection events, the apply histogram."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshrouter.metrics.events import ConnectionEvents
from meshrouter.metrics.histogram import BUCKETS, ApplyLog
from meshrouter.metrics.reasons import REASONS, classify


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("no message from the peer for 3s (heartbeat timeout)", "heartbeat_timeout"),
        ("router shutting down", "shutdown"),
        ("connection limit of 100 reached", "connection_limit"),
        ("superseded by a duplicate connection that wins the tie-break", "duplicate"),
        ("connection closed by the peer", "closed_by_peer"),
        ("connection broken: [Errno 104] Connection reset by peer", "broken"),
        ("handshake not completed within 5s", "handshake_timeout"),
        ("something nobody foresaw", "other"),
    ],
)
def test_known_reasons_get_their_label(text: str, label: str) -> None:
    assert classify(text) == label


@given(st.text(max_size=200))
def test_any_text_gets_a_label_from_the_fixed_set(text: str) -> None:
    assert classify(text) in REASONS


def test_events_count_by_direction_and_reason() -> None:
    events = ConnectionEvents()
    events.observe("up", "01:00:00:00:00:02 out")
    events.observe("up", "01:00:00:00:00:03 in")
    events.observe("down", "01:00:00:00:00:02 no message from the peer for 3s (heartbeat timeout)")
    events.observe("refused", "in 127.0.0.1:5555 connection limit of 1 reached")
    events.observe("dial-failed", "127.0.0.1:6783 [Errno 111] Connection refused")
    events.observe("peer-gone", "01:00:00:00:00:02")
    assert dict(events.established) == {"outbound": 1, "inbound": 1}
    assert dict(events.terminations) == {"heartbeat_timeout": 1}
    assert dict(events.failures) == {
        ("inbound", "connection_limit"): 1,
        ("outbound", "dial_refused"): 1,
    }


def test_apply_log_counts_each_apply_once_by_identity() -> None:
    log = ApplyLog()
    first = {"kind": "full", "flow_mods": 10, "ms": 3.0}
    second = {"kind": "delta", "flow_mods": 1, "ms": 3.0}  # equal timing, another apply
    assert log.feed([first]) == 1
    assert log.feed([first, second]) == 1
    assert log.feed([first, second, {"ms": 2000.0}, "junk", {"kind": "no ms"}]) == 1
    assert log.count == 3
    assert log.total == pytest.approx(2.006)
    hits = dict(log.buckets())
    assert hits[0.005] == 2  # 3 ms, twice
    assert hits[2.5] == 1
    assert sum(hits.values()) == 3
    assert BUCKETS[-1] == float("inf")
