"""IPAM under pressure (issue 12), at the core: one router takes a whole small range
through donations, pool addresses included; the pool shrinks for small ranges; the
reason a request waits is true; a full range refuses at once."""

from __future__ import annotations

import pytest

from meshrouter.errors import IpamUnavailableError
from meshrouter.ipam.core import FULL_GRACE
from meshrouter.ipam.donation import RANGE_FULL
from meshrouter.ipam.founding import SEED, FoundingMode
from meshrouter.names import PeerName, format_peer_name
from tests.ipam.harness import CoreNet

NAMES = [PeerName(0x5A0000000001 + i) for i in range(4)]


def burst(net: CoreNet, name: PeerName, count: int, rounds: int = 400) -> list[int]:
    """``count`` requests at once at one core, settled until none waits."""
    core = net.cores[name]
    for i in range(count):
        core.allocate(f"b{i}", None, net.now)
    for _ in range(rounds):
        if not core.pending:
            break
        net.step(0.1)
        for reason in (p.reason for p in core.pending.values()):
            free_elsewhere = sum(
                c.free_count() for n, c in net.cores.items() if n != name)
            if free_elsewhere:
                assert "no reachable peer has free space" not in reason, reason
    return [a for i in range(count) for a in core.lookup(f"b{i}")]


@pytest.mark.parametrize(("cidr", "peers"), [
    ("10.32.0.0/24", 4), ("10.32.0.0/26", 3), ("10.32.0.0/26", 4),
    ("10.32.0.0/27", 3), ("10.32.0.0/28", 3), ("10.32.0.0/28", 4),
])
def test_one_router_gets_every_address_of_a_small_range(cidr: str, peers: int) -> None:
    names = NAMES[:peers]
    net = CoreNet(list(names), FoundingMode(SEED, seeds=tuple(names)), cidr=cidr, pool=16)
    net.settle(1.0)
    usable = net.range.size - 2
    got = burst(net, names[0], usable)
    assert len(got) == usable and len(set(got)) == usable
    assert all(net.range.usable(a) for a in got)
    core = net.cores[names[0]]
    net.settle(1.0)  # the donors publish their (now zero) free counts
    # Full: the next request is refused within FULL_GRACE, saying why.
    assert core.allocate("one-more", None, net.now) is None
    assert [p.reason for p in core.pending.values()] == [RANGE_FULL]
    net.now += FULL_GRACE + 0.1  # a tick past the grace (float sums of 0.1 s steps)
    with pytest.raises(IpamUnavailableError, match=RANGE_FULL):
        core.allocate("one-more", None, net.now)
    assert core.pending == {}
    # Donors gave their pool addresses too, and every ring agrees on who owns what.
    net.sync_all()
    rings = {c.ring.fingerprint() for c in net.cores.values() if c.ring is not None}
    assert len(rings) == 1
    ring = core.ring
    assert ring is not None
    assert all(ring.entry_at(a).owner == names[0] for a in got)


def test_the_pool_shrinks_for_small_ranges() -> None:
    for cidr, peers, pool in [("10.32.0.0/16", 4, 16), ("10.32.0.0/24", 4, 8),
                              ("10.32.0.0/26", 3, 2), ("10.32.0.0/28", 4, 1)]:
        names = NAMES[:peers]
        net = CoreNet(list(names), FoundingMode(SEED, seeds=tuple(names)), cidr=cidr,
                      pool=16)
        net.settle(1.0)
        ring = net.cores[names[0]].ring
        assert ring is not None
        for name in names:
            (entry, _end), *_ = ring.owned_by(name)
            # Reserved ahead of demand at rest: the pool, i.e. min(16, size / (8 peers));
            # the first entry holds the unusable network address too, and a pool of
            # one refills when it has no usable address left.
            extra = 1 if entry.token == net.range.start and pool == 1 else 0
            assert entry.reserved - entry.token == pool + extra, (cidr, peers)


def test_a_donor_with_one_free_address_gives_it() -> None:
    names = NAMES[:3]
    net = CoreNet(list(names), FoundingMode(SEED, seeds=tuple(names)),
                  cidr="10.32.0.0/28", pool=16)
    net.settle(1.0)
    b, c = net.cores[names[1]], net.cores[names[2]]
    # Fill B and C but one address of C.
    for core in (b, c):
        for i in range(8):
            if core.free_count() <= (1 if core is c else 0):
                break
            core.allocate(f"own{i}", None, net.now)
            net.settle(0.5)
    assert b.free_count() == 0 and c.free_count() == 1
    a = net.cores[names[0]]
    assert a.free_count() == 4
    got = burst(net, names[0], 5)  # its own 4, and C's last one
    assert len(got) == 5 and len(set(got)) == 5
    assert c.free_count() == 0 and c.counters.donations_given == 1
    net.settle(1.0)
    assert a.allocate("one-more", None, net.now) is None
    net.now += FULL_GRACE + 0.1  # a tick past the grace (float sums of 0.1 s steps)
    with pytest.raises(IpamUnavailableError, match=RANGE_FULL):
        a.allocate("one-more", None, net.now)


def test_the_range_is_full_only_when_every_owner_was_heard_from() -> None:
    """An owner out of reach may have freed addresses since its last note: a
    router that cannot hear from it must not refuse "the range is full" (seed
    139: refused so 2 s after a heal, before the mesh re-formed, while a peer
    across it had space); the request waits, naming the peer."""
    names = NAMES[:3]
    net = CoreNet(list(names), FoundingMode(SEED, seeds=tuple(names)), cidr="10.32.0.0/28",
                  pool=16)
    net.settle(1.0)
    usable = net.range.size - 2
    keeper = net.cores[names[2]]
    for i in range(2):  # so that it keeps an entry of its own
        keeper.allocate(f"own{i}", None, net.now)
    net.settle(1.0)
    assert len(burst(net, names[0], usable - 2)) == usable - 2
    net.settle(1.0)
    net.groups[names[2]] = 1  # out of reach; its note still says 0 free
    net.settle(1.0)
    core = net.cores[names[0]]
    assert core.allocate("one-more", None, net.now) is None
    (reason,) = [p.reason for p in core.pending.values()]
    assert reason == ("no reachable peer has free space in the range; unreachable: "
                      f"peer {format_peer_name(names[2])} (0 free when last heard)")
    net.now += FULL_GRACE + 0.1
    assert core.allocate("one-more", None, net.now) is None, "waits, not refused as full"
    net.groups[names[2]] = 0
    net.settle(1.0)
    net.now += FULL_GRACE + 0.1
    with pytest.raises(IpamUnavailableError, match=RANGE_FULL):
        core.allocate("one-more", None, net.now)
