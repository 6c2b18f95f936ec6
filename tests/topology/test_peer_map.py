"""PeerRecord / PeerMap: the merge is a CRDT and the codec is strict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.codec import pack
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName
from meshrouter.topology.peer_map import PeerMap, decode_digest
from meshrouter.topology.records import (
    MAX_CONNECTIONS_PER_RECORD,
    ConnectionRecord,
    PeerRecord,
    encode_record_bytes,
    normalize_connections,
    record_beats,
    record_to_wire,
)
from tests.conftest import assert_merge_laws, assert_reencodes, decoded_or_none, merged

from .builders import conn, record

PROPERTY = settings(deadline=None, max_examples=200)
NAMES = [1, 2, 3, 4]


@st.composite
def peer_records(draw: st.DrawFn, name: int | None = None) -> PeerRecord:
    owner = draw(st.sampled_from(NAMES)) if name is None else name
    peers = draw(st.sets(st.sampled_from([n for n in [*NAMES, 2**48 - 1] if n != owner])))
    connections = tuple(
        ConnectionRecord(
            peer=PeerName(p),
            address=draw(st.sampled_from(["10.0.0.1:6783", "[fd00::1]:6783", "x"])),
            outbound=draw(st.booleans()),
            established=draw(st.booleans()),
        )
        for p in sorted(peers)
    )
    return PeerRecord(
        name=PeerName(owner),
        nickname=draw(st.sampled_from(["a", "b", "é"])),
        uid=draw(st.integers(0, 2)),
        version=draw(st.integers(0, 2)),
        short_id=draw(st.none() | st.integers(0, 2)),
        listen_port=draw(st.sampled_from([0, 6783])),
        connections=connections,
    )


peer_maps = st.lists(peer_records(), max_size=6).map(lambda rs: PeerMap.of(*rs))


@PROPERTY
@given(peer_maps, peer_maps, peer_maps)
def test_merge_keeps_the_crdt_laws(a: PeerMap, b: PeerMap, c: PeerMap) -> None:
    assert_merge_laws(a, b, c)


@PROPERTY
@given(peer_maps, peer_maps)
def test_merge_keeps_the_greatest_precedence(a: PeerMap, b: PeerMap) -> None:
    result = merged(a, b)
    for name, winner in result.records.items():
        candidates = [m.records[name] for m in (a, b) if name in m.records]
        assert winner.precedence() == max(r.precedence() for r in candidates)


@PROPERTY
@given(peer_maps, peer_maps)
def test_delta_is_exactly_what_changed(a: PeerMap, b: PeerMap) -> None:
    before = a.copy()
    delta = a.merge(b)
    expected = {n: r for n, r in a.records.items() if before.records.get(n) != r}
    assert (delta.records if delta is not None else {}) == expected
    assert delta is None or len(delta) > 0
    for name, rec in expected.items():
        assert b.records[name] is rec


@PROPERTY
@given(peer_maps)
def test_decode_encode_roundtrip(a: PeerMap) -> None:
    assert PeerMap.decode(a.encode()) == a
    assert PeerMap.decode(a.encode()).encode() == a.encode()


@PROPERTY
@given(st.binary(max_size=512))
def test_arbitrary_bytes_are_refused_or_reencode(data: bytes) -> None:
    check_decoders(data)


def encode_digest_entries(digest: Mapping[PeerName, tuple[int, int]]) -> bytes:
    """The digest's wire form, written here: ``{name: [version, uid]}`` by name."""
    return pack({name: [version, uid] for name, (version, uid) in sorted(digest.items())})


def check_decoders(data: bytes) -> None:
    """Each decoder refuses with a ProtocolError or gives a value that re-encodes."""
    peer_map = decoded_or_none(PeerMap.decode, data)
    if peer_map is not None:
        assert_reencodes(PeerMap.decode, PeerMap.encode, peer_map)
    digest = decoded_or_none(decode_digest, data)
    if digest is not None:
        assert_reencodes(decode_digest, encode_digest_entries, digest)


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=5)
    | st.binary(max_size=5) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(
        st.integers(0, 5) | st.text(max_size=2), inner, max_size=4),
    max_leaves=40,
)


@PROPERTY
@given(msgpack_values)
def test_arbitrary_msgpack_is_refused_or_reencodes(value: Any) -> None:
    check_decoders(pack(value))


# Digests that are nearly valid, so that fuzzing often decodes one.
near_digests = st.dictionaries(
    st.integers(-1, 2**48) | st.text(max_size=2),
    st.lists(st.integers(-1, 2**64 - 1) | st.booleans(), max_size=3)
    | st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)).map(list),
    max_size=4,
)


@PROPERTY
@given(near_digests)
def test_near_digests_are_refused_or_reencode(value: Any) -> None:
    check_decoders(pack(value))


@PROPERTY
@given(peer_records(), st.data())
def test_mutated_record_fields_are_rejected_or_valid(rec: PeerRecord, data: st.DataObject) -> None:
    """One field of a record, or of one of its connections, replaced by any value."""
    # Held while the mutant is decoded, as a router holds the records it knows.
    original = PeerMap.decode(pack([record_to_wire(rec)]))
    wire: list[Any] = record_to_wire(rec)
    target = wire
    if wire[6] and data.draw(st.booleans()):
        target = data.draw(st.sampled_from(wire[6]))
    index = data.draw(st.integers(0, len(target) - 1))
    target[index] = data.draw(msgpack_values)
    decoded = decoded_or_none(PeerMap.decode, pack([wire]))
    assert original.records[rec.name] == rec
    if decoded is None:
        return
    assert_reencodes(PeerMap.decode, PeerMap.encode, decoded)
    # One record, one encoding: what is accepted is exactly what we would send.
    (accepted,) = decoded.records.values()
    assert encode_record_bytes(accepted) == pack(wire)


# A value of every msgpack type, and the edges of the ranges the decoder checks.
TYPE_CONFUSIONS: list[Any] = [None, True, False, 0, 1, -1, 1.5, "", "a", b"a", [], {},
                              2**48, 2**64 - 1, "x" * 300]


def test_every_field_swapped_for_every_type_is_refused_or_canonical() -> None:
    """Exhaustive over fields (of the record and of a connection) and value types:
    a decoder that accepts a value and normalises it (bytes for a string, 1 for
    True) would let two encodings mean one record."""
    base = record(1, connections=[conn(2), conn(3)])
    for in_connection in (False, True):
        for index in range(4 if in_connection else 7):
            for value in TYPE_CONFUSIONS:
                wire: list[Any] = record_to_wire(base)
                (wire[6][0] if in_connection else wire)[index] = value
                decoded = decoded_or_none(PeerMap.decode, pack([wire]))
                if decoded is None:
                    continue
                assert_reencodes(PeerMap.decode, PeerMap.encode, decoded)
                (accepted,) = decoded.records.values()
                assert encode_record_bytes(accepted) == pack(wire), (in_connection, index, value)


def _encode_one(wire: list[Any]) -> bytes:
    return pack([wire])


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda w: w.__setitem__(0, -1), "invalid peer name"),
        (lambda w: w.__setitem__(0, 2**48), "invalid peer name"),
        (lambda w: w.__setitem__(1, "x" * 256), "nickname"),
        (lambda w: w.__setitem__(2, True), "UID"),
        (lambda w: w.__setitem__(3, -1), "version"),
        (lambda w: w.__setitem__(3, 1.5), "version"),
        (lambda w: w.__setitem__(4, 4096), "short ID"),
        (lambda w: w.__setitem__(5, 65536), "listen port"),
        (lambda w: w.__setitem__(6, [[3, "a", True, True], [2, "a", True, True]]), "sorted"),
        (lambda w: w.__setitem__(6, [[2, "a", True, True], [2, "b", True, True]]), "sorted"),
        (lambda w: w.__setitem__(6, [[1, "a", True, True]]), "itself"),
        (lambda w: w.__setitem__(6, [[2, "a" * 129, True, True]]), "address"),
        (lambda w: w.__setitem__(6, [[2, "a", 1, True]]), "outbound"),
        (lambda w: w.__setitem__(6, [[2, "a", True]]), "fields"),
        (lambda w: w.append(0), "fields"),
    ],
)
def test_invalid_records_are_refused_with_a_reason(mutate: Any, reason: str) -> None:
    wire = record_to_wire(record(1, connections=[conn(2)]))
    mutate(wire)
    with pytest.raises(MalformedMessageError, match=reason):
        PeerMap.decode(_encode_one(wire))


def test_too_many_connections_are_refused() -> None:
    wire = record_to_wire(record(1))
    wire[6] = [[p, "a", True, True] for p in range(2, MAX_CONNECTIONS_PER_RECORD + 3)]
    with pytest.raises(MalformedMessageError, match="more than"):
        PeerMap.decode(pack([wire]))


def test_repeated_peer_in_map_is_refused() -> None:
    wire = record_to_wire(record(1))
    with pytest.raises(MalformedMessageError, match="repeats"):
        PeerMap.decode(pack([wire, wire]))


def test_size_cap_is_enforced() -> None:
    data = PeerMap.of(record(1), record(2)).encode()
    with pytest.raises(MalformedMessageError):
        PeerMap.decode(data, max_size=len(data) - 1)


def test_encoding_is_exact_and_sorted_by_name() -> None:
    a = record(2, version=3, uid=9, short_id=5, connections=[conn(1, address="1.2.3.4:5")])
    b = replace(record(1, version=1, uid=7, nickname="n", listen_port=0), short_id=None)
    assert PeerMap.of(a, b).encode() == pack([
        [1, "n", 7, 1, None, 0, []],
        [2, "host2", 9, 3, 5, 6783, [[1, "1.2.3.4:5", True, True]]],
    ])


def test_precedence_order() -> None:
    base = record(1, version=2, uid=5, short_id=3)
    assert record_beats(record(1, version=3, uid=0), base)
    assert not record_beats(record(1, version=1, uid=9), base)
    assert record_beats(record(1, version=2, uid=6), base)
    with_id = record(1, version=2, uid=5, short_id=3)
    without_id = replace(with_id, short_id=None)
    assert record_beats(with_id, without_id)
    assert not record_beats(without_id, with_id)
    assert not record_beats(base, base)
    other = record(1, version=2, uid=5, short_id=3, nickname="zzz")
    assert record_beats(other, base) != record_beats(base, other)
    assert (other.precedence() > base.precedence()) == record_beats(other, base)


def test_normalize_connections() -> None:
    conns = [
        conn(3, established=False, address="a:1"),
        conn(3, established=True, outbound=False, address="b:1"),
        conn(1),
        conn(2, outbound=False, address="c:1"),
        conn(2, outbound=True, address="c:2"),
    ]
    normalized = normalize_connections(conns, PeerName(1))
    assert [c.peer for c in normalized] == [2, 3]
    assert normalized[0].address == "c:2"
    assert normalized[1].address == "b:1"


def test_decoded_records_are_shared_and_type_confusion_is_still_refused() -> None:
    rec = record(11, version=4, uid=3, connections=[conn(12), conn(13, established=False)])
    data = PeerMap.of(rec).encode()
    first = PeerMap.decode(data).records[PeerName(11)]
    second = PeerMap.decode(data).records[PeerName(11)]
    assert first is second and first == rec
    for index, bad in [(2, 1), (3, 1), (0, 12.0), (1, None)]:
        conn_wire = record_to_wire(rec)
        conn_wire[6][0][index] = bad
        with pytest.raises(MalformedMessageError):
            PeerMap.decode(pack([conn_wire]))
    for index, bad in [(0, True), (3, 4.0), (5, 6783.0), (4, True)]:
        wire = record_to_wire(rec)
        wire[index] = bad
        with pytest.raises(MalformedMessageError):
            PeerMap.decode(pack([wire]))
    wire = record_to_wire(rec)
    wire[1] = "other nickname"  # same key, other content: decoded on its own merits
    other = PeerMap.decode(pack([wire])).records[PeerName(11)]
    assert other.nickname == "other nickname" and other is not first


@pytest.mark.parametrize("count", [0, 1, 15, 16, 17, 300])
def test_encode_matches_plain_msgpack_of_the_list_form(count: int) -> None:
    records = [record(n, connections=[conn(n + 1)]) for n in range(1, count + 1)]
    assert PeerMap.of(*records).encode() == pack([record_to_wire(r) for r in records])


@pytest.mark.parametrize("length", [0, 15, 16, 65535, 65536])
def test_array_header_matches_msgpack(length: int) -> None:
    from meshrouter.topology.peer_map import _array_header

    packed = pack([None] * length)
    assert _array_header(length) == packed[: len(packed) - length]


@PROPERTY
@given(peer_records(name=1), peer_records(name=1))
def test_record_beats_agrees_with_precedence(a: PeerRecord, b: PeerRecord) -> None:
    assert record_beats(a, b) == (a.precedence() > b.precedence())
    assert not (record_beats(a, b) and record_beats(b, a))
    if a != b:
        assert record_beats(a, b) or record_beats(b, a)
