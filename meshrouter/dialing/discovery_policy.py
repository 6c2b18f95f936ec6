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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

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
