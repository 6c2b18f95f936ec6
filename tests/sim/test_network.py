"""The simulated network's streams: latency, the send window, and waiting.

Expected times are worked out by hand from the link latency (10 ms) and the
script of each test; MockClock makes them exact."""

from __future__ import annotations

import random

import trio
import trio.testing

from sim.network import WINDOW_BYTES, LinkProfile, SimNetwork, SimStream

LATENCY = 0.01


async def connected_pair(network: SimNetwork, nursery: trio.Nursery) -> tuple[SimStream, SimStream]:
    """A dialled stream and the one the listener accepted (after 2 x latency)."""
    accepted: list[SimStream] = []

    async def handler(stream: trio.abc.Stream, _address: str) -> None:
        assert isinstance(stream, SimStream)
        accepted.append(stream)

    network.listen("10.0.0.2:6783", handler, nursery)
    client = await network.dial("10.0.0.1", "10.0.0.2:6783")
    await trio.testing.wait_all_tasks_blocked()
    assert isinstance(client, SimStream)
    return client, accepted[0]


def run(body: object) -> None:
    async def main() -> None:
        network = SimNetwork(random.Random(1), LinkProfile(latency=LATENCY))
        async with trio.open_nursery() as nursery:
            await nursery.start(network.run)
            client, server = await connected_pair(network, nursery)
            await body(network, client, server)  # type: ignore[operator]
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_waiting_reader_wakes_when_the_chunk_arrives_after_the_latency() -> None:
    async def body(_net: SimNetwork, client: SimStream, server: SimStream) -> None:
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            got: list[tuple[float, bytes]] = []

            async def read() -> None:
                data = await server.receive_some()
                got.append((trio.current_time() - start, data))

            nursery.start_soon(read)
            await trio.sleep(0.5)
            await client.send_all(b"hello")
        assert [(round(at, 6), data) for at, data in got] == [(0.51, b"hello")]

    run(body)


def test_a_cancelled_reader_leaves_no_waiter_behind() -> None:
    async def body(_net: SimNetwork, client: SimStream, server: SimStream) -> None:
        with trio.move_on_after(0.2):
            await server.receive_some()
        # Data after the cancelled wait wakes nobody stale, and a new reader gets it.
        await client.send_all(b"later")
        assert await server.receive_some() == b"later"
        await client.send_all(b"again")
        assert await server.receive_some() == b"again"

    run(body)


def test_a_writer_held_by_the_window_wakes_when_the_reader_drains() -> None:
    """Reader and writer wait on the same pipe at once: the chunk's arrival
    must wake the reader, whose read must wake the writer."""

    async def body(_net: SimNetwork, client: SimStream, server: SimStream) -> None:
        chunk = b"x" * (WINDOW_BYTES // 2 + 1)
        sent: list[float] = []
        start = trio.current_time()
        with trio.fail_after(5):  # a lost wakeup fails here instead of hanging
            async with trio.open_nursery() as nursery:

                async def write() -> None:
                    for _ in range(4):
                        await client.send_all(chunk)
                        sent.append(round(trio.current_time() - start, 6))

                nursery.start_soon(write)
                await trio.testing.wait_all_tasks_blocked()
                # Two chunks fill the window (buffered > WINDOW_BYTES): the third
                # waits for the reader, who waits for the first chunk to arrive.
                assert sent == [0.0, 0.0]
                received = 0
                while received < 4 * len(chunk):
                    received += len(await server.receive_some())
        assert sent == [0.0, 0.0, LATENCY, LATENCY]

    run(body)


def test_a_read_takes_every_chunk_already_due_joined_and_no_more() -> None:
    """As a TCP read returns all the bytes that have arrived: chunks written at
    one moment arrive together and come out of one read, up to ``max_bytes``;
    a chunk due later stays for the next read."""

    async def body(_net: SimNetwork, client: SimStream, server: SimStream) -> None:
        start = trio.current_time()
        for part in (b"ab", b"cd", b"ef"):
            await client.send_all(part)
        await trio.sleep(0.005)
        await client.send_all(b"late")
        await trio.sleep(0.005)
        assert await server.receive_some(5) == b"abcd"  # "ef" would exceed 5 bytes
        assert await server.receive_some() == b"ef"
        assert await server.receive_some() == b"late"
        assert round(trio.current_time() - start, 6) == 0.015
        # A chunk larger than max_bytes is split, the rest read next.
        await client.send_all(b"0123456789")
        await trio.sleep(LATENCY)
        assert await server.receive_some(4) == b"0123"
        assert await server.receive_some() == b"456789"

    run(body)


def test_a_waiting_reader_wakes_once_for_chunks_due_together() -> None:
    async def body(net: SimNetwork, client: SimStream, server: SimStream) -> None:
        got: list[bytes] = []
        async with trio.open_nursery() as nursery:

            async def read() -> None:
                got.append(await server.receive_some())

            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            for part in (b"ab", b"cd", b"ef"):
                await client.send_all(part)
            # One timer entry for the three chunks, all due at the same moment.
            assert len(net._timers) == 1
        assert got == [b"abcdef"]

    run(body)
