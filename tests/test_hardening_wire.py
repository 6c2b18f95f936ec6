"""Issue 15, wire and connection items: what an unauthenticated or broken peer can
no longer do -- to one connection (liveness, item 2: the real PeerConnection
shell over in-memory streams, in simulated time) and to a router process
(decoding cost, items 7 and 9: a real ``meshrouter launch peer`` on 127.0.0.1)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import trio
import trio.testing

from meshrouter.wire.framing import encode_frame
from meshrouter.wire.handshake import Handshake
from meshrouter.wire.messages import GossipMsg, Heartbeat, encode_message
from meshrouter.wire.session import Session
from tests.node.connection_support import plain_connection
from tests.procs import RouterFleet
from tests.wire.support import PASSWORD, config, drive_ok, identity, identity_b

INTERVAL = 1.0
TIMEOUT = 4.0


def sessions() -> tuple[Session, Session]:
    """Our session and the peer's, encrypted, from a real handshake."""
    ours, theirs = drive_ok(config(identity(), PASSWORD, key_seed=1),
                            config(identity_b(), PASSWORD, key_seed=2))
    return ours.session, theirs.session


async def run_with_peer(
    peer_writes: Callable[[trio.abc.Stream, Session], object], limit: float = 60.0
) -> tuple[str | None, float]:
    """Run our connection against a scripted peer; return (reason, time it ended)."""
    ours, theirs = sessions()
    our_end, peer_end = trio.testing.memory_stream_pair()
    conn = plain_connection(our_end, session=ours, heartbeat_interval=INTERVAL,
                            heartbeat_timeout=TIMEOUT)
    reason: str | None = None
    async with trio.open_nursery() as nursery:
        async def drain() -> None:
            while await peer_end.receive_some(65536):
                pass

        nursery.start_soon(drain)
        nursery.start_soon(peer_writes, peer_end, theirs)  # type: ignore[arg-type]
        with trio.move_on_after(limit):
            reason = await conn.run()
        nursery.cancel_scope.cancel()
    return reason, trio.current_time()


def flip_length_bit(frame: bytes, bit: int = 20) -> bytes:
    """One flipped bit in the 4-byte big-endian length prefix (bit 20 adds 1 MiB)."""
    length = int.from_bytes(frame[:4], "big") ^ (1 << bit)
    return length.to_bytes(4, "big") + frame[4:]


async def heartbeats_forever(stream: trio.abc.Stream, session: Session) -> None:
    while True:
        await stream.send_all(session.encode(Heartbeat()))
        await trio.sleep(INTERVAL)


def test_a_corrupted_length_prefix_ends_the_connection_with_a_reason() -> None:
    """Before the fix the deadline restarted on every chunk: the heartbeats that
    the bogus 1 MiB "frame" swallowed kept the link up for as long as they came."""

    async def peer(stream: trio.abc.Stream, session: Session) -> None:
        await stream.send_all(session.encode(Heartbeat()))
        await trio.sleep(INTERVAL)
        await stream.send_all(flip_length_bit(session.encode(Heartbeat())))
        await heartbeats_forever(stream, session)

    async def main() -> None:
        reason, ended = await run_with_peer(peer)
        assert reason is not None, "the connection was still up after 60 s"
        # 4-byte header + 18-byte sealed heartbeat + the flipped 2^20.
        assert f"a frame announced as {4 + 18 + (1 << 20)} bytes is incomplete" in reason
        assert "corrupted length prefix" in reason
        # The last complete message came at t=0; the timeout counts from there.
        assert ended == TIMEOUT

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_peer_trickling_one_frame_is_cut_off_at_the_timeout() -> None:
    async def peer(stream: trio.abc.Stream, session: Session) -> None:
        frame = session.encode(Heartbeat())
        for byte in frame[:-1]:  # one byte per second, never the last one
            await stream.send_all(bytes([byte]))
            await trio.sleep(INTERVAL)
        await trio.sleep_forever()

    async def main() -> None:
        reason, ended = await run_with_peer(peer)
        assert reason is not None
        assert "no complete message from the peer for 4s" in reason
        assert ended == TIMEOUT

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_header_that_never_completes_is_named() -> None:
    async def peer(stream: trio.abc.Stream, session: Session) -> None:
        await stream.send_all(b"\x00\x00")
        await trio.sleep_forever()

    async def main() -> None:
        reason, _ = await run_with_peer(peer)
        assert reason is not None and "a frame header is still incomplete after 2 bytes" in reason

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_regular_heartbeats_keep_the_connection_alive() -> None:
    """The control: complete messages do move the deadline."""

    async def main() -> None:
        reason, ended = await run_with_peer(heartbeats_forever, limit=5 * TIMEOUT)
        assert reason is None and ended == 5 * TIMEOUT

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_silence_is_a_plain_heartbeat_timeout() -> None:
    async def peer(stream: trio.abc.Stream, session: Session) -> None:
        await trio.sleep_forever()

    async def main() -> None:
        reason, ended = await run_with_peer(peer)
        assert reason == "no message from the peer for 4s (heartbeat timeout)"
        assert ended == TIMEOUT

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


# -- a real router process ----------------------------------------------------------


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc")


def _junk_after_handshake(address: str, body: bytes) -> None:
    """Complete a plaintext handshake as a made-up peer, then send one frame."""
    host, port = address.rsplit(":", 1)
    handshake = Handshake(config(identity(name=0x02_FF_FF_00_00_01, uid=77)))
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(handshake.start())
        while not handshake.done:
            data = sock.recv(65536)
            assert data, "the router closed the connection during the handshake"
            reply = handshake.receive_data(data)
            if reply:
                sock.sendall(reply)
        try:
            sock.sendall(encode_frame(body))
            while sock.recv(65536):  # until the router closes it
                pass
        except OSError:
            pass  # reset: the router refused the frame before reading all of it


def test_junk_frames_of_empty_maps_do_not_grow_a_router(tmp_path: Path) -> None:
    """Issue 15 items 7 and 9: a client that completes a plaintext handshake and
    sends 10 MiB frames of empty msgpack maps (as the message itself, and as a
    topology payload) used to cost the router ~700 MiB of peak memory per frame.
    Now the envelope is refused at its first field and the payload under the
    object budget; the router stays up."""
    maps = b"\x9a" + (b"\xdd" + (1_000_000).to_bytes(4, "big") + b"\x80" * 1_000_000) * 10
    fleet = RouterFleet(tmp_path)
    try:
        router = fleet.launch("target")
        before = _peak_rss_mib(router.process.pid)
        _junk_after_handshake(router.listen, maps)
        _junk_after_handshake(router.listen, encode_message(GossipMsg("topology", 1, maps)))
        _junk_after_handshake(router.listen, maps)
        assert router.get("/status")["name"], "the router still answers"
        grown = _peak_rss_mib(router.process.pid) - before
        print(f"peak RSS {before:.0f} MiB -> {before + grown:.0f} MiB")
        assert grown < 250, f"peak RSS grew by {grown:.0f} MiB"
    finally:
        fleet.stop_all()
