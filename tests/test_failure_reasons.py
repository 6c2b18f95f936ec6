"""Both sides of a connection show why it failed (issue 15, item 3): a byte
flipped on the wire from the dialler to the acceptor is detected by the
*accepting* side, which keeps a row for it and tells the dialler the reason."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshrouter.wire.framing import FRAME_HEADER_SIZE
from meshrouter.wire.handshake import FIXED_HEADER_SIZE
from meshrouter.wire.pake import SHARE_SIZE
from tests.procs import RouterFleet, wait_until

pytestmark = pytest.mark.processes

FLIP_AFTER = 600  # bytes from the dialler: past the handshake, inside the gossip
FRAMES_START = FIXED_HEADER_SIZE + SHARE_SIZE  # an encrypted dialler's header, then frames


def tamper_target(stream: bytes | bytearray) -> int | None:
    """Offset of the byte to flip: the last byte (inside the authentication tag)
    of the first frame that ends past ``FLIP_AFTER``; None until its header has
    arrived.  A flip at a fixed offset could land in a length prefix, which the
    receiver sees as a frame that never completes rather than as tampering,
    depending on how big the messages before it happen to be."""
    offset = FRAMES_START
    while offset + FRAME_HEADER_SIZE <= len(stream):
        length = int.from_bytes(stream[offset:offset + FRAME_HEADER_SIZE], "big")
        end = offset + FRAME_HEADER_SIZE + length
        if end > FLIP_AFTER and length:
            return end - 1
        offset = end
    return None


class TamperingProxy:
    """127.0.0.1 proxy that flips one bit of the dialler's stream, once."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.flipped = threading.Event()
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        server = socket.create_connection(self.upstream)
        self.sockets += [client, server]
        threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, tamper: bool) -> None:
        stream = bytearray()  # the tampered direction, until the flip
        try:
            while data := source.recv(65536):
                if tamper and not self.flipped.is_set():
                    start = len(stream)
                    stream += data
                    target = tamper_target(stream)
                    if target is not None and start <= target < len(stream):
                        index = target - start
                        data = data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]
                        self.flipped.set()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[RouterFleet]:
    routers = RouterFleet(tmp_path)
    try:
        yield routers
    finally:
        routers.stop_all()


def test_tampering_detected_by_the_acceptor_is_shown_on_both_sides(fleet: RouterFleet) -> None:
    secret = "a long enough shared secret for the test"
    acceptor = fleet.launch("acceptor", password=secret, extra=["--no-ipam"])
    host, port = acceptor.listen.rsplit(":", 1)
    proxy = TamperingProxy((host, int(port)))
    try:
        dialler = fleet.launch("dialler", [f"127.0.0.1:{proxy.port}"], password=secret,
                               extra=["--no-ipam", "--no-discovery"])
        wait_until(proxy.flipped.is_set, 20, "a byte flipped on the wire", dialler)

        def acceptor_row() -> dict[str, str] | None:
            rows = acceptor.get("/status/connections")
            return next((r for r in rows if "ended" in r["info"]), None)

        wait_until(lambda: acceptor_row() is not None, 20, "the acceptor's row", acceptor)
        row = acceptor_row()
        assert row is not None and row["state"] == "failed"
        assert "authentic" in row["info"] or "tamper" in row["info"], row

        def dialler_reason() -> str:
            rows = dialler.get("/status/connections")
            return next((r["info"] for r in rows if r["address"].endswith(f":{proxy.port}")),
                        "")

        wait_until(lambda: "refused by the peer" in dialler_reason(), 20,
                   "the dialler to learn the acceptor's reason", dialler)
        reason = dialler_reason()
        assert "closed by the peer" not in reason.split("refused by the peer")[1], reason
    finally:
        proxy.close()
