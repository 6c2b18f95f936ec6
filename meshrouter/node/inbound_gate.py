"""Admission of unauthenticated inbound connections, and the record of refusals.

Before a connection has proved anything it is bounded by the pure rule of
``dialing/inbound_limits.py`` (connections in handshake, per source, descriptor
budget) and paced by the accept token bucket; its handshake deadline starts at
accept, so waiting for the bucket counts against it.  Refusals -- and
established inbound connections that failed -- are kept (the last 32) so that
``status connections`` can say why on this side too: an inbound connection has
no dial target whose row would carry the reason.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import trio

from meshrouter.config import RouterConfig
from meshrouter.dialing.inbound_limits import InboundLimits, inbound_refusal
from meshrouter.dialing.throttle import TokenBucket
from meshrouter.names import PeerName

REFUSALS_KEPT = 32


@dataclass(frozen=True, slots=True)
class Refusal:
    """An inbound connection we refused (or that failed its handshake), and why."""

    address: str
    peer: PeerName | None
    reason: str
    at: float
    ended: bool = False
    """An established inbound connection that failed (not a refused handshake)."""


@dataclass(eq=False, slots=True)
class Handshaking:
    """A connection whose handshake is under way (counts toward the limits)."""

    address: str
    outbound: bool


class InboundGate:
    """Bounds and paces inbound connections for one router."""

    def __init__(
        self,
        config: RouterConfig,
        *,
        handshaking: set[Handshaking],
        pending_elsewhere: Callable[[], list[str]],
        open_sockets: Callable[[], int],
        on_refusal: Callable[[str, str], None] | None = None,
    ) -> None:
        """``pending_elsewhere()``: addresses of inbound connections not in
        ``handshaking`` that still count (peers we share our topology with
        before refusing them); ``open_sockets()``: every mesh socket we hold."""
        self.config = config
        self.handshaking = handshaking
        self.pending_elsewhere = pending_elsewhere
        self.open_sockets = open_sockets
        self.on_refusal = on_refusal
        self.limits = InboundLimits(
            max_pending=config.mesh.max_inbound_handshakes or config.mesh.conn_limit,
            per_source=config.mesh.max_handshakes_per_source,
            max_sockets=config.mesh.max_sockets,
        )
        self.throttle = TokenBucket(config.mesh.accept_burst, config.mesh.accept_refill_interval)
        self.refusals: deque[Refusal] = deque(maxlen=REFUSALS_KEPT)

    def refuse(
        self, address: str, peer: PeerName | None, reason: str, *, ended: bool = False
    ) -> None:
        self.refusals.append(Refusal(address, peer, reason, trio.current_time(), ended))

    async def admit(
        self, stream: trio.abc.Stream, address: str
    ) -> tuple[Handshaking, float] | None:
        """The pending-handshake token and the handshake deadline, or None when the
        connection was refused (it is then closed and the reason recorded)."""
        refused = inbound_refusal(
            address,
            pending=[p.address for p in self.handshaking if not p.outbound]
            + self.pending_elsewhere(),
            open_sockets=self.open_sockets(),
            limits=self.limits,
        )
        if refused is not None:
            self.refuse(address, None, refused)
            if self.on_refusal is not None:
                self.on_refusal(address, refused)
            await trio.aclose_forcefully(stream)
            return None
        pending = Handshaking(address, outbound=False)
        self.handshaking.add(pending)
        timeout = self.config.timing.handshake_timeout
        deadline = trio.current_time() + timeout
        try:
            with trio.move_on_at(deadline):
                while not self.throttle.try_take(trio.current_time()):  # noqa: ASYNC110
                    await trio.sleep(self.throttle.wait_time(trio.current_time()))
        except BaseException:
            self.handshaking.discard(pending)
            await trio.aclose_forcefully(stream)
            raise
        if trio.current_time() >= deadline:
            self.handshaking.discard(pending)
            reason = (
                f"handshake not completed within {timeout:g}s "
                "(still waiting for the accept throttle)"
            )
            self.refuse(address, None, reason)
            if self.on_refusal is not None:
                self.on_refusal(address, reason)
            await trio.aclose_forcefully(stream)
            return None
        return pending, deadline
