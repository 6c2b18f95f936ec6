"""Pumping bytes through the handshake state machine for one stream.

The ``Handshake`` core (wire/handshake.py) decides everything; this shell only
sends what it says to send, feeds it what arrives, and enforces the deadline.
A refusal is told to the other side too: the core may still hold our identity
frame unsent, and the remote needs it to tell its own user why.
"""

from __future__ import annotations

import trio

from meshrouter.errors import ConnectionClosedError, HandshakeTimeoutError, ProtocolError
from meshrouter.wire.handshake import Handshake, HandshakeResult

RECEIVE_CHUNK = 65536
REFUSAL_LINGER = 1.0


def describe_dial_error(exc: BaseException) -> str:
    """The most specific text for a failed dial (trio wraps the errno in a cause)."""
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    candidates: list[BaseException | None] = [exc.__cause__, exc]
    if isinstance(exc.__cause__, BaseExceptionGroup):
        candidates[:0] = list(exc.__cause__.exceptions)
    for candidate in candidates:
        if isinstance(candidate, OSError) and candidate.strerror:
            return candidate.strerror
    return str(exc) or type(exc).__name__


async def run_handshake(
    stream: trio.abc.Stream, handshake: Handshake, limit: float
) -> HandshakeResult:
    """Complete ``handshake`` over ``stream`` within ``limit`` seconds.

    Raises the core's ``ProtocolError`` (after letting the remote see our side),
    ``ConnectionClosedError`` on EOF, ``HandshakeTimeoutError`` on the deadline.
    """
    with trio.move_on_after(limit) as timer:
        await stream.send_all(handshake.start())
        while not handshake.done:
            data = await stream.receive_some(RECEIVE_CHUNK)
            if not data:
                raise ConnectionClosedError("connection closed by the peer during the handshake")
            try:
                reply = handshake.receive_data(bytes(data))
            except ProtocolError:
                await finish_refused_handshake(stream, handshake.unsent)
                raise
            if reply:
                await stream.send_all(reply)
    if timer.cancelled_caught:
        raise HandshakeTimeoutError(f"handshake not completed within {limit:g}s")
    return handshake.result


async def finish_refused_handshake(stream: trio.abc.Stream, unsent: bytes) -> None:
    """Let the remote see our identity frame, so it can tell its user why, too.

    Both ends run the same checks; our frame may still be unsent when we
    refuse theirs.  Send it, half-close, and drain briefly: closing with
    unread data would reset the connection and lose the frame in flight.
    """
    # Shielded (with its own short deadline) so that the handshake timer
    # cannot turn the real refusal into a "handshake timeout".
    with trio.CancelScope(shield=True), trio.move_on_after(REFUSAL_LINGER):
        try:
            if unsent:
                await stream.send_all(unsent)
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
                while await stream.receive_some(RECEIVE_CHUNK):
                    pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
