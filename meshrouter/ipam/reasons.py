"""Theory of operation: what ``status ipam`` says, and why a request waits.

Every waiting request carries a reason the user can act on: founding votes
missing, learning the ring after a start without state, a reservation waiting
for a named heir (and whether anyone can ever reclaim that heir's space), or
the donation under way.  The texts are built here, from the ring, the founding
vote and the majority clock; the status report gathers them with the per-peer
table of the ring.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

from meshrouter.ipam.address_range import format_address
from meshrouter.ipam.founding import CONSENSUS, SEED, FoundingMode
from meshrouter.ipam.majority import Majority
from meshrouter.ipam.paxos import Paxos
from meshrouter.ipam.ring import Ring
from meshrouter.names import PeerName, format_peer_name

if TYPE_CHECKING:
    from meshrouter.ipam.core import IpamCore

UNSYNCED = "learning the current address ring from peers (this router started without state)"


def ack_reason(ring: Ring, token: int, now: float, majority: Majority) -> str:
    """Why a reservation of the entry at ``token`` is not usable yet."""
    heir = ring.heir(token)
    if heir is None:
        return "reserving addresses"
    if ring.split_lost(token):
        origin = ring.entries[token].origin
        assert origin is not None
        donor = ring.entries[origin[0]].owner
        return (f"the space peer {format_peer_name(donor)} gave this router was reclaimed "
                "by a peer that had not heard of the donation, so it can never be "
                "acknowledged")
    since = majority.unreachable_since.get(heir)
    if since is None:
        return f"waiting for peer {format_peer_name(heir)} to acknowledge a reservation"
    waiting = (
        f"waiting for peer {format_peer_name(heir)} to acknowledge a reservation; it has "
        f"been unreachable for {now - since:.0f}s"
    )
    if not majority.holds(ring):
        return (
            f"{waiting}; no majority: the reachable peers own at most half of the live "
            "addresses, so nobody "
            "can reclaim it: if it is gone for good, run `meshrouter rmpeer "
            f"{format_peer_name(heir)}`"
        )
    return f"{waiting} (its space is reclaimed after {majority.reclaim_after:.0f}s)"


def no_ring_reason(paxos: Paxos | None, mode: FoundingMode) -> str:
    if paxos is not None and mode.kind == CONSENSUS:
        votes, quorum = paxos.votes()
        known = len({name for name, _ in paxos.knowledge.claims})
        return (
            f"awaiting consensus to found the address ring: {max(votes, 1)} of {quorum} "
            f"votes needed ({known} elector{'s' if known != 1 else ''} heard from)"
        )
    if mode.kind == SEED:
        return "waiting to learn the address ring from a seed peer"
    return "waiting to learn the address ring from a peer (this router observes)"


def peer_rows(ring: Ring, me: PeerName, own_free: int,
              reachable: AbstractSet[PeerName]) -> tuple[list[dict[str, Any]], int]:
    """One row per owner (its ranges, sizes, free count); and the unreachable space."""
    peers: dict[PeerName, dict[str, Any]] = {}
    unreachable_space = 0
    for entry, end in ring.ordered():
        row = peers.setdefault(entry.owner, {
            "peer": format_peer_name(entry.owner),
            "ranges": [], "size": 0, "reserved": 0, "frozen": 0,
            "free": ring.notes[entry.owner].free if entry.owner in ring.notes else None,
            "reachable": entry.owner == me or entry.owner in reachable,
        })
        row["ranges"].append(f"{format_address(entry.token)}-{format_address(end - 1)}")
        row["size"] += end - entry.token
        row["reserved"] += min(entry.reserved, end) - entry.token
        if entry.frozen:
            row["frozen"] += end - entry.token
        if not row["reachable"]:
            unreachable_space += end - entry.token
    if me in peers:
        peers[me]["free"] = own_free
    return [peers[name] for name in sorted(peers)], unreachable_space


def status(core: IpamCore, now: float, reachable: AbstractSet[PeerName]) -> dict[str, Any]:
    """The ``status ipam`` report of one router."""
    ring = core.ring
    rows: list[dict[str, Any]] = []
    unreachable_space = 0
    if ring is not None:
        rows, unreachable_space = peer_rows(ring, core.me, core.free_count(), reachable)
        state = "ready"
    elif core.mode.kind == CONSENSUS and (core.pending or core.primed):
        state = "awaiting consensus"
    elif core.mode.kind == CONSENSUS:
        state = "idle (the ring is founded at the first allocation)"
    else:
        state = "waiting to learn the ring from a peer"
    counters = core.counters
    return {
        "range": str(core.range),
        "cluster_id": core.cluster_id,
        "mode": core.mode.describe(),
        "state": state,
        "reclaim_after": core.reclaim_after,
        "peers": rows,
        "unreachable_ratio": unreachable_space / core.range.size if ring is not None else 0.0,
        "allocated": len(core.user_of),
        "containers": len(core.allocations),
        "pending": [
            {
                "container": p.container,
                "request": p.kind if p.address is None else f"claim {format_address(p.address)}",
                "waiting_s": round(now - p.since, 3),
                "reason": p.reason,
            }
            for p in core.pending.values()
        ],
        "recent_reclaims": [
            {"ago_s": round(now - at, 1), "from": peer}
            for at, peer in counters.reclaim_log[-5:]
        ],
        "reclaim_votes": core.votes.describe(now),
        "counters": {
            "allocations": counters.allocations,
            "releases": counters.releases,
            "reclaims": counters.reclaims,
            "donations_given": counters.donations_given,
            "donations_asked": counters.donations_asked,
            "conflicts": counters.conflicts,
        },
    }
