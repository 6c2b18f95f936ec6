"""The trio shell around ``IpamCore``: its tick loop, persistence and the
waiting verbs behind the ``/ip`` API.

The core decides everything; this shell only gives it time (a tick every
``ipam_tick`` seconds, and at once after any change), moves its output onto
the gossip core, writes its state file, and lets API requests wait for a
pending allocation.  An allocation is written to disk before it is answered,
so a router killed at any moment never forgets an address it handed out.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import trio

from meshrouter.errors import IpamUnavailableError
from meshrouter.gossip.core import GossipCore
from meshrouter.ipam.address_range import AddressRange
from meshrouter.ipam.core import IpamCore
from meshrouter.ipam.founding import FoundingMode
from meshrouter.ipam.gossiper import CHANNEL, IpamGossiper
from meshrouter.names import PeerName, format_peer_name
from meshrouter.storage import Storage

log = logging.getLogger(__name__)

STATE_KEY = "ipam"
RING_SAVE_DELAY = 1.0


class IpamService:
    """Runs one router's IPAM; owned by the Router's nursery."""

    def __init__(
        self,
        *,
        name: PeerName,
        uid: int,
        address_range: AddressRange,
        mode: FoundingMode,
        reclaim_after: float,
        tick: float,
        gossip: GossipCore,
        storage: Storage,
        rng: random.Random,
        reachable: Callable[[], set[PeerName]],
        label: str,
    ) -> None:
        self.core = IpamCore(name, uid, address_range, mode, reclaim_after=reclaim_after)
        self.gossip = gossip
        self.storage = storage
        self.rng = rng
        self.reachable = reachable
        self.label = label
        self.tick_interval = tick
        self.gossiper = IpamGossiper(self.core, trio.current_time, self.wake)
        gossip.add_channel(CHANNEL, self.gossiper)
        self._wakeup = trio.Event()
        self._changed = trio.Event()
        self._ring_saved_at = -1e18

    @property
    def cluster_id(self) -> str:
        return self.core.cluster_id

    def load(self) -> None:
        """Read the state file (raises StateFileError if it is corrupt)."""
        blob = self.storage.load(STATE_KEY)
        if blob is not None:
            self.core.load(blob)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.core.start(trio.current_time())
        self.step()
        task_status.started()
        while True:
            with trio.move_on_after(self.tick_interval):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            self.step()

    def wake(self) -> None:
        self._wakeup.set()

    def step(self) -> None:
        """One tick of the core, then flush its output."""
        now = trio.current_time()
        self.core.tick(now, self.reachable(), self.rng)
        self.core.attempt(now)
        self.flush()
        # Waiting requests retry after each step (never after one another's
        # attempts, which could wake each other forever at one instant).
        self._changed.set()
        self._changed = trio.Event()

    def flush(self, *, urgent: bool = False) -> None:
        state = self.core.take_broadcast()
        for dst, payload in self.core.take_unicasts():
            if not self.gossip.send_unicast(CHANNEL, dst, payload):
                log.info("%s: no route to %s for an IPAM request", self.label,
                         format_peer_name(dst))
        if self.core.dirty:
            now = trio.current_time()
            # Ring merges from gossip are saved at most once per RING_SAVE_DELAY
            # (a later tick saves the rest): they can be learned again.
            if urgent or state is not None or now - self._ring_saved_at >= RING_SAVE_DELAY:
                self.save()
        if state is not None:
            # Written before it leaves: a peer never learns of an edit we forget.
            self.gossip.originate_broadcast(CHANNEL, state)

    def save(self) -> None:
        self.storage.save(STATE_KEY, self.core.dump())
        self.core.dirty = False
        self._ring_saved_at = trio.current_time()

    # ------------------------------------------------------------------ verbs

    async def _wait_for(self, attempt: Callable[[], int | None], container: str,
                        wait: float) -> int:
        with trio.move_on_after(wait):
            first = True
            while True:
                address = attempt()
                self.flush(urgent=True)
                if address is not None:
                    return address
                if first:
                    # Let the loop act on the new request (found, extend, ask)
                    # now; later retries follow its steps, never trigger them,
                    # or waiters and the loop would wake each other forever.
                    self.wake()
                    first = False
                await self._changed.wait()
        reasons = [p.reason for p in self.core.pending.values() if p.container == container]
        self.core.cancel(container)
        raise IpamUnavailableError(
            f"no address for {container} within {wait:g}s: "
            f"{reasons[0] if reasons else 'still waiting'}")

    async def allocate(self, container: str, subnet: str | None, wait: float) -> str:
        bounds = self.core.range.parse_subnet(subnet) if subnet else None

        def attempt() -> int | None:
            return self.core.allocate(container, bounds, trio.current_time())

        return self.core.range.format(await self._wait_for(attempt, container, wait))

    async def claim(self, container: str, address_text: str, wait: float) -> str:
        address = self.core.range.parse_address(address_text)

        def attempt() -> int | None:
            return address if self.core.claim(container, address, trio.current_time()) else None

        return self.core.range.format(await self._wait_for(attempt, container, wait))

    def release(self, container: str, address_text: str | None) -> list[str]:
        address = self.core.range.parse_address(address_text) if address_text else None
        freed = self.core.release(container, address)
        self.flush(urgent=True)
        return [self.core.range.format(a) for a in freed]

    def lookup(self, container: str) -> list[str]:
        return [self.core.range.format(a) for a in self.core.lookup(container)]

    def rmpeer(self, name: PeerName) -> int:
        taken = self.core.rmpeer(name, self.reachable())
        self.flush(urgent=True)
        return taken

    def reset(self) -> PeerName | None:
        """Hand our ranges to a live peer; the caller then stops the router."""
        heir = self.core.reset(self.reachable())
        self.flush(urgent=True)  # the hand-over is broadcast (a copy of the ring)
        self.core.forget()
        self.save()
        return heir

    def status(self) -> dict[str, object]:
        return self.core.status(trio.current_time(), self.reachable())
