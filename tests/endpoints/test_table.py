"""The replica's rules: owner-only edits, re-assertion, owner removal, compaction, digests."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.endpoints.model import make_endpoint
from meshrouter.endpoints.state import EndpointSet
from meshrouter.endpoints.table import COMPACT_MIN, REMOVED_MEMORY, EndpointTable
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName

A, B, C = PeerName(0xA), PeerName(0xB), PeerName(0xC)
MAC1, MAC2 = "02:00:00:00:00:01", "02:00:00:00:00:02"


def test_local_edits_get_rising_versions_and_one_entry_deltas() -> None:
    t = EndpointTable(A)
    e1 = t.put_local("c1", MAC1, "10.0.0.1", "web")
    assert t.take_broadcast() == EndpointSet.of([e1])
    assert t.put_local("c1", MAC1, "10.0.0.1", "web") is e1  # no change, no edit
    assert t.take_broadcast() is None
    e2 = t.put_local("c2", MAC2, "10.0.0.2", "")
    gone = t.remove_local("c1")
    assert gone == e1 and e2.version == 2
    out = t.take_broadcast()
    assert out is not None and len(out) == 2
    tomb = out.get(A, "c1")
    assert tomb is not None and tomb.tombstone and tomb.version == 3
    assert [e.container_id for e in t.live()] == ["c2"]
    assert t.remove_local("c1") is None


def test_bad_fields_are_refused() -> None:
    with pytest.raises(ValueError):
        EndpointTable(A).put_local("c1", "02:00:00:00:00:0x", "10.0.0.1", "")


def test_owner_reasserts_after_a_restart_without_state() -> None:
    old = EndpointTable(A)
    old.put_local("c1", MAC1, "10.0.0.1", "")
    old.put_local("gone", MAC2, "10.0.0.2", "")
    mesh_copy = old.state.copy()
    fresh = EndpointTable(A)  # restarted, lost its file, c1 re-attached with another IP
    fresh.put_local("c1", MAC1, "10.0.0.9", "")
    fresh.take_broadcast()
    fresh.receive(mesh_copy, now=0.0)
    assert {e.container_id: e.ip for e in fresh.live()} == {"c1": "10.0.0.9"}
    fix = fresh.take_broadcast()
    assert fix is not None
    other = EndpointTable(B)
    other.receive(mesh_copy, 0.0)
    other.receive(fix, 0.0)
    assert {e.container_id: e.ip for e in other.live()} == {"c1": "10.0.0.9"}


def test_removed_owner_goes_and_stays_gone_until_seen_again() -> None:
    a, b = EndpointTable(A), EndpointTable(B)
    b.put_local("c1", MAC1, "10.0.0.1", "")
    copy = b.state.copy()
    a.receive(copy, 0.0)
    assert a.remove_owner(B, now=10.0) == 1
    assert a.live() == []
    assert a.receive(copy, 20.0) is None  # a lagging neighbour cannot bring it back
    assert not a.lacks_from(b.full_digest(), 20.0)
    a.owners_seen([B])
    assert a.receive(copy, 21.0) is not None
    a.remove_owner(B, now=30.0)
    assert a.receive(copy, 31.0 + REMOVED_MEMORY) is not None  # the mark expires
    assert a.remove_owner(A, 0.0) == 0  # never ourselves


def test_compaction_collects_tombstones_without_resurrection() -> None:
    t = EndpointTable(A)
    t.put_local("keep", MAC1, "10.0.0.1", "")
    for i in range(COMPACT_MIN):
        t.put_local(f"c{i}", MAC2, "10.0.0.2", "")
    stale_replica = t.state.copy()  # still holds every c_i live
    for i in range(COMPACT_MIN):
        t.remove_local(f"c{i}")
    entries = t.state.by_owner[A]
    assert list(entries) == ["keep"]  # the tombstones are gone
    assert entries["keep"].version >= t.state.floors[A]
    delta = t.take_broadcast()
    assert delta is not None
    stale_replica.merge(delta)
    assert {e.container_id for e in stale_replica if not e.tombstone} == {"keep"}


def test_dump_and_load_round_trip() -> None:
    t = EndpointTable(A)
    t.put_local("c1", MAC1, "10.0.0.1", "web")
    t.put_local("c2", MAC2, "10.0.0.2", "")
    t.remove_local("c2")
    u = EndpointTable(A)
    u.load(t.dump())
    assert u.state == t.state
    assert u.put_local("c3", MAC2, "10.0.0.3", "").version == 4
    with pytest.raises(MalformedMessageError):
        EndpointTable(B).load(t.dump())


def _exchange(a: EndpointTable, b: EndpointTable, now: float) -> int:
    """One digest round as the gossip core runs it; return payload bytes moved."""
    moved = 0
    for x, y in ((a, b), (b, a)):
        digest = x.summary()
        if not y.wants_full_digest(digest):
            continue
        for p, q in ((x, y), (y, x)):
            missing = q.newer_than(p.full_digest())
            if missing is not None:
                moved += len(missing.encode())
                p.receive(EndpointSet.decode(missing.encode()), now)
    return moved


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 30))
def test_digest_exchange_converges(seed: int, edits: int) -> None:
    rng = random.Random(seed)
    tables = {n: EndpointTable(n) for n in (A, B, C)}
    replicas = [EndpointTable(PeerName(0xD)), EndpointTable(PeerName(0xE))]
    for _ in range(edits):
        owner = rng.choice([A, B, C])
        cid = f"c{rng.randrange(4)}"
        if rng.random() < 0.3:
            tables[owner].remove_local(cid)
        else:
            ip = f"10.0.0.{rng.randrange(1, 9)}"
            tables[owner].put_local(cid, rng.choice([MAC1, MAC2]), ip, "")
        delta = tables[owner].take_broadcast()
        if delta is not None and rng.random() < 0.5:  # some broadcasts are lost
            replicas[rng.randrange(2)].receive(delta, 0.0)
    for t in tables.values():
        _exchange(replicas[0], t, 0.0)
    _exchange(replicas[0], replicas[1], 0.0)
    truth = EndpointSet()
    for t in tables.values():
        truth.merge(t.state)
    assert replicas[0].state == truth and replicas[1].state == truth
    assert replicas[0].summary() == replicas[1].summary()
    assert _exchange(replicas[0], replicas[1], 0.0) == 0


@pytest.mark.parametrize("digest", [b"", b"S123", b"Fxx", b"X" + b"0" * 16,
                                    b"F" + bytes([0x91, 0x93, 1, 2, 3])])
def test_malformed_digests_are_refused(digest: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        EndpointTable(A).newer_than(digest)


def test_entry_from_another_owner_is_never_a_local_edit() -> None:
    t = EndpointTable(A)
    t.receive(EndpointSet.of([make_endpoint(B, "c1", MAC1, "10.0.0.1", "", 7)]), 0.0)
    assert t.take_broadcast() is None and t.own() == {}
