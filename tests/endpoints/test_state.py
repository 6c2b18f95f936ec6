"""The endpoint set is a CRDT: merge is a join, deltas are exact, the codec is tight."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from meshrouter.codec import pack
from meshrouter.endpoints.model import Endpoint, mac_for, make_endpoint
from meshrouter.endpoints.state import MAX_ENTRIES, EndpointSet
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName
from tests.endpoints.strategies import OWNERS, endpoint_sets, endpoints

A = OWNERS[0]


def merged(*sets: EndpointSet) -> EndpointSet:
    result = EndpointSet()
    for s in sets:
        result.merge(s)
    return result


def oracle(*sets: EndpointSet) -> dict[tuple[int, str], Endpoint]:
    """The join written out: max floor; highest (version, tombstone, fields); above floor."""
    floors: dict[int, int] = {}
    best: dict[tuple[int, str], Endpoint] = {}
    for s in sets:
        for owner, floor in s.floors.items():
            floors[owner] = max(floors.get(owner, 0), floor)
        for e in s:
            key = (e.owner, e.container_id)
            old = best.get(key)
            if old is None or (e.version, e.tombstone, e.mac, e.ip, e.name) > (
                    old.version, old.tombstone, old.mac, old.ip, old.name):
                best[key] = e
    return {k: e for k, e in best.items() if e.version >= floors.get(e.owner, 0)}


def as_dict(s: EndpointSet) -> dict[tuple[int, str], Endpoint]:
    return {(e.owner, e.container_id): e for e in s}


@settings(deadline=None)  # the VM is shared: wall time is not ours
@given(endpoint_sets(), endpoint_sets())
def test_merge_is_commutative(a: EndpointSet, b: EndpointSet) -> None:
    assert merged(a, b) == merged(b, a)


@settings(deadline=None)  # the VM is shared: wall time is not ours
@given(endpoint_sets(), endpoint_sets(), endpoint_sets())
def test_merge_is_associative_and_matches_the_oracle(
        a: EndpointSet, b: EndpointSet, c: EndpointSet) -> None:
    left = merged(a, b)
    left.merge(c)
    bc = merged(b, c)
    right = a.copy()
    right.merge(bc)
    assert left == right
    assert as_dict(left) == oracle(a, b, c)


@settings(deadline=None)  # the VM is shared: wall time is not ours
@given(endpoint_sets())
def test_merge_is_idempotent(a: EndpointSet) -> None:
    b = a.copy()
    assert b.merge(a) is None
    assert b == a


@settings(deadline=None)  # the VM is shared: wall time is not ours
@given(endpoint_sets(), endpoint_sets())
def test_delta_is_exactly_what_was_new(a: EndpointSet, b: EndpointSet) -> None:
    before = a.copy()
    b_copy = b.copy()
    delta = a.merge(b)
    assert b == b_copy  # other never mutated
    replay = before.copy()
    if delta is not None:
        replay.merge(delta)
    assert replay == a


@settings(deadline=None)  # the VM is shared: wall time is not ours
@given(endpoint_sets())
def test_decode_inverts_encode(a: EndpointSet) -> None:
    assert EndpointSet.decode(a.encode()) == a


def test_one_entry_delta_is_small() -> None:
    entry = make_endpoint(PeerName(0x5A1E00000001), "3f2a9c81d4e5b6a7", mac_for(A, "x"),
                          "10.32.0.17", "web-1", 12)
    assert len(EndpointSet.of([entry]).encode()) < 80


def test_floor_drops_tombstones_and_stale_live_copies() -> None:
    stale = make_endpoint(A, "c1", "02:00:00:00:00:01", "10.0.0.1", "", 3)
    restamped = make_endpoint(A, "c2", "02:00:00:00:00:02", "10.0.0.2", "", 9)
    replica = EndpointSet.of([stale, make_endpoint(A, "c9", "", "", "", 4, True)])
    delta = replica.merge(EndpointSet.of([restamped], {A: 8}))
    assert as_dict(replica) == {(A, "c2"): restamped}
    assert delta is not None and delta.floors == {A: 8}
    assert replica.merge(EndpointSet.of([stale])) is None  # cannot come back


@pytest.mark.parametrize("payload", [
    b"\xc1",
    pack([1, 2]),
    pack({"e": [[1, "c1", "02:00:00:00:00:01", "10.0.0.1", "", 1]]}),  # 6 fields
    pack({"e": [[1, "c1", "02:00:00:00:00:0G", "10.0.0.1", "", 1, False]]}),
    pack({"e": [[1, "c1", "03:00:00:00:00:01", "10.0.0.1", "", 1, False]]}),  # group MAC
    pack({"e": [[1, "c1", "02:00:00:00:00:01", "10.0.0.01", "", 1, False]]}),
    pack({"e": [[1, "c1", "02:00:00:00:00:01", "10.0.0.1", "", 0, False]]}),
    pack({"e": [[1, "", "02:00:00:00:00:01", "10.0.0.1", "", 1, False]]}),
    pack({"e": [[1 << 48, "c", "02:00:00:00:00:01", "10.0.0.1", "", 1, False]]}),
    pack({"e": [[1, "c", "02:00:00:00:00:01", "10.0.0.1", "x" * 300, 1, False]]}),
    pack({"e": [[1, "c", "02:00:00:00:00:01", "10.0.0.1", "", 1, 1]]}),
    pack({"f": [[1, -1]]}),
    pack({"f": [[1]]}),
    pack({"e": [[]] * (MAX_ENTRIES + 1)}),
])
def test_malformed_payloads_are_refused(payload: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        EndpointSet.decode(payload)


# An accepted wire form, written out (not made by the encoder under test).
SOME_ENDPOINTS = pack({"e": [[1, "c1", "02:00:00:00:00:01", "10.0.0.1", "web", 3, False],
                             [1, "c2", "", "", "", 2, True]],
                       "f": [[2, 4]]})


@settings(deadline=None)  # the VM is shared: wall time is not ours
@given(st.binary(max_size=200))
@example(SOME_ENDPOINTS)
def test_random_bytes_raise_only_malformed(payload: bytes) -> None:
    """Refused with MalformedMessageError only; what is accepted is a set this router
    can gossip on: its encoding decodes to the same set."""
    try:
        state = EndpointSet.decode(payload)
    except MalformedMessageError:
        return
    assert EndpointSet.decode(state.encode()) == state


@settings(deadline=None)  # the VM is shared: wall time is not ours
@given(endpoints())
def test_tombstones_carry_no_fields(e: Endpoint) -> None:
    if e.tombstone:
        assert (e.mac, e.ip, e.name) == ("", "", "")
