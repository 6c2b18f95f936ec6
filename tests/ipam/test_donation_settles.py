"""A donor splits only space whose split can settle (campaign seed 141, small ranges).

The recipient of a split may use it once the donor's heir has acknowledged the
split (``Ring.origin_settled``), and an heir acknowledges an entry only once
the split that made it is settled in turn.  In seed 141 the heir at the root
of such a chain was across a partition: donors kept splitting entries that
could never be acknowledged while it lasted, requesters took the pieces and
waited on them ("waiting for peer 06 to acknowledge a reservation") and were
refused after 30 s, while other peers on their side could have given space
that settles.  The rule (``Donations.splittable``): a donor refuses to split an
entry that is not settled or whose heir it cannot reach, says why, and the
campaign's judge (``sim.invariants.ipam_donors``) applies the same rule.

Founders in name order share a /26: D [0,16), F [16,32), G [32,48), H [48,64);
each one's heir is the one before it, D's is H (the ring wraps).  H is cut off
alone; {D, F, G} keep 48 of 64 addresses, a majority.
"""

from __future__ import annotations

from types import SimpleNamespace

from meshrouter.ipam.founding import parse_founding
from meshrouter.ipam.messages import SPACE_DENIED, SPACE_REQUEST, SpaceMessage
from meshrouter.ipam.service import IpamService
from meshrouter.names import PeerName, format_peer_name
from sim.invariants import ipam_donors
from tests.ipam.harness import CoreNet, assert_safe

BASE = 0x5E0000000000
RECLAIM_AFTER = 60.0  # no reclaim during these tests


def peer(i: int) -> PeerName:
    return PeerName(BASE + i)


D, F, G, H, R, Q = (peer(i) for i in range(1, 7))


def network() -> CoreNet:
    founders = [D, F, G, H]
    mode = parse_founding("seed=" + ",".join(format_peer_name(n) for n in founders), 0)
    net = CoreNet([D, F, G, H, R, Q], mode, cidr="10.32.0.0/26", reclaim_after=RECLAIM_AFTER,
                  pool=4, seed=1)
    net.settle(2.0)
    return net


def ask(net: CoreNet, donor: PeerName, requester: PeerName) -> str:
    """``requester`` asks ``donor`` for space; the denial's reason, or "" if it gave."""
    core = net.cores[donor]
    core.on_unicast(requester, SpaceMessage(SPACE_REQUEST, net.range.start,
                                            net.range.end).encode(), net.now)
    answers = [SpaceMessage.decode(p) for dst, p in core.take_unicasts() if dst == requester]
    denials = [m.reason for m in answers if m.kind == SPACE_DENIED]
    if not denials:
        net.step()
    return denials[0] if denials else ""


def donors(net: CoreNet, requester: PeerName) -> list[PeerName]:
    """The campaign's judge, over the requester's side of the partition."""
    hosts = []
    for name, core in net.cores.items():
        if name not in net.reachable(requester):
            continue
        service = IpamService(address_range=net.range, mode=core.mode,
                              reclaim_after=RECLAIM_AFTER, tick=1.0)
        service.core = core
        router = SimpleNamespace(service=lambda _n, s=service: s)
        hosts.append(SimpleNamespace(name=name, router=router))
    cluster = SimpleNamespace(components=lambda: [hosts])
    return ipam_donors(cluster, requester)  # type: ignore[arg-type]


def test_a_donor_whose_heir_is_out_of_reach_refuses_and_is_not_judged_a_donor() -> None:
    net = network()
    net.groups[H] = 1  # noticed at once
    net.settle(0.5)
    why = ask(net, D, R)
    assert f"cannot reach peer {format_peer_name(H)}" in why
    assert D not in donors(net, R)
    assert {F, G} <= set(donors(net, R)), "peers whose space settles are still donors"
    assert ask(net, F, R) == "", "F's heir D is reachable: F gives"
    net.groups[H] = 0
    net.settle(0.5)
    assert ask(net, D, Q) == "", "back in reach: D gives again"


def test_a_split_that_cannot_settle_is_not_split_again() -> None:
    net = network()
    # H is cut off; before anyone notices, D gives R a split that only H can settle.
    net.noticed = dict(net.groups)
    net.groups[H] = 1
    assert ask(net, D, R) == ""
    net.noticed = None
    net.settle(1.0)
    ring = net.cores[R].ring
    assert ring is not None
    (split, _end), = [(e.token, end) for e, end in ring.owned_by(R)]
    assert not ring.origin_settled(split)
    # R, asked in turn, refuses to pass on space nobody can acknowledge.
    assert "not acknowledged yet" in ask(net, R, Q)
    judged = donors(net, Q)
    assert R not in judged and D not in judged
    # Q's request is met from space that settles (F's or G's), not left waiting.
    core_q = net.cores[Q]
    core_q.allocate("c", None, net.now)
    net.settle(10.0, dt=0.25)
    assert core_q.lookup("c"), core_q.pending
    assert_safe(net)
