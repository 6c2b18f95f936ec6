"""Record-set fingerprints: order-independent, and maintained incrementally by Topology."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.topology.peer_map import PeerMap
from meshrouter.topology.records import (
    ConnectionRecord,
    PeerRecord,
    record_fingerprint,
    records_fingerprint,
)
from meshrouter.topology.topology import Topology

from .builders import P, conn, make_topology, record

PROPERTY = settings(deadline=None, max_examples=200)
POOL = range(1, 9)  # peer names; 1 is the local router


def test_equal_records_have_equal_fingerprints_whatever_the_object() -> None:
    a = record(2, connections=[conn(1), conn(3)])
    b = record(2, connections=[conn(1), conn(3)])
    assert a is not b and record_fingerprint(a) == record_fingerprint(b)
    assert 0 <= record_fingerprint(a) < 2**128
    variants = [
        replace(a, version=2),
        replace(a, uid=2),
        replace(a, short_id=None),
        replace(a, listen_port=1),
        replace(a, nickname="other"),
        replace(a, connections=(conn(1), conn(3, established=False))),
        replace(a, connections=(conn(1),)),
    ]
    assert len({record_fingerprint(r) for r in [a, *variants]}) == len(variants) + 1


@PROPERTY
@given(st.lists(st.integers(1, 50), unique=True, max_size=12), st.randoms())
def test_set_fingerprint_ignores_order(names: list[int], shuffler: random.Random) -> None:
    records = [record(n, connections=[conn(m) for m in names if m != n][:3]) for n in names]
    shuffled = list(records)
    shuffler.shuffle(shuffled)
    assert records_fingerprint(records) == records_fingerprint(shuffled)
    if records:
        assert records_fingerprint(records[1:]) == (
            records_fingerprint(records) ^ record_fingerprint(records[0]))
    else:
        assert records_fingerprint(records) == 0


# -- incremental maintenance in Topology ---------------------------------------------------


connections = st.lists(
    st.builds(lambda peer, established: conn(peer, established=established),
              st.sampled_from(POOL), st.booleans()),
    max_size=5,
)
received_records = st.builds(
    lambda name, version, uid, short_id, conns: record(
        name, version=version, uid=uid, short_id=short_id,
        connections={c.peer: c for c in conns if c.peer != name}.values()),
    st.sampled_from(POOL), st.integers(1, 5), st.integers(1, 2),
    st.sampled_from([1, 2, 3, 7]), connections,
)
operations = st.one_of(
    st.tuples(st.just("apply"),
              st.lists(received_records, min_size=1, max_size=4, unique_by=lambda r: r.name)),
    st.tuples(st.just("connect"), connections),
    st.tuples(st.just("port"), st.integers(0, 3)),
    st.tuples(st.just("gc"), st.none()),
)

Operation = tuple[str, object]


def run(topo: Topology, ops: list[Operation], rng: random.Random) -> None:
    for kind, arg in ops:
        if kind == "apply":
            assert isinstance(arg, list)
            topo.apply(PeerMap({r.name: r for r in arg}), rng)
        elif kind == "connect":
            assert isinstance(arg, list)
            topo.set_local_connections(c for c in arg if isinstance(c, ConnectionRecord))
        elif kind == "port":
            assert isinstance(arg, int)
            topo.set_listen_port(6783 + arg)
        else:
            topo.garbage_collect()
            topo.take_removed()
        assert topo.fingerprint == records_fingerprint(topo.records()), kind


@PROPERTY
@given(st.lists(operations, max_size=25))
def test_fingerprint_is_maintained_through_every_change(ops: list[Operation]) -> None:
    topo = make_topology()
    assert topo.fingerprint == records_fingerprint(topo.records())
    run(topo, ops, random.Random(3))


def same_state(a: Topology, b: Topology) -> bool:
    return a.peer_map == b.peer_map


@PROPERTY
@given(st.lists(operations, max_size=20), st.randoms())
def test_equal_record_sets_have_equal_fingerprints(ops: list[Operation],
                                                   shuffler: random.Random) -> None:
    """Same operations with every received map in another order, and the received
    records in another order altogether: fingerprints agree iff the records do."""
    a, b, c = make_topology(), make_topology(), make_topology()
    run(a, ops, random.Random(3))
    reordered: list[Operation] = []
    for kind, arg in ops:
        if kind == "apply":
            assert isinstance(arg, list)
            arg = list(reversed(arg))
        reordered.append((kind, arg))
    run(b, reordered, random.Random(3))
    assert same_state(a, b) and a.fingerprint == b.fingerprint
    shuffled = list(ops)
    shuffler.shuffle(shuffled)
    run(c, shuffled, random.Random(3))
    assert (a.fingerprint == c.fingerprint) == same_state(a, c)
    if a.fingerprint == c.fingerprint:
        assert a.routes().graph is c.routes().graph


def test_limbo_promotion_and_gc_removal_update_the_fingerprint() -> None:
    topo = make_topology()
    topo.set_local_connections([conn(2)])
    orphan = record(3, connections=[conn(2)])
    topo.apply(PeerMap.of(orphan), random.Random(0))  # unreachable: parked in limbo
    assert P(3) not in topo
    assert topo.fingerprint == records_fingerprint(topo.records())
    topo.apply(PeerMap.of(record(2, connections=[conn(1), conn(3)])), random.Random(0))
    assert P(3) in topo  # promoted from limbo
    assert topo.fingerprint == records_fingerprint(topo.records())
    topo.set_local_connections([])
    assert [r.name for r in topo.records()] == [1]  # 2 and 3 collected
    assert topo.fingerprint == record_fingerprint(topo.local_record)


def test_reasserting_our_record_updates_the_fingerprint() -> None:
    topo = make_topology()
    ours = topo.local_record
    impostor: PeerRecord = replace(ours, version=ours.version + 3, uid=5)
    topo.apply(PeerMap.of(impostor), random.Random(0))
    assert topo.local_record.version == ours.version + 4
    assert topo.fingerprint == record_fingerprint(topo.local_record)
