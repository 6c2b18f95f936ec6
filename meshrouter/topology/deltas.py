"""Theory of operation: per-link deltas of a peer record.

A record in a full mesh of N peers lists N connections, so re-sending the whole
record on every change costs O(N) per receiver and O(N^2) per change mesh-wide
-- O(N^3) for a join, which is what melted Weave's full meshes.  A
``RecordDelta`` carries only what changed: the connections added or altered and
the peers whose links were removed, between version ``base`` and ``version`` of
one incarnation (``uid``) of a peer's record.

**Who can apply it.** A receiver holding that incarnation at any version ``v``
with ``base <= v < version``: every link that changed between ``v`` and
``version`` also changed between ``base`` and ``version``, so it is in the delta
with its final value, and every other link is the same at ``v`` as at
``version``.  A receiver that lacks the base (no record, an older version, another
incarnation) cannot, and needs the whole record: ``Topology`` counts it and the
anti-entropy digest delivers it (whole records go only where the base is
missing).  Each delta carries 64 bits of the resulting record's fingerprint, so a
receiver never builds a record that differs from the owner's, even from a base
that should not exist (same name, UID and version, other content): such a
delta is refused like a missing base.

**Where deltas come from.** Each record carries a short change log (not part of
its value): steps ``(from_version, changed)``, newest first, meaning the links of
the peers in ``changed`` (and ``HEADER`` for the nickname, short ID and port)
are all that differ between ``from_version`` and the next newer step.  The owner
appends a step per change (``derive_log``); a receiver that applies a delta
appends the delta's changed set as one coarser step, which is still true.  A
delta from version ``since`` is then the union of the steps back to the first
one starting at or below ``since``.  The log is capped (``MAX_LOG_STEPS``,
adjacent small steps merging into coarser ones; a delta carrying as many links as
the record is not worth sending: the whole record serves every receiver), and cleared when an
owner re-issues its record above a competing copy, whose holders must get the
record whole.

**Merging in send slots.** Deltas are data like records, and merge as a
partial order per peer: a record beats a delta it reaches ((version, uid) at
least the delta's); a delta beats another of the same incarnation whose range it
contains (a lower or equal base and a higher or equal version; equal ranges by
encoded bytes).  Keeping the maximal elements of the union is commutative,
associative and idempotent for any strict partial order (``dominates``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from meshrouter.codec import expect, pack
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PEER_NAME_MAX, SHORT_ID_COUNT, PeerName, check_peer_name
from meshrouter.topology.records import (
    _INTERNED,
    MAX_CONNECTIONS_PER_RECORD,
    MAX_NICKNAME_LEN,
    MAX_PORT,
    MAX_UINT64,
    ConnectionRecord,
    PeerRecord,
    connection_to_wire,
    connections_from_wire,
    record_fingerprint,
    record_log,
    set_record_log,
)

HEADER = -1
"""Marker in a log step: the nickname, short ID or listen port changed."""
MAX_LOG_STEPS = 8
FINE_LOG_STEPS = 4
"""The newest log steps that are never merged (see ``derive_log``)."""
DELTA_FIELDS = 10
CHECK_BITS = 64

LogStep = tuple[int, frozenset[int]]


@dataclass(frozen=True, slots=True)
class RecordDelta:
    """What changed in ``name``'s record (incarnation ``uid``) from ``base`` to ``version``.

    ``header`` is ``(nickname, short_id, listen_port)`` when one of them changed,
    else None (the receiver's copy has them).  ``changed`` holds the new form of
    every link added or altered, sorted by peer; ``removed`` the peers whose
    links are gone, sorted.  ``check`` is the top 64 bits of the resulting
    record's fingerprint.
    """

    name: PeerName
    uid: int
    base: int
    version: int
    header: tuple[str, int | None, int] | None
    changed: tuple[ConnectionRecord, ...]
    removed: tuple[PeerName, ...]
    check: int
    _encoded: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def encode(self) -> bytes:
        """Canonical msgpack bytes (cached)."""
        encoded = self._encoded
        if encoded is None:
            encoded = pack(delta_to_wire(self))
            object.__setattr__(self, "_encoded", encoded)
        return encoded

    def size(self) -> int:
        """Number of links it carries (changed and removed)."""
        return len(self.changed) + len(self.removed)


def record_check(record: PeerRecord) -> int:
    """The 64 bits of a record's fingerprint that a delta towards it carries."""
    return record_fingerprint(record) >> (128 - CHECK_BITS)


# -- the partial order used by merges -----------------------------------------------------


def record_reaches(record: PeerRecord, delta: RecordDelta) -> bool:
    """True if holding ``record`` makes ``delta`` useless: it is at least as new."""
    return (record.version, record.uid) >= (delta.version, delta.uid)


def dominates(a: RecordDelta, b: RecordDelta) -> bool:
    """Strict order between two deltas of one peer: ``a`` serves everyone ``b``
    serves, and gets them at least as far (ties between equal ranges broken by
    the encoded bytes, so that exactly one of two different deltas survives)."""
    if a.uid != b.uid or a.base > b.base or a.version < b.version:
        return False
    if a.base != b.base or a.version != b.version:
        return True
    return a != b and a.encode() > b.encode()


def maximal(deltas: Iterable[RecordDelta], record: PeerRecord | None) -> frozenset[RecordDelta]:
    """The deltas that neither ``record`` nor another delta dominates."""
    candidates = {d for d in deltas if record is None or not record_reaches(record, d)}
    return frozenset(d for d in candidates if not any(dominates(o, d) for o in candidates))


# -- building deltas ------------------------------------------------------------------------


def changed_peers(old: PeerRecord, new_connections: tuple[ConnectionRecord, ...]) -> set[int]:
    """Peers whose link differs (added, removed or altered) between two connection lists."""
    before = {c.peer: c for c in old.connections}
    changed: set[int] = set()
    for conn in new_connections:
        if before.pop(conn.peer, None) != conn:
            changed.add(conn.peer)
    changed.update(before)
    return changed


def derive_log(new: PeerRecord, old: PeerRecord, changed: Iterable[int], *,
               keep: int | None = None) -> None:
    """Give ``new`` (derived from ``old`` by changing the links of ``changed``,
    plus ``HEADER`` if the header changed) the log of ``old`` plus that step.

    Beyond ``MAX_LOG_STEPS`` two adjacent steps merge into one (the union of
    their links, from the older version): still true, only coarser, so the log
    keeps reaching back across a burst of changes.  A peer joining a full mesh
    changes its record once per new link, dozens of times between two of its
    broadcasts; a log of the last 8 single-link steps made every one of those
    broadcasts a whole record.  Steps are kept while a delta from the oldest
    would still carry no more links than the record has.

    ``keep`` is a version no merge may erase as a step boundary: the owner
    passes the one its next broadcast starts from, so that broadcast is an
    exact delta however many changes came since (a joiner of a full mesh of
    100 changes its record ~100 times in a few broadcasts; merged steps
    reached back past the broadcast's base and made it a whole record), and
    neighbours that hold that version get exact deltas in digest answers too."""
    steps: list[LogStep] = [(old.version, frozenset(changed)), *record_log(old)]
    while len(steps) > MAX_LOG_STEPS:
        mergeable = [i for i in range(FINE_LOG_STEPS, len(steps) - 1) if steps[i][0] != keep]
        if not mergeable:
            mergeable = [i for i in range(len(steps) - 1) if steps[i][0] != keep]
        # The newest steps stay exact: most deltas go to holders of a recent
        # version (our last broadcast).  Among the older ones, merge the
        # adjacent pair with the fewest links (the oldest on a tie), so one
        # big step (the first connections) does not swallow the small ones.
        at = min(mergeable, key=lambda i: (len(steps[i][1]) + len(steps[i + 1][1]), -i))
        steps[at:at + 2] = [(steps[at + 1][0], steps[at][1] | steps[at + 1][1])]
    limit = max(1, len(new.connections))
    kept: list[LogStep] = []
    reach: set[int] = set()
    for entry in steps:
        reach |= entry[1]
        if len(reach) > limit and kept:
            break
        kept.append(entry)
    set_record_log(new, tuple(kept))


def make_delta(record: PeerRecord, since: int) -> RecordDelta | None:
    """A delta from (at most) version ``since`` to ``record``; None if the log does
    not reach back that far or the delta would carry as many links as the
    record has (the whole record is then no bigger and serves every receiver).

    A delta goes only where its base is held: a digest answer to the asker
    whose digest showed the version, a broadcast to holders of our previous
    broadcast.  A delta carrying more than half the record used to be
    sent whole, and a joiner's record, which grows by more than half
    between most of its broadcasts, reached every peer whole several times
    (a fifth of a 100-peer full-mesh join's bytes)."""
    if since >= record.version:
        return None
    changed: set[int] = set()
    base = None
    for from_version, step in record_log(record):
        changed |= step
        if from_version <= since:
            base = from_version
            break
    if base is None:
        return None
    header = ((record.nickname, record.short_id, record.listen_port)
              if HEADER in changed else None)
    changed.discard(HEADER)
    if len(changed) >= max(1, len(record.connections)):
        return None
    now: dict[int, ConnectionRecord] = {c.peer: c for c in record.connections}
    return RecordDelta(
        name=record.name,
        uid=record.uid,
        base=base,
        version=record.version,
        header=header,
        changed=tuple(now[p] for p in sorted(changed) if p in now),
        removed=tuple(PeerName(p) for p in sorted(changed) if p not in now),
        check=record_check(record),
    )


def apply_delta(base: PeerRecord, delta: RecordDelta) -> PeerRecord | None:
    """The record ``delta`` leads to from ``base``; None if ``base`` is not a copy
    the delta applies to, or the result is not the owner's record (check)."""
    if (base.name != delta.name or base.uid != delta.uid
            or not delta.base <= base.version < delta.version):
        return None
    key = (delta.name, delta.version, delta.uid)
    known = _INTERNED.get(key)
    if known is not None and record_check(known) == delta.check:
        result = known
    else:
        drop = {c.peer for c in delta.changed}
        drop.update(delta.removed)
        merged = [c for c in base.connections if c.peer not in drop]
        merged.extend(delta.changed)
        if len(merged) > MAX_CONNECTIONS_PER_RECORD:
            return None
        merged.sort(key=_peer_of)
        nickname, short_id, listen_port = (
            delta.header if delta.header is not None
            else (base.nickname, base.short_id, base.listen_port))
        result = PeerRecord(
            name=base.name, nickname=nickname, uid=base.uid, version=delta.version,
            short_id=short_id, listen_port=listen_port, connections=tuple(merged))
        if record_check(result) != delta.check:
            return None
        _INTERNED[key] = result
    if not record_log(result):
        changed: set[int] = {c.peer for c in delta.changed}
        changed.update(delta.removed)
        if delta.header is not None:
            changed.add(HEADER)
        derive_log(result, base, changed)
    return result


def _peer_of(conn: ConnectionRecord) -> int:
    return conn.peer


# -- wire form --------------------------------------------------------------------------------


def delta_to_wire(delta: RecordDelta) -> list[Any]:
    """``[name, uid, base, version, nickname|nil, short_id|nil, port|nil,
    [changed connections], [removed peers], check]``: ten fields, so that a
    decoder tells it from a seven-field record."""
    nickname, short_id, port = delta.header if delta.header is not None else (None, None, None)
    return [
        delta.name, delta.uid, delta.base, delta.version, nickname, short_id, port,
        [connection_to_wire(c) for c in delta.changed], list(delta.removed), delta.check,
    ]


def _bounded_int(value: Any, upper: int, what: str) -> int:
    number: int = expect(value, int, what)
    if not 0 <= number <= upper:
        raise MalformedMessageError(f"{what} {number} is outside 0..{upper}")
    return number


def delta_from_wire(value: Any) -> RecordDelta:
    """Validate and build one delta from its list form; raises only
    ``MalformedMessageError``.  Only the canonical form is accepted (sorted
    links, removed peers disjoint from changed ones, none to the owner, a header
    wholly present or wholly nil), so one delta has one encoding."""
    fields = expect(value, list, "topology delta")
    if len(fields) != DELTA_FIELDS:
        raise MalformedMessageError(
            f"topology delta has {len(fields)} fields, expected {DELTA_FIELDS}")
    name = check_peer_name(fields[0])
    uid = _bounded_int(fields[1], MAX_UINT64, "delta UID")
    base = _bounded_int(fields[2], MAX_UINT64, "delta base version")
    version = _bounded_int(fields[3], MAX_UINT64, "delta version")
    if base >= version:
        raise MalformedMessageError(f"delta base version {base} is not below its version {version}")
    header: tuple[str, int | None, int] | None = None
    if fields[4] is None:
        if fields[5] is not None or fields[6] is not None:
            raise MalformedMessageError("delta header is partly present")
    else:
        nickname = expect(fields[4], str, "delta nickname")
        if len(nickname) > MAX_NICKNAME_LEN:
            raise MalformedMessageError(f"delta nickname exceeds {MAX_NICKNAME_LEN} characters")
        short_id = (None if fields[5] is None
                    else _bounded_int(fields[5], SHORT_ID_COUNT - 1, "delta short ID"))
        header = (nickname, short_id, _bounded_int(fields[6], MAX_PORT, "delta listen port"))
    changed = connections_from_wire(fields[7], name)
    removed_raw = expect(fields[8], list, "delta removed peers")
    if len(changed) + len(removed_raw) > MAX_CONNECTIONS_PER_RECORD:
        raise MalformedMessageError(
            f"topology delta carries more than {MAX_CONNECTIONS_PER_RECORD} links")
    removed: list[PeerName] = []
    previous = -1
    for peer in removed_raw:
        if type(peer) is not int or not previous < peer <= PEER_NAME_MAX:
            raise MalformedMessageError("delta removed peers are not sorted distinct peer names")
        if peer == name:
            raise MalformedMessageError("topology delta removes a link to its owner itself")
        previous = peer
        removed.append(PeerName(peer))
    if {c.peer for c in changed}.intersection(removed):
        raise MalformedMessageError("topology delta both changes and removes one link")
    check = _bounded_int(fields[9], (1 << CHECK_BITS) - 1, "delta check")
    return RecordDelta(name, uid, base, version, header, changed, tuple(removed), check)
