"""Theory of operation: space leaving a peer by the operator's word.

``rmpeer`` takes every range of a peer the operator says is gone for good,
frozen ones included (the way out when no majority can reclaim, e.g. with two
peers); it refuses a reachable peer, whose allocations would then have two
users.  ``reset`` hands every live range of ours to one reachable peer -- the
heir of one of our entries if one is reachable, else another owner -- so the
router can leave its cluster and join another.  Both are ring edits only; the
coordinator drops the local allocations.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from meshrouter.errors import IpamConflictError, IpamInvalidError
from meshrouter.ipam.ring import Ring
from meshrouter.names import PeerName, format_peer_name


def remove_peer(ring: Ring | None, me: PeerName, name: PeerName,
                reachable: AbstractSet[PeerName]) -> int:
    """Take over every range of ``name``; return the number of addresses taken."""
    if ring is None:
        raise IpamConflictError("no address ring yet: nothing to take over")
    if name == me:
        raise IpamInvalidError("rmpeer names another peer; to leave, use `meshrouter reset`")
    if name in reachable:
        raise IpamConflictError(
            f"peer {format_peer_name(name)} is reachable; stop it (or run "
            "`meshrouter reset` on it) before removing it")
    return ring.take_over(name, me)


def hand_over(ring: Ring, me: PeerName, reachable: AbstractSet[PeerName]) -> PeerName | None:
    """Give every live range of ours to one reachable peer; return it (None: nothing
    to give).  Raises when there is space to give but no reachable peer."""
    ours = [e for e, _ in ring.owned_by(me) if not e.frozen]
    if not ours:
        return None
    live = sorted(p for p in reachable if p != me)
    if not live:
        raise IpamConflictError(
            "no reachable peer to hand our address ranges to; connect to the cluster "
            "first (or stop the router: its space is reclaimed automatically)")
    owners = ring.owners()
    heirs = [ring.heir(e.token) for e in ours]
    heir = next((h for h in heirs if h in live), None)
    if heir is None:
        heir = next((p for p in live if p in owners), live[0])
    for entry in ours:
        ring.transfer(entry.token, heir, me)
    return heir
