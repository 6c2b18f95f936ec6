"""One established connection to a neighbour: a receive loop and a send loop.

The handshake is done before this object exists.  The receive loop feeds bytes
to the sans-IO Session and hands each message to the router.  Liveness counts
complete, authenticated messages only: the dead timer restarts when a message
decodes (and, when encrypted, authenticates), never on a mere chunk of bytes.
So a frame whose length prefix was corrupted in transit -- which would swallow
every later heartbeat as "body" while the stream keeps flowing -- or a peer
trickling one frame byte by byte ends the connection after the heartbeat
timeout, with a reason that says a frame never completed (issue 15, item 2).
A legitimate frame must therefore arrive whole within the heartbeat timeout
(60 s by default: 10 MiB needs 175 KB/s).  The send loop pulls the
next message from the gossip core's send slots for this neighbour -- pulling,
not pushing, is what lets updates coalesce while a slow socket blocks -- and
sends a heartbeat when it has been quiet for a heartbeat interval.  The dead
timer and the heartbeat timer are one lazy deadline in the receive loop (see
``_receive_loop``): a message costs no timer operation.  Two tasks per
connection, no more (the receive loop runs in the task that runs the
connection): at 1,000 simulated peers every task is ~48,000 copies.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from meshrouter.errors import (
    ConnectionClosedError,
    HeartbeatTimeoutError,
    MeshError,
    PeerGoodbyeError,
)
from meshrouter.names import PeerName, format_peer_name
from meshrouter.wire.identity import Identity
from meshrouter.wire.messages import Goodbye, Heartbeat, Message
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
    _last_sent: float = 0.0
    _goodbye: str | None = None
    _goodbye_taken: bool = False
    _confirmed: bool = False
    remote_goodbye: str | None = None
    on_confirmed: Callable[[PeerConnection], None] | None = None  # also on Goodbye
    failure: str | None = None
    last_heard: float = 0.0
    """When the last complete message arrived (a live link vs a half-open one)."""
    """Set when *we* found the peer's data at fault (tampering, replay, a malformed
    or oversize frame, silence): that reason is also sent to the peer, so both
    sides show it -- not just "connection closed by the peer" on the other."""

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

    def announce_goodbye(self, reason: str) -> None:
        """Send Goodbye(reason) as the very first message: this connection is
        temporary (we refused it) and must never enter the peer's topology.
        Other messages may follow until we close it."""
        self._goodbye = reason

    @property
    def confirmed(self) -> bool:
        """A link counts in the topology once the peer has sent a real message
        (it always sends a digest first); a peer that refuses sends Goodbye
        first instead, so a refused connection never shows up as a link."""
        return self._confirmed and self.remote_goodbye is None

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
            self._last_sent = self.last_heard = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._guarded, self._send_loop, nursery.cancel_scope)
                await self._guarded(self._receive_loop, nursery.cancel_scope)
        if self.failure is not None and self.remote_goodbye is None:
            await self._tell_peer(self.failure)
        return self.close_reason or "closed"

    async def _tell_peer(self, reason: str) -> None:
        """Best effort: a Goodbye with our reason, within a second (our sending
        direction is intact even when theirs was tampered with)."""
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            try:
                await self._send(Goodbye(f"refused by the peer: {reason}"))
            except (MeshError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    async def _guarded(self, loop: Callable[[], Awaitable[None]], scope: trio.CancelScope) -> None:
        try:
            await loop()
        except (PeerGoodbyeError, ConnectionClosedError) as exc:
            self._note_end(str(exc))
        except MeshError as exc:  # ProtocolError and any other refusal by a core
            if self.close_reason is None:
                self.failure = str(exc)
            self._note_end(str(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._note_end(f"connection broken: {exc or type(exc).__name__}")
        finally:
            scope.cancel()

    def _note_end(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason

    async def _receive_loop(self) -> None:
        """Read, decode and dispatch; also the connection's one timer.

        The timer is a cancel scope around the reads whose deadline is the
        earlier of the dead timer (last complete message + timeout) and the
        next heartbeat (last write + interval).  It is *lazy*: a message or a
        write only stores a time, and the deadline is compared with those times
        when it fires -- re-armed if they moved, else the peer is declared
        dead or the sender is woken to send a heartbeat.  Moving a trio
        deadline on every message and around every write (753,000 moves for
        258,000 messages in the simulator at 200 peers) costs more than the
        lazy timer, which fires at most twice per heartbeat interval.  Cancelling a read loses
        no data (trio's streams, and the simulator's, consume nothing from a
        cancelled ``receive_some``), and no write is ever under this scope.
        """
        early, self.early_messages = self.early_messages, []
        for message in early:
            self._dispatch(message)
        timeout, interval = self.heartbeat_timeout, self.heartbeat_interval
        last_message = trio.current_time()
        next_heartbeat = self._last_sent + interval
        while True:
            with trio.CancelScope(deadline=min(last_message + timeout, next_heartbeat)):
                while True:
                    data = await self.stream.receive_some(RECEIVE_CHUNK)
                    if not data:
                        if self.remote_goodbye is not None:
                            raise PeerGoodbyeError(
                                f"the peer closed the connection: {self.remote_goodbye}"
                            )
                        raise ConnectionClosedError("connection closed by the peer")
                    self.bytes_in += len(data)
                    messages = self.session.receive_data(bytes(data))
                    if messages:
                        last_message = self.last_heard = trio.current_time()
                    for message in messages:
                        self.messages_in += 1
                        self._dispatch(message)
            now = trio.current_time()
            if now >= last_message + timeout:
                raise HeartbeatTimeoutError(self._silence_reason(now - last_message))
            next_heartbeat = self._last_sent + interval
            if now >= next_heartbeat:
                # The sender checks the time itself when woken: quiet for an
                # interval, it writes a heartbeat (counted from that write).
                self._wakeup.set()
                next_heartbeat = now + interval

    def _silence_reason(self, silent_for: float) -> str:
        """Why the dead timer fired: silence, or a frame that never completed."""
        pending = self.session.pending_frame
        if pending is None:
            return f"no message from the peer for {silent_for:g}s (heartbeat timeout)"
        received, announced = pending
        if announced is None:
            return (
                f"no complete message from the peer for {silent_for:g}s: a frame header "
                f"is still incomplete after {received} bytes (heartbeat timeout)"
            )
        return (
            f"no complete message from the peer for {silent_for:g}s: a frame announced "
            f"as {announced} bytes is incomplete after {received} bytes (a corrupted "
            "length prefix, or a peer too slow to send one frame within the heartbeat "
            "timeout)"
        )

    def _dispatch(self, message: Message) -> None:
        if isinstance(message, Heartbeat):
            return
        if isinstance(message, Goodbye):
            self.remote_goodbye = message.reason
            if self.on_confirmed is not None:
                self.on_confirmed(self)
            return
        if not self._confirmed and self.remote_goodbye is None:
            self._confirmed = True
            if self.on_confirmed is not None:
                self.on_confirmed(self)
        self.deliver(self, message)

    async def _send(self, message: Message) -> None:
        data = self.session.encode(message)
        await self.stream.send_all(data)
        self.messages_out += 1
        self.bytes_out += len(data)
        self._last_sent = trio.current_time()

    def _next_message(self) -> Message | None:
        if self._goodbye is not None and not self._goodbye_taken:
            self._goodbye_taken = True
            return Goodbye(self._goodbye)
        return self.next_outgoing(self.peer)

    async def _send_loop(self) -> None:
        """Write what the gossip core has for this neighbour, and a heartbeat
        after an interval of quiet.

        One task does both (a separate timer task cost ~3.5 KB of task,
        coroutines and cancel scope at each end of every connection: ~170 MB
        for 1,000 peers with 24 links each).  It waits for ``wake`` only, under
        no deadline, so no timer can cut a write in half: the receive loop's
        lazy timer wakes it when a heartbeat may be due, and whenever it wakes
        it first sends one if it has been quiet for an interval.

        One message per write, pulled when the previous write is done: each
        write is a scheduling point, during which later updates still merge
        into the messages left in the send slots.  (Writing everything pending
        as one batch saved no CPU at 100 peers and sent 5% more messages.)
        """
        interval = self.heartbeat_interval
        while True:
            # A new event before looking for work: a wake() from now on is
            # seen, and work queued before it is found by the look.
            self._wakeup = trio.Event()
            goodbye_first = self._goodbye is not None and not self._goodbye_taken
            if not goodbye_first and trio.current_time() >= self._last_sent + interval:
                await self._send(Heartbeat())
            message = self._next_message()
            while message is not None:
                await self._send(message)
                message = self._next_message()
            if not self._wakeup.is_set():
                await self._wakeup.wait()
