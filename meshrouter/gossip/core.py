"""Theory of operation: the sans-IO gossip core of one router.

The core owns no sockets and no clock.  The router shell tells it which
neighbours are connected (``neighbour_up``/``neighbour_down``), hands it every
gossip-family message read from a connection (``handle``), lets channels
originate changes (``originate_broadcast``/``originate_gossip``/
``send_unicast``), calls ``periodic`` on a timer, and drains each neighbour's
send slots with ``pop_outgoing`` from that connection's sender task, woken by
``on_outgoing``.

How a change travels (O(N) messages mesh-wide, not O(N^2)):

* A local change is *broadcast*: sent along the spanning tree rooted at us;
  each receiver merges it and forwards the original payload to its own children
  in that tree, never back to the neighbour it came from nor to the origin.  On
  a stable topology each peer receives it exactly once: N-1 messages.  The
  tree travels with the broadcast when our routes can plan it (protocol 6,
  ``broadcast_plan``): each child gets the part of the tree below it and
  forwards by that alone, so forwarders compute no tree and agree on it
  however their views differ.  An unplanned broadcast (no routes yet, or a
  plan that failed to parse) is forwarded by each forwarder's own view of the
  origin's tree, as before.
* *Gossip* (to a random neighbour subset, or the answer to a digest) is merged
  by the receiver, and only the resulting delta is relayed -- as gossip from
  the receiver to a few random neighbours (``relay.fanout_size``), never back to the
  neighbour it came from, whatever the broadcast trees say (Weave's gossip).
  Each peer relays a piece of data at most once, when it was new to it, so it
  costs at most fanout messages per peer and stops once nobody lacks it;
  anyone the random relay misses gets it from the digests.
* *Digests* are the anti-entropy backstop and the heal path: a new connection
  and ``periodic`` send a digest (``reply=False``); the receiver answers with
  gossip carrying exactly what the digest's owner lacks and, if the digest
  shows data it lacks itself, with its own digest marked ``reply=True``, which
  is answered with data but never with another digest (no ping-pong; see
  ``digest_exchange``).
* *Unicast* is forwarded hop by hop along ``next_hop_any``.

Channels nobody registered here are relayed without being understood, so a
mixed-version mesh still carries them: broadcasts follow the tree, gossip goes
to a random subset de-duplicated by a bounded set of recent payload hashes,
unicasts addressed to us and digests are dropped and counted.

Before ``set_routes`` is called the core assumes only direct links: a unicast
reaches neighbours only, our broadcasts go to every neighbour, and others'
broadcasts are not forwarded.  That can never loop, and digests repair the rest.

Everything is bounded (send slots, unknown-channel queues, the dedupe set, the
stats table), and every drop is counted by channel and reason in ``stats``.
The per-neighbour send slots and their counters are the ``outbox``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from meshrouter.errors import ConfigError, ProtocolError
from meshrouter.gossip.broadcast_hops import BroadcastHops
from meshrouter.gossip.digest_exchange import DigestExchange
from meshrouter.gossip.interfaces import (
    BroadcastsToLinks,
    GossipData,
    Gossiper,
    RefinesDigests,
    RouteView,
    TailorsRelays,
)
from meshrouter.gossip.outbox import Outbox
from meshrouter.gossip.relay import Relay
from meshrouter.gossip.send_slots import GossipFamilyMsg, Snapshot
from meshrouter.gossip.stats import (
    DROP_MALFORMED,
    DROP_NO_ROUTE,
    DROP_NOT_NEIGHBOUR,
    DROP_OWN_BROADCAST,
    DROP_ROUTE_LOOP,
    DROP_UNKNOWN_CHANNEL_DIGEST,
    DROP_UNKNOWN_CHANNEL_UNICAST,
    KIND_BROADCAST,
    KIND_DIGEST,
    KIND_GOSSIP,
    KIND_UNICAST,
    GossipStats,
)
from meshrouter.names import PeerName
from meshrouter.wire.messages import (
    MAX_CHANNEL_NAME,
    BroadcastMsg,
    DigestMsg,
    GossipMsg,
    Message,
    UnicastMsg,
)

if TYPE_CHECKING:
    import random

DEFAULT_BROADCAST_SLOT_LIMIT = 4096


class GossipCore:
    """Gossip, broadcast, unicast and digest handling for one local peer."""

    on_outgoing: Callable[[PeerName], None] | None

    def __init__(
        self,
        local: PeerName,
        *,
        rng: random.Random | None = None,
        unicast_queue_limit: int = 1024,
        unknown_channel_limit: int = 256,
        fanout: int | None = None,
        broadcast_slot_limit: int = DEFAULT_BROADCAST_SLOT_LIMIT,
    ) -> None:
        """``unknown_channel_limit`` bounds both the per-neighbour queues of raw
        unknown-channel messages and the set of recent unknown payload hashes;
        ``broadcast_slot_limit`` bounds the (channel, origin) broadcast slots per
        neighbour (beyond it, broadcasts merge into the gossip slot instead).

        ``rng`` picks the random neighbours of gossip and digests; it is given
        once, here, like every long-lived core's.  (The per-call ``rng`` of
        ``handle``/``originate_gossip``/``periodic`` is kept only until the
        router shell passes it here; it is ignored when this one is set.)"""
        for what, value in (
            ("unicast_queue_limit", unicast_queue_limit),
            ("unknown_channel_limit", unknown_channel_limit),
            ("broadcast_slot_limit", broadcast_slot_limit),
        ):
            if value < 1:
                raise ConfigError(f"gossip {what} must be at least 1, got {value}")
        if fanout is not None and fanout < 1:
            raise ConfigError(f"gossip fanout must be at least 1, got {fanout}")
        self.local = local
        self._rng = rng
        self.stats = GossipStats()
        self.on_outgoing = None
        self._channels: dict[str, Gossiper] = {}
        # Optional capabilities, found once: isinstance on a runtime-checkable
        # Protocol walks its attributes each time (11.8 s of 870 s profiled).
        self._links: dict[str, BroadcastsToLinks] = {}
        self._tailors: dict[str, TailorsRelays] = {}
        self._refiners: dict[str, RefinesDigests] = {}
        self._routes: RouteView | None = None
        self._outbox = Outbox(local, self.stats, self._wake, unicast_limit=unicast_queue_limit,
                             unknown_limit=unknown_channel_limit,
                             broadcast_limit=broadcast_slot_limit)
        self._hops = BroadcastHops(local, self._outbox, self.stats)
        self._relayer = Relay(local, self._outbox, self.stats, self._tailors, fanout=fanout,
                              unknown_limit=unknown_channel_limit)
        self._digests = DigestExchange(self.stats, self._outbox, self._refiners)

    # ---------------------------------------------------------------- set-up

    def add_channel(self, name: str, gossiper: Gossiper) -> None:
        """Register the owner of channel ``name`` (once per name)."""
        if not name or len(name) > MAX_CHANNEL_NAME:
            raise ValueError(f"channel name {name!r} must have 1..{MAX_CHANNEL_NAME} characters")
        if name in self._channels:
            raise ValueError(f"gossip channel {name!r} is already registered")
        self._channels[name] = gossiper
        if isinstance(gossiper, BroadcastsToLinks):
            self._links[name] = gossiper
        if isinstance(gossiper, TailorsRelays):
            self._tailors[name] = gossiper
        if isinstance(gossiper, RefinesDigests):
            self._refiners[name] = gossiper
        self.stats.register(name)

    def set_routes(self, routes: RouteView) -> None:
        """Ask ``routes`` for next hops and broadcast trees from now on.

        The core asks it at the moment it forwards, so one view that always
        answers for the current topology (the router's
        ``topology/current_routes.CurrentRoutes``) is set once; a view that
        answers for a snapshot must be replaced whenever the routes change.
        """
        self._routes = routes
        self._hops.set_routes(routes)

    def neighbour_up(self, peer: PeerName) -> None:
        """A connection to ``peer`` is established: offer it a digest per channel.

        The digests start the heal path: the peer answers with whatever we lack
        and asks for whatever it lacks.  A connection to ourselves is refused by
        the handshake; it is ignored here defensively.
        """
        if peer == self.local:
            return
        self._outbox.add(peer)
        for channel, gossiper in self._channels.items():
            self._digests.offer(peer, channel, gossiper)

    def neighbour_down(self, peer: PeerName) -> None:
        """The connection is gone: discard its slots (counted as dropped)."""
        if self._outbox.remove(peer):
            self._digests.forget(peer)

    def neighbours(self) -> frozenset[PeerName]:
        return frozenset(self._outbox.neighbours)

    # -------------------------------------------------------------- incoming

    def handle(
        self,
        neighbour: PeerName,
        msg: Message,
        rng: random.Random | None = None,
    ) -> None:
        """Process one message read from ``neighbour``'s connection.

        Raises ``ProtocolError`` (after counting it) when the channel's gossiper
        refuses the payload; the shell then closes that one connection.  A
        Heartbeat is accepted and ignored, so the shell may pass any Message.
        """
        if isinstance(msg, GossipMsg):
            self._handle_gossip(neighbour, msg, self._rng_for(rng))
        elif isinstance(msg, BroadcastMsg):
            self._handle_broadcast(neighbour, msg)
        elif isinstance(msg, UnicastMsg):
            self._handle_unicast(neighbour, msg)
        elif isinstance(msg, DigestMsg):
            self._handle_digest(neighbour, msg)
        # A Heartbeat only feeds the connection's dead timer: nothing to do.

    def _handle_gossip(self, neighbour: PeerName, msg: GossipMsg, rng: random.Random) -> None:
        channel = msg.channel
        self.stats.record_received(channel, KIND_GOSSIP, len(msg.payload))
        gossiper = self._channels.get(channel)
        if gossiper is None:
            self._relayer.relay_unknown(neighbour, msg, rng)
            return
        with self._counting_malformed(channel):
            data = gossiper.decode(msg.payload)
            delta = gossiper.on_gossip(msg.src, data)
        if delta:
            # Only what was new travels on, to a few random neighbours (Weave's
            # gossip): each peer relays only what was new to it, so the relay
            # dies out as soon as everyone has it, whatever the routes say.
            self.stats.record_delta(channel)
            self._relayer.relay(channel, delta, rng, exclude=neighbour)

    def _handle_broadcast(self, neighbour: PeerName, msg: BroadcastMsg) -> None:
        channel, origin = msg.channel, msg.src
        self.stats.record_received(channel, KIND_BROADCAST,
                                   len(msg.payload) + len(msg.route or b""))
        if origin == self.local:
            # Our own broadcast came back: only possible while routes disagree.
            self.stats.record_drop(channel, DROP_OWN_BROADCAST)
            return
        plan = self._hops.received_plan(channel, msg.route)
        gossiper = self._channels.get(channel)
        if gossiper is None:
            if plan is not None:
                for hop, forest in self._hops.plan_hops(channel, origin, plan, neighbour):
                    self._outbox.unknown_broadcast(hop, BroadcastMsg(channel, origin,
                                                                     msg.payload, forest))
                return
            for hop in self._hops.tree_hops(channel, origin, came_from=neighbour):
                self._outbox.unknown_broadcast(hop, msg)
            return
        with self._counting_malformed(channel):
            data = gossiper.decode(msg.payload)
            delta = gossiper.on_broadcast(origin, data)
        if delta:
            self.stats.record_delta(channel)
        # Forward the original payload whether or not it was new to us: the
        # peers below us in the origin's tree rely on us for it.  The bytes are
        # decoded again only if the copy has to be merged with a later update.
        update = Snapshot(raw=msg.payload, decode=gossiper.decode)
        if plan is not None:
            for hop, forest in self._hops.plan_hops(channel, origin, plan, neighbour):
                self._outbox.broadcast(hop, channel, origin, update, forest)
            return
        self._broadcast(channel, origin, update, came_from=neighbour,
                        direct=self._origin_links(channel, origin, data))

    def _handle_unicast(self, neighbour: PeerName, msg: UnicastMsg) -> None:
        channel = msg.channel
        self.stats.record_received(channel, KIND_UNICAST, len(msg.payload))
        if msg.dst == self.local:
            self._deliver_unicast(channel, msg.src, msg.payload)
            return
        hop = self._next_hop(msg.dst)
        if hop is None:
            self.stats.record_drop(channel, DROP_NO_ROUTE)
        elif hop == neighbour:
            # Sending it back where it came from would bounce it between two
            # peers whose routes disagree; the sender can retry once they agree.
            self.stats.record_drop(channel, DROP_ROUTE_LOOP)
        else:
            self.stats.record_relay(channel, KIND_UNICAST)
            self._outbox.unicast(hop, msg)

    def _handle_digest(self, neighbour: PeerName, msg: DigestMsg) -> None:
        channel = msg.channel
        self.stats.record_received(channel, KIND_DIGEST, len(msg.digest))
        gossiper = self._channels.get(channel)
        if gossiper is None:
            self.stats.record_drop(channel, DROP_UNKNOWN_CHANNEL_DIGEST)
            return
        if neighbour not in self._outbox:
            self.stats.record_drop(channel, DROP_NOT_NEIGHBOUR)
            return
        with self._counting_malformed(channel):
            self._digests.handle(neighbour, gossiper, msg)

    # -------------------------------------------------------------- outgoing

    def originate_broadcast(self, channel: str, data: GossipData) -> None:
        """Send our own change down the spanning tree rooted at us: with the
        tree itself when the routes can plan it (``PlansBroadcasts``)."""
        direct = self._origin_links(channel, self.local, data)
        update = Snapshot(data=data.copy())
        plan = self._hops.own_plan(direct or frozenset())
        if plan is not None:
            for hop, forest in self._hops.plan_hops(channel, self.local, plan, None):
                self._outbox.broadcast(hop, channel, self.local, update, forest)
            return
        self._broadcast(channel, self.local, update, came_from=None, direct=direct)

    def originate_gossip(
        self, channel: str, data: GossipData, rng: random.Random | None = None
    ) -> None:
        """Send ``data`` to a random subset of neighbours (they relay the delta)."""
        targets = self._relayer.random_neighbours(self._rng_for(rng), exclude=None)
        if not targets:
            return
        update = Snapshot(data=data.copy())
        for peer in targets:
            self._outbox.gossip(peer, channel, update)

    def send_unicast(self, channel: str, dst: PeerName, payload: bytes) -> bool:
        """Route ``payload`` to ``dst``; False (and counted) when there is no route.

        A unicast to ourselves is delivered at once to the channel's gossiper.
        """
        if dst == self.local:
            return self._deliver_unicast(channel, self.local, payload)
        hop = self._next_hop(dst)
        if hop is None:
            self.stats.record_drop(channel, DROP_NO_ROUTE)
            return False
        self._outbox.unicast(hop, UnicastMsg(channel, self.local, dst, payload))
        return True

    def periodic(self, rng: random.Random | None = None) -> None:
        """Anti-entropy backstop: each channel's digest to one random neighbour."""
        if not self._outbox.neighbours:
            return
        rng = self._rng_for(rng)
        for channel, gossiper in self._channels.items():
            peer = rng.choice(self._outbox.neighbours)
            self._digests.offer(peer, channel, gossiper)

    def pop_outgoing(self, neighbour: PeerName) -> GossipFamilyMsg | None:
        """The next message to write to ``neighbour``, or None when idle.

        Never a Heartbeat (those are the connection's business), so the result
        can be passed straight to another core's ``handle`` in the simulator.
        """
        return self._outbox.pop(neighbour)

    def has_outgoing(self, neighbour: PeerName) -> bool:
        return self._outbox.has_outgoing(neighbour)

    # ------------------------------------------------------------- internals

    def _rng_for(self, rng: random.Random | None) -> random.Random:
        """The core's own rng; a per-call one only while the shell has not moved."""
        if self._rng is not None:
            return self._rng
        if rng is None:
            raise TypeError("GossipCore was built without an rng: pass GossipCore(..., rng=...)")
        return rng

    def _deliver_unicast(self, channel: str, src: PeerName, payload: bytes) -> bool:
        """Hand a unicast addressed to us to its channel: the one delivery path,
        whether it came over a connection or from ourselves.  False (counted)
        when nobody owns the channel; a refused payload is counted and raised."""
        gossiper = self._channels.get(channel)
        if gossiper is None:
            self.stats.record_drop(channel, DROP_UNKNOWN_CHANNEL_UNICAST)
            return False
        with self._counting_malformed(channel):
            gossiper.on_unicast(src, payload)
        return True

    def _next_hop(self, dst: PeerName) -> PeerName | None:
        """Next hop toward ``dst`` if it is a current neighbour, else None."""
        if self._routes is None:
            return dst if dst in self._outbox else None
        hop = self._routes.next_hop_any(dst)
        return hop if hop is not None and hop in self._outbox else None

    def _origin_links(self, channel: str, origin: PeerName,
                      data: GossipData) -> frozenset[PeerName] | None:
        gossiper = self._links.get(channel)
        return None if gossiper is None else gossiper.origin_links(origin, data)

    def _broadcast(
        self, channel: str, origin: PeerName, update: Snapshot, came_from: PeerName | None,
        direct: frozenset[PeerName] | None = None,
    ) -> None:
        for hop in self._hops.tree_hops(channel, origin, came_from, direct):
            self._outbox.broadcast(hop, channel, origin, update)

    @contextmanager
    def _counting_malformed(self, channel: str) -> Iterator[None]:
        try:
            yield
        except ProtocolError:
            self.stats.record_drop(channel, DROP_MALFORMED)
            raise

    def _wake(self, peer: PeerName) -> None:
        if self.on_outgoing is not None:
            self.on_outgoing(peer)
