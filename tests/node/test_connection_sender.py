"""The connection's sender: messages when there are some, a heartbeat after an
interval of quiet, one task for both -- the real PeerConnection over in-memory
streams, in simulated time.  Expected times are worked out by hand from the
interval (1 s) and the script of each test."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import trio
import trio.testing

from meshrouter.names import PeerName
from meshrouter.node.connection import PeerConnection
from meshrouter.wire.messages import GossipMsg, Heartbeat, Message
from meshrouter.wire.session import Session
from tests.node.connection_support import plain_connection

INTERVAL = 1.0
SRC = PeerName(0x0A00_0000_0001)


def gossip(tag: bytes) -> GossipMsg:
    return GossipMsg("c", SRC, tag)


class Peer:
    """The far end: decodes what our connection writes, with arrival times."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.session = Session(None)
        self.received: list[tuple[float, Message]] = []

    async def read(self) -> None:
        while data := await self.stream.receive_some(65536):
            for message in self.session.receive_data(bytes(data)):
                self.received.append((trio.current_time(), message))

    def log(self) -> list[tuple[float, str]]:
        return [
            (round(at, 3), "hb" if isinstance(m, Heartbeat) else m.payload.decode())  # type: ignore[union-attr]
            for at, m in self.received
        ]


def make_connection(stream: trio.abc.Stream, outbox: deque[Message]) -> PeerConnection:
    # the far end never writes: a long dead timer keeps it out of these tests
    return plain_connection(stream, heartbeat_interval=INTERVAL, heartbeat_timeout=1000.0,
                            next_outgoing=lambda _peer: outbox.popleft() if outbox else None)


class SlowStream(trio.abc.Stream):
    """Each write takes ``delay`` seconds before its bytes go out whole."""

    def __init__(self, inner: trio.abc.Stream, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.sleep(self.delay)
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


def run(
    script: Callable[[PeerConnection, deque[Message], trio.testing.MockClock], object],
    until: float,
    wrap: Callable[[trio.abc.Stream], trio.abc.Stream] = lambda s: s,
) -> list[tuple[float, str]]:
    """Run a connection (written to by ``script``) until ``until``; the peer's log."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    log: list[tuple[float, str]] = []

    async def main() -> None:
        ours, theirs = trio.testing.memory_stream_pair()
        outbox: deque[Message] = deque()
        conn = make_connection(wrap(ours), outbox)
        peer = Peer(theirs)
        with trio.move_on_at(until):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(peer.read)
                nursery.start_soon(conn.run)
                await script(conn, outbox, clock)  # type: ignore[misc]
                await trio.sleep_forever()
        log.extend(peer.log())

    trio.run(main, clock=clock)
    return log


def test_a_quiet_connection_sends_a_heartbeat_every_interval_counted_from_the_last_write() -> None:
    async def script(conn: PeerConnection, outbox: deque[Message], _clock: object) -> None:
        await trio.sleep(2.5)
        outbox.append(gossip(b"m1"))
        conn.wake()

    log = run(script, until=5.25)
    assert log == [(1.0, "hb"), (2.0, "hb"), (2.5, "m1"), (3.5, "hb"), (4.5, "hb")]


def test_a_busy_connection_sends_no_heartbeat() -> None:
    async def script(conn: PeerConnection, outbox: deque[Message], _clock: object) -> None:
        for i in range(6):
            outbox.append(gossip(f"m{i}".encode()))
            conn.wake()
            await trio.sleep(0.75)

    log = run(script, until=4.6)
    assert log == [(0.0, "m0"), (0.75, "m1"), (1.5, "m2"), (2.25, "m3"), (3.0, "m4"),
                   (3.75, "m5")]


def test_the_heartbeat_timer_never_cuts_a_slow_write_in_half() -> None:
    async def script(conn: PeerConnection, outbox: deque[Message], _clock: object) -> None:
        outbox.append(gossip(b"slow"))
        conn.wake()

    # Each write takes 2.5 s: the heartbeat deadline (1 s) passes during the
    # first one, which must still complete; the heartbeat follows 1 s later.
    log = run(script, until=7.0, wrap=lambda s: SlowStream(s, 2.5))
    assert log == [(2.5, "slow"), (6.0, "hb")]


def test_work_arriving_as_the_heartbeat_deadline_passes_is_not_lost() -> None:
    async def script(
        conn: PeerConnection, outbox: deque[Message], clock: trio.testing.MockClock
    ) -> None:
        await trio.sleep(0.5)
        outbox.append(gossip(b"late"))
        conn.wake()
        # The sender is runnable, not yet run, when the clock passes its
        # heartbeat deadline (1 s): its wait returns normally under a scope
        # already cancelled.
        clock.jump(0.75)

    log = run(script, until=3.0)
    assert [entry for entry in log if entry[1] == "late"] == [(1.25, "late")]
    assert (1.25, "hb") in log  # quiet since 0: the heartbeat is due too


def test_a_connection_runs_two_tasks() -> None:
    """Receive loop and sender; a task per connection end is ~48,000 tasks at
    1,000 simulated peers with 24 links each."""
    counted: list[int] = []

    async def main() -> None:
        ours, theirs = trio.testing.memory_stream_pair()
        conn = make_connection(ours, deque())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(Peer(theirs).read)
            nursery.start_soon(conn.run, name="connection")
            await trio.sleep(5)
            (task,) = [t for t in nursery.child_tasks if t.name == "connection"]
            counted.append(count_tasks(task))
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert counted == [2]


def count_tasks(task: trio.lowlevel.Task) -> int:
    return 1 + sum(count_tasks(child) for n in task.child_nurseries for child in n.child_tasks)
