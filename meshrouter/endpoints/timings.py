"""Theory of operation: where the time of an attach goes, and which endpoints to announce.

Issue 9 measures "attach on host 1 -> first ping reply from a container on host
2" (goal p50 <= 100 ms).  That path crosses two processes: the attaching
router (address, veth, OVS port, local flows, the endpoint's broadcast) and
every receiving router (gossip in, flow delta, announcement to its containers).
Both keep a short record here, stamped by the shell with a clock that is the
same across processes and namespaces (CLOCK_MONOTONIC), so a benchmark can put
the two records side by side and print the breakdown.  Pure: the shell passes
the times; records are capped.

Announcement.  A container that tried to reach the new address *before* its
host learned the endpoint has an unresolved (INCOMPLETE) neighbour entry: its
ARP request went unanswered, and Linux asks again only after ``retrans_time``
(1 s by default).  So once a host's flows know new endpoints, it sends one
gratuitous ARP per new endpoint to its local containers: Linux (``arp_accept=0``)
uses it to complete an existing entry and creates none, so nobody's table fills
with addresses it never asked for.  ``to_announce`` picks the entries worth it:
live, not ours, and new or moved (another MAC); a large merge (a full state at
join) is skipped -- nobody can be waiting on thousands of addresses at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from meshrouter.endpoints.model import Endpoint
from meshrouter.names import PeerName, format_peer_name

MAX_RECORDS = 64
MAX_ANNOUNCE = 64
"""A merge with more new endpoints than this is not announced (see the module doc)."""


def to_announce(delta: Iterable[Endpoint], local: PeerName,
                known: dict[tuple[PeerName, str], Endpoint]) -> list[Endpoint]:
    """Entries of ``delta`` to announce to our containers: live, of another owner,
    and not already held with the same MAC and IP in ``known`` (the table before
    the merge).  Empty when there are more than ``MAX_ANNOUNCE``."""
    out = []
    for entry in delta:
        if entry.tombstone or entry.owner == local:
            continue
        before = known.get(entry.key)
        if before is not None and not before.tombstone and (before.mac, before.ip) == (
                entry.mac, entry.ip):
            continue
        out.append(entry)
        if len(out) > MAX_ANNOUNCE:
            return []
    return out


@dataclass
class Record:
    """One attach here, or one endpoint learned from a peer: named steps and times."""

    container_id: str
    kind: str
    owner: str
    marks: list[tuple[str, float]] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        start = self.marks[0][1] if self.marks else 0.0
        steps = []
        last = start
        for name, at in self.marks:
            steps.append({"step": name, "at": at, "ms": round((at - last) * 1000, 2)})
            last = at
        return {"container_id": self.container_id, "kind": self.kind, "owner": self.owner,
                "start": start, "total_ms": round((last - start) * 1000, 2), "steps": steps}


class Timings:
    """The recent attach and learn records of one router (capped)."""

    def __init__(self, limit: int = MAX_RECORDS) -> None:
        self._records: deque[Record] = deque(maxlen=limit)

    def begin(self, kind: str, container_id: str, owner: PeerName, now: float,
              step: str) -> Record:
        record = Record(container_id, kind, format_peer_name(owner), [(step, now)])
        self._records.append(record)
        return record

    def view(self) -> list[dict[str, Any]]:
        return [r.view() for r in self._records]
