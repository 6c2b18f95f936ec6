"""Theory of operation: the messages exchanged after the handshake.

Every frame body (after decryption) is one msgpack array whose first element is
a small integer tag, as in Weave (0 heartbeat, 4 gossip, 5 unicast, 6 broadcast);
tag 7 is our anti-entropy digest, which Weave lacks and which keeps periodic
gossip O(N) instead of O(N^2).  Decoding validates every field's type and size
and raises only ``MalformedMessageError``.

The envelope's schema is applied while decoding, not after: a message is an
array of at most ``MAX_FIELDS`` scalars, so the array header and each field's
first byte are checked before anything is built (``codec.unpack_scalars``).  A
frame full of nested maps is refused at its second byte instead of being
decoded into millions of objects first.  Strings must be valid UTF-8 (refused,
never replaced).  Payloads stay opaque bytes here; each channel decodes its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshrouter.codec import DEFAULT_MAX_SIZE, expect, pack, unpack_scalars
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName, check_peer_name

TAG_HEARTBEAT = 0
TAG_GOSSIP = 4
TAG_UNICAST = 5
TAG_BROADCAST = 6
TAG_DIGEST = 7
TAG_GOODBYE = 8

MAX_GOODBYE_REASON = 512

MAX_CHANNEL_NAME = 64
MAX_FIELDS = 5
# Longest string field in encoded bytes: the goodbye reason, 4 bytes per character at most.
MAX_STRING_BYTES = 4 * MAX_GOODBYE_REASON


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Keeps the connection's dead timer from firing; carries nothing."""


@dataclass(frozen=True, slots=True)
class GossipMsg:
    """Gossip to a neighbour: payload is channel data (full state or a delta)."""

    channel: str
    src: PeerName
    payload: bytes


@dataclass(frozen=True, slots=True)
class UnicastMsg:
    """Point-to-point message routed hop by hop along unicast next hops."""

    channel: str
    src: PeerName
    dst: PeerName
    payload: bytes


@dataclass(frozen=True, slots=True)
class BroadcastMsg:
    """Message relayed along the broadcast tree rooted at ``src``.

    ``route`` is the part of the origin's tree below the receiver (a forest,
    see ``gossip/broadcast_plan``; empty for a leaf), or None when the origin
    sent no plan and each forwarder uses its own view of the origin's tree.
    """

    channel: str
    src: PeerName
    payload: bytes
    route: bytes | None = None


@dataclass(frozen=True, slots=True)
class DigestMsg:
    """Anti-entropy summary of a channel; ``reply`` stops ping-pong."""

    channel: str
    src: PeerName
    digest: bytes
    reply: bool


@dataclass(frozen=True, slots=True)
class Goodbye:
    """Sent before closing on purpose, so the peer can show the user why."""

    reason: str


Message = Heartbeat | GossipMsg | UnicastMsg | BroadcastMsg | DigestMsg | Goodbye


def encode_message(msg: Message) -> bytes:
    """Encode one message to its msgpack frame body."""
    fields: list[Any]
    match msg:
        case Heartbeat():
            fields = [TAG_HEARTBEAT]
        case GossipMsg(channel, src, payload):
            fields = [TAG_GOSSIP, channel, src, payload]
        case UnicastMsg(channel, src, dst, payload):
            fields = [TAG_UNICAST, channel, src, dst, payload]
        case BroadcastMsg(channel, src, payload, route):
            fields = [TAG_BROADCAST, channel, src, payload, route]
        case DigestMsg(channel, src, digest, reply):
            fields = [TAG_DIGEST, channel, src, digest, reply]
        case Goodbye(reason):
            fields = [TAG_GOODBYE, reason[:MAX_GOODBYE_REASON]]
    return pack(fields)


def _channel(value: Any) -> str:
    name: str = expect(value, str, "channel")
    if not name or len(name) > MAX_CHANNEL_NAME:
        raise MalformedMessageError(f"channel name of length {len(name)} is out of range")
    return name


_ARITY = {
    TAG_HEARTBEAT: 1, TAG_GOSSIP: 4, TAG_UNICAST: 5, TAG_BROADCAST: 5, TAG_DIGEST: 5,
    TAG_GOODBYE: 2,
}


def decode_message(body: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Message:
    """Decode one frame body; raises MalformedMessageError on anything invalid."""
    fields = unpack_scalars(
        body,
        what="message",
        max_size=max_size,
        max_items=MAX_FIELDS,
        max_str_len=MAX_STRING_BYTES,
        max_bin_len=max_size,
    )
    if not fields:
        raise MalformedMessageError("message is an empty array")
    tag = fields[0]
    arity = _ARITY
    if not isinstance(tag, int) or isinstance(tag, bool) or tag not in arity:
        raise MalformedMessageError(f"unknown message tag {tag!r:.40}")
    if len(fields) != arity[tag]:
        raise MalformedMessageError(
            f"message tag {tag} has {len(fields)} fields, expected {arity[tag]}"
        )
    if tag == TAG_HEARTBEAT:
        return Heartbeat()
    if tag == TAG_GOODBYE:
        reason: str = expect(fields[1], str, "goodbye reason")
        if len(reason) > MAX_GOODBYE_REASON:
            raise MalformedMessageError("goodbye reason is too long")
        return Goodbye(reason)
    channel = _channel(fields[1])
    src = check_peer_name(fields[2])
    if tag == TAG_GOSSIP:
        return GossipMsg(channel, src, expect(fields[3], bytes, "payload"))
    if tag == TAG_UNICAST:
        dst = check_peer_name(fields[3])
        return UnicastMsg(channel, src, dst, expect(fields[4], bytes, "payload"))
    if tag == TAG_BROADCAST:
        route = fields[4]
        if route is not None:
            route = expect(route, bytes, "broadcast route")
        return BroadcastMsg(channel, src, expect(fields[3], bytes, "payload"), route)
    digest = expect(fields[3], bytes, "digest")
    return DigestMsg(channel, src, digest, expect(fields[4], bool, "reply"))
