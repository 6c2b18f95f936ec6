"""Theory of operation: the ``endpoints`` channel's adapter to the gossip core.

Gossip and broadcast are merged alike (the merge is idempotent) and only the
delta goes on.  A container start is originated as a one-entry broadcast along
our spanning tree, so each peer receives it once: O(N) bytes mesh-wide.  A
broadcast the core had to coalesce into gossip (a backpressured neighbour)
arrives as gossip; its delta is relayed to a few random neighbours, each of
which relays only what was new to it, so it still reaches everyone at
O(fanout * N).  Whatever is missed is found by the next digest exchange,
which costs a 17-byte summary when neighbours agree.  The core cannot read a
clock, so the shell passes one in; ``on_change`` lets the shell recompute flows at once,
and tells it which endpoints are worth announcing to its containers (``timings``).
"""

from __future__ import annotations

from collections.abc import Callable

from meshrouter.endpoints.model import Endpoint
from meshrouter.endpoints.state import EndpointSet
from meshrouter.endpoints.table import EndpointTable
from meshrouter.endpoints.timings import MAX_ANNOUNCE, to_announce
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName, format_peer_name

CHANNEL = "endpoints"


class EndpointsGossiper:
    """Plugs an ``EndpointTable`` into the gossip core as the ``endpoints`` channel."""

    channel = CHANNEL

    def __init__(self, table: EndpointTable, clock: Callable[[], float],
                 on_change: Callable[[list[Endpoint]], None]) -> None:
        self.table = table
        self._clock = clock
        self._on_change = on_change

    def decode(self, payload: bytes) -> EndpointSet:
        return EndpointSet.decode(payload)

    def on_gossip(self, src: PeerName, data: EndpointSet) -> EndpointSet | None:
        return self.on_broadcast(src, data)

    def on_broadcast(self, src: PeerName, data: EndpointSet) -> EndpointSet | None:
        # what we held of the incoming entries, to tell a new or moved endpoint
        # from a re-stamped one; only for merges small enough to be announced
        known = ({e.key: held for e in data if (held := self.table.state.get(*e.key))}
                 if len(data) <= MAX_ANNOUNCE else {})
        delta = self.table.receive(data, self._clock())
        if delta is not None:
            fresh = to_announce(delta, self.table.local, known) if len(data) <= MAX_ANNOUNCE else []
            self._on_change(fresh)
        return delta

    def on_unicast(self, src: PeerName, payload: bytes) -> None:
        raise MalformedMessageError(
            f"endpoints channel got a unicast from {format_peer_name(src)}; it has none")

    def full_state(self) -> EndpointSet | None:
        state = self.table.state
        return None if state.is_empty() else state.copy()

    def digest(self) -> bytes:
        return self.table.summary()

    def full_digest(self) -> bytes:
        return self.table.full_digest()

    def wants_full_digest(self, digest: bytes) -> bool:
        return self.table.wants_full_digest(digest)

    def newer_than(self, digest: bytes) -> EndpointSet | None:
        return self.table.newer_than(digest)

    def lacks_from(self, digest: bytes) -> bool:
        return self.table.lacks_from(digest, self._clock())
