"""Theory of operation: the contracts between the gossip core and its users.

The gossip core moves opaque, mergeable state between routers; it never knows
what a channel's data means.  Three protocols make that possible:

* ``GossipData`` is a value the core can encode, copy and merge.  Merging is the
  only way two pieces of data are combined, so a send slot can coalesce many
  pending updates into one message while a connection is backpressured.
* ``Gossiper`` is a channel's owner (topology, IPAM, DNS, ...).  It decodes
  untrusted bytes, merges what arrives into its own state and reports the
  *delta* (only what was new), which is all the core ever relays.  Digests let
  two neighbours find out what each lacks without sending full state.
* ``RouteView`` is the part of the routing table the core needs: a next hop per
  destination and the per-origin broadcast spanning tree.

Contract details the core relies on:

* ``merge`` never mutates ``other``; the core hands the same object to many send
  slots and only ever merges *into* its own private copies.
* Data returned by a gossiper (a delta, ``newer_than``, ``full_state``) is handed
  over to the core: the gossiper must not mutate it afterwards.
* ``decode`` raises only ``ProtocolError`` subclasses (normally
  ``MalformedMessageError``) and is deterministic, so bytes that decoded once
  decode again.
* Every method of ``Gossiper`` is required: the core calls them directly,
  never through ``getattr``, so a missing one is a type error, not a silent
  change of protocol.  One capability is optional and declared as its own
  protocol, ``RefinesDigests``: a gossiper whose answer to a digest depends on
  the digest and on whom it asks (the topology channel's bucketed digests)
  has ``full_digest_for(neighbour, received)``, which the core then calls
  instead of ``full_digest()``, and ``neighbour_gone(neighbour)``.  Another,
  ``TailorsRelays``, lets a gossiper say which part of a delta a neighbour
  may still lack before the core relays it (see ``relay_for``); and
  ``BroadcastsToLinks`` lets it name the peers a broadcast's origin sends it
  to itself, which forwarders then leave out (see ``origin_links``).
  A ``RouteView`` may also be ``PlansBroadcasts``: our own broadcasts then
  carry their tree, and forwarders only follow it (``broadcast_plan``).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from meshrouter.names import PeerName


class GossipData(Protocol):
    """A mergeable, encodable piece of channel state (full state or a delta)."""

    def encode(self) -> bytes:
        """Serialise for the wire; the owning gossiper's ``decode`` inverts it."""
        ...

    def merge(self, other: Any) -> Any:
        """Merge ``other`` into ``self`` in place; return what was new, or None.

        Must be commutative, associative and idempotent, and must not mutate
        ``other``.
        """
        ...

    def copy(self) -> Any:
        """An independent copy: mutating one never changes the other."""
        ...


class Gossiper(Protocol):
    """The owner of one named channel's state."""

    def decode(self, payload: bytes) -> GossipData:
        """Decode untrusted bytes; raise ``MalformedMessageError`` on bad input."""
        ...

    def on_gossip(self, src: PeerName, data: Any) -> GossipData | None:
        """Merge gossip from neighbour ``src`` into our state; return the delta."""
        ...

    def on_broadcast(self, src: PeerName, data: Any) -> GossipData | None:
        """Merge a broadcast originated by ``src``; return the delta."""
        ...

    def on_unicast(self, src: PeerName, payload: bytes) -> None:
        """Handle a point-to-point message from ``src`` addressed to us.

        The one signature for every channel: the payload is raw bytes because a
        unicast is never merged or relayed by the core, so the channel decodes
        it (and raises ``MalformedMessageError`` on bad input) itself.  Anything
        else a channel needs (a clock, an rng) it was given at construction.
        """
        ...

    def full_state(self) -> GossipData | None:
        """Everything we know, or None when there is nothing."""
        ...

    def digest(self) -> bytes:
        """What we offer a neighbour first: our full digest, or a short summary.

        A summary (e.g. a fingerprint of the whole state) settles neighbours
        that already agree in a few bytes; see ``wants_full_digest``.
        """
        ...

    def full_digest(self) -> bytes:
        """A digest that ``newer_than`` and ``lacks_from`` can act on.

        Channels without a summary return ``digest()`` itself.
        """
        ...

    def wants_full_digest(self, digest: bytes) -> bool:
        """True when ``digest`` is a summary that differs from ours.

        The core then answers with our full digest (not as a reply), so the
        exchange runs as usual: at most three digests, never ping-pong.
        Channels without a summary always return False.
        """
        ...

    def newer_than(self, digest: bytes) -> GossipData | None:
        """What the digest's owner lacks that we have, or None."""
        ...

    def lacks_from(self, digest: bytes) -> bool:
        """True when the digest shows data that we lack."""
        ...


@runtime_checkable
class RefinesDigests(Protocol):
    """A gossiper that answers a digest with a digest of what it shows differing."""

    def full_digest_for(self, neighbour: PeerName, received: bytes) -> bytes:
        """Our digest in answer to ``neighbour``'s ``received`` (a summary that
        differs from ours, or a digest that shows data we lack): e.g. only the
        parts of our state the summary shows differing, or the parts
        ``received`` covers."""
        ...

    def neighbour_gone(self, neighbour: PeerName) -> None:
        """``neighbour``'s connection is gone: what we asked it will not come."""
        ...


@runtime_checkable
class TailorsRelays(Protocol):
    """A gossiper that knows part of what its neighbours hold."""

    def relay_for(self, neighbour: PeerName, delta: Any) -> GossipData | None:
        """The part of ``delta`` (from ``on_gossip``) that ``neighbour`` may
        lack: ``delta`` itself when all of it, None when none of it.  The core
        relays gossip to a random few of the neighbours that get something, so
        the relay neither wastes its fanout on neighbours that hold the delta
        nor re-sends them what they hold."""
        ...


@runtime_checkable
class BroadcastsToLinks(Protocol):
    """A gossiper that knows, from a broadcast's own data, whom its origin
    linked to when it sent it."""

    def origin_links(self, origin: PeerName, data: Any) -> frozenset[PeerName]:
        """The peers ``origin`` sends the broadcast carrying ``data`` (merged
        into our state already) to itself: an origin sends its own broadcast to
        these besides its tree, and a forwarder leaves them out of its
        children.  Must be exactly the origin's links when it sent ``data``
        (empty when not known exactly): one named here that the origin did not
        send to would miss the broadcast."""
        ...


@runtime_checkable
class ListsNeighbours(Protocol):
    """Optional for a ``RouteView``: our neighbours in the graph its trees are
    built on (a superset of our children in any tree), cheaply.  A forwarder
    every one of whose neighbours the origin sent a broadcast to itself (a full
    mesh: the origin is linked to everyone) then needs no tree at all."""

    def neighbours(self) -> list[PeerName]:
        ...


@runtime_checkable
class PlansBroadcasts(Protocol):
    """Optional for a ``RouteView``: the tree our own broadcast follows, as each
    child's forest (``broadcast_plan``), so that forwarders need no tree."""

    def broadcast_plan(self, direct: frozenset[PeerName]) -> list[tuple[PeerName, bytes]] | None:
        """Our children in our own broadcast tree, each with the forest below it
        (None: no plan; the broadcast then goes unplanned).

        ``direct``: peers we send this broadcast to ourselves whatever the tree
        (``BroadcastsToLinks``: our links at this version); each becomes our
        child in the plan, with its subtree if it has one, so no peer is
        listed twice."""
        ...


class RouteView(Protocol):
    """The routing decisions the gossip core needs, computed elsewhere."""

    def next_hop_any(self, dst: PeerName) -> PeerName | None:
        """Neighbour to send a unicast for ``dst`` to, over any connection."""
        ...

    def broadcast_next_hops(self, origin: PeerName) -> list[PeerName]:
        """Our children in the spanning tree rooted at ``origin``."""
        ...
