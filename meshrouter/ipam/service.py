"""The IPAM Service: the trio shell around ``IpamCore``.

Its tick loop, persistence and the waiting verbs behind the ``/ip`` API.  The
core decides everything; this shell only gives it time (a tick every
``ipam_tick`` seconds, and at once after any change, including every topology
change), moves its output onto the gossip core, writes its state file, and
lets API requests wait for a pending allocation.  An allocation is written to
disk before it is answered, so a router killed at any moment never forgets an
address it handed out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import Any, Protocol

import trio

from meshrouter.errors import (
    InvalidRequestError,
    IpamUnavailableError,
    NotFoundError,
    StateFileError,
)
from meshrouter.ipam.address_range import AddressRange
from meshrouter.ipam.core import IpamCore
from meshrouter.ipam.founding import FoundingMode
from meshrouter.ipam.gossiper import CHANNEL, IpamGossiper
from meshrouter.names import PeerName, format_peer_name, parse_peer_name
from meshrouter.node.service import (
    ApiRequest,
    ApiRoute,
    Service,
    ServiceBase,
    ServiceContext,
    TopologyChange,
)

log = logging.getLogger(__name__)

STATE_KEY = "ipam"
RING_SAVE_DELAY = 1.0
DEFAULT_WAIT = 30.0
MAX_WAIT = 3600.0
UNKNOWN_OWNER_GRACE = 10.0
"""Seconds a ring owner may stay unknown before it is reported: a joining router
gets the ring with its first IPAM digest answer, often before the record of the
peer that founded it (a warning about a live peer on every join was noise)."""


class IpamService(ServiceBase):
    """Runs one router's IPAM; its tasks run in the Router's nursery."""

    name = "ipam"

    def __init__(
        self,
        *,
        address_range: AddressRange,
        mode: FoundingMode,
        reclaim_after: float,
        tick: float,
    ) -> None:
        self.address_range = address_range
        self.mode = mode
        self.reclaim_after = reclaim_after
        self.tick_interval = tick
        self._wakeup = trio.Event()
        self._changed = trio.Event()
        self._ring_saved_at = -1e18
        self._unsaved_broadcast: Any = None
        self.stopping = False
        self.unknown_owners: set[PeerName] = set()
        self._seen_peers: set[PeerName] = set()
        self._unknown_since: dict[PeerName, float] = {}  # not yet reported

    def attach(self, context: ServiceContext) -> None:
        super().attach(context)
        self.core = IpamCore(
            context.name, context.uid, self.address_range, self.mode,
            reclaim_after=self.reclaim_after,
        )
        self.gossip = context.gossip
        self.storage = context.storage
        self.rng = context.rng
        self.reachable: Callable[[], AbstractSet[PeerName]] = context.reachable
        self.label = context.label
        self.gossiper = IpamGossiper(self.core, trio.current_time, self.wake)
        context.gossip.add_channel(CHANNEL, self.gossiper)

    def cluster_id(self) -> str | None:
        return self.core.cluster_id or None

    def load(self) -> None:
        """Read the state file (raises StateFileError if it is corrupt)."""
        blob = self.storage.load(STATE_KEY)
        if blob is not None:
            self.core.load(blob)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.core.start(trio.current_time())
        self.step()
        task_status.started()
        try:
            while True:
                with trio.move_on_after(self.tick_interval):
                    await self._wakeup.wait()
                self._wakeup = trio.Event()
                self.step()
        finally:
            # The router stops: waiting requests answer now, with the reason,
            # instead of ending in a dropped connection.
            self.stopping = True
            self._changed.set()

    def on_topology_changed(self, change: TopologyChange) -> None:
        self.wake()  # reachability may have changed

    def wake(self) -> None:
        self._wakeup.set()

    def step(self) -> None:
        """One tick of the core, then flush its output."""
        now = trio.current_time()
        self.core.tick(now, self.reachable(), self.rng)
        self.core.attempt(now)
        self.flush()
        self._note_unknown_owners(now)
        # Waiting requests retry after each step (never after one another's
        # attempts, which could wake each other forever at one instant).
        self._changed.set()
        self._changed = trio.Event()

    def flush(self, *, urgent: bool = False) -> str | None:
        """Send the core's output, writing the state file first where needed.

        Returns None when everything owed to disk is there, else why the write
        failed: the router keeps running, our edits wait (not broadcast) and the
        next step retries the write.
        """
        state = self.core.take_broadcast() or self._unsaved_broadcast
        self._unsaved_broadcast = None
        for dst, payload in self.core.take_unicasts():
            if not self.gossip.send_unicast(CHANNEL, dst, payload):
                log.info("%s: no route to %s for an IPAM request", self.label,
                         format_peer_name(dst))
        if self.core.dirty:
            now = trio.current_time()
            # Ring merges from gossip are saved at most once per RING_SAVE_DELAY
            # (a later tick saves the rest): they can be learned again.
            if urgent or state is not None or now - self._ring_saved_at >= RING_SAVE_DELAY:
                try:
                    self.save()
                except StateFileError as exc:
                    log.error("%s: %s; will retry", self.label, exc)
                    # Written before it leaves: a peer never learns of an edit
                    # we might forget, so the broadcast waits for the write.
                    self._unsaved_broadcast = state
                    return str(exc)
        if state is not None:
            self.gossip.originate_broadcast(CHANNEL, state)
        return None

    def save(self) -> None:
        """Write the state file (raises StateFileError when the disk refuses)."""
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
                unsaved = self.flush(urgent=True)
                if address is not None:
                    if unsaved is not None:
                        # Never answer an address that is not on disk; the
                        # container keeps it in memory and gets it on retry.
                        raise IpamUnavailableError(
                            f"address for {container} not answered: {unsaved}"
                        )
                    return address
                if first:
                    # Let the loop act on the new request (found, extend, ask)
                    # now; later retries follow its steps, never trigger them,
                    # or waiters and the loop would wake each other forever.
                    self.wake()
                    first = False
                await self._changed.wait()
                if self.stopping:
                    self.core.cancel(container)
                    raise IpamUnavailableError(
                        f"the router is shutting down; no address for {container}"
                    )
        reasons = [p.reason for p in self.core.pending.values() if p.container == container]
        self.core.cancel(container)
        raise IpamUnavailableError(
            f"no address for {container} within {wait:g}s: "
            f"{reasons[0] if reasons else 'still waiting'}"
        )

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

    def _note_unknown_owners(self, now: float) -> None:
        """Ring entries whose owner no peer of our topology has named for
        ``UNKNOWN_OWNER_GRACE`` seconds are logged once and counted: a corrupted
        or lying ring would otherwise leave every router waiting on a peer that
        does not exist, silently."""
        ring = self.core.ring
        if ring is None:
            return
        owners = ring.owners()
        for owner in [o for o in self._unknown_since if o not in owners]:
            del self._unknown_since[owner]  # bounded by the ring's owners
        for owner in owners - self._seen_peers - self.unknown_owners:
            if self.context.topology.record(owner) is not None:
                self._seen_peers.add(owner)
                self._unknown_since.pop(owner, None)
                continue
            if now - self._unknown_since.setdefault(owner, now) < UNKNOWN_OWNER_GRACE:
                continue
            del self._unknown_since[owner]
            self.unknown_owners.add(owner)
            log.warning(
                "%s: the IPAM ring gives space to %s, a peer no router of the mesh "
                "knows (dead before we started, or a corrupt/forged entry); `meshrouter "
                "rmpeer %s` takes its space if it is gone for good",
                self.label, format_peer_name(owner), format_peer_name(owner),
            )
        # A name that later appears in the topology was a peer after all.
        for owner in list(self.unknown_owners):
            if self.context.topology.record(owner) is not None:
                self.unknown_owners.discard(owner)
                self._seen_peers.add(owner)

    def status(self) -> dict[str, object]:
        status = self.core.status(trio.current_time(), self.reachable())
        status["unknown_owners"] = sorted(format_peer_name(o) for o in self.unknown_owners)
        return status

    def report(self) -> dict[str, Any] | None:
        return self.status()

    # ------------------------------------------------------------------ API

    def api_routes(self) -> list[ApiRoute]:
        return [
            ApiRoute("GET", "/status/ipam", self._api_status),
            ApiRoute("POST", "/ip/{container}", self._api_allocate),
            ApiRoute("POST", "/ip/{container}/{net}/{prefix:int}", self._api_allocate),
            ApiRoute("GET", "/ip/{container}", self._api_lookup),
            ApiRoute("DELETE", "/ip/{container}", self._api_release),
            ApiRoute("PUT", "/ip/{container}/{address}", self._api_claim),
            ApiRoute("DELETE", "/ip/{container}/{address}", self._api_release),
            ApiRoute("DELETE", "/peer/{name}", self._api_rmpeer),
            ApiRoute("DELETE", "/peer", self._api_reset),
        ]

    async def _api_status(self, request: ApiRequest) -> Any:
        return self.status()

    async def _api_allocate(self, request: ApiRequest) -> Any:
        container = request.path_params["container"]
        subnet = None
        if "net" in request.path_params:
            subnet = f"{request.path_params['net']}/{request.path_params['prefix']}"
        address = await self.allocate(container, subnet, wait_seconds(request))
        return {"container": container, "address": address}

    async def _api_claim(self, request: ApiRequest) -> Any:
        container = request.path_params["container"]
        address = await self.claim(container, request.path_params["address"],
                                   wait_seconds(request))
        return {"container": container, "address": address}

    async def _api_lookup(self, request: ApiRequest) -> Any:
        container = request.path_params["container"]
        addresses = self.lookup(container)
        if not addresses:
            raise NotFoundError(f"container {container} has no address")
        return {"container": container, "addresses": addresses}

    async def _api_release(self, request: ApiRequest) -> Any:
        container = request.path_params["container"]
        freed = self.release(container, request.path_params.get("address"))
        if not freed:
            raise NotFoundError(f"container {container} has no such address")
        return {"container": container, "released": freed}

    async def _api_rmpeer(self, request: ApiRequest) -> Any:
        text = request.path_params["name"]
        taken = self.rmpeer(parse_peer_name(text))
        return {"peer": text, "addresses_taken": taken}

    async def _api_reset(self, request: ApiRequest) -> Any:
        heir = self.reset()
        await self.context.drain_gossip(2.0)
        self.context.leave_mesh()
        return {"handed_to": format_peer_name(heir) if heir is not None else None,
                "stopping": True}


def wait_seconds(request: ApiRequest) -> float:
    """The ``wait`` query parameter: how long a request may wait for space."""
    text = request.query.get("wait", str(DEFAULT_WAIT))
    try:
        wait = float(text)
    except ValueError:
        raise InvalidRequestError(f"wait={text!r} is not a number of seconds") from None
    if not 0 <= wait <= MAX_WAIT:
        raise InvalidRequestError(f"wait must be 0..{MAX_WAIT:g} seconds")
    return wait


class HasServices(Protocol):
    """A Router, as far as finding its services goes."""

    def service(self, name: str) -> Service | None: ...


def ipam_of(router: HasServices) -> IpamService | None:
    """The IPAM service of a router (``router.service("ipam")``), typed."""
    found = router.service(IpamService.name)
    return found if isinstance(found, IpamService) else None
