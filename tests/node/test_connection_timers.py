"""The connection's one lazy timer (dead timer and heartbeat timer in the
receive loop): a message only stores its time, and the deadline is re-armed
from the stored times when it fires.  Real PeerConnection over in-memory
streams, in simulated time; expected times worked out from INTERVAL and TIMEOUT."""

from __future__ import annotations

import trio
import trio.testing

from meshrouter.names import PeerName
from meshrouter.node.connection import PeerConnection
from meshrouter.wire.messages import GossipMsg, Heartbeat
from meshrouter.wire.session import Session
from tests.node.connection_support import plain_connection

INTERVAL = 1.0
TIMEOUT = 4.0
SRC = PeerName(0x0A00_0000_0001)


def make_connection(stream: trio.abc.Stream) -> PeerConnection:
    return plain_connection(stream, heartbeat_interval=INTERVAL, heartbeat_timeout=TIMEOUT)


def run(sends_at: list[float], until: float = 30.0) -> tuple[str | None, float, list[float]]:
    """The peer writes one gossip message at each of ``sends_at`` and is silent
    otherwise; returns (why our end closed, when, when our heartbeats arrived)."""
    result: list[tuple[str | None, float]] = []
    heartbeats: list[float] = []

    async def main() -> None:
        ours, theirs = trio.testing.memory_stream_pair()
        conn = make_connection(ours)
        peer_session = Session(None)

        async def peer_writes() -> None:
            for at in sends_at:
                await trio.sleep_until(at)
                await theirs.send_all(peer_session.encode(GossipMsg("c", SRC, b"x")))

        async def peer_reads() -> None:
            reader = Session(None)
            while data := await theirs.receive_some(65536):
                for message in reader.receive_data(bytes(data)):
                    if isinstance(message, Heartbeat):
                        heartbeats.append(round(trio.current_time(), 3))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer_writes)
            nursery.start_soon(peer_reads)
            with trio.move_on_at(until):
                result.append((await conn.run(), trio.current_time()))
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    if not result:
        return None, until, heartbeats
    return result[0][0], result[0][1], heartbeats


def test_silence_after_a_message_ends_the_connection_a_timeout_after_that_message() -> None:
    # The first deadline (4 s) finds the message of 3 s and re-arms to 7 s.
    reason, ended, _ = run([3.0])
    assert ended == 7.0
    assert reason == "no message from the peer for 4s (heartbeat timeout)"


def test_messages_spaced_under_the_timeout_keep_the_connection_alive() -> None:
    reason, ended, _ = run([3.5 * i for i in range(1, 8)], until=28.0)
    assert reason is None and ended == 28.0


def test_heartbeats_go_out_every_interval_while_the_peer_talks() -> None:
    # The peer's messages move the dead timer; our heartbeats keep their own
    # pace (one per interval of our quiet), until the dead timer fires at 7 s.
    reason, ended, heartbeats = run([0.5, 3.0])
    assert ended == 7.0 and reason is not None
    assert heartbeats == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


