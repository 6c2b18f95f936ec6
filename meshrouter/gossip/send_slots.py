"""Theory of operation: per-neighbour send slots that coalesce under backpressure.

A connection's sender task writes one message at a time.  While it is blocked
(slow link, full TCP buffer) new updates keep arriving; queueing each as its own
message would grow memory without bound and send stale intermediate states.
Instead, as in Weave's ``gossipSender``, every neighbour has *slots*:

* per channel one **gossip** slot holding one merged GossipData;
* per (channel, origin) one **broadcast** slot, also merged (a broadcast's
  payload from one origin merged with a later one from the same origin is still
  that origin's data); for channels we cannot decode, a bounded FIFO of raw
  messages instead, because raw bytes cannot be merged;
* per channel one **digest** slot where the latest digest replaces the older;
* a bounded **unicast** FIFO that drops the oldest message when full.

``pop`` serves unicast, then broadcast, then gossip, then digest: unicasts are
replies someone waits for, broadcasts are fresh deltas, gossip is data a peer
asked for, digests are only the anti-entropy backstop.  Data is encoded only
when popped, so N coalesced updates cost one encode and one message.

Sharing without copying: one update usually goes to many neighbours.  It is
wrapped once in a ``Snapshot`` (immutable from here on, encoded at most once and
decoded at most once) that all slots share.  Only when a second update lands in
the same slot does that slot take a private copy to merge into
(copy-on-write), so the caller's object is never mutated and the common case
costs no copies at all.

Memory: a router keeps one ``SendSlots`` per neighbour, and most of them are
idle almost all the time.  The three FIFOs (unicasts, and raw broadcasts and
gossip of channels we cannot decode -- the last two are used only in a mesh
of mixed versions) are created on first use: an empty deque is 760 bytes, so
three per neighbour cost ~55 KB per router at 24 neighbours, ~50 MB for a
simulated 1,000-peer mesh, for queues that are empty nearly always.  A FIFO
that drains is dropped again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Literal, TypeVar

from meshrouter.gossip.interfaces import GossipData
from meshrouter.gossip.stats import KIND_BROADCAST, KIND_DIGEST, KIND_GOSSIP, KIND_UNICAST
from meshrouter.names import PeerName
from meshrouter.wire.messages import BroadcastMsg, DigestMsg, GossipMsg, UnicastMsg

Decoder = Callable[[bytes], GossipData]
QueueResult = Literal["queued", "coalesced", "full"]
# Every message the gossip core sends or handles (a Message minus Heartbeat).
GossipFamilyMsg = GossipMsg | UnicastMsg | BroadcastMsg | DigestMsg

K = TypeVar("K")
V = TypeVar("V")
M = TypeVar("M")


class Snapshot:
    """One update shared read-only by many slots: data, raw bytes, or both.

    ``data`` must be owned by the gossip core (already a copy, or handed over);
    ``raw`` must be exactly ``data.encode()`` or bytes that ``decode`` accepts.
    """

    __slots__ = ("_data", "_decode", "_raw")

    def __init__(
        self,
        *,
        data: GossipData | None = None,
        raw: bytes | None = None,
        decode: Decoder | None = None,
    ) -> None:
        if data is None and (raw is None or decode is None):
            raise ValueError("a Snapshot needs data, or raw bytes and a decoder")
        self._data = data
        self._raw = raw
        self._decode = decode

    def payload(self) -> bytes:
        """The encoded bytes (encoded on first use, then cached)."""
        if self._raw is None:
            assert self._data is not None
            self._raw = self._data.encode()
        return self._raw

    def view(self) -> GossipData:
        """The decoded data, for reading or as ``merge``'s argument only."""
        if self._data is None:
            assert self._raw is not None and self._decode is not None
            self._data = self._decode(self._raw)
        return self._data

    def private_copy(self) -> GossipData:
        """A copy the caller may mutate."""
        copied: GossipData = self.view().copy()
        return copied


class MergedSlot:
    """A slot holding one shared snapshot until a second update forces a copy.

    ``route`` (broadcast slots only) is the forest below the neighbour in the
    origin's tree (``broadcast_plan``); a later update brings the origin's
    later plan, which replaces it.
    """

    __slots__ = ("_own", "_shared", "route", "updates")

    def __init__(self, first: Snapshot, route: bytes | None = None) -> None:
        self._shared: Snapshot | None = first
        self._own: GossipData | None = None
        self.updates = 1
        self.route = route

    def add(self, update: Snapshot, route: bytes | None = None) -> None:
        """Merge ``update`` into this slot's private copy."""
        self.route = route
        if self._own is None:
            assert self._shared is not None
            self._own = self._shared.private_copy()
            self._shared = None
        self._own.merge(update.view())
        self.updates += 1

    def payload(self) -> bytes:
        if self._own is not None:
            return self._own.encode()
        assert self._shared is not None
        return self._shared.payload()


def _pop_first(table: dict[K, V]) -> tuple[K, V]:
    key = next(iter(table))
    return key, table.pop(key)


class SendSlots:
    """Everything waiting to be written to one neighbour; bounded in every part."""

    def __init__(
        self,
        local: PeerName,
        *,
        unicast_limit: int,
        unknown_limit: int,
        broadcast_limit: int,
    ) -> None:
        self._local = local
        self._unicast_limit = unicast_limit
        self._unknown_limit = unknown_limit
        self._broadcast_limit = broadcast_limit
        # The FIFOs are None until first used (see the module doc: memory).
        self._unicasts: deque[UnicastMsg] | None = None
        self._broadcasts: dict[tuple[str, PeerName], MergedSlot] = {}
        self._unknown_broadcasts: deque[BroadcastMsg] | None = None
        self._gossip: dict[str, MergedSlot] = {}
        self._unknown_gossip: deque[GossipMsg] | None = None
        self._digests: dict[str, tuple[bytes, bool]] = {}

    def __len__(self) -> int:
        """Number of messages that ``pop`` would return."""
        # Called twice per queued update (the outbox's idle check): no helper calls.
        count = len(self._broadcasts) + len(self._gossip) + len(self._digests)
        if self._unicasts:
            count += len(self._unicasts)
        if self._unknown_broadcasts:
            count += len(self._unknown_broadcasts)
        if self._unknown_gossip:
            count += len(self._unknown_gossip)
        return count

    def queue_unicast(self, msg: UnicastMsg) -> UnicastMsg | None:
        """Append; when full, drop and return the oldest queued unicast."""
        if self._unicasts is None:
            self._unicasts = deque()
        return _append_bounded(self._unicasts, msg, self._unicast_limit)

    def queue_broadcast(self, channel: str, origin: PeerName, update: Snapshot,
                        route: bytes | None = None) -> QueueResult:
        """Merge into the (channel, origin) slot; "full" means nothing was queued.

        ``route``: the forest below this neighbour in the origin's plan (the
        latest update's plan wins), None for an unplanned broadcast."""
        key = (channel, origin)
        slot = self._broadcasts.get(key)
        if slot is not None:
            slot.add(update, route)
            return "coalesced"
        if len(self._broadcasts) >= self._broadcast_limit:
            return "full"
        self._broadcasts[key] = MergedSlot(update, route)
        return "queued"

    def queue_unknown_broadcast(self, msg: BroadcastMsg) -> BroadcastMsg | None:
        """Append a raw broadcast of a channel we cannot decode; return one dropped."""
        if self._unknown_broadcasts is None:
            self._unknown_broadcasts = deque()
        return _append_bounded(self._unknown_broadcasts, msg, self._unknown_limit)

    def queue_gossip(self, channel: str, update: Snapshot) -> QueueResult:
        """Merge into the channel's gossip slot (never full: one slot per channel)."""
        slot = self._gossip.get(channel)
        if slot is not None:
            slot.add(update)
            return "coalesced"
        self._gossip[channel] = MergedSlot(update)
        return "queued"

    def queue_unknown_gossip(self, msg: GossipMsg) -> GossipMsg | None:
        """Append raw gossip of a channel we cannot decode; return one dropped."""
        if self._unknown_gossip is None:
            self._unknown_gossip = deque()
        return _append_bounded(self._unknown_gossip, msg, self._unknown_limit)

    def queue_digest(self, channel: str, digest: bytes, reply: bool) -> QueueResult:
        """The latest digest replaces a pending one; a pending request for a
        reply (``reply=False``) is kept, so replacing never loses the question."""
        pending = self._digests.get(channel)
        if pending is not None:
            self._digests[channel] = (digest, pending[1] and reply)
            return "coalesced"
        self._digests[channel] = (digest, reply)
        return "queued"

    def pop(self) -> GossipFamilyMsg | None:
        """The next message to write, in the order unicast, broadcast, gossip, digest."""
        # A FIFO that drains is dropped again: idle neighbours hold none.
        if self._unicasts:
            unicast = self._unicasts.popleft()
            if not self._unicasts:
                self._unicasts = None
            return unicast
        if self._broadcasts:
            (channel, origin), slot = _pop_first(self._broadcasts)
            return BroadcastMsg(channel, origin, slot.payload(), slot.route)
        if self._unknown_broadcasts:
            broadcast = self._unknown_broadcasts.popleft()
            if not self._unknown_broadcasts:
                self._unknown_broadcasts = None
            return broadcast
        if self._gossip:
            channel, slot = _pop_first(self._gossip)
            return GossipMsg(channel, self._local, slot.payload())
        if self._unknown_gossip:
            gossip = self._unknown_gossip.popleft()
            if not self._unknown_gossip:
                self._unknown_gossip = None
            return gossip
        if self._digests:
            channel, (digest, reply) = _pop_first(self._digests)
            return DigestMsg(channel, self._local, digest, reply)
        return None

    def pending(self) -> Iterator[tuple[str, str]]:
        """(channel, kind) of every queued message, e.g. to count them as dropped."""
        for unicast in self._unicasts or ():
            yield unicast.channel, KIND_UNICAST
        for channel, _origin in self._broadcasts:
            yield channel, KIND_BROADCAST
        for broadcast in self._unknown_broadcasts or ():
            yield broadcast.channel, KIND_BROADCAST
        for channel in self._gossip:
            yield channel, KIND_GOSSIP
        for gossip in self._unknown_gossip or ():
            yield gossip.channel, KIND_GOSSIP
        for channel in self._digests:
            yield channel, KIND_DIGEST


def _append_bounded(queue: deque[M], msg: M, limit: int) -> M | None:
    """Append; when ``limit`` messages are queued, drop and return the oldest."""
    dropped = queue.popleft() if len(queue) >= limit else None
    queue.append(msg)
    return dropped
