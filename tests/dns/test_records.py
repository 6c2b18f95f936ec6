"""The records CRDT: merge laws against an independent join, wire round trip, caps."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from meshrouter.codec import pack
from meshrouter.dns.records import MAX_VERSION, DnsRecords, OwnerRecords, RecordKey, Stamp
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName

PROPERTY = settings(deadline=None, max_examples=60)

Raw = dict[int, tuple[int, dict[tuple[str, int, str], tuple[int, bool]]]]

keys = st.tuples(
    st.sampled_from(["a.mesh.local.", "b.mesh.local.", "x.y.mesh.local."]),
    st.sampled_from([0x0A000001, 0x0A000002]),
    st.sampled_from(["", "c1"]),
)
stamps = st.tuples(st.integers(1, 4), st.booleans())


@st.composite
def raw_states(draw: st.DrawFn) -> Raw:
    raw: Raw = {}
    for owner in draw(st.sets(st.sampled_from([1, 2, 3]), max_size=3)):
        floor = draw(st.integers(0, 2))
        recs = draw(st.dictionaries(keys, stamps, max_size=5))
        recs = {k: v for k, v in recs.items() if v[0] > floor}
        raw[owner] = (floor, recs)
    return raw


def build(raw: Raw) -> DnsRecords:
    return DnsRecords({
        PeerName(o): OwnerRecords(f, {RecordKey(*k): Stamp(*v) for k, v in recs.items()})
        for o, (f, recs) in raw.items()
    })


def join(*raws: Raw) -> dict[int, tuple[int, dict[tuple[str, int, str], tuple[int, bool]]]]:
    """The expected merge, computed from the raw inputs alone."""
    result: Raw = {}
    for owner in {o for raw in raws for o in raw}:
        floor = max(raw[owner][0] for raw in raws if owner in raw)
        best: dict[tuple[str, int, str], tuple[int, bool]] = {}
        for raw in raws:
            for key, value in raw.get(owner, (0, {}))[1].items():
                if key not in best or value > best[key]:
                    best[key] = value
        kept = {k: v for k, v in best.items() if v[0] > floor}
        if floor or kept:
            result[owner] = (floor, kept)
    return result


def as_raw(records: DnsRecords) -> Raw:
    return {
        int(o): (h.floor, {(k.name, k.address, k.container): (s.version, s.tombstone)
                           for k, s in h.records.items()})
        for o, h in records.owners.items()
    }


def merged(*raws: Raw) -> DnsRecords:
    state = DnsRecords()
    for raw in raws:
        state.merge(build(raw))
    return state


@PROPERTY
@given(raw_states(), raw_states(), raw_states())
def test_merge_equals_the_join_in_any_order(a: Raw, b: Raw, c: Raw) -> None:
    expected = join(a, b, c)
    assert as_raw(merged(a, b, c)) == expected
    assert as_raw(merged(c, a, b)) == expected
    assert as_raw(merged(b, c, a)) == expected


@PROPERTY
@given(raw_states(), raw_states(), raw_states())
def test_merge_is_associative(a: Raw, b: Raw, c: Raw) -> None:
    left = build(a)
    left.merge(build(b))
    left.merge(build(c))
    bc = build(b)
    bc.merge(build(c))
    right = build(a)
    right.merge(bc)
    assert left == right


@PROPERTY
@given(raw_states())
def test_merge_is_idempotent(a: Raw) -> None:
    state = build(a)
    state.merge(build(a))
    assert state.merge(build(a)) is None
    assert as_raw(state) == join(a)


@PROPERTY
@given(raw_states(), raw_states())
def test_delta_carries_exactly_the_change(a: Raw, b: Raw) -> None:
    """Merging the delta into the old state gives the new state, and ``other``
    is never mutated."""
    state = merged(a)
    before = state.copy()
    other = build(b)
    other_before = other.copy()
    delta = state.merge(other)
    assert other == other_before
    if delta is None:
        assert state == before
        return
    before.merge(delta)
    assert before == state
    assert len(delta) <= len(other)


@PROPERTY
@given(raw_states())
def test_decode_inverts_encode(a: Raw) -> None:
    state = merged(a)
    assert DnsRecords.decode(state.encode()) == state


# An accepted wire form, written out (not made by the encoder under test), so the
# property below always meets its accepting branch.
SOME_RECORDS = pack([[1, 2, [["db.mesh.local.", 0x0A000002, "", 4, True],
                             ["web.mesh.local.", 0x0A000001, "c1", 3, False]]]])


@PROPERTY
@given(st.binary(max_size=200))
@example(pack([]))
@example(SOME_RECORDS)
def test_decode_of_garbage_raises_only_malformed(blob: bytes) -> None:
    """Garbage is refused with MalformedMessageError, nothing else; what is accepted
    is a state this router can relay: its encoding decodes to the same state."""
    try:
        state = DnsRecords.decode(blob)
    except MalformedMessageError:
        return
    assert DnsRecords.decode(state.encode()) == state


BAD_WIRES: list[Any] = [
    {"a": 1},
    [[1, 0]],
    [[1, 0, [["A.mesh.local.", 1, "", 1, False]]]],  # not canonical
    [[1, 0, [["a.mesh.local.", 1 << 32, "", 1, False]]]],  # not IPv4
    [[1, 3, [["a.mesh.local.", 1, "", 3, False]]]],  # at the floor
    [[1, 0, [["a.mesh.local.", 1, "", 0, False]]]],  # version 0
    [[1, 0, [["a.mesh.local.", 1, "x" * 129, 1, False]]]],  # container too long
    [[1, 0, [["a.mesh.local.", 1, "", 1, 1]]]],  # tombstone not bool
    [[1, 0, []], [1, 0, []]],  # owner twice
    [[1 << 48, 0, []]],  # not a peer name
    [[1, 0, [["a.mesh.local.", 1, "", 1, False], ["a.mesh.local.", 1, "", 2, True]]]],
]


@pytest.mark.parametrize("wire", BAD_WIRES)
def test_decode_refuses_invalid_records(wire: Any) -> None:
    with pytest.raises(MalformedMessageError):
        DnsRecords.decode(pack(wire))


def test_decode_caps_total_records() -> None:
    rows = [[f"n{i}.mesh.local.", 1, "", 1, False] for i in range(200_001)]
    with pytest.raises(MalformedMessageError):
        DnsRecords.decode(pack([[1, 0, rows]]))


def test_a_later_tombstone_beats_the_live_record_and_the_floor_blocks_resurrection() -> None:
    key = RecordKey("web.mesh.local.", 0x0A000001, "c1")
    live = DnsRecords({PeerName(1): OwnerRecords(0, {key: Stamp(1)})})
    dead = DnsRecords({PeerName(1): OwnerRecords(0, {key: Stamp(2, True)})})
    state = live.copy()
    assert state.merge(dead) == dead
    collected = DnsRecords({PeerName(1): OwnerRecords(2, {})})
    state.merge(collected)
    assert state.get(PeerName(1), key) is None
    assert state.merge(live) is None  # a stale live copy cannot come back
    assert state.get(PeerName(1), key) is None


def test_fingerprint_depends_on_content_not_order() -> None:
    k1 = RecordKey("a.mesh.local.", 1)
    k2 = RecordKey("b.mesh.local.", 2)
    one = DnsRecords({PeerName(1): OwnerRecords(0, {k1: Stamp(1), k2: Stamp(2)})})
    two = DnsRecords({PeerName(1): OwnerRecords(0, {k2: Stamp(2), k1: Stamp(1)})})
    three = DnsRecords({PeerName(1): OwnerRecords(0, {k2: Stamp(2, True), k1: Stamp(1)})})
    assert one.fingerprint(PeerName(1)) == two.fingerprint(PeerName(1))
    assert one.fingerprint(PeerName(1)) != three.fingerprint(PeerName(1))
    three.merge(one)
    assert three.fingerprint(PeerName(1)) != one.fingerprint(PeerName(1))


@PROPERTY
@given(st.binary(max_size=200))
@example(pack([[1, 0, 2, bytes(16)]]))
@example(pack([[1, -1, 2, bytes(16)]]))  # a version below range: refused
@example(pack([[1, 0, 2, bytes(17)]]))  # a fingerprint of 17 bytes: refused
def test_digest_decode_of_garbage_raises_only_malformed(blob: bytes) -> None:
    """Refused with MalformedMessageError only; what is accepted is in range."""
    from meshrouter.dns.digest import decode_full

    try:
        rows = decode_full(blob)
    except MalformedMessageError:
        return
    for floor, top, fingerprint in rows.values():
        assert 0 <= floor <= MAX_VERSION and 0 <= top <= MAX_VERSION
        assert 0 <= fingerprint < 1 << 128


def test_digests_find_what_each_side_lacks() -> None:
    from meshrouter.dns import digest

    key = RecordKey("web.mesh.local.", 1)
    ours = DnsRecords({PeerName(1): OwnerRecords(0, {key: Stamp(2, True)}),
                       PeerName(2): OwnerRecords(0, {key: Stamp(1)})})
    theirs = DnsRecords({PeerName(1): OwnerRecords(0, {key: Stamp(1)}),
                         PeerName(3): OwnerRecords(0, {key: Stamp(1)})})
    assert digest.summary(ours) != digest.summary(theirs)
    assert digest.newer_than(ours, digest.summary(theirs)) is None  # a summary names nothing
    sent = digest.newer_than(ours, digest.full(theirs))
    assert sent is not None and set(sent.owners) == {PeerName(1), PeerName(2)}
    assert digest.lacks_from(ours, digest.full(theirs))
    theirs.merge(sent)
    ours.merge(digest.newer_than(theirs, digest.full(ours)) or DnsRecords())
    assert ours == theirs and digest.summary(ours) == digest.summary(theirs)
    assert digest.newer_than(ours, digest.full(theirs)) is None
    assert not digest.lacks_from(ours, digest.full(theirs))
