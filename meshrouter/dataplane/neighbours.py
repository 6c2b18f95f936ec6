"""Underlay neighbours of new tunnel destinations, resolved before traffic needs them.

OVS's userspace tunnels keep their own neighbour cache.  The first packet to a
destination missing from it makes OVS send its own ARP request and drop the packet
(ovs-lab NOTES P3), so the first ping over a fresh flow table, and the first one
after a vswitchd restart (which empties that cache), is lost.  OVS fills the cache
by snooping ARP replies on the underlay bridge, but only replies it sees: when the
kernel already holds the neighbour (a vswitchd restart) it sends no request and
nothing is snooped.

So the switch resolves each new destination through the kernel (one UDP datagram
to the discard port starts ARP if needed), waits briefly for the kernel to hold its
MAC, and then writes that MAC into OVS's cache explicitly (``tnl/arp/set``).  These
functions are synchronous (pyroute2) and run in the switch's namespace through
``netlink.in_netns``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from pyroute2 import IPRoute

# kernel neighbour states (linux/neighbour.h) whose link-layer address can be used
NUD_REACHABLE = 0x02
NUD_STALE = 0x04
NUD_DELAY = 0x08
NUD_PROBE = 0x10
NUD_PERMANENT = 0x80
USABLE = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT
POLL_INTERVAL = 0.02


def send_probe(addresses: list[str]) -> None:
    """One UDP datagram (discard port) to each address, so the kernel resolves its MAC."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for address in addresses:
            try:
                sock.sendto(b"meshrouter-arp-warm", (address, 9))
            except OSError:
                continue


def known_macs(addresses: list[str]) -> dict[str, str]:
    """The kernel's usable neighbour entries (address -> MAC) among ``addresses``."""
    wanted = set(addresses)
    found: dict[str, str] = {}
    with IPRoute() as ip:
        for entry in ip.get_neighbours(family=socket.AF_INET):
            address = entry.get_attr("NDA_DST")
            mac = entry.get_attr("NDA_LLADDR")
            if address in wanted and mac and entry["state"] & USABLE:
                found[address] = mac
    return found


def resolve(addresses: list[str], wait: float,
            clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep) -> dict[str, str]:
    """Probe ``addresses`` and return the MACs the kernel learns within ``wait`` seconds.

    Blocking; called in a worker thread.  Addresses not resolved in time are left
    out (the caller tries again later; the tunnel then falls back to OVS's own ARP).
    """
    found = known_macs(addresses)
    missing = [a for a in addresses if a not in found]
    if missing:
        send_probe(missing)
    deadline = clock() + wait
    while missing and clock() < deadline:
        sleep(POLL_INTERVAL)
        found.update(known_macs(missing))
        missing = [a for a in addresses if a not in found]
    return found
