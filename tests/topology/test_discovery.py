"""Dial candidates from a shared per-record-set address book equal the per-router scan."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from meshrouter.names import PeerName
from meshrouter.topology.discovery import SHARED_DIAL_ADDRESSES, DialAddresses
from meshrouter.topology.peer_map import PeerMap
from meshrouter.topology.records import PeerRecord, records_fingerprint

from .builders import P, conn, make_topology, record

PROPERTY = settings(deadline=None, max_examples=200)


def reference_candidates(records: Mapping[PeerName, PeerRecord],
                         local: PeerName) -> list[tuple[PeerName, str]]:
    """The per-router scan as it was before the address book was shared."""
    connected = records[local].connected_peers()
    wanted = {name for name in records if name != local and name not in connected}
    found: set[tuple[PeerName, str]] = set()
    for owner, rec in records.items():
        for c in rec.connections:
            if c.peer not in wanted or c.peer == owner:
                continue
            host, sep, port_text = c.address.rpartition(":")
            if not sep or not port_text.isdigit() or len(port_text) > 5 or int(port_text) > 65535:
                continue
            if host.startswith("[") and host.endswith("]"):
                host = host[1:-1]
            elif ":" in host:
                continue
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                continue
            if ip.is_unspecified:
                continue
            text = f"[{ip}]" if ip.version == 6 else str(ip)
            if records[c.peer].listen_port:
                found.add((c.peer, f"{text}:{records[c.peer].listen_port}"))
            if c.outbound and int(port_text):
                found.add((c.peer, f"{text}:{int(port_text)}"))
    return sorted(found)


addresses = st.one_of(
    st.builds(lambda a, b, port: f"10.0.{a}.{b}:{port}",
              st.integers(0, 3), st.integers(0, 3), st.sampled_from([0, 1, 6783, 40000, 65535])),
    st.sampled_from(["[fd00::1]:6783", "[fd00:0::1]:5", "fd00::1:6783", "0.0.0.0:6783",
                     "[::]:1", "bogus", "10.0.0.1:99999", "10.0.0.1:", "10.0.0.01:1",
                     "10.0.0.2:7000"]),
)


@st.composite
def address_records(draw: st.DrawFn) -> dict[PeerName, PeerRecord]:
    names = sorted(draw(st.sets(st.integers(1, 12), min_size=1, max_size=8)))
    records = {}
    for name in names:
        peers = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
        connections = [conn(p, outbound=draw(st.booleans()), established=draw(st.booleans()),
                            address=draw(addresses)) for p in peers if p != name]
        records[P(name)] = record(name, connections=connections,
                                  listen_port=draw(st.sampled_from([0, 6783, 7777])))
    return records


@PROPERTY
@given(address_records())
def test_address_book_candidates_equal_the_per_router_scan(
        records: dict[PeerName, PeerRecord]) -> None:
    book = DialAddresses(records, records_fingerprint(records.values()))
    for local in records:
        connected = records[local].connected_peers()
        assert book.candidates(local, connected, records) == reference_candidates(records, local)


def test_routers_with_the_same_records_share_one_address_book() -> None:
    SHARED_DIAL_ADDRESSES.clear()
    others = [record(2, connections=[conn(1), conn(3), conn(4, outbound=False,
                                                            address="10.9.9.4:40000")]),
              record(3, connections=[conn(2)]), record(4, connections=[conn(2)])]
    a, b = make_topology(1), make_topology(1)
    for topo in (a, b):
        topo.set_local_connections([conn(2)])
        topo.apply(PeerMap.of(*others), random.Random(0))
    expected = [(3, "10.0.0.3:6783"), (4, "10.9.9.4:6783")]
    assert a.discovery_candidates() == expected
    assert len(SHARED_DIAL_ADDRESSES) == 1
    assert b.discovery_candidates() == expected
    assert len(SHARED_DIAL_ADDRESSES) == 1
    listed = b.discovery_candidates()
    listed.clear()  # callers get a copy
    assert b.discovery_candidates() == expected
    a.set_local_connections([conn(2), conn(3)])
    assert a.discovery_candidates() == [(4, "10.9.9.4:6783")]
    assert len(SHARED_DIAL_ADDRESSES) == 2


@settings(deadline=None, max_examples=40)
@given(st.lists(address_records(), min_size=2, max_size=4), st.data())
def test_an_address_book_derived_from_the_previous_one_equals_the_scan(
        snapshots: list[dict[PeerName, PeerRecord]], data: st.DataObject) -> None:
    # Each snapshot is the next record set; the derived book is told the names
    # whose record differs, with the previous record (plus a few that do not
    # differ: a superset is allowed).
    book = DialAddresses(snapshots[0], 0)
    previous = snapshots[0]
    for step, records in enumerate(snapshots[1:], start=1):
        changed = {n for n in previous.keys() | records.keys()
                   if previous.get(n) != records.get(n)}
        changed |= set(data.draw(st.sets(st.sampled_from(sorted(previous.keys() | records.keys())),
                                         max_size=2)))
        if data.draw(st.booleans()):
            book.candidates(P(1), (), previous)  # the parent composed (and cached) its addresses
        book = DialAddresses(records, step, parent=book,
                             before={name: previous.get(name) for name in changed})
        for local in records:
            connected = records[local].connected_peers()
            assert book.candidates(local, connected, records) == reference_candidates(
                records, local)
        previous = records


def test_a_topology_derives_its_address_book_from_its_previous_one() -> None:
    SHARED_DIAL_ADDRESSES.clear()
    topo = make_topology(1)
    topo.set_local_connections([conn(2)])
    topo.apply(PeerMap.of(record(2, connections=[conn(1), conn(3, outbound=False)]),
                          record(3, connections=[conn(2)])), random.Random(0))
    assert topo.discovery_candidates() == [(3, "10.0.0.3:6783")]
    topo.apply(PeerMap.of(record(3, version=2, listen_port=7000, connections=[conn(2)])),
               random.Random(0))
    # Only 3's record changed: its listen port is in the new address.
    assert topo.discovery_candidates() == [(3, "10.0.0.3:7000")]


def test_an_address_book_holds_no_record() -> None:
    """A router's book outlives its record set (it is replaced only when the
    router next asks for candidates); a copy of the set's records in every
    such book was an N-sized table per router, pinning superseded records."""
    import gc

    topo = make_topology(1)
    topo.set_local_connections([conn(2)])
    topo.apply(PeerMap.of(record(2, connections=[conn(1), conn(3, outbound=False)]),
                          record(3, connections=[conn(2)])), random.Random(0))
    topo.discovery_candidates()
    book = topo._dial._book
    assert book is not None
    seen: set[int] = set()
    frontier: list[object] = [book]
    for _ in range(4):  # the book, its tables, their values, and theirs
        following = []
        for item in frontier:
            for referent in gc.get_referents(item):
                if id(referent) not in seen and not isinstance(referent, type):
                    seen.add(id(referent))
                    following.append(referent)
        assert not any(isinstance(item, PeerRecord) for item in following)
        frontier = following


@settings(deadline=None, max_examples=150)
@given(address_records(), st.data())
def test_a_book_derived_over_small_edits_equals_the_scan(
        start: dict[PeerName, PeerRecord], data: st.DataObject) -> None:
    """Records replaced by a link or two (the usual case, where only the
    connections that differ are counted): one connection's address, direction
    or state changed, one added, one dropped, or the listen port changed."""
    names = sorted(start)
    book = DialAddresses(start, 0)
    previous = start
    for step in range(1, data.draw(st.integers(1, 6)) + 1):
        records = dict(previous)
        before: dict[PeerName, PeerRecord | None] = {}
        for name in data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=2)):
            held = records[name]
            connections = list(held.connections)
            edit = data.draw(st.sampled_from(["address", "outbound", "established", "add",
                                              "drop", "port"]))
            at = data.draw(st.integers(0, max(len(connections) - 1, 0)))
            if edit == "add":
                peer = data.draw(st.sampled_from(names))
                if peer != name and all(c.peer != peer for c in connections):
                    connections.append(conn(int(peer), address=data.draw(addresses)))
            elif edit == "drop" and connections:
                connections.pop(at)
            elif edit != "port" and connections:
                c = connections[at]
                connections[at] = conn(
                    int(c.peer),
                    address=data.draw(addresses) if edit == "address" else c.address,
                    outbound=not c.outbound if edit == "outbound" else c.outbound,
                    established=not c.established if edit == "established" else c.established)
            port = data.draw(st.sampled_from([0, 6783, 7777])) if edit == "port" else None
            before.setdefault(name, held)
            records[name] = record(int(name), version=held.version + 1, connections=connections,
                                   listen_port=held.listen_port if port is None else port)
        if data.draw(st.booleans()):
            book.candidates(P(1), (), previous)  # the parent composed (and cached) its addresses
        book = DialAddresses(records, step, parent=book, before=before)
        for local in records:
            connected = records[local].connected_peers()
            assert book.candidates(local, connected, records) == reference_candidates(
                records, local)
        previous = records
