"""The admission rules as pure functions: Weave's duplicate tie-break, refusing
a live peer's impostor, and whom to evict at the connection limit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from meshrouter.dialing.admission import Duplicate, duplicate_decision, eviction_candidate
from meshrouter.dialing.discovery_policy import discovered_targets
from meshrouter.names import PeerName


def decide(**changes: object) -> Duplicate:
    args: dict[str, object] = dict(existing_remote_uid=7, existing_closing=False,
                                   existing_conn_uid=10, new_remote_uid=7, new_conn_uid=20,
                                   existing_alive=True)
    args.update(changes)
    return duplicate_decision(**args)  # type: ignore[arg-type]


def test_lower_connection_uid_survives_and_equal_drops_both() -> None:
    assert decide(existing_conn_uid=10, new_conn_uid=20) is Duplicate.KEEP_EXISTING
    assert decide(existing_conn_uid=30, new_conn_uid=20) is Duplicate.SUPERSEDE_EXISTING
    assert decide(existing_conn_uid=20, new_conn_uid=20) is Duplicate.DROP_BOTH


def test_a_closing_connection_is_replaced() -> None:
    assert decide(existing_closing=True) is Duplicate.REPLACE_STALE
    assert decide(existing_closing=True, new_remote_uid=8) is Duplicate.REPLACE_STALE


def test_another_uid_replaces_a_silent_link_but_not_a_live_one() -> None:
    assert decide(new_remote_uid=8, existing_alive=False) is Duplicate.REPLACE_STALE
    assert decide(new_remote_uid=8, existing_alive=True) is Duplicate.COLLISION


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_both_ends_agree_on_the_survivor(a: int, b: int) -> None:
    # End X holds conn a and sees b arrive; end Y holds b and sees a arrive.
    x = decide(existing_conn_uid=a, new_conn_uid=b)
    y = decide(existing_conn_uid=b, new_conn_uid=a)
    survivor_x = {Duplicate.KEEP_EXISTING: a, Duplicate.SUPERSEDE_EXISTING: b}.get(x)
    survivor_y = {Duplicate.KEEP_EXISTING: b, Duplicate.SUPERSEDE_EXISTING: a}.get(y)
    assert survivor_x == survivor_y == (min(a, b) if a != b else None)


P = [PeerName(i) for i in range(1, 6)]


def test_eviction_only_for_an_unreachable_newcomer_and_of_the_best_connected() -> None:
    degrees = {P[0]: 3, P[1]: 5, P[2]: 5, P[3]: 1}
    chosen = eviction_candidate(P[4], reachable=set(), neighbours=degrees,
                                degree=degrees.__getitem__)
    assert chosen == P[2]  # most links; ties broken by the highest name
    assert eviction_candidate(P[4], reachable={P[4]}, neighbours=degrees,
                              degree=degrees.__getitem__) is None
    lonely = {P[0]: 1, P[1]: 0}
    assert eviction_candidate(P[4], reachable=set(), neighbours=lonely,
                              degree=lonely.__getitem__) is None


def test_discovery_defers_the_higher_name_and_skips_full_peers() -> None:
    degrees = {P[0]: 1, P[2]: 2, P[3]: 16}
    chosen = discovered_targets(
        local=P[1],
        candidates=lambda: [(P[0], "a:1"), (P[2], "c:1"), (P[3], "d:1"), (P[2], "c:2")],
        degree=degrees.__getitem__, connections=3, conn_limit=16, defer=1.5,
    )
    assert chosen == {"a:1": (P[0], 1.5, 1), "c:1": (P[2], 0.0, 2), "c:2": (P[2], 0.0, 2)}
    asked: list[int] = []

    def candidates() -> list[tuple[PeerName, str]]:
        asked.append(1)
        return [(P[0], "a:1")]

    assert discovered_targets(local=P[1], candidates=candidates, degree=degrees.__getitem__,
                              connections=16, conn_limit=16, defer=1.0) == {}
    assert asked == []
