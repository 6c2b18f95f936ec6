"""Theory of operation: gossip to a random few neighbours (Weave's epidemic relay).

Gossip -- data a router originates for a random subset, the delta a gossip
message brought us, and messages of channels nobody registered here -- goes to
``fanout_size`` random neighbours, never back to the neighbour it came from.
Each peer relays a piece of data at most once (when it was new to it), so the
relay dies out as soon as everyone has it.

* A channel that ``TailorsRelays`` narrows the delta per neighbour first, and
  the few are drawn from the neighbours that still get something.
* An unknown channel's payload cannot be merged, so "new to us" is decided by
  a bounded set of recent payload hashes instead.

Candidates are sorted before sampling so that a seeded rng is reproducible.
The ``GossipCore`` owns one ``Relay`` and shares its outbox and stats with it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from meshrouter.gossip.interfaces import GossipData, TailorsRelays
from meshrouter.gossip.outbox import Outbox
from meshrouter.gossip.send_slots import Snapshot
from meshrouter.gossip.stats import DROP_DUPLICATE, KIND_GOSSIP, GossipStats
from meshrouter.names import PeerName
from meshrouter.wire.messages import GossipMsg

if TYPE_CHECKING:
    import random

PAYLOAD_HASH_BYTES = 8


def fanout_size(neighbour_count: int, fanout: int | None) -> int:
    """How many random neighbours gossip goes to.

    ``max(2, ceil(log2(N + 1)))`` (written ``N.bit_length()``, which is the same
    for N >= 0, without floats), or the configured ``fanout``, never more than N.
    """
    wanted = fanout if fanout is not None else max(2, neighbour_count.bit_length())
    return min(neighbour_count, wanted)


def payload_hash(channel: str, payload: bytes) -> bytes:
    """Identity of an unknown-channel gossip message for de-duplication."""
    hasher = hashlib.blake2b(digest_size=PAYLOAD_HASH_BYTES)
    hasher.update(channel.encode())
    hasher.update(b"\0")
    hasher.update(payload)
    return hasher.digest()


class Relay:
    """Random-subset relaying for one router (see the module docstring)."""

    def __init__(self, local: PeerName, outbox: Outbox, stats: GossipStats,
                 tailors: Mapping[str, TailorsRelays], *, fanout: int | None,
                 unknown_limit: int) -> None:
        """``tailors``: the core's live map of channels whose gossiper
        ``TailorsRelays``; ``unknown_limit`` bounds the recent-hash set."""
        self._local = local
        self._outbox = outbox
        self._stats = stats
        self._tailors = tailors
        self.fanout = fanout
        self._unknown_limit = unknown_limit
        self.recent_unknown: dict[bytes, None] = {}

    def random_neighbours(self, rng: random.Random, exclude: PeerName | None) -> list[PeerName]:
        """A random subset of the neighbours other than ``exclude``."""
        neighbours = self._outbox.neighbours
        candidates = [peer for peer in neighbours if peer != exclude]
        count = min(len(candidates), fanout_size(len(neighbours), self.fanout))
        return rng.sample(candidates, count)

    def relay(self, channel: str, delta: GossipData, rng: random.Random, *,
              exclude: PeerName) -> None:
        """Relay ``delta`` to a random few neighbours, tailored per neighbour
        where the channel can."""
        update = Snapshot(data=delta)
        tailor = self._tailors.get(channel)
        if tailor is None:
            for peer in self.random_neighbours(rng, exclude=exclude):
                self._outbox.gossip(peer, channel, update)
            return
        neighbours = self._outbox.neighbours
        parts: dict[PeerName, GossipData] = {}
        for peer in neighbours:
            if peer != exclude:
                part = tailor.relay_for(peer, delta)
                if part:
                    parts[peer] = part
        count = min(len(parts), fanout_size(len(neighbours), self.fanout))
        for peer in rng.sample(sorted(parts), count):
            part = parts[peer]
            self._outbox.gossip(peer, channel, update if part is delta else Snapshot(data=part))

    def relay_unknown(self, neighbour: PeerName, msg: GossipMsg, rng: random.Random) -> None:
        """Relay a gossip message of a channel nobody registered here, once."""
        key = payload_hash(msg.channel, msg.payload)
        recent = self.recent_unknown
        if key in recent:
            self._stats.record_drop(msg.channel, DROP_DUPLICATE)
            return
        recent[key] = None
        if len(recent) > self._unknown_limit:
            del recent[next(iter(recent))]
        relayed = GossipMsg(msg.channel, self._local, msg.payload)
        for peer in self.random_neighbours(rng, exclude=neighbour):
            self._stats.record_relay(msg.channel, KIND_GOSSIP)
            self._outbox.unknown_gossip(peer, relayed)
