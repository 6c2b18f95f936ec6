"""Theory of operation: which discovered peers to dial, and how soon.

Discovery dials every peer the topology tells us about, so the mesh becomes
full, with three refinements:

* Both ends of a missing link discover it at about the same time; the end with
  the higher name waits ``defer`` seconds, so usually only one of them dials and
  no duplicate connection has to be torn down.
* Each candidate carries the peer's degree, so the target table dials the
  least-connected peers first: newcomers and sparse corners get links before
  well-connected hubs.
* A peer whose record shows it at the connection limit is not knocked on
  (limits are uniform in a mesh); nothing is dialled once we are at our own.

Where to dial a peer (its addresses, read from other peers' records) changes
far less often than the records do: almost every topology change is a link
coming or going between peers we already know.  ``CandidateCache`` keeps the
last (peer, address) list while the set of known peers and our own record
stay the same, for at most ``max_age`` seconds (an address that changes
without a new peer appearing, e.g. a multi-homed host's second address, is
picked up within that time); the degrees that order the dials are read fresh
every time.  Building the list scans every link of every record: while a
1,000-peer mesh forms, doing that after every change of every router with room
for a connection was a tenth of the simulator's time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Set

from meshrouter.names import PeerName

Candidates = dict[str, tuple[PeerName, float, int]]


def discovered_targets(
    *,
    local: PeerName,
    candidates: Callable[[], Iterable[tuple[PeerName, str]]],
    degree: Callable[[PeerName], int],
    connections: int,
    conn_limit: int,
    defer: float,
) -> Candidates:
    """``address -> (peer, dial delay, peer degree)`` for the target table.

    ``candidates()`` (peer, address) pairs are asked for only when we have room.
    """
    chosen: Candidates = {}
    if connections >= conn_limit:
        return chosen
    for peer, address in candidates():
        links = degree(peer)
        if links >= conn_limit:
            continue
        delay = 0.0 if local < peer else defer
        chosen.setdefault(address, (peer, delay, links))
    return chosen


class CandidateCache:
    """The last (peer, address) candidates, kept while nothing that decides them
    changed (see the module docstring)."""

    __slots__ = ("_at", "_candidates", "_ours", "_peers", "max_age")

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._peers: Set[PeerName] | None = None
        self._ours: object = None
        self._at = 0.0
        self._candidates: list[tuple[PeerName, str]] = []

    def get(self, *, peers: Set[PeerName], ours: object, now: float,
            compute: Callable[[], Iterable[tuple[PeerName, str]]]) -> list[tuple[PeerName, str]]:
        """The candidates for the known ``peers`` and our record ``ours`` (compared
        by identity), computed again when either changed or ``max_age`` passed."""
        if (ours is not self._ours or now - self._at >= self.max_age or self._peers is None
                or (peers is not self._peers and peers != self._peers)):
            self._candidates = list(compute())
            self._peers, self._ours, self._at = peers, ours, now
        return self._candidates
