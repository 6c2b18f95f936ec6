"""One established connection to a neighbour: a receive loop and a send loop.

The handshake is done before this object exists.  The receive loop feeds bytes
to the sans-IO Session and hands each message to the router; if nothing arrives
within the heartbeat timeout the connection is dead.  The send loop pulls the
next message from the gossip core's send slots for this neighbour -- pulling,
not pushing, is what lets updates coalesce while a slow socket blocks -- and
sends a heartbeat when it has been quiet for a heartbeat interval.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from meshrouter.errors import ConnectionClosedError, HeartbeatTimeoutError, ProtocolError
from meshrouter.names import PeerName, format_peer_name
from meshrouter.wire.identity import Identity
from meshrouter.wire.messages import Heartbeat, Message
from meshrouter.wire.session import Session

log = logging.getLogger(__name__)

RECEIVE_CHUNK = 65536


@dataclass(eq=False)
class PeerConnection:
    """State and tasks of one live connection; the Router registers it by peer name."""

    stream: trio.abc.Stream
    session: Session
    local: Identity
    remote: Identity
    protocol_version: int
    outbound: bool
    address: str
    target: str | None
    started_at: float
    heartbeat_interval: float
    heartbeat_timeout: float
    deliver: Callable[[PeerConnection, Message], None]
    next_outgoing: Callable[[PeerName], Message | None]
    close_reason: str | None = None
    early_messages: list[Message] = field(default_factory=list)
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    _cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    _wakeup: trio.Event = field(default_factory=trio.Event)

    @property
    def peer(self) -> PeerName:
        return self.remote.name

    @property
    def conn_uid(self) -> int:
        """Same value at both ends; the lower one survives a duplicate (Weave's rule)."""
        return self.local.conn_id ^ self.remote.conn_id

    @property
    def label(self) -> str:
        direction = "->" if self.outbound else "<-"
        return f"{format_peer_name(self.peer)}({self.remote.nickname}) {direction} {self.address}"

    def wake(self) -> None:
        """Called by the gossip core when this neighbour has something to send."""
        self._wakeup.set()

    def close(self, reason: str) -> None:
        """Ask the connection's tasks to end (used by tie-break and shutdown)."""
        if self.close_reason is None:
            self.close_reason = reason
        self._cancel_scope.cancel()

    async def run(self) -> str:
        """Run until the connection ends; return why it ended.

        A ProtocolError from the peer's data, or a broken stream, ends it with
        that error's text; our own close() ends it with the reason given there.
        Each loop catches its own errors (so nothing arrives wrapped in an
        ExceptionGroup) and cancels the other; Cancelled is never caught.
        """
        with self._cancel_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._guarded, self._send_loop, nursery.cancel_scope)
                await self._guarded(self._receive_loop, nursery.cancel_scope)
        return self.close_reason or "closed"

    async def _guarded(self, loop: Callable[[], Awaitable[None]], scope: trio.CancelScope) -> None:
        try:
            await loop()
        except ProtocolError as exc:
            self._note_end(str(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._note_end(f"connection broken: {exc or type(exc).__name__}")
        finally:
            scope.cancel()

    def _note_end(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason

    async def _receive_loop(self) -> None:
        early, self.early_messages = self.early_messages, []
        for message in early:
            if not isinstance(message, Heartbeat):
                self.deliver(self, message)
        while True:
            with trio.move_on_after(self.heartbeat_timeout) as timer:
                data = await self.stream.receive_some(RECEIVE_CHUNK)
            if timer.cancelled_caught:
                raise HeartbeatTimeoutError(
                    f"no message from the peer for {self.heartbeat_timeout:g}s (heartbeat timeout)"
                )
            if not data:
                raise ConnectionClosedError("connection closed by the peer")
            self.bytes_in += len(data)
            for message in self.session.receive_data(bytes(data)):
                self.messages_in += 1
                if not isinstance(message, Heartbeat):
                    self.deliver(self, message)

    async def _send(self, message: Message) -> None:
        data = self.session.encode(message)
        await self.stream.send_all(data)
        self.messages_out += 1
        self.bytes_out += len(data)

    async def _send_loop(self) -> None:
        last_sent = trio.current_time()
        while True:
            self._wakeup = trio.Event()
            while (message := self.next_outgoing(self.peer)) is not None:
                await self._send(message)
                last_sent = trio.current_time()
            if self._wakeup.is_set():
                continue
            with trio.move_on_at(last_sent + self.heartbeat_interval) as timer:
                await self._wakeup.wait()
            if timer.cancelled_caught:
                await self._send(Heartbeat())
                last_sent = trio.current_time()
