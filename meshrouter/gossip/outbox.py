"""Theory of operation: the gossip core's outgoing side, one ``SendSlots`` per neighbour.

The core decides *what* goes to whom; the outbox holds it until the
neighbour's sender task takes it (``pop``).  It keeps the neighbours' slots
(created when a connection comes up, discarded -- and what was pending counted
as dropped -- when it goes), counts what queueing did (coalesced, dropped when
a bounded queue was full, a broadcast folded into the gossip slot when the
broadcast slots were full) and what was sent, and wakes a neighbour's sender
only when its slots go from empty to non-empty, so a burst of updates costs one
wake-up.  Everything it holds is bounded by ``SendSlots``.
"""

from __future__ import annotations

from collections.abc import Callable

from meshrouter.gossip.send_slots import GossipFamilyMsg, QueueResult, SendSlots, Snapshot
from meshrouter.gossip.stats import (
    COALESCED_BROADCAST_INTO_GOSSIP,
    DROP_NEIGHBOUR_DOWN,
    DROP_UNICAST_QUEUE_FULL,
    DROP_UNKNOWN_QUEUE_FULL,
    KIND_BROADCAST,
    KIND_DIGEST,
    KIND_GOSSIP,
    KIND_UNICAST,
    GossipStats,
)
from meshrouter.names import PeerName
from meshrouter.wire.messages import BroadcastMsg, GossipMsg, UnicastMsg


def describe(msg: GossipFamilyMsg) -> tuple[str, str, int]:
    """(channel, kind, payload bytes) of an outgoing message, for stats."""
    if isinstance(msg, UnicastMsg):
        return msg.channel, KIND_UNICAST, len(msg.payload)
    if isinstance(msg, BroadcastMsg):  # its plan is part of what it costs
        return msg.channel, KIND_BROADCAST, len(msg.payload) + len(msg.route or b"")
    if isinstance(msg, GossipMsg):
        return msg.channel, KIND_GOSSIP, len(msg.payload)
    return msg.channel, KIND_DIGEST, len(msg.digest)


class Outbox:
    """Send slots per neighbour; ``wake(peer)`` is called when ``peer``'s slots
    stop being empty."""

    def __init__(self, local: PeerName, stats: GossipStats, wake: Callable[[PeerName], None], *,
                 unicast_limit: int, unknown_limit: int, broadcast_limit: int) -> None:
        self._local = local
        self._stats = stats
        self._wake = wake
        self._limits = (unicast_limit, unknown_limit, broadcast_limit)
        self._slots: dict[PeerName, SendSlots] = {}
        self.neighbours: list[PeerName] = []
        """The neighbours, sorted (so a seeded rng picks among them reproducibly)."""

    def __contains__(self, peer: object) -> bool:
        return peer in self._slots

    def add(self, peer: PeerName) -> None:
        """Give ``peer`` empty slots (kept if it has them already)."""
        if peer in self._slots:
            return
        unicast_limit, unknown_limit, broadcast_limit = self._limits
        self._slots[peer] = SendSlots(self._local, unicast_limit=unicast_limit,
                                      unknown_limit=unknown_limit,
                                      broadcast_limit=broadcast_limit)
        self.neighbours = sorted(self._slots)

    def remove(self, peer: PeerName) -> bool:
        """Discard ``peer``'s slots, counting what was pending as dropped; False
        if it had none."""
        slots = self._slots.pop(peer, None)
        if slots is None:
            return False
        self.neighbours = sorted(self._slots)
        for channel, _kind in slots.pending():
            self._stats.record_drop(channel, DROP_NEIGHBOUR_DOWN)
        return True

    def pop(self, peer: PeerName) -> GossipFamilyMsg | None:
        """The next message for ``peer`` (counted as sent), or None when idle."""
        slots = self._slots.get(peer)
        if slots is None:
            return None
        msg = slots.pop()
        if msg is not None:
            self._stats.record_sent(*describe(msg))
        return msg

    def has_outgoing(self, peer: PeerName) -> bool:
        slots = self._slots.get(peer)
        return slots is not None and len(slots) > 0

    # -- queueing -------------------------------------------------------------------

    def unicast(self, peer: PeerName, msg: UnicastMsg) -> None:
        def action(slots: SendSlots) -> None:
            dropped = slots.queue_unicast(msg)
            if dropped is not None:
                self._stats.record_drop(dropped.channel, DROP_UNICAST_QUEUE_FULL)

        self._enqueue(peer, action)

    def broadcast(self, peer: PeerName, channel: str, origin: PeerName, update: Snapshot,
                  route: bytes | None = None) -> None:
        def action(slots: SendSlots) -> None:
            result = slots.queue_broadcast(channel, origin, update, route)
            if result == "full":
                # Too many origins pending for this neighbour: merge the data
                # into its gossip slot instead of dropping it; the neighbour
                # relays whatever is new to it as gossip to a few random
                # neighbours, and digests repair what that misses.
                self._stats.record_coalesced(channel, COALESCED_BROADCAST_INTO_GOSSIP)
                self._count(channel, KIND_GOSSIP, slots.queue_gossip(channel, update))
            else:
                self._count(channel, KIND_BROADCAST, result)

        self._enqueue(peer, action)

    def unknown_broadcast(self, peer: PeerName, msg: BroadcastMsg) -> None:
        def action(slots: SendSlots) -> None:
            dropped = slots.queue_unknown_broadcast(msg)
            if dropped is not None:
                self._stats.record_drop(dropped.channel, DROP_UNKNOWN_QUEUE_FULL)

        self._enqueue(peer, action)

    def gossip(self, peer: PeerName, channel: str, update: Snapshot) -> None:
        self._enqueue(peer, lambda slots: self._count(
            channel, KIND_GOSSIP, slots.queue_gossip(channel, update)))

    def unknown_gossip(self, peer: PeerName, msg: GossipMsg) -> None:
        def action(slots: SendSlots) -> None:
            dropped = slots.queue_unknown_gossip(msg)
            if dropped is not None:
                self._stats.record_drop(dropped.channel, DROP_UNKNOWN_QUEUE_FULL)

        self._enqueue(peer, action)

    def digest(self, peer: PeerName, channel: str, digest: bytes, reply: bool) -> None:
        self._enqueue(peer, lambda slots: self._count(
            channel, KIND_DIGEST, slots.queue_digest(channel, digest, reply)))

    def _enqueue(self, peer: PeerName, action: Callable[[SendSlots], object]) -> None:
        """Run ``action`` on ``peer``'s slots; wake its sender if they were empty."""
        slots = self._slots[peer]
        was_idle = len(slots) == 0
        action(slots)
        if was_idle and len(slots) > 0:
            self._wake(peer)

    def _count(self, channel: str, kind: str, result: QueueResult) -> None:
        if result == "coalesced":
            self._stats.record_coalesced(channel, kind)
