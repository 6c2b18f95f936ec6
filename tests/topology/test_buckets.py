"""Bucketed topology digests (``topology/buckets``, protocol 4): the exchange of
a bucket summary and partial digests delivers exactly what the full-digest
exchange did, in a fraction of the bytes; every form decodes what it encodes and
refuses what it does not."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.codec import pack
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName
from meshrouter.topology.buckets import (
    MAX_BUCKET_BITS,
    BucketSummary,
    PartialDigest,
    bucket_bits,
    bucket_of,
    decode_bucket_summary,
    decode_partial_digest,
    encode_bucket_summary,
    encode_partial_digest,
)
from meshrouter.topology.peer_map import PeerMap
from meshrouter.topology.records import PeerRecord
from meshrouter.topology.topology import Topology

from .builders import conn, make_topology, record

PROPERTY = settings(max_examples=60, deadline=None)


def full_mesh_record(name: int, names: list[int], version: int) -> PeerRecord:
    return record(name, version=version, connections=[conn(p) for p in names if p != name])


@st.composite
def two_views(draw: st.DrawFn) -> tuple[list[int], dict[int, int], dict[int, int]]:
    """Names of a full mesh, and the version of each record two routers hold
    (routers 1 and 2 hold their own at version 1; the others at 1..4)."""
    count = draw(st.integers(3, 60))
    names = list(range(1, count + 1))
    versions = st.integers(1, 4)
    a = {n: draw(versions) for n in names[2:]}
    b = {n: draw(versions) if draw(st.booleans()) else a[n] for n in names[2:]}
    return names, a, b


def router(local: int, names: list[int], held: dict[int, int]) -> Topology:
    topo = make_topology(local, uid=1)
    topo.set_local_connections(conn(p) for p in names if p != local)
    others = [full_mesh_record(n, names, v) for n, v in held.items()]
    others.append(full_mesh_record(3 - local, names, 2))  # the other router's own record
    topo.apply(PeerMap.of(*others), random.Random(0))
    return topo


@PROPERTY
@given(two_views())
def test_the_bucketed_exchange_leaves_both_views_equal(
        views: tuple[list[int], dict[int, int], dict[int, int]]) -> None:
    names, held_a, held_b = views
    a, b = router(1, names, held_a), router(2, names, held_b)
    # Oracle: per name, the higher version of the two (records differ only by version).
    expected = {n: max(held_a[n], held_b[n]) for n in names[2:]}
    # The exchange the gossip core runs: a offers its summary; b answers with its
    # digest of the buckets that differ; a answers with data and, because that
    # digest shows what a lacks, its own digest of the same buckets; b answers.
    summary = a.digest()
    if not b.wants_full_digest(summary):
        assert held_a == held_b
        return
    asked = b.full_digest_for(summary)
    to_b = a.newer_than(asked)
    reply = a.full_digest_for(asked) if a.lacks_from(asked) else None
    if to_b is not None:
        b.apply(to_b, random.Random(0))
    if reply is not None:
        to_a = b.newer_than(reply)
        assert to_a is not None
        a.apply(to_a, random.Random(0))
    for topo in (a, b):
        got = {n: r.version for n, r in ((n, topo.record(PeerName(n))) for n in names[2:])
               if r is not None}
        assert got == expected
    assert a.fingerprint == b.fingerprint and a.digest() == b.digest()


def test_a_partial_digest_lists_only_the_differing_buckets() -> None:
    names = list(range(1, 101))
    held = {n: 1 for n in names[2:]}
    a = router(1, names, held)
    b = router(2, names, {**held, 50: 2, 77: 3})
    bits = bucket_bits(len(b))
    assert bits == 5  # 100 records: 32 buckets (about 4 x sqrt(N))
    asked = decode_partial_digest(a.full_digest_for(b.digest()))
    # (Each router's copy of the other's record is the same as the original.)
    differing = {bucket_of(n, bits) for n in (50, 77)}
    assert asked.covered == differing
    assert set(asked.entries) == {PeerName(n) for n in names if bucket_of(n, bits) in differing}
    assert len(a.full_digest_for(b.digest())) < len(a.full_digest()) // 4


def test_summaries_of_equal_sets_settle_and_never_claim_data() -> None:
    names = list(range(1, 21))
    a = router(1, names, {n: 1 for n in names[2:]})
    b = router(2, names, {n: 1 for n in names[2:]})
    a.apply(PeerMap.of(b.local_record), random.Random(0))
    b.apply(PeerMap.of(a.local_record), random.Random(0))
    assert a.digest() == b.digest() and not a.wants_full_digest(b.digest())
    assert a.newer_than(b.digest()) is None and not a.lacks_from(b.digest())


# -- wire forms ---------------------------------------------------------------------------

fingerprints = st.integers(0, (1 << 32) - 1)


@given(st.integers(0, 6).flatmap(lambda bits: st.lists(
    fingerprints, min_size=1 << bits, max_size=1 << bits)), st.integers(0, (1 << 128) - 1))
def test_bucket_summaries_decode_what_they_encode(buckets: list[int], total: int) -> None:
    data = encode_bucket_summary(total, buckets)
    assert len(data) == 2 + 16 + 4 * len(buckets)
    assert decode_bucket_summary(data) == BucketSummary(total, tuple(buckets))


@given(st.integers(0, 7), st.data())
def test_partial_digests_decode_what_they_encode(bits: int, data: st.DataObject) -> None:
    covered = data.draw(st.sets(st.integers(0, (1 << bits) - 1)))
    names = data.draw(st.sets(st.integers(1, 5000), max_size=30))
    records = {PeerName(n): record(n, version=n % 7 + 1) for n in names}
    encoded = encode_partial_digest(records, bits, covered)
    decoded = decode_partial_digest(encoded)
    assert decoded == PartialDigest(bits, frozenset(covered), {
        PeerName(n): (n % 7 + 1, 1) for n in names if bucket_of(n, bits) in covered})


@pytest.mark.parametrize("bad", [
    b"\x02", b"\x02\x0d" + bytes(16 + 8 << 13),  # bits beyond the maximum
    b"\x02\x01" + bytes(16 + 4),  # two buckets announced, one sent
    b"\x02\x00" + bytes(16 + 4 + 1),
    b"\x02\x00" + bytes(16 + 8),  # one protocol-4 bucket (64 bits)
    b"\x03\x00",  # no bitmap
    b"\x03\x01\x04" + pack({}),  # bucket 2 of 2
    b"\x03\x04\x01" + pack({}),  # 16 buckets need 2 bitmap bytes
    b"\x03\x00\x00" + pack({1: [1, 1]}),  # an entry outside the (no) covered buckets
    b"\x03\x00\x01" + pack([1]),
])
def test_malformed_bucketed_digests_are_refused(bad: bytes) -> None:
    topo = make_topology(1)
    for call in (topo.newer_than, topo.lacks_from, topo.wants_full_digest,
                 topo.full_digest_for):
        with pytest.raises(MalformedMessageError):
            call(bad)


def test_bucket_bits_grow_as_the_square_root_and_are_capped() -> None:
    assert [bucket_bits(n) for n in (0, 7, 8, 25, 100, 1000, 10**9)] == [
        0, 0, 3, 4, 5, 6, MAX_BUCKET_BITS]


def test_a_differing_total_with_equal_buckets_asks_for_every_bucket() -> None:
    names = list(range(1, 30))
    a = router(1, names, {n: 1 for n in names[2:]})
    summary = decode_bucket_summary(a.digest())
    forged = encode_bucket_summary(summary.total ^ 1, list(summary.buckets))
    asked = decode_partial_digest(a.full_digest_for(forged))
    assert asked.covered == frozenset(range(1 << summary.bits))
    assert len(asked.entries) == len(a)


def test_records_differing_only_in_content_differ_in_their_bucket() -> None:
    names = list(range(1, 30))
    a = router(1, names, {n: 1 for n in names[2:]})
    b = router(2, names, {n: 1 for n in names[2:]})
    a.apply(PeerMap.of(b.local_record), random.Random(0))
    b.apply(PeerMap.of(a.local_record), random.Random(0))
    odd = replace(b.record(PeerName(9)) or record(9), nickname="other")
    b._store(PeerName(9), odd)  # same name, version, UID: should never exist
    asked = decode_partial_digest(a.full_digest_for(b.digest()))
    assert asked.covered == {bucket_of(9, asked.bits)}


def test_one_received_digest_is_decoded_once_by_the_gossip_core(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The digest exchange asks four questions about one partial digest (what it
    # lacks, whether it is a differing summary, whether it shows what we lack,
    # our answer); the topology decodes the bytes once for all of them.
    from meshrouter.gossip.core import GossipCore
    from meshrouter.topology import anti_entropy
    from meshrouter.topology.gossiper import TopologyGossiper
    from meshrouter.wire.messages import DigestMsg

    names = list(range(1, 40))
    a = router(1, names, {n: 1 for n in names[2:]})
    b = router(2, names, {n: 3 if n % 2 else 1 for n in names[2:]})
    asked = a.full_digest_for(b.digest())  # a's partial digest of the differing buckets
    core = GossipCore(PeerName(2), rng=random.Random(0))
    core.add_channel("topology", TopologyGossiper(b, random.Random(0)))
    core.neighbour_up(PeerName(1))
    while core.pop_outgoing(PeerName(1)) is not None:
        pass
    real = anti_entropy.parse
    calls: list[bytes] = []

    def counting(digest: bytes) -> anti_entropy.Parsed:
        calls.append(digest)
        return real(digest)

    monkeypatch.setattr(anti_entropy, "parse", counting)
    core.handle(PeerName(1), DigestMsg("topology", PeerName(1), asked, reply=False))
    assert calls == [asked]
    # The answers are unchanged: b's records newer than a's (the odd names) in
    # the buckets a asked for, and no digest back (a holds nothing newer).
    sent = []
    while (msg := core.pop_outgoing(PeerName(1))) is not None:
        sent.append(msg)
    partial = decode_partial_digest(asked)
    expected = {n for n in names[2:] if n % 2 and bucket_of(n, partial.bits) in partial.covered}
    assert expected and len(sent) == 1 and not isinstance(sent[0], DigestMsg)
    answer = PeerMap.decode(sent[0].payload)
    assert {n: r.version for n, r in answer.records.items()} == dict.fromkeys(expected, 3)


@settings(deadline=None, max_examples=100)
@given(st.lists(st.tuples(st.integers(2, 40), st.integers(1, 5),
                          st.lists(st.integers(1, 40), max_size=4)), max_size=40))
def test_bucket_fingerprints_kept_record_by_record_equal_a_fresh_pass(
        writes: list[tuple[int, int, list[int]]]) -> None:
    """Oracle: per bucket, the XOR of the top 32 bits of the fingerprints of the
    records held now, computed from scratch after every write (records that
    lose their last path to us are dropped by GC, which must update too)."""
    from meshrouter.topology.buckets import BUCKET_SHIFT
    from meshrouter.topology.records import record_fingerprint

    topo = make_topology(1)
    topo.set_local_connections([conn(2), conn(3)])
    rng = random.Random(0)
    layouts = (0, 2, 4)
    for bits in layouts:  # three layouts cached from the start, as while a mesh grows
        topo._digests.bucket_fingerprints(bits)
    for name, version, links in writes:
        topo.apply(PeerMap.of(record(name, version=version,
                                     connections=[conn(p) for p in links if p != name])), rng)
        for bits in layouts:
            expected = [0] * (1 << bits)
            for held in topo.records():
                expected[bucket_of(held.name, bits)] ^= record_fingerprint(held) >> BUCKET_SHIFT
            assert topo._digests.bucket_fingerprints(bits) == expected
