"""IpamCore through CoreNet: founding, allocation, claims, donation, leaving, persistence."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from meshrouter.codec import pack
from meshrouter.errors import (
    ClusterMismatchError,
    ConflictError,
    InvalidRequestError,
    IpamError,
    StateFileError,
)
from meshrouter.ipam.address_range import AddressRange, format_address
from meshrouter.ipam.core import STATE_FORMAT, IpamCore
from meshrouter.ipam.founding import CONSENSUS, OBSERVER, SEED, FoundingMode
from meshrouter.ipam.messages import SPACE_DENIED, SPACE_REQUEST, SpaceMessage
from meshrouter.ipam.ring import Ack, Entry, Note, Ring
from meshrouter.ipam.state import IpamState
from meshrouter.names import PeerName, format_peer_name
from tests.ipam.harness import CoreNet

A = PeerName(0x5A0000000001)
B = PeerName(0x5A0000000002)
C = PeerName(0x5A0000000003)
D = PeerName(0x5A0000000004)
RANGE = AddressRange.parse("10.32.0.0/24")
# The seed ring of A, B, C over 10.32.0.0/24 cuts at .0, .85 and .170.
OWN_RANGES = {
    A: (RANGE.start, RANGE.start + 85),
    B: (RANGE.start + 85, RANGE.start + 170),
    C: (RANGE.start + 170, RANGE.end),
}
# The heir of an entry is the owner of the entry before it (wrapping round).
HEIR = {A: C, B: A, C: B}


def ip(text: str) -> int:
    return RANGE.parse_address(text)


def seeded(*names: PeerName, seeds: tuple[PeerName, ...] | None = None) -> CoreNet:
    founders = tuple(names) if seeds is None else seeds
    return CoreNet(list(names), FoundingMode(SEED, seeds=founders))


def reasons(core: IpamCore) -> list[str]:
    return [p.reason for p in core.pending.values()]


def join(net: CoreNet, name: PeerName, mode: FoundingMode, uid: int = 7000) -> IpamCore:
    """Add (or replace, as after a restart without data) a core in the net."""
    core = IpamCore(name, uid, net.range, mode, reclaim_after=60.0, pool=4)
    net.cores[name] = core
    net.groups[name] = 0
    core.start(net.now)
    return core


def allocate_settled(net: CoreNet, core: IpamCore, container: str) -> int:
    """Allocate, letting the net settle if the request has to wait."""
    address = core.allocate(container, None, net.now)
    if address is None:
        net.settle(1.0)
        assert core.pending == {}
        (address,) = core.lookup(container)
    return address


# --- seed founding -----------------------------------------------------------------------


def test_seed_founders_share_one_ring_at_once() -> None:
    net = seeded(A, B, C)
    rings = [core.ring for core in net.cores.values()]
    assert all(ring is not None for ring in rings)
    assert rings[0] == rings[1] == rings[2]
    ids = {core.cluster_id for core in net.cores.values()}
    assert len(ids) == 1 and len(ids.pop()) == 16
    ring = net.cores[A].ring
    assert ring is not None
    assert ring.members == (A, B, C)
    for name, (start, end) in OWN_RANGES.items():
        assert [(e.token, e_end) for e, e_end in ring.owned_by(name)] == [(start, end)]
    net.settle(1.0)
    assert len({core.ring.fingerprint() for core in net.cores.values() if core.ring}) == 1
    assert len({core.cluster_id for core in net.cores.values()}) == 1


def test_first_allocation_waits_for_the_heir_then_succeeds() -> None:
    net = seeded(A, B, C)
    for name, core in net.cores.items():
        assert core.allocate(f"first-{name:x}", None, net.now) is None
        assert reasons(core) == [
            f"waiting for peer {format_peer_name(HEIR[name])} to acknowledge a reservation"
        ]
    net.settle(1.0)
    got = {}
    for name, core in net.cores.items():
        assert core.pending == {}
        (address,) = core.lookup(f"first-{name:x}")
        start, end = OWN_RANGES[name]
        assert start <= address < end
        assert RANGE.usable(address)
        got[name] = address
    # Each hands out the lowest usable address of its own range (A skips the network address).
    assert got == {A: ip("10.32.0.1"), B: ip("10.32.0.85"), C: ip("10.32.0.170")}


def test_allocations_are_distinct_and_idempotent_per_container() -> None:
    net = seeded(A, B, C)
    seen: dict[int, str] = {}
    for name, core in net.cores.items():
        for i in range(10):
            container = f"{name:x}-{i}"
            address = allocate_settled(net, core, container)
            assert address not in seen, f"{format_address(address)} handed out twice"
            seen[address] = container
            start, end = OWN_RANGES[name]
            assert start <= address < end
            assert core.allocate(container, None, net.now) == address
            assert core.lookup(container) == [address]
    assert len(seen) == 30
    assert net.cores[A].counters.allocations == 10


def test_allocate_in_a_subnet_of_our_own_range() -> None:
    net = seeded(A, B, C)
    a = net.cores[A]
    subnet = RANGE.parse_subnet("10.32.0.64/28")
    address = a.allocate("sub", subnet, net.now)
    if address is None:
        net.settle(1.0)
        (address,) = a.lookup("sub")
    assert subnet[0] <= address < subnet[1]
    assert a.allocate("sub", subnet, net.now) == address


def test_allocate_in_a_subnet_of_another_peers_range_gets_a_donation() -> None:
    net = seeded(A, B, C)
    net.settle(0.5)
    a = net.cores[A]
    subnet = RANGE.parse_subnet("10.32.0.128/28")
    assert a.allocate("sub", subnet, net.now) is None
    net.settle(3.0)
    assert a.pending == {}
    (address,) = a.lookup("sub")
    assert subnet[0] <= address < subnet[1]
    assert a.ring is not None and a.ring.entry_at(address).owner == A
    assert net.cores[B].counters.donations_given == 1
    # A second container in the same subnet is served from the donated space.
    second = a.allocate("sub2", subnet, net.now)
    if second is None:
        net.settle(1.0)
        (second,) = a.lookup("sub2")
    assert subnet[0] <= second < subnet[1] and second != address


def test_a_container_in_another_subnet_gets_a_second_address() -> None:
    net = seeded(A, B, C)
    a = net.cores[A]
    first = allocate_settled(net, a, "multi")
    subnet = RANGE.parse_subnet("10.32.0.64/28")
    second = a.allocate("multi", subnet, net.now)
    if second is None:
        net.settle(1.0)
        second = a.lookup("multi")[1]
    assert a.lookup("multi") == [first, second]
    assert a.allocate("multi", None, net.now) == first


@pytest.mark.parametrize("container", ["", "x" * 257, "tab\there", "new\nline"])
def test_bad_container_id_is_a_400(container: str) -> None:
    a = seeded(A, B, C).cores[A]
    with pytest.raises(IpamError) as caught:
        a.allocate(container, None, 0.0)
    assert isinstance(caught.value, InvalidRequestError)
    assert str(caught.value) == "container ID must be 1..256 printable characters"
    with pytest.raises(IpamError) as caught:
        a.claim(container, ip("10.32.0.5"), 0.0)
    assert isinstance(caught.value, InvalidRequestError)
    assert str(caught.value) == "container ID must be 1..256 printable characters"


# --- claims, release, lookup ---------------------------------------------------------------


def test_claim_of_a_free_address_in_our_own_range() -> None:
    net = seeded(A, B, C)
    a = net.cores[A]
    wanted = ip("10.32.0.50")
    assert a.claim("web", wanted, net.now) is False
    assert [(p.container, p.kind, p.address) for p in a.pending.values()] == [
        ("web", "claim", wanted)
    ]
    assert reasons(a) == [
        f"waiting for peer {format_peer_name(C)} to acknowledge a reservation"
    ]
    status = a.status(net.now, net.reachable(A))
    assert [p["request"] for p in status["pending"]] == ["claim 10.32.0.50"]
    net.settle(1.0)
    assert a.pending == {}
    assert a.lookup("web") == [wanted]
    assert a.claim("web", wanted, net.now) is True
    # Allocation never hands out the claimed address.
    others = [allocate_settled(net, a, f"other-{i}") for i in range(60)]
    assert wanted not in others


def test_claim_inside_our_acknowledged_reservation_is_immediate() -> None:
    net = seeded(A, B, C)
    a = net.cores[A]
    net.settle(1.0)  # the pool of four is reserved and acknowledged: .1 .. .3
    assert a.claim("db", ip("10.32.0.3"), net.now) is True
    assert a.lookup("db") == [ip("10.32.0.3")]
    assert a.pending == {}


def test_claim_of_an_allocated_address_names_the_container() -> None:
    net = seeded(A, B, C)
    a = net.cores[A]
    address = allocate_settled(net, a, "first")
    with pytest.raises(IpamError) as caught:
        a.claim("second", address, net.now)
    assert isinstance(caught.value, ConflictError)
    assert str(caught.value) == f"{format_address(address)} is already allocated to first"


def test_claim_of_another_peers_address_names_that_peer() -> None:
    net = seeded(A, B, C)
    with pytest.raises(IpamError) as caught:
        net.cores[A].claim("web", ip("10.32.0.100"), net.now)
    assert isinstance(caught.value, ConflictError)
    assert str(caught.value) == (
        "10.32.0.100 belongs to peer 5a:00:00:00:00:02; claim it there (or release it there first)"
    )
    assert net.cores[A].pending == {}


@pytest.mark.parametrize("address", ["10.32.0.0", "10.32.0.255", "10.33.0.1"])
def test_claim_of_an_unusable_address_is_a_400(address: str) -> None:
    a = seeded(A, B, C).cores[A]
    with pytest.raises(IpamError) as caught:
        a.claim("web", int(ipaddress.IPv4Address(address)), 0.0)
    assert isinstance(caught.value, InvalidRequestError)
    assert str(caught.value) == f"{address} is not usable in 10.32.0.0/24"


def test_release_frees_and_the_address_is_reused() -> None:
    net = seeded(A, B, C)
    a = net.cores[A]
    first = allocate_settled(net, a, "one")
    second = allocate_settled(net, a, "two")
    assert a.release("one") == [first]
    assert a.lookup("one") == []
    assert first not in a.user_of
    assert a.release("one") == []
    assert a.counters.releases == 1
    assert allocate_settled(net, a, "three") == first
    assert a.lookup("two") == [second]


def test_release_of_one_address_keeps_the_others() -> None:
    net = seeded(A, B, C)
    a = net.cores[A]
    first = allocate_settled(net, a, "multi")
    subnet = RANGE.parse_subnet("10.32.0.64/28")
    if a.allocate("multi", subnet, net.now) is None:
        net.settle(1.0)
    second = a.lookup("multi")[1]
    assert a.release("multi", first) == [first]
    assert a.lookup("multi") == [second]
    assert a.release("multi", ip("10.32.0.77")) == []
    assert a.release("multi") == [second]
    assert a.allocations == {}


def test_a_release_is_saved_and_frees_the_address_for_good() -> None:
    net = seeded(A, B, C)
    a = net.cores[A]
    first = allocate_settled(net, a, "one")
    second = allocate_settled(net, a, "two")
    a.dirty = False  # as after the shell saved the state file
    free_before = a.free_count()
    assert a.release("one") == [first]
    assert a.dirty, "a release must be written to the state file"
    assert a.free_count() == free_before + 1
    restored = IpamCore(A, 1, RANGE, FoundingMode(SEED, seeds=(A, B, C)), reclaim_after=60.0)
    restored.load(a.dump())
    assert restored.lookup("one") == [] and restored.lookup("two") == [second]
    assert set(restored.user_of) == {second}
    assert restored.release("two", first) == []  # not its address: frees nothing
    assert restored.lookup("two") == [second]


def test_release_forgets_pending_requests() -> None:
    net = seeded(A, B, C)
    a = net.cores[A]
    assert a.allocate("waiting", None, net.now) is None
    assert a.release("waiting") == []
    assert a.pending == {}


def test_lookup() -> None:
    net = seeded(A, B, C)
    a = net.cores[A]
    assert a.lookup("nobody") == []
    address = allocate_settled(net, a, "web")
    result = a.lookup("web")
    assert result == [address]
    result.append(1)
    assert a.lookup("web") == [address], "lookup returns a copy"


# --- consensus founding ------------------------------------------------------------------


def consensus_net() -> CoreNet:
    return CoreNet([A, B, C], FoundingMode(CONSENSUS, electors=3))


def test_consensus_founding_is_lazy() -> None:
    net = consensus_net()
    net.settle(2.0)
    for name, core in net.cores.items():
        assert core.ring is None
        assert core.cluster_id == ""
        status = core.status(net.now, net.reachable(name))
        assert status["state"].startswith("idle")
        assert status["state"] == "idle (the ring is founded at the first allocation)"
        assert status["mode"] == "consensus of 3 (quorum 2)"
        assert status["cluster_id"] == ""
        assert status["peers"] == []
        assert status["unreachable_ratio"] == 0.0


def test_consensus_founds_one_ring_after_a_request() -> None:
    net = consensus_net()
    net.settle(1.0)
    a = net.cores[A]
    assert a.allocate("web", None, net.now) is None
    assert a.status(net.now, net.reachable(A))["state"] == "awaiting consensus"
    net.settle(3.0)
    rings = [core.ring for core in net.cores.values()]
    assert all(ring is not None for ring in rings)
    assert rings[0] == rings[1] == rings[2]
    cluster_ids = {core.cluster_id for core in net.cores.values()}
    assert len(cluster_ids) == 1 and "" not in cluster_ids
    assert a.ring is not None and a.ring.members == (A, B, C)
    assert a.pending == {}
    (address,) = a.lookup("web")
    assert a.ring.entry_at(address).owner == A
    assert all(core.founding.paxos is None for core in net.cores.values())


def test_consensus_waits_for_a_quorum_of_electors() -> None:
    net = consensus_net()
    net.groups[B] = 1
    net.groups[C] = 2
    a = net.cores[A]
    assert a.allocate("web", None, net.now) is None
    net.settle(3.0)
    assert all(core.ring is None for core in net.cores.values())
    (reason,) = reasons(a)
    assert reason.startswith("awaiting consensus to found the address ring: 1 of 2 votes needed")
    assert "(1 elector heard from)" in reason
    status = a.status(net.now, net.reachable(A))
    assert status["state"] == "awaiting consensus"
    assert [p["reason"] for p in status["pending"]] == [reason]
    # B comes into reach: a quorum of two founds the ring; C joins it later.
    net.groups[B] = 0
    net.sync_all()
    net.settle(3.0)
    assert a.ring is not None and a.ring.members == (A, B)
    assert net.cores[B].cluster_id == a.cluster_id
    assert net.cores[C].ring is None
    (address,) = a.lookup("web")
    net.groups[C] = 0
    net.sync_all()
    net.settle(1.0)
    assert net.cores[C].ring == a.ring
    assert net.cores[C].cluster_id == a.cluster_id
    assert a.lookup("web") == [address]


# --- observers and seed non-members ------------------------------------------------------


def _learn_then_get_a_donation(net: CoreNet, newcomer: IpamCore, waiting: str) -> None:
    founders = [name for name in net.cores if name != newcomer.me]
    assert newcomer.ring is None
    assert newcomer.allocate("web", None, net.now) is None
    assert reasons(newcomer) == [waiting]
    status = newcomer.status(net.now, net.reachable(newcomer.me))
    assert status["state"] == "waiting to learn the ring from a peer"
    assert "ring" in waiting
    net.deliver()  # the founders' first broadcast
    assert newcomer.ring == net.cores[founders[0]].ring
    assert newcomer.ring is not None and newcomer.ring.owned_by(newcomer.me) == []
    free_before = {name: net.cores[name].free_count() for name in founders}
    asked = None
    for _ in range(20):
        net.step()
        reason = reasons(newcomer)[0] if newcomer.pending else ""
        match = re.match(r"asked peer ([0-9a-f:]{17}) for space", reason)
        if match:
            asked = match.group(1)
            break
    assert asked in {format_peer_name(name) for name in founders}, reasons(newcomer)
    net.settle(3.0)
    assert newcomer.pending == {}
    (address,) = newcomer.lookup("web")
    assert newcomer.ring.entry_at(address).owner == newcomer.me
    donors = [name for name in founders if net.cores[name].counters.donations_given]
    assert [format_peer_name(name) for name in donors] == [asked]
    donor = net.cores[donors[0]]
    given_away = free_before[donor.me] - donor.free_count()
    assert 0 < given_away <= (free_before[donor.me] + 1) // 2  # half, rounded up
    received = sum(end - e.token for e, end in newcomer.ring.owned_by(newcomer.me))
    assert given_away <= received <= given_away + 1  # + the broadcast address, if at the end
    assert newcomer.counters.donations_asked == 1


def test_observer_learns_the_ring_then_gets_a_donation() -> None:
    net = seeded(A, B)
    d = join(net, D, FoundingMode(OBSERVER))
    assert d.status(net.now, net.reachable(D))["mode"] == "observer"
    _learn_then_get_a_donation(
        net, d, "waiting to learn the address ring from a peer (this router observes)"
    )


def test_seed_non_member_learns_the_ring_then_gets_a_donation() -> None:
    net = seeded(A, B, D, seeds=(A, B))
    d = net.cores[D]
    _learn_then_get_a_donation(net, d, "waiting to learn the address ring from a seed peer")


def test_no_reachable_peer_has_free_space() -> None:
    net = seeded(A, B)
    d = join(net, D, FoundingMode(OBSERVER))
    net.settle(0.5)
    assert d.ring is not None
    net.groups[D] = 1
    assert d.allocate("web", None, net.now) is None
    net.settle(1.0)
    assert reasons(d) == [
        "no reachable peer has free space in the range; unreachable: "
        "peer 5a:00:00:00:00:01 (127 free when last heard), "
        "peer 5a:00:00:00:00:02 (127 free when last heard)"
    ]
    assert d.take_unicasts() == []
    status = d.status(net.now, net.reachable(D))
    assert [p["reason"] for p in status["pending"]] == reasons(d)


def test_a_peer_without_space_denies_a_request() -> None:
    net = seeded(A, B)
    d = join(net, D, FoundingMode(OBSERVER))
    net.settle(0.5)
    d.on_unicast(A, SpaceMessage(SPACE_REQUEST, RANGE.start, RANGE.end).encode(), net.now)
    assert d.take_unicasts() == [
        (A, SpaceMessage(SPACE_DENIED, RANGE.start, RANGE.end,
                         "it has no free addresses in the range").encode())
    ]


# --- rmpeer and reset --------------------------------------------------------------------


def test_rmpeer() -> None:
    net = seeded(A, B, C)
    a = net.cores[A]
    net.settle(0.5)
    with pytest.raises(IpamError) as caught:
        a.rmpeer(A, net.reachable(A))
    assert isinstance(caught.value, InvalidRequestError)
    assert str(caught.value) == "rmpeer names another peer; to leave, use `meshrouter reset`"
    with pytest.raises(IpamError) as caught:
        a.rmpeer(B, net.reachable(A))
    assert isinstance(caught.value, ConflictError)
    assert str(caught.value).startswith("peer 5a:00:00:00:00:02 is reachable; stop it")
    net.down.add(C)
    assert a.rmpeer(C, net.reachable(A)) == 86
    assert a.ring is not None and C not in a.ring.owners()
    assert [(e.token, end) for e, end in a.ring.owned_by(A)] == [
        OWN_RANGES[A], OWN_RANGES[C]
    ]
    assert a.rmpeer(C, net.reachable(A)) == 0, "nothing left to take"
    net.settle(0.5)
    assert net.cores[B].ring == a.ring


def test_rmpeer_without_a_ring() -> None:
    core = consensus_net().cores[A]
    with pytest.raises(IpamError) as caught:
        core.rmpeer(B, set())
    assert isinstance(caught.value, ConflictError)


def test_reset_hands_everything_to_a_reachable_peer() -> None:
    net = seeded(A, B, C)
    a = net.cores[A]
    for i in range(3):
        allocate_settled(net, a, f"c{i}")
    assert a.allocate("waiting", RANGE.parse_subnet("10.32.0.64/28"), net.now) is None
    assert a.reset(net.reachable(A)) == C  # A's heir
    assert a.allocations == {} and a.user_of == {} and a.pending == {}
    assert a.lookup("c0") == []
    assert a.ring is not None and a.ring.owned_by(A) == []
    net.settle(0.5)
    for core in net.cores.values():
        assert core.ring is not None
        assert core.ring.entry_at(RANGE.start).owner == C
        assert A not in core.ring.owners()
    assert a.reset(net.reachable(A)) is None, "nothing left to hand over"


def test_reset_refuses_without_a_reachable_peer() -> None:
    net = seeded(A, B, C)
    a = net.cores[A]
    address = allocate_settled(net, a, "web")
    net.groups[A] = 1
    ring_before = a.ring.copy() if a.ring is not None else None
    with pytest.raises(IpamError) as caught:
        a.reset(net.reachable(A))
    assert isinstance(caught.value, ConflictError)
    assert str(caught.value).startswith("no reachable peer to hand our address ranges to")
    assert a.lookup("web") == [address]
    assert a.ring == ring_before


# --- persistence -------------------------------------------------------------------------


def test_dump_and_load_round_trip() -> None:
    net = seeded(A, B, C)
    a = net.cores[A]
    addresses = [allocate_settled(net, a, f"c{i}") for i in range(5)]
    blob = a.dump()
    restored = IpamCore(A, 9999, RANGE, a.mode, reclaim_after=60.0, pool=4)
    restored.load(blob)
    assert restored.ring == a.ring
    assert restored.allocations == a.allocations
    assert restored.user_of == a.user_of
    assert restored.floor == a.floor == {}
    assert restored.dump() == blob
    # Back in the net, it goes on without handing anything out twice.
    net.cores[A] = restored
    restored.start(net.now)
    assert restored.ring == a.ring, "start keeps a loaded ring"
    assert all(restored.lookup(f"c{i}") == [addresses[i]] for i in range(5))
    more = [allocate_settled(net, restored, f"d{i}") for i in range(5)]
    assert not set(more) & set(addresses)


def test_floors_survive_dump_and_load() -> None:
    net = consensus_net()
    a = net.cores[A]
    a.allocate("web", None, net.now)
    net.settle(3.0)
    reborn = join(net, A, a.mode)
    net.sync_all()
    assert reborn.floor != {}
    blob = reborn.dump()
    again = IpamCore(A, 1, RANGE, a.mode, reclaim_after=60.0, pool=4)
    again.load(blob)
    assert again.floor == reborn.floor
    assert again.ring == reborn.ring
    assert again.dump() == blob


def _blob(**fields: object) -> bytes:
    value: dict[str, object] = {"format": STATE_FORMAT, "range": "10.32.0.0/24", "ring": None,
                                "allocations": {}, "floor": []}
    value.update(fields)
    return pack(value)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "IPAM state file is corrupt: undecodable msgpack"),
        (b"\xc1garbage", "IPAM state file is corrupt: undecodable msgpack"),
        (pack([1, 2, 3]), "IPAM state file is corrupt: ipam state file: expected"),
        (_blob(format=2), "IPAM state file has format 2; this version reads format 1"),
        (pack({"range": "10.32.0.0/24"}),
         "IPAM state file has format None; this version reads format 1"),
        (_blob(range="10.40.0.0/24"),
         "IPAM state file was written for --ipalloc-range 10.40.0.0/24, but the router runs "
         "with 10.32.0.0/24; start with the same range, or `meshrouter reset` to leave the "
         "old cluster"),
        (_blob(ring=["not", "a", "ring"]), "IPAM state file is corrupt: ring: expected 6"),
        (_blob(allocations=[]), "IPAM state file is corrupt: allocations: expected"),
        (_blob(allocations={"web": "10.32.0.1"}),
         "IPAM state file is corrupt: addresses: expected"),
        (_blob(allocations={"web": ["10.32.0.1"]}),
         "IPAM state file is corrupt: address: expected"),
        (_blob(allocations={"": [5]}), "IPAM state file is corrupt: container ID must be"),
        (_blob(allocations={7: [5]}), "IPAM state file is corrupt: container: expected"),
        (_blob(floor={"1": 2}), "IPAM state file is corrupt: floor: expected"),
        (_blob(floor=[[1, 2, 3]]), "IPAM state file is corrupt: "),
        (_blob(floor=[5]), "IPAM state file is corrupt: "),
        (_blob(floor=[["a", 2]]), "IPAM state file is corrupt: token: expected"),
    ],
)
def test_load_refuses_a_bad_state_file(blob: bytes, message: str) -> None:
    net = seeded(A, B, C)
    a = net.cores[A]
    address = allocate_settled(net, a, "web")
    before = a.dump()
    with pytest.raises(StateFileError) as caught:
        a.load(blob)
    assert str(caught.value).startswith(message)
    # Never a silent reset: the core is exactly as before.
    assert a.dump() == before
    assert a.lookup("web") == [address]


@settings(deadline=None, max_examples=150)
@given(st.binary(max_size=64))
@example(_blob(ring=Ring.found(RANGE.start, RANGE.end, [A]).to_wire(),
               allocations={"web": [RANGE.start + 5]}, floor=[[RANGE.start, RANGE.start + 9]]))
def test_load_of_random_bytes_raises_only_state_file_error(blob: bytes) -> None:
    """Refused with StateFileError only; what is loaded is saved again as it was."""
    core = IpamCore(A, 1, RANGE, FoundingMode(SEED, seeds=(A,)), reclaim_after=60.0)
    try:
        core.load(blob)
    except StateFileError:
        return
    again = IpamCore(A, 1, RANGE, FoundingMode(SEED, seeds=(A,)), reclaim_after=60.0)
    again.load(core.dump())
    assert (again.ring, again.allocations, again.floor) == (core.ring, core.allocations,
                                                            core.floor)


def test_load_refuses_a_ring_of_another_range() -> None:
    other = Ring.found(RANGE.start + 256, RANGE.end + 256, [A])
    core = IpamCore(A, 1, RANGE, FoundingMode(SEED, seeds=(A,)), reclaim_after=60.0)
    with pytest.raises(StateFileError):
        core.load(_blob(ring=other.to_wire()))


# --- restarting without the state file: floors ------------------------------------------


def _old_incarnation_allocations(net: CoreNet, count: int) -> list[int]:
    a = net.cores[A]
    return [allocate_settled(net, a, f"old-{i}") for i in range(count)]


def _assert_no_reuse(net: CoreNet, reborn: IpamCore, old: list[int]) -> None:
    new = [allocate_settled(net, reborn, f"new-{i}") for i in range(len(old))]
    assert not set(new) & set(old), sorted(format_address(a) for a in set(new) & set(old))
    assert reborn.ring is not None
    entry = reborn.ring.entry_at(new[0])
    assert entry.owner == A
    assert min(new) >= reborn.floor[entry.token] > max(old)


def test_restart_without_data_never_reuses_the_old_reservation() -> None:
    net = consensus_net()
    net.cores[A].allocate("seed", None, net.now)
    net.settle(3.0)
    old = _old_incarnation_allocations(net, 6) + net.cores[A].lookup("seed")
    reborn = join(net, A, net.cores[A].mode)
    assert reborn.ring is None
    net.sync_all()
    assert reborn.ring is not None
    token = RANGE.start
    assert reborn.floor == {token: reborn.ring.reclaim_floor(token)}
    assert reborn.floor[token] > max(old)
    assert reborn.allocations == {}
    # Nothing below the floor can be claimed: the old incarnation may have handed it out.
    with pytest.raises(IpamError) as caught:
        reborn.claim("web", old[0], net.now)
    assert isinstance(caught.value, ConflictError)
    assert "may still be in use from before this router restarted without its data" in str(
        caught.value
    )
    free = reborn.free_count()
    assert free == OWN_RANGES[A][1] - reborn.floor[token]
    _assert_no_reuse(net, reborn, old)


def test_seed_founder_restart_without_data_never_reuses_the_old_reservation() -> None:
    net = seeded(A, B, C)
    old = _old_incarnation_allocations(net, 6)
    reborn = join(net, A, net.cores[A].mode)
    net.sync_all()
    _assert_no_reuse(net, reborn, old)


def test_restart_without_data_learning_a_stale_ring_first() -> None:
    net = consensus_net()
    net.cores[A].allocate("seed", None, net.now)
    net.settle(3.0)
    stale = net.cores[B].state().copy()
    old = _old_incarnation_allocations(net, 10) + net.cores[A].lookup("seed")
    reborn = join(net, A, net.cores[A].mode)
    reborn.receive(stale, net.now)  # from a neighbour that is behind
    net.sync_all()
    _assert_no_reuse(net, reborn, old)


# --- cluster mismatch --------------------------------------------------------------------


def test_a_ring_of_another_cluster_is_refused() -> None:
    net = seeded(A, B, C)
    a = net.cores[A]
    ring_before = a.ring.copy() if a.ring is not None else None
    stranger = CoreNet([D], FoundingMode(SEED, seeds=(D,))).cores[D]
    with pytest.raises(ClusterMismatchError) as caught:
        a.receive(stranger.state().copy(), net.now)
    message = str(caught.value)
    assert f"the peer's address ring belongs to cluster {stranger.cluster_id}" in message
    assert f"ours to cluster {a.cluster_id}" in message
    assert "5a:00:00:00:00:04" in message and "`meshrouter reset`" in message
    assert a.ring == ring_before


def test_a_ring_of_another_range_is_refused() -> None:
    net = seeded(A, B, C)
    a = net.cores[A]
    stranger = CoreNet([D], FoundingMode(SEED, seeds=(D,)), cidr="10.40.0.0/24").cores[D]
    with pytest.raises(ClusterMismatchError) as caught:
        a.receive(stranger.state().copy(), net.now)
    assert str(caught.value) == (
        "the peer allocates from another range (10.40.0.0/24, ours is 10.32.0.0/24); "
        "give both the same --ipalloc-range"
    )


def test_a_ringless_core_refuses_a_ring_of_another_range() -> None:
    core = consensus_net().cores[A]
    stranger = CoreNet([D], FoundingMode(SEED, seeds=(D,)), cidr="10.40.0.0/24").cores[D]
    with pytest.raises(ClusterMismatchError):
        core.receive(stranger.state().copy(), 0.0)
    assert core.ring is None


def test_a_ringless_core_names_the_peers_range_as_the_peers() -> None:
    core = consensus_net().cores[A]
    stranger = CoreNet([D], FoundingMode(SEED, seeds=(D,)), cidr="10.40.0.0/24").cores[D]
    with pytest.raises(ClusterMismatchError) as caught:
        core.receive(stranger.state().copy(), 0.0)
    assert str(caught.value) == (
        "the peer allocates from another range (10.40.0.0/24, ours is 10.32.0.0/24); "
        "give both the same --ipalloc-range"
    )


def test_a_ringless_core_joins_the_first_ring_of_its_range() -> None:
    core = consensus_net().cores[A]
    other = Ring.found(RANGE.start, RANGE.end, [B, C])
    relay = core.receive(IpamState(other), 0.0)
    assert relay is not None and relay.ring == other
    assert core.ring == other and core.founding.paxos is None
    assert core.cluster_id == other.cluster_id
    assert core.receive(IpamState(other), 0.0) is None


# --- status ------------------------------------------------------------------------------


def test_status_with_an_unreachable_owner() -> None:
    net = seeded(A, B, C)
    net.down.add(C)
    a = net.cores[A]
    assert a.allocate("web", None, net.now) is None  # A's heir is C: it cannot ack
    net.step(0.1)
    net.step(0.1)
    # Meanwhile A asks B, reachable, for space (its heir, C, may be gone for long).
    assert reasons(a) == [
        "waiting for peer 5a:00:00:00:00:03 to acknowledge a reservation; it has been "
        "unreachable for 0s (its space is reclaimed after 60s); meanwhile asked peer "
        "5a:00:00:00:00:02 for space 0.0s ago"
    ]
    status = a.status(net.now, net.reachable(A))
    assert [p["reason"] for p in status["pending"]] == reasons(a)
    assert status["pending"][0]["waiting_s"] == pytest.approx(0.2)
    net.settle(3.0)
    status = a.status(net.now, net.reachable(A))
    assert status["range"] == "10.32.0.0/24"
    assert status["cluster_id"] == a.cluster_id != ""
    assert status["mode"] == "seed (3 founders)"
    assert status["state"] == "ready"
    assert status["reclaim_after"] == 60.0
    assert status["unreachable_ratio"] == 86 / 256
    rows = {row["peer"]: row for row in status["peers"]}
    assert list(rows) == ["5a:00:00:00:00:01", "5a:00:00:00:00:02", "5a:00:00:00:00:03"]
    # B gave A the top half of its space, with B as its heir: web got an address there.
    assert rows["5a:00:00:00:00:01"]["ranges"] == ["10.32.0.0-10.32.0.84",
                                                   "10.32.0.127-10.32.0.169"]
    assert rows["5a:00:00:00:00:01"]["size"] == 85 + 43
    assert rows["5a:00:00:00:00:01"]["free"] == a.free_count() == 84 + 43 - 1
    assert rows["5a:00:00:00:00:01"]["reachable"] is True
    assert a.lookup("web") == [ip("10.32.0.127")]
    assert rows["5a:00:00:00:00:02"]["ranges"] == ["10.32.0.85-10.32.0.126"]
    assert rows["5a:00:00:00:00:02"]["size"] == 42
    assert rows["5a:00:00:00:00:02"]["free"] == 42
    assert rows["5a:00:00:00:00:02"]["reachable"] is True
    assert rows["5a:00:00:00:00:03"]["ranges"] == ["10.32.0.170-10.32.0.255"]
    assert rows["5a:00:00:00:00:03"]["size"] == 86
    assert rows["5a:00:00:00:00:03"]["free"] is None, "C never published a note"
    assert rows["5a:00:00:00:00:03"]["reachable"] is False
    assert all(row["frozen"] == 0 for row in rows.values())
    assert status["pending"] == []
    assert (status["allocated"], status["containers"]) == (1, 1)


def test_status_when_everyone_is_reachable() -> None:
    net = seeded(A, B, C)
    a = net.cores[A]
    allocate_settled(net, a, "web")
    status = a.status(net.now, net.reachable(A))
    assert status["unreachable_ratio"] == 0.0
    assert all(row["reachable"] for row in status["peers"])
    assert [row["size"] for row in status["peers"]] == [85, 85, 86]
    assert sum(row["size"] for row in status["peers"]) == RANGE.size
    assert status["pending"] == []
    assert (status["allocated"], status["containers"]) == (1, 1)
    assert status["counters"]["allocations"] == 1


def test_two_peers_cut_apart_are_told_to_use_rmpeer() -> None:
    """With two owners neither side of a split is a majority: nobody can reclaim,
    and the waiting request says what the operator can do."""
    net = seeded(A, B)
    net.settle(1.0)
    net.groups[B] = 1
    net.settle(1.0)
    a = net.cores[A]
    for i in range(40):  # use up the acknowledged pool
        if a.allocate(f"c{i}", None, net.now) is None:
            break
    net.settle(3.0)
    (reason,) = reasons(a)
    assert reason.startswith("waiting for peer 5a:00:00:00:00:02 to acknowledge a reservation")
    assert "no majority" in reason and "meshrouter rmpeer 5a:00:00:00:00:02" in reason
    assert a.counters.reclaims == 0


def test_an_heir_never_acknowledges_an_entry_holding_addresses_it_handed_out() -> None:
    # A peer acting on a stale ring (e.g. restarted without its data) carved an entry
    # for D out of A's space, over an address A has handed out.  A is that entry's
    # heir; acknowledging D's reservation would let D hand the same address out.
    net = seeded(A, B, C)
    a = net.cores[A]
    used = allocate_settled(net, a, "one")
    assert a.ring is not None
    forged = a.ring.copy()
    mine = forged.entries[RANGE.start]
    forged.entries[RANGE.start] = Entry(mine.token, A, mine.version + 5, used)
    forged.entries[used] = Entry(used, D, 1, used + 4, origin=(RANGE.start, mine.version + 5))
    forged._changed()
    c_note = forged.notes[C]
    forged.notes[C] = Note(c_note.version + 1, c_note.free,
                           {**c_note.acks, RANGE.start: Ack(A, mine.version + 5, used)})
    a.receive(IpamState(forged, None), net.now)
    assert a.ring.heir(used) == A and a.ring.origin_settled(used)
    for _ in range(3):
        a.tick(net.now, net.reachable(A) | {D}, net.rng)
    assert used not in a.ring.notes[A].acks, "A acknowledged an entry over its own address"
    assert a.ring.effective_reserved(used) == used  # so D can hand out nothing there
