"""Sans-IO gossip: channels of mergeable data, send slots, broadcast trees, digests."""

from meshrouter.gossip.core import GossipCore
from meshrouter.gossip.interfaces import GossipData, Gossiper, RouteView
from meshrouter.gossip.relay import fanout_size
from meshrouter.gossip.send_slots import GossipFamilyMsg, SendSlots, Snapshot
from meshrouter.gossip.stats import ChannelStats, GossipStats

__all__ = [
    "ChannelStats",
    "GossipCore",
    "GossipData",
    "GossipFamilyMsg",
    "GossipStats",
    "Gossiper",
    "RouteView",
    "SendSlots",
    "Snapshot",
    "fanout_size",
]
