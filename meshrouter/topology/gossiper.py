"""Theory of operation: the ``topology`` channel's adapter to the gossip core.

The gossip core moves bytes and knows nothing about peer records; this adapter
decodes payloads into ``PeerMap``s and feeds them to ``Topology.apply``, whose
delta is what the core relays.  Gossip and broadcast are handled alike because
topology merges are idempotent: whichever way a record arrives, only what is
new to us goes on.  The topology channel sends no unicasts, so one arriving is
a protocol violation.

Payloads carry whole records and per-link deltas (see ``deltas``).  Gossip
relays only whole records of peers that were unknown, and to each neighbour
only those of peers it has no link with (``relay_for``); a delta is never
relayed by gossip (its receivers may lack the base), only forwarded on its
origin's broadcast tree by the gossip core, with its original bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName
from meshrouter.topology.peer_map import PeerMap
from meshrouter.topology.topology import Topology

if TYPE_CHECKING:
    import random

CHANNEL = "topology"


class TopologyGossiper:
    """Plugs a ``Topology`` into the gossip core as the ``topology`` channel."""

    channel = CHANNEL

    def __init__(self, topology: Topology, rng: random.Random) -> None:
        """``rng`` is what ``Topology.apply`` draws a new short ID with; give the
        same one the topology was built with (it is the router's)."""
        self.topology = topology
        self._rng = rng

    def decode(self, payload: bytes) -> PeerMap:
        """Untrusted payload -> PeerMap; raises only MalformedMessageError."""
        return PeerMap.decode(payload)

    def on_gossip(self, src: PeerName, data: PeerMap) -> PeerMap | None:
        """Merge gossip from neighbour ``src``; return what to relay on.

        Only records of peers that were unknown to us are relayed: version bumps
        of known peers travel on their origin's broadcast tree and are repaired
        by digests.  Relaying them epidemically as well multiplied every change
        by the fanout while a mesh was forming (4.4 GB for a 100-peer join).

        Nor is anything relayed from the answer to a digest we asked ``src``
        with: that is us catching up, not news.  A joiner learns every record
        that way and relayed them to neighbours that held them all; the records
        a repair round brings us reached the rest of the mesh on their origin's
        broadcast, and anyone that missed them asks in its own round.  (A
        100-peer join: 59,229 -> 48,903 messages, gossip 13,290 -> 4,771.)
        """
        answered = self.topology.digest_settled(src)  # its answer to our ask
        unknown = [name for name in data.records if name not in self.topology]
        delta = self.topology.apply(data, self._rng)
        if delta is None or not unknown or answered:
            return None
        fresh = {name: delta.records[name] for name in unknown if name in delta.records}
        return PeerMap(fresh) if fresh else None

    def relay_for(self, neighbour: PeerName, delta: PeerMap) -> PeerMap | None:
        """The records of ``delta`` that ``neighbour`` may lack (``TailorsRelays``):
        not its own, and none of a peer it has a link with, by its record or
        by that peer's.  A link's two ends swapped records when it came up
        (the digest exchange of a new connection always covers the asked
        neighbour's own bucket), so relaying them only repeats it: a joiner of
        a full mesh relayed every record it learned back to the mesh, and
        every late learner of the joiner's record relayed it whole to
        neighbours already linked to the joiner (a fifth of a 100-peer join's
        bytes)."""
        held = self.topology.record(neighbour)
        linked = held.established_peers() if held is not None else frozenset()
        kept = {name: record for name, record in delta.records.items()
                if name != neighbour and name not in linked
                and neighbour not in record.established_peers()}
        if len(kept) == len(delta.records) and not delta.deltas:
            return delta
        return PeerMap(kept) if kept else None

    def on_broadcast(self, src: PeerName, data: PeerMap) -> PeerMap | None:
        """Merge a broadcast originated by ``src``; return the delta to relay."""
        return self.topology.apply(data, self._rng)

    def origin_links(self, origin: PeerName, data: PeerMap) -> frozenset[PeerName]:
        """The peers ``origin``'s record lists as established at the version
        ``data`` brings it to (``BroadcastsToLinks``), if that is the version
        we hold (applied just now); else none.

        An origin broadcasts its record as it is at that moment, so its links
        at that version are exactly its confirmed connections then: it sends
        its broadcast to each (``GossipCore``) and forwarders skip them.  In a
        full mesh every broadcast is then one message per peer, however much
        the views differ while a joiner's links come up."""
        reached: tuple[int, int] | None = None
        record = data.records.get(origin)
        if record is not None:
            reached = (record.version, record.uid)
        for delta in data.deltas.get(origin, ()):
            if reached is None or (delta.version, delta.uid) > reached:
                reached = (delta.version, delta.uid)
        held = self.topology.record(origin)
        if reached is None or held is None or (held.version, held.uid) != reached:
            return frozenset()
        return held.established_peers()

    def on_unicast(self, src: PeerName, payload: bytes) -> None:
        """The topology channel sends no unicasts: one arriving is malformed."""
        raise MalformedMessageError(f"topology channel got a unicast from {src:012x}; it has none")

    def full_state(self) -> PeerMap | None:
        """Every record we know, ours included (never empty)."""
        return self.topology.peer_map

    def digest(self) -> bytes:
        """The bucket summary (record-set and per-bucket fingerprints) offered first."""
        return self.topology.digest()

    def full_digest(self) -> bytes:
        """``{name: (version, uid)}`` of every record (``full_digest_for`` is used)."""
        return self.topology.full_digest()

    def full_digest_for(self, neighbour: PeerName, received: bytes) -> bytes:
        """The buckets ``received`` shows differing (less those another
        neighbour is already answering, see ``asks``), or that it covers
        (``RefinesDigests``; see ``buckets``)."""
        return self.topology.full_digest_for(received, neighbour)

    def neighbour_gone(self, neighbour: PeerName) -> None:
        self.topology.digest_settled(neighbour)

    def wants_full_digest(self, digest: bytes) -> bool:
        return self.topology.wants_full_digest(digest)

    def newer_than(self, digest: bytes) -> PeerMap | None:
        return self.topology.newer_than(digest)

    def lacks_from(self, digest: bytes) -> bool:
        return self.topology.lacks_from(digest)
