"""The ring CRDT: merge laws over divergent replicas of one history, a strict codec,
conservation of the range, and the exact rules of heirs, reservations and reclaims."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.codec import pack
from meshrouter.errors import (
    ClusterMismatchError,
    IpamError,
    MalformedMessageError,
    ProtocolError,
)
from meshrouter.ipam.ring import (
    FREEZE_BUMP,
    MAX_CLUSTER_ID,
    MAX_ENCODED,
    MAX_ENTRIES,
    MAX_NOTES,
    Ack,
    Entry,
    Note,
    Ring,
)
from meshrouter.names import PeerName

PROPERTY = settings(deadline=None, max_examples=150)
FUZZ = settings(deadline=None, max_examples=300)

BASE_NAME = 0x5A0000000000
NAMES = [PeerName(BASE_NAME + i) for i in range(1, 7)]
A, B, C, D = NAMES[:4]
NET = 0x0A200000  # 10.32.0.0


# --- histories: every peer edits only its own replica; replicas merge now and then -----


def _own_live(ring: Ring, me: PeerName) -> list[Entry]:
    return [e for e, _ in ring.owned_by(me) if not e.frozen]


def _apply_random_edit(draw: st.DrawFn, replicas: dict[PeerName, Ring]) -> None:
    """One legal step of a cluster's life, applied to one peer's replica."""
    peers = sorted(replicas)
    me = draw(st.sampled_from(peers))
    ring = replicas[me]
    kind = draw(st.sampled_from(
        ["extend", "extend", "extend", "donate", "donate", "transfer", "reclaim", "reclaim",
         "reclaim", "note", "note", "merge", "merge", "merge", "merge", "take_over", "freeze"]
    ))
    others = [p for p in peers if p != me]
    if kind == "extend":
        mine = _own_live(ring, me)
        if mine:
            entry = draw(st.sampled_from(mine))
            end = ring.range_end(entry.token)
            ring.extend(entry.token, draw(st.integers(entry.token, end)), me)
    elif kind == "donate":
        roomy = [
            e for e in _own_live(ring, me)
            if max(e.reserved, e.token + 1) < ring.range_end(e.token)
        ]
        if roomy and others:
            entry = draw(st.sampled_from(roomy))
            low = max(entry.reserved, entry.token + 1)
            split_at = draw(st.integers(low, ring.range_end(entry.token) - 1))
            ring.donate(entry.token, split_at, draw(st.sampled_from(others)), me)
    elif kind == "transfer":
        mine = _own_live(ring, me)
        if mine and others:
            entry = draw(st.sampled_from(mine))
            ring.transfer(entry.token, draw(st.sampled_from(others)), me)
    elif kind == "reclaim":
        heir_of = [
            e for e, _ in ring.ordered()
            if e.owner != me and not e.frozen and ring.heir(e.token) == me
        ]
        if heir_of:
            ring.reclaim(draw(st.sampled_from(heir_of)).token, me)
    elif kind == "note":
        # As IpamCore._give_acks: acknowledge (a subset of) what we are heir of.
        old = ring.notes.get(me, Note()).acks
        acks: dict[int, Ack] = {}
        for entry, _end in ring.ordered():
            if entry.owner == me or entry.frozen or ring.heir(entry.token) != me:
                continue
            if draw(st.booleans()):
                acks[entry.token] = Ack(entry.owner, entry.version, entry.reserved)
            elif entry.token in old and old[entry.token].owner == entry.owner:
                acks[entry.token] = old[entry.token]
        ring.set_note(me, free=draw(st.integers(0, ring.end - ring.start)), acks=acks)
    elif kind == "merge":
        if others:
            ring.merge(replicas[draw(st.sampled_from(others))])
    elif kind == "take_over" and others:
        ring.take_over(draw(st.sampled_from(others)), me)
    elif kind == "freeze":
        # The owner reserves more, its heir learns of it and reclaims: a partial reclaim.
        mine = _own_live(ring, me)
        if mine:
            entry = draw(st.sampled_from(mine))
            end = ring.range_end(entry.token)
            ring.extend(entry.token, draw(st.integers(entry.token, end)), me)
            heir = ring.heir(entry.token)
            if heir is not None and heir in replicas:
                theirs = replicas[heir]
                theirs.merge(ring)
                current = theirs.entries[entry.token]
                live = current.owner != heir and not current.frozen
                if live and theirs.heir(entry.token) == heir:
                    theirs.reclaim(entry.token, heir)


@st.composite
def histories(draw: st.DrawFn) -> list[Ring]:
    """Replicas (one per peer) of one cluster after a random, legal history."""
    start = draw(st.sampled_from([0, NET, (1 << 32) - 256]))
    size = draw(st.sampled_from([4, 16, 64, 256]))
    founders = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    joiners = draw(st.lists(st.sampled_from(NAMES), max_size=2, unique=True))
    founded = Ring.found(start, start + size, founders)
    replicas = {name: founded.copy() for name in {*founders, *joiners}}
    for _ in range(draw(st.integers(0, 40))):
        _apply_random_edit(draw, replicas)
    return [founded, *replicas.values()]


@st.composite
def ring_triples(draw: st.DrawFn) -> tuple[Ring, Ring, Ring]:
    replicas = draw(histories())
    pick = st.sampled_from(replicas)
    return draw(pick).copy(), draw(pick).copy(), draw(pick).copy()


def merged(*rings: Ring) -> Ring:
    result = rings[0].copy()
    for ring in rings[1:]:
        result.merge(ring)
    return result


def assert_conserved(ring: Ring) -> None:
    tokens = ring.tokens()
    assert tokens == sorted(ring.entries)
    assert tokens[0] == ring.start
    cursor = ring.start
    for entry, end in ring.ordered():
        assert entry.token == cursor
        assert entry.token < end <= ring.end
        cursor = end
    assert cursor == ring.end


# --- merge laws ------------------------------------------------------------------------


@PROPERTY
@given(ring_triples())
def test_merge_is_commutative(rings: tuple[Ring, Ring, Ring]) -> None:
    a, b, _ = rings
    assert merged(a, b) == merged(b, a)
    assert merged(a, b).fingerprint() == merged(b, a).fingerprint()


@PROPERTY
@given(ring_triples())
def test_merge_is_associative(rings: tuple[Ring, Ring, Ring]) -> None:
    a, b, c = rings
    assert merged(merged(a, b), c) == merged(a, merged(b, c))


@PROPERTY
@given(ring_triples())
def test_merge_is_idempotent(rings: tuple[Ring, Ring, Ring]) -> None:
    a, b, _ = rings
    once = merged(a, b)
    twice = merged(once, b)
    assert twice == once
    assert merged(a, a) == a
    again = once.copy()
    assert not again.merge(b)  # nothing new: merge reports no change
    assert again == once


@PROPERTY
@given(ring_triples())
def test_merge_reports_change_exactly_when_something_changed(
    rings: tuple[Ring, Ring, Ring],
) -> None:
    a, b, _ = rings
    target = a.copy()
    changed = target.merge(b)
    assert changed == (target != a)


@PROPERTY
@given(ring_triples())
def test_merge_never_mutates_its_argument(rings: tuple[Ring, Ring, Ring]) -> None:
    a, b, _ = rings
    before = b.encode()
    snapshot = b.copy()
    target = a.copy()
    target.merge(b)
    assert b.encode() == before
    assert b == snapshot
    # Edits of the merged ring must not leak into the argument through shared objects.
    for name in sorted(target.owners()):
        for entry in _own_live(target, name):
            target.extend(entry.token, target.range_end(entry.token), name)
        target.set_note(name, free=12345, acks={})
    assert b.encode() == before
    assert b == snapshot


@PROPERTY
@given(ring_triples())
def test_merge_keeps_the_highest_ranked_entry_per_token(rings: tuple[Ring, Ring, Ring]) -> None:
    a, b, _ = rings
    result = merged(a, b)
    assert set(result.entries) == set(a.entries) | set(b.entries)
    for token, entry in result.entries.items():
        candidates = [r.entries[token] for r in (a, b) if token in r.entries]
        assert entry == max(candidates, key=lambda e: e.rank())


def documented_winner(x: Entry, y: Entry) -> Entry:
    """The merge rule as documented (ring.py), written out without ``Entry.rank``:
    the higher version wins; on equal versions a frozen entry beats a live one, then
    the higher owner name, then the larger reservation, then an entry with an origin
    beats one without and the larger origin (token, version) wins."""
    if x.version != y.version:
        return x if x.version > y.version else y
    if x.frozen != y.frozen:
        return x if x.frozen else y
    if x.owner != y.owner:
        return x if x.owner > y.owner else y
    if x.reserved != y.reserved:
        return x if x.reserved > y.reserved else y
    if x.origin != y.origin:
        if x.origin is None or y.origin is None:
            return y if x.origin is None else x
        return x if x.origin > y.origin else y
    return x


@PROPERTY
@given(ring_triples())
def test_merge_keeps_the_documented_winner_per_token(rings: tuple[Ring, Ring, Ring]) -> None:
    a, b, _ = rings
    for result in (merged(a, b), merged(b, a)):
        for token, entry in result.entries.items():
            if token in a.entries and token in b.entries:
                assert entry == documented_winner(a.entries[token], b.entries[token])
            else:
                assert entry == (a.entries.get(token) or b.entries[token])
        for name, note in result.notes.items():
            if name in a.notes and name in b.notes:
                # Notes: the higher version wins (ties are broken by free, then acks).
                mine, theirs = a.notes[name], b.notes[name]
                if mine.version != theirs.version:
                    assert note == (mine if mine.version > theirs.version else theirs)


def test_the_higher_version_wins_whatever_else_differs() -> None:
    old = Entry(16, D, 3, 40, frozen=True, origin=(0, 9))  # above on every tie-break
    new = Entry(16, A, 4, 16)
    ours, theirs = _ring(Entry(0, B, 0, 0), old), _ring(Entry(0, B, 0, 0), new)
    for target, other in ((ours.copy(), theirs), (theirs.copy(), ours)):
        target.merge(other)
        assert target.entries[16] == new
    high, low = Note(5, 0, {}), Note(4, 99, {0: Ack(B, 9, 9)})
    ours.notes[C], theirs.notes[C] = low, high
    assert merged(ours, theirs).notes[C] == high == merged(theirs, ours).notes[C]


@pytest.mark.parametrize(("x", "y"), [
    (Entry(16, A, 2, 16, frozen=True), Entry(16, D, 2, 40)),
    (Entry(16, D, 2, 16), Entry(16, A, 2, 40)),
    (Entry(16, A, 2, 40), Entry(16, A, 2, 16, origin=(0, 1))),
    (Entry(16, A, 2, 16, origin=(0, 2)), Entry(16, A, 2, 16, origin=(0, 1))),
    (Entry(16, A, 2, 16, origin=(0, 1)), Entry(16, A, 2, 16)),
])
def test_equal_versions_follow_the_fixed_tie_break(x: Entry, y: Entry) -> None:
    # x beats y by the first tie-break on which they differ (frozen, owner, reserved,
    # origin), whichever side merges.
    ours, theirs = _ring(Entry(0, B, 0, 0), x), _ring(Entry(0, B, 0, 0), y)
    assert merged(ours, theirs).entries[16] == x == merged(theirs, ours).entries[16]


# --- conservation ----------------------------------------------------------------------


@PROPERTY
@given(histories())
def test_every_replica_and_every_merge_covers_the_range_exactly(replicas: list[Ring]) -> None:
    for ring in replicas:
        assert_conserved(ring)
    everything = merged(*replicas)
    assert_conserved(everything)
    for ring in replicas:
        assert_conserved(merged(ring, everything))


# --- codec -----------------------------------------------------------------------------


@PROPERTY
@given(histories())
def test_decode_encode_roundtrip(replicas: list[Ring]) -> None:
    for ring in [*replicas, merged(*replicas)]:
        decoded = Ring.decode(ring.encode())
        assert decoded == ring
        assert decoded.encode() == ring.encode()
        assert decoded.fingerprint() == ring.fingerprint()
        assert Ring.from_wire(ring.to_wire()) == ring


def _decode_or_refuse(data: bytes) -> None:
    try:
        ring = Ring.decode(data)
    except MalformedMessageError:
        return
    assert_conserved(ring)
    assert Ring.decode(ring.encode()) == ring


@FUZZ
@given(st.binary(max_size=300))
def test_decode_of_random_bytes_raises_only_malformed(data: bytes) -> None:
    _decode_or_refuse(data)


msgpack_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.sampled_from([0, 1, NET, NET + 5, BASE_NAME + 1, 1 << 32, (1 << 48) - 1, 1 << 48, -1])
    | st.floats(allow_nan=False)
    | st.text(max_size=70)
    | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=7)
    | st.dictionaries(st.integers(0, 5) | st.text(max_size=3), children, max_size=4),
    max_leaves=40,
)


@FUZZ
@given(msgpack_values)
def test_decode_of_random_structures_raises_only_malformed(value: Any) -> None:
    _decode_or_refuse(pack(value))


def _paths(value: Any, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    found = [prefix]
    if isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(_paths(item, (*prefix, i)))
    return found


def _replace(value: Any, path: tuple[int, ...], new: Any) -> Any:
    if not path:
        return new
    copy = list(value)
    copy[path[0]] = _replace(copy[path[0]], path[1:], new)
    return copy


@FUZZ
@given(histories(), st.data())
def test_decode_of_corrupted_rings_raises_only_malformed(
    replicas: list[Ring], data: st.DataObject
) -> None:
    wire = merged(*replicas).to_wire()
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(wire)))
        wire = _replace(wire, path, data.draw(msgpack_values))
    _decode_or_refuse(pack(wire))


def _wire(entries: list[list[Any]], notes: list[list[Any]] | None = None,
          members: list[int] | None = None, cluster_id: str = "c", end: int = 1 << 17) -> bytes:
    return pack([0, end, cluster_id, members if members is not None else [A], entries,
                 notes if notes is not None else []])


def test_caps_too_many_entries_refused() -> None:
    at_cap = [[t, A, 0, t, False, None] for t in range(MAX_ENTRIES)]
    assert len(Ring.decode(_wire(at_cap)).entries) == MAX_ENTRIES
    over = [*at_cap, [MAX_ENTRIES, A, 0, MAX_ENTRIES, False, None]]
    with pytest.raises(MalformedMessageError, match="more than"):
        Ring.decode(_wire(over))


def test_caps_too_many_notes_members_or_acks_refused() -> None:
    start = [[0, A, 0, 0, False, None]]
    notes = [[n, 0, 0, []] for n in range(MAX_NOTES + 1)]
    with pytest.raises(MalformedMessageError, match="more than"):
        Ring.decode(_wire(start, notes=notes))
    with pytest.raises(MalformedMessageError, match="more than"):
        Ring.decode(_wire(start, members=list(range(MAX_NOTES + 1))))
    acks = [[t, B, 0, t] for t in range(MAX_ENTRIES + 1)]
    with pytest.raises(MalformedMessageError, match="more than"):
        Ring.decode(_wire(start, notes=[[A, 1, 0, acks]]))


def test_caps_cluster_id_and_encoded_size_refused() -> None:
    start = [[0, A, 0, 0, False, None]]
    Ring.decode(_wire(start, cluster_id="x" * MAX_CLUSTER_ID))
    with pytest.raises(MalformedMessageError, match="too long"):
        Ring.decode(_wire(start, cluster_id="x" * (MAX_CLUSTER_ID + 1)))
    with pytest.raises(MalformedMessageError, match="exceeds"):
        Ring.decode(b"\x00" * (MAX_ENCODED + 1))


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ([], "no entry at the start"),
        ([[1, A, 0, 1, False, None]], "no entry at the start"),
        ([[0, A, 0, 0, False, None], [0, B, 0, 0, False, None]], "duplicate token"),
        ([[0, A, 0, 0, False, None], [1 << 17, B, 0, 1 << 17, False, None]], "out of range"),
        ([[0, A, 0, 1 << 18, False, None]], "out of range"),
        ([[0, A, 0, 0, 1, None]], "frozen"),
        ([[0, A, -1, 0, False, None]], "out of range"),
        ([[0, 1 << 48, 0, 0, False, None]], "peer name"),
        ([[0, True, 0, 0, False, None]], "peer name"),
        ([[0, A, 0, 0, False, [0]]], "origin"),
        ([[0, A, 0, 0, False]], "6 fields"),
    ],
)
def test_decode_refuses_invalid_entries(entries: list[list[Any]], match: str) -> None:
    with pytest.raises(MalformedMessageError, match=match):
        Ring.decode(_wire(entries))


def test_decode_refuses_invalid_ranges_and_notes() -> None:
    start = [[0, A, 0, 0, False, None]]
    with pytest.raises(MalformedMessageError, match="ring end"):
        Ring.decode(pack([10, 10, "c", [A], [[10, A, 0, 10, False, None]], []]))
    with pytest.raises(MalformedMessageError, match="ring end"):
        Ring.decode(pack([0, (1 << 32) + 1, "c", [A], start, []]))
    with pytest.raises(MalformedMessageError, match="duplicate note"):
        Ring.decode(_wire(start, notes=[[A, 0, 0, []], [A, 1, 0, []]]))
    with pytest.raises(MalformedMessageError, match="ack"):
        Ring.decode(_wire(start, notes=[[A, 0, 0, [[0, B, 0]]]]))
    with pytest.raises(MalformedMessageError, match="6 fields"):
        Ring.decode(pack([0, 64, "c", [A], start]))


# --- founding --------------------------------------------------------------------------


def test_found_splits_the_range_evenly_in_name_order() -> None:
    ring = Ring.found(NET, NET + 64, [C, A, B, A])
    assert ring.members == (A, B, C)
    assert ring.entries == {
        NET: Entry(NET, A, 0, NET),
        NET + 21: Entry(NET + 21, B, 0, NET + 21),
        NET + 42: Entry(NET + 42, C, 0, NET + 42),
    }
    assert ring.notes == {}
    assert_conserved(ring)
    single = Ring.found(NET, NET + 64, [B])
    assert single.entries == {NET: Entry(NET, B, 0, NET)}


def test_found_cluster_id_is_deterministic_and_depends_on_everything() -> None:
    base = Ring.found(NET, NET + 64, [A, B])
    assert Ring.found(NET, NET + 64, [B, A]).cluster_id == base.cluster_id
    assert Ring.found(NET, NET + 64, [A, B], b"").cluster_id == base.cluster_id
    assert len(base.cluster_id) == 16
    others = {
        Ring.found(NET, NET + 64, [A, B], b"salt").cluster_id,
        Ring.found(NET, NET + 64, [A, B], b"other salt").cluster_id,
        Ring.found(NET, NET + 64, [A, C]).cluster_id,
        Ring.found(NET, NET + 64, [A]).cluster_id,
        Ring.found(NET, NET + 128, [A, B]).cluster_id,
        Ring.found(NET + 64, NET + 128, [A, B]).cluster_id,
    }
    assert base.cluster_id not in others
    assert len(others) == 6


def test_found_refuses_no_members_or_too_many() -> None:
    with pytest.raises(IpamError, match="at least one"):
        Ring.found(NET, NET + 4, [])
    with pytest.raises(IpamError, match="cannot share"):
        Ring.found(NET, NET + 2, [A, B, C])


# --- heirs and reservations ------------------------------------------------------------


def _ring(*entries: Entry, start: int = 0, end: int = 64) -> Ring:
    return Ring(start, end, "test", (A, B, C, D), {e.token: e for e in entries})


def test_heir_skips_frozen_and_same_owner_entries() -> None:
    ring = _ring(
        Entry(0, A, 0, 0),
        Entry(10, A, 0, 10),
        Entry(20, B, 0, 20, frozen=True),
        Entry(30, C, 0, 30),
        Entry(40, C, 0, 40),
    )
    assert ring.heir(0) == C  # wraps around to the last entry
    assert ring.heir(10) == C  # skips A's own entry at 0, then wraps
    assert ring.heir(20) == A
    assert ring.heir(30) == A  # skips B's frozen entry
    assert ring.heir(40) == A  # skips C's own entry and B's frozen one


def test_heir_is_none_for_a_single_owner() -> None:
    assert Ring.found(0, 64, [A]).heir(0) is None
    two = _ring(Entry(0, A, 0, 0), Entry(32, A, 0, 32))
    assert two.heir(0) is None
    assert two.heir(32) is None
    # Frozen entries of others do not count either.
    frozen = _ring(Entry(0, A, 0, 0), Entry(32, B, 5, 40, frozen=True))
    assert frozen.heir(0) is None


def test_effective_reserved_without_heir_is_the_reservation() -> None:
    ring = Ring.found(0, 64, [A])
    ring.extend(0, 10, A)
    assert ring.effective_reserved(0) == 10
    ring.extend(0, 1000, A)  # clamped to the entry
    assert ring.entries[0].reserved == 64
    assert ring.effective_reserved(0) == 64


def test_effective_reserved_needs_the_heirs_ack() -> None:
    ring = Ring.found(0, 64, [A, B])
    ring.extend(32, 40, B)
    assert ring.entries[32] == Entry(32, B, 1, 40)
    assert ring.heir(32) == A
    assert ring.effective_reserved(32) == 32  # requested, not acknowledged
    ring.set_note(C, acks={32: Ack(B, 1, 40)})  # not the heir: does not count
    assert ring.effective_reserved(32) == 32
    ring.set_note(A, acks={32: Ack(C, 1, 40)})  # acknowledges another owner
    assert ring.effective_reserved(32) == 32
    ring.set_note(A, acks={32: Ack(B, 1, 36)})  # an older, smaller reservation
    assert ring.effective_reserved(32) == 36
    ring.set_note(A, acks={32: Ack(B, 1, 40)})
    assert ring.effective_reserved(32) == 40
    ring.extend(32, 48, B)  # the new part waits for its own ack
    assert ring.effective_reserved(32) == 40
    ring.set_note(A, acks={32: Ack(B, 2, 60)})  # never beyond what the owner reserved
    assert ring.effective_reserved(32) == 48


def test_set_note_bumps_version_only_on_change() -> None:
    ring = Ring.found(0, 64, [A, B])
    assert not ring.set_note(A, free=0, acks={})
    assert A not in ring.notes
    assert ring.set_note(A, free=5)
    assert ring.notes[A] == Note(1, 5, {})
    assert not ring.set_note(A, free=5)
    assert ring.set_note(A, acks={32: Ack(B, 0, 32)})
    assert ring.notes[A] == Note(2, 5, {32: Ack(B, 0, 32)})


# --- reclaim ---------------------------------------------------------------------------


def _two_owners(reserved: int, acked: int | None) -> Ring:
    """A owns [0, 32), B owns [32, 64) and asked to reserve up to ``reserved``."""
    ring = Ring.found(0, 64, [A, B])
    if reserved > 32:
        ring.extend(32, reserved, B)
    if acked is not None:
        ring.set_note(A, acks={32: Ack(B, ring.entries[32].version, acked)})
    return ring


def test_reclaim_freezes_at_the_floor_and_creates_the_new_token() -> None:
    ring = _two_owners(40, 40)
    assert ring.reclaim_floor(32) == 40
    assert ring.reclaim(32, A)
    assert ring.entries[32] == Entry(32, B, 1 + FREEZE_BUMP, 40, frozen=True)
    assert ring.entries[40] == Entry(40, A, 0, 40)
    assert ring.tokens() == [0, 32, 40]
    assert ring.range_end(32) == 40
    assert_conserved(ring)
    # The frozen entry no longer has an heir's say: it can never extend.
    with pytest.raises(IpamError, match="frozen"):
        ring.extend(32, 50, B)


def test_reclaim_floor_is_the_highest_reservation_anyone_knows() -> None:
    ring = _two_owners(36, 36)
    ring.set_note(C, acks={32: Ack(B, 3, 44)})  # a former heir acknowledged more
    ring.set_note(D, acks={32: Ack(C, 3, 60)})  # about another owner: ignored
    assert ring.reclaim_floor(32) == 44
    assert ring.reclaim(32, A)
    assert ring.entries[32].reserved == 44
    assert ring.entries[44] == Entry(44, A, 0, 44)
    # Requested but unacknowledged space also stays with the old owner.
    unacked = _two_owners(50, 40)
    assert unacked.reclaim_floor(32) == 50


def test_reclaim_takes_the_whole_entry_when_nothing_is_reserved() -> None:
    ring = _two_owners(32, None)
    assert ring.reclaim_floor(32) == 32
    assert ring.reclaim(32, A)
    assert ring.entries[32] == Entry(32, A, FREEZE_BUMP, 32)
    assert ring.tokens() == [0, 32]
    assert ring.owners() == {A}


def test_reclaim_returns_false_when_everything_is_reserved() -> None:
    ring = _two_owners(64, 64)
    before = ring.copy()
    assert not ring.reclaim(32, A)
    assert ring == before


def test_reclaim_only_by_the_heir_of_a_live_foreign_entry() -> None:
    ring = Ring.found(0, 90, [A, B, C])
    with pytest.raises(IpamError, match="heir"):
        ring.reclaim(60, A)  # B is C's heir
    with pytest.raises(IpamError, match="heir"):
        ring.reclaim(0, A)  # our own
    ring.extend(30, 40, B)
    ring.set_note(A, acks={30: Ack(B, 1, 40)})
    assert ring.reclaim(30, A)
    with pytest.raises(IpamError, match="heir"):
        ring.reclaim(30, A)  # already frozen


@PROPERTY
@given(st.lists(st.sampled_from(["extend", "donate", "transfer"]), min_size=1, max_size=12),
       st.booleans())
def test_reclaim_outranks_later_edits_of_the_old_owner(edits: list[str], whole: bool) -> None:
    base = _two_owners(32 if whole else 40, None if whole else 40)
    heirs_copy = base.copy()
    assert heirs_copy.reclaim(32, A)
    reclaimed = heirs_copy.entries[32]
    owners_copy = base.copy()
    for edit in edits:
        entry = owners_copy.entries[32]
        if entry.owner != B:
            break
        end = owners_copy.range_end(32)
        if edit == "extend" and entry.reserved < end:
            owners_copy.extend(32, entry.reserved + 1, B)
        elif edit == "donate" and max(entry.reserved, 33) < end:
            owners_copy.donate(32, end - 1, C, B)
        elif edit == "transfer":
            owners_copy.transfer(32, C, B)
    for result in (merged(owners_copy, heirs_copy), merged(heirs_copy, owners_copy)):
        assert result.entries[32] == reclaimed
        assert_conserved(result)


def test_freeze_bump_bounds_the_edits_it_outranks() -> None:
    base = _two_owners(40, 40)
    heirs_copy = base.copy()
    heirs_copy.reclaim(32, A)
    late = base.copy()
    late.entries[32] = Entry(32, B, 1 + FREEZE_BUMP - 1, 50)  # 2**32 - 1 edits later
    assert merged(late, heirs_copy).entries[32] == heirs_copy.entries[32]


def test_take_over_takes_frozen_entries_too() -> None:
    ring = _two_owners(40, 40)
    ring.reclaim(32, A)  # B keeps [32, 40) frozen
    ring.donate(40, 50, B, A)  # and gets [50, 64) back later
    taken = ring.take_over(B, C)
    assert taken == (40 - 32) + (64 - 50)
    assert ring.entries[32] == Entry(32, C, 1 + 2 * FREEZE_BUMP, 32)
    assert ring.entries[50] == Entry(50, C, FREEZE_BUMP, 50)
    assert B not in ring.owners()
    assert ring.take_over(B, C) == 0
    assert_conserved(ring)


# --- cluster identity ------------------------------------------------------------------


def test_same_cluster_says_what_to_do_for_another_range() -> None:
    ours = Ring.found(NET, NET + 64, [A])
    theirs = Ring.found(NET, NET + 256, [A])
    with pytest.raises(ClusterMismatchError) as info:
        ours.same_cluster(theirs)
    message = str(info.value)
    assert "10.32.0.0/24" in message and "10.32.0.0/26" in message
    assert "--ipalloc-range" in message
    assert isinstance(info.value, ProtocolError)
    with pytest.raises(ClusterMismatchError, match="--ipalloc-range"):
        ours.merge(theirs)


def test_same_cluster_says_what_to_do_for_another_cluster() -> None:
    ours = Ring.found(NET, NET + 64, [A, B])
    theirs = Ring.found(NET, NET + 64, [A, B], b"another vote")
    before = ours.copy()
    with pytest.raises(ClusterMismatchError) as info:
        ours.merge(theirs)
    message = str(info.value)
    assert ours.cluster_id in message and theirs.cluster_id in message
    assert "meshrouter reset" in message and "--data-dir" in message
    assert "5a:00:00:00:00:01" in message
    assert ours == before
    ours.same_cluster(ours.copy())  # no error for the same cluster


# --- donations -------------------------------------------------------------------------


def test_donate_records_its_origin_and_settles_on_the_donor_heirs_ack() -> None:
    ring = Ring.found(0, 64, [A, B])
    ring.extend(0, 4, A)
    ring.set_note(B, acks={0: Ack(A, 1, 4)})
    new = ring.donate(0, 20, C, A)
    assert new == Entry(20, C, 0, 20, origin=(0, 2))
    assert ring.entries[20] == new
    assert ring.entries[0] == Entry(0, A, 2, 4)
    assert ring.range_end(0) == 20
    assert_conserved(ring)
    assert ring.heir(0) == B
    assert not ring.origin_settled(20)  # B's ack is of version 1, before the split
    ring.set_note(D, acks={0: Ack(A, 1, 4)})
    assert not ring.origin_settled(20)
    ring.set_note(B, acks={0: Ack(A, 2, 4)})
    assert ring.origin_settled(20)
    later = ring.copy()
    later.set_note(B, acks={0: Ack(A, 7, 4)})
    assert later.origin_settled(20)
    assert ring.origin_settled(0) and ring.origin_settled(32)  # founding entries


def test_a_split_settles_when_its_donor_is_reclaimed_by_a_heir_that_knew_it() -> None:
    # Campaign seed 4 (sim test): A split its entry for C, then A went away and its
    # heir B reclaimed (froze) it.  Nobody acknowledges a frozen entry, so C's origin
    # waited for an ack that could never come, and C's space stayed unusable.
    ring = Ring.found(0, 64, [A, B])
    ring.extend(0, 4, A)
    ring.set_note(B, acks={0: Ack(A, 1, 4)})
    ring.donate(0, 20, C, A)  # A's entry at version 2, C's origin (0, 2)
    knew = ring.copy()
    assert knew.reclaim(0, B)  # B's view has the split: frozen at 2 + FREEZE_BUMP
    knew.set_note(B, acks={})  # the frozen entry's ack leaves B's note
    assert knew.entries[0].frozen and knew.origin_settled(20)
    missed = Ring.found(0, 64, [A, B])  # B reclaims from a view without the split
    missed.extend(0, 4, A)
    missed.set_note(B, acks={0: Ack(A, 1, 4)})
    assert missed.reclaim(0, B)  # frozen at 1 + FREEZE_BUMP
    missed.set_note(B, acks={})
    missed.merge(ring)
    assert missed.entries[0].frozen
    assert not missed.origin_settled(20), "B may have handed out addresses past the split"


def test_donation_by_a_sole_owner_makes_the_recipient_its_heir() -> None:
    ring = Ring.found(0, 64, [A])
    ring.donate(0, 32, B, A)
    assert ring.heir(0) == B
    assert not ring.origin_settled(32)  # B is now A's heir and must learn of the split
    alone = Ring.found(0, 64, [A])
    alone.donate(0, 32, A, A)  # a split of one's own range: still nobody else
    assert alone.heir(0) is None
    assert alone.origin_settled(32)


def test_donate_inside_the_reservation_shortens_it() -> None:
    ring = Ring.found(0, 64, [A, B])
    ring.extend(0, 10, A)
    ring.set_note(B, acks={0: Ack(A, 1, 10)})
    assert ring.effective_reserved(0) == 10
    new = ring.donate(0, 5, C, A)
    assert new == Entry(5, C, 0, 5, origin=(0, 2))
    assert ring.entries[0] == Entry(0, A, 2, 5)
    # The old ack no longer reaches past the split, for use or for reclaim.
    assert ring.effective_reserved(0) == 5
    assert ring.reclaim_floor(0) == 5
    assert ring.reclaim_floor(5) == 5


def test_donate_refuses_foreign_space() -> None:
    ring = Ring.found(0, 64, [A, B])
    ring.extend(0, 10, A)
    with pytest.raises(IpamError, match="cannot donate"):
        ring.donate(0, 32, C, A)  # B's
    with pytest.raises(IpamError, match="cannot donate"):
        ring.donate(0, 0, C, A)
    with pytest.raises(IpamError, match="not ours"):
        ring.donate(32, 40, C, A)


# --- regressions of fixed bugs ---


def test_merge_of_notes_that_tie_on_version_and_free() -> None:
    # Reachable from any peer that sends such a ring (it decodes fine), and by a peer
    # restarted without its data dir whose fresh note reuses a version number.
    ours = Ring.found(0, 64, [A, B])
    theirs = ours.copy()
    ours.set_note(A, acks={32: Ack(B, 1, 40)})
    theirs.set_note(A, acks={32: Ack(B, 1, 41)})
    decoded = Ring.decode(theirs.encode())
    assert merged(ours, decoded) == merged(decoded, ours)
