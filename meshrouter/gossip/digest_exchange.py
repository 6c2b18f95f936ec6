"""Theory of operation: the anti-entropy exchange of digests between two neighbours.

A new connection and every periodic round offer a channel's digest
(``offer``, ``reply=False``).  A gossiper may offer a *summary* first (e.g. a
fingerprint of its whole state): equal summaries end the exchange at a few
bytes; a different one is answered with our full digest, not as a reply, so
the exchange then runs as usual.  A full digest is answered with gossip
carrying exactly what its owner lacks and, if it shows data we lack, with our
own full digest marked ``reply=True``, which is answered with data but never
with another digest: at most three digests, never ping-pong.

On a new connection both sides offer summaries at once, so both send their
full digest (not as a reply), and each would also answer the other's with its
full digest as a reply -- whose answer is the data the first exchange already
sent: the joiner of a full mesh received the whole state twice per contact.
So a full digest that asks for data is not answered with ours while ours,
asking the same, is on its way to that neighbour (the *asked* set): its answer
brings us what we lack (counted as ``digest_reply_already_asked``).

A gossiper that ``RefinesDigests`` answers a summary with a digest of only
what the summary shows differing, and a digest with one of only what it
covers (the topology channel's buckets); the exchange is the same.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshrouter.gossip.interfaces import Gossiper, RefinesDigests
from meshrouter.gossip.outbox import Outbox
from meshrouter.gossip.send_slots import Snapshot
from meshrouter.gossip.stats import COALESCED_DIGEST_ASKED, GossipStats
from meshrouter.names import PeerName
from meshrouter.wire.messages import DigestMsg


class DigestExchange:
    """Digest handling for one router; the asked set is its only state."""

    def __init__(self, stats: GossipStats, outbox: Outbox,
                 refiners: Mapping[str, RefinesDigests]) -> None:
        """``refiners``: the channels whose gossiper ``RefinesDigests`` (the
        core's live map, found once per channel at registration)."""
        self._stats = stats
        self._outbox = outbox
        self._refiners = refiners
        # (neighbour, channel) to which the last digest we queued is our full
        # digest asking for data (reply=False).
        self._asked: set[tuple[PeerName, str]] = set()

    def offer(self, peer: PeerName, channel: str, gossiper: Gossiper) -> None:
        """Start an exchange with ``peer``: our (summary) digest."""
        self._queue(peer, channel, gossiper.digest(), reply=False)

    def forget(self, peer: PeerName) -> None:
        """``peer``'s connection is gone."""
        self._asked = {key for key in self._asked if key[0] != peer}
        for refiner in self._refiners.values():
            refiner.neighbour_gone(peer)

    def handle(self, neighbour: PeerName, gossiper: Gossiper, msg: DigestMsg) -> None:
        """Answer ``neighbour``'s digest; the gossiper's ``ProtocolError`` propagates."""
        channel = msg.channel
        missing = gossiper.newer_than(msg.digest)
        summary_differs = not msg.reply and gossiper.wants_full_digest(msg.digest)
        wants_ours = not msg.reply and not summary_differs and gossiper.lacks_from(msg.digest)
        if missing:
            self._outbox.gossip(neighbour, channel, Snapshot(data=missing))
        key = (neighbour, channel)
        if summary_differs:
            self._queue(neighbour, channel, self._answer(channel, gossiper, neighbour, msg.digest),
                        reply=False)
            self._asked.add(key)
        elif not msg.reply and key in self._asked:
            self._asked.discard(key)
            if wants_ours:
                self._stats.record_coalesced(channel, COALESCED_DIGEST_ASKED)
        elif wants_ours:
            self._queue(neighbour, channel, self._answer(channel, gossiper, neighbour, msg.digest),
                        reply=True)

    def _answer(self, channel: str, gossiper: Gossiper, neighbour: PeerName,
                received: bytes) -> bytes:
        """Our digest in answer to ``received``: refined to what it shows
        differing where the gossiper can (``RefinesDigests``), else our full one."""
        refiner = self._refiners.get(channel)
        if refiner is not None:
            return refiner.full_digest_for(neighbour, received)
        return gossiper.full_digest()

    def _queue(self, peer: PeerName, channel: str, digest: bytes, reply: bool) -> None:
        # A digest queued now replaces a pending one in the slot: whatever we
        # asked for before may never be sent, so nothing counts as asked.
        self._asked.discard((peer, channel))
        self._outbox.digest(peer, channel, digest, reply)
