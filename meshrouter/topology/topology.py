"""Theory of operation: the local router's view of the mesh.

``Topology`` holds every peer record we know (our own included) and is the only
writer of our own record.  It changes in three ways:

* ``set_local_connections``: the shell reports our connections; if they differ
  we bump our record's version and log which links changed, so that
  ``own_update_since(last broadcast version)`` can broadcast only those links.
* ``apply``: records and per-link deltas arrive by gossip.  Records are merged
  per name (the greatest precedence wins, see ``records``); a delta moves the
  record we hold forward when we hold its base (see ``deltas``), and one we
  cannot use is counted (``deltas_unusable``) and bumps ``version`` so that the
  shell's maintenance step runs an anti-entropy round, which brings the record
  whole.  Two exceptions keep our record ours.  A copy of *our* name that
  would compete with our record (an older incarnation of this router with a
  higher version, or a same-version record with other content) is never
  adopted: we re-issue our record above it, so ours wins everywhere; and a
  lower-named peer using our short ID makes us pick a free one (``own_record``).
* garbage collection: records that cannot be reached from us by following the
  connections records list are dropped, so dead peers and the far side of a
  partition vanish.  GC runs after every change, but cheaply: if a change only
  added links and no records, nothing can have become unreachable, and names
  at risk are proven reachable by short walks towards us (see ``reach``).
  Dropped and unreachable-on-arrival records wait in a bounded limbo (see
  ``limbo``); records we drop are not relayed, so an unreachable record cannot
  ping-pong between two routers.

``version`` counts changes to the set of records; the digest is cached per
version.  ``fingerprint`` identifies the record set itself: the XOR of every
record's 128-bit hash, updated in O(1) whenever a record is stored or dropped
(all writes go through ``_store``/``_drop``).  Routes are keyed by it:
``routes()`` takes the ``RouteGraph`` of the current fingerprint from a small
process-wide cache and only builds one when no router in the process holds
the same records (deriving it from our previous graph when only some records
changed), so a thousand simulated routers that agree on the topology share one
graph and one broadcast tree per origin.  Discovery's address book is shared
the same way (see ``discovery``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from meshrouter.errors import ConfigError
from meshrouter.names import SHORT_ID_COUNT, PeerName
from meshrouter.topology import anti_entropy
from meshrouter.topology.deltas import (
    HEADER,
    apply_delta,
    changed_peers,
    derive_log,
    make_delta,
    record_check,
    record_reaches,
)
from meshrouter.topology.discovery import DialCandidates
from meshrouter.topology.limbo import MAX_LIMBO, Limbo, proven_reachable
from meshrouter.topology.own_record import reissued
from meshrouter.topology.peer_map import PeerMap
from meshrouter.topology.reach import ReachHints
from meshrouter.topology.records import (
    MAX_NICKNAME_LEN,
    MAX_PORT,
    MAX_UINT64,
    ConnectionRecord,
    PeerRecord,
    normalize_connections,
    record_beats,
    record_fingerprint,
)
from meshrouter.topology.route_graph import SHARED_ROUTE_GRAPHS, RouteGraph
from meshrouter.topology.routes import Routes

if TYPE_CHECKING:
    import random

INITIAL_RECORD_VERSION = 1
__all__ = ["INITIAL_RECORD_VERSION", "MAX_LIMBO", "Topology"]


class Topology:
    """Peer records known to one router, our own included; routes derived from them."""

    def __init__(self, *, local_name: PeerName, nickname: str, uid: int, listen_port: int,
                 rng: random.Random, short_id: int | None = None) -> None:
        """Create our record at version 1 with no connections.

        ``short_id=None`` picks a random one with ``rng`` (collisions are
        resolved later by ``apply``); pass a persisted one to keep it across
        restarts.
        """
        if len(nickname) > MAX_NICKNAME_LEN:
            raise ConfigError(f"nickname is longer than {MAX_NICKNAME_LEN} characters")
        if not 0 <= uid <= MAX_UINT64:
            raise ConfigError(f"UID {uid} is not a 64-bit unsigned integer")
        if not 0 <= listen_port <= MAX_PORT:
            raise ConfigError(f"listen port {listen_port} is outside 0..{MAX_PORT}")
        if short_id is None:
            short_id = rng.randrange(SHORT_ID_COUNT)
        elif not 0 <= short_id < SHORT_ID_COUNT:
            raise ConfigError(f"short ID {short_id} is outside 0..{SHORT_ID_COUNT - 1}")
        self._local = local_name
        self._rng = rng
        self._records: dict[PeerName, PeerRecord] = {}
        self._fingerprint = 0
        self._route_dirty: set[PeerName] = set()  # names written since our graph was taken
        self._dial = DialCandidates()
        self._reach = ReachHints(local_name)
        self._digests = anti_entropy.DigestState(self._records)
        self._broadcast_base: int | None = None
        self._store(local_name, PeerRecord(
            name=local_name,
            nickname=nickname,
            uid=uid,
            version=INITIAL_RECORD_VERSION,
            short_id=short_id,
            listen_port=listen_port,
            connections=(),
        ))
        self._limbo = Limbo()
        self._removed: dict[PeerName, None] = {}
        self.version = 0
        self.routes_computed = 0  # route graphs this topology had to build
        self.routes_shared = 0    # route graphs found already built (same records elsewhere)
        self.deltas_applied = 0   # per-link deltas that moved a record forward
        self.deltas_unusable = 0  # deltas whose base we lacked (or that failed their check)
        self._routes: Routes | None = None

    # -- read access ---------------------------------------------------------------

    @property
    def local_name(self) -> PeerName:
        return self._local

    @property
    def local_record(self) -> PeerRecord:
        return self._records[self._local]

    @property
    def fingerprint(self) -> int:
        """128-bit order-independent fingerprint of the current record set.

        Equal record sets have equal fingerprints (whatever the order in which
        records arrived); different sets collide with probability ~2**-128.
        """
        return self._fingerprint

    @property
    def peer_map(self) -> PeerMap:
        """A copy of every known record, ours included (the full gossip state)."""
        return PeerMap(self._records)

    def records(self) -> list[PeerRecord]:
        """All known records sorted by name."""
        return [self._records[name] for name in sorted(self._records)]

    def record(self, name: PeerName) -> PeerRecord | None:
        return self._records.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __len__(self) -> int:
        return len(self._records)

    def take_removed(self) -> list[PeerName]:
        """Names garbage-collected since the last call, for the shell's cleanup hooks
        (DNS entries, MAC cache, IPAM status).  A name may since have come back."""
        removed = list(self._removed)
        self._removed.clear()
        return removed

    # -- local changes ---------------------------------------------------------------

    def set_local_connections(self, connections: Iterable[ConnectionRecord]) -> PeerMap | None:
        """Replace our connection list; return the delta to broadcast, or None if unchanged.

        Connections are normalised (sorted, one per peer, none to ourselves).
        Dropped links may make peers unreachable; those are garbage-collected.
        """
        ours = self._records[self._local]
        normalized = normalize_connections(connections, self._local)
        if normalized == ours.connections:
            return None
        lost = _lost_peers(ours, normalized)
        updated = replace(ours, version=ours.version + 1, connections=normalized)
        derive_log(updated, ours, changed_peers(ours, normalized), keep=self._broadcast_base)
        self._store(self._local, updated)
        changed: dict[PeerName, PeerRecord] = {self._local: updated}
        new_names: set[PeerName] = set()
        self._limbo.promote(self._records, changed, new_names, self._store)
        self._settle(changed, new_names, lost)
        if len(changed) > 1:  # parked records came back; one may hold our short ID
            self._update_local(changed, None, self._rng)
        self._touch()
        return PeerMap(changed)

    def set_listen_port(self, port: int) -> PeerMap | None:
        """Advertise the port we actually listen on (known only after binding port 0)."""
        if not 0 <= port <= MAX_PORT:
            raise ConfigError(f"listen port {port} is outside 0..{MAX_PORT}")
        ours = self._records[self._local]
        if ours.listen_port == port:
            return None
        updated = replace(ours, version=ours.version + 1, listen_port=port)
        derive_log(updated, ours, (HEADER,))
        self._store(self._local, updated)
        self._touch()
        return PeerMap({self._local: updated})

    # -- received gossip ---------------------------------------------------------------

    def apply(self, received: PeerMap, rng: random.Random) -> PeerMap | None:
        """Merge received records; return the records that changed (to relay), or None."""
        local = self._local
        records = self._records
        limbo = self._limbo
        ours = records[local]
        changed: dict[PeerName, PeerRecord] = {}
        new_names: set[PeerName] = set()
        at_risk: set[PeerName] = set()
        reassert_above: int | None = None
        for name, record in received.records.items():
            if name == local:
                if record != ours and record.version >= ours.version:
                    reassert_above = max(record.version, reassert_above or 0)
                continue
            current = records.get(name)
            if current is None:
                parked = limbo.pop(name)
                if parked is not None and not record_beats(record, parked):
                    record = parked
                self._store(name, record)
                changed[name] = record
                new_names.add(name)
            elif record_beats(record, current):
                self._store(name, record)
                changed[name] = record
                if record.connections != current.connections:
                    at_risk |= _lost_peers(current, record.connections)
        unusable = False
        if received.deltas:
            unusable, reassert_above = self._apply_deltas(
                received, changed, new_names, at_risk, reassert_above)
        if limbo and changed:
            limbo.promote(records, changed, new_names, self._store)
        removed = self._settle(changed, new_names, at_risk)
        self._update_local(changed, reassert_above, rng)
        if changed or removed or unusable:
            self._touch()
        return PeerMap(changed) if changed else None

    def _apply_deltas(self, received: PeerMap, changed: dict[PeerName, PeerRecord],
                      new_names: set[PeerName], at_risk: set[PeerName],
                      reassert_above: int | None) -> tuple[bool, int | None]:
        """Apply ``received``'s deltas (per peer in base order, so a chain applies
        in one go); return whether one was unusable, and the re-issue floor.

        An unusable delta (we lack its base) counts as a change of ``version``
        although no record changed: the shell's maintenance step then runs an
        anti-entropy round, which brings the record whole.
        """
        local = self._local
        records = self._records
        limbo = self._limbo
        ours = records[local]
        unusable = False
        for delta in received.delta_list():
            name = delta.name
            if name == local:
                if delta.version > ours.version or (delta.version == ours.version and (
                        delta.uid != ours.uid or delta.check != record_check(ours))):
                    reassert_above = max(delta.version, reassert_above or 0)
                continue
            current = records.get(name)
            base = current if current is not None else limbo.get(name)
            if base is not None and record_reaches(base, delta):
                continue  # nothing new to us
            result = None if base is None else apply_delta(base, delta)
            if result is None:
                self.deltas_unusable += 1
                unusable = True
                continue
            self.deltas_applied += 1
            self._store(name, result)
            changed[name] = result
            if current is None:
                limbo.pop(name)
                new_names.add(name)
            else:
                at_risk.update(delta.removed)
        return unusable, reassert_above

    def garbage_collect(self) -> list[PeerName]:
        """Drop every record not reachable from us over listed connections; return their names."""
        removed = self._reach.search(self._records, self._local, None)
        for name in removed:
            self._limbo.park(self._drop(name))
            self._removed[name] = None
        if removed:
            self._touch()
        return removed

    # -- routes and discovery ------------------------------------------------------------

    def routes(self) -> Routes:
        """Routes for the current records.

        O(1) unless no router in the process has the current record set's
        graph yet; then it is built (counted in ``routes_computed``, else in
        ``routes_shared``) and cached for every other holder of these records.
        """
        routes = self._routes
        fingerprint = self._fingerprint
        if routes is not None and routes.graph.fingerprint == fingerprint:
            return routes
        graph = SHARED_ROUTE_GRAPHS.get(fingerprint)
        if graph is None:
            parent = None if routes is None else routes.graph
            graph = RouteGraph(self._records, fingerprint, parent=parent,
                               changed=self._route_dirty if parent is not None else None)
            SHARED_ROUTE_GRAPHS.add(fingerprint, graph)
            self.routes_computed += 1
        else:
            self.routes_shared += 1
        self._route_dirty = set()
        routes = self._routes = Routes(graph, self._local)
        return routes

    def discovery_candidates(self) -> list[tuple[PeerName, str]]:
        """(peer, "ip:port") pairs to dial so that the mesh becomes full.

        For each known peer we have no connection to: every IP that another
        record lists for it, with the peer's advertised listen port; plus the
        exact address another peer dialled it at (outbound), which is a listen
        address even behind a port mapping.  Sorted by peer, then address.
        The address book is shared by every router holding the same records
        and derived from our previous one (see ``discovery``).
        """
        return self._dial.candidates(self._records, self._fingerprint, self._local)

    # -- anti-entropy ----------------------------------------------------------------------

    def digest(self) -> bytes:
        """Our summary: the record-set fingerprint and one per bucket of names
        (see ``buckets``); neighbours that agree settle at that."""
        return self._digests.summary(self._fingerprint, self.version)

    def full_digest(self) -> bytes:
        """msgpack ``{name: [version, uid]}`` of all records (cached per version)."""
        return self._digests.full(self.version)

    def full_digest_for(self, received: bytes, neighbour: PeerName | None = None) -> bytes:
        """Our digest of what ``neighbour``'s ``received`` shows differing (see
        ``anti_entropy``)."""
        return self._digests.answer(self.version, received, neighbour)

    def digest_settled(self, neighbour: PeerName) -> bool:
        """``neighbour`` answered us, or is gone (see ``asks``); True if we had
        asked it something."""
        return self._digests.asks.settled(neighbour)

    def wants_full_digest(self, digest: bytes) -> bool:
        """A summary that differs from ours: answer with ``full_digest_for``."""
        return self._digests.differs(self._fingerprint, digest)

    def newer_than(self, digest: bytes) -> PeerMap | None:
        """What the digest's owner lacks among the names it covers: deltas where
        it holds the base, else whole records (see ``anti_entropy``)."""
        return anti_entropy.newer_than(self._records, self._digests.parse(digest))

    def own_update_since(self, version: int) -> PeerMap:
        """What to broadcast so that holders of our record at ``version`` (the one
        we last broadcast) catch up: the links that changed since, when our
        record's log reaches back that far, else our whole record."""
        ours = self._records[self._local]
        self._broadcast_base = ours.version  # where the next one starts (see derive_log)
        delta = make_delta(ours, version)
        return PeerMap({ours.name: ours}) if delta is None else PeerMap.of_deltas(delta)

    def lacks_from(self, digest: bytes) -> bool:
        """True if the digest shows a record we lack or hold at a lower (version, uid)."""
        return anti_entropy.lacks_from(self._records, self._digests.parse(digest))

    # -- internals ---------------------------------------------------------------------------

    def _touch(self) -> None:
        self.version += 1

    def _store(self, name: PeerName, record: PeerRecord) -> None:
        """Add or replace the record held for ``name``, keeping the fingerprint current."""
        records = self._records
        previous = records.get(name)
        self._route_dirty.add(name)
        self._dial.written(name, previous)
        self._reach.written(previous, record)
        self._digests.written(name, previous, record)
        fingerprint = self._fingerprint ^ record_fingerprint(record)
        if previous is not None:
            fingerprint ^= record_fingerprint(previous)
        records[name] = record
        self._fingerprint = fingerprint

    def _drop(self, name: PeerName) -> PeerRecord:
        """Remove and return the record held for ``name``, keeping the fingerprint current."""
        record = self._records.pop(name)
        self._route_dirty.add(name)
        self._dial.written(name, record)
        self._reach.written(record, None)
        self._digests.written(name, record, None)
        self._fingerprint ^= record_fingerprint(record)
        return record

    def _update_local(self, changed: dict[PeerName, PeerRecord], reassert_above: int | None,
                      rng: random.Random) -> None:
        """Re-issue our record if it must move (see ``own_record``)."""
        local = self._local
        updated = reissued(self._records[local], changed, reassert_above, lambda: (
            r.short_id for name, r in self._records.items() if name != local), rng)
        if updated is not None:
            self._store(local, updated)
            changed[local] = updated

    def _settle(self, changed: dict[PeerName, PeerRecord], new_names: set[PeerName],
                at_risk: set[PeerName]) -> list[PeerName]:
        """GC after a change; drop removed names from ``changed``; return reported removals.

        Only names that arrived in this change or lost an incoming link can
        have become unreachable, so only those are proven (or searched for).
        Records that arrive unreachable are parked silently.
        """
        targets = new_names | at_risk
        targets.discard(self._local)
        if not targets:
            return []
        if not at_risk and proven_reachable(self._records, self._local, new_names,
                                            self._reach.place):
            return []
        removed = self._reach.unreachable(self._records, self._local, targets, new_names)
        reported = []
        for name in removed:
            self._limbo.park(self._drop(name))
            changed.pop(name, None)
            if name not in new_names:
                self._removed[name] = None
                reported.append(name)
        return reported


def _lost_peers(old: PeerRecord, new_connections: tuple[ConnectionRecord, ...]) -> set[PeerName]:
    """Peers ``old`` listed that ``new_connections`` no longer lists."""
    kept = {c.peer for c in new_connections}
    return {c.peer for c in old.connections if c.peer not in kept}

