"""Keeping the topology moving: route computation, our record's broadcast, repair.

The Router notes every topology change with ``changed()``; this shell then
waits ``route_coalesce`` (so a burst of updates costs one route computation,
not one per message -- forwarding keeps the previous routes meanwhile, as
Weave does), and per new topology version:

1. schedules one anti-entropy round ``repair_delay`` later, which repairs a
   broadcast that missed a peer while views differed;
2. broadcasts our own record if it changed -- at once after a quiet spell, then
   at most once per ``topology_batch`` (leading and trailing edge);
3. publishes one ``TopologyChange`` on the signal (routes, removed peers) to
   every subscriber: removed-peer events, discovery, the services.
"""

from __future__ import annotations

import math
import random

import trio

from meshrouter.config import RouterConfig
from meshrouter.gossip.core import GossipCore
from meshrouter.node.service import TopologyChange
from meshrouter.node.topology_signal import TopologySignal
from meshrouter.topology.topology import Topology

TOPOLOGY_CHANNEL = "topology"


class TopologyUpkeep:
    """Route maintenance for one router; its tasks run in the router's nursery."""

    def __init__(
        self,
        *,
        topology: Topology,
        gossip: GossipCore,
        config: RouterConfig,
        rng: random.Random,
        signal: TopologySignal,
    ) -> None:
        self.topology = topology
        self.gossip = gossip
        self.config = config
        self.rng = rng
        self.signal = signal
        self._nursery: trio.Nursery | None = None
        self._routes_version = -1
        self._broadcast_version = topology.local_record.version
        self._next_broadcast_at = -math.inf
        self._broadcast_timer_pending = False
        self._repair_pending = False
        self._due = trio.Event()

    def start(self, nursery: trio.Nursery) -> None:
        """Compute the first routes now and run the maintenance loop in ``nursery``."""
        self._nursery = nursery
        self.refresh()
        nursery.start_soon(self._loop)

    def changed(self) -> None:
        """Note a topology change; routes, broadcast and the signal follow after
        ``route_coalesce``."""
        if self.topology.version != self._routes_version:
            self._due.set()

    async def _loop(self) -> None:
        while True:
            await self._due.wait()
            await trio.sleep(self.config.timing.route_coalesce)
            self._due = trio.Event()
            self.refresh()

    def refresh(self) -> None:
        """Recompute routes (once per topology version) and publish the change."""
        if self.topology.version == self._routes_version:
            return
        self._routes_version = self.topology.version
        self._schedule_repair()
        # Our own record goes out once per maintenance step, however many times
        # it changed in between (Weave batches these for 1 s).
        self.broadcast_own_record()
        self.signal.publish(
            TopologyChange(
                version=self.topology.version,
                routes=self.topology.routes(),
                removed=tuple(self.topology.take_removed()),
            )
        )

    def broadcast_own_record(self) -> None:
        """Broadcast our record if it changed: at once after a quiet spell, then at
        most once per ``topology_batch`` while changes keep coming (leading and
        trailing edge), so a lone change travels immediately and a burst of
        connection changes costs one broadcast per batch, not one per change."""
        ours = self.topology.local_record
        if ours.version == self._broadcast_version:
            return
        now = trio.current_time()
        if now < self._next_broadcast_at:
            if not self._broadcast_timer_pending and self._nursery is not None:
                self._broadcast_timer_pending = True
                self._nursery.start_soon(self._broadcast_later, self._next_broadcast_at)
            return
        since, self._broadcast_version = self._broadcast_version, ours.version
        self._next_broadcast_at = now + self.config.timing.topology_batch
        # The links changed since our last broadcast, or our whole record.
        self.gossip.originate_broadcast(TOPOLOGY_CHANNEL, self.topology.own_update_since(since))

    async def _broadcast_later(self, when: float) -> None:
        await trio.sleep_until(when)
        self._broadcast_timer_pending = False
        self.broadcast_own_record()

    def _schedule_repair(self) -> None:
        """One anti-entropy round ``repair_delay`` after a burst of topology changes.

        A broadcast forwarded while views still differ can miss a peer; without
        this, only the periodic digest (every ``gossip_interval``, 30 s) would
        repair it, and a 150-peer mesh under a connection limit took 31 s to
        agree although its last connection change was 5 s after the last join.
        One 17-byte summary digest per router per burst costs little.
        """
        if self._repair_pending or self._nursery is None:
            return
        self._repair_pending = True
        self._nursery.start_soon(self._repair_later)

    async def _repair_later(self) -> None:
        await trio.sleep(self.config.timing.repair_delay)
        self._repair_pending = False
        self.gossip.periodic()
