"""Theory of operation: the fixed shape of every host's OpenFlow pipeline.

Named tables, the port numbers the OVS shell must create, and the cookie layout
live here, in one module, so the flow-table builder, the evaluator and the OVS
driver agree on them without passing numbers around.

Pipeline (each table has an explicit priority-0 drop, so "everything else is
dropped" is a property of the table, not of OVS defaults)::

    CLASSIFY  in_port=TUNNEL            -> TUNNEL_IN
              in_port=P, own MAC + IP   -> ARP (arp) / FORWARD (ip)   [anti-spoofing]
    ARP       arp request for a known IP -> answered in place (IN_PORT)
    FORWARD   dst MAC of a local port   -> output:P
              dst MAC of a remote one   -> tun_id=VNI(owner), ROUTE
              multicast dst MAC         -> local ports + our broadcast tree
    TUNNEL_IN tun_id=unicast VNI(us)    -> DELIVER
              tun_id=unicast VNI(other) -> relay: in_port:=0, dec_ttl, ROUTE
              tun_id=broadcast VNI(origin) -> local ports + our children in origin's tree
    DELIVER   dst MAC of a local port   -> output:P
    ROUTE     tun_id=unicast VNI(dst)   -> tun_dst=underlay(next hop), output:TUNNEL

ROUTE holds one flow per reachable peer and FORWARD one per endpoint, so a route
change rewrites per-peer flows only and an endpoint change per-endpoint flows
only (small deltas).
"""

from __future__ import annotations

from enum import IntEnum


class Table(IntEnum):
    """OpenFlow table numbers (the only place they are defined)."""

    CLASSIFY = 0
    ARP = 10
    FORWARD = 20
    TUNNEL_IN = 30
    DELIVER = 40
    ROUTE = 50


TUNNEL_PORT = 100
"""``ofport_request`` of the flow-based VXLAN port (``remote_ip=flow key=flow``)."""

FIRST_CONTAINER_PORT = 1000
"""Container ports are numbered from here (``ofport_request``), below is reserved."""

ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
MULTICAST_BIT_MAC = "01:00:00:00:00:00"
"""As value and mask: matches every group (broadcast and multicast) destination."""

# Cookie: prefix(16) | category(8) | object(32).  The prefix marks the flows as
# ours, so the OVS shell deletes/dumps only them (``cookie=PREFIX/MASK``).
COOKIE_PREFIX = 0x6D72 << 48
COOKIE_MASK = 0xFFFF << 48


class Category(IntEnum):
    """What a flow exists for (bits 32..39 of its cookie)."""

    BASE = 1
    PORT = 2
    ENDPOINT = 3
    ROUTE = 4
    BROADCAST = 5


def cookie(category: Category, obj: int = 0) -> int:
    """A cookie of ours: prefix, category and a 32-bit object key."""
    return COOKIE_PREFIX | (int(category) << 32) | (obj & 0xFFFFFFFF)
