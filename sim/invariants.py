"""Invariants checked at quiescence, in a registry that later features extend.

Each invariant is a function of the cluster returning violations; a violation
names the peers involved, and ``check_all`` stamps every one with the seed so a
failure can be replayed exactly.  For large clusters the pairwise checks look at
a deterministic sample of sources/origins (``sample``) to stay affordable.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from meshrouter.gossip.broadcast_plan import split_forest
from meshrouter.ipam.address_range import format_address
from meshrouter.ipam.ring import FREEZE_BUMP, Entry, Ring
from meshrouter.ipam.service import ipam_of
from meshrouter.names import PeerName
from meshrouter.node.router import Router
from sim.cluster import SimCluster


@dataclass(frozen=True)
class Violation:
    invariant: str
    peers: tuple[str, ...]
    message: str
    seed: int | None = None

    def __str__(self) -> str:
        seed = f" (seed {self.seed})" if self.seed is not None else ""
        return f"[{self.invariant}] {self.message}; peers: {', '.join(self.peers)}{seed}"


Check = Callable[[SimCluster, int], list[Violation]]
INVARIANTS: dict[str, Check] = {}


def invariant(name: str) -> Callable[[Check], Check]:
    """Register a check under ``name`` (later features add their own)."""

    def register(check: Check) -> Check:
        INVARIANTS[name] = check
        return check

    return register


def _component_routers(cluster: SimCluster) -> list[dict[PeerName, Router]]:
    result = []
    for component in cluster.components():
        result.append({h.name: h.router for h in component if h.router is not None})
    return result


def _disagreement(
    cluster: SimCluster, invariant: str, what: str, views: Mapping[Any, list[PeerName]],
    size: int,
) -> list[Violation]:
    """One violation when a component holds more than one view, naming the peers
    outside the largest group."""
    if len(views) <= 1:
        return []
    groups = sorted(views.values(), key=len)
    odd = [cluster.describe(n) for g in groups[:-1] for n in g][:10]
    return [Violation(invariant, tuple(odd),
                      f"{len(views)} different {what} in a component of {size}")]


def _sample(names: list[PeerName], sample: int, seed: int) -> list[PeerName]:
    if len(names) <= sample:
        return names
    return sorted(random.Random(seed).sample(names, sample))


@invariant("topology-agreement")
def topology_agreement(cluster: SimCluster, sample: int) -> list[Violation]:
    """All live peers in a connected component hold the same records: exactly
    the component's live peers."""
    violations = []
    for routers in _component_routers(cluster):
        expected = set(routers)
        views: dict[int, list[PeerName]] = {}
        for name, router in sorted(routers.items()):
            views.setdefault(router.topology.fingerprint, []).append(name)
        violations += _disagreement(
            cluster, "topology-agreement", "topology views", views, len(routers)
        )
        for name, router in sorted(routers.items()):
            known = {record.name for record in router.topology.records()}
            if known != expected:
                missing = sorted(expected - known)[:5]
                extra = sorted(known - expected)[:5]
                violations.append(
                    Violation(
                        "topology-agreement",
                        (cluster.describe(name),),
                        f"view differs from the live component: missing "
                        f"{[cluster.describe(n) for n in missing]}, stale "
                        f"{[format(n, 'x') for n in extra]}",
                    )
                )
                break
    return violations


@invariant("unicast-routes")
def unicast_routes(cluster: SimCluster, sample: int) -> list[Violation]:
    """Following each router's own next hops reaches every peer of the
    component, without loops."""
    violations = []
    for routers in _component_routers(cluster):
        names = sorted(routers)
        for src in _sample(names, sample, cluster.seed):
            for dst in names:
                if dst == src:
                    continue
                path = [src]
                current = src
                while current != dst:
                    hop = routers[current].topology.routes().next_hop(dst)
                    if hop is None or hop not in routers:
                        violations.append(
                            Violation(
                                "unicast-routes",
                                tuple(cluster.describe(n) for n in (*path, dst)),
                                f"no route from {cluster.describe(current)} "
                                f"to {cluster.describe(dst)}",
                            )
                        )
                        break
                    if hop in path:
                        violations.append(
                            Violation(
                                "unicast-routes",
                                tuple(cluster.describe(n) for n in (*path, hop)),
                                f"routing loop toward {cluster.describe(dst)}",
                            )
                        )
                        break
                    path.append(hop)
                    current = hop
                if len(violations) >= 10:
                    return violations
    return violations


def _live_links(routers: Mapping[PeerName, Router]) -> dict[PeerName, set[PeerName]]:
    """The connections the routers actually hold, both ends confirmed."""
    links: dict[PeerName, set[PeerName]] = {name: set() for name in routers}
    for name, router in routers.items():
        for peer, conn in router.connections.items():
            other = routers.get(peer)
            if (conn.confirmed and other is not None and name in other.connections
                    and other.connections[name].confirmed):
                links[name].add(peer)
    return links


@invariant("unicast-routes-shortest")
def unicast_routes_shortest(cluster: SimCluster, sample: int) -> list[Violation]:
    """Each router's path to every peer of its component is as short as the live
    connections allow: the oracle is a BFS over the connections the routers
    actually hold (both ends confirmed), not over anybody's records."""
    violations = []
    for routers in _component_routers(cluster):
        links = _live_links(routers)
        names = sorted(routers)
        for src in _sample(names, sample, cluster.seed):
            distance = {src: 0}
            frontier = [src]
            while frontier:
                following = []
                for node in frontier:
                    for peer in links[node]:
                        if peer not in distance:
                            distance[peer] = distance[node] + 1
                            following.append(peer)
                frontier = following
            routes = routers[src].topology.routes()
            for dst in names:
                if dst == src or dst not in distance:
                    continue
                hops, current = 0, src
                while current != dst and hops <= len(names):
                    hop = routers[current].topology.routes().next_hop(dst)
                    if hop is None or hop not in links[current]:
                        break  # no route, or one over no live link: reported below
                    hops, current = hops + 1, hop
                if current != dst or hops != distance[dst]:
                    first = routes.next_hop(dst)
                    violations.append(Violation(
                        "unicast-routes-shortest",
                        (cluster.describe(src), cluster.describe(dst)),
                        f"path {cluster.describe(src)} -> {cluster.describe(dst)} "
                        + (f"takes {hops} hops" if current == dst else
                           f"stops at {cluster.describe(current)} after {hops} hops")
                        + f", the live connections allow {distance[dst]} (first hop "
                        f"{None if first is None else cluster.describe(first)})"))
                    if len(violations) >= 10:
                        return violations
    return violations


@invariant("broadcast-exactly-once")
def broadcast_exactly_once(cluster: SimCluster, sample: int) -> list[Violation]:
    """A broadcast from any origin, relayed by each router along its own
    broadcast tree, reaches every peer of the component exactly once."""
    violations = []
    for routers in _component_routers(cluster):
        names = sorted(routers)
        for origin in _sample(names, sample, cluster.seed + 1):
            received = dict.fromkeys(names, 0)
            received[origin] = 1
            frontier = [origin]
            while frontier:
                nxt = []
                for node in frontier:
                    for child in routers[node].topology.routes().broadcast_next_hops(origin):
                        if child in received:
                            received[child] += 1
                            if received[child] == 1:
                                nxt.append(child)
                frontier = nxt
            bad = [n for n, count in received.items() if count != 1]
            if bad:
                violations.append(
                    Violation(
                        "broadcast-exactly-once",
                        tuple(cluster.describe(n) for n in bad[:10]),
                        f"broadcast from {cluster.describe(origin)} reached "
                        f"{sum(1 for n in bad if received[n] == 0)} peers never and "
                        f"{sum(1 for n in bad if received[n] > 1)} more than once",
                    )
                )
                if len(violations) >= 10:
                    return violations
    return violations


@invariant("broadcast-plan-exactly-once")
def broadcast_plan_exactly_once(cluster: SimCluster, sample: int) -> list[Violation]:
    """The tree a router's own broadcast carries (``broadcast_plan``), followed
    hop by hop as forwarders follow it, reaches every peer of the component
    exactly once, each hop over a live connection."""
    violations = []
    for routers in _component_routers(cluster):
        links = _live_links(routers)
        names = sorted(routers)
        for origin in _sample(names, sample, cluster.seed + 2):
            topology = routers[origin].topology
            direct = topology.local_record.established_peers()
            plan = topology.routes().broadcast_plan(frozenset(direct))
            received = dict.fromkeys(names, 0)
            received[origin] = 1
            dead_hops = 0
            pending = [(origin, child, forest) for child, forest in plan or ()]
            while pending:
                sender, child, forest = pending.pop()
                if child not in links[sender]:
                    dead_hops += 1
                    continue
                if child in received:
                    received[child] += 1
                pending.extend((child, below, rest) for below, rest in split_forest(forest))
            bad = [n for n, count in received.items() if count != 1]
            if bad or dead_hops:
                violations.append(Violation(
                    "broadcast-plan-exactly-once",
                    tuple(cluster.describe(n) for n in bad[:10]),
                    f"the plan of {cluster.describe(origin)} reaches "
                    f"{sum(1 for n in bad if received[n] == 0)} peers never and "
                    f"{sum(1 for n in bad if received[n] > 1)} more than once, with "
                    f"{dead_hops} hops over no live connection"))
                if len(violations) >= 10:
                    return violations
    return violations


@invariant("ipam-no-duplicates")
def ipam_no_duplicates(cluster: SimCluster, sample: int) -> list[Violation]:
    """No address is allocated on two live peers (whatever the partitions)."""
    holders: dict[int, list[PeerName]] = {}
    for host in cluster.live():
        router = host.router
        service = ipam_of(router) if router is not None else None
        if service is None:
            continue
        for address in service.core.user_of:
            holders.setdefault(address, []).append(host.name)
    violations = []
    for address, names in sorted(holders.items()):
        if len(names) > 1:
            violations.append(
                Violation(
                    "ipam-no-duplicates",
                    tuple(cluster.describe(n) for n in names),
                    f"address {format_address(address)} is allocated on {len(names)} peers",
                )
            )
            if len(violations) >= 10:
                break
    return violations


@invariant("ipam-rings-agree")
def ipam_rings_agree(cluster: SimCluster, sample: int) -> list[Violation]:
    """Within a component, every peer holds the same ring (or none has one)."""
    violations = []
    for routers in _component_routers(cluster):
        views: dict[bytes, list[PeerName]] = {}
        for name, router in sorted(routers.items()):
            service = ipam_of(router)
            if service is None:
                continue
            ring = service.core.ring
            views.setdefault(ring.fingerprint() if ring is not None else b"", []).append(name)
        violations += _disagreement(cluster, "ipam-rings-agree", "rings", views, len(routers))
    return violations


def ipam_donors(cluster: SimCluster, requester: PeerName) -> list[PeerName]:
    """Live peers reachable from ``requester`` that could give it an address now.

    Worked out here from each peer's own state, not by asking its donation code:
    the peer holds a ring and has learned the current one, waits for no address
    itself, reaches the owners of a strict majority of the live (unfrozen) addresses
    of its ring (counted over its network component), and has an unfrozen entry with a usable
    address above every address it handed out there and above the entry's floor
    -- space it can give by a split without risking a duplicate.  Free addresses
    below ones in use are not counted: giving them would need a split in the
    middle of an entry, which donation does not do.  Nor is an entry made by a
    split whose donor entry was since frozen by a reclaim from a view without
    the split (the freeze's version is below the split's plus the freeze bump):
    the reclaimer took that space and may have handed it out (campaign seed 75).
    Nor, as donation rules (campaign seed 141), an entry made by a split its
    donor's heir has not acknowledged yet, or one whose heir is outside the
    component: space split from it could not be used until that changes.
    """
    component = next((c for c in cluster.components()
                      if any(h.name == requester for h in c)), [])
    names = {h.name for h in component}
    donors = []
    for host in component:
        service = ipam_of(host.router) if host.router is not None else None
        if host.name == requester or service is None:
            continue
        core = service.core
        ring = core.ring
        if ring is None or not core.synced or core.left:
            continue
        if any(p.kind == "allocate" for p in core.pending.values()):
            continue
        tokens = sorted(ring.entries)
        ends = [*tokens[1:], ring.end]
        live = [(ring.entries[t], end) for t, end in zip(tokens, ends, strict=True)
                if not ring.entries[t].frozen]
        if 2 * sum(end - e.token for e, end in live if e.owner in names) <= sum(
                end - e.token for e, end in live):
            continue
        for i, token in enumerate(tokens):
            entry = ring.entries[token]
            if entry.owner != host.name or entry.frozen:
                continue
            if entry.origin is not None:
                donor = ring.entries.get(entry.origin[0])
                if (donor is not None and donor.frozen
                        and donor.version < entry.origin[1] + FREEZE_BUMP):
                    continue  # a split the reclaim of its donor overtook
            if not _split_settled(ring, entry):
                continue
            heir = _heir_of(ring, tokens, i)
            if heir is not None and heir not in names:
                continue
            end = tokens[i + 1] if i + 1 < len(tokens) else ring.end
            used = [a for a in core.user_of if token <= a < end]
            # Above the token: an entry's first address goes only with the whole
            # entry, which donation may refuse (see ``Donations._may_transfer``).
            low = max(max(used) + 1 if used else token + 1, core.floor.get(token, token))
            if any(core.range.usable(a) for a in range(low, end)):
                donors.append(host.name)
                break
    return donors


def _heir_of(ring: Ring, tokens: list[int], i: int) -> PeerName | None:
    """The owner of the nearest entry before ``tokens[i]`` (wrapping) that is
    neither frozen nor of the same owner."""
    owner = ring.entries[tokens[i]].owner
    for step in range(1, len(tokens)):
        other = ring.entries[tokens[(i - step) % len(tokens)]]
        if other.owner != owner and not other.frozen:
            return other.owner
    return None


def _split_settled(ring: Ring, entry: Entry) -> bool:
    """Has the donor's heir acknowledged the split that made ``entry`` (or was
    the donor entry frozen by a reclaimer that knew it)?"""
    if entry.origin is None:
        return True
    donor_token, version = entry.origin
    donor = ring.entries.get(donor_token)
    if donor is None:
        return False
    if donor.frozen:
        return donor.version >= version + FREEZE_BUMP
    tokens = sorted(ring.entries)
    if _heir_of(ring, tokens, tokens.index(donor_token)) is None:
        return True
    return any((ack := note.acks.get(donor_token)) is not None and ack.version >= version
               for note in ring.notes.values())


def check_all(cluster: SimCluster, *, sample: int = 64) -> list[Violation]:
    """Run every registered invariant; each violation carries the seed."""
    found: list[Violation] = []
    for name in sorted(INVARIANTS):
        for violation in INVARIANTS[name](cluster, sample):
            found.append(
                Violation(violation.invariant, violation.peers, violation.message, cluster.seed)
            )
    return found
