"""The window between a partition and its detection (campaign seeds 3 and 106, small ranges).

A router notices a partition only after the heartbeat timeout; until then its
ticks still count the peers on the other side as reachable, while no message
crosses.  Both schedules below are the failing campaign schedules cut down to
the peers and steps that matter, replayed on ``IpamCore``s with the harness's
``noticed`` grouping (messages stop at once, reachability lags).

1. Both sides gain an owner in the window (seed 3).  Six founders split 3|3,
   and each side donates once before noticing: counted by owners, each side
   then had 4 of 7 and both reclaimed; one side's reclaim made its peer the
   heir of an entry the other side's heir reclaimed -- the same addresses
   handed out on both sides.  Counted by addresses (conserved by donations),
   neither side has a majority.
2. An heir acknowledges in the window, and the majority later reaches the
   acknowledged owner through a new heir (seed 106).  The minority heir H
   acknowledges X's larger reservation before noticing the split; the
   majority reclaims H's space, which makes its reclaimer the heir of X's
   entry -- one that never saw H's window acknowledgement.  It must not
   reclaim X's entry (it only knows a floor below what X uses): X's heir was
   out of its reach while X was.

The judge is the safety property itself: no address in the ``user_of`` of two
cores, and every core's addresses inside entries its own ring says it owns.
"""

from __future__ import annotations

from meshrouter.ipam.core import IpamCore
from meshrouter.ipam.founding import parse_founding
from meshrouter.ipam.messages import SPACE_REQUEST, SpaceMessage
from meshrouter.names import PeerName, format_peer_name
from tests.ipam.harness import CoreNet, assert_safe

BASE = 0x5B0000000000
RECLAIM_AFTER = 5.0


def peer(i: int) -> PeerName:
    return PeerName(BASE + i)


def network(names: list[PeerName], founders: list[PeerName], cidr: str) -> CoreNet:
    mode = parse_founding("seed=" + ",".join(format_peer_name(n) for n in founders), 0)
    net = CoreNet(list(names), mode, cidr=cidr, reclaim_after=RECLAIM_AFTER, pool=4, seed=1)
    net.settle(2.0)
    return net


def split(net: CoreNet, side: dict[PeerName, int]) -> None:
    """Cut the network into ``side`` groups; the cores do not notice yet."""
    net.noticed = dict(net.groups)
    net.groups.update(side)


def notice(net: CoreNet) -> None:
    net.noticed = None


def fill(net: CoreNet, core: IpamCore, prefix: str, rounds: int = 3) -> None:
    """Allocate on ``core`` until it is out of addresses (waiting requests are kept)."""
    for r in range(rounds):
        for i in range(16):
            core.allocate(f"{prefix}{r}-{i}", None, net.now)
        net.settle(2.0, dt=0.2)


def test_owners_gained_on_both_sides_in_the_window_make_no_two_majorities() -> None:
    # Ring order by name: f_b, e_a, e_b, x_a, g_a, h_b (equal shares of a /26, 32|32).
    f_b, e_a, e_b, x_a, g_a, h_b, n_a, n_b = (peer(i) for i in range(1, 9))
    founders = [f_b, e_a, e_b, x_a, g_a, h_b]
    net = network([*founders, n_a, n_b], founders, "10.32.0.0/26")
    side_a, side_b = [e_a, x_a, g_a, n_a], [f_b, e_b, h_b, n_b]
    split(net, {**{n: 0 for n in side_a}, **{n: 1 for n in side_b}})
    # In the window each side gives space to its owner-less peer (one donation each).
    request = SpaceMessage(SPACE_REQUEST, net.range.start, net.range.end).encode()
    net.cores[g_a].on_unicast(n_a, request, net.now)
    net.cores[h_b].on_unicast(n_b, request, net.now)
    net.step()
    for name, core in net.cores.items():
        assert core.ring is not None
        owners = core.ring.owners()
        assert (n_a in owners) == (name in side_a) and (n_b in owners) == (name in side_b)
    notice(net)
    net.settle(4 * RECLAIM_AFTER, dt=0.25)
    fill(net, net.cores[x_a], "x")
    fill(net, net.cores[e_b], "e")
    assert_safe(net)
    reclaimed = {name for name, core in net.cores.items() if core.counters.reclaims}
    assert not (reclaimed & set(side_a) and reclaimed & set(side_b)), (
        f"both sides reclaimed: {sorted(format_peer_name(n) for n in reclaimed)}")


def test_a_new_heir_never_reclaims_past_an_acknowledgement_given_in_the_window() -> None:
    # Ring order by name: e, h, x, f, g (a /26 in fifths).  {h, x} is cut off with
    # 26 of 64 addresses; {e, f, g} keeps the majority.  e is h's heir, h is x's.
    e, h, x, f, g = (peer(i) for i in range(1, 6))
    net = network([e, h, x, f, g], [e, h, x, f, g], "10.32.0.0/26")
    split(net, {h: 1, x: 1})
    core_x = net.cores[x]
    for i in range(6):  # more than its acknowledged pool: x extends, h acknowledges
        core_x.allocate(f"w{i}", None, net.now)
    net.settle(2.0)
    window = set(core_x.user_of)
    assert len(window) == 6, "x got its window addresses (h acknowledged in the window)"
    notice(net)
    net.settle(4 * RECLAIM_AFTER, dt=0.25)
    assert net.cores[e].counters.reclaims >= 1, "e reclaims the space of h, the lost heir"
    core_e = net.cores[e]
    assert core_e.ring is not None
    assert all(core_e.ring.entry_at(a).owner == x for a in window), (
        "the majority took addresses x handed out under h's window acknowledgement")
    fill(net, core_e, "e")
    fill(net, net.cores[f], "f")
    assert_safe(net)
