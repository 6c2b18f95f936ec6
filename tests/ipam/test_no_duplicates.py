"""No address ever has two users: IpamCores under partitions, crashes and recoveries.

The safety property is checked after every action: no address is in the ``user_of``
of two cores -- down ones included, since a core that comes back still has its
allocations -- and every core's allocations lie in entries its own ring says it owns.
After healing everything and settling, all rings agree and conserve the range.

A "crash" keeps the core's whole state: its ring and allocations, as a restart with
its data dir would, and its in-memory timers, as a paused process would.  By
default a topology change is followed by an anti-entropy exchange (``sync_all``)
before the next tick, as the gossip core's digests on a new connection do; the
``exchange="after_tick"`` schedules let one tick run first, as the router does when
it wakes IPAM on a reachability change before the digests have been answered.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshrouter.errors import IpamError, IpamUnavailableError
from meshrouter.ipam.core import IpamCore
from meshrouter.ipam.founding import parse_founding
from meshrouter.ipam.ring import Ring
from meshrouter.names import PeerName, format_peer_name
from tests.ipam.harness import CoreNet

BASE_NAME = 0x5A0000000000
RECLAIM_AFTER = 5.0
Action = tuple[Any, ...]


# --- set-up and invariants -------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    peers: int = 4
    founders: str = "all"  # "all"; "first" or "two": the others need donations
    cidr: str = "10.32.0.0/26"
    pool: int = 2
    exchange: str = "immediate"  # or "after_tick"

    def names(self) -> list[PeerName]:
        return [PeerName(BASE_NAME + i) for i in range(1, self.peers + 1)]

    def make_net(self, seed: int = 0) -> CoreNet:
        names = self.names()
        seeds = names if self.founders == "all" else names[: 2 if self.founders == "two" else 1]
        mode = parse_founding("seed=" + ",".join(format_peer_name(n) for n in seeds), 0)
        return CoreNet(list(names), mode, cidr=self.cidr, reclaim_after=RECLAIM_AFTER,
                       pool=self.pool, seed=seed)


def assert_no_duplicates(net: CoreNet, context: str = "") -> None:
    users: dict[int, PeerName] = {}
    for name, core in net.cores.items():
        for address, container in core.user_of.items():
            assert address not in users, (
                f"{context}: {net.range.format(address)} is used by "
                f"{format_peer_name(users[address])} and by {format_peer_name(name)} "
                f"({container})"
            )
            users[address] = name
            assert core.allocations[container].count(address) == 1, context
            if core.ring is not None:
                owner = core.ring.entry_at(address).owner
                assert owner == name, (
                    f"{context}: {format_peer_name(name)} uses {net.range.format(address)} "
                    f"but its own ring says {format_peer_name(owner)} owns it"
                )
        assert core.counters.conflicts == 0, f"{context}: conflicts at {format_peer_name(name)}"


def assert_conserved(ring: Ring) -> None:
    tokens = ring.tokens()
    assert tokens[0] == ring.start
    assert tokens == sorted(ring.entries)
    cursor = ring.start
    for entry, end in ring.ordered():
        assert entry.token == cursor < end
        cursor = end
    assert cursor == ring.end


def heal_and_settle(net: CoreNet) -> None:
    for name in net.cores:
        net.groups[name] = 0
    net.down.clear()
    net.sync_all()
    net.settle(30.0, dt=0.5)
    net.sync_all()
    net.settle(1.0, dt=0.5)
    net.sync_all()


def assert_converged(net: CoreNet, context: str = "") -> Ring:
    rings = [core.ring for core in net.cores.values()]
    assert all(ring is not None for ring in rings), f"{context}: a core never got the ring"
    fingerprints = {ring.fingerprint() for ring in rings if ring is not None}
    assert len(fingerprints) == 1, f"{context}: rings disagree after settling"
    ring = rings[0]
    assert ring is not None
    assert_conserved(ring)
    for name, core in net.cores.items():
        for address in core.user_of:
            assert net.range.usable(address)
            assert ring.entry_at(address).owner == name, context
    return ring


# --- schedules -------------------------------------------------------------------------


class Runner:
    """Plays a schedule of actions on a CoreNet, checking safety after each one."""

    def __init__(self, setup: Setup, seed: int = 0, context: str = "") -> None:
        self.setup = setup
        self.net = setup.make_net(seed)
        self.names = setup.names()
        self.context = context
        self.containers = 0
        self.exchange_due = False

    def core(self, index: int) -> IpamCore | None:
        name = self.names[index % len(self.names)]
        return None if name in self.net.down else self.net.cores[name]

    def topology_changed(self) -> None:
        if self.setup.exchange == "immediate":
            self.net.sync_all()
        else:
            self.exchange_due = True

    def step(self, dt: float) -> None:
        self.net.step(dt)
        if self.exchange_due:
            self.exchange_due = False
            self.net.sync_all()

    def play(self, actions: list[Action]) -> None:
        for number, action in enumerate(actions):
            self.do(action)
            assert_no_duplicates(self.net, f"{self.context} after action {number} {action}")

    def do(self, action: Action) -> None:
        kind, *args = action
        net = self.net
        if kind == "alloc":
            core = self.core(args[0])
            if core is not None:
                self.containers += 1
                try:
                    core.allocate(f"c{self.containers}", None, net.now)
                except IpamUnavailableError:
                    pass  # the range is full: refused at once, fine
        elif kind == "burst":
            core = self.core(args[0])
            for _ in range(args[1] if core is not None else 0):
                assert core is not None
                self.containers += 1
                try:
                    core.allocate(f"c{self.containers}", None, net.now)
                except IpamUnavailableError:
                    pass
        elif kind == "claim":
            core = self.core(args[0])
            if core is not None:
                self.containers += 1
                address = net.range.start + 1 + args[1] % (net.range.size - 2)
                try:
                    core.claim(f"c{self.containers}", address, net.now)
                except IpamError:
                    pass  # someone else's address, or in use: refused, fine
        elif kind == "release":
            core = self.core(args[0])
            if core is not None and core.allocations:
                containers = sorted(core.allocations)
                core.release(containers[args[1] % len(containers)])
        elif kind == "step":
            self.step(args[0])
        elif kind == "settle":
            end = net.now + args[0]
            while net.now < end:
                self.step(0.5)
        elif kind == "partition":
            for name, group in zip(self.names, args[0], strict=False):
                net.groups[name] = group
            self.topology_changed()
        elif kind == "heal":
            for name in self.names:
                net.groups[name] = 0
            self.topology_changed()
        elif kind == "crash":
            net.down.add(self.names[args[0] % len(self.names)])
        elif kind == "recover":
            net.down.discard(self.names[args[0] % len(self.names)])
            self.topology_changed()
        elif kind == "sync":
            net.sync_all()
        else:  # pragma: no cover
            raise AssertionError(f"unknown action {action}")

    def finish(self) -> Ring:
        heal_and_settle(self.net)
        assert_no_duplicates(self.net, f"{self.context} after healing")
        return assert_converged(self.net, self.context)


def random_action(rng: random.Random, peers: int) -> Action:
    kind = rng.choice(
        ["alloc"] * 5 + ["claim", "release", "release"] + ["step"] * 3
        + ["partition", "heal", "crash", "recover", "settle"]
    )
    index = rng.randrange(peers)
    if kind in ("alloc", "crash", "recover"):
        return (kind, index)
    if kind == "claim":
        return (kind, index, rng.randrange(1 << 16))
    if kind == "release":
        return (kind, index, rng.randrange(1 << 16))
    if kind == "step":
        return (kind, rng.choice([0.1, 0.5, 1.0, 3.0, 6.0]))
    if kind == "settle":
        return (kind, rng.choice([1.0, 5.0, 10.0]))
    if kind == "partition":
        return (kind, tuple(rng.randrange(3) for _ in range(peers)))
    return (kind,)


def random_setup(rng: random.Random, founders: str, exchange: str = "immediate") -> Setup:
    return Setup(
        peers=rng.randint(3, 5),
        founders=founders,
        cidr=rng.choice(["10.32.0.0/26", "10.32.0.0/27"]),
        pool=rng.randint(2, 4),
        exchange=exchange,
    )


def run_seed(seed: int, founders: str, exchange: str = "immediate", length: int = 150) -> None:
    rng = random.Random(seed)
    setup = random_setup(rng, founders, exchange)
    runner = Runner(setup, seed, f"seed {seed} ({setup})")
    runner.play([random_action(rng, setup.peers) for _ in range(length)])
    runner.finish()


# --- random schedules ------------------------------------------------------------------

KINDS = (
    ["alloc"] * 6 + ["burst", "claim", "release", "release", "step", "step", "settle"]
    + ["settle", "partition", "heal", "crash", "recover", "sync"]
)


@st.composite
def actions(draw: st.DrawFn) -> Action:
    kind = draw(st.sampled_from(KINDS))
    peer = draw(st.integers(0, 4))
    if kind in ("alloc", "crash", "recover"):
        return (kind, peer)
    if kind in ("claim", "release"):
        return (kind, peer, draw(st.integers(0, 255)))
    if kind == "burst":
        return (kind, peer, draw(st.integers(3, 20)))
    if kind == "step":
        return (kind, draw(st.sampled_from([0.1, 0.5, 1.0, 3.0, 6.0])))
    if kind == "settle":
        return (kind, draw(st.sampled_from([1.0, 5.0, 10.0])))
    if kind == "partition":
        return (kind, tuple(draw(st.lists(st.integers(0, 2), min_size=5, max_size=5))))
    return (kind,)


# Every founding and exchange setting under which a bug was once found: a single
# founder or two (the others live on donations, and a partition can give each side a
# majority of voters), and a tick before the anti-entropy exchange; small ranges
# (/26../28, where every peer soon lives on donations) and bursts at one peer.
setups = st.builds(
    Setup,
    peers=st.integers(3, 5),
    founders=st.sampled_from(["all", "first", "two"]),
    cidr=st.sampled_from(["10.32.0.0/26", "10.32.0.0/27", "10.32.0.0/28"]),
    pool=st.integers(2, 4),
    exchange=st.sampled_from(["immediate", "after_tick"]),
)


@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(setups, st.lists(actions(), min_size=30, max_size=90))
def test_no_address_has_two_users_under_any_schedule(setup: Setup, schedule: list[Action]) -> None:
    runner = Runner(setup, 0, f"{setup}")
    runner.play(schedule)
    runner.finish()


@pytest.mark.parametrize("founders", ["all", "first"])
def test_no_address_has_two_users_in_seeded_schedules(founders: str) -> None:
    for seed in range(50):
        run_seed(seed, founders)


# --- deterministic scenarios -----------------------------------------------------------


def allocate_many(net: CoreNet, names: list[PeerName], count: int, prefix: str) -> None:
    """Round-robin allocations, settling in between so pending ones can complete."""
    for i in range(count):
        name = names[i % len(names)]
        net.cores[name].allocate(f"{prefix}{i}", None, net.now)
        net.settle(0.5, dt=0.1)
        assert_no_duplicates(net, f"{prefix}{i}")


def test_majority_reclaims_a_partitioned_minoritys_free_space() -> None:
    setup = Setup(peers=4, founders="all", cidr="10.32.0.0/26", pool=2)
    net = setup.make_net()
    a, b, m, d = setup.names()
    net.settle(1.0)
    allocate_many(net, [a, b, m, d], 8, "before")
    minority = dict(net.cores[m].allocations)
    assert minority
    ring = net.cores[a].ring
    assert ring is not None
    token = next(e.token for e, _ in ring.owned_by(m))
    m_end = ring.range_end(token)
    assert ring.heir(token) == b

    net.groups[m] = 1
    net.sync_all()
    net.cores[m].allocate("cut-off", None, net.now)  # at most from its acknowledged pool
    net.settle(RECLAIM_AFTER + 2.0)
    assert_no_duplicates(net, "partitioned")
    heir_ring = net.cores[b].ring
    assert heir_ring is not None
    assert net.cores[b].counters.reclaims == 1
    frozen = heir_ring.entries[token]
    assert frozen.owner == m and frozen.frozen
    floor = frozen.reserved
    assert token < floor < m_end
    assert heir_ring.entries[floor].owner == b
    assert net.cores[m].counters.reclaims == 0

    # The majority runs out of its own space and uses what it reclaimed.
    allocate_many(net, [a, b, d], 40, "after")
    used = {
        address for name in (a, b, d) for address in net.cores[name].user_of
        if floor <= address < m_end
    }
    assert used, "the reclaimed space was never used"

    for name in net.cores:
        net.groups[name] = 0
    net.sync_all()
    net.settle(30.0, dt=0.5)
    net.sync_all()
    assert_no_duplicates(net, "healed")
    final = assert_converged(net)
    for container, addresses in minority.items():
        assert net.cores[m].allocations[container] == addresses  # kept everything
    assert final.entries[token].frozen
    assert all(address < floor for address in net.cores[m].user_of if token <= address < m_end)


def test_nobody_reclaims_in_a_two_two_partition() -> None:
    setup = Setup(peers=4, founders="all", cidr="10.32.0.0/26", pool=2)
    net = setup.make_net()
    a, b, c, d = setup.names()
    net.settle(1.0)
    allocate_many(net, [a, b, c, d], 4, "before")
    before = {name: net.cores[name].ring for name in net.cores}
    assert all(ring is not None for ring in before.values())
    net.groups.update({a: 0, b: 0, c: 1, d: 1})
    net.sync_all()
    for i in range(12):
        for name in (a, b, c, d):
            net.cores[name].allocate(f"split{i}", None, net.now)
        net.settle(1.0)
        assert_no_duplicates(net, f"split round {i}")
    net.settle(4 * RECLAIM_AFTER)
    for name, core in net.cores.items():
        assert core.counters.reclaims == 0, format_peer_name(name)
        assert core.ring is not None
        assert not any(e.frozen for e in core.ring.entries.values())
        pending = [p.reason for p in core.pending.values()]
        assert all("waiting for peer" in r or "no reachable" in r for r in pending), pending
    heal_and_settle(net)
    assert_no_duplicates(net, "healed")
    final = assert_converged(net)
    assert not any(e.frozen for e in final.entries.values())
    assert final.owners() == {a, b, c, d}


def test_the_heir_takes_the_free_space_of_a_peer_that_died_for_good() -> None:
    setup = Setup(peers=4, founders="all", cidr="10.32.0.0/26", pool=3)
    net = setup.make_net()
    a, b, dead, d = setup.names()
    net.settle(1.0)
    allocate_many(net, [a, b, dead, d], 8, "before")
    kept = dict(net.cores[dead].user_of)
    assert kept
    ring = net.cores[b].ring
    assert ring is not None
    token = next(e.token for e, _ in ring.owned_by(dead))
    dead_end = ring.range_end(token)
    assert ring.heir(token) == b

    net.down.add(dead)
    net.settle(RECLAIM_AFTER - 1.0)
    assert all(core.counters.reclaims == 0 for core in net.cores.values())  # not yet
    net.settle(2.0)
    assert net.cores[b].counters.reclaims == 1
    ring = net.cores[b].ring
    assert ring is not None
    floor = ring.entries[token].reserved
    assert ring.entries[token].frozen and ring.entries[floor].owner == b
    assert max(kept) < floor

    allocate_many(net, [a, b, d], 45, "after")
    users = {
        address: name for name in (a, b, d) for address in net.cores[name].user_of
    }
    assert any(floor <= address < dead_end for address in users)
    assert net.cores[dead].user_of == kept  # what it had stays its own
    live = [net.cores[n] for n in (a, b, d)]
    fingerprints = set()
    net.sync_all()
    for core in live:
        assert core.ring is not None
        fingerprints.add(core.ring.fingerprint())
        assert_conserved(core.ring)
    assert len(fingerprints) == 1


# --- regressions of fixed bugs ---

VOTER_BUG = (
    "Fixed bug: IpamCore._in_majority counts the owners of live entries in the local view, and "
    "a partitioned side grows that set by donating to its own peers (_donate needs no "
    "majority): both sides of a partition then see a majority, reclaim each other's space "
    "and acknowledge overlapping reservations"
)
STALE_HEIR_BUG = (
    "Fixed bug: IpamCore._reclaim acts on the local ring as soon as a majority is reachable: a "
    "peer back from a partition (or a pause) reclaims, as the heir it was, an entry whose "
    "heir changed meanwhile, before anti-entropy brings it the majority's ring (the router "
    "ticks IPAM on every reachability change)"
)


def test_two_two_partition_with_joiners_that_get_donations() -> None:
    # Two founders A, B and two joiners C, D; the partition {A, C} | {B, D} gives each
    # joiner a donation from its side's founder: each side then counts 2 of 3 voters.
    setup = Setup(peers=4, founders="two", cidr="10.32.0.0/26", pool=2)
    net = setup.make_net()
    a, b, c, d = setup.names()
    net.settle(1.0)
    for i in range(3):
        net.cores[a].allocate(f"a{i}", None, net.now)
        net.cores[b].allocate(f"b{i}", None, net.now)
    net.settle(1.0)
    net.groups.update({a: 0, c: 0, b: 1, d: 1})
    net.sync_all()
    net.cores[c].allocate("c", None, net.now)
    net.cores[d].allocate("d", None, net.now)
    net.settle(3 * RECLAIM_AFTER)
    reclaims = {format_peer_name(n): core.counters.reclaims for n, core in net.cores.items()}
    for i in range(30):
        for name in (a, b, c, d):
            net.cores[name].allocate(f"x{i}", None, net.now)
        net.settle(1.0)
        assert_no_duplicates(net, f"round {i}, reclaims {reclaims}")
    assert sum(reclaims.values()) == 0, reclaims


def test_a_stale_heir_back_from_a_partition_does_not_reclaim() -> None:
    setup = Setup(peers=5, founders="all", cidr="10.32.0.0/27", pool=2)
    net = setup.make_net()
    p1, p2, p3, p4, p5 = setup.names()
    # {1, 3, 5} | {2, 4}: 1 takes 2's (unused) entry and becomes 3's heir.
    net.groups.update({p1: 0, p3: 0, p5: 0, p2: 1, p4: 1})
    net.sync_all()
    net.settle(RECLAIM_AFTER + 1.0)
    net.cores[p3].allocate("three", None, net.now)  # acknowledged by 1, its heir now
    net.settle(1.0)
    assert net.cores[p3].user_of
    # {1, 2, 5} | {3, 4}: 2 still believes it is 3's heir; it ticks before the digests.
    net.groups.update({p1: 0, p2: 0, p5: 0, p3: 1, p4: 1})
    net.step(0.1)
    net.sync_all()
    net.settle(2.0)
    for i in range(6):
        net.cores[p2].allocate(f"two{i}", None, net.now)
        net.settle(0.5)
        assert_no_duplicates(net, f"allocation {i} at 2")


# Seeds (of run_seed) on which the random schedules once failed, each showing one of
# the two bugs named below (both fixed): kept as regression tests.
@pytest.mark.parametrize("seed", [408, 595, 1172])
def test_known_failing_seeds_single_founder(seed: int) -> None:
    run_seed(seed, "first")


@pytest.mark.parametrize("seed", [0, 84, 89])
def test_known_failing_seeds_tick_before_exchange(seed: int) -> None:
    run_seed(seed, "all", exchange="after_tick")
