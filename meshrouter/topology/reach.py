"""Theory of operation: proving records still reachable after a change cut links.

Garbage collection (see ``limbo``) must know, after a change that removed a
link, whether the names at risk -- those that lost an incoming link or just
arrived -- are still reachable from us over listed connections.  The plain
answer is a search from us that stops once all of them are found; in a
random mesh of degree 24 the names at risk sit two or three hops away, so
that search visits most of the mesh.  In a join with a connection limit every
join evicts links, so it ran on most routers for most records (the largest
topology item of a 200-peer simulated join, 0.9 ms a call).

``ReachHints`` keeps, per router, a *hint* of each record's level (its
distance from us over listed connections, as last known) and proves a name
reachable by walking *towards* us instead: from the name to a record that
lists it as established (found among the name's own neighbours, since
established links are listed by both ends), preferring listers at lower
levels, until it meets us or a name already proven in this change.  Every
step is a listing in the records as they are now, so a walk that arrives is a
proof whatever the hints say; the hints only choose the direction, and with
levels that are roughly right the walk takes a few steps.  A walk never
revisits a name and never climbs above its current level, so it is bounded by
the records even when hints are wrong.  When some name cannot be proven the
answer comes from the search from us, which also refreshes every hint.

Most changes that do cut a name off are arrivals nobody lists yet (a new
peer's record ahead of the neighbour's that lists it; limbo parks it), and
showing a name unreachable from us is a search from us.  So each router also
counts, per name, the records it holds that list it (kept current on every
store and drop): an arrival no record lists is unreachable, found by one
lookup.  When every other target is proven reachable, those arrivals are all
that is unreachable: every record held before the change was reachable (GC
keeps only those), and a path it had can only break at a removed link, whose
far end is a target (see ``Topology._settle``) -- shown reachable again.

The answers are exactly those of ``limbo.unreachable``: nothing (every target
shown reachable), the unlisted arrivals, or, after the full search, every name
not reachable.  Pure data structures; ``Topology`` owns one, tells it every
record it stores or drops, and calls it from ``_settle``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from meshrouter.names import PeerName
from meshrouter.topology.records import PeerRecord

NO_LEVEL = 1 << 30
"""Level hint of a name never placed (an arrival not yet proven or searched)."""


class ReachHints:
    """Level hints by name, and the proofs and searches that use and update them."""

    __slots__ = ("_levels", "_listed", "proofs", "searches")

    def __init__(self, local: PeerName) -> None:
        self._levels: dict[PeerName, int] = {local: 0}
        self._listed: dict[PeerName, int] = {}  # records held that list the name
        self.proofs = 0    # changes settled by walks towards us
        self.searches = 0  # changes that needed the search from us

    def level(self, name: PeerName) -> int:
        return self._levels.get(name, NO_LEVEL)

    def written(self, previous: PeerRecord | None, record: PeerRecord | None) -> None:
        """The record held for a name went from ``previous`` to ``record`` (None:
        none held); a drop also forgets the name's hint."""
        listed = self._listed
        if previous is not None and (record is None
                                     or previous.connections is not record.connections):
            for conn in previous.connections:
                left = listed[conn.peer] - 1
                if left:
                    listed[conn.peer] = left
                else:
                    del listed[conn.peer]
            if record is None:
                self._levels.pop(previous.name, None)
                return
        if record is not None and (previous is None
                                   or previous.connections is not record.connections):
            for conn in record.connections:
                listed[conn.peer] = listed.get(conn.peer, 0) + 1

    def listers(self, name: PeerName) -> int:
        """How many held records list ``name`` (a record never lists itself)."""
        return self._listed.get(name, 0)

    def place(self, name: PeerName, lister: PeerName) -> None:
        """``name`` was shown reachable through ``lister``: one level below it."""
        levels = self._levels
        levels[name] = levels.get(lister, NO_LEVEL - 1) + 1

    def unreachable(self, records: Mapping[PeerName, PeerRecord], local: PeerName,
                    targets: Collection[PeerName], arrived: Collection[PeerName] = ()
                    ) -> list[PeerName]:
        """What ``limbo.unreachable(records, local, set(targets))`` answers for
        ``targets`` without ``local`` (as ``Topology._settle`` passes them): [] when
        every target with a record is reachable, else every unreachable name
        (sorted).  ``targets`` must hold every name that arrived (``arrived``, a
        subset) or lost a listing since every held record was last reachable.
        Walks towards us first; the search from us only if a walk fails."""
        listed = self._listed
        unlisted = {name for name in arrived
                    if name in records and name != local and name not in listed}
        rest = [name for name in targets if name not in unlisted]
        if self.prove(records, local, rest):
            self.proofs += 1
            return sorted(unlisted)
        self.searches += 1
        return self.search(records, local, targets)

    def prove(self, records: Mapping[PeerName, PeerRecord], local: PeerName,
              targets: Collection[PeerName]) -> bool:
        """True if a walk towards us succeeds from every target with a record.

        Targets that arrived together may lean on each other (a new peer's
        record listed only by another new one), so a target whose walk fails
        is tried again once another one has been proven.
        """
        pending = [name for name in targets if name in records and name != local]
        proven = {local}
        while pending:
            left = [name for name in pending if not self._walk(records, name, proven)]
            if len(left) == len(pending):
                return False
            pending = left
        return True

    def _walk(self, records: Mapping[PeerName, PeerRecord], start: PeerName,
              proven: set[PeerName]) -> bool:
        """Depth-first from ``start`` to a proven name, each step to a record that
        lists the current one as established and whose hint is not higher,
        lowest hint first; the names on the way are proven (and placed) on
        arrival."""
        if start in proven:
            return True
        levels = self._levels
        visited = {start}
        path = [start]
        options = [self._listers(records, start, proven, visited)]
        while path:
            if not options[-1]:
                path.pop()
                options.pop()
                continue
            step = options[-1].pop()
            if step in proven:
                level = levels.get(step, NO_LEVEL - 1)
                for name in reversed(path):
                    level += 1
                    levels[name] = level
                    proven.add(name)
                return True
            if step in visited:
                continue
            visited.add(step)
            path.append(step)
            options.append(self._listers(records, step, proven, visited))
        return False

    def _listers(self, records: Mapping[PeerName, PeerRecord], name: PeerName,
                 proven: set[PeerName], visited: set[PeerName]) -> list[PeerName]:
        """Records listing ``name`` as established, not above its hint, not visited:
        highest hint first (the walk pops from the end); a proven one alone."""
        levels = self._levels
        ceiling = levels.get(name, NO_LEVEL)
        found: list[tuple[int, PeerName]] = []
        for conn in records[name].connections:
            peer = conn.peer
            if peer in visited:
                continue
            held = records.get(peer)
            if held is None or name not in held.established_peers():
                continue
            if peer in proven:
                return [peer]
            level = levels.get(peer, NO_LEVEL)
            if level <= ceiling:
                found.append((level, peer))
        found.sort(reverse=True)
        return [peer for _, peer in found]

    def search(self, records: Mapping[PeerName, PeerRecord], local: PeerName,
               targets: Collection[PeerName] | None) -> list[PeerName]:
        """The search from us over every listed connection: exact levels for every
        reachable name; [] if every target (all names, when None) with a record
        is reachable, else every unreachable name, sorted."""
        levels = {local: 0}
        frontier = [local]
        level = 0
        while frontier:
            level += 1
            following: list[PeerName] = []
            for name in frontier:
                held = records.get(name)
                if held is None:
                    continue
                for conn in held.connections:
                    peer = conn.peer
                    if peer not in levels and peer in records:
                        levels[peer] = level
                        following.append(peer)
            frontier = following
        self._levels = levels
        if targets is not None and all(name in levels for name in targets if name in records):
            return []
        return sorted(name for name in records if name not in levels)
