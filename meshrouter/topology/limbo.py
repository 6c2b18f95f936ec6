"""Theory of operation: records we cannot reach, and where they wait.

``Topology`` keeps only records reachable from us by following the connections
records list (garbage collection); ``unreachable`` finds the others.  With a
set of target names -- the names that arrived in a change or lost an incoming
link, the only ones a change can have cut off -- the search from us stops as
soon as all of them are found, so a change that touches a well-connected part
of the mesh costs a few steps, not a walk over every record.  Cheaper still,
when a change removed no link (``proven_reachable``): every record held before
it is still reachable, so a newly arrived record is reachable as soon as one of
those -- or an arrival already proven -- lists it as established; only when
that proof fails does the search from us run.  A joiner at the far edge of a
large mesh made that search visit most records, on every router, for every
record of the join (the largest CPU item of a 200-peer simulated join).

Dropped or unreachable-on-arrival records are parked in a small bounded
``Limbo`` instead of being forgotten.  Gossip has no ordering across peers: a
new peer's record can arrive before the record of the neighbour that lists it.
When a later record lists a parked name, ``promote`` restores the parked record
at once instead of waiting for the periodic anti-entropy round.  Limbo records
are never relayed, listed in digests or used for routes.

Pure data structures; ``Topology`` owns the records and calls these.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping

from meshrouter.names import PeerName
from meshrouter.topology.records import PeerRecord, record_beats

MAX_LIMBO = 4096


def unreachable(records: Mapping[PeerName, PeerRecord], local: PeerName,
                targets: set[PeerName] | None) -> list[PeerName]:
    """Names not reachable from ``local`` over listed connections (sorted); with
    ``targets``, stop early once all of them are found reachable (then nothing
    else can have become unreachable)."""
    remaining = None if targets is None else {t for t in targets if t in records}
    if remaining is not None and not remaining:
        return []
    seen = {local}
    queue = deque([local])
    while queue:
        record = records.get(queue.popleft())
        if record is None:
            continue
        for conn in record.connections:
            peer = conn.peer
            if peer in seen or peer not in records:
                continue
            seen.add(peer)
            queue.append(peer)
            if remaining is not None:
                remaining.discard(peer)
                if not remaining:
                    return []
    return sorted(name for name in records if name not in seen)


def proven_reachable(records: Mapping[PeerName, PeerRecord], local: PeerName,
                     arrived: set[PeerName],
                     placed: Callable[[PeerName, PeerName], None] | None = None) -> bool:
    """True if every name of ``arrived`` that has a record is reachable, shown by
    listers alone; False when that cannot be shown (then search with
    ``unreachable``).

    Valid only for a change that removed no link: then every record held
    before it (the records not in ``arrived``) is reachable, as garbage
    collection keeps only reachable records, and an arrival listed by a
    reachable record is reachable.  Listers are looked for among the
    arrival's own neighbours (links are listed by both ends once
    established), through the cached established sets: a miss costs one set
    lookup per neighbour, never a walk.  ``placed(name, lister)`` is told each
    proof (``reach.ReachHints.place``), so that the arrival has a level hint.
    """
    pending = {name for name in arrived if name in records and name != local}
    while pending:
        proven = []
        for name in pending:
            for conn in records[name].connections:
                lister = conn.peer
                if lister in pending or lister not in records:
                    continue
                if name in records[lister].established_peers():
                    proven.append(name)
                    if placed is not None:
                        placed(name, lister)
                    break
        if not proven:
            return False
        pending.difference_update(proven)
    return True


class Limbo:
    """Parked records by name, at most ``limit``, the oldest evicted first."""

    __slots__ = ("_limit", "_parked")

    def __init__(self, limit: int = MAX_LIMBO) -> None:
        self._limit = limit
        self._parked: dict[PeerName, PeerRecord] = {}

    def __len__(self) -> int:
        return len(self._parked)

    def __iter__(self) -> Iterator[PeerName]:
        return iter(self._parked)

    def get(self, name: PeerName) -> PeerRecord | None:
        return self._parked.get(name)

    def pop(self, name: PeerName) -> PeerRecord | None:
        return self._parked.pop(name, None)

    def park(self, record: PeerRecord) -> None:
        """Keep a dropped record (the winner, if one is parked already)."""
        parked = self._parked
        held = parked.pop(record.name, None)
        if held is not None and record_beats(held, record):
            record = held
        parked[record.name] = record
        while len(parked) > self._limit:
            del parked[next(iter(parked))]

    def promote(self, records: Mapping[PeerName, PeerRecord],
                changed: dict[PeerName, PeerRecord], new_names: set[PeerName],
                store: Callable[[PeerName, PeerRecord], None]) -> None:
        """Restore (``store``) parked records that a changed record now lists,
        transitively; each is added to ``changed`` and ``new_names`` (garbage
        collection then decides whether it stays)."""
        parked = self._parked
        if not parked:
            return
        pending = list(changed.values())
        while pending:
            record = pending.pop()
            for conn in record.connections:
                peer = conn.peer
                if peer in records:
                    continue
                held = parked.pop(peer, None)
                if held is None:
                    continue
                store(peer, held)
                changed[peer] = held
                new_names.add(peer)
                pending.append(held)
