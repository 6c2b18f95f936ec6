"""Topology: peer records CRDT, garbage collection, short IDs and routes (sans-IO)."""

from __future__ import annotations

from meshrouter.topology.gossiper import TopologyGossiper
from meshrouter.topology.peer_map import PeerMap, decode_digest, encode_digest
from meshrouter.topology.records import ConnectionRecord, PeerRecord
from meshrouter.topology.route_graph import RouteGraph
from meshrouter.topology.routes import Routes, compute_routes
from meshrouter.topology.topology import Topology

__all__ = [
    "ConnectionRecord",
    "PeerMap",
    "PeerRecord",
    "RouteGraph",
    "Routes",
    "Topology",
    "TopologyGossiper",
    "compute_routes",
    "decode_digest",
    "encode_digest",
]
