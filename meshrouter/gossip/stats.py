"""Theory of operation: counters for what the gossip core did, per channel.

Weave's users could not see why the mesh melted; these counters make the cost of
each channel visible (messages and bytes by kind and direction, deltas, relays,
coalesced updates, drops by reason).  The simulator and the /metrics endpoint
read them through ``as_dict()`` and ``total()``.

Memory is bounded: registered channels always get their own entry, and at most
``max_channels`` further (unknown) channel names do; any more are folded into
the ``OTHER`` entry, so a neighbour inventing channel names cannot grow us.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KIND_GOSSIP = "gossip"
KIND_BROADCAST = "broadcast"
KIND_UNICAST = "unicast"
KIND_DIGEST = "digest"
KINDS = (KIND_UNICAST, KIND_BROADCAST, KIND_GOSSIP, KIND_DIGEST)

DROP_NO_ROUTE = "no_route"
DROP_NOT_NEIGHBOUR = "not_neighbour"
DROP_ROUTE_LOOP = "route_loop"
DROP_UNICAST_QUEUE_FULL = "unicast_queue_full"
DROP_UNKNOWN_QUEUE_FULL = "unknown_queue_full"
DROP_DUPLICATE = "duplicate"
DROP_UNKNOWN_CHANNEL_UNICAST = "unknown_channel_unicast"
DROP_UNKNOWN_CHANNEL_DIGEST = "unknown_channel_digest"
DROP_MALFORMED = "malformed"
DROP_MALFORMED_PLAN = "malformed_plan"  # the broadcast is kept and forwarded unplanned
DROP_OWN_BROADCAST = "own_broadcast"
DROP_NEIGHBOUR_DOWN = "neighbour_down"

# Not a drop: a broadcast that found the neighbour's broadcast slots full was
# merged into that neighbour's gossip slot instead (no data is lost).
COALESCED_BROADCAST_INTO_GOSSIP = "broadcast_into_gossip"
# Not sent: the reply digest to a neighbour that our own full digest already
# asks for data (its answer brings what we lack; see GossipCore._handle_digest).
COALESCED_DIGEST_ASKED = "digest_reply_already_asked"

COUNTER_FIELDS = (
    "sent_messages",
    "sent_bytes",
    "received_messages",
    "received_bytes",
    "relayed",
    "coalesced",
    "dropped",
)


def _bump(counter: dict[str, int], key: str, amount: int = 1) -> None:
    counter[key] = counter.get(key, 0) + amount


@dataclass
class ChannelStats:
    """Counters of one channel; dict keys are message kinds or drop reasons."""

    sent_messages: dict[str, int] = field(default_factory=dict)
    sent_bytes: dict[str, int] = field(default_factory=dict)
    received_messages: dict[str, int] = field(default_factory=dict)
    received_bytes: dict[str, int] = field(default_factory=dict)
    relayed: dict[str, int] = field(default_factory=dict)
    coalesced: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    deltas: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready copy of the counters."""
        out: dict[str, Any] = {name: dict(getattr(self, name)) for name in COUNTER_FIELDS}
        out["deltas"] = self.deltas
        return out


class GossipStats:
    """Per-channel counters with a bounded number of channel entries."""

    OTHER = "(other)"

    def __init__(self, *, max_channels: int = 64) -> None:
        self._max_unregistered = max_channels
        self._registered: set[str] = set()
        self._unregistered_count = 0
        self.channels: dict[str, ChannelStats] = {}

    def register(self, channel: str) -> None:
        """Give a known channel its own entry regardless of the bound."""
        self._registered.add(channel)
        if channel not in self.channels:
            self.channels[channel] = ChannelStats()

    def channel(self, name: str) -> ChannelStats:
        """The entry counting ``name`` (``OTHER`` once the bound is reached)."""
        entry = self.channels.get(name)
        if entry is not None:
            return entry
        if self._unregistered_count >= self._max_unregistered:
            name = self.OTHER
            entry = self.channels.get(name)
            if entry is not None:
                return entry
        else:
            self._unregistered_count += 1
        entry = ChannelStats()
        self.channels[name] = entry
        return entry

    def record_sent(self, channel: str, kind: str, nbytes: int) -> None:
        entry = self.channel(channel)
        _bump(entry.sent_messages, kind)
        _bump(entry.sent_bytes, kind, nbytes)

    def record_received(self, channel: str, kind: str, nbytes: int) -> None:
        entry = self.channel(channel)
        _bump(entry.received_messages, kind)
        _bump(entry.received_bytes, kind, nbytes)

    def record_delta(self, channel: str) -> None:
        self.channel(channel).deltas += 1

    def record_relay(self, channel: str, kind: str) -> None:
        _bump(self.channel(channel).relayed, kind)

    def record_coalesced(self, channel: str, kind: str) -> None:
        _bump(self.channel(channel).coalesced, kind)

    def record_drop(self, channel: str, reason: str, count: int = 1) -> None:
        _bump(self.channel(channel).dropped, reason, count)

    def total(self, counter: str, key: str | None = None) -> int:
        """Sum over channels of one counter (``"deltas"`` or a COUNTER_FIELDS name).

        With ``key`` only that kind/reason is summed, else every key.
        """
        result = 0
        for entry in self.channels.values():
            if counter == "deltas":
                result += entry.deltas
                continue
            values: dict[str, int] = getattr(entry, counter)
            result += values.get(key, 0) if key is not None else sum(values.values())
        return result

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready snapshot: per-channel counters plus mesh-wide totals."""
        totals: dict[str, Any] = {}
        for name in COUNTER_FIELDS:
            merged: dict[str, int] = {}
            for entry in self.channels.values():
                for key, value in getattr(entry, name).items():
                    _bump(merged, key, value)
            totals[name] = merged
        totals["deltas"] = self.total("deltas")
        return {
            "channels": {name: entry.as_dict() for name, entry in self.channels.items()},
            "totals": totals,
        }
