"""DnsCore (owner edits, authority, collection, reachability) and the ``dns``
channel over real GossipCores (tests/gossip/harness.py routes)."""

from __future__ import annotations

import random

from meshrouter.dns.core import DnsCore
from meshrouter.dns.gossiper import CHANNEL, DnsGossiper
from meshrouter.dns.records import DnsRecords, OwnerRecords, RecordKey, Stamp
from meshrouter.gossip.core import GossipCore
from meshrouter.names import PeerName
from meshrouter.wire.messages import BroadcastMsg, GossipMsg, decode_message, encode_message
from tests.gossip.harness import BfsRoutes, Graph, full_mesh, line

A, B, C = PeerName(1), PeerName(2), PeerName(3)
DOMAIN = "mesh.local."
WEB1 = RecordKey("web.mesh.local.", 0x0A200001, "c1")
WEB2 = RecordKey("web.mesh.local.", 0x0A200002, "c2")


def answers(core: DnsCore, name: str = "web.mesh.local.") -> tuple[int, ...]:
    return core.view().addresses.get(name, ())


def test_own_edits_are_queued_as_one_record_deltas() -> None:
    core = DnsCore(A, DOMAIN)
    assert core.add(WEB1, 0.0)
    assert not core.add(WEB1, 0.0)
    delta = core.take_broadcast()
    assert delta is not None and delta.to_wire() == [[1, 0, [["web.mesh.local.", 0x0A200001,
                                                                "c1", 1, False]]]]
    assert core.take_broadcast() is None
    assert core.remove(lambda k: k.container == "c1", 5.0) == [WEB1]
    delta = core.take_broadcast()
    assert delta is not None and delta.get(A, WEB1) == Stamp(2, True)
    assert answers(core) == ()


def test_the_owner_reasserts_its_truth_over_a_stale_incarnation() -> None:
    """After a restart without state, peers still hold our old records at higher
    versions: a live one we no longer publish is tombstoned, one we publish again
    is re-stamped live, both above the stale versions."""
    core = DnsCore(A, DOMAIN)
    core.add(WEB1, 0.0)  # version 1 in the new incarnation
    core.take_broadcast()
    stale = DnsRecords({A: OwnerRecords(0, {WEB1: Stamp(7, True), WEB2: Stamp(8)})})
    core.receive(stale)
    assert core.records.get(A, WEB1) == Stamp(9, False)
    assert core.records.get(A, WEB2) == Stamp(10, True)
    assert core.counter == 10
    out = core.take_broadcast()
    assert out is not None and out.get(A, WEB1) == Stamp(9) and out.get(A, WEB2) == Stamp(10, True)
    assert answers(core) == (0x0A200001,)


def test_tombstones_are_collected_by_raising_the_floor_and_stay_dead() -> None:
    core = DnsCore(A, DOMAIN, tombstone_ttl=100.0)
    other = DnsCore(B, DOMAIN)
    core.add(WEB1, 0.0)
    core.add(WEB2, 0.0)
    core.remove(lambda k: k == WEB2, 10.0)
    other.receive(_take(core))
    assert not core.collect(50.0)  # too young
    assert core.collect(110.0)
    out = _take(core)
    # One tombstone collected, one live record below the floor re-stamped above it.
    assert out.floor(A) == 3 and out.get(A, WEB1) == Stamp(4)
    assert core.records.get(A, WEB2) is None
    stale_peer = other.records.copy()
    other.receive(out)
    assert other.records.get(A, WEB2) is None and other.records.get(A, WEB1) == Stamp(4)
    # The copy a peer that was away still holds cannot bring anything back.
    assert core.receive(stale_peer) is None
    assert other.receive(stale_peer) is None
    other.set_reachable(frozenset({A, B}))
    assert answers(core) == answers(other) == (0x0A200001,)


def test_collection_waits_until_it_removes_at_least_what_it_restamps() -> None:
    core = DnsCore(A, DOMAIN, tombstone_ttl=1.0)
    for i in range(5):
        core.add(RecordKey(f"n{i}.mesh.local.", i + 1), 0.0)
    core.remove(lambda k: k.name == "n0.mesh.local.", 0.0)
    assert not core.collect(10.0)  # 1 tombstone vs 4 live records to re-stamp
    core.remove(lambda k: k.address in (2, 3, 4), 0.0)
    assert core.collect(10.0)  # 4 tombstones vs 1 live record


def test_unreachable_owners_are_left_out_then_answered_again() -> None:
    core = DnsCore(A, DOMAIN)
    peer = DnsCore(B, DOMAIN)
    peer.add(WEB2, 0.0)
    core.add(WEB1, 0.0)
    core.receive(_take(peer))
    core.set_reachable(frozenset({A, B}))
    assert answers(core) == (0x0A200001, 0x0A200002)
    core.set_reachable(frozenset({A}))
    assert answers(core) == (0x0A200001,)
    assert core.status()["web.mesh.local."][1]["state"] == "unreachable"
    core.set_reachable(frozenset({A, B}))
    assert answers(core) == (0x0A200001, 0x0A200002)


def test_removed_and_long_unknown_owners_are_dropped() -> None:
    core = DnsCore(A, DOMAIN, unknown_grace=30.0)
    for owner, key in ((B, WEB1), (C, WEB2)):
        peer = DnsCore(owner, DOMAIN)
        peer.add(key, 0.0)
        core.receive(_take(peer))
    assert core.forget_owner(B)
    assert B not in core.records.owners
    assert core.sweep_unknown(lambda o: False, 0.0) == []
    assert core.sweep_unknown(lambda o: False, 29.0) == []
    assert core.sweep_unknown(lambda o: False, 30.0) == [C]
    assert not core.records


def test_state_file_round_trip_keeps_the_counter_and_records() -> None:
    core = DnsCore(A, DOMAIN)
    core.add(WEB1, 0.0)
    core.add(WEB2, 0.0)
    core.remove(lambda k: k == WEB2, 0.0)
    blob = core.dump()
    again = DnsCore(A, DOMAIN)
    again.load(blob, 0.0)
    assert again.counter == 3 and again.mine() == [WEB1]
    assert again.records == core.records
    again.add(RecordKey("x.mesh.local.", 9), 0.0)
    assert again.counter == 4


def _take(core: DnsCore) -> DnsRecords:
    out = core.take_broadcast()
    assert out is not None
    return out


# ---------------------------------------------------------------- over gossip


class DnsMesh:
    def __init__(self, graph: Graph, seed: int = 0) -> None:
        self.graph = graph
        self.rng = random.Random(seed)
        self.cores: dict[PeerName, GossipCore] = {}
        self.dns: dict[PeerName, DnsCore] = {}
        self.bytes = 0
        for name in sorted(graph):
            self.add(name)
            self.cores[name].set_routes(BfsRoutes(graph, name))
        for name in sorted(graph):
            for peer in sorted(graph[name]):
                self.cores[name].neighbour_up(peer)

    def add(self, name: PeerName) -> None:
        self.dns[name] = DnsCore(name, DOMAIN)
        self.cores[name] = GossipCore(name)
        self.cores[name].add_channel(CHANNEL, DnsGossiper(self.dns[name]))

    def flush(self, name: PeerName) -> None:
        delta = self.dns[name].take_broadcast()
        if delta is not None:
            self.cores[name].originate_broadcast(CHANNEL, delta)

    def pump(self) -> int:
        messages = 0
        self.bytes = 0
        for _ in range(10_000):
            moved = False
            for src in sorted(self.cores):
                for dst in sorted(self.graph[src]):
                    msg = self.cores[src].pop_outgoing(dst)
                    if msg is None:
                        continue
                    moved = True
                    messages += 1
                    raw = encode_message(msg)
                    self.bytes += len(raw)
                    wire = decode_message(raw)
                    assert isinstance(wire, GossipMsg | BroadcastMsg) or wire is not None
                    self.cores[dst].handle(src, wire, self.rng)  # type: ignore[arg-type]
                    self.flush(dst)
            if not moved:
                return messages
        raise AssertionError("mesh did not go quiet")

    def everyone_answers(self, name: str = "web.mesh.local.") -> set[tuple[int, ...]]:
        for core in self.dns.values():
            core.set_reachable(frozenset(self.dns))
        return {core.view().addresses.get(name, ()) for core in self.dns.values()}


def test_a_change_costs_one_small_message_per_peer_whatever_the_records_held() -> None:
    mesh = DnsMesh(full_mesh(8))
    mesh.pump()
    for i, name in enumerate(sorted(mesh.dns)):
        for j in range(50):
            mesh.dns[name].add(RecordKey(f"n{i}-{j}.mesh.local.", i * 100 + j), 0.0)
        mesh.flush(name)
    mesh.pump()
    assert all(len(core.records) == 400 for core in mesh.dns.values())
    mesh.dns[A].add(WEB1, 0.0)
    mesh.flush(A)
    messages = mesh.pump()
    assert messages == 7  # N - 1 broadcast messages
    assert mesh.bytes < 7 * 120  # one record each, not 400
    assert mesh.everyone_answers() == {(0x0A200001,)}
    mesh.dns[A].remove(lambda k: k == WEB1, 1.0)
    mesh.flush(A)
    assert mesh.pump() == 7
    assert mesh.everyone_answers() == {()}


def test_a_late_joiner_learns_everything_through_digests() -> None:
    graph = line(4)
    mesh = DnsMesh(graph)
    mesh.dns[A].add(WEB1, 0.0)
    mesh.dns[C].add(WEB2, 0.0)
    mesh.flush(A)
    mesh.flush(C)
    mesh.pump()
    assert mesh.everyone_answers() == {(0x0A200001, 0x0A200002)}
    newcomer = PeerName(9)
    graph[newcomer] = set()
    graph[newcomer].add(PeerName(4))
    graph[PeerName(4)].add(newcomer)
    mesh.add(newcomer)
    for name in mesh.cores:
        mesh.cores[name].set_routes(BfsRoutes(graph, name))
    mesh.cores[newcomer].neighbour_up(PeerName(4))
    mesh.cores[PeerName(4)].neighbour_up(newcomer)
    mesh.pump()
    assert mesh.dns[newcomer].records == mesh.dns[A].records
    assert mesh.everyone_answers() == {(0x0A200001, 0x0A200002)}


def test_a_peer_that_missed_a_removal_is_repaired_by_periodic_digests() -> None:
    mesh = DnsMesh(full_mesh(3))
    mesh.dns[A].add(WEB1, 0.0)
    mesh.flush(A)
    mesh.pump()
    # C is cut off while A removes the record (its slot is dropped).
    mesh.cores[A].neighbour_down(C)
    mesh.cores[B].neighbour_down(C)
    mesh.dns[A].remove(lambda k: True, 1.0)
    mesh.flush(A)
    mesh.pump()
    assert mesh.dns[C].records.get(A, WEB1) == Stamp(1)
    mesh.cores[A].neighbour_up(C)
    mesh.cores[B].neighbour_up(C)
    mesh.pump()
    assert mesh.dns[C].records.get(A, WEB1) == Stamp(2, True)
    assert mesh.everyone_answers() == {()}


def test_a_restarted_owner_keeps_a_new_record_that_an_old_floor_would_drop() -> None:
    old = DnsCore(A, DOMAIN, tombstone_ttl=1.0)
    for key in (WEB1, WEB2, RecordKey("x.mesh.local.", 9)):
        old.add(key, 0.0)
    old.remove(lambda k: k != WEB1, 0.0)
    assert old.collect(5.0)  # floor 5, WEB1 re-stamped at 6
    stale = old.records.copy()
    fresh = DnsCore(A, DOMAIN)  # restarted without its state file
    fresh.add(WEB2, 0.0)  # version 1: below the old floor
    fresh.receive(stale)
    assert answers(fresh) == (0x0A200002,)  # WEB2 re-stamped above it; WEB1 tombstoned
    assert fresh.records.get(A, WEB2) == Stamp(7) and fresh.records.get(A, WEB1) == Stamp(8, True)
