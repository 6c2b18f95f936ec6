"""Theory of operation: which connection survives, and whom to drop at the limit.

Two decisions the Router takes when a handshake completes, as pure functions so
that they are tested without sockets:

* **Duplicate tie-break** (Weave's rule).  Both ends of two simultaneous
  connections compute the same connection UID (local conn ID XOR remote conn ID),
  so both keep the one with the *lower* UID; equal UIDs drop both (a retry then
  draws new IDs).  A duplicate from a peer whose UID changed (it restarted) or
  whose old connection is already closing replaces the old one -- unless the old
  one is alive (heard from within a heartbeat interval): then the newcomer's
  claim to be that peer is refused as a name collision (retried with backoff),
  so a stranger claiming a connected peer's name cannot make the real link flap.
  A restarted peer's old connection ends at once on EOF, or within the dead
  timeout when its host crashed, after which its next dial succeeds.
* **Eviction at the connection limit.**  Only a newcomer we cannot reach through
  the mesh (another component, or a brand-new peer) justifies dropping a
  neighbour: admitting it is what joins parts that would otherwise stay apart.
  The victim is the neighbour with the most links (ties: highest name), if it
  has links besides ours, so that it stays reachable through others.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Container, Iterable

from meshrouter.names import PeerName


class Duplicate(enum.Enum):
    """What to do with a new connection to a peer we are already connected to."""

    REPLACE_STALE = "replace-stale"
    """The old connection belongs to an earlier incarnation, or is closing."""
    COLLISION = "collision"
    """Another UID claims a peer whose live connection we hear from: refuse it."""
    KEEP_EXISTING = "keep-existing"
    DROP_BOTH = "drop-both"
    SUPERSEDE_EXISTING = "supersede-existing"


def duplicate_decision(
    *,
    existing_remote_uid: int,
    existing_closing: bool,
    existing_conn_uid: int,
    new_remote_uid: int,
    new_conn_uid: int,
    existing_alive: bool = False,
) -> Duplicate:
    """The tie-break between an existing and a new connection to the same peer.

    ``existing_alive``: the existing connection delivered a message within the
    last heartbeat interval.
    """
    if existing_closing:
        return Duplicate.REPLACE_STALE
    if existing_remote_uid != new_remote_uid:
        return Duplicate.COLLISION if existing_alive else Duplicate.REPLACE_STALE
    if existing_conn_uid < new_conn_uid:
        return Duplicate.KEEP_EXISTING
    if existing_conn_uid == new_conn_uid:
        return Duplicate.DROP_BOTH
    return Duplicate.SUPERSEDE_EXISTING


def eviction_candidate(
    newcomer: PeerName,
    *,
    reachable: Container[PeerName],
    neighbours: Iterable[PeerName],
    degree: Callable[[PeerName], int],
) -> PeerName | None:
    """At the limit: the neighbour to drop for ``newcomer``, or None to refuse it.

    ``degree(peer)`` is the number of links the peer's record lists.
    """
    if newcomer in reachable:
        return None
    best: tuple[int, PeerName] | None = None
    for peer in neighbours:
        links = degree(peer)
        if links > 1 and (best is None or (links, peer) > best):
            best = (links, peer)
    return best[1] if best is not None else None
