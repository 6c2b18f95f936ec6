"""OVS's tunnel neighbour cache, filled before the first packet needs it.

With the userspace datapath, the first packet to a tunnel destination missing from
OVS's neighbour cache is dropped while OVS sends its own ARP request (ovs-lab NOTES
P3); a vswitchd restart empties the cache.  ``TunnelCache`` remembers which
destinations it has written and, for each new one in the flow table, asks the kernel
for the MAC (``neighbours.resolve``) and writes it with ``tnl/arp/set`` on the
underlay bridge.  A destination not resolved in time is tried again at the next
apply.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from meshrouter.dataplane import neighbours, netlink
from meshrouter.dataplane.ovs import flowsync
from meshrouter.dataplane.ovs.tools import OvsToolError, OvsTools

log = logging.getLogger(__name__)
NEIGHBOUR_WAIT = 1.0  # seconds an apply waits for the kernel to resolve a new tunnel peer


class TunnelCache:
    """The tunnel destinations whose MAC this switch incarnation has been given."""

    def __init__(self, phy_bridge: str) -> None:
        self.phy_bridge = phy_bridge
        self.netns_path: str | None = None  # the switch's namespace, once known
        self.written: set[str] = set()

    def forget(self) -> None:
        """A new vswitchd starts with an empty cache."""
        self.written.clear()

    async def fill(self, tools: OvsTools, lines: Iterable[str], *, set_in_ovs: bool) -> None:
        """Resolve the tunnel destinations of ``lines`` not yet written and write them.

        ``set_in_ovs`` False (no underlay bridge of ours) only primes the kernel's
        neighbour table, from which OVS snoops the replies.
        """
        targets = sorted(flowsync.tunnel_destinations(lines) - self.written)
        if not targets:
            return
        macs = await netlink.in_netns(
            self.netns_path, lambda: neighbours.resolve(targets, NEIGHBOUR_WAIT))
        for address, mac in sorted(macs.items()):
            if set_in_ovs:
                try:
                    await tools.appctl("ovs-vswitchd", "tnl/arp/set", self.phy_bridge,
                                       address, mac, limit=5)
                except OvsToolError as exc:
                    log.warning("tunnel neighbour %s (%s) not set: %s", address, mac, exc)
                    continue
            self.written.add(address)
        unresolved = [a for a in targets if a not in macs]
        if unresolved:
            log.info("underlay neighbours not resolved yet: %s", ", ".join(unresolved))
